//! The real agent with join configuration captures (`send --registry-file --task-file
//! --computer-sid`): the report it spools — exactly what goes on the wire — carries
//! `snapshot.join_config` as read from the files, and it is delivered gzip-compressed (the
//! agent always compresses) to the real collector on loopback, which stores it. (Serving
//! `join_config` in the device API is the collector's part of issue 12.)

use std::path::Path;
use std::process::Output;

use dsreg_agent::spool::{Spool, SpoolConfig};
use dsreg_e2e::agent::{agent_binary, isolated_agent};
use dsreg_e2e::inproc::InProcessCollector;
use dsreg_e2e::process::output_text;
use dsreg_e2e::process::{free_loopback_port, repo_root};

const SID: &str = "S-1-5-21-1004336348-1177238915-682003330-1001";

fn send(collector: &str, spool: &Path) -> Output {
    let data = repo_root().join("endpoint-agent/testdata");
    isolated_agent(&agent_binary())
        .arg("send")
        .args(["--collector", collector])
        .arg("--status-file")
        .arg(data.join("dsregcmd/domain-joined-discover-0x801c001d-elevated-ws2022.txt"))
        .arg("--registry-file")
        .arg(data.join("joinconfig/reg-query-domain-controller.txt"))
        .arg("--task-file")
        .arg(data.join("joinconfig/schtasks-xml-disabled-utf16.xml"))
        .arg("--task-file")
        .arg(data.join("joinconfig/schtasks-list-en-disabled-never-ran.txt"))
        .args(["--computer-sid", SID])
        .args([
            "--machine-id",
            "joincfg-e2e-0001",
            "--hostname",
            "JOINCFG-E2E",
        ])
        .arg("--spool-dir")
        .arg(spool)
        .output()
        .expect("run dsreg-agent send")
}

#[test]
fn the_report_carries_the_join_configuration_and_is_delivered_with_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    // Nothing listens: the report stays in the spool, where it can be read as sent.
    let dead = format!("http://127.0.0.1:{}", free_loopback_port());
    let out = send(&dead, &spool);
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    let queued = Spool::open(SpoolConfig::new(&spool))
        .and_then(|mut s| s.oldest(usize::MAX))
        .expect("read spool");
    assert_eq!(queued.len(), 1);
    let j = queued[0]
        .1
        .snapshot
        .as_ref()
        .and_then(|s| s.join_config.clone())
        .expect("join_config on the spooled report");
    assert_eq!(j.task_enabled, Some(false));
    assert_eq!(j.task_state.as_deref(), Some("Disabled"));
    assert_eq!(j.task_last_result, Some(0x0004_1303));
    assert_eq!(j.product_type.as_deref(), Some("LanmanNT"));
    assert_eq!(j.os_build.as_deref(), Some("10.0.20348.2837"));
    assert_eq!(j.computer_sid.as_deref(), Some(SID));

    // The collector takes the gzip-compressed call: the spooled report and the new one.
    let c = InProcessCollector::start(&dir.path().join("dsreg.db"), &[]).unwrap();
    let out = send(&c.grpc_url(), &spool);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        output_text(&out),
        c.log()
    );
    let text = output_text(&out);
    assert!(text.contains("2 accepted"), "{text}");
    let (status, doc) = c
        .get_json("/api/v1/devices/joincfg-e2e-0001")
        .expect("device API");
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["hostname"], "JOINCFG-E2E", "{doc}");
}
