//! `dsreg-bench`: collector ingest throughput and latency next to its physical ceilings, in one
//! run on one machine.
//!
//! ```text
//! cargo run --release -p dsreg-e2e --bin dsreg-bench -- --quick     # 100k devices, < 3 min
//! cargo run --release -p dsreg-e2e --bin dsreg-bench                # 100k and 1M devices, RSS
//! ```
//!
//! For each fleet size the database is pre-populated through the collector's own code
//! (`dsreg_collector::bench::populate`: the writer's apply path, one transaction), then:
//!
//! - **collector** (in-process `dsreg_collector::run` on 127.0.0.1:0, default config, the real
//!   durability: WAL + `synchronous=FULL`, ack after COMMIT): closed-loop throughput with
//!   [`BATCH_CLIENTS`] clients × 100 reports per call (and again with only [`FEW_CLIENTS`]
//!   clients), and [`UNARY_CLIENTS`] clients × 1 report per call (a refused call backs off
//!   for the collector's `retry-after-ms`, as the agent does); then p50/p99 per call at
//!   an open-loop offered load of [`P99_RATE`] reports/s (unary and batched), latency counted
//!   from the call's scheduled time (calls started on time by a pacing thread, see
//!   [`open_loop`]). During the batched open loop, the p99 of four API reads
//!   (failures, agents, a filtered page of 100 devices, a device document; see `api.rs`).
//! - **gRPC ceiling**: a bare tonic server on loopback that decodes the same `ReportBatch` and
//!   acks every report, driven by the same clients.
//! - **storage ceiling**: the writer's own statements (`dsreg_collector::bench::Storage`) on
//!   the same database file with the writer's connection settings and durability, in
//!   transactions of the group size the collector itself reached in the batched run (from its
//!   `/metrics`), writing the rows the collector writes for a heartbeat: the `reports`
//!   idempotency row and the narrow `devices` update (which carries the part's times and id).
//!   It alternates with the collector's batched run in [`SEGMENTS`] pairs of a third of a
//!   phase each (the collector idle meanwhile), so that a slow spell of the machine weighs on
//!   both sides of their ratio; each pair's figures are printed.
//!   A second figure writes full rows (part and device upserts, which encode their snapshot
//!   blobs as the writer does), what every report cost before the heartbeat shortcut.
//!   Hashes and facts are derived outside the timed section: no fleet, history or attempts.
//!
//! All load comes from the simulator's fleet (`dsreg_agent::simulate`): every report is a fresh
//! `report_id` for an existing device with its steady-mix state (the heartbeat workload).
//! Client and server share the machine's cores in every column; the clients send their reports
//! pre-encoded (`wire.rs`, checked at start to decode to exactly what the simulator builds), so
//! that they take as little as they can from the collector, whose agents would run elsewhere.
//! The absolute figures still include the client's cost. The last line is a `RESULT` line for
//! scripts.
//!
//! Size: about 800 lines: the run's sequence (phases, fleet sizes, the table and the `RESULT`
//! line) reads top to bottom here; the clients' reports, the API probe, the ceilings and the
//! readings of the collector's own metrics are in their own modules.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use dsreg_agent::simulate::fleet::{Templates, build_report, mix, profile_of};
use dsreg_agent::simulate::pace::{Latencies, ms};
use dsreg_proto::v1::telemetry_server::TelemetryServer;
use dsreg_proto::{Report, ReportAck, ReportStatus};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Endpoint;

mod api;
mod ceilings;
mod readings;
mod wire;

use ceilings::{Ceiling, NullIngest, populate, storage_ceiling};
use readings::{bucket_quantile, metric_sum, process_cpu_s, rss_mib, thread_cpu_s};
use wire::{Sender, Wire};

/// Concurrent clients in the batched runs.
/// Enough callers to load the collector: a fleet coming back from an outage has thousands of
/// agents calling at once (the change of definition: docs/performance.md, "Reproduce").
const BATCH_CLIENTS: usize = 32;
/// Clients of the extra batched run. With 8 × 100 reports in flight a closed loop measures
/// the round trip of a call through the single writer more than the collector's capacity.
const FEW_CLIENTS: usize = 8;
/// Reports per call in the batched runs.
const BATCH: usize = 100;
/// Concurrent clients (calls in flight) in the unary runs.
const UNARY_CLIENTS: usize = 64;
/// Offered load of the latency runs, reports/s.
const P99_RATE: f64 = 5000.0;
/// Pairs of (collector batched, storage ceiling) segments the batched run alternates.
const SEGMENTS: u32 = 3;
/// HTTP/2 connections the clients share.
const CONNECTIONS: usize = 4;
/// Fleet seed.
const SEED: u64 = 20_260_101;

struct Opts {
    quick: bool,
    phase: Duration,
    /// A directory of populated databases kept between runs (`--populated DIR`): for profiling
    /// iterations; delete it whenever `populate` or the schema changes.
    populated: Option<std::path::PathBuf>,
}

/// Report generator over an existing fleet: random device order, fresh report ids.
#[derive(Clone)]
struct Gen {
    templates: Arc<Templates>,
    devices: u64,
    cursor: Arc<AtomicU64>,
    /// When the stored snapshots were collected (unix s; the populated database's time). A
    /// not-joined device's snapshot quotes the hour of its newest join attempt, so a report
    /// built at another hour is a new attempt, a state change: built at this time instead, each
    /// report repeats its device's stored snapshot (a heartbeat), and only `collected_at` is
    /// the report's own. Before, 12 % of the "heartbeat" reports (the failing, not-joined
    /// devices) took the full path whenever the run's hour differed from the populate's.
    snapshot_at_s: i64,
}

impl Gen {
    fn report(&self, now_s: i64) -> Report {
        let k = self.cursor.fetch_add(1, Ordering::Relaxed);
        let i = pick(k, self.devices);
        let profile = profile_of(SEED, i);
        let mut r = build_report(&self.templates, SEED, i, profile, self.snapshot_at_s, true);
        r.collected_at = Some(prost_types::Timestamp {
            seconds: now_s,
            nanos: 0,
        });
        r
    }
}

/// The device of the `k`-th report of a run: spread over the fleet at random.
fn pick(k: u64, devices: u64) -> u64 {
    mix(k ^ 0x6265_6e63) % devices
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// One measured run.
#[derive(Default, Clone)]
struct Run {
    acked: u64,
    busy: u64,
    elapsed: Duration,
    lat: Latencies,
    /// The collector's longest group commit during the run (zero for the ceilings).
    longest_commit: Duration,
}

impl Run {
    fn rps(&self) -> f64 {
        self.acked as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Adds a later segment of the same run.
    fn add(&mut self, other: &Run) {
        self.acked += other.acked;
        self.busy += other.busy;
        self.elapsed += other.elapsed;
        self.lat.merge(&other.lat);
        self.longest_commit = self.longest_commit.max(other.longest_commit);
    }

    /// The slowest call, ms ("-" when none).
    fn worst(&mut self) -> String {
        ms(self.lat.percentile(100.0))
    }
}

/// Runs one collector phase and records the longest group commit during it.
async fn phase(run: impl std::future::Future<Output = anyhow::Result<Run>>) -> anyhow::Result<Run> {
    let _ = dsreg_collector::bench::take_longest_commit();
    let mut r = run.await?;
    r.longest_commit = dsreg_collector::bench::take_longest_commit();
    Ok(r)
}

async fn clients(addr: SocketAddr) -> anyhow::Result<Vec<Sender>> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < CONNECTIONS {
        match endpoint.connect().await {
            Ok(c) => out.push(Sender::new(c)),
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    Ok(out)
}

fn count(ack: &ReportAck) -> u64 {
    ack.results
        .iter()
        .filter(|r| {
            matches!(
                ReportStatus::try_from(r.status),
                Ok(ReportStatus::Accepted | ReportStatus::Duplicate)
            )
        })
        .count() as u64
}

/// Closed loop: `tasks` callers, each sending `batch`-report calls back to back for `dur`.
async fn closed_loop(
    addr: SocketAddr,
    wire: &Wire,
    batch: usize,
    tasks: usize,
    dur: Duration,
) -> anyhow::Result<Run> {
    let cs = clients(addr).await?;
    let start = Instant::now();
    let deadline = start + dur;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let mut client = cs[t % cs.len()].clone();
        let g = wire.clone();
        handles.push(tokio::spawn(async move {
            let mut run = Run::default();
            while Instant::now() < deadline {
                let b = g.batch(batch);
                let t0 = Instant::now();
                match client.report(b).await {
                    Ok(ack) => {
                        run.lat.record(t0.elapsed());
                        run.acked += count(ack.get_ref());
                    }
                    Err(s) if s.code() == tonic::Code::Unavailable => {
                        // Back off as the agent does: for the collector's hint.
                        run.busy += 1;
                        let hint = dsreg_agent::deliver::retry_hint(&s);
                        tokio::time::sleep(hint.unwrap_or(Duration::from_millis(2))).await;
                    }
                    Err(s) => return Err(anyhow::anyhow!("call failed: {s}")),
                }
            }
            anyhow::Ok(run)
        }));
    }
    let mut total = Run::default();
    for h in handles {
        let r = h.await??;
        total.acked += r.acked;
        total.busy += r.busy;
        total.lat.merge(&r.lat);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// Open loop: calls of `batch` reports scheduled at `rate` reports/s for `dur`, whatever the
/// answers; latency runs from the scheduled time (no coordinated omission).
///
/// The calls are started on time by a thread of their own, which sleeps in the kernel's
/// high-resolution timer between them and hands each call to the runtime. Paced with tokio's
/// `sleep_until`, whose timer has millisecond steps, 5 000 calls a second went out five at a
/// time once a millisecond, each counted from its own scheduled time: the harness's lateness
/// was in every call's latency, and the collector saw bursts instead of a stream.
async fn open_loop(
    addr: SocketAddr,
    wire: &Wire,
    batch: usize,
    rate: f64,
    dur: Duration,
) -> anyhow::Result<Run> {
    let cs = clients(addr).await?;
    let interval = Duration::from_secs_f64(batch as f64 / rate);
    let calls = (dur.as_secs_f64() / interval.as_secs_f64()) as usize;
    let lat = Arc::new(std::sync::Mutex::new(Latencies::new()));
    let acked = Arc::new(AtomicU64::new(0));
    let busy = Arc::new(AtomicU64::new(0));
    let runtime = tokio::runtime::Handle::current();
    let start = Instant::now();
    let pacer = {
        let (wire, lat, acked, busy) = (wire.clone(), lat.clone(), acked.clone(), busy.clone());
        std::thread::Builder::new()
            .name("bench-pacer".into())
            .spawn(move || {
                let mut handles = Vec::with_capacity(calls);
                for i in 0..calls {
                    let b = wire.batch(batch);
                    let at = start + interval.mul_f64(i as f64);
                    let early = at.saturating_duration_since(Instant::now());
                    if !early.is_zero() {
                        std::thread::sleep(early);
                    }
                    let mut client = cs[i % cs.len()].clone();
                    let (lat, acked, busy) = (lat.clone(), acked.clone(), busy.clone());
                    handles.push(runtime.spawn(async move {
                        match client.report(b).await {
                            Ok(ack) => {
                                let took = Instant::now().saturating_duration_since(at);
                                lat.lock().unwrap_or_else(|p| p.into_inner()).record(took);
                                acked.fetch_add(count(ack.get_ref()), Ordering::Relaxed);
                            }
                            Err(_) => {
                                busy.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }));
                }
                handles
            })?
    };
    let handles = tokio::task::spawn_blocking(move || pacer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the open loop's pacing thread panicked"))?;
    for h in handles {
        h.await?;
    }
    let lat = lat.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(Run {
        acked: acked.load(Ordering::Relaxed),
        busy: busy.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        lat,
        longest_commit: Duration::ZERO,
    })
}

struct Results {
    devices: u64,
    populate: Duration,
    batched: Run,
    few: Run,
    unary: Run,
    p99_unary: Run,
    p99_batched: Run,
    /// Batched, closed loop, every report a state change (the full-row path).
    full: Run,
    group: f64,
    grpc_batched: Run,
    grpc_unary: Run,
    /// The bare gRPC server at the offered load, unary: the latency floor of harness and
    /// loopback.
    grpc_p99: Run,
    /// COMMIT (WAL write + fsync) duration p50 and p99 bucket bounds in the unary open loop.
    commit_p50_p99: (Option<f64>, Option<f64>),
    /// The collector's own per-call handling time (receive to ack), same run.
    batch_p50_p99: (Option<f64>, Option<f64>),
    /// CPU time of the collector's SQLite writer thread per report in the batched run, µs.
    writer_us: f64,
    /// Same run: the collector's background checkpointer thread, µs per report.
    checkpointer_us: f64,
    /// Same run: every thread of this process (collector and harness clients), µs per report.
    process_us: f64,
    storage_rps: f64,
    /// CPU time of the storage ceiling's thread per heartbeat report, µs (same reading).
    storage_cpu_us: f64,
    storage_full_rps: f64,
    /// API reads during the batched open loop.
    api: api::ApiLatencies,
    rss: (f64, f64),
    rss_before: f64,
}

async fn measure(opts: &Opts, devices: u64, dir: &Path) -> anyhow::Result<Results> {
    let mut gen_ = Gen {
        templates: Arc::new(Templates::new()),
        devices,
        cursor: Arc::new(AtomicU64::new(0)),
        snapshot_at_s: unix_now(),
    };
    let db = dir.join(format!("bench-{devices}.db"));
    let kept = opts
        .populated
        .as_ref()
        .map(|d| d.join(format!("bench-{devices}.db")));
    let populate = match &kept {
        Some(k) if k.exists() => {
            eprintln!("[{devices} devices] copying the populated {}", k.display());
            copy_synced(k, &db)?;
            Duration::ZERO
        }
        _ => {
            eprintln!("[{devices} devices] pre-populating {}", db.display());
            let took = {
                let (db, g) = (db.clone(), gen_.clone());
                tokio::task::spawn_blocking(move || populate(&db, &g, devices)).await??
            };
            if let Some(k) = &kept {
                copy_synced(&db, k)?;
            }
            took
        }
    };
    eprintln!("[{devices} devices] populated in {populate:.1?}");
    gen_.snapshot_at_s = ceilings::populated_at_s(&db).map_err(|e| match &kept {
        Some(k) => e.context(format!(
            "delete the kept {} and run again to populate it anew",
            k.display()
        )),
        None => e,
    })?;
    let wire = {
        let (t, at) = (gen_.templates.clone(), gen_.snapshot_at_s);
        tokio::task::spawn_blocking(move || Wire::new(&t, SEED, devices, at)).await??
    };

    // The collector, in-process, default configuration except the database and ports.
    let rss_before = rss_mib().1;
    let config = dsreg_collector::config::Config {
        db: db.clone(),
        ..Default::default()
    };
    let grpc = TcpListener::bind("127.0.0.1:0").await?;
    let http = TcpListener::bind("127.0.0.1:0").await?;
    let addr = grpc.local_addr()?;
    let http_addr = http.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dsreg_collector::run(config, grpc, http, async {
        let _ = stopped.await;
    }));
    let scrape = move || -> anyhow::Result<String> {
        let (_, body) = dsreg_e2e::http::http_get(&format!("http://{http_addr}/metrics"))?;
        Ok(body)
    };
    // The collector answers once its store is open: at 1M devices the page re-cache and the
    // fleet rebuild can take longer than one call's 10 s timeout.
    let started = Instant::now();
    let before = loop {
        match tokio::task::spawn_blocking(scrape).await? {
            Ok(body) => break body,
            Err(e) if started.elapsed() > Duration::from_secs(180) => {
                return Err(e.context("the collector did not answer within 180 s"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    eprintln!(
        "[{devices} devices] collector answered after {:.1?}",
        started.elapsed()
    );
    // The batched run and the storage ceiling alternate in SEGMENTS pairs, each ceiling
    // segment in transactions of the group size its collector segment reached, so that a slow
    // spell of the machine (the ceiling alone moved by ±25 % between runs) weighs on both.
    // The collector stays up, idle, while the ceiling writes to the same file.
    eprintln!(
        "[{devices} devices] collector: batched, alternated with the storage ceiling ({SEGMENTS} pairs)"
    );
    let cpu = || {
        [
            thread_cpu_s("dsreg-sqlite-wr"),
            thread_cpu_s("dsreg-sqlite-ch"),
            process_cpu_s(),
        ]
    };
    let segment = opts.phase / SEGMENTS;
    let mut batched = Run::default();
    let mut storage = Ceiling::default();
    let (mut cpu_used, mut commits) = ([0.0; 3], 0.0);
    let mut before = before;
    for i in 1..=SEGMENTS {
        let cpu_before = cpu();
        let run = phase(closed_loop(addr, &wire, BATCH, BATCH_CLIENTS, segment)).await?;
        let cpu_after = cpu();
        for (used, (a, b)) in cpu_used.iter_mut().zip(cpu_after.iter().zip(cpu_before)) {
            *used += a - b;
        }
        let after = tokio::task::spawn_blocking(scrape).await??;
        let c = metric_sum(&after, "dsreg_store_commit_duration_seconds_count")
            - metric_sum(&before, "dsreg_store_commit_duration_seconds_count");
        commits += c;
        let g = (run.acked as f64 / c.max(1.0)).round().max(1.0) as usize;
        let ceiling = {
            let (db, gg) = (db.clone(), gen_.clone());
            tokio::task::spawn_blocking(move || storage_ceiling(&db, &gg, g, segment, true))
                .await??
        };
        eprintln!(
            "[{devices} devices]   pair {i}: collector {:.0} reports/s, storage ceiling {:.0} (transactions of {g}): {:.2}",
            run.rps(),
            ceiling.rps(),
            run.rps() / ceiling.rps().max(1e-9)
        );
        batched.add(&run);
        storage.add(&ceiling);
        before = tokio::task::spawn_blocking(scrape).await??;
    }
    let [writer_us, checkpointer_us, process_us] =
        cpu_used.map(|used| used * 1e6 / batched.acked.max(1) as f64);
    eprintln!(
        "[{devices} devices] batched: {:.0} reports/s; CPU per report: writer thread {writer_us:.1} µs, checkpointer {checkpointer_us:.1} µs, the whole process {process_us:.1} µs (the rest is gRPC, decoding and the harness's clients)",
        batched.rps()
    );
    let group = batched.acked as f64 / commits.max(1.0);
    eprintln!("[{devices} devices] collector: batched, {FEW_CLIENTS} clients");
    let few = phase(closed_loop(addr, &wire, BATCH, FEW_CLIENTS, opts.phase)).await?;
    eprintln!("[{devices} devices] collector: unary");
    let unary = phase(closed_loop(addr, &wire, 1, UNARY_CLIENTS, opts.phase)).await?;
    eprintln!("[{devices} devices] collector: p99 at {P99_RATE} reports/s");
    let before_open = tokio::task::spawn_blocking(scrape).await??;
    let p99_unary = phase(open_loop(addr, &wire, 1, P99_RATE, opts.phase)).await?;
    let after_open = tokio::task::spawn_blocking(scrape).await??;
    let commit = "dsreg_store_commit_duration_seconds";
    let commit_p50_p99 = (
        bucket_quantile(&before_open, &after_open, commit, 0.5),
        bucket_quantile(&before_open, &after_open, commit, 0.99),
    );
    let batch = "dsreg_ingest_batch_duration_seconds";
    let batch_p50_p99 = (
        bucket_quantile(&before_open, &after_open, batch, 0.5),
        bucket_quantile(&before_open, &after_open, batch, 0.99),
    );
    eprintln!(
        "[{devices} devices] collector: batched at {P99_RATE} reports/s, API reads alongside"
    );
    let probe = {
        let d = opts.phase;
        tokio::task::spawn_blocking(move || api::probe(http_addr, SEED, devices, d))
    };
    let p99_batched = phase(open_loop(addr, &wire, BATCH, P99_RATE, opts.phase)).await?;
    let api = probe.await??;
    eprintln!("[{devices} devices] collector: batched, every report a state change");
    let full = phase(closed_loop(
        addr,
        &wire.changing(),
        BATCH,
        BATCH_CLIENTS,
        opts.phase,
    ))
    .await?;
    let rss = rss_mib();
    let _ = stop.send(());
    server.await?.context("collector")?;

    eprintln!("[{devices} devices] gRPC ceiling");
    let grpc = TcpListener::bind("127.0.0.1:0").await?;
    let null_addr = grpc.local_addr()?;
    let (nstop, nstopped) = tokio::sync::oneshot::channel::<()>();
    let null = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TelemetryServer::new(NullIngest).max_decoding_message_size(4 << 20))
            .serve_with_incoming_shutdown(TcpListenerStream::new(grpc), async {
                let _ = nstopped.await;
            }),
    );
    let grpc_batched = closed_loop(null_addr, &wire, BATCH, BATCH_CLIENTS, opts.phase).await?;
    let grpc_unary = closed_loop(null_addr, &wire, 1, UNARY_CLIENTS, opts.phase).await?;
    let grpc_p99 = open_loop(null_addr, &wire, 1, P99_RATE, opts.phase).await?;
    let _ = nstop.send(());
    null.await??;

    let g = group.round().max(1.0) as usize;
    eprintln!("[{devices} devices] storage ceiling, full rows (transactions of {g} reports)");
    let storage_full_rps = {
        let (db, gg, d) = (db.clone(), gen_.clone(), opts.phase);
        tokio::task::spawn_blocking(move || storage_ceiling(&db, &gg, g, d, false)).await??
    }
    .rps();
    Ok(Results {
        devices,
        populate,
        batched,
        few,
        unary,
        p99_unary,
        p99_batched,
        full,
        group,
        grpc_batched,
        grpc_unary,
        grpc_p99,
        commit_p50_p99,
        batch_p50_p99,
        writer_us,
        checkpointer_us,
        process_us,
        storage_rps: storage.rps(),
        storage_cpu_us: storage.cpu_us(),
        storage_full_rps,
        api,
        rss,
        rss_before,
    })
}

fn print_table(rs: &mut [Results]) {
    println!();
    println!(
        "| devices | path | collector reports/s | p50 ms | p99 ms | worst call ms | longest group commit ms | gRPC ceiling reports/s | collector/gRPC | storage ceiling reports/s | collector/storage |"
    );
    println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in rs.iter_mut() {
        let devices = r.devices;
        let ceilings = |rps: f64, grpc: Option<f64>, storage: Option<f64>| {
            let ratio = |c: Option<f64>| {
                c.map_or(" | ".to_string(), |c| {
                    format!("{c:.0} | {:.2}", rps / c.max(1e-9))
                })
            };
            format!("{} | {}", ratio(grpc), ratio(storage))
        };
        let rows: [(String, &mut Run, Option<f64>, Option<f64>); 6] = [
            (
                format!("batched ({BATCH}/call, {BATCH_CLIENTS} clients, closed loop)"),
                &mut r.batched,
                Some(r.grpc_batched.rps()),
                Some(r.storage_rps),
            ),
            (
                format!("batched ({BATCH}/call, {FEW_CLIENTS} clients, closed loop)"),
                &mut r.few,
                None,
                None,
            ),
            (
                format!("unary (1/call, {UNARY_CLIENTS} in flight, closed loop)"),
                &mut r.unary,
                Some(r.grpc_unary.rps()),
                None,
            ),
            (
                format!("unary at {P99_RATE:.0} reports/s offered (open loop)"),
                &mut r.p99_unary,
                None,
                None,
            ),
            (
                format!("batched at {P99_RATE:.0} reports/s offered (open loop)"),
                &mut r.p99_batched,
                None,
                None,
            ),
            (
                format!("full rows: batched, {BATCH_CLIENTS} clients, every report a state change"),
                &mut r.full,
                None,
                Some(r.storage_full_rps),
            ),
        ];
        for (name, run, grpc, storage) in rows {
            println!(
                "| {devices} | {name} | {:.0} | {} | {} | {} | {} | {} |",
                run.rps(),
                ms(run.lat.percentile(50.0)),
                ms(run.lat.percentile(99.0)),
                run.worst(),
                ms(Some(run.longest_commit)),
                ceilings(run.rps(), grpc, storage),
            );
        }
    }
    println!();
    for r in rs.iter_mut() {
        println!(
            "{} devices: storage ceiling writing full rows (part + device upserts, no heartbeat shortcut) {:.0} reports/s; the heartbeat batched run is {:.2} of it, the full-row run {:.2}",
            r.devices,
            r.storage_full_rps,
            r.batched.rps() / r.storage_full_rps.max(1e-9),
            r.full.rps() / r.storage_full_rps.max(1e-9),
        );
        let bound = |b: Option<f64>| b.map_or("n/a".to_string(), |s| format!("<= {}", s * 1e3));
        println!(
            "{} devices: unary at {P99_RATE:.0} reports/s offered: the bare gRPC server answers in p50 {} / p99 {} ms (harness and loopback floor); the collector handled each call in p50 {} / p99 {} ms, of which COMMIT p50 {} / p99 {} ms (histogram bucket bounds)",
            r.devices,
            ms(r.grpc_p99.lat.percentile(50.0)),
            ms(r.grpc_p99.lat.percentile(99.0)),
            bound(r.batch_p50_p99.0),
            bound(r.batch_p50_p99.1),
            bound(r.commit_p50_p99.0),
            bound(r.commit_p50_p99.1),
        );
        println!(
            "{} devices: API reads during the batched open loop ({} per s each), p50 / p99 ms: failures {} / {}, agents {} / {}, device list (cause filter, 100) {} / {}, device document {} / {}",
            r.devices,
            api::PER_READ_HZ,
            ms(r.api.failures.percentile(50.0)),
            ms(r.api.failures.percentile(99.0)),
            ms(r.api.agents.percentile(50.0)),
            ms(r.api.agents.percentile(99.0)),
            ms(r.api.device_list.percentile(50.0)),
            ms(r.api.device_list.percentile(99.0)),
            ms(r.api.device_doc.percentile(50.0)),
            ms(r.api.device_doc.percentile(99.0)),
        );
        println!(
            "{} devices: populated in {:.1}s; collector group commit {:.0} reports/commit (batched run), writer thread CPU {:.1} µs/report (the storage ceiling's thread, same heartbeat SQL: {:.1}); busy answers: batched {}, unary {}, open-loop {}/{}, full rows {}; RSS before collector {:.0} MiB, after its runs VmRSS {:.0} MiB, VmHWM {:.0} MiB",
            r.devices,
            r.populate.as_secs_f64(),
            r.group,
            r.writer_us,
            r.storage_cpu_us,
            r.batched.busy,
            r.unary.busy,
            r.p99_unary.busy,
            r.p99_batched.busy,
            r.full.busy,
            r.rss_before,
            r.rss.1,
            r.rss.0,
        );
    }
}

/// Copies a populated database and writes the copy back to disk at once: gigabytes of dirty
/// pages flushed during the runs would slow every fsync of the collector.
fn copy_synced(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", to.display()))
}

/// What `--help` prints after the usage line.
const HELP: &str = "Measures the collector's ingest (closed and open loops, batched and unary) \
next to a bare gRPC server and the storage ceiling, at 100k and 1M devices, and ends with a \
RESULT line for scripts.

  --quick          100k devices only, shorter phases (under 3 minutes)
  --devices N      only this fleet size
  --populated DIR  keep the pre-populated database of each size in DIR and reuse it in the
                   next run (a copy is synced before measuring); a 1M database is about 2.6 GB.
                   One populated before 2026-12-01 is refused (its devices are not all in
                   their heartbeat state): delete it to populate it anew

Run it on an otherwise idle machine: client and server share its cores.";

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let usage = "usage: dsreg-bench [--quick] [--devices N] [--populated DIR]";
    let mut quick = false;
    let mut only: Option<u64> = None;
    let mut populated = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--help" | "-h" => {
                println!("{usage}\n\n{HELP}");
                return Ok(());
            }
            "--devices" => {
                let v = args.next().context(usage)?;
                let n =
                    v.parse::<u64>().ok().filter(|n| *n > 0).with_context(|| {
                        format!("--devices {v:?}: not a positive count; {usage}")
                    })?;
                only = Some(n);
            }
            "--populated" => populated = Some(args.next().context(usage)?.into()),
            _ => anyhow::bail!("unknown argument {a:?}; {usage}"),
        }
    }
    let opts = Opts {
        quick,
        phase: Duration::from_secs(if quick { 10 } else { 15 }),
        populated,
    };
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("dsreg-bench").tempdir()?;
    let sizes: Vec<u64> = match only {
        Some(n) => vec![n],
        None if opts.quick => vec![100_000],
        None => vec![100_000, 1_000_000],
    };
    let mut results = Vec::new();
    for &devices in &sizes {
        results.push(measure(&opts, devices, dir.path()).await?);
    }
    print_table(&mut results);
    println!("total bench time {:.0}s", started.elapsed().as_secs_f64());
    let last = results.last_mut().context("no results")?;
    let batched = last.batched.rps();
    let p99 = last
        .p99_unary
        .lat
        .percentile(99.0)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    // The worst call and longest group commit over every collector phase of the last size.
    let (mut worst_call_ms, mut longest_commit_ms) = (0.0f64, 0.0f64);
    for r in [
        &mut last.batched,
        &mut last.few,
        &mut last.unary,
        &mut last.p99_unary,
        &mut last.p99_batched,
        &mut last.full,
    ] {
        let worst = r.lat.percentile(100.0).unwrap_or_default();
        worst_call_ms = worst_call_ms.max(worst.as_secs_f64() * 1000.0);
        longest_commit_ms = longest_commit_ms.max(r.longest_commit.as_secs_f64() * 1000.0);
    }
    let full_rps = last.full.rps();
    println!(
        "RESULT batched_rps={:.0} unary_rps={:.0} p99_ms={:.2} storage_ceiling_rps={:.0} grpc_ceiling_rps={:.0} storage_ratio={:.2} grpc_ratio={:.2} devices={} api_failures_p99_ms={:.2} api_agents_p99_ms={:.2} api_device_list_p99_ms={:.2} api_device_doc_p99_ms={:.2} worst_call_ms={worst_call_ms:.1} longest_commit_ms={longest_commit_ms:.1} full_rows_rps={full_rps:.0} full_rows_ceiling_rps={:.0} full_rows_ratio={:.2} writer_us_per_report={:.1} ceiling_us_per_report={:.1} checkpointer_us_per_report={:.1} process_us_per_report={:.1}",
        batched,
        last.unary.rps(),
        p99,
        last.storage_rps,
        last.grpc_batched.rps(),
        batched / last.storage_rps.max(1e-9),
        batched / last.grpc_batched.rps().max(1e-9),
        last.devices,
        api::p99_ms(&mut last.api.failures),
        api::p99_ms(&mut last.api.agents),
        api::p99_ms(&mut last.api.device_list),
        api::p99_ms(&mut last.api.device_doc),
        last.storage_full_rps,
        full_rps / last.storage_full_rps.max(1e-9),
        last.writer_us,
        last.storage_cpu_us,
        last.checkpointer_us,
        last.process_us,
    );
    Ok(())
}
