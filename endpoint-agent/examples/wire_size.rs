//! Bytes on the wire per report, plain protobuf vs gzip, over the fixture corpus.
//!
//! `cargo run -p dsreg-agent --example wire_size`
//!
//! Each `testdata/dsregcmd/*.txt` capture becomes the report the agent would send (parsed,
//! diagnosed, with a join configuration from `testdata/joinconfig/`), is encoded as a gRPC
//! message, and is gzipped at flate2's default level as tonic's `gzip` encoding does. A batch
//! of all of them is measured too (one gRPC call). gRPC's 5-byte frame header and HTTP/2
//! framing are the same either way and left out.

use std::io::Write as _;

use anyhow::Context as _;
use dsreg_agent::identity::Identity;
use dsreg_agent::joinconfig;
use dsreg_agent::report::{self, Capture};
use dsreg_proto::v1::{AgentHealth, ReportBatch};
use dsreg_proto::{EventRecord, ExecutionContext};
use prost::Message;

fn gzip(bytes: &[u8]) -> anyhow::Result<usize> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes)?;
    Ok(enc.finish()?.len())
}

fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut files: Vec<_> = std::fs::read_dir(root.join("dsregcmd"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    let join = joinconfig::from_captures(
        Some(&std::fs::read(root.join(
            "joinconfig/reg-query-workstation-cdj-no-policy-utf16.txt",
        ))?),
        &[std::fs::read(
            root.join("joinconfig/schtasks-list-en-ready-failed.txt"),
        )?],
        time::UtcOffset::UTC,
    );
    let identity = Identity {
        machine_id: "5b1c0f6e-6f0e-4c55-9a53-0c1b9a7e2f11".into(),
        hostname: "PC-0421".into(),
        ad_domain: "CONTOSO".into(),
        os_build: "10.0.22631.4460".into(),
    };
    let now = time::OffsetDateTime::now_utc();
    let events: Vec<EventRecord> = Vec::new();
    let mut reports = Vec::new();
    let (mut sum_plain, mut sum_gzip) = (0usize, 0usize);
    println!(
        "{:<72} {:>7} {:>7} {:>6}",
        "fixture", "plain", "gzip", "ratio"
    );
    for path in &files {
        let status = std::fs::read(path).with_context(|| path.display().to_string())?;
        let r = report::build(
            Capture {
                status: &status,
                events: &events,
                join_config: Some(&join),
            },
            &identity,
            ExecutionContext::System,
            now,
            AgentHealth::default(),
        );
        let plain = r.encode_to_vec();
        let zipped = gzip(&plain)?;
        sum_plain += plain.len();
        sum_gzip += zipped;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!(
            "{name:<72} {:>7} {zipped:>7} {:>5.1}x",
            plain.len(),
            plain.len() as f64 / zipped.max(1) as f64
        );
        reports.push(r);
    }
    let n = reports.len().max(1);
    println!(
        "{:<72} {:>7} {:>7} {:>5.1}x",
        format!("mean per report ({n} reports, one per call)"),
        sum_plain / n,
        sum_gzip / n,
        sum_plain as f64 / sum_gzip.max(1) as f64
    );
    let batch = ReportBatch { reports }.encode_to_vec();
    let zipped = gzip(&batch)?;
    println!(
        "{:<72} {:>7} {zipped:>7} {:>5.1}x",
        format!("one batch of all {n} reports"),
        batch.len(),
        batch.len() as f64 / zipped.max(1) as f64
    );
    Ok(())
}
