//! The two ceilings the collector is measured against: a bare gRPC server that acks without
//! storing, and the writer's own SQLite statements without the collector around them
//! (`dsreg_collector::bench`), plus the pre-population through the collector's apply path.

use std::path::Path;
use std::time::{Duration, Instant};

use dsreg_agent::simulate::fleet::{build_report, profile_of};
use dsreg_collector::bench;
use dsreg_proto::v1::telemetry_server::Telemetry;
use dsreg_proto::{ReportAck, ReportBatch, ReportResult, ReportStatus};
use tonic::{Request, Response, Status};

use super::readings::own_thread_cpu_s;
use super::{Gen, SEED, unix_now};

/// The gRPC ceiling: decode the batch, ack every report.
pub struct NullIngest;

#[tonic::async_trait]
impl Telemetry for NullIngest {
    async fn report(&self, request: Request<ReportBatch>) -> Result<Response<ReportAck>, Status> {
        let results = request
            .into_inner()
            .reports
            .into_iter()
            .map(|r| ReportResult {
                report_id: r.report_id,
                status: ReportStatus::Accepted as i32,
                message: String::new(),
            })
            .collect();
        Ok(Response::new(ReportAck { results }))
    }

    async fn enroll(
        &self,
        _request: Request<dsreg_proto::v1::EnrollRequest>,
    ) -> Result<Response<dsreg_proto::v1::EnrollResponse>, Status> {
        Err(Status::unimplemented("the null ingest does not enroll"))
    }
}

/// Pre-populates `db` with `devices` devices through the collector's own apply path, in one
/// transaction (`dsreg_collector::bench::populate`), and leaves every device in its heartbeat
/// state: a report that brings events is never a heartbeat, so the part it stores has no state
/// hash and its device's next report takes the writer's full path once. Each device whose
/// report brought its attempt records is therefore written a second time, with the same
/// snapshot and no events (what the heartbeat run sends), which stores the hash.
pub fn populate(db: &Path, gen_: &Gen, devices: u64) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let now_s = unix_now() - 3600;
    let reports = (0..devices).flat_map(|i| {
        let profile = profile_of(SEED, i);
        let first = build_report(&gen_.templates, SEED, i, profile, now_s, false);
        let settle = (!first.events.is_empty())
            .then(|| build_report(&gen_.templates, SEED, i, profile, now_s, true));
        std::iter::once(first).chain(settle)
    });
    bench::populate(db, reports, now_s * 1000, 50)?;
    Ok(t.elapsed())
}

/// When [`populate`] collected the fleet's snapshots (unix s): the collection time of the first
/// device written (all share it). Fails when a stored part has no state hash: that device's
/// first "heartbeat" would take the full path, and the heartbeat runs would measure a mix (a
/// database kept with `--populated` from before [`populate`] settled every device: 4 % of the
/// devices).
pub fn populated_at_s(db: &Path) -> anyhow::Result<i64> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let unsettled: i64 = conn.query_row(
        "SELECT count(*) FROM devices
         WHERE (device_collected_at IS NOT NULL AND device_state_hash IS NULL)
            OR (user_collected_at IS NOT NULL AND user_state_hash IS NULL)",
        [],
        |r| r.get(0),
    )?;
    anyhow::ensure!(
        unsettled == 0,
        "{}: {unsettled} devices have a stored part without a state hash, so their next \
         heartbeat takes the full path (a database populated before every device was \
         settled)",
        db.display()
    );
    let ms: i64 = conn.query_row(
        "SELECT collected_at FROM devices ORDER BY rowid LIMIT 1",
        [],
        |r| r.get(0),
    )?;
    Ok(ms.div_euclid(1000))
}

/// What the storage ceiling measured; [`Ceiling::add`] sums segments.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ceiling {
    /// Reports written.
    pub written: u64,
    /// Time of the timed SQLite work.
    pub timed: Duration,
    /// CPU of the writing thread during that work, s.
    pub cpu_s: f64,
}

impl Ceiling {
    /// Reports per second of the timed SQLite work.
    pub fn rps(&self) -> f64 {
        self.written as f64 / self.timed.as_secs_f64().max(1e-9)
    }

    /// CPU of the writing thread per report, µs: the same reading as the collector's writer
    /// thread, so the two say whether a gap is work or waiting.
    pub fn cpu_us(&self) -> f64 {
        self.cpu_s * 1e6 / self.written.max(1) as f64
    }

    pub fn add(&mut self, other: &Ceiling) {
        self.written += other.written;
        self.timed += other.timed;
        self.cpu_s += other.cpu_s;
    }
}

/// The storage ceiling: the writer's own statements on the same database with the writer's
/// connection settings (`dsreg_collector::bench::Storage`), in transactions of `group`
/// reports: heartbeat rows when `heartbeat`, else full rows. Measures the timed SQLite work
/// only (row preparation is outside it).
pub fn storage_ceiling(
    db: &Path,
    gen_: &Gen,
    group: usize,
    dur: Duration,
    heartbeat: bool,
) -> anyhow::Result<Ceiling> {
    let storage = bench::Storage::open(db)?;
    let mut timed = Duration::ZERO;
    let mut cpu_s = 0.0;
    let mut written = 0u64;
    let wall = Instant::now();
    while timed < dur && wall.elapsed() < dur * 4 {
        let now_s = unix_now();
        let rows: Vec<bench::Prepared> = (0..group)
            .map(|_| bench::Storage::prepare(gen_.report(now_s)))
            .collect();
        let (t, cpu) = (Instant::now(), own_thread_cpu_s());
        storage.write(&rows, now_s * 1000, heartbeat)?;
        timed += t.elapsed();
        cpu_s += own_thread_cpu_s() - cpu;
        written += rows.len() as u64;
    }
    Ok(Ceiling {
        written,
        timed,
        cpu_s,
    })
}
