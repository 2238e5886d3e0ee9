//! (section, key) → typed field: the routing table and the typed setters.
//!
//! Keys are matched on their normalised form ([`super::lines::normalize_key`]) by one `match`,
//! so lookup never allocates. Routing rules:
//! * `Work Account N` and the four proxy sections are *closed*: only their own keys are typed
//!   there (their keys — `NgcSet`, `KeyProvider`, `Executing Account Name`… — repeat elsewhere),
//!   anything else goes to `extra`.
//! * Every other known section, and text outside any section, routes a key by its name to its
//!   real message: this is what the pre-1803 layout needs (`DeviceId` under Device State,
//!   `AzureAdPrt` under User State) and what headerless fragments need. A key that exists in
//!   several sections goes to its main home outside a closed section (`NgcSet` → user_state,
//!   `KeyProvider` → device_details, `Executing Account Name` → diagnostics).
//! * PRT diagnostic fields go to the block opened by the last `AcquirePrtDiagnostics` /
//!   `RefreshPrtDiagnostics` line, or to `acquire_prt_diagnostics` when none was opened; the
//!   block's `prt` is the PRT whose keys were printed last (`enterprise` after
//!   `EnterprisePrt…`, otherwise `azure_ad`).
//! * A key whose typed field is already set (a repeat in one section) keeps the first value;
//!   the repeat goes to `extra` with a warning.
//!
//! Value rule (see the module doc of [`super`]): strings are kept as printed, `Some("")`
//! when the printed value is empty; a typed field whose value does not convert stays unset and
//! the line goes to `extra`, with a warning unless the value is a legitimate non-answer.

use dsreg_proto::v1::{ProxyConfig, PrtDiagnostics, Snapshot, TenantDetails, WorkAccount};

use super::diagnostic_data;
use super::emit::Emit;
use super::values;

/// Where the parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Section {
    #[default]
    /// Before the first header, after the footer, or in headerless fragments.
    None,
    DeviceState,
    DeviceDetails,
    TenantDetails,
    UserState,
    SsoState,
    Diagnostics,
    /// `Work Account N`: index into `Snapshot::work_accounts`.
    WorkAccount(usize),
    Ngc,
    IeProxySystem,
    IeProxyUser,
    UrlProxy,
    WinHttpProxy,
    /// A header the parser does not know: every line goes to `extra`.
    Unknown,
}

/// A known section title, or `Work Account N` with its N.
pub(crate) enum Title {
    Known(Section),
    WorkAccount(u32),
}

/// Maps a normalised section title.
pub(crate) fn title(norm: &[u8]) -> Option<Title> {
    let s = match norm {
        b"device state" => Section::DeviceState,
        b"device details" => Section::DeviceDetails,
        b"tenant details" => Section::TenantDetails,
        b"user state" => Section::UserState,
        b"sso state" => Section::SsoState,
        b"diagnostic data" | b"diagnostics data" => Section::Diagnostics,
        b"ngc prerequisite check" => Section::Ngc,
        b"ie proxy config for system account" => Section::IeProxySystem,
        b"ie proxy config for current user" => Section::IeProxyUser,
        b"url specific proxy config" => Section::UrlProxy,
        b"winhttp default proxy config" => Section::WinHttpProxy,
        _ => {
            let n = norm.strip_prefix(b"work account")?;
            let n = std::str::from_utf8(n).ok()?.trim();
            return values::number(n).map(Title::WorkAccount);
        }
    };
    Some(Title::Known(s))
}

/// Which PRT a diagnostics block belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum PrtKind {
    #[default]
    AzureAd,
    Enterprise,
}

/// Which diagnostics block is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DiagBlock {
    Acquire,
    Refresh,
}

/// Block state carried across lines.
#[derive(Debug, Default)]
pub(crate) struct Blocks {
    pub last_prt: PrtKind,
    pub open_diag: Option<DiagBlock>,
}

/// Applies one key/value line to the snapshot; `norm` is the normalised key.
pub(crate) fn apply(
    snap: &mut Snapshot,
    blocks: &mut Blocks,
    section: Section,
    norm: &[u8],
    e: &mut Emit<'_, '_>,
) {
    match section {
        Section::Unknown => return e.unknown(),
        Section::WorkAccount(i) => return work_account(snap, i, norm, e),
        Section::IeProxySystem => {
            return proxy(
                snap.ie_proxy_config_for_system_account
                    .get_or_insert_default(),
                norm,
                e,
            );
        }
        Section::IeProxyUser => {
            return proxy(
                snap.ie_proxy_config_for_current_user
                    .get_or_insert_default(),
                norm,
                e,
            );
        }
        Section::UrlProxy => {
            return proxy(
                snap.url_specific_proxy_config.get_or_insert_default(),
                norm,
                e,
            );
        }
        Section::WinHttpProxy => {
            return proxy(
                snap.win_http_default_proxy_config.get_or_insert_default(),
                norm,
                e,
            );
        }
        _ => {}
    }
    if norm.starts_with(b"azureadprt") {
        blocks.last_prt = PrtKind::AzureAd;
    } else if norm.starts_with(b"enterpriseprt") {
        blocks.last_prt = PrtKind::Enterprise;
    }
    if device_or_tenant(snap, norm, e)
        || user_or_sso(snap, blocks, norm, e)
        || diagnostic_data::diagnostics(snap, norm, e)
        || diagnostic_data::ngc(snap, norm, e)
    {
        return;
    }
    match norm {
        b"auto detect pac status" => e.text(
            &mut snap
                .url_specific_proxy_config
                .get_or_insert_default()
                .auto_detect_pac_status,
        ),
        b"access type" => e.text(
            &mut snap
                .win_http_default_proxy_config
                .get_or_insert_default()
                .access_type,
        ),
        _ => e.unknown(),
    }
}

fn device_or_tenant(snap: &mut Snapshot, norm: &[u8], e: &mut Emit<'_, '_>) -> bool {
    match norm {
        b"azureadjoined" => {
            e.yes_no(&mut snap.device_state.get_or_insert_default().azure_ad_joined)
        }
        b"enterprisejoined" => {
            e.yes_no(&mut snap.device_state.get_or_insert_default().enterprise_joined)
        }
        b"domainjoined" => e.yes_no(&mut snap.device_state.get_or_insert_default().domain_joined),
        b"domainname" => e.text(&mut snap.device_state.get_or_insert_default().domain_name),
        b"device name" => e.text(&mut snap.device_state.get_or_insert_default().device_name),
        b"virtual desktop" => {
            e.text(&mut snap.device_state.get_or_insert_default().virtual_desktop)
        }
        b"deviceid" => e.text(&mut snap.device_details.get_or_insert_default().device_id),
        b"thumbprint" => e.text(&mut snap.device_details.get_or_insert_default().thumbprint),
        b"devicecertificatevalidity" => e.validity(
            &mut snap
                .device_details
                .get_or_insert_default()
                .device_certificate_validity,
        ),
        b"keycontainerid" => {
            e.text(&mut snap.device_details.get_or_insert_default().key_container_id)
        }
        b"keyprovider" => e.text(&mut snap.device_details.get_or_insert_default().key_provider),
        b"tpmprotected" => e.yes_no(&mut snap.device_details.get_or_insert_default().tpm_protected),
        b"deviceauthstatus" => e.text(
            &mut snap
                .device_details
                .get_or_insert_default()
                .device_auth_status,
        ),
        _ => {
            type Field = fn(&mut TenantDetails) -> &mut Option<String>;
            let field: Field = match norm {
                b"tenantname" => |t| &mut t.tenant_name,
                b"tenantid" => |t| &mut t.tenant_id,
                b"idp" => |t| &mut t.idp,
                b"authcodeurl" => |t| &mut t.auth_code_url,
                b"accesstokenurl" => |t| &mut t.access_token_url,
                b"mdmurl" => |t| &mut t.mdm_url,
                b"mdmtouurl" => |t| &mut t.mdm_tou_url,
                b"mdmcomplianceurl" | b"dmcomplianceurl" => |t| &mut t.mdm_compliance_url,
                b"settingsurl" => |t| &mut t.settings_url,
                b"joinsrvversion" => |t| &mut t.join_srv_version,
                b"joinsrvurl" => |t| &mut t.join_srv_url,
                b"joinsrvid" => |t| &mut t.join_srv_id,
                b"keysrvversion" => |t| &mut t.key_srv_version,
                b"keysrvurl" => |t| &mut t.key_srv_url,
                b"keysrvid" => |t| &mut t.key_srv_id,
                b"webauthnsrvversion" => |t| &mut t.web_auth_n_srv_version,
                b"webauthnsrvurl" => |t| &mut t.web_auth_n_srv_url,
                b"webauthnsrvid" => |t| &mut t.web_auth_n_srv_id,
                b"devicemanagementsrvver" | b"devicemanagementsrvversion" => {
                    |t| &mut t.device_management_srv_ver
                }
                b"devicemanagementsrvurl" => |t| &mut t.device_management_srv_url,
                b"devicemanagementsrvid" => |t| &mut t.device_management_srv_id,
                _ => return false,
            };
            e.text(field(snap.tenant_details.get_or_insert_default()));
            if norm == b"idp" && !e.value.is_empty() && !values::looks_like_domain(e.value) {
                let value = e.value;
                e.warn(format!(
                    "Idp: '{value}' is not a domain name; the capture looks cut here"
                ));
            }
        }
    }
    true
}

fn user_or_sso(
    snap: &mut Snapshot,
    blocks: &mut Blocks,
    norm: &[u8],
    e: &mut Emit<'_, '_>,
) -> bool {
    match norm {
        b"ngcset" => e.yes_no(&mut snap.user_state.get_or_insert_default().ngc_set),
        b"ngckeyid" => e.text(&mut snap.user_state.get_or_insert_default().ngc_key_id),
        b"canreset" => e.text(&mut snap.user_state.get_or_insert_default().can_reset),
        b"workplacejoined" => {
            e.yes_no(&mut snap.user_state.get_or_insert_default().workplace_joined)
        }
        b"workaccountcount" => {
            e.number(&mut snap.user_state.get_or_insert_default().work_account_count)
        }
        b"wamdefaultset" => {
            let u = snap.user_state.get_or_insert_default();
            e.yes_no_or_error(&mut u.wam_default_set, &mut u.wam_default_set_error);
        }
        b"wamdefaultauthority" => e.text(
            &mut snap
                .user_state
                .get_or_insert_default()
                .wam_default_authority,
        ),
        b"wamdefaultid" => e.text(&mut snap.user_state.get_or_insert_default().wam_default_id),
        b"wamdefaultguid" => e.text(&mut snap.user_state.get_or_insert_default().wam_default_guid),
        b"azureadprt" => e.yes_no(&mut snap.sso_state.get_or_insert_default().azure_ad_prt),
        b"azureadprtupdatetime" => e.time(
            &mut snap
                .sso_state
                .get_or_insert_default()
                .azure_ad_prt_update_time,
        ),
        b"azureadprtexpirytime" => e.time(
            &mut snap
                .sso_state
                .get_or_insert_default()
                .azure_ad_prt_expiry_time,
        ),
        b"azureadprtauthority" => e.text(
            &mut snap
                .sso_state
                .get_or_insert_default()
                .azure_ad_prt_authority,
        ),
        b"enterpriseprt" => e.yes_no(&mut snap.sso_state.get_or_insert_default().enterprise_prt),
        b"enterpriseprtupdatetime" => e.time(
            &mut snap
                .sso_state
                .get_or_insert_default()
                .enterprise_prt_update_time,
        ),
        b"enterpriseprtexpirytime" => e.time(
            &mut snap
                .sso_state
                .get_or_insert_default()
                .enterprise_prt_expiry_time,
        ),
        b"enterpriseprtauthority" => e.text(
            &mut snap
                .sso_state
                .get_or_insert_default()
                .enterprise_prt_authority,
        ),
        b"onpremtgt" => e.yes_no(&mut snap.sso_state.get_or_insert_default().on_prem_tgt),
        b"cloudtgt" => e.yes_no(&mut snap.sso_state.get_or_insert_default().cloud_tgt),
        b"kerbtoplevelnames" => {
            e.text(&mut snap.sso_state.get_or_insert_default().kerb_top_level_names)
        }
        b"acquireprtdiagnostics" | b"refreshprtdiagnostics" => {
            let block = if norm == b"acquireprtdiagnostics" {
                DiagBlock::Acquire
            } else {
                DiagBlock::Refresh
            };
            blocks.open_diag = Some(block);
            let sso = snap.sso_state.get_or_insert_default();
            let slot = match block {
                DiagBlock::Acquire => &mut sso.acquire_prt_diagnostics,
                DiagBlock::Refresh => &mut sso.refresh_prt_diagnostics,
            };
            if slot.is_some() {
                return {
                    e.repeat();
                    true
                };
            }
            *slot = Some(PrtDiagnostics {
                prt: prt_label(blocks.last_prt).to_owned(),
                ..Default::default()
            });
            if !e.value.eq_ignore_ascii_case("present") {
                e.extra();
            }
        }
        _ => return prt_diagnostics(snap, blocks, norm, e),
    }
    true
}

fn prt_label(kind: PrtKind) -> &'static str {
    match kind {
        PrtKind::AzureAd => "azure_ad",
        PrtKind::Enterprise => "enterprise",
    }
}

fn prt_diagnostics(
    snap: &mut Snapshot,
    blocks: &Blocks,
    norm: &[u8],
    e: &mut Emit<'_, '_>,
) -> bool {
    enum Kind {
        Text(fn(&mut PrtDiagnostics) -> &mut Option<String>),
        Time(fn(&mut PrtDiagnostics) -> &mut Option<String>),
        Code(fn(&mut PrtDiagnostics) -> &mut Option<u32>),
        Number(fn(&mut PrtDiagnostics) -> &mut Option<u32>),
    }
    let kind = match norm {
        b"previous prt attempt" => Kind::Time(|d| &mut d.previous_prt_attempt),
        b"attempt status" => Kind::Code(|d| &mut d.attempt_status),
        b"user identity" => Kind::Text(|d| &mut d.user_identity),
        b"credential type" => Kind::Text(|d| &mut d.credential_type),
        b"correlation id" => Kind::Text(|d| &mut d.correlation_id),
        b"endpoint uri" => Kind::Text(|d| &mut d.endpoint_uri),
        b"http method" => Kind::Text(|d| &mut d.http_method),
        b"http error" => Kind::Code(|d| &mut d.http_error),
        b"http status" => Kind::Number(|d| &mut d.http_status),
        b"server error code" => Kind::Text(|d| &mut d.server_error_code),
        b"server error description" => Kind::Text(|d| &mut d.server_error_description),
        _ => return false,
    };
    let sso = snap.sso_state.get_or_insert_default();
    let slot = match blocks.open_diag {
        Some(DiagBlock::Refresh) => &mut sso.refresh_prt_diagnostics,
        Some(DiagBlock::Acquire) | None => &mut sso.acquire_prt_diagnostics,
    };
    let d = slot.get_or_insert_with(|| PrtDiagnostics {
        prt: prt_label(blocks.last_prt).to_owned(),
        ..Default::default()
    });
    match kind {
        Kind::Text(f) => e.text(f(d)),
        Kind::Time(f) => e.time(f(d)),
        Kind::Code(f) => e.code(f(d)),
        Kind::Number(f) => e.number(f(d)),
    }
    true
}

fn proxy(p: &mut ProxyConfig, norm: &[u8], e: &mut Emit<'_, '_>) {
    match norm {
        b"auto detect settings" => e.yes_no(&mut p.auto_detect_settings),
        b"auto-configuration url" => e.text(&mut p.auto_configuration_url),
        b"proxy server list" => e.text(&mut p.proxy_server_list),
        b"proxy bypass list" => e.text(&mut p.proxy_bypass_list),
        b"auto detect pac status" => e.text(&mut p.auto_detect_pac_status),
        b"executing account name" => e.text(&mut p.executing_account_name),
        b"access type" => e.text(&mut p.access_type),
        _ => e.unknown(),
    }
}

fn work_account(snap: &mut Snapshot, i: usize, norm: &[u8], e: &mut Emit<'_, '_>) {
    let Some(w) = snap.work_accounts.get_mut(i) else {
        return e.unknown();
    };
    type Text = fn(&mut WorkAccount) -> &mut Option<String>;
    let text: Text = match norm {
        b"workplacedeviceid" => |w| &mut w.workplace_device_id,
        b"workplacethumbprint" => |w| &mut w.workplace_thumbprint,
        b"keycontainerid" => |w| &mut w.key_container_id,
        b"keyprovider" => |w| &mut w.key_provider,
        b"workplacetenantid" => |w| &mut w.workplace_tenant_id,
        b"workplacetenantname" => |w| &mut w.workplace_tenant_name,
        b"workplacemdmurl" => |w| &mut w.workplace_mdm_url,
        b"workplacesettingsurl" => |w| &mut w.workplace_settings_url,
        b"devicecertificatevalidity" => return e.validity(&mut w.device_certificate_validity),
        b"tpmprotected" => return e.yes_no(&mut w.tpm_protected),
        b"ngcset" => return e.yes_no(&mut w.ngc_set),
        _ => return e.unknown(),
    };
    e.text(text(w));
}
