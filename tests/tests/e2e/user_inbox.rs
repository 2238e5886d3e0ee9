//! The user-context handoff with the real binaries on loopback: a `send --user-context
//! --user-inbox DIR` holds no token and never talks to the collector; the device agent's
//! `send --user-inbox DIR --token-file …` ingests the report and delivers it with its own, against
//! a collector that requires agent tokens; the device view shows the user part merged. A file
//! that comes back after delivery (a crash between spool and delete) is stored once.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use dsreg_e2e::agent::{agent_binary, isolated_agent};
use dsreg_e2e::inproc::InProcessCollector;
use dsreg_e2e::process::output_text;
use dsreg_e2e::process::repo_root;

const MACHINE: &str = "inbox-e2e-0001";
const AGENT_TOKEN: &str = "agent-token-inbox-0123456789abcdef";

fn fixture(name: &str) -> PathBuf {
    repo_root()
        .join("endpoint-agent/testdata/dsregcmd")
        .join(name)
}

fn send(collector: &str, status: &Path, extra: &[&str]) -> Output {
    isolated_agent(&agent_binary())
        .arg("send")
        .args(["--collector", collector])
        .arg("--status-file")
        .arg(status)
        .args(["--machine-id", MACHINE, "--hostname", "INBOX-E2E"])
        .args(extra)
        .output()
        .expect("run dsreg-agent send")
}

fn reports_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .map(|l| {
            l.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "report"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn a_user_report_handed_to_the_device_agent_is_delivered_with_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("agent.tokens");
    fs::write(&tokens, format!("{AGENT_TOKEN}\n")).unwrap();
    let token = dir.path().join("agent.token");
    fs::write(&token, AGENT_TOKEN).unwrap();
    let c = InProcessCollector::start(
        &dir.path().join("dsreg.db"),
        &["--agent-token-file", s(&tokens)],
    )
    .unwrap();
    let grpc = c.grpc_url();
    let inbox = dir.path().join("user-inbox");
    fs::create_dir(&inbox).unwrap();
    let status = fixture("entra-joined-healthy-prt-cloud-tgt.txt");
    let user_spool = dir.path().join("user-spool");

    // The user run: no token, hands off, exits 0, and the collector has heard nothing.
    let o = send(
        &grpc,
        &status,
        &[
            "--user-context",
            "--user-inbox",
            s(&inbox),
            "--spool-dir",
            s(&user_spool),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("handed to the device agent"),
        "{}",
        output_text(&o)
    );
    let handed = reports_in(&inbox);
    assert_eq!(handed.len(), 1, "{handed:?}");
    assert!(!user_spool.exists(), "the handoff needs no spool");
    let user_report_id = handed[0]
        .file_stem()
        .and_then(|n| n.to_str())
        .unwrap()
        .to_string();
    let copy = dir.path().join("handed-off.copy");
    fs::copy(&handed[0], &copy).unwrap();
    let (code, _) = c.get_json(&format!("/api/v1/devices/{MACHINE}")).unwrap();
    assert_eq!(code, 404, "the user run did not deliver anything");

    // The device agent: ingests the inbox and delivers both with the agent token.
    let device_spool = dir.path().join("device-spool");
    let device = || {
        let args = [
            "--user-inbox",
            s(&inbox),
            "--token-file",
            s(&token),
            "--spool-dir",
            s(&device_spool),
        ];
        send(&grpc, &status, &args)
    };
    let o = device();
    assert_eq!(o.status.code(), Some(0), "{}\n{}", output_text(&o), c.log());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("2 accepted, 0 already stored"),
        "{}",
        output_text(&o)
    );
    assert!(reports_in(&inbox).is_empty(), "the inbox is drained");
    assert!(!inbox.join("rejected").exists(), "nothing was rejected");

    let (code, d) = c.get_json(&format!("/api/v1/devices/{MACHINE}")).unwrap();
    assert_eq!(code, 200, "{d}");
    assert_eq!(d["sources"]["device"]["context"], "system", "{d}");
    assert_eq!(d["sources"]["user"]["context"], "user", "{d}");
    assert_eq!(d["sources"]["user"]["report_id"], user_report_id, "{d}");
    assert_eq!(d["provenance"]["device_state"], "device", "{d}");
    assert_eq!(d["provenance"]["sso_state"], "user", "{d}");

    // The same file again (the device agent crashed after spooling, before deleting it): it
    // is delivered again and stored once.
    fs::copy(&copy, &handed[0]).unwrap();
    let o = device();
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("1 accepted, 1 already stored"),
        "the resent user report is a duplicate: {}",
        output_text(&o)
    );
    assert!(reports_in(&inbox).is_empty());

    // A report for another device dropped into the inbox is refused and set aside.
    let o = Command::new(agent_binary())
        .args(["send", "--user-context", "--user-inbox", s(&inbox)])
        .arg("--status-file")
        .arg(&status)
        .args(["--machine-id", "someone-elses-device"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let o = device();
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    assert!(reports_in(&inbox).is_empty());
    assert_eq!(reports_in(&inbox.join("rejected")).len(), 1);
    let (code, _) = c.get_json("/api/v1/devices/someone-elses-device").unwrap();
    assert_eq!(code, 404, "a foreign report never reaches the collector");
}
