//! The real binary with join configuration captures: `parse` and `diagnose` with
//! `--registry-file` / `--task-file` / `--computer-sid`, `diagnose --format json`, and the
//! exit codes of `diagnose --detect` (an Intune Remediations detection script).

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_dsreg-agent");

fn data(path: &str) -> String {
    format!("{}/testdata/{path}", env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run dsreg-agent")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const FAILING: &str = "dsregcmd/domain-joined-discover-0x801c001d-elevated-ws2022.txt";
const HEALTHY: &str = "dsregcmd/entra-joined-healthy-prt-cloud-tgt.txt";
const REGISTRY: &str = "joinconfig/reg-query-workstation-cdj-no-policy-utf16.txt";
const TASK_XML: &str = "joinconfig/schtasks-xml-disabled-utf16.xml";
const TASK_LIST: &str = "joinconfig/schtasks-list-en-disabled-never-ran.txt";

#[test]
fn parse_fills_join_config_from_both_files() {
    let o = run(&[
        "parse",
        &data(FAILING),
        "--registry-file",
        &data(REGISTRY),
        "--task-file",
        &data(TASK_XML),
        "--task-file",
        &data(TASK_LIST),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let j = &v["join_config"];
    assert_eq!(j["task_enabled"], false, "{j}");
    assert_eq!(j["task_state"], "Disabled", "{j}");
    assert_eq!(j["task_last_result"], "0x00041303", "{j}");
    assert_eq!(j["registry_tenant_name"], "contoso.onmicrosoft.com", "{j}");
    assert_eq!(j["product_type"], "WinNT", "{j}");
    assert_eq!(j["os_build"], "10.0.22631.4460", "{j}");
    assert!(
        j.get("policy_auto_workplace_join").is_none(),
        "not set: {j}"
    );
}

#[test]
fn diagnose_json_is_the_api_failure_document() {
    let o = run(&[
        "diagnose",
        &data(FAILING),
        "--format",
        "json",
        "--task-file",
        &data(TASK_LIST),
        "--computer-sid",
        "S-1-5-21-1004336348-1177238915-682003330-1108",
    ]);
    assert_eq!(o.status.code(), Some(0), "no --detect: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["join_type"], "domain_joined");
    assert_eq!(v["status"], "failing");
    // The task is disabled: that is the failure now (DESIGN §4b); the last attempt stays listed.
    assert_eq!(v["failure"]["cause"], "join_task_disabled", "{v}");
    assert_eq!(v["attempts"][0]["code"], "0x801c001d", "{v}");
    assert!(v["failure"]["cause_text"].is_string(), "{v}");
    assert!(v["failure"]["resolution"].is_string(), "{v}");
    assert!(v["failure"]["phase"].is_string(), "{v}");
    assert_eq!(
        v["join_config"]["computer_sid"],
        "S-1-5-21-1004336348-1177238915-682003330-1108"
    );
    assert!(v["attempts"].is_array(), "{v}");
}

#[test]
fn detect_exits_1_for_a_failing_device_and_0_for_a_healthy_one() {
    let failing = run(&["diagnose", "--detect", &data(FAILING)]);
    assert_eq!(failing.status.code(), Some(1), "{}", stderr(&failing));
    let text = String::from_utf8_lossy(&failing.stdout);
    assert!(text.contains("FAILING"), "{text}");
    let healthy = run(&[
        "diagnose",
        "--detect",
        "--context",
        "system",
        "--format",
        "json",
        &data(HEALTHY),
    ]);
    assert_eq!(healthy.status.code(), Some(0), "{}", stderr(&healthy));
    let v: serde_json::Value = serde_json::from_slice(&healthy.stdout).expect("json");
    assert_eq!(v["status"], "healthy", "{v}");
}

#[test]
fn diagnose_text_shows_the_join_configuration() {
    let o = run(&[
        "diagnose",
        &data(FAILING),
        "--registry-file",
        &data("joinconfig/reg-query-domain-controller.txt"),
        "--task-file",
        &data(TASK_XML),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("Join configuration:"), "{text}");
    assert!(text.contains("DISABLED"), "{text}");
    assert!(text.contains("LanmanNT (domain controller)"), "{text}");
}

#[test]
fn bad_join_inputs_exit_2_naming_them() {
    let o = run(&[
        "diagnose",
        &data(FAILING),
        "--task-file",
        "/nonexistent/task.xml",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("/nonexistent/task.xml"),
        "{}",
        stderr(&o)
    );
    let o = run(&["diagnose", &data(FAILING), "--computer-sid", "DOMAIN\\PC$"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a SID"), "{}", stderr(&o));
}
