//! The real `dsreg-agent` binary, run as a technician would: `parse`, `diagnose`, `--help`,
//! standard input, unreadable files and their exit codes.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_dsreg-agent");

fn fixture(name: &str) -> String {
    format!("{}/testdata/dsregcmd/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn events_fixture(name: &str) -> String {
    format!("{}/testdata/events/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run dsreg-agent")
}

fn run_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dsreg-agent");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).expect("write stdin");
    }
    child.wait_with_output().expect("wait dsreg-agent")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const DOMAIN_JOINED: &str = "domain-joined-discover-0x801c001d-elevated-ws2022.txt";

#[test]
fn parse_json_gives_the_design_paths() {
    let o = run(&["parse", "--format", "json", &fixture(DOMAIN_JOINED)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["device_state"]["azure_ad_joined"], false);
    assert_eq!(v["device_state"]["domain_joined"], true);
    assert_eq!(v["join_type"], "domain_joined");
    assert_eq!(
        v["diagnostics"]["tests"]["ad_configuration"]["result"],
        "FAIL"
    );
    assert_eq!(
        v["diagnostics"]["tests"]["ad_configuration"]["code"],
        "0x80070002"
    );
    assert_eq!(
        v["diagnostics"]["previous_registration"]["client_error_code"],
        "0x801c001d"
    );
    assert_eq!(v["failure"]["phase"], "discover");
    assert_eq!(v["failure"]["code"], "0x801c001d");
    assert_eq!(v["failure"]["sub_code"], "0x80070002");
    assert_eq!(v["failure"]["cause"], "scp_not_configured");
    assert_eq!(v["failure"]["source"], "previous_registration");
    // Absent stays absent: this capture has no Work Account and no PRT diagnostics.
    assert!(v.get("work_accounts").is_none());
    assert!(v["sso_state"].get("acquire_prt_diagnostics").is_none());
}

#[test]
fn parse_reads_stdin_for_dash_and_for_no_file() {
    let capture =
        std::fs::read(fixture("entra-joined-healthy-prt-cloud-tgt.txt")).expect("fixture");
    for args in [&["parse", "-"][..], &["parse"][..]] {
        let o = run_stdin(args, &capture);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(v["join_type"], "entra_joined");
        assert!(v.get("failure").is_none(), "healthy: {}", v["failure"]);
    }
}

#[test]
fn parse_text_lists_paths_then_warnings() {
    let o = run(&["parse", "--format", "text", &fixture(DOMAIN_JOINED)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("device_state.domain_joined: true\n"), "{out}");
    assert!(
        out.contains("diagnostics.tests.ad_configuration.code: 0x80070002\n"),
        "{out}"
    );
    assert!(out.contains("failure.cause: scp_not_configured\n"), "{out}");
    assert!(out.contains("\nwarnings ("), "{out}");
}

#[test]
fn missing_file_exits_2_naming_the_path() {
    let path = fixture("does-not-exist.txt");
    for sub in ["parse", "diagnose"] {
        let o = run(&[sub, &path]);
        assert_eq!(o.status.code(), Some(2), "{sub}");
        let err = stderr(&o);
        assert!(err.contains(&path), "{err}");
        assert!(err.contains("No such file or directory"), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(o.stdout.is_empty());
    }
}

#[test]
fn directory_exits_2() {
    let dir = format!("{}/testdata", env!("CARGO_MANIFEST_DIR"));
    let o = run(&["parse", &dir]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains(&dir), "{}", stderr(&o));
}

#[test]
fn unreadable_events_file_exits_2() {
    let missing = events_fixture("nope.xml");
    let o = run(&["diagnose", &fixture(DOMAIN_JOINED), "--events", &missing]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("events file"), "{}", stderr(&o));
    // A capture is not an event export.
    let o = run(&[
        "parse",
        &fixture(DOMAIN_JOINED),
        "--events",
        &fixture(DOMAIN_JOINED),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("neither wevtutil XML nor Get-WinEvent JSON"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn diagnose_shows_symbol_cause_and_resolution() {
    let o = run(&["diagnose", &fixture(DOMAIN_JOINED)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("Join type     : domain_joined"), "{out}");
    assert!(out.contains("FAILING in phase discover"), "{out}");
    assert!(
        out.contains("0x801c001d DSREG_AUTOJOIN_ADCONFIG_READ_FAILED"),
        "{out}"
    );
    assert!(out.contains("Sub-code      : 0x80070002"), "{out}");
    assert!(out.contains("scp_not_configured"), "{out}");
    let resolution = dsreg_proto::catalog::cause("scp_not_configured")
        .map(|c| c.resolution)
        .expect("cause in catalog");
    assert!(out.contains("What to do next:"), "{out}");
    // The resolution is word-wrapped: compare word sequences.
    let words: Vec<&str> = out.split_whitespace().collect();
    let wanted: Vec<&str> = resolution.split_whitespace().collect();
    assert!(
        words.windows(wanted.len()).any(|w| w == wanted.as_slice()),
        "{out}"
    );
    assert!(
        out.contains("AD Configuration Test : FAIL [0x80070002]"),
        "{out}"
    );
    assert!(out.contains("Parse warnings"), "{out}");
}

#[test]
fn diagnose_healthy_device() {
    let o = run(&[
        "diagnose",
        &fixture("entra-joined-healthy-prt-cloud-tgt.txt"),
    ]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(out.contains("Join type     : entra_joined"), "{out}");
    assert!(out.contains("healthy"), "{out}");
    assert!(!out.contains("What to do next"), "{out}");
}

#[test]
fn diagnose_local_account_never_has_a_prt() {
    // AzureAdPrt NO, but the user is the local account AADJOIN02\PCUser (WamDefaultSet NO):
    // a local account never has a PRT, so this is no finding in either context.
    let f = fixture("entra-joined-local-user-no-prt-partial.txt");
    let user = stdout(&run(&["diagnose", &f]));
    assert!(user.contains("healthy"), "{user}");
    assert!(!user.contains("no_prt"), "{user}");
    let system = stdout(&run(&["diagnose", &f, "--context", "system"]));
    assert!(system.contains("healthy"), "{system}");
}

#[test]
fn diagnose_uses_events_when_the_capture_shows_no_failure() {
    // A domain-joined device whose capture has no Diagnostic Data: the 204 is the evidence.
    let capture = b"+----------------------------------------------------------------------+\n\
| Device State                                                         |\n\
+----------------------------------------------------------------------+\n\
\n\
             AzureAdJoined : NO\n\
          EnterpriseJoined : NO\n\
              DomainJoined : YES\n";
    let events = events_fixture("wevtutil-204-directory-error.xml");
    let o = run_stdin(&["diagnose", "-", "--events", &events], capture);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("FAILING in phase join"), "{out}");
    assert!(
        out.contains("0x801c03f2 DSREG_E_DIRECTORY_FAILURE"),
        "{out}"
    );
    assert!(out.contains("device_not_synced"), "{out}");
    assert!(out.contains("event:204"), "{out}");
}

#[test]
fn help_explains_formats_and_exit_codes() {
    let top = stdout(&run(&["--help"]));
    assert!(top.contains("Exit codes:"), "{top}");
    assert!(top.contains("parse") && top.contains("diagnose"), "{top}");
    for sub in ["parse", "diagnose"] {
        let o = run(&[sub, "--help"]);
        assert_eq!(o.status.code(), Some(0));
        let help = stdout(&o);
        assert!(help.contains("Exit codes:"), "{help}");
        assert!(help.contains("  2  "), "{help}");
        assert!(help.contains("wevtutil"), "{help}");
        assert!(help.contains("UTF-16"), "{help}");
    }
    assert!(stdout(&run(&["parse", "--help"])).contains("--format"));
}
