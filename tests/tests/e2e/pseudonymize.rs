//! Pseudonymized users end to end: the real agent (`send --pseudonymize-key-file`) delivers
//! captures that name users (Executing Account Name, PRT User Identity) to the real collector,
//! and no user name or UPN is anywhere in the collector's database files — while the same
//! captures sent without the key do put them there (so the check can fail). The token the
//! collector holds is the one computed from the fleet key.

use std::path::Path;

use dsreg_agent::pseudonym::Pseudonymizer;
use dsreg_e2e::agent::{agent_binary, isolated_agent};
use dsreg_e2e::inproc::InProcessCollector;
use dsreg_e2e::process::output_text;
use dsreg_e2e::process::repo_root;

const KEY: &str = "fleet-pseudonymization-key-0123456789";
const CAPTURES: [(&str, &str); 2] = [
    ("entra-joined-healthy-prt-cloud-tgt.txt", "pseudo-e2e-0001"),
    (
        "doc-sso-state-prt-diagnostics-0xc000006d-aadsts50126.txt",
        "pseudo-e2e-0002",
    ),
];
/// What must not reach the collector (from the captures above).
const NAMES: [&str; 4] = [
    "user_d26zuvzj01@inesecuritylabs.onmicrosoft.com",
    "user_d26zuvzj01",
    "INEUser",
    "john@contoso.com",
];

fn db_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for name in ["dsreg.db", "dsreg.db-wal"] {
        all.extend(std::fs::read(dir.join(name)).unwrap_or_default());
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Sends every capture (with `extra` flags) to a fresh collector; returns its database bytes.
fn deliver(dir: &Path, extra: &[&str]) -> Vec<u8> {
    std::fs::create_dir_all(dir).unwrap();
    let c = InProcessCollector::start(&dir.join("dsreg.db"), &[]).unwrap();
    for (capture, machine) in CAPTURES {
        let out = isolated_agent(&agent_binary())
            .arg("send")
            .args(["--collector", &c.grpc_url()])
            .arg("--status-file")
            .arg(
                repo_root()
                    .join("endpoint-agent/testdata/dsregcmd")
                    .join(capture),
            )
            .args(["--machine-id", machine, "--hostname", "PSEUDO-E2E"])
            .arg("--spool-dir")
            .arg(dir.join(format!("spool-{machine}")))
            .args(extra)
            .output()
            .expect("run dsreg-agent send");
        assert!(out.status.success(), "{}", output_text(&out));
    }
    c.shutdown().unwrap();
    db_bytes(dir)
}

#[test]
fn no_user_name_reaches_the_collector_with_the_fleet_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("fleet.key");
    std::fs::write(&key, format!("{KEY}\n")).unwrap();

    // Control: without the key the names are stored (the search below can find them).
    let clear = deliver(&dir.path().join("clear"), &[]);
    assert!(
        contains(&clear, "john@contoso.com") && contains(&clear, "inesecuritylabs"),
        "the captures name users"
    );

    let hidden = deliver(
        &dir.path().join("hidden"),
        &["--pseudonymize-key-file", key.to_str().unwrap()],
    );
    for name in NAMES {
        assert!(!contains(&hidden, name), "{name} reached the collector");
    }
    let token = Pseudonymizer::new(KEY.as_bytes()).token("john@contoso.com");
    assert!(
        contains(&hidden, &token),
        "the PRT user identity is stored as its token"
    );
}
