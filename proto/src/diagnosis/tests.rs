//! Unit tests for the diagnosis rules: one hand-built snapshot per rule and per ordering case.

use super::*;
use crate::v1::{
    DeviceDetails, DeviceState, Diagnostics, PreviousRegistration, PrtDiagnostics, ServerResponse,
    SsoState, UserState, WorkAccount,
};

const SCP_READ: u32 = 0x801c_001d;
const DISC_FAILED: u32 = 0x801c_0021;
const DIRECTORY_FAILURE: u32 = 0x801c_03f2;
const WININET_TIMEOUT: u32 = 0x8007_2ee2;

fn state(aad: Option<bool>, domain: Option<bool>, enterprise: Option<bool>) -> Snapshot {
    Snapshot {
        device_state: Some(DeviceState {
            azure_ad_joined: aad,
            domain_joined: domain,
            enterprise_joined: enterprise,
            ..DeviceState::default()
        }),
        ..Snapshot::default()
    }
}

fn domain_joined() -> Snapshot {
    state(Some(false), Some(true), Some(false))
}

fn hybrid_joined() -> Snapshot {
    state(Some(true), Some(true), Some(false))
}

fn entra_joined() -> Snapshot {
    state(Some(true), Some(false), Some(false))
}

fn fail(code: Option<u32>, sub_code: Option<u32>) -> Option<TestResult> {
    Some(TestResult {
        result: TestStatus::Fail as i32,
        code,
        sub_code,
    })
}

fn pass() -> Option<TestResult> {
    Some(TestResult {
        result: TestStatus::Pass as i32,
        ..TestResult::default()
    })
}

fn skipped() -> Option<TestResult> {
    Some(TestResult {
        result: TestStatus::Skipped as i32,
        ..TestResult::default()
    })
}

fn diagnostics(s: &mut Snapshot) -> &mut Diagnostics {
    s.diagnostics.get_or_insert_with(Diagnostics::default)
}

fn tests(s: &mut Snapshot) -> &mut DiagnosticTests {
    diagnostics(s)
        .tests
        .get_or_insert_with(DiagnosticTests::default)
}

fn previous(s: &mut Snapshot) -> &mut PreviousRegistration {
    diagnostics(s)
        .previous_registration
        .get_or_insert_with(PreviousRegistration::default)
}

fn event(id: u32, time: &str, record_id: u64, code: Option<u32>) -> EventRecord {
    EventRecord {
        event_id: id,
        time: Some(time.to_owned()),
        record_id,
        exit_code: code,
        ..EventRecord::default()
    }
}

fn diagnose(s: &Snapshot) -> Option<Failure> {
    failure(s, &[], ExecutionContext::User)
}

fn phase(f: &Failure) -> Phase {
    Phase::try_from(f.phase).unwrap_or(Phase::Unspecified)
}

// ── join type ───────────────────────────────────────────────────────────────────────────────

#[test]
fn join_type_from_device_state() {
    assert_eq!(join_type(&hybrid_joined()), JoinType::HybridJoined);
    assert_eq!(join_type(&entra_joined()), JoinType::EntraJoined);
    assert_eq!(
        join_type(&state(Some(false), Some(false), Some(true))),
        JoinType::EnterpriseJoined
    );
    assert_eq!(join_type(&domain_joined()), JoinType::DomainJoined);
    assert_eq!(
        join_type(&state(Some(false), Some(false), Some(false))),
        JoinType::NotJoined
    );
    // Only one flag printed, and it says NO.
    assert_eq!(
        join_type(&state(Some(false), None, None)),
        JoinType::NotJoined
    );
}

#[test]
fn join_type_unspecified_without_device_state_or_flags() {
    assert_eq!(join_type(&Snapshot::default()), JoinType::Unspecified);
    assert_eq!(join_type(&state(None, None, None)), JoinType::Unspecified);
}

#[test]
fn domain_joined_wins_over_workplace_joined() {
    let mut s = domain_joined();
    s.user_state = Some(UserState {
        workplace_joined: Some(true),
        ..UserState::default()
    });
    assert_eq!(join_type(&s), JoinType::DomainJoined);
}

#[test]
fn entra_registered_from_workplace_joined_or_work_account() {
    let mut s = state(Some(false), Some(false), Some(false));
    s.user_state = Some(UserState {
        workplace_joined: Some(true),
        ..UserState::default()
    });
    assert_eq!(join_type(&s), JoinType::EntraRegistered);

    let mut s = state(Some(false), Some(false), Some(false));
    s.work_accounts.push(WorkAccount {
        index: 1,
        ..WorkAccount::default()
    });
    assert_eq!(join_type(&s), JoinType::EntraRegistered);
}

// ── rule 1: Previous Registration ───────────────────────────────────────────────────────────

#[test]
fn previous_registration_scp_not_configured() {
    let mut s = domain_joined();
    let t = tests(&mut s);
    t.ad_connectivity = pass();
    t.ad_configuration = fail(Some(0x8007_0002), None);
    t.drs_discovery = skipped();
    let p = previous(&mut s);
    p.time = Some("2023-01-18T10:14:28Z".into());
    p.error_phase = Some("discover".into());
    p.client_error_code = Some(SCP_READ);

    let f = diagnose(&s).expect("failing");
    assert_eq!(phase(&f), Phase::Discover);
    assert_eq!(f.code, Some(SCP_READ));
    assert_eq!(f.sub_code, Some(0x8007_0002));
    assert_eq!(
        f.symbol.as_deref(),
        Some("DSREG_AUTOJOIN_ADCONFIG_READ_FAILED")
    );
    assert_eq!(f.cause, "scp_not_configured");
    assert_eq!(f.source, "previous_registration");
    assert_eq!(f.server_error, None);
    assert!(
        f.evidence
            .contains(&"Client ErrorCode : 0x801c001d".to_owned())
    );
    assert!(f.evidence.contains(&"Error Phase : discover".to_owned()));
    assert!(
        f.evidence
            .contains(&"AD Configuration Test : FAIL [0x80070002]".to_owned())
    );
}

#[test]
fn previous_registration_without_failing_test_keeps_catalog_cause() {
    let mut s = domain_joined();
    let p = previous(&mut s);
    p.error_phase = Some("discover".into());
    p.client_error_code = Some(SCP_READ);
    let f = diagnose(&s).expect("failing");
    assert_eq!(f.sub_code, None);
    assert_eq!(f.cause, "scp_read_failed");
}

#[test]
fn previous_registration_ignored_once_joined() {
    let mut s = hybrid_joined();
    let p = previous(&mut s);
    p.error_phase = Some("join".into());
    p.client_error_code = Some(DIRECTORY_FAILURE);
    assert_eq!(diagnose(&s), None);
}

#[test]
fn previous_registration_generic_code_takes_sub_code_cause() {
    let mut s = domain_joined();
    let t = tests(&mut s);
    t.ad_connectivity = pass();
    t.ad_configuration = pass();
    t.drs_discovery = fail(Some(DISC_FAILED), Some(WININET_TIMEOUT));
    t.drs_connectivity = skipped();
    let p = previous(&mut s);
    p.error_phase = Some("discover".into());
    p.client_error_code = Some(DISC_FAILED);

    let f = diagnose(&s).expect("failing");
    assert_eq!(f.code, Some(DISC_FAILED));
    // The test's first code equals the client code, so its second code is the sub-error.
    assert_eq!(f.sub_code, Some(WININET_TIMEOUT));
    assert_eq!(f.cause, "network_timeout");
    assert_eq!(f.symbol.as_deref(), Some("DSREG_AUTOJOIN_DISC_FAILED"));
    assert!(
        f.evidence
            .contains(&"DRS Discovery Test : FAIL [0x801c0021/0x80072ee2]".to_owned())
    );
}

#[test]
fn previous_registration_server_message_refines_directory_failure() {
    let mut s = domain_joined();
    let p = previous(&mut s);
    p.client_error_code = Some(DIRECTORY_FAILURE);
    p.server_error_code = Some("DirectoryError".into());
    p.server_message = Some("The device object by the given id (abc) is not found.".into());
    p.https_status = Some(400);

    let f = diagnose(&s).expect("failing");
    // No Error Phase line: the phase comes from the catalog entry.
    assert_eq!(phase(&f), Phase::Join);
    assert_eq!(f.cause, "device_not_synced");
    assert_eq!(f.symbol.as_deref(), Some("DSREG_E_DIRECTORY_FAILURE"));
    assert_eq!(
        f.server_error.as_deref(),
        Some("DirectoryError: The device object by the given id (abc) is not found.")
    );
    assert!(f.evidence.contains(&"Https Status : 400".to_owned()));
}

#[test]
fn previous_registration_without_code_uses_server_error() {
    // The hybrid-kerberos fragment: no Error Phase, no Client ErrorCode.
    let mut s = Snapshot::default();
    let p = previous(&mut s);
    p.registration_type = Some("fallback_sync".into());
    p.server_error_sub_code = Some("error_missing_device".into());
    p.server_operation = Some("DeviceRenew".into());
    p.server_message = Some("The device object by the given id (x) is not found.".into());
    tests(&mut s).kerberos_ticket = fail(Some(0x8009_0303), None);

    let f = diagnose(&s).expect("failing");
    assert_eq!(f.source, "previous_registration");
    assert_eq!(f.code, None);
    assert_eq!(f.cause, "device_not_synced");
    assert_eq!(phase(&f), Phase::Join);
    assert!(
        f.evidence
            .contains(&"Server Operation : DeviceRenew".to_owned())
    );
}

#[test]
fn previous_registration_directory_error_without_code_or_message() {
    let mut s = domain_joined();
    previous(&mut s).server_error_code = Some("DirectoryError".into());
    let f = diagnose(&s).expect("failing");
    assert_eq!(phase(&f), Phase::Join);
    assert_eq!(f.cause, "directory_error");
    assert_eq!(f.server_error.as_deref(), Some("DirectoryError"));
}

#[test]
fn previous_registration_block_without_failure_is_ignored() {
    let mut s = domain_joined();
    previous(&mut s).client_error_code = Some(0);
    assert_eq!(diagnose(&s), None);
}

#[test]
fn previous_registration_before_tests() {
    let mut s = domain_joined();
    tests(&mut s).ad_connectivity = fail(None, None);
    let p = previous(&mut s);
    p.error_phase = Some("join".into());
    p.client_error_code = Some(DIRECTORY_FAILURE);
    let f = diagnose(&s).expect("failing");
    assert_eq!(f.source, "previous_registration");
    // The failing test is of another phase, so it is not the sub-code.
    assert_eq!(f.sub_code, None);
}

// ── rule 2: tests ───────────────────────────────────────────────────────────────────────────

#[test]
fn ad_connectivity_fail_is_pre_check_dc_unreachable() {
    let mut s = domain_joined();
    let t = tests(&mut s);
    t.ad_connectivity = fail(None, None);
    t.drs_discovery = fail(Some(DISC_FAILED), Some(WININET_TIMEOUT));
    let f = diagnose(&s).expect("failing");
    assert_eq!(f.source, "test:ad_connectivity");
    assert_eq!(phase(&f), Phase::PreCheck);
    assert_eq!(f.cause, "dc_unreachable");
    assert_eq!(f.evidence, vec!["AD Connectivity Test : FAIL".to_owned()]);
}

#[test]
fn ad_configuration_fail_without_scp() {
    let mut s = domain_joined();
    let t = tests(&mut s);
    t.ad_connectivity = pass();
    t.ad_configuration = fail(Some(0x8007_0002), None);
    let f = diagnose(&s).expect("failing");
    assert_eq!(f.source, "test:ad_configuration");
    assert_eq!(phase(&f), Phase::Discover);
    assert_eq!(f.code, Some(0x8007_0002));
    assert_eq!(f.cause, "scp_not_configured");
}

#[test]
fn drs_discovery_fail_takes_sub_error_cause() {
    let mut s = domain_joined();
    let t = tests(&mut s);
    t.ad_connectivity = pass();
    t.ad_configuration = pass();
    t.drs_discovery = fail(Some(DISC_FAILED), Some(WININET_TIMEOUT));
    t.drs_connectivity = skipped();
    let f = diagnose(&s).expect("failing");
    assert_eq!(f.source, "test:drs_discovery");
    assert_eq!(phase(&f), Phase::Discover);
    assert_eq!(f.code, Some(DISC_FAILED));
    assert_eq!(f.sub_code, Some(WININET_TIMEOUT));
    assert_eq!(f.cause, "network_timeout");
}

#[test]
fn kerberos_ticket_fail_is_auth() {
    let mut s = hybrid_joined();
    tests(&mut s).kerberos_ticket = fail(Some(0x8009_0303), None);
    let f = diagnose(&s).expect("failing");
    assert_eq!(f.source, "test:kerberos_ticket");
    assert_eq!(phase(&f), Phase::Auth);
    assert_eq!(f.cause, "kerberos_target_unknown");
    assert_eq!(f.symbol.as_deref(), Some("SEC_E_TARGET_UNKNOWN"));
}

#[test]
fn token_acquisition_fail_is_auth() {
    let mut s = domain_joined();
    tests(&mut s).token_acquisition = fail(Some(0xcaa9_002c), None);
    let f = diagnose(&s).expect("failing");
    assert_eq!(f.source, "test:token_acquisition");
    assert_eq!(phase(&f), Phase::Auth);
    assert_eq!(f.cause, "federation_response_not_xml");
}

#[test]
fn latest_attempt_before_tests() {
    let mut s = domain_joined();
    tests(&mut s).ad_connectivity = fail(None, None);
    let events = [event(
        204,
        "2024-01-01T00:00:00Z",
        1,
        Some(DIRECTORY_FAILURE),
    )];
    let f = failure(&s, &events, ExecutionContext::System).expect("failing");
    assert_eq!(f.source, "event:204");
    // Without an attempt the tests speak.
    let f = failure(&s, &[], ExecutionContext::System).expect("failing");
    assert_eq!(f.source, "test:ad_connectivity");
}

// ── rule 3: events ──────────────────────────────────────────────────────────────────────────

fn directory_error_204(time: &str, record_id: u64) -> EventRecord {
    EventRecord {
        http_status: Some(400),
        activity_id: Some("a1".into()),
        server_response: Some(ServerResponse {
            error_type: Some("DirectoryError".into()),
            message: Some("The device object by the given id (d) is not found.".into()),
            ..ServerResponse::default()
        }),
        ..event(204, time, record_id, Some(DIRECTORY_FAILURE))
    }
}

#[test]
fn newest_failure_event_wins() {
    let s = domain_joined();
    let mut e304 = event(304, "2024-05-01T10:00:00Z", 10, Some(DIRECTORY_FAILURE));
    e304.error_phase = Some("join".into());
    let events = [directory_error_204("2024-05-01T10:00:05Z", 11), e304];
    let f = failure(&s, &events, ExecutionContext::System).expect("failing");
    // One run: the terminal 304 is the attempt's record, the 204 its server answer.
    assert_eq!(f.source, "event:304");
    assert_eq!(phase(&f), Phase::Join);
    assert_eq!(f.code, Some(DIRECTORY_FAILURE));
    assert_eq!(f.cause, "device_not_synced");
    assert_eq!(
        f.server_error.as_deref(),
        Some("DirectoryError: The device object by the given id (d) is not found.")
    );
    assert_eq!(
        f.evidence,
        vec![
            "event 304 at 2024-05-01T10:00:00Z: exit code 0x801c03f2, errorPhase join".to_owned(),
            "event 204 at 2024-05-01T10:00:05Z: exit code 0x801c03f2, HTTP 400, \
             DirectoryError: The device object by the given id (d) is not found."
                .to_owned()
        ]
    );
}

#[test]
fn same_time_falls_back_to_record_id() {
    let s = domain_joined();
    let events = [
        event(307, "2024-05-01T10:00:00Z", 21, Some(SCP_READ)),
        event(305, "2024-05-01T10:00:00Z", 20, Some(0xcaa1_000e)),
    ];
    let f = failure(&s, &events, ExecutionContext::System).expect("failing");
    assert_eq!(f.source, "event:307");
}

#[test]
fn fractional_seconds_order_by_time() {
    let s = domain_joined();
    // Byte order would put "00.500Z" before "00Z"; time order puts it after.
    let events = [
        event(334, "2024-05-01T10:00:00.500Z", 1, None),
        event(307, "2024-05-01T10:00:00Z", 2, Some(SCP_READ)),
    ];
    let f = failure(&s, &events, ExecutionContext::System).expect("failing");
    assert_eq!(f.source, "event:334");
    assert_eq!(phase(&f), Phase::PreCheck);
    assert_eq!(f.cause, "dc_unreachable");
}

#[test]
fn newer_success_clears_event_failure() {
    let s = domain_joined();
    let events = [
        directory_error_204("2024-05-01T10:00:00Z", 1),
        event(306, "2024-05-01T11:00:00Z", 2, None),
    ];
    assert_eq!(failure(&s, &events, ExecutionContext::System), None);
    let events = [
        directory_error_204("2024-05-01T10:00:00Z", 1),
        event(335, "2024-05-01T11:00:00Z", 2, None),
    ];
    assert_eq!(failure(&s, &events, ExecutionContext::System), None);
}

#[test]
fn older_success_does_not_clear() {
    let s = domain_joined();
    let events = [
        event(306, "2024-05-01T09:00:00Z", 1, None),
        directory_error_204("2024-05-01T10:00:00Z", 2),
    ];
    let f = failure(&s, &events, ExecutionContext::System).expect("failing");
    assert_eq!(f.source, "event:204");
}

#[test]
fn events_ignored_once_joined() {
    let s = hybrid_joined();
    let events = [directory_error_204("2024-05-01T10:00:00Z", 1)];
    assert_eq!(failure(&s, &events, ExecutionContext::System), None);
}

#[test]
fn event_307_and_304_with_scp_code_are_scp_not_configured() {
    let s = domain_joined();
    for id in [304, 307] {
        let events = [event(id, "2024-05-01T10:00:00Z", 1, Some(SCP_READ))];
        let f = failure(&s, &events, ExecutionContext::System).expect("failing");
        assert_eq!(f.cause, "scp_not_configured", "event {id}");
        assert_eq!(phase(&f), Phase::Discover, "event {id}");
    }
}

#[test]
fn event_304_phase_from_error_phase() {
    let s = domain_joined();
    let mut e = event(304, "2024-05-01T10:00:00Z", 1, Some(0xcaa1_000e));
    e.error_phase = Some("auth".into());
    e.tenant_type = Some("Federated".into());
    let f = failure(&s, &[e], ExecutionContext::System).expect("failing");
    assert_eq!(phase(&f), Phase::Auth);
    assert_eq!(f.cause, "adal_failure");
    assert_eq!(
        f.evidence,
        vec![
            "event 304 at 2024-05-01T10:00:00Z: exit code 0xcaa1000e, errorPhase auth, \
             tenant type Federated"
                .to_owned()
        ]
    );
}

#[test]
fn event_333_is_not_system() {
    let s = domain_joined();
    let events = [event(333, "2024-05-01T10:00:00Z", 1, None)];
    let f = failure(&s, &events, ExecutionContext::System).expect("failing");
    assert_eq!(f.cause, "not_system");
    assert_eq!(f.code, None);
}

#[test]
fn success_events_alone_are_healthy() {
    let s = domain_joined();
    let events = [event(306, "2024-05-01T10:00:00Z", 1, None)];
    assert_eq!(failure(&s, &events, ExecutionContext::System), None);
}

// ── rule 4: post-join ───────────────────────────────────────────────────────────────────────

/// An Entra user's capture: the WAM default account is set.
fn entra_user(mut s: Snapshot) -> Snapshot {
    s.user_state.get_or_insert_default().wam_default_set = Some(true);
    s
}

fn with_sso(mut s: Snapshot, prt: Option<bool>) -> Snapshot {
    s.sso_state = Some(SsoState {
        azure_ad_prt: prt,
        ..SsoState::default()
    });
    s
}

#[test]
fn healthy_entra_joined() {
    let mut s = with_sso(entra_joined(), Some(true));
    s.device_details = Some(DeviceDetails {
        device_auth_status: Some("SUCCESS".into()),
        ..DeviceDetails::default()
    });
    diagnostics(&mut s).aad_recovery_enabled = Some(false);
    diagnostics(&mut s).key_sign_test = Some("PASSED".into());
    assert_eq!(diagnose(&s), None);
}

#[test]
fn device_auth_failed_comes_first() {
    let mut s = with_sso(entra_joined(), Some(false));
    s.device_details = Some(DeviceDetails {
        device_auth_status: Some("FAILED. Device is either disabled or deleted".into()),
        ..DeviceDetails::default()
    });
    diagnostics(&mut s).aad_recovery_enabled = Some(true);
    let f = diagnose(&s).expect("failing");
    assert_eq!(phase(&f), Phase::PostJoin);
    assert_eq!(f.cause, "device_auth_failed");
    assert_eq!(f.source, "device_auth_status");
    assert_eq!(
        f.evidence,
        vec!["DeviceAuthStatus : FAILED. Device is either disabled or deleted".to_owned()]
    );
}

#[test]
fn aad_recovery_before_key_sign() {
    let mut s = hybrid_joined();
    diagnostics(&mut s).aad_recovery_enabled = Some(true);
    diagnostics(&mut s).key_sign_test = Some("FAILED".into());
    let f = diagnose(&s).expect("failing");
    assert_eq!(f.cause, "aad_recovery_pending");
    assert_eq!(f.source, "aad_recovery_enabled");
}

#[test]
fn key_sign_failed_but_not_when_not_elevated() {
    let mut s = hybrid_joined();
    diagnostics(&mut s).key_sign_test = Some("FAILED. 0x80090016".into());
    let f = diagnose(&s).expect("failing");
    assert_eq!(f.cause, "key_sign_failed");
    assert_eq!(
        f.evidence,
        vec!["KeySignTest : FAILED. 0x80090016".to_owned()]
    );

    diagnostics(&mut s).key_sign_test = Some(": MUST Run elevated to test.".into());
    assert_eq!(diagnose(&s), None);
}

#[test]
fn prt_diagnostics_refined_by_server_description() {
    let mut s = with_sso(hybrid_joined(), Some(false));
    if let Some(sso) = s.sso_state.as_mut() {
        sso.acquire_prt_diagnostics = Some(PrtDiagnostics {
            prt: "azure_ad".into(),
            attempt_status: Some(0xc000_006d),
            http_status: Some(400),
            server_error_code: Some("invalid_grant".into()),
            server_error_description: Some(
                "AADSTS50126: Error validating credentials due to invalid username or password."
                    .into(),
            ),
            ..PrtDiagnostics::default()
        });
    }
    let f = diagnose(&s).expect("failing");
    assert_eq!(f.source, "prt_diagnostics");
    assert_eq!(phase(&f), Phase::PostJoin);
    assert_eq!(f.code, Some(0xc000_006d));
    assert_eq!(f.symbol.as_deref(), Some("STATUS_LOGON_FAILURE"));
    assert_eq!(f.cause, "invalid_credentials");
    assert!(
        f.evidence
            .contains(&"Attempt Status : 0xc000006d".to_owned())
    );
    assert!(
        f.evidence
            .contains(&"Server Error Code : invalid_grant".to_owned())
    );
}

#[test]
fn prt_diagnostics_without_server_text_uses_catalog() {
    let mut s = with_sso(Snapshot::default(), Some(false));
    if let Some(sso) = s.sso_state.as_mut() {
        sso.acquire_prt_diagnostics = Some(PrtDiagnostics {
            attempt_status: Some(0xc000_00d0),
            ..PrtDiagnostics::default()
        });
    }
    let f = diagnose(&s).expect("failing");
    assert_eq!(f.cause, "prt_request_rejected");
}

#[test]
fn no_prt_only_outside_system_context() {
    let s = entra_user(with_sso(entra_joined(), Some(false)));
    let f = failure(&s, &[], ExecutionContext::User).expect("failing");
    assert_eq!(f.cause, "no_prt");
    assert_eq!(f.source, "prt");
    assert_eq!(f.evidence, vec!["AzureAdPrt : NO".to_owned()]);
    assert!(failure(&s, &[], ExecutionContext::Unspecified).is_some());
    assert_eq!(failure(&s, &[], ExecutionContext::System), None);
}

#[test]
fn no_post_join_rules_on_a_device_known_not_joined() {
    let s = with_sso(domain_joined(), Some(false));
    assert_eq!(diagnose(&s), None);
}

#[test]
fn apply_sets_both_fields() {
    let mut s = entra_user(with_sso(entra_joined(), Some(false)));
    apply(&mut s, &[], ExecutionContext::User);
    assert_eq!(s.join_type, JoinType::EntraJoined as i32);
    assert_eq!(s.failure.map(|f| f.cause).as_deref(), Some("no_prt"));
}

#[test]
fn cause_of_resolves_the_id() {
    let f = Failure {
        cause: "scp_not_configured".into(),
        ..Failure::default()
    };
    assert_eq!(cause_of(&f).map(|c| c.id), Some("scp_not_configured"));
}
