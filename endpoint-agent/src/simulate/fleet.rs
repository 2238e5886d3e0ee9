//! The synthetic fleet: stable device identities, a realistic mix of states, and one report per
//! (device, moment).
//!
//! Every snapshot starts from a parsed fixture of `testdata/dsregcmd/` (embedded with
//! `include_bytes!`, parsed once) and is mutated the way a real device's output differs
//! (identity, Previous Registration block, PRT state), then goes through
//! [`dsreg_proto::diagnosis::apply`] so it classifies exactly like a real capture. The templates
//! are diagnosed once per [`Profile`]; a report clones its profile's template and stamps the
//! device's identity, which keeps report generation cheap enough for load tests.
//!
//! Size: about 460 lines of code; the rest of the file is its unit tests (the state mix and
//! the diagnosis of every profile), kept beside it.

use dsreg_proto::v1::{
    DeviceDetails, DeviceState, DiagnosticTests, EventRecord, PreviousRegistration, ServerResponse,
    SsoState,
};
use dsreg_proto::{ExecutionContext, Report, Snapshot, diagnosis};
use prost_types::Timestamp;

use crate::dsregcmd;
use crate::report::AGENT_VERSION;

/// What a simulated device reports. The discriminant is its index in [`Profile::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Hybrid joined, PRT present: the bulk of a fleet.
    HybridHealthy,
    /// Hybrid joined and healthy, but stops reporting after its first report (decommissioned).
    Stale,
    /// Hybrid joined, no PRT in the user's context.
    NoPrt,
    /// Hybrid joined, PRT acquisition fails with 0xc00000d0 / AADSTS90002 (UPN suffix).
    PrtUpnSuffix,
    /// Hybrid joined, PRT acquisition fails with 0xc000006d / AADSTS50126 (credentials).
    PrtBadCredentials,
    /// Domain joined, 0x801c001d: no SCP found (discover).
    NoScp,
    /// Domain joined, DRS discovery test fails with 0x801c0021 / 0x80072ee2 (proxy, timeout).
    DiscoverTimeout,
    /// Domain joined, 0xcaa82ee2: ADAL network timeout (auth).
    AuthTimeout,
    /// Domain joined, 0x801c03f2 "device object … not found" (sync lag; heals).
    DeviceNotSynced,
    /// Domain joined, 0x801c03f2 with AADSTS90002 (wrong tenant in the SCP; does not heal).
    TenantNotFound,
    /// Domain joined, 0x801c03f2 "throttled, try after 300 seconds".
    Throttled,
    /// Domain joined, 0x80090016 NTE_BAD_KEYSET: the TPM key is gone (join).
    TpmKeyset,
}

/// Share of each profile per 1000 devices in the steady mix, in [`Profile::ALL`] order.
pub const MIX_PER_MILLE: [(Profile, u32); 12] = [
    (Profile::HybridHealthy, 790),
    (Profile::Stale, 30),
    (Profile::NoPrt, 40),
    (Profile::PrtUpnSuffix, 10),
    (Profile::PrtBadCredentials, 10),
    (Profile::NoScp, 30),
    (Profile::DiscoverTimeout, 25),
    (Profile::AuthTimeout, 15),
    (Profile::DeviceNotSynced, 30),
    (Profile::TenantNotFound, 5),
    (Profile::Throttled, 5),
    (Profile::TpmKeyset, 10),
];

impl Profile {
    /// Every profile, in template order.
    pub const ALL: [Profile; 12] = [
        Profile::HybridHealthy,
        Profile::Stale,
        Profile::NoPrt,
        Profile::PrtUpnSuffix,
        Profile::PrtBadCredentials,
        Profile::NoScp,
        Profile::DiscoverTimeout,
        Profile::AuthTimeout,
        Profile::DeviceNotSynced,
        Profile::TenantNotFound,
        Profile::Throttled,
        Profile::TpmKeyset,
    ];

    fn index(self) -> usize {
        Profile::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }

    /// True for devices that are hybrid joined when healthy (candidates for a re-imaging burst).
    pub fn is_healthy_hybrid(self) -> bool {
        matches!(self, Profile::HybridHealthy)
    }

    /// Who ran dsregcmd: post-join PRT state is only meaningful in the user's context.
    fn context(self) -> ExecutionContext {
        match self {
            Profile::HybridHealthy
            | Profile::Stale
            | Profile::NoPrt
            | Profile::PrtUpnSuffix
            | Profile::PrtBadCredentials => ExecutionContext::User,
            _ => ExecutionContext::System,
        }
    }
}

/// SplitMix64: a tiny, good-enough deterministic mixer (no `rand` dependency).
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The profile of device `index` in a fleet seeded with `seed` (stable across runs).
pub fn profile_of(seed: u64, index: u64) -> Profile {
    let roll = (mix(seed ^ mix(index)) % 1000) as u32;
    let mut acc = 0;
    for (p, share) in MIX_PER_MILLE {
        acc += share;
        if roll < acc {
            return p;
        }
    }
    Profile::HybridHealthy
}

/// A UUID-shaped, stable machine id for device `index` (what `MachineGuid` looks like).
pub fn machine_id(seed: u64, index: u64) -> String {
    let a = mix(seed ^ mix(index ^ 0x6d61_6368));
    let b = mix(a ^ index);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0xfff,
        b & 0xffff_ffff_ffff
    )
}

/// `PC-000421`.
pub fn hostname(index: u64) -> String {
    format!("PC-{index:06}")
}

/// The AD domain of device `index`: most in the forest root, some in regional domains.
pub fn ad_domain(index: u64) -> &'static str {
    match index % 10 {
        0..=6 => "CONTOSO",
        7 | 8 => "EMEA",
        _ => "APAC",
    }
}

const HYBRID: &[u8] = include_bytes!("../../testdata/dsregcmd/hybrid-joined-tpm-truncated.txt");
const DOMAIN: &[u8] =
    include_bytes!("../../testdata/dsregcmd/domain-joined-discover-0x801c001d-elevated-ws2022.txt");
const DISCOVER: &[u8] =
    include_bytes!("../../testdata/dsregcmd/doc-2019-diagnostic-data-drs-discovery-fail.txt");
const PRT_UPN: &[u8] = include_bytes!(
    "../../testdata/dsregcmd/hybrid-prt-fail-0xc00000d0-aadsts90002-reformatted.txt"
);
const PRT_CREDS: &[u8] = include_bytes!(
    "../../testdata/dsregcmd/doc-sso-state-prt-diagnostics-0xc000006d-aadsts50126.txt"
);

/// The tenant every simulated device belongs to.
pub const TENANT_ID: &str = "5c8e9c62-5d1a-4d6e-9b0f-2f3c4a5b6c7d";

fn directory_failure(message: &str, https_status: u32) -> PreviousRegistration {
    PreviousRegistration {
        registration_type: Some("sync".into()),
        error_phase: Some("join".into()),
        client_error_code: Some(0x801c_03f2),
        server_error_code: Some("DirectoryError".into()),
        server_operation: Some("DeviceRegister".into()),
        server_message: Some(message.into()),
        https_status: Some(https_status),
        ..Default::default()
    }
}

fn previous(phase: &str, code: u32) -> PreviousRegistration {
    PreviousRegistration {
        registration_type: Some("sync".into()),
        error_phase: Some(phase.into()),
        client_error_code: Some(code),
        ..Default::default()
    }
}

/// One diagnosed snapshot per profile, built from the embedded fixtures.
#[derive(Debug, Clone)]
pub struct Templates {
    snapshots: Vec<Snapshot>,
}

impl Templates {
    /// Parses the embedded fixtures once and builds (and diagnoses) every profile's snapshot.
    pub fn new() -> Templates {
        let mut hybrid = dsregcmd::parse(HYBRID);
        {
            let ds = hybrid.device_state.get_or_insert_with(DeviceState::default);
            ds.azure_ad_joined = Some(true);
            ds.domain_joined = Some(true);
            let sso = hybrid.sso_state.get_or_insert_with(SsoState::default);
            sso.azure_ad_prt = Some(true);
        }
        let domain = {
            let mut s = dsregcmd::parse(DOMAIN);
            let ds = s.device_state.get_or_insert_with(DeviceState::default);
            ds.azure_ad_joined = Some(false);
            ds.domain_joined = Some(true);
            s
        };
        // A domain-joined capture whose only failure is the given Previous Registration block.
        let failed = |p: PreviousRegistration| {
            let mut s = domain.clone();
            let d = s.diagnostics.get_or_insert_with(Default::default);
            d.tests = None;
            d.previous_registration = Some(p);
            s
        };
        let with_sso = |source: &[u8]| {
            let mut s = hybrid.clone();
            s.sso_state = dsregcmd::parse(source).sso_state;
            s
        };
        let snapshots = Profile::ALL
            .iter()
            .map(|p| {
                let (mut s, context) = match p {
                    Profile::HybridHealthy | Profile::Stale => (hybrid.clone(), p.context()),
                    Profile::NoPrt => {
                        let mut s = hybrid.clone();
                        if let Some(sso) = s.sso_state.as_mut() {
                            sso.azure_ad_prt = Some(false);
                        }
                        // An Entra user (a local account never has a PRT).
                        s.user_state.get_or_insert_default().wam_default_set = Some(true);
                        (s, p.context())
                    }
                    Profile::PrtUpnSuffix => (with_sso(PRT_UPN), p.context()),
                    Profile::PrtBadCredentials => (with_sso(PRT_CREDS), p.context()),
                    Profile::NoScp => (domain.clone(), p.context()),
                    Profile::DiscoverTimeout => {
                        let mut s = domain.clone();
                        let tests: Option<DiagnosticTests> = dsregcmd::parse(DISCOVER)
                            .diagnostics
                            .and_then(|d| d.tests);
                        let d = s.diagnostics.get_or_insert_with(Default::default);
                        d.tests = tests;
                        d.previous_registration = None;
                        (s, p.context())
                    }
                    Profile::AuthTimeout => (failed(previous("auth", 0xcaa8_2ee2)), p.context()),
                    Profile::DeviceNotSynced => (
                        failed(directory_failure(
                            "The device object by the given id (f87ed8ef-b923-4c78-8539-c9e49fd923e2) is not found.",
                            400,
                        )),
                        p.context(),
                    ),
                    Profile::TenantNotFound => (
                        failed(directory_failure(
                            "AADSTS90002: Tenant 5c8e9c62-0000-0000-0000-000000000000 not found. This may happen if there are no active subscriptions for the tenant.",
                            400,
                        )),
                        p.context(),
                    ),
                    Profile::Throttled => (
                        failed(directory_failure(
                            "Your request is throttled temporarily. Please try after 300 seconds.",
                            429,
                        )),
                        p.context(),
                    ),
                    Profile::TpmKeyset => (failed(previous("join", 0x8009_0016)), p.context()),
                };
                if let Some(t) = s.tenant_details.as_mut() {
                    t.tenant_id = Some(TENANT_ID.into());
                }
                diagnosis::apply(&mut s, &[], context);
                s
            })
            .collect();
        Templates { snapshots }
    }

    /// The diagnosed template of `profile`.
    pub fn snapshot(&self, profile: Profile) -> &Snapshot {
        &self.snapshots[profile.index()]
    }
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new()
    }
}

/// The server's answer of each directory-failure profile: (message, HTTP status).
fn directory_answer(profile: Profile) -> Option<(&'static str, u32)> {
    match profile {
        Profile::DeviceNotSynced => Some((
            "The device object by the given id (f87ed8ef-b923-4c78-8539-c9e49fd923e2) is not found.",
            400,
        )),
        Profile::TenantNotFound => Some((
            "AADSTS90002: Tenant 5c8e9c62-0000-0000-0000-000000000000 not found. This may happen if there are no active subscriptions for the tenant.",
            400,
        )),
        Profile::Throttled => Some((
            "Your request is throttled temporarily. Please try after 300 seconds.",
            429,
        )),
        _ => None,
    }
}

/// Join attempts kept in one report: the join task retries hourly and the agent collects less
/// often than that after an outage or at start, so a window holds several.
pub const ATTEMPTS_PER_REPORT: i64 = 2;

/// Device `index` runs a build without Diagnostic Data (Windows Server 2016 / before 1803):
/// one in five of the failing devices, whose events are the only evidence.
pub fn is_legacy(index: u64) -> bool {
    index.is_multiple_of(5)
}

/// The registration records of the attempts of the last [`ATTEMPTS_PER_REPORT`] hours, as a
/// device logs them: 4096 (trigger), 204 (the server's answer), 304 twice. Record ids follow
/// from the hour, so a repeated report repeats the same records (the collector stores them
/// once and counts each attempt once).
fn attempt_records(profile: Profile, now_s: i64) -> Vec<EventRecord> {
    let Some((message, status)) = directory_answer(profile) else {
        return Vec::new();
    };
    let hour = now_s.div_euclid(3600);
    let rfc = |s: i64| {
        time::OffsetDateTime::from_unix_timestamp(s)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
    };
    let mut out = Vec::new();
    for h in (hour - ATTEMPTS_PER_REPORT + 1)..=hour {
        let base = u64::try_from(h).unwrap_or_default() * 4;
        let at = h * 3600;
        let record = |id: u32, n: u64, dt: i64, code: Option<u32>| EventRecord {
            event_id: id,
            record_id: base + n,
            time: rfc(at + dt),
            exit_code: code,
            level: Some(if id == 4096 { "Information" } else { "Error" }.into()),
            channel: Some(dsreg_proto::diagnosis::correlate::REGISTRATION_CHANNEL.into()),
            provider: Some("Microsoft-Windows-User Device Registration".into()),
            ..Default::default()
        };
        out.push(record(4096, 0, 0, None));
        let mut answer = record(204, 1, 4, Some(0x801c_03f2));
        answer.http_status = Some(status);
        answer.server_response = Some(ServerResponse {
            error_type: Some("DirectoryError".into()),
            message: Some(message.into()),
            ..Default::default()
        });
        out.push(answer);
        for n in [2, 3] {
            let mut e = record(304, n, 5, Some(0x801c_03f2));
            e.error_phase = Some("join".into());
            e.registration_type = Some("sync".into());
            out.push(e);
        }
    }
    out
}

/// Stamps device `index`'s identity into `snapshot`: its device name and AD domain and, once
/// it is joined (`AzureAdJoined : YES`), its Entra device id. Returns whether it is joined.
pub fn stamp_identity(snapshot: &mut Snapshot, seed: u64, index: u64) -> bool {
    let domain = ad_domain(index);
    let ds = snapshot
        .device_state
        .get_or_insert_with(DeviceState::default);
    ds.device_name = Some(format!(
        "{}.{}.local",
        hostname(index),
        domain.to_ascii_lowercase()
    ));
    ds.domain_name = Some(domain.to_string());
    let joined = ds.azure_ad_joined == Some(true);
    if joined {
        let details = snapshot
            .device_details
            .get_or_insert_with(DeviceDetails::default);
        details.device_id = Some(machine_id(seed ^ 0x656e_7472, index));
    }
    joined
}

/// Builds the report device `index` sends at `now_s` (unix seconds) while in `profile`.
///
/// Identity is stamped into the snapshot (device name, domain, Entra device id once joined).
/// A failing device retries hourly: a directory-failure profile's report carries the records
/// of its last attempts ([`attempt_records`]; not in a heartbeat, which says nothing changed),
/// and its Previous Registration block describes the newest one; a legacy build
/// ([`is_legacy`]) has no Diagnostic Data, only the records. The stamped snapshot is diagnosed
/// again (its evidence quotes the attempt time). `report_id` is a fresh UUID every call.
pub fn build_report(
    templates: &Templates,
    seed: u64,
    index: u64,
    profile: Profile,
    now_s: i64,
    heartbeat: bool,
) -> Report {
    let mut snapshot = templates.snapshot(profile).clone();
    let host = hostname(index);
    let domain = ad_domain(index);
    let machine = machine_id(seed, index);
    let joined = stamp_identity(&mut snapshot, seed, index);
    if !joined
        && let Some(p) = snapshot
            .diagnostics
            .as_mut()
            .and_then(|d| d.previous_registration.as_mut())
    {
        // The newest attempt's 304 (see `attempt_records`).
        let hour = now_s - now_s.rem_euclid(3600) + 5;
        p.time = time::OffsetDateTime::from_unix_timestamp(hour)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            });
    }
    let events = if heartbeat {
        Vec::new()
    } else {
        attempt_records(profile, now_s)
    };
    let legacy = !joined && directory_answer(profile).is_some() && is_legacy(index);
    let os_build = if legacy {
        snapshot.diagnostics = None;
        "10.0.14393.7428"
    } else {
        "10.0.19045.5247"
    };
    snapshot.join_config.get_or_insert_default().os_build = Some(os_build.into());
    if !joined {
        // The evidence quotes the attempt time: diagnose the stamped snapshot again.
        diagnosis::apply(&mut snapshot, &events, profile.context());
    }
    Report {
        report_id: crate::report::new_report_id(),
        machine_id: machine,
        hostname: host,
        ad_domain: domain.to_string(),
        agent_version: AGENT_VERSION.to_string(),
        os_build: os_build.into(),
        collected_at: Some(Timestamp {
            seconds: now_s,
            nanos: 0,
        }),
        execution_context: profile.context() as i32,
        snapshot: Some(Box::new(snapshot)),
        events,
        heartbeat,
        agent: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsreg_proto::{JoinType, Phase};

    fn classify(p: Profile) -> (JoinType, Option<(Phase, Option<u32>, String)>) {
        let t = Templates::new();
        let r = build_report(&t, 7, 421, p, 1_700_000_000, false);
        // Re-diagnose the stamped report as the collector does: it must agree with the template.
        let mut s = r.snapshot.clone().unwrap_or_default();
        let ctx = ExecutionContext::try_from(r.execution_context).unwrap_or_default();
        diagnosis::apply(&mut s, &r.events, ctx);
        assert_eq!(Some(&s), r.snapshot.as_ref(), "{p:?} re-diagnoses the same");
        let join = JoinType::try_from(s.join_type).unwrap_or_default();
        let failure = s.failure.map(|f| {
            (
                Phase::try_from(f.phase).unwrap_or_default(),
                f.code,
                f.cause,
            )
        });
        (join, failure)
    }

    #[test]
    fn every_profile_classifies_as_intended() {
        use Profile::*;
        assert_eq!(classify(HybridHealthy), (JoinType::HybridJoined, None));
        assert_eq!(classify(Stale), (JoinType::HybridJoined, None));
        let want: [(Profile, JoinType, Phase, Option<u32>, &str); 10] = [
            (
                NoPrt,
                JoinType::HybridJoined,
                Phase::PostJoin,
                None,
                "no_prt",
            ),
            (
                PrtUpnSuffix,
                JoinType::HybridJoined,
                Phase::PostJoin,
                Some(0xc000_00d0),
                "upn_suffix_not_verified",
            ),
            (
                PrtBadCredentials,
                JoinType::HybridJoined,
                Phase::PostJoin,
                Some(0xc000_006d),
                "invalid_credentials",
            ),
            (
                NoScp,
                JoinType::DomainJoined,
                Phase::Discover,
                Some(0x801c_001d),
                "",
            ),
            (
                DiscoverTimeout,
                JoinType::DomainJoined,
                Phase::Discover,
                Some(0x801c_0021),
                "",
            ),
            (
                AuthTimeout,
                JoinType::DomainJoined,
                Phase::Auth,
                Some(0xcaa8_2ee2),
                "",
            ),
            (
                DeviceNotSynced,
                JoinType::DomainJoined,
                Phase::Join,
                Some(0x801c_03f2),
                "device_not_synced",
            ),
            (
                TenantNotFound,
                JoinType::DomainJoined,
                Phase::Join,
                Some(0x801c_03f2),
                "tenant_not_found",
            ),
            (
                Throttled,
                JoinType::DomainJoined,
                Phase::Join,
                Some(0x801c_03f2),
                "throttled",
            ),
            (
                TpmKeyset,
                JoinType::DomainJoined,
                Phase::Join,
                Some(0x8009_0016),
                "",
            ),
        ];
        for (p, join, phase, code, cause) in want {
            let (j, f) = classify(p);
            assert_eq!(j, join, "{p:?}");
            let (ph, c, ca) = f.unwrap_or_else(|| panic!("{p:?} has no failure"));
            assert_eq!((ph, c), (phase, code), "{p:?}");
            if !cause.is_empty() {
                assert_eq!(ca, cause, "{p:?}");
            } else {
                assert!(!ca.is_empty(), "{p:?} has a cause");
            }
        }
    }

    #[test]
    fn mix_sums_to_a_thousand_and_matches_over_a_large_fleet() {
        assert_eq!(MIX_PER_MILLE.iter().map(|(_, s)| s).sum::<u32>(), 1000);
        let n = 100_000u64;
        let mut counts = [0u64; 12];
        for i in 0..n {
            counts[profile_of(42, i).index()] += 1;
        }
        for (p, share) in MIX_PER_MILLE {
            let got = counts[p.index()] as f64 / n as f64 * 1000.0;
            let tolerance = 3.0 + f64::from(share) * 0.05;
            assert!(
                (got - f64::from(share)).abs() <= tolerance,
                "{p:?}: {got:.1}‰, want {share}‰"
            );
        }
    }

    #[test]
    fn identity_is_stable_and_distinct() {
        assert_eq!(machine_id(1, 5), machine_id(1, 5));
        assert_ne!(machine_id(1, 5), machine_id(1, 6));
        assert_ne!(machine_id(1, 5), machine_id(2, 5));
        assert!(uuid::Uuid::parse_str(&machine_id(9, 123)).is_ok());
        assert_eq!(hostname(421), "PC-000421");
        let ids: std::collections::HashSet<_> = (0..10_000).map(|i| machine_id(3, i)).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn a_failing_device_repeats_its_attempt_within_the_hour() {
        let t = Templates::new();
        let time = |now| {
            build_report(&t, 1, 2, Profile::TpmKeyset, now, false)
                .snapshot
                .and_then(|s| s.diagnostics)
                .and_then(|d| d.previous_registration)
                .and_then(|p| p.time)
        };
        assert_eq!(time(1_700_000_000), time(1_700_000_100));
        assert_eq!(time(1_700_000_000).as_deref(), Some("2023-11-14T22:00:05Z"));
        assert_ne!(time(1_700_000_000), time(1_700_003_700));
    }

    #[test]
    fn sync_lag_devices_log_hourly_attempts_that_classify_once_each() {
        let t = Templates::new();
        for index in [1, 5] {
            let r = build_report(&t, 1, index, Profile::DeviceNotSynced, 1_700_000_000, false);
            let ids: Vec<u32> = r.events.iter().map(|e| e.event_id).collect();
            assert_eq!(ids, [4096, 204, 304, 304, 4096, 204, 304, 304]);
            let s = r.snapshot.unwrap_or_default();
            assert_eq!(s.attempts.len(), 2, "{:?}", s.attempts);
            assert!(s.attempts.iter().all(|a| a.cause == "device_not_synced"));
            // Index 5 is a legacy build: no Diagnostic Data, the events alone tell the cause.
            assert_eq!(is_legacy(index), s.diagnostics.is_none());
            assert_eq!(
                s.failure.map(|f| f.cause).as_deref(),
                Some("device_not_synced")
            );
        }
        // A heartbeat says nothing changed: no records.
        let hb = build_report(&t, 1, 1, Profile::DeviceNotSynced, 1_700_000_000, true);
        assert!(hb.events.is_empty());
    }
}
