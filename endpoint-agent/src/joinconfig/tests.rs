//! Golden tests over `testdata/joinconfig/` and property tests: any bytes give a result.

use proptest::prelude::*;

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../testdata/joinconfig/", $name)).as_slice()
    };
}

fn registry(bytes: &[u8]) -> Read {
    from_captures(Some(bytes), &[], UtcOffset::UTC)
}

fn task(bytes: &[u8]) -> Read {
    from_captures(None, &[bytes.to_vec()], UtcOffset::UTC)
}

#[test]
fn workstation_with_a_targeted_rollout_and_no_policy() {
    let r = registry(fixture!("reg-query-workstation-cdj-no-policy-utf16.txt"));
    let c = &r.config;
    assert_eq!(
        c.registry_tenant_id.as_deref(),
        Some("6babcaad-604b-40ac-a9d7-9fd97c0b779f")
    );
    assert_eq!(
        c.registry_tenant_name.as_deref(),
        Some("contoso.onmicrosoft.com")
    );
    assert_eq!(c.policy_auto_workplace_join, None, "policy key not found");
    assert_eq!(c.policy_block_aad_workplace_join, None);
    assert_eq!(c.product_type.as_deref(), Some("WinNT"));
    assert_eq!(c.os_build.as_deref(), Some("10.0.22631.4460"));
    assert_eq!(
        c.computer_sid.as_deref(),
        Some("S-1-5-21-1004336348-1177238915-682003330-1108")
    );
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn domain_controller_without_cdj_key() {
    let r = registry(fixture!("reg-query-domain-controller.txt"));
    assert_eq!(r.config.product_type.as_deref(), Some("LanmanNT"));
    assert_eq!(r.config.registry_tenant_id, None);
    assert_eq!(r.config.os_build.as_deref(), Some("10.0.20348.2837"));
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let dump = registry::parse(fixture!("reg-query-domain-controller.txt"));
    assert_eq!(dump.not_found, 2);
    // Subkey lines are keys without values, not values of the key above them.
    assert_eq!(
        dump.get(CURRENT_VERSION_KEY, "UBR")
            .map(|v| v.data.as_str()),
        Some("0xb15")
    );
    assert!(
        dump.keys
            .iter()
            .any(|k| k.path.ends_with(r"\Winlogon") && k.values.is_empty())
    );
}

#[test]
fn policy_turns_hybrid_join_off() {
    let r = registry(fixture!("reg-query-policy-disabled.txt"));
    let c = &r.config;
    assert_eq!(c.policy_auto_workplace_join, Some(false));
    assert_eq!(c.policy_block_aad_workplace_join, Some(true));
    assert_eq!(c.registry_tenant_id, None, "(Default) is not TenantId");
    assert_eq!(c.os_build.as_deref(), Some("10.0.22631.4400"));
    let dump = registry::parse(fixture!("reg-query-policy-disabled.txt"));
    assert_eq!(dump.get(CDJ_AAD_KEY, "").map(|v| v.text()), Some(None));
}

#[test]
fn old_server_build_and_odd_lines() {
    let r = registry(fixture!("reg-query-server2016-member.txt"));
    assert_eq!(r.config.product_type.as_deref(), Some("ServerNT"));
    assert_eq!(r.config.os_build.as_deref(), Some("6.3.14393.6970"));
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.warnings[0].contains("line 19"), "{:?}", r.warnings);
}

#[test]
fn xml_settings_enabled_false_and_triggers_ignored() {
    let r = task(fixture!("schtasks-xml-disabled-utf16.xml"));
    assert_eq!(r.config.task_enabled, Some(false));
    assert_eq!(r.config.task_last_run_time, None);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn xml_without_settings_enabled_is_enabled() {
    let r = task(fixture!("schtasks-xml-enabled-default-utf16.xml"));
    assert_eq!(r.config.task_enabled, Some(true));
}

#[test]
fn english_list_ready_with_a_failed_last_run() {
    let r = task(fixture!("schtasks-list-en-ready-failed.txt"));
    let c = &r.config;
    assert_eq!(c.task_enabled, Some(true));
    assert_eq!(c.task_state.as_deref(), Some("Ready"));
    assert_eq!(
        c.task_last_run_time.as_deref(),
        Some("2026-11-30T09:05:12Z")
    );
    assert_eq!(c.task_last_result, Some(0x8007_10e0));
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn english_list_disabled_never_ran() {
    let r = task(fixture!("schtasks-list-en-disabled-never-ran.txt"));
    let c = &r.config;
    assert_eq!(c.task_enabled, Some(false));
    assert_eq!(c.task_state.as_deref(), Some("Disabled"));
    assert_eq!(c.task_last_run_time, None, "11/30/1999 means never");
    assert_eq!(c.task_last_result, Some(0x0004_1303));
}

#[test]
fn german_list_in_the_oem_code_page() {
    let r = task(fixture!("schtasks-list-de-ready-cp850.txt"));
    let c = &r.config;
    assert_eq!(c.task_enabled, Some(true));
    assert_eq!(c.task_state.as_deref(), Some("Ready"));
    assert_eq!(
        c.task_last_run_time.as_deref(),
        Some("2026-11-28T14:03:27Z")
    );
    assert_eq!(c.task_last_result, Some(0));
}

#[test]
fn xml_and_list_combine() {
    let r = from_captures(
        None,
        &[
            fixture!("schtasks-xml-disabled-utf16.xml").to_vec(),
            fixture!("schtasks-list-en-ready-failed.txt").to_vec(),
        ],
        UtcOffset::UTC,
    );
    assert_eq!(r.config.task_enabled, Some(false), "the first capture wins");
    assert_eq!(r.config.task_last_result, Some(0x8007_10e0));
}

#[test]
fn a_missing_task_is_a_warning_not_a_value() {
    let r = task(fixture!("schtasks-not-found.txt"));
    assert_eq!(r.config.task_enabled, None);
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
}

#[test]
fn a_folder_query_reads_only_the_join_task() {
    let xml = "<Tasks><!-- \\Microsoft\\Windows\\Workplace Join\\Recovery-Check -->\
        <Task><Settings><Enabled>true</Enabled></Settings></Task>\
        <!-- \\Microsoft\\Windows\\Workplace Join\\Automatic-Device-Join -->\
        <Task><Settings><Enabled>false</Enabled></Settings></Task></Tasks>";
    assert_eq!(task(xml.as_bytes()).config.task_enabled, Some(false));
    let list = "TaskName: \\Microsoft\\Windows\\Workplace Join\\Recovery-Check\n\
        Status: Disabled\nScheduled Task State: Disabled\n\n\
        TaskName: \\Microsoft\\Windows\\Workplace Join\\Automatic-Device-Join\n\
        Status: Ready\nScheduled Task State: Enabled\n";
    let r = task(list.as_bytes());
    assert_eq!(r.config.task_enabled, Some(true));
    assert_eq!(r.config.task_state.as_deref(), Some("Ready"));
}

#[test]
fn sids_are_checked() {
    assert_eq!(
        valid_sid(" S-1-5-21-1-2-3-1108 ").as_deref(),
        Some("S-1-5-21-1-2-3-1108")
    );
    assert_eq!(valid_sid("S-1-5"), None);
    assert_eq!(valid_sid("S-1-5-21-x"), None);
    assert_eq!(valid_sid("<script>"), None);
    let files = Files {
        computer_sid: Some("nope".into()),
        ..Files::default()
    };
    assert!(matches!(files.read(), Err(JoinConfigError::BadSid(_))));
}

#[test]
fn apply_puts_warnings_on_line_zero() {
    let mut s = Snapshot::default();
    apply(
        &mut s,
        Read {
            config: JoinConfig {
                task_enabled: Some(false),
                ..JoinConfig::default()
            },
            warnings: vec!["w".into()],
        },
    );
    assert_eq!(s.join_config.and_then(|c| c.task_enabled), Some(false));
    assert_eq!(
        (s.warnings[0].line, s.warnings[0].message.as_str()),
        (0, "w")
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_give_a_registry_result(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let r = registry(&bytes);
        prop_assert!(r.warnings.len() <= registry::MAX_WARNINGS + 1 + 8);
    }

    #[test]
    fn any_bytes_give_a_task_result(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = task(&bytes);
    }

    #[test]
    fn any_text_in_reg_query_shape_gives_a_result(
        lines in proptest::collection::vec(
            prop_oneof![
                "HKEY_LOCAL_MACHINE\\\\[A-Za-z \\\\]{0,40}",
                "    [A-Za-z() ]{0,20}    REG_[A-Z_]{0,12}    [ -~]{0,40}",
                "ERROR: [ -~]{0,40}",
                "[ -~]{0,60}",
            ],
            0..40,
        )
    ) {
        let _ = registry(lines.join("\r\n").as_bytes());
    }

    #[test]
    fn any_text_in_schtasks_shape_gives_a_result(
        lines in proptest::collection::vec(
            prop_oneof![
                "(Status|Last Run Time|Last Result|Scheduled Task State|TaskName): *[ -~]{0,40}",
                "<[A-Za-z/]{0,10}>[ -~]{0,20}",
                "[ -~]{0,60}",
            ],
            0..40,
        )
    ) {
        let _ = task(lines.join("\r\n").as_bytes());
    }
}
