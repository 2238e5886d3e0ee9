//! Diagnosis of every dsregcmd fixture in `testdata/dsregcmd/`: parser + `diagnosis::apply`.
//!
//! The expectations were reasoned by hand from each capture (the lines cited in each row),
//! not copied from the program's output. Context is `Unspecified` (a technician's run) unless
//! the row says otherwise.

mod common;

use dsreg_proto::{ExecutionContext, JoinType, Phase, diagnosis};

/// What a fixture's diagnosis must be; `failure: None` means healthy.
struct Expect {
    file: &'static str,
    join_type: JoinType,
    failure: Option<Want>,
}

struct Want {
    phase: Phase,
    code: Option<u32>,
    sub_code: Option<u32>,
    cause: &'static str,
    source: &'static str,
}

const fn want(
    phase: Phase,
    code: Option<u32>,
    sub_code: Option<u32>,
    cause: &'static str,
    source: &'static str,
) -> Option<Want> {
    Some(Want {
        phase,
        code,
        sub_code,
        cause,
        source,
    })
}

const CASES: &[Expect] = &[
    // AzureAdJoined NO / DomainJoined YES; AD Configuration Test FAIL [0x80070002];
    // Previous Registration: Error Phase discover, Client ErrorCode 0x801c001d.
    Expect {
        file: "domain-joined-discover-0x801c001d-elevated-ws2022.txt",
        join_type: JoinType::DomainJoined,
        failure: want(
            Phase::Discover,
            Some(0x801c001d),
            Some(0x80070002),
            "scp_not_configured",
            "previous_registration",
        ),
    },
    // Diagnostic Data only: DRS Discovery Test FAIL [0x801c0021/0x801c000c], Previous
    // Registration discover / 0x801c0021. Sub-code 0x801c000c (DSREG_E_DISCOVERY_FAILED).
    Expect {
        file: "doc-diagnostic-data-discover-fail-0x801c0021-0x801c000c.txt",
        join_type: JoinType::Unspecified,
        failure: want(
            Phase::Discover,
            Some(0x801c0021),
            Some(0x801c000c),
            "discovery_failed",
            "previous_registration",
        ),
    },
    // No Previous Registration; DRS Discovery Test FAIL [0x801c0021/0x80072ee2]: the generic
    // code takes WININET_E_TIMEOUT's cause.
    Expect {
        file: "doc-2019-diagnostic-data-drs-discovery-fail.txt",
        join_type: JoinType::Unspecified,
        failure: want(
            Phase::Discover,
            Some(0x801c0021),
            Some(0x80072ee2),
            "network_timeout",
            "test:drs_discovery",
        ),
    },
    // Previous Registration lines without Error Phase / Client ErrorCode; the server message
    // "device object … not found" (error_missing_device) wins over the Kerberos test.
    Expect {
        file: "hybrid-kerberos-test-fail-fallback-sync-device-renew-reformatted.txt",
        join_type: JoinType::Unspecified,
        failure: want(
            Phase::Join,
            None,
            None,
            "device_not_synced",
            "previous_registration",
        ),
    },
    // Entra joined, AzureAdPrt NO, signed in as the local user AADJOIN02\PCUser (WamDefaultSet
    // NO): a local account never has a PRT, so that is no finding (DESIGN §4).
    Expect {
        file: "entra-joined-local-user-no-prt-partial.txt",
        join_type: JoinType::EntraJoined,
        failure: None,
    },
    // Entra joined, AzureAdPrt YES, DeviceAuthStatus SUCCESS, KeySignTest PASSED.
    Expect {
        file: "entra-joined-healthy-prt-cloud-tgt.txt",
        join_type: JoinType::EntraJoined,
        failure: None,
    },
    // Entra joined VM, DeviceAuthStatus SUCCESS, stops after Tenant Details.
    Expect {
        file: "entra-joined-vm-virtual-desktop-not-set-redacted-partial.txt",
        join_type: JoinType::EntraJoined,
        failure: None,
    },
    // Hybrid joined, cut at "Idp : logi": nothing failing in what is there.
    Expect {
        file: "hybrid-joined-tpm-truncated.txt",
        join_type: JoinType::HybridJoined,
        failure: None,
    },
    // Hybrid joined, AzureAdPrt YES, DeviceAuthStatus SUCCESS, KeySignTest PASSED (WHfB not
    // provisioning is not a join failure).
    Expect {
        file: "hybrid-joined-whfb-cert-trust-fragments.txt",
        join_type: JoinType::HybridJoined,
        failure: None,
    },
    // Pre-1803 layout, hybrid joined, AzureAdPrt YES; "KeySignTest: : MUST Run elevated to
    // test." means the test did not run, not that it failed.
    Expect {
        file: "doc-legacy-layout-hybrid-joined-pre-1803.txt",
        join_type: JoinType::HybridJoined,
        failure: None,
    },
    // SSO State only: Attempt Status 0xc000006d, invalid_grant, AADSTS50126.
    Expect {
        file: "doc-sso-state-prt-diagnostics-0xc000006d-aadsts50126.txt",
        join_type: JoinType::Unspecified,
        failure: want(
            Phase::PostJoin,
            Some(0xc000006d),
            None,
            "invalid_credentials",
            "prt_diagnostics",
        ),
    },
    // Attempt Status 0xc00000d0, AADSTS90002 tenant not found for the UPN suffix.
    Expect {
        file: "hybrid-prt-fail-0xc00000d0-aadsts90002-reformatted.txt",
        join_type: JoinType::Unspecified,
        failure: want(
            Phase::PostJoin,
            Some(0xc00000d0),
            None,
            "upn_suffix_not_verified",
            "prt_diagnostics",
        ),
    },
    // Enterprise PRT diagnostics: 0xc000006d with MSIS9682 (AD FS device not registered).
    Expect {
        file: "sso-state-enterprise-prt-diagnostics-msis9682-partial.txt",
        join_type: JoinType::Unspecified,
        failure: want(
            Phase::PostJoin,
            Some(0xc000006d),
            None,
            "adfs_device_not_registered",
            "prt_diagnostics",
        ),
    },
    // /debug trace: the short status after DSREGCMD_END_STATUS says AzureAdJoined NO and
    // EnterpriseJoined NO; the trace shows the federated join failing (0xcaa9002c), "Try
    // synchronized join", then `Join error code: DirectoryError`, `Join message: The device
    // object by the given id (Device ID) is not found.` and `DsrDeviceAutoJoin failed
    // 0x801c03f2.` — the sync join result, i.e. the device is not synced yet.
    Expect {
        file: "debug-trace-federated-auth-fail-sync-join-0x801c03f2.txt",
        join_type: JoinType::NotJoined,
        failure: want(
            Phase::Join,
            Some(0x801c03f2),
            None,
            "device_not_synced",
            "debug_trace",
        ),
    },
    // Three Diagnostic Data lines (DisplayNameUpdated : Managed by MDM …).
    Expect {
        file: "hybrid-mdm-managed-display-name-reformatted.txt",
        join_type: JoinType::Unspecified,
        failure: None,
    },
    // User State only, WorkplaceJoined NO, no Device State.
    Expect {
        file: "user-state-ngc-set-nondestructive-reset-partial.txt",
        join_type: JoinType::Unspecified,
        failure: None,
    },
];

fn read(file: &str) -> Vec<u8> {
    common::dsregcmd(file)
}

#[test]
fn every_fixture_has_a_case() {
    let files = common::dsregcmd_names();
    let mut covered: Vec<String> = CASES.iter().map(|c| c.file.to_owned()).collect();
    covered.sort();
    assert_eq!(files, covered);
}

#[test]
fn fixtures_diagnose_as_reasoned() {
    let mut problems = Vec::new();
    for case in CASES {
        let mut snapshot = dsreg_agent::dsregcmd::parse(&read(case.file));
        diagnosis::apply(&mut snapshot, &[], ExecutionContext::Unspecified);
        let join = JoinType::try_from(snapshot.join_type).unwrap_or_default();
        if join != case.join_type {
            problems.push(format!(
                "{}: join_type {join:?}, want {:?}",
                case.file, case.join_type
            ));
        }
        match (&snapshot.failure, &case.failure) {
            (None, None) => {}
            (Some(f), None) => problems.push(format!("{}: unexpected failure {f:?}", case.file)),
            (None, Some(w)) => {
                problems.push(format!("{}: no failure, want {}", case.file, w.cause))
            }
            (Some(f), Some(w)) => {
                let got = (
                    Phase::try_from(f.phase).unwrap_or_default(),
                    f.code,
                    f.sub_code,
                    f.cause.as_str(),
                    f.source.as_str(),
                );
                let expected = (w.phase, w.code, w.sub_code, w.cause, w.source);
                if got != expected {
                    problems.push(format!("{}: got {got:?}, want {expected:?}", case.file));
                }
                if f.evidence.is_empty() {
                    problems.push(format!("{}: failure without evidence", case.file));
                }
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn symbols_and_server_errors_of_the_failing_fixtures() {
    let diagnose = |file: &str| {
        let mut s = dsreg_agent::dsregcmd::parse(&read(file));
        diagnosis::apply(&mut s, &[], ExecutionContext::Unspecified);
        s.failure.unwrap_or_default()
    };
    let f = diagnose("domain-joined-discover-0x801c001d-elevated-ws2022.txt");
    assert_eq!(
        f.symbol.as_deref(),
        Some("DSREG_AUTOJOIN_ADCONFIG_READ_FAILED")
    );
    assert!(
        f.evidence
            .contains(&"Client ErrorCode : 0x801c001d".to_owned())
    );
    assert!(
        f.evidence
            .contains(&"AD Configuration Test : FAIL [0x80070002]".to_owned())
    );

    let f = diagnose("doc-sso-state-prt-diagnostics-0xc000006d-aadsts50126.txt");
    assert_eq!(f.symbol.as_deref(), Some("STATUS_LOGON_FAILURE"));
    assert!(
        f.server_error
            .as_deref()
            .is_some_and(|s| s.starts_with("invalid_grant: AADSTS50126")),
        "{:?}",
        f.server_error
    );

    let f = diagnose("hybrid-kerberos-test-fail-fallback-sync-device-renew-reformatted.txt");
    assert!(
        f.evidence
            .contains(&"Server Operation : DeviceRenew".to_owned())
    );
}

#[test]
fn system_context_never_reports_no_prt() {
    let mut s = dsreg_agent::dsregcmd::parse(&read("entra-joined-local-user-no-prt-partial.txt"));
    diagnosis::apply(&mut s, &[], ExecutionContext::System);
    assert_eq!(s.failure, None);
}

/// A real capture with one line changed, diagnosed in `context`: the cause it gets.
fn changed(file: &str, from: &str, to: &str, context: ExecutionContext) -> Option<String> {
    let text = String::from_utf8_lossy(&read(file)).into_owned();
    assert!(text.contains(from), "{file} has no {from:?}");
    let mut s = dsreg_agent::dsregcmd::parse(text.replacen(from, to, 1).as_bytes());
    diagnosis::apply(&mut s, &[], context);
    s.failure.map(|f| f.cause)
}

#[test]
fn device_auth_status_error_is_not_a_disabled_device() {
    let file = "entra-joined-healthy-prt-cloud-tgt.txt";
    let line = "DeviceAuthStatus : SUCCESS";
    let user = ExecutionContext::User;
    assert_eq!(
        changed(file, line, "DeviceAuthStatus : FAILED. ERROR", user).as_deref(),
        Some("device_auth_check_failed")
    );
    assert_eq!(
        changed(
            file,
            line,
            "DeviceAuthStatus : FAILED. Device is either disabled or deleted",
            user
        )
        .as_deref(),
        Some("device_auth_failed")
    );
}

#[test]
fn uncatalogued_cloudap_status_with_aadsts90002_is_the_upn_suffix() {
    let file = "hybrid-prt-fail-0xc00000d0-aadsts90002-reformatted.txt";
    let user = ExecutionContext::User;
    assert_eq!(
        changed(
            file,
            "Attempt Status : 0xc00000d0",
            "Attempt Status : 0xc0041234",
            user
        )
        .as_deref(),
        Some("upn_suffix_not_verified")
    );
    // Without the server text the uncatalogued CloudAP status is its facility's cause.
    let text = String::from_utf8_lossy(&read(file))
        .replacen(
            "Attempt Status : 0xc00000d0",
            "Attempt Status : 0xc0041234",
            1,
        )
        .replacen(
            "Server Error Description : AADSTS90002: Tenant 'earthlocal.com' not found.",
            "Server Error Description :",
            1,
        );
    let mut s = dsreg_agent::dsregcmd::parse(text.as_bytes());
    diagnosis::apply(&mut s, &[], user);
    assert_eq!(
        s.failure.map(|f| f.cause).as_deref(),
        Some("unknown_cloudap")
    );
}

#[test]
fn hybrid_joined_and_workplace_joined_is_dual_state() {
    let file = "hybrid-joined-whfb-cert-trust-fragments.txt";
    assert_eq!(
        changed(
            file,
            "WorkplaceJoined : NO",
            "WorkplaceJoined : YES",
            ExecutionContext::User
        )
        .as_deref(),
        Some("dual_state")
    );
}
