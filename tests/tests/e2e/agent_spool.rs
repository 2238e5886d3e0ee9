//! The real `dsreg-agent` against the real `dsreg-collector` on loopback: the durable spool
//! (collector down → queued, collector up → delivered once), `kill -9` of `run` around
//! delivery, `run` sending only changes plus a heartbeat, and the overflow policy through the
//! CLI. Every wait is a bounded poll on something observable (exit status, spool files,
//! `/metrics`), never a sleep standing in for synchronisation.

use dsreg_e2e::agent::{agent_binary, isolated_agent, spooled_reports};
use dsreg_e2e::process::output_text;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use dsreg_agent::spool::{Spool, SpoolConfig};
use dsreg_e2e::http::http_get;
use dsreg_e2e::inproc::InProcessCollector;
use dsreg_e2e::process::{KillOnDrop, repo_root, wait_until};
use dsreg_proto::v1::Report;

const FAILING: &str = "domain-joined-discover-0x801c001d-elevated-ws2022.txt";
const HEALTHY: &str = "entra-joined-healthy-prt-cloud-tgt.txt";
const WAIT: Duration = Duration::from_secs(60);

fn fixture(name: &str) -> PathBuf {
    repo_root()
        .join("endpoint-agent/testdata/dsregcmd")
        .join(name)
}

/// A collector URL where nothing listens (a port bound and released at once).
fn dead_collector() -> String {
    format!(
        "http://127.0.0.1:{}",
        dsreg_e2e::process::free_loopback_port()
    )
}

fn agent_cmd(bin: &Path, sub: &str, collector: &str, status: &Path, spool: &Path) -> Command {
    let mut c = isolated_agent(bin);
    c.arg(sub)
        .args(["--collector", collector])
        .arg("--status-file")
        .arg(status)
        .args(["--machine-id", "spool-e2e-0001", "--hostname", "SPOOL-E2E"])
        .arg("--spool-dir")
        .arg(spool);
    c
}

fn send(bin: &Path, collector: &str, status: &Path, spool: &Path, extra: &[&str]) -> Output {
    agent_cmd(bin, "send", collector, status, spool)
        .args(extra)
        .output()
        .expect("run dsreg-agent send")
}

/// The spooled reports (sequence number, report), oldest first, read through the agent's own
/// spool code. Only while no agent runs (opening a spool tidies `*.tmp` files).
fn spooled(dir: &Path) -> Vec<(u64, Report)> {
    let mut s = Spool::open(SpoolConfig::new(dir)).expect("open spool");
    s.oldest(usize::MAX).expect("read spool")
}

/// `dsreg_reports_total{result=…}` from a real scrape.
fn reports_total(c: &InProcessCollector, result: &str) -> u64 {
    let (status, body) = http_get(&c.url("/metrics")).expect("scrape /metrics");
    assert_eq!(status, 200);
    let prefix = format!("dsreg_reports_total{{result=\"{result}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn stored_reports(c: &InProcessCollector) -> u64 {
    reports_total(c, "accepted")
}

#[test]
fn queued_while_the_collector_is_down_then_delivered_exactly_once() {
    let bin = agent_binary();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let status = fixture(FAILING);
    let down = dead_collector();
    let mut ids = BTreeSet::new();
    for i in 1..=4 {
        let o = send(&bin, &down, &status, &spool, &[]);
        assert_eq!(o.status.code(), Some(3), "{}", output_text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("queued"),
            "{}",
            output_text(&o)
        );
        let now = spooled(&spool);
        assert_eq!(now.len(), i, "the spool grows by one per send");
        ids.extend(now.into_iter().map(|(_, r)| r.report_id));
    }
    assert_eq!(ids.len(), 4, "every send queues its own report");

    let c = InProcessCollector::start(&dir.path().join("dsreg.db"), &[]).unwrap();
    let o = send(&bin, &c.grpc_url(), &status, &spool, &[]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", output_text(&o), c.log());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("5 accepted"),
        "{}",
        output_text(&o)
    );
    assert_eq!(spooled_reports(&spool), 0, "the spool is drained");
    assert_eq!(stored_reports(&c), 5);
    assert_eq!(reports_total(&c, "duplicate"), 0);
    // One more send adds exactly one report: nothing delivered earlier is sent again.
    let o = send(&bin, &c.grpc_url(), &status, &spool, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    assert_eq!((stored_reports(&c), reports_total(&c, "duplicate")), (6, 0));
    let (code, dev) = c.get_json("/api/v1/devices/spool-e2e-0001").unwrap();
    assert_eq!(code, 200, "{dev}");
    assert_eq!(dev["join_type"], "domain_joined", "{dev}");
}

fn start_run(
    bin: &Path,
    collector: &str,
    status: &Path,
    spool: &Path,
    extra: &[&str],
) -> KillOnDrop {
    let log = fs::File::create(spool.with_extension(format!("run-{}.log", extra.len()))).unwrap();
    let child = agent_cmd(bin, "run", collector, status, spool)
        .args(extra)
        .env("DSREG_LOG", "debug")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn dsreg-agent run");
    KillOnDrop::new(child)
}

#[test]
fn kill_9_of_run_around_delivery_loses_nothing_and_stores_nothing_twice() {
    let bin = agent_binary();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let status = fixture(FAILING);
    let down = dead_collector();

    // 1. Collector down; `run` with a 0 s heartbeat queues a report every 10 ms cycle.
    let agent = start_run(
        &bin,
        &down,
        &status,
        &spool,
        &["--interval", "10ms", "--heartbeat", "0s"],
    );
    wait_until(
        "150 spooled reports",
        WAIT,
        || (spooled_reports(&spool) >= 150).then_some(()),
        String::new,
    );
    drop(agent); // SIGKILL
    let queued: BTreeSet<String> = spooled(&spool)
        .into_iter()
        .map(|(_, r)| r.report_id)
        .collect();
    let n = queued.len() as u64;
    assert!(n >= 150);
    // Keep a copy of the oldest spooled report: after it is delivered, putting it back
    // recreates on disk exactly what a kill between the collector's commit and the spool's
    // removal leaves behind.
    let (oldest_seq, _) = spooled(&spool)[0].clone();
    let oldest_name = format!("{oldest_seq:020}.report");
    let kept = fs::read(spool.join(&oldest_name)).unwrap();

    // 2. Collector up; `run` drains in batches of 100 (interval and heartbeat long, so it
    //    queues nothing new: the state did not change). Kill -9 it as soon as the first batch
    //    is acknowledged, i.e. while the rest is in flight or about to be.
    let c = InProcessCollector::start(&dir.path().join("dsreg.db"), &[]).unwrap();
    let quiet = ["--interval", "1h", "--heartbeat", "6h"];
    let agent = start_run(&bin, &c.grpc_url(), &status, &spool, &quiet);
    wait_until(
        "the first batch acknowledged",
        WAIT,
        || (stored_reports(&c) > 0).then_some(()),
        || c.log(),
    );
    drop(agent);

    // 3. Restart until the spool is empty: every queued report stored exactly once.
    let agent = start_run(&bin, &c.grpc_url(), &status, &spool, &quiet);
    wait_until(
        "the spool drained",
        WAIT,
        || (spooled_reports(&spool) == 0).then_some(()),
        || c.log(),
    );
    wait_until(
        "every report stored",
        WAIT,
        || (stored_reports(&c) == n).then_some(()),
        || format!("stored {} of {n}\n{}", stored_reports(&c), c.log()),
    );
    drop(agent);
    let dups_before = reports_total(&c, "duplicate");

    // 4. The commit-then-kill window: the delivered report is back in the spool. It is resent,
    //    answered DUPLICATE, removed, and not stored twice.
    fs::write(spool.join(&oldest_name), &kept).unwrap();
    let agent = start_run(&bin, &c.grpc_url(), &status, &spool, &quiet);
    wait_until(
        "the resent report answered",
        WAIT,
        || (spooled_reports(&spool) == 0).then_some(()),
        || c.log(),
    );
    drop(agent);
    assert_eq!(reports_total(&c, "duplicate"), dups_before + 1);
    assert_eq!(stored_reports(&c), n, "nothing stored twice");
    assert_eq!(reports_total(&c, "rejected"), 0);
}

/// Replaces `to` atomically (copy beside it, rename), as a capture job would: a cycle never
/// reads a half-written capture (which would itself be a "change").
fn replace_file(from: &Path, to: &Path) {
    let tmp = to.with_extension("tmp");
    fs::copy(from, &tmp).unwrap();
    fs::rename(&tmp, to).unwrap();
}

#[test]
fn run_sends_at_start_then_only_on_change_plus_a_heartbeat() {
    let bin = agent_binary();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let status = dir.path().join("status.txt");
    replace_file(&fixture(FAILING), &status);
    let c = InProcessCollector::start(&dir.path().join("dsreg.db"), &[]).unwrap();
    let heartbeat = Duration::from_secs(3);
    let started = Instant::now();
    let _agent = start_run(
        &bin,
        &c.grpc_url(),
        &status,
        &spool,
        &["--interval", "100ms", "--heartbeat", "3s"],
    );
    wait_until(
        "the start report",
        WAIT,
        || (stored_reports(&c) == 1).then_some(()),
        || c.log(),
    );
    let device = || c.get_json("/api/v1/devices/spool-e2e-0001").unwrap().1;
    assert_eq!(device()["join_type"], "domain_joined");

    // A changed capture goes out on the next cycle.
    replace_file(&fixture(HEALTHY), &status);
    wait_until(
        "the changed report",
        WAIT,
        || (stored_reports(&c) >= 2).then_some(()),
        || c.log(),
    );
    let changed_at = Instant::now();
    assert_eq!(device()["join_type"], "entra_joined");
    assert!(
        changed_at - started < heartbeat,
        "the change must not wait for the heartbeat"
    );

    // Unchanged cycles (every 100 ms) send nothing until the heartbeat is due.
    wait_until(
        "the heartbeat",
        WAIT,
        || (stored_reports(&c) >= 3).then_some(()),
        || c.log(),
    );
    let beat_after = changed_at.elapsed();
    assert!(
        beat_after >= heartbeat - Duration::from_millis(1500),
        "a report {beat_after:?} after the change is not a heartbeat: unchanged cycles were sent"
    );
    assert_eq!(stored_reports(&c), 3, "exactly one heartbeat");
    assert_eq!(reports_total(&c, "duplicate"), 0);
}

#[test]
fn overflow_keeps_the_first_failure_and_the_latest() {
    let bin = agent_binary();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let settings = dir.path().join("agent.toml");
    fs::write(&settings, "spool_max_reports = 3\n").unwrap();
    let down = dead_collector();
    let config = ["--config", settings.to_str().unwrap()];
    let mut sent = Vec::new();
    for _ in 0..5 {
        let o = send(&bin, &down, &fixture(FAILING), &spool, &config);
        assert_eq!(o.status.code(), Some(3), "{}", output_text(&o));
        let newest = spooled(&spool).pop().unwrap().1.report_id;
        sent.push(newest);
    }
    let kept: Vec<String> = spooled(&spool)
        .into_iter()
        .map(|(_, r)| r.report_id)
        .collect();
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert_eq!(kept.first(), sent.first(), "the first failure is kept");
    assert_eq!(kept.last(), sent.last(), "the latest report is kept");
    let state: serde_json::Value =
        serde_json::from_slice(&fs::read(spool.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["dropped"], 2, "{state}");
}

#[test]
fn system_and_user_context_reports_make_one_device_view() {
    let bin = agent_binary();
    let dir = tempfile::tempdir().unwrap();
    let c = InProcessCollector::start(&dir.path().join("dsreg.db"), &[]).unwrap();
    let status = fixture(HEALTHY);
    let o = send(&bin, &c.grpc_url(), &status, &dir.path().join("sys"), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let o = send(
        &bin,
        &c.grpc_url(),
        &status,
        &dir.path().join("user"),
        &["--user-context"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let (code, d) = c.get_json("/api/v1/devices/spool-e2e-0001").unwrap();
    assert_eq!(code, 200, "{d}");
    assert_eq!(d["sources"]["device"]["context"], "system", "{d}");
    assert_eq!(d["sources"]["user"]["context"], "user", "{d}");
    assert_ne!(
        d["sources"]["device"]["report_id"], d["sources"]["user"]["report_id"],
        "{d}"
    );
    assert_eq!(d["provenance"]["device_state"], "device", "{d}");
    assert_eq!(d["provenance"]["sso_state"], "user", "{d}");
    assert_eq!(d["agent"]["from"], "device", "{d}");
    assert_eq!(d["agent"]["spool_dropped"], 0, "{d}");
    let (code, a) = c.get_json("/api/v1/agents").unwrap();
    assert_eq!(code, 200, "{a}");
    assert_eq!(a["devices"], 1, "{a}");
    assert_eq!(a["versions"][0]["devices"], 1, "{a}");
    assert_eq!(a["spool_overflowing"]["devices"], 0, "{a}");
    let (_, metrics) = http_get(&c.url("/metrics")).unwrap();
    assert!(
        metrics.contains("dsreg_agents_spool_overflowing 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dsreg_agent_versions{version="),
        "{metrics}"
    );
}
