//! Golden tests: one per fixture in `testdata/dsregcmd/`, asserting by hand what each capture
//! shows (values read off the capture, not pasted from the parser's output), including the
//! fields that must stay absent and where `extra` and warnings matter.

mod common;

use dsreg_agent::dsregcmd::parse;
use dsreg_proto::TestStatus;
use dsreg_proto::v1::{Snapshot, TestResult};

fn load(name: &str) -> Vec<u8> {
    common::dsregcmd(name)
}

fn snap(name: &str) -> Snapshot {
    parse(&load(name))
}

fn has_extra(s: &Snapshot, section: &str, key: &str, value: &str) -> bool {
    s.extra
        .iter()
        .any(|x| x.section == section && x.key == key && x.value == value)
}

fn warned(s: &Snapshot, needle: &str) -> usize {
    s.warnings
        .iter()
        .filter(|w| w.message.contains(needle))
        .count()
}

fn test(result: TestStatus, code: Option<u32>, sub_code: Option<u32>) -> Option<TestResult> {
    Some(TestResult {
        result: result as i32,
        code,
        sub_code,
    })
}

fn st(v: &str) -> Option<String> {
    Some(v.to_owned())
}

#[test]
fn domain_joined_discover_0x801c001d_elevated_ws2022() {
    let s = snap("domain-joined-discover-0x801c001d-elevated-ws2022.txt");
    let ds = s.device_state.as_ref().unwrap();
    assert_eq!(ds.azure_ad_joined, Some(false));
    assert_eq!(ds.enterprise_joined, Some(false));
    assert_eq!(ds.domain_joined, Some(true));
    assert_eq!(ds.domain_name, st("RCMLAB"));
    assert_eq!(ds.device_name, st("rcmlab-ws2022-s.rcmlab.local"));
    assert_eq!(ds.virtual_desktop, None);
    assert!(s.device_details.is_none() && s.tenant_details.is_none());
    assert!(s.work_accounts.is_empty());

    let us = s.user_state.as_ref().unwrap();
    assert_eq!(us.ngc_set, Some(false));
    assert_eq!(us.workplace_joined, Some(false));
    assert_eq!(us.wam_default_set, Some(false));
    assert_eq!(us.wam_default_set_error, None);

    let sso = s.sso_state.as_ref().unwrap();
    assert_eq!(sso.azure_ad_prt, Some(false));
    assert_eq!(sso.azure_ad_prt_authority, st("NO"));
    assert_eq!(sso.enterprise_prt, Some(false));
    assert_eq!(sso.enterprise_prt_authority, st("NO"));
    assert!(sso.acquire_prt_diagnostics.is_none());

    let d = s.diagnostics.as_ref().unwrap();
    assert_eq!(d.diagnostics_reference, st("www.microsoft.com/aadjerrors"));
    assert_eq!(d.user_context, st("SYSTEM"));
    assert_eq!(d.client_time, st("2022-11-07T15:51:42Z"));
    let t = d.tests.as_ref().unwrap();
    assert_eq!(t.ad_connectivity, test(TestStatus::Pass, None, None));
    assert_eq!(
        t.ad_configuration,
        test(TestStatus::Fail, Some(0x8007_0002), None)
    );
    assert_eq!(t.drs_discovery, test(TestStatus::Skipped, None, None));
    assert_eq!(t.drs_connectivity, test(TestStatus::Skipped, None, None));
    assert_eq!(t.token_acquisition, test(TestStatus::Skipped, None, None));
    assert_eq!(t.kerberos_ticket, None);
    assert_eq!(d.fallback_to_sync_join, Some(true));
    assert_eq!(d.fallback_to_fed_join, None);
    let p = d.previous_registration.as_ref().unwrap();
    assert_eq!(p.time, st("2022-11-07T15:50:24Z"));
    assert_eq!(p.error_phase, st("discover"));
    assert_eq!(p.client_error_code, Some(0x801c_001d));
    assert_eq!(p.registration_type, None);
    assert_eq!(p.server_error_code, None);
    // The executing account of this capture is printed in URL Specific Proxy Config only.
    assert_eq!(d.executing_account_name, None);
    assert_eq!(d.aad_recovery_enabled, None);

    let sys = s.ie_proxy_config_for_system_account.as_ref().unwrap();
    assert_eq!(sys.auto_detect_settings, Some(true));
    // `Auto-Configuration URL : ` (trailing space): printed empty → Some("").
    assert_eq!(sys.auto_configuration_url, st(""));
    assert_eq!(sys.proxy_server_list, st(""));
    assert_eq!(sys.proxy_bypass_list, st(""));
    let user = s.ie_proxy_config_for_current_user.as_ref().unwrap();
    assert_eq!(user.auto_detect_settings, Some(true));
    assert_eq!(user.auto_configuration_url, st(""));
    let url = s.url_specific_proxy_config.as_ref().unwrap();
    assert_eq!(
        url.auto_detect_pac_status,
        st(
            "Failed to auto detect the Proxy Auto-Configuration (PAC) script using WPAD. code: 0x80072f94"
        )
    );
    assert_eq!(
        url.executing_account_name,
        st("RCMLAB\\RCMLAB-WS2022-S$, RCMLAB-WS2022-S$@rcmlab.local")
    );
    assert_eq!(
        s.win_http_default_proxy_config
            .as_ref()
            .unwrap()
            .access_type,
        st("DIRECT")
    );

    let n = s.ngc_prerequisite_check.as_ref().unwrap();
    assert_eq!(n.is_device_joined, Some(false));
    assert_eq!(n.is_user_azure_ad, Some(false));
    assert_eq!(n.policy_enabled, Some(false));
    assert_eq!(n.post_logon_enabled, Some(true));
    assert_eq!(n.device_eligible, Some(false));
    assert_eq!(n.session_is_not_remote, Some(false));
    assert_eq!(n.cert_enrollment, st("none"));
    assert_eq!(n.pre_req_result, st("WillNotProvision"));
    assert_eq!(n.ngc_pre_req_error, None);

    // The prompt before the first header and after the footer; nothing else is unmapped.
    assert!(has_extra(
        &s,
        "",
        "",
        "PS C:\\Users\\rcmlabmaster> dsregcmd.exe /status"
    ));
    assert!(has_extra(&s, "", "", "PS C:\\Users\\rcmlabmaster>"));
    assert_eq!(s.extra.len(), 2);
    assert_eq!(s.warnings.len(), 1);
    assert_eq!(warned(&s, "Auto Detect PAC Status"), 1);
    assert_eq!(s.join_type, 0);
    assert!(s.failure.is_none());
}

#[test]
fn entra_joined_healthy_prt_cloud_tgt() {
    let s = snap("entra-joined-healthy-prt-cloud-tgt.txt");
    let ds = s.device_state.as_ref().unwrap();
    assert_eq!(
        (ds.azure_ad_joined, ds.enterprise_joined, ds.domain_joined),
        (Some(true), Some(false), Some(false))
    );
    assert_eq!(ds.domain_name, None);
    assert_eq!(ds.device_name, st("Win10-Client"));

    let dd = s.device_details.as_ref().unwrap();
    assert_eq!(dd.device_id, st("6e4cbe68-588b-499c-8c04-dcfff140a1ca"));
    assert_eq!(
        dd.thumbprint,
        st("0BF36D245A124205D42B7FBCA6B6AB65A5B06A3C")
    );
    let v = dd.device_certificate_validity.as_ref().unwrap();
    assert_eq!(v.not_before, st("2025-03-09T10:23:00Z"));
    assert_eq!(v.not_after, st("2035-03-09T11:53:00Z"));
    assert_eq!(
        dd.key_container_id,
        st("1c68a06c-38a6-4614-a03d-5b00df256789")
    );
    assert_eq!(
        dd.key_provider,
        st("Microsoft Software Key Storage Provider")
    );
    assert_eq!(dd.tpm_protected, Some(false));
    assert_eq!(dd.device_auth_status, st("SUCCESS"));

    let t = s.tenant_details.as_ref().unwrap();
    assert_eq!(t.tenant_name, st("INE Security Labs"));
    assert_eq!(t.tenant_id, st("d10f84e2-ba05-45c0-90b7-994f1fafa537"));
    assert_eq!(t.idp, st("login.windows.net"));
    assert_eq!(
        t.auth_code_url,
        st(
            "https://login.microsoftonline.com/d10f84e2-ba05-45c0-90b7-994f1fafa537/oauth2/authorize"
        )
    );
    assert_eq!(
        t.access_token_url,
        st("https://login.microsoftonline.com/d10f84e2-ba05-45c0-90b7-994f1fafa537/oauth2/token")
    );
    // `MdmUrl :` with nothing after it: printed empty.
    assert_eq!(t.mdm_url, st(""));
    assert_eq!(t.mdm_tou_url, st(""));
    assert_eq!(t.mdm_compliance_url, st(""));
    assert_eq!(t.settings_url, st(""));
    assert_eq!(t.join_srv_version, st("2.0"));
    assert_eq!(
        t.join_srv_url,
        st("https://enterpriseregistration.windows.net/EnrollmentServer/device/")
    );
    assert_eq!(
        t.join_srv_id,
        st("urn:ms-drs:enterpriseregistration.windows.net")
    );
    assert_eq!(t.key_srv_version, st("1.0"));
    assert_eq!(t.web_auth_n_srv_version, st("1.0"));
    assert_eq!(
        t.web_auth_n_srv_url,
        st(
            "https://enterpriseregistration.windows.net/webauthn/d10f84e2-ba05-45c0-90b7-994f1fafa537/"
        )
    );
    assert_eq!(
        t.web_auth_n_srv_id,
        st("urn:ms-drs:enterpriseregistration.windows.net")
    );
    assert_eq!(t.device_management_srv_ver, st("1.0"));
    assert_eq!(
        t.device_management_srv_id,
        st("urn:ms-drs:enterpriseregistration.windows.net")
    );

    let us = s.user_state.as_ref().unwrap();
    assert_eq!(us.wam_default_set, Some(true));
    assert_eq!(us.wam_default_authority, st("organizations"));
    assert_eq!(us.wam_default_id, st("https://login.microsoft.com"));
    assert_eq!(
        us.wam_default_guid,
        st("{B16898C6-A148-4967-9171-64D755DA8520} (AzureAd)")
    );
    assert_eq!(us.ngc_key_id, None);

    let sso = s.sso_state.as_ref().unwrap();
    assert_eq!(sso.azure_ad_prt, Some(true));
    assert_eq!(sso.azure_ad_prt_update_time, st("2025-03-09T11:00:27Z"));
    assert_eq!(sso.azure_ad_prt_expiry_time, st("2025-03-23T11:01:41Z"));
    assert_eq!(
        sso.azure_ad_prt_authority,
        st("https://login.microsoftonline.com/d10f84e2-ba05-45c0-90b7-994f1fafa537")
    );
    assert_eq!(sso.enterprise_prt, Some(false));
    assert_eq!(sso.enterprise_prt_authority, st(""));
    assert_eq!(sso.enterprise_prt_update_time, None);
    assert_eq!(sso.on_prem_tgt, Some(false));
    assert_eq!(sso.cloud_tgt, Some(true));
    assert_eq!(
        sso.kerb_top_level_names,
        st(
            ".windows.net,.windows.net:1433,.windows.net:3342,.azure.net,.azure.net:1433,.azure.net:3342"
        )
    );
    assert!(sso.acquire_prt_diagnostics.is_none() && sso.refresh_prt_diagnostics.is_none());

    let d = s.diagnostics.as_ref().unwrap();
    assert_eq!(d.aad_recovery_enabled, Some(false));
    assert_eq!(
        d.executing_account_name,
        st("AzureAD\\INEUser, user_d26zuvzj01@inesecuritylabs.onmicrosoft.com")
    );
    assert_eq!(d.key_sign_test, st("PASSED"));
    assert_eq!(d.display_name_updated, Some(true));
    assert_eq!(d.os_version_updated, Some(true));
    assert_eq!(d.host_name_updated, Some(true));
    // `Last HostName Update : NONE`: not a time → unset, kept in extra, no warning.
    assert_eq!(d.last_host_name_update, None);
    assert!(has_extra(
        &s,
        "Diagnostic Data",
        "Last HostName Update",
        "NONE"
    ));
    assert!(d.tests.is_none() && d.previous_registration.is_none());

    assert!(s.ie_proxy_config_for_system_account.is_none());
    assert_eq!(
        s.ie_proxy_config_for_current_user
            .as_ref()
            .unwrap()
            .auto_configuration_url,
        st("")
    );
    let n = s.ngc_prerequisite_check.as_ref().unwrap();
    assert_eq!(n.is_device_joined, Some(true));
    assert_eq!(n.device_eligible, Some(false));
    assert_eq!(n.session_is_not_remote, Some(false));
    assert_eq!(n.pre_req_result, st("WillNotProvision"));

    assert_eq!(s.extra.len(), 1);
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

#[test]
fn entra_joined_local_user_no_prt_partial() {
    let s = snap("entra-joined-local-user-no-prt-partial.txt");
    assert_eq!(
        s.device_state.as_ref().unwrap().device_name,
        st("AADJoin02")
    );
    let dd = s.device_details.as_ref().unwrap();
    assert_eq!(
        dd.device_certificate_validity.as_ref().unwrap().not_before,
        st("2022-01-28T11:15:49Z")
    );
    assert_eq!(
        s.tenant_details.as_ref().unwrap().tenant_name,
        st("Contoso")
    );
    assert_eq!(s.user_state.as_ref().unwrap().wam_default_set, Some(false));
    let sso = s.sso_state.as_ref().unwrap();
    assert_eq!(sso.azure_ad_prt, Some(false));
    // Blank on a joined device without PRT (not `NO`).
    assert_eq!(sso.azure_ad_prt_authority, st(""));
    assert_eq!(sso.azure_ad_prt_update_time, None);
    let d = s.diagnostics.as_ref().unwrap();
    assert_eq!(d.executing_account_name, st("AADJOIN02\\PCUser"));
    assert_eq!(d.key_sign_test, st("PASSED"));
    assert_eq!(d.aad_recovery_enabled, Some(false));
    // Stops after Diagnostic Data: no proxy, Ngc sections.
    assert!(s.ngc_prerequisite_check.is_none());
    assert!(s.win_http_default_proxy_config.is_none());
    assert!(s.extra.is_empty() && s.warnings.is_empty());
}

#[test]
fn entra_joined_vm_virtual_desktop_not_set_redacted_partial() {
    let s = snap("entra-joined-vm-virtual-desktop-not-set-redacted-partial.txt");
    let ds = s.device_state.as_ref().unwrap();
    assert_eq!(ds.virtual_desktop, st("NOT SET"));
    assert_eq!(ds.device_name, st("vm-devops-1953"));
    let dd = s.device_details.as_ref().unwrap();
    // Masks are kept verbatim.
    assert_eq!(dd.device_id, st("xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"));
    assert_eq!(dd.thumbprint, st("6C226302696DF************************"));
    assert_eq!(dd.device_auth_status, st("SUCCESS"));
    let t = s.tenant_details.as_ref().unwrap();
    assert_eq!(t.tenant_name, st(""));
    assert_eq!(t.idp, None);
    assert_eq!(t.tenant_id, st("xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"));
    assert_eq!(
        t.device_management_srv_id,
        st("urn:ms-drs:enterpriseregistration.windows.net")
    );
    assert!(s.user_state.is_none() && s.sso_state.is_none());
    assert!(s.extra.is_empty() && s.warnings.is_empty());
}

#[test]
fn doc_legacy_layout_hybrid_joined_pre_1803() {
    let s = snap("doc-legacy-layout-hybrid-joined-pre-1803.txt");
    let ds = s.device_state.as_ref().unwrap();
    assert_eq!(ds.azure_ad_joined, Some(true));
    assert_eq!(ds.enterprise_joined, Some(false));
    assert_eq!(ds.domain_joined, Some(true));
    assert_eq!(ds.domain_name, st("CONTOSO"));
    // Printed under Device State, routed by key name.
    let dd = s.device_details.as_ref().unwrap();
    assert_eq!(dd.device_id, st("5820fbe9-60c8-43b0-bb11-44aee233e4e7"));
    assert_eq!(
        dd.thumbprint,
        st("B753A6679CE720451921302CA873794D94C6204A")
    );
    assert_eq!(dd.key_provider, st("Microsoft Platform Crypto Provider"));
    assert_eq!(dd.tpm_protected, Some(true));
    assert_eq!(dd.device_auth_status, None);
    let t = s.tenant_details.as_ref().unwrap();
    assert_eq!(t.tenant_name, st("Contoso"));
    assert_eq!(t.tenant_id, st("72b988bf-xxxx-xxxx-xxxx-2d7cd011xxxx"));
    assert_eq!(t.idp, st("login.windows.net"));
    assert_eq!(
        t.mdm_compliance_url,
        st("https://portal.manage-beta.microsoft.com/?portalAction=Compliance")
    );
    assert_eq!(t.join_srv_version, st("1.0"));
    assert_eq!(
        t.key_srv_id,
        st("urn:ms-drs:enterpriseregistration.windows.net")
    );
    assert_eq!(
        t.settings_url,
        st(concat!(
            "eyJVcmlzIjpbImh0dHBzOi8va2FpbGFuaS5vbmUubWljcm9zb2Z0LmNvbS8iLCJodHRwczovL2thaWxhbmkx",
            "Lm9uZS5taWNyb3NvZnQuY29tLyJdfQ=="
        ))
    );
    // `KeySignTest: : MUST Run elevated to test.` (doubled colon).
    assert_eq!(
        s.diagnostics.as_ref().unwrap().key_sign_test,
        st("MUST Run elevated to test.")
    );
    let us = s.user_state.as_ref().unwrap();
    assert_eq!(us.ngc_set, Some(true));
    assert_eq!(us.ngc_key_id, st("{C7A9AEDC-780E-4FDA-B200-1AE15561A46B}"));
    assert_eq!(us.wam_default_authority, st("organizations"));
    // AzureAdPrt under User State → sso_state.
    assert_eq!(s.sso_state.as_ref().unwrap().azure_ad_prt, Some(true));
    assert!(s.extra.is_empty() && s.warnings.is_empty(), "{:?}", s.extra);
}

#[test]
fn doc_sso_state_prt_diagnostics_0xc000006d_aadsts50126() {
    let s = snap("doc-sso-state-prt-diagnostics-0xc000006d-aadsts50126.txt");
    let sso = s.sso_state.as_ref().unwrap();
    assert_eq!(sso.azure_ad_prt, Some(false));
    assert_eq!(sso.enterprise_prt, Some(true));
    assert_eq!(sso.enterprise_prt_update_time, st("2019-01-24T19:15:33Z"));
    assert_eq!(sso.enterprise_prt_expiry_time, st("2019-02-07T19:15:33Z"));
    assert_eq!(
        sso.enterprise_prt_authority,
        st("https://fs.hybridadfs.nttest.microsoft.com:443/adfs")
    );
    assert_eq!(sso.on_prem_tgt, Some(true));
    assert_eq!(sso.cloud_tgt, Some(true));
    let p = sso.acquire_prt_diagnostics.as_ref().unwrap();
    assert_eq!(p.prt, "azure_ad");
    assert_eq!(p.previous_prt_attempt, st("2020-07-18T20:10:33.789Z"));
    assert_eq!(p.attempt_status, Some(0xc000_006d));
    assert_eq!(p.user_identity, st("john@contoso.com"));
    assert_eq!(p.credential_type, st("Password"));
    assert_eq!(p.correlation_id, st("63648321-fc5c-46eb-996e-ed1f3ba7740f"));
    assert_eq!(
        p.endpoint_uri,
        st("https://login.microsoftonline.com/96fa76d0-xxxx-xxxx-xxxx-eb60cc22xxxx/oauth2/token/")
    );
    assert_eq!(p.http_method, st("POST"));
    assert_eq!(p.http_error, Some(0));
    assert_eq!(p.http_status, Some(400));
    assert_eq!(p.server_error_code, st("invalid_grant"));
    assert_eq!(
        p.server_error_description,
        st("AADSTS50126: Error validating credentials due to invalid username or password.")
    );
    assert!(sso.refresh_prt_diagnostics.is_none());
    assert!(s.extra.is_empty() && s.warnings.is_empty());
}

#[test]
fn sso_state_enterprise_prt_diagnostics_msis9682_partial() {
    let s = snap("sso-state-enterprise-prt-diagnostics-msis9682-partial.txt");
    let sso = s.sso_state.as_ref().unwrap();
    assert_eq!(sso.azure_ad_prt, Some(true));
    // `[Date] UTC` placeholders: unset, kept in extra, one warning each.
    assert_eq!(sso.azure_ad_prt_update_time, None);
    assert_eq!(sso.azure_ad_prt_expiry_time, None);
    assert!(has_extra(
        &s,
        "SSO State",
        "AzureAdPrtUpdateTime",
        "[Date] UTC"
    ));
    assert!(has_extra(
        &s,
        "SSO State",
        "AzureAdPrtExpiryTime",
        "[Date] UTC"
    ));
    assert!(has_extra(
        &s,
        "SSO State",
        "Previous Prt Attempt",
        "[Date] UTC"
    ));
    assert_eq!(warned(&s, "[Date] UTC"), 3);
    assert_eq!(
        sso.azure_ad_prt_authority,
        st("https://login.microsoftonline.com/[TenantId]")
    );
    assert_eq!(sso.enterprise_prt, Some(false));
    assert_eq!(sso.enterprise_prt_authority, st(""));
    let p = sso.acquire_prt_diagnostics.as_ref().unwrap();
    // The block follows EnterprisePrtAuthority: it is the AD FS PRT's.
    assert_eq!(p.prt, "enterprise");
    assert_eq!(p.previous_prt_attempt, None);
    assert_eq!(p.attempt_status, Some(0xc000_006d));
    assert_eq!(p.user_identity, st("[UserPrincipalName]"));
    assert_eq!(p.correlation_id, st("[GUID]"));
    assert_eq!(
        p.endpoint_uri,
        st("https://[ADFS-Server]/adfs/oauth2/token/")
    );
    assert_eq!(p.http_error, Some(0));
    assert_eq!(p.http_status, Some(400));
    assert_eq!(p.server_error_code, st("invalid_grant"));
    assert!(
        p.server_error_description
            .as_deref()
            .unwrap()
            .starts_with("MSIS9682: ")
    );
    assert_eq!(sso.on_prem_tgt, Some(false));
    assert_eq!(sso.cloud_tgt, Some(true));
    // The stray `x` is not glued onto KerbTopLevelNames.
    assert_eq!(
        sso.kerb_top_level_names,
        st(
            ".windows.net,.windows.net:1433,.windows.net:3342,.azure.net,.azure.net:1433,.azure.net:3342"
        )
    );
    assert!(has_extra(&s, "SSO State", "", "x"));
    assert_eq!(s.extra.len(), 4);
    assert_eq!(s.warnings.len(), 4);
    assert_eq!(warned(&s, "without a key"), 1);
}

#[test]
fn hybrid_joined_whfb_cert_trust_fragments() {
    let s = snap("hybrid-joined-whfb-cert-trust-fragments.txt");
    let ds = s.device_state.as_ref().unwrap();
    // First line of each fenced block lost its indentation.
    assert_eq!(ds.azure_ad_joined, Some(true));
    assert_eq!(ds.domain_joined, Some(true));
    assert_eq!(ds.domain_name, st("xxxxx"));
    assert_eq!(ds.device_name, st("MyPC.xxxx.com"));
    let dd = s.device_details.as_ref().unwrap();
    assert_eq!(dd.device_auth_status, st("SUCCESS"));
    assert_eq!(dd.device_id, None);
    let us = s.user_state.as_ref().unwrap();
    assert_eq!(us.ngc_set, Some(false));
    assert_eq!(us.wam_default_set, Some(true));
    let sso = s.sso_state.as_ref().unwrap();
    assert_eq!(sso.azure_ad_prt, Some(true));
    assert_eq!(sso.azure_ad_prt_update_time, st("2021-10-15T11:54:04Z"));
    assert_eq!(sso.azure_ad_prt_expiry_time, st("2021-10-29T11:54:03Z"));
    assert_eq!(sso.enterprise_prt, Some(false));
    assert_eq!(
        sso.enterprise_prt_authority,
        st("https://fs.xxxx.xxx:443/adfs")
    );
    let d = s.diagnostics.as_ref().unwrap();
    assert_eq!(d.aad_recovery_enabled, Some(false));
    // The mask is a run of `*`, not bold markers.
    assert_eq!(d.executing_account_name, st("***\\*******"));
    assert_eq!(d.key_sign_test, st("PASSED"));
    let n = s.ngc_prerequisite_check.as_ref().unwrap();
    assert_eq!(n.is_device_joined, Some(true));
    assert_eq!(n.device_eligible, Some(true));
    assert_eq!(n.session_is_not_remote, Some(true));
    assert_eq!(n.cert_enrollment, st("enrollment authority"));
    assert_eq!(n.adfs_refresh_token, Some(false));
    assert_eq!(n.adfs_ra_is_ready, Some(true));
    assert_eq!(n.logon_cert_template_ready, Some(true));
    assert_eq!(n.logon_cert_template_state, st("StateReady"));
    assert_eq!(n.pre_req_result, st("WillNotProvision"));
    assert!(s.extra.is_empty() && s.warnings.is_empty(), "{:?}", s.extra);
}

#[test]
fn hybrid_joined_tpm_truncated() {
    let s = snap("hybrid-joined-tpm-truncated.txt");
    let ds = s.device_state.as_ref().unwrap();
    assert_eq!(
        (ds.azure_ad_joined, ds.domain_joined),
        (Some(true), Some(true))
    );
    assert_eq!(ds.domain_name, st("CONTOSO"));
    let dd = s.device_details.as_ref().unwrap();
    assert_eq!(dd.device_id, st("126cafbf-18e6-47a8-ad06-d5affe132b36"));
    assert_eq!(dd.key_provider, st("Microsoft Platform Crypto Provider"));
    assert_eq!(dd.tpm_protected, Some(true));
    assert_eq!(
        dd.device_certificate_validity.as_ref().unwrap().not_after,
        st("2030-11-16T19:25:24Z")
    );
    assert_eq!(dd.device_auth_status, None);
    let t = s.tenant_details.as_ref().unwrap();
    assert_eq!(t.tenant_name, st("Contoso"));
    assert_eq!(t.tenant_id, st("ad8e1d4f-5295-4df7-b18a-1d85b4195a17"));
    // Cut mid-word: kept as printed, with a warning that the capture looks cut.
    assert_eq!(t.idp, st("logi"));
    assert_eq!(s.warnings.len(), 1);
    assert_eq!(warned(&s, "cut"), 1);
    assert!(s.extra.is_empty());
}

#[test]
fn user_state_ngc_set_nondestructive_reset_partial() {
    let s = snap("user-state-ngc-set-nondestructive-reset-partial.txt");
    let us = s.user_state.as_ref().unwrap();
    assert_eq!(us.ngc_set, Some(true)); // `**NgcSet : YES**`
    assert_eq!(us.ngc_key_id, st("{817E81F8-4866-4BE0-A8E0-A696810B6FA0}"));
    assert_eq!(us.can_reset, st("NonDestructiveOnly"));
    assert_eq!(us.workplace_joined, Some(false));
    assert_eq!(us.wam_default_set, Some(true));
    assert_eq!(us.wam_default_id, st("https://login.microsoft.com"));
    assert!(s.device_state.is_none() && s.sso_state.is_none());
    assert!(s.extra.is_empty() && s.warnings.is_empty());
}

#[test]
fn hybrid_kerberos_test_fail_fallback_sync_device_renew_reformatted() {
    let s = snap("hybrid-kerberos-test-fail-fallback-sync-device-renew-reformatted.txt");
    let d = s.diagnostics.as_ref().unwrap();
    let t = d.tests.as_ref().unwrap();
    assert_eq!(
        t.kerberos_ticket,
        test(TestStatus::Fail, Some(0x8009_0303), None)
    );
    assert_eq!(t.ad_connectivity, None);
    let p = d.previous_registration.as_ref().unwrap();
    assert_eq!(p.registration_type, st("fallback_sync"));
    assert_eq!(p.server_error_sub_code, st("error_missing_device"));
    assert_eq!(p.server_operation, st("DeviceRenew"));
    assert_eq!(
        p.server_message,
        st(
            "The device object by the given id (f87ed8ef-b923-4c78-8539-c9e49fd923e2) is not found."
        )
    );
    assert_eq!((p.time.as_ref(), p.error_phase.as_ref()), (None, None));
    assert_eq!(p.client_error_code, None);
    assert!(s.device_state.is_none());
    assert!(s.extra.is_empty() && s.warnings.is_empty());
}

#[test]
fn hybrid_mdm_managed_display_name_reformatted() {
    let s = snap("hybrid-mdm-managed-display-name-reformatted.txt");
    let d = s.diagnostics.as_ref().unwrap();
    assert_eq!(d.display_name_updated, None);
    assert_eq!(d.os_version_updated, None);
    assert_eq!(d.host_name_updated, Some(true));
    assert!(has_extra(&s, "", "DisplayNameUpdated", "Managed by MDM"));
    assert!(has_extra(&s, "", "OsVersionUpdated", "Managed by MDM"));
    assert_eq!(s.extra.len(), 2);
    // `Managed by MDM` is a legitimate value, not a malformed one.
    assert!(s.warnings.is_empty());
}

#[test]
fn hybrid_prt_fail_0xc00000d0_aadsts90002_reformatted() {
    let s = snap("hybrid-prt-fail-0xc00000d0-aadsts90002-reformatted.txt");
    let sso = s.sso_state.as_ref().unwrap();
    assert_eq!(sso.azure_ad_prt, Some(false));
    // No `AcquirePrtDiagnostics : PRESENT` line, still the acquire block.
    let p = sso.acquire_prt_diagnostics.as_ref().unwrap();
    assert_eq!(p.prt, "azure_ad");
    assert_eq!(p.attempt_status, Some(0xc000_00d0));
    assert_eq!(p.server_error_code, st("invalid_request"));
    assert_eq!(
        p.server_error_description,
        st("AADSTS90002: Tenant 'earthlocal.com' not found.")
    );
    assert_eq!(p.http_status, None);
    assert!(sso.refresh_prt_diagnostics.is_none());
    // Server Error Code is the PRT one, not Previous Registration's Server ErrorCode.
    assert!(s.diagnostics.is_none());
    assert!(s.extra.is_empty() && s.warnings.is_empty());
}

#[test]
fn debug_trace_federated_auth_fail_sync_join_0x801c03f2() {
    let s = snap("debug-trace-federated-auth-fail-sync-join-0x801c03f2.txt");
    let ds = s.device_state.as_ref().unwrap();
    assert_eq!(ds.azure_ad_joined, Some(false));
    assert_eq!(ds.enterprise_joined, Some(false));
    assert_eq!(ds.domain_joined, None);
    // The trace's `key: value` lines are not typed.
    assert!(s.diagnostics.is_none() && s.tenant_details.is_none());
    // 59 non-blank trace lines before the marker, all in extra under section "".
    assert_eq!(s.extra.len(), 59);
    assert!(
        s.extra
            .iter()
            .all(|x| x.section.is_empty() && x.key.is_empty())
    );
    assert!(has_extra(
        &s,
        "",
        "",
        "dsregcmd::wmain logging initialized."
    ));
    assert!(has_extra(
        &s,
        "",
        "",
        "DsrDeviceAutoJoin failed 0x801c03f2."
    ));
    assert_eq!(s.warnings.len(), 1);
    assert_eq!(warned(&s, "/debug trace"), 1);
}

#[test]
fn doc_diagnostic_data_discover_fail_0x801c0021_0x801c000c() {
    let s = snap("doc-diagnostic-data-discover-fail-0x801c0021-0x801c000c.txt");
    let d = s.diagnostics.as_ref().unwrap();
    assert_eq!(d.user_context, st("SYSTEM"));
    assert_eq!(d.client_time, st("2019-01-31T09:25:31Z"));
    let t = d.tests.as_ref().unwrap();
    assert_eq!(t.ad_connectivity, test(TestStatus::Pass, None, None));
    assert_eq!(t.ad_configuration, test(TestStatus::Pass, None, None));
    assert_eq!(
        t.drs_discovery,
        test(TestStatus::Fail, Some(0x801c_0021), Some(0x801c_000c))
    );
    assert_eq!(t.drs_connectivity, test(TestStatus::Skipped, None, None));
    assert_eq!(t.token_acquisition, test(TestStatus::Skipped, None, None));
    assert_eq!(d.fallback_to_sync_join, Some(true));
    let p = d.previous_registration.as_ref().unwrap();
    assert_eq!(p.time, st("2019-01-31T09:23:30Z"));
    assert_eq!(p.error_phase, st("discover"));
    assert_eq!(p.client_error_code, Some(0x801c_0021));
    assert_eq!(p.server_error_code, None);
    assert_eq!(p.https_status, None);
    assert!(s.extra.is_empty() && s.warnings.is_empty());
}

#[test]
fn doc_2019_diagnostic_data_drs_discovery_fail() {
    let s = snap("doc-2019-diagnostic-data-drs-discovery-fail.txt");
    let d = s.diagnostics.as_ref().unwrap();
    assert_eq!(d.user_context, st("UN-ELEVATED User"));
    assert_eq!(d.client_time, st("2019-06-05T08:25:29Z"));
    let t = d.tests.as_ref().unwrap();
    assert_eq!(
        t.drs_discovery,
        test(TestStatus::Fail, Some(0x801c_0021), Some(0x8007_2ee2))
    );
    assert_eq!(t.drs_connectivity, test(TestStatus::Skipped, None, None));
    assert_eq!(d.fallback_to_sync_join, Some(true));
    assert!(d.previous_registration.is_none());
    assert!(s.extra.is_empty() && s.warnings.is_empty());
}

/// Derived variants: what real captures look like on the way to the agent (CRLF, BOMs,
/// UTF-16 from a PowerShell redirect, copy-paste indentation, OEM code page) must give the
/// same snapshot as the LF/ASCII fixture.
mod variants {
    use super::*;
    use dsreg_agent::dsregcmd::decode::encode_cp850;
    use dsreg_agent::dsregcmd::{Encoding, decode};

    fn text(name: &str) -> String {
        String::from_utf8(load(name)).unwrap()
    }

    fn utf16(text: &str, le: bool) -> Vec<u8> {
        let mut out = if le {
            vec![0xFF, 0xFE]
        } else {
            vec![0xFE, 0xFF]
        };
        for u in text.encode_utf16() {
            out.extend(if le { u.to_le_bytes() } else { u.to_be_bytes() });
        }
        out
    }

    fn indented(text: &str) -> String {
        text.lines().map(|l| format!("    {l}\n")).collect()
    }

    #[test]
    fn line_endings_boms_utf16_and_indentation_do_not_matter() {
        for name in common::dsregcmd_names() {
            let name = name.as_str();
            let t = text(name);
            let base = parse(t.as_bytes());
            let variants: Vec<(&str, Vec<u8>)> = vec![
                ("CRLF", t.replace('\n', "\r\n").into_bytes()),
                ("lone CR", t.replace('\n', "\r").into_bytes()),
                ("UTF-8 BOM", [&b"\xEF\xBB\xBF"[..], t.as_bytes()].concat()),
                ("UTF-16LE BOM", utf16(&t, true)),
                ("UTF-16BE BOM", utf16(&t, false)),
                ("UTF-16LE BOM CRLF", utf16(&t.replace('\n', "\r\n"), true)),
                ("indent 4", indented(&t).into_bytes()),
            ];
            for (what, bytes) in variants {
                assert_eq!(parse(&bytes), base, "{name}: {what}");
            }
        }
    }

    #[test]
    fn bom_less_utf16le_is_detected_with_a_warning() {
        let t = text("entra-joined-healthy-prt-cloud-tgt.txt");
        let bytes: Vec<u8> = t.encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(decode(&bytes).encoding, Encoding::Utf16Le { bom: false });
        let mut got = parse(&bytes);
        assert_eq!(got.warnings.len(), 1);
        assert!(got.warnings[0].message.contains("UTF-16LE"));
        got.warnings.clear();
        assert_eq!(got, parse(t.as_bytes()));
    }

    const TENANT: &str = "Société Générale Ünïcødé";

    fn non_ascii() -> String {
        text("entra-joined-healthy-prt-cloud-tgt.txt").replace("INE Security Labs", TENANT)
    }

    fn tenant_name(s: &Snapshot) -> Option<&str> {
        s.tenant_details.as_ref()?.tenant_name.as_deref()
    }

    #[test]
    fn non_ascii_tenant_survives_utf8_and_utf16() {
        let t = non_ascii();
        let s8 = parse(t.as_bytes());
        assert_eq!(tenant_name(&s8), Some(TENANT));
        assert!(s8.warnings.is_empty());
        assert_eq!(parse(&utf16(&t, true)), s8);
        let bom8 = [&b"\xEF\xBB\xBF"[..], t.as_bytes()].concat();
        assert_eq!(parse(&bom8), s8);
    }

    #[test]
    fn oem_code_page_850_bytes_decode_right() {
        let t = non_ascii();
        let bytes = encode_cp850(&t);
        assert_ne!(bytes, t.as_bytes());
        assert_eq!(decode(&bytes).encoding, Encoding::Cp850);
        let mut s = parse(&bytes);
        assert_eq!(tenant_name(&s), Some(TENANT));
        assert_eq!(s.warnings.len(), 1);
        assert!(s.warnings[0].message.contains("code page 850"));
        s.warnings.clear();
        assert_eq!(s, parse(t.as_bytes()));
    }
}
