//! Tests of the attempt model (DESIGN §4) and the classification fixes of issue 11: one test
//! per correlation rule, the property that any interleaving or duplication of one attempt's
//! records gives that one attempt, and the seven misclassifications.

use proptest::prelude::*;

use super::*;
use crate::v1::{
    DeviceDetails, DeviceState, Diagnostics, JoinConfig, NgcPrerequisiteCheck,
    PreviousRegistration, PrtDiagnostics, ServerResponse, SsoState, UserState,
};

const DIRECTORY_FAILURE: u32 = 0x801c_03f2;

fn domain_joined() -> Snapshot {
    Snapshot {
        device_state: Some(DeviceState {
            azure_ad_joined: Some(false),
            domain_joined: Some(true),
            ..DeviceState::default()
        }),
        ..Snapshot::default()
    }
}

fn hybrid_joined() -> Snapshot {
    let mut s = domain_joined();
    if let Some(d) = s.device_state.as_mut() {
        d.azure_ad_joined = Some(true);
    }
    s
}

fn rec(id: u32, record_id: u64, time: &str, code: Option<u32>) -> EventRecord {
    EventRecord {
        event_id: id,
        record_id,
        time: Some(time.to_owned()),
        exit_code: code,
        ..EventRecord::default()
    }
}

fn answer(id: u32, record_id: u64, time: &str, error_type: &str, message: &str) -> EventRecord {
    EventRecord {
        http_status: Some(400),
        server_response: Some(ServerResponse {
            error_type: Some(error_type.to_owned()),
            message: Some(message.to_owned()),
            ..ServerResponse::default()
        }),
        ..rec(id, record_id, time, Some(DIRECTORY_FAILURE))
    }
}

const NOT_FOUND: &str =
    "The device object by the given id (f87ed8ef-b923-4c78-8539-c9e49fd923e2) is not found.";
const WRONG_TENANT: &str = "AADSTS90002: Tenant 5c8e9c62-0000-0000-0000-000000000000 not found. This may happen if there are no active subscriptions for the tenant.";
const THROTTLED: &str = "Your request is throttled temporarily. Please try after 300 seconds.";

/// One hourly attempt: trigger, the server's answer, the 304 logged twice.
fn attempt(base: u64, hour: u32, message: &str) -> Vec<EventRecord> {
    let t = |s: u32| format!("2025-03-09T{hour:02}:00:{s:02}Z");
    vec![
        rec(4096, base, &t(0), None),
        answer(204, base + 1, &t(4), "DirectoryError", message),
        rec(304, base + 2, &t(5), Some(DIRECTORY_FAILURE)),
        rec(304, base + 3, &t(5), Some(DIRECTORY_FAILURE)),
    ]
}

// ── correlation and classification ──────────────────────────────────────────────────────────

#[test]
fn a_304_alone_takes_its_cause_from_the_204_of_the_same_attempt() {
    let events: Vec<_> = [attempt(1, 10, NOT_FOUND), attempt(10, 11, NOT_FOUND)].concat();
    let all = attempts(&domain_joined(), &events);
    assert_eq!(all.len(), 2, "{all:?}");
    for a in &all {
        assert_eq!(a.cause, "device_not_synced");
        assert_eq!(a.phase, Phase::Join as i32);
        assert_eq!(a.code, Some(DIRECTORY_FAILURE));
        assert_eq!(a.server_error_type.as_deref(), Some("DirectoryError"));
        assert_eq!(a.sources.len(), 4);
    }
    assert_eq!(
        all[0].time.as_deref(),
        Some("2025-03-09T11:00:05Z"),
        "newest first"
    );
}

#[test]
fn legacy_builds_tell_sync_lag_wrong_tenant_and_throttling_apart_from_events_alone() {
    let mut s = domain_joined();
    s.join_config = Some(JoinConfig {
        os_build: Some("10.0.14393.7428".into()),
        ..JoinConfig::default()
    });
    for (message, want) in [
        (NOT_FOUND, "device_not_synced"),
        (WRONG_TENANT, "tenant_not_found"),
        (THROTTLED, "throttled"),
    ] {
        let f = failure(&s, &attempt(1, 9, message), ExecutionContext::System).expect("failing");
        assert_eq!(f.cause, want, "{message}");
        assert_eq!(f.source, "event:304");
    }
}

#[test]
fn previous_registration_merges_into_the_run_it_describes() {
    let mut s = domain_joined();
    s.diagnostics = Some(Diagnostics {
        previous_registration: Some(PreviousRegistration {
            time: Some("2025-03-09T11:00:05Z".into()),
            client_error_code: Some(DIRECTORY_FAILURE),
            error_phase: Some("join".into()),
            registration_type: Some("sync".into()),
            ..PreviousRegistration::default()
        }),
        ..Diagnostics::default()
    });
    let events: Vec<_> = [attempt(1, 10, NOT_FOUND), attempt(10, 11, NOT_FOUND)].concat();
    let all = attempts(&s, &events);
    assert_eq!(
        all.len(),
        2,
        "the block is the newest run, not a third attempt"
    );
    assert_eq!(all[0].sources[0], "previous_registration");
    assert_eq!(
        all[0].cause, "device_not_synced",
        "the 204's message refines it"
    );
    let f = failure(&s, &events, ExecutionContext::System).expect("failing");
    assert_eq!(f.source, "previous_registration");
    assert!(
        f.evidence.iter().any(|e| e.starts_with("event 204")),
        "{:?}",
        f.evidence
    );
}

#[test]
fn a_304_older_than_the_previous_registration_is_its_own_older_attempt() {
    let mut s = domain_joined();
    s.diagnostics = Some(Diagnostics {
        previous_registration: Some(PreviousRegistration {
            time: Some("2025-03-09T15:00:00Z".into()),
            client_error_code: Some(0x801c_0021),
            error_phase: Some("discover".into()),
            ..PreviousRegistration::default()
        }),
        ..Diagnostics::default()
    });
    let all = attempts(&s, &attempt(1, 10, NOT_FOUND));
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].sources, ["previous_registration"]);
    assert_eq!(all[0].phase, Phase::Discover as i32);
    assert_eq!(all[1].cause, "device_not_synced");
}

#[test]
fn a_failing_device_stays_failing_until_a_newer_attempt_or_success() {
    let s = domain_joined();
    let failed = attempt(1, 10, WRONG_TENANT);
    let f = failure(&s, &failed, ExecutionContext::System).expect("failing");
    assert_eq!(f.cause, "tenant_not_found");
    // A newer success clears it.
    let mut later = failed.clone();
    later.push(rec(4096, 20, "2025-03-09T11:00:00Z", None));
    later.push(rec(306, 21, "2025-03-09T11:00:09Z", None));
    assert_eq!(failure(&s, &later, ExecutionContext::System), None);
    let all = attempts(&s, &later);
    assert!(all[0].succeeded && !all[1].succeeded, "{all:?}");
    // A joined device: old attempts are history.
    assert_eq!(
        failure(&hybrid_joined(), &failed, ExecutionContext::System),
        None
    );
}

#[test]
fn records_of_other_logs_are_never_read_as_registration_records() {
    let mut downlevel = rec(201, 7, "2025-03-09T10:00:00Z", None);
    downlevel.channel = Some("Microsoft-Workplace Join".into());
    let mut s = domain_joined();
    apply(&mut s, &[downlevel], ExecutionContext::System);
    assert_eq!(s.failure, None);
    assert!(s.attempts.is_empty());
    assert!(
        s.warnings.iter().any(|w| w.message.contains("another log")),
        "{:?}",
        s.warnings
    );
}

#[test]
fn new_event_ids_carry_their_failures() {
    let s = domain_joined();
    let cases = [
        (
            rec(309, 1, "2025-03-09T10:00:00Z", Some(0x8007_2ee2)),
            Phase::Discover,
            "network_timeout",
        ),
        (
            rec(330, 1, "2025-03-09T10:00:00Z", None),
            Phase::Discover,
            "both_drs_configured",
        ),
        (
            rec(344, 1, "2025-03-09T10:00:00Z", None),
            Phase::Join,
            "tpm_locked_out",
        ),
        (
            rec(345, 1, "2025-03-09T10:00:00Z", None),
            Phase::Join,
            "tpm_keyset_missing",
        ),
        (
            rec(369, 1, "2025-03-09T10:00:00Z", Some(0x8007_0003)),
            Phase::PreCheck,
            "join_task_state_failed",
        ),
        (
            rec(206, 1, "2025-03-09T10:00:00Z", Some(0x8009_0016)),
            Phase::PostJoin,
            "tpm_keyset_missing",
        ),
    ];
    for (e, phase, cause) in cases {
        let id = e.event_id;
        let f = failure(&s, &[e], ExecutionContext::System).expect("failing");
        assert_eq!(
            (f.phase, f.cause.as_str()),
            (phase as i32, cause),
            "event {id}"
        );
    }
    // Proxy diagnostics alone are no attempt.
    assert_eq!(
        failure(
            &s,
            &[rec(337, 1, "2025-03-09T10:00:00Z", None)],
            ExecutionContext::System
        ),
        None
    );
}

#[test]
fn scp_read_or_not_configured_from_the_ad_configuration_test() {
    let events = [rec(
        307,
        1,
        "2025-03-09T10:00:00Z",
        Some(ADCONFIG_READ_FAILED),
    )];
    let with_test = |code, sub| {
        let mut s = domain_joined();
        s.diagnostics = Some(Diagnostics {
            tests: Some(DiagnosticTests {
                ad_configuration: Some(TestResult {
                    result: TestStatus::Fail as i32,
                    code: Some(code),
                    sub_code: sub,
                }),
                ..DiagnosticTests::default()
            }),
            ..Diagnostics::default()
        });
        failure(&s, &events, ExecutionContext::System).map(|f| f.cause)
    };
    assert_eq!(
        with_test(ADCONFIG_READ_FAILED, Some(FILE_NOT_FOUND)).as_deref(),
        Some("scp_not_configured")
    );
    assert_eq!(
        with_test(ADCONFIG_READ_FAILED, Some(0x8007_054b)).as_deref(),
        Some("scp_read_failed")
    );
    // A client-side SCP (targeted rollout) means one is configured.
    let mut s = domain_joined();
    s.join_config = Some(JoinConfig {
        registry_tenant_id: Some("5c8e9c62-0000-0000-0000-000000000000".into()),
        ..JoinConfig::default()
    });
    assert_eq!(
        failure(&s, &events, ExecutionContext::System)
            .map(|f| f.cause)
            .as_deref(),
        Some("scp_read_failed")
    );
    // 0x80070002 as another test's sub-code says nothing about the SCP.
    let mut s = domain_joined();
    s.diagnostics = Some(Diagnostics {
        tests: Some(DiagnosticTests {
            drs_discovery: Some(TestResult {
                result: TestStatus::Fail as i32,
                code: Some(0x801c_0021),
                sub_code: Some(FILE_NOT_FOUND),
            }),
            ..DiagnosticTests::default()
        }),
        previous_registration: Some(PreviousRegistration {
            client_error_code: Some(ADCONFIG_READ_FAILED),
            error_phase: Some("discover".into()),
            ..PreviousRegistration::default()
        }),
        ..Diagnostics::default()
    });
    assert_ne!(
        failure(&s, &[], ExecutionContext::System)
            .map(|f| f.cause)
            .as_deref(),
        Some("scp_not_configured")
    );
}

#[test]
fn a_debug_trace_keeps_every_failure_in_order() {
    let lines = [
        "AutoEnrollAsComputer: Unable to retrieve access token. GetComputerTokenForADRS failed with error 0xcaa9002c.",
        "DsrCmdJoinHelper::Join: Federated ADRS join failed with error 0xcaa1000e. Try synchronized join.",
        "Join error code: DirectoryError",
        "Join message: The device object by the given id (Device ID) is not found.",
        "DsrDeviceAutoJoin failed 0x801c03f2.",
    ];
    let mut s = domain_joined();
    s.extra = lines
        .iter()
        .map(|l| crate::v1::ExtraField {
            value: (*l).to_owned(),
            ..Default::default()
        })
        .collect();
    let f = failure(&s, &[], ExecutionContext::System).expect("failing");
    assert_eq!(f.cause, "device_not_synced");
    let federated = f.evidence.iter().position(|e| e.contains("0xcaa1000e"));
    let sync = f
        .evidence
        .iter()
        .position(|e| e.contains("DsrDeviceAutoJoin failed"));
    assert!(
        matches!((federated, sync), (Some(a), Some(b)) if a < b),
        "{:?}",
        f.evidence
    );
    let all = attempts(&s, &[]);
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0].code, Some(DIRECTORY_FAILURE));
    assert_eq!(all[1].code, Some(0xcaa1_000e));
}

// ── post-join fixes ─────────────────────────────────────────────────────────────────────────

#[test]
fn device_auth_status_error_is_not_a_disabled_device() {
    let mut s = hybrid_joined();
    s.device_details = Some(DeviceDetails {
        device_auth_status: Some("FAILED. ERROR".into()),
        ..DeviceDetails::default()
    });
    let f = failure(&s, &[], ExecutionContext::System).expect("failing");
    assert_eq!(f.cause, "device_auth_check_failed");
    s.device_details = Some(DeviceDetails {
        device_auth_status: Some("FAILED. Device is either disabled or deleted".into()),
        ..DeviceDetails::default()
    });
    let f = failure(&s, &[], ExecutionContext::System).expect("failing");
    assert_eq!(f.cause, "device_auth_failed");
    // Before 21H1 dsregcmd had no such line: the rule does not apply.
    s.join_config = Some(JoinConfig {
        os_build: Some("10.0.18363.1500".into()),
        ..JoinConfig::default()
    });
    assert_eq!(failure(&s, &[], ExecutionContext::System), None);
    // The merged id still resolves.
    assert_eq!(
        catalog::cause("device_authentication_failed").map(|c| c.id),
        Some("device_auth_failed")
    );
}

#[test]
fn no_prt_only_for_an_entra_user_and_a_stale_prt_is_its_own_finding() {
    let mut s = hybrid_joined();
    s.sso_state = Some(SsoState {
        azure_ad_prt: Some(false),
        ..SsoState::default()
    });
    s.diagnostics = Some(Diagnostics {
        executing_account_name: Some("PC01\\localadmin".into()),
        ..Diagnostics::default()
    });
    assert_eq!(
        failure(&s, &[], ExecutionContext::User),
        None,
        "a local account"
    );
    assert!(!without_prt(&s, ExecutionContext::User));
    s.ngc_prerequisite_check = Some(NgcPrerequisiteCheck {
        is_user_azure_ad: Some(true),
        ..NgcPrerequisiteCheck::default()
    });
    assert_eq!(
        failure(&s, &[], ExecutionContext::User)
            .map(|f| f.cause)
            .as_deref(),
        Some("no_prt")
    );
    assert!(without_prt(&s, ExecutionContext::User));

    s.sso_state = Some(SsoState {
        azure_ad_prt: Some(true),
        azure_ad_prt_update_time: Some("2025-03-01T08:00:00Z".into()),
        ..SsoState::default()
    });
    s.diagnostics = Some(Diagnostics {
        client_time: Some("2025-03-03T08:00:00Z".into()),
        ..Diagnostics::default()
    });
    assert_eq!(
        failure(&s, &[], ExecutionContext::User)
            .map(|f| f.cause)
            .as_deref(),
        Some("prt_stale")
    );
    if let Some(d) = s.diagnostics.as_mut() {
        d.client_time = Some("2025-03-01T20:00:00Z".into());
    }
    assert_eq!(failure(&s, &[], ExecutionContext::User), None);
}

#[test]
fn prt_status_is_judged_with_the_prt_rules() {
    let mut s = hybrid_joined();
    s.sso_state = Some(SsoState {
        azure_ad_prt: Some(false),
        acquire_prt_diagnostics: Some(PrtDiagnostics {
            attempt_status: Some(0xc004_1234),
            server_error_code: Some("invalid_request".into()),
            server_error_description: Some("AADSTS90002: Tenant 'contoso.local' not found.".into()),
            ..PrtDiagnostics::default()
        }),
        ..SsoState::default()
    });
    let f = failure(&s, &[], ExecutionContext::User).expect("failing");
    assert_eq!(f.cause, "upn_suffix_not_verified");
    assert_eq!(f.phase, Phase::PostJoin as i32);
    // Without a server text the uncatalogued CloudAP status is its facility's.
    if let Some(d) = s
        .sso_state
        .as_mut()
        .and_then(|x| x.acquire_prt_diagnostics.as_mut())
    {
        d.server_error_description = None;
        d.server_error_code = None;
    }
    let f = failure(&s, &[], ExecutionContext::User).expect("failing");
    assert_eq!(f.cause, "unknown_cloudap");
}

#[test]
fn dual_state_is_flagged() {
    let mut s = hybrid_joined();
    s.user_state = Some(UserState {
        workplace_joined: Some(true),
        ..UserState::default()
    });
    let f = failure(&s, &[], ExecutionContext::User).expect("failing");
    assert_eq!(
        (f.phase, f.cause.as_str()),
        (Phase::PostJoin as i32, "dual_state")
    );
}

// ── join intent (DESIGN §4b) ────────────────────────────────────────────────────────────────

#[test]
fn disabled_task_fails_and_untargeted_devices_do_not() {
    let events = [rec(
        307,
        1,
        "2025-03-09T10:00:00Z",
        Some(ADCONFIG_READ_FAILED),
    )];
    let mut s = domain_joined();
    s.join_config = Some(JoinConfig {
        task_enabled: Some(false),
        ..JoinConfig::default()
    });
    let f = failure(&s, &events, ExecutionContext::System).expect("failing");
    assert_eq!(
        (f.phase, f.cause.as_str()),
        (Phase::PreCheck as i32, "join_task_disabled")
    );
    for (config, reason) in [
        (
            JoinConfig {
                product_type: Some("LanmanNT".into()),
                ..JoinConfig::default()
            },
            "domain_controller",
        ),
        (
            JoinConfig {
                policy_auto_workplace_join: Some(false),
                ..JoinConfig::default()
            },
            "policy_disabled",
        ),
    ] {
        let mut s = domain_joined();
        s.join_config = Some(config);
        apply(&mut s, &events, ExecutionContext::System);
        assert_eq!(s.failure, None, "{reason}");
        assert_eq!(s.not_targeted.as_deref(), Some(reason));
    }
    // A member server without an SCP is still failing.
    let mut s = domain_joined();
    s.join_config = Some(JoinConfig {
        product_type: Some("ServerNT".into()),
        ..JoinConfig::default()
    });
    apply(&mut s, &events, ExecutionContext::System);
    assert_eq!(
        s.failure.map(|f| f.cause).as_deref(),
        Some("scp_not_configured")
    );
    assert_eq!(s.not_targeted, None);
}

// ── property: interleaving and duplication ──────────────────────────────────────────────────

proptest! {
    #[test]
    fn any_interleaving_or_duplication_gives_the_same_single_attempt(
        order in Just((0..4usize).collect::<Vec<_>>()).prop_shuffle(),
        dups in proptest::collection::vec(0..4usize, 0..6),
    ) {
        let base = attempt(1, 10, NOT_FOUND);
        let mut events: Vec<EventRecord> = order.iter().map(|i| base[*i].clone()).collect();
        for d in dups {
            events.insert(d % (events.len() + 1), base[d].clone());
        }
        let want = attempts(&domain_joined(), &base);
        let got = attempts(&domain_joined(), &events);
        prop_assert_eq!(got.len(), 1);
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(got[0].cause.as_str(), "device_not_synced");
    }

    #[test]
    fn any_records_give_attempts_without_panicking(
        ids in proptest::collection::vec(prop_oneof![Just(201u32), Just(204), Just(304), Just(305), Just(306), Just(4096), 0u32..5000], 0..40),
        secs in proptest::collection::vec(0u32..7200, 0..40),
    ) {
        let events: Vec<EventRecord> = ids
            .iter()
            .zip(secs.iter().chain(std::iter::repeat(&0)))
            .enumerate()
            .map(|(i, (id, s))| rec(*id, i as u64 % 7, &format!("2025-03-09T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60), Some(DIRECTORY_FAILURE)))
            .collect();
        let all = attempts(&domain_joined(), &events);
        prop_assert!(all.len() <= events.len());
        for a in &all {
            prop_assert!(a.succeeded || catalog::cause(&a.cause).is_some(), "{:?}", a);
        }
    }
}
