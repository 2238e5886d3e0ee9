//! `dsreg-agent simulate`: a synthetic fleet that reports to a real collector, for demos and
//! load tests.
//!
//! - [`fleet`]: device identities, the state mix, snapshots built from the fixture corpus and
//!   diagnosed like real captures.
//! - [`scenario`]: `steady`, `sync-lag`, `tenant-not-found`, `outage` timelines.
//! - [`pace`]: token bucket and latency percentiles (also used by `dsreg-bench`).
//!
//! The run is open-loop: a dispatcher takes `--batch` reports at a time from the fleet (devices
//! whose state just changed first, then round-robin), waits on the token bucket for `--rate`,
//! and hands the call to a task; at most [`IN_FLIGHT`] calls are outstanding. A call the
//! collector answers UNAVAILABLE (queue full) or RESOURCE_EXHAUSTED is retried with the same
//! report ids, so a retry after a lost ack shows up as a duplicate, as it would from a spool.
//!
//! Size: about 480 lines of code; the rest of the file is its unit tests, kept beside it.

pub mod fleet;
pub mod pace;
pub mod scenario;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dsreg_proto::v1::telemetry_client::TelemetryClient;
use dsreg_proto::{ReportBatch, ReportStatus};
use tonic::transport::{Channel, Endpoint};

use crate::exit::Exit;

use self::fleet::{Profile, Templates, build_report, profile_of};
use self::pace::{Latencies, TokenBucket, ms};
use self::scenario::{Scenario, Timeline};

/// Most calls outstanding at once.
pub const IN_FLIGHT: usize = 64;
/// gRPC connections the calls are spread over.
pub const CONNECTIONS: usize = 4;
/// How often the progress line is printed.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Attempts per call when the collector says "busy".
pub const ATTEMPTS: u32 = 6;
/// The longest a call waits on the collector's `retry-after-ms` hint.
const MAX_HINT: Duration = Duration::from_secs(5);

/// `simulate` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Collector gRPC URL.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:50051")]
    pub collector: String,
    /// Devices in the synthetic fleet.
    #[arg(long, value_name = "N")]
    pub devices: u64,
    /// Offered load in reports per second (token bucket).
    #[arg(long, value_name = "R", default_value_t = 1000.0)]
    pub rate: f64,
    /// How long to run, e.g. 60s, 10m.
    #[arg(long, value_name = "D", default_value = "60s", value_parser = duration)]
    pub duration: Duration,
    /// What happens during the run.
    #[arg(long, value_enum, default_value_t = Scenario::Steady)]
    pub scenario: Scenario,
    /// Reports per call.
    #[arg(long, value_name = "B", default_value_t = 100)]
    pub batch: usize,
    /// Fleet seed: the same seed gives the same devices and the same mix.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
}

fn duration(s: &str) -> Result<Duration, String> {
    crate::settings::parse_duration(s).map_err(|e| e.to_string())
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A flag is out of range.
    #[error("{0}")]
    BadArgs(String),
    /// The collector could not be reached (exit 3).
    #[error("collector {url} unreachable: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// The transport error.
        reason: String,
    },
}

/// Counters shared by the dispatcher, the call tasks and the progress line.
#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    calls: AtomicU64,
    accepted: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Reports handed to calls.
    pub sent: u64,
    /// Calls made (first attempts).
    pub calls: u64,
    /// ACCEPTED results.
    pub accepted: u64,
    /// DUPLICATE results.
    pub duplicates: u64,
    /// REJECTED results.
    pub rejected: u64,
    /// Reports in calls that never got an answer.
    pub failed: u64,
    /// Retried attempts (collector busy).
    pub retries: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Per-call latency (answered attempts).
    pub p50: Option<Duration>,
    /// Per-call latency (answered attempts).
    pub p99: Option<Duration>,
}

impl Summary {
    /// Acknowledged (accepted + duplicate) reports per second of wall time.
    pub fn rate(&self) -> f64 {
        (self.accepted + self.duplicates) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "sent          {} reports in {} calls",
            self.sent, self.calls
        )?;
        writeln!(f, "acknowledged  {} accepted", self.accepted)?;
        writeln!(f, "duplicates    {}", self.duplicates)?;
        writeln!(f, "rejected      {}", self.rejected)?;
        writeln!(
            f,
            "unanswered    {} (after {} busy retries)",
            self.failed, self.retries
        )?;
        writeln!(
            f,
            "achieved      {:.0} reports/s over {:.1}s",
            self.rate(),
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "latency       p50 {} ms, p99 {} ms (per call)",
            ms(self.p50),
            ms(self.p99)
        )
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Connects `n` channels to `url` (each is one HTTP/2 connection).
pub async fn connect(url: &str, n: usize) -> Result<Vec<TelemetryClient<Channel>>, SimError> {
    let unreachable = |reason: String| SimError::Unreachable {
        url: url.to_string(),
        reason,
    };
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| SimError::BadArgs(format!("collector URL {url:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true);
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| unreachable(format!("{e}: {}", source_chain(&e))))?;
        clients.push(
            TelemetryClient::new(channel)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
        );
    }
    Ok(clients)
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}

/// One call with retries on "busy"; updates the counters and latencies.
async fn call(
    mut client: TelemetryClient<Channel>,
    batch: ReportBatch,
    counters: Arc<Counters>,
    latencies: Arc<Mutex<Latencies>>,
) {
    let n = batch.reports.len() as u64;
    let mut backoff = Duration::from_millis(50);
    for attempt in 1..=ATTEMPTS {
        let t = Instant::now();
        let answer = client.report(batch.clone()).await;
        match answer {
            Ok(ack) => {
                latencies
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .record(t.elapsed());
                for r in ack.into_inner().results {
                    let c = match ReportStatus::try_from(r.status) {
                        Ok(ReportStatus::Accepted) => &counters.accepted,
                        Ok(ReportStatus::Duplicate) => &counters.duplicates,
                        _ => &counters.rejected,
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            Err(s)
                if attempt < ATTEMPTS
                    && matches!(
                        s.code(),
                        tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                    ) =>
            {
                // As the agent does: the collector's hint when it gives one.
                counters.retries.fetch_add(1, Ordering::Relaxed);
                let hint = crate::deliver::retry_hint(&s).map_or(backoff, |h| h.min(MAX_HINT));
                tokio::time::sleep(hint).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(s) => {
                tracing::debug!(code = ?s.code(), message = s.message(), "call failed");
                if s.code() == tonic::Code::InvalidArgument {
                    counters.rejected.fetch_add(n, Ordering::Relaxed);
                } else {
                    counters.failed.fetch_add(n, Ordering::Relaxed);
                }
                return;
            }
        }
    }
}

/// Devices waiting to report at once (state change or reconnect), then the round-robin cursor.
struct Queue {
    devices: u64,
    seed: u64,
    urgent: VecDeque<u64>,
    /// Reports taken from the round-robin so far; `cursor / devices` is the cycle.
    cursor: u64,
}

impl Queue {
    /// The next device to report, or `None` when every device is silent (all stale).
    fn next(&mut self) -> Option<(u64, bool)> {
        if let Some(i) = self.urgent.pop_front() {
            return Some((i, true));
        }
        for _ in 0..self.devices {
            let i = self.cursor % self.devices;
            let cycle = self.cursor / self.devices;
            self.cursor += 1;
            // Stale devices report once, then go silent for good.
            if cycle == 0 || profile_of(self.seed, i) != Profile::Stale {
                return Some((i, false));
            }
        }
        None
    }
}

/// Runs a simulation; prints a progress line to stderr every [`PROGRESS_EVERY`] when
/// `progress` is set.
pub async fn run(args: &SimulateArgs, progress: bool) -> Result<Summary, SimError> {
    if args.devices == 0 {
        return Err(SimError::BadArgs("--devices must be at least 1".into()));
    }
    if !(args.rate.is_finite() && args.rate > 0.0) {
        return Err(SimError::BadArgs(format!(
            "--rate must be a positive number of reports per second, not {}",
            args.rate
        )));
    }
    if args.batch == 0 || args.batch > 10_000 {
        return Err(SimError::BadArgs(format!(
            "--batch must be 1..=10000, not {}",
            args.batch
        )));
    }
    let clients = connect(&args.collector, CONNECTIONS).await?;
    let templates = Templates::new();
    let timeline = Timeline {
        scenario: args.scenario,
        seed: args.seed,
    };
    let counters = Arc::new(Counters::default());
    let latencies = Arc::new(Mutex::new(Latencies::new()));
    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let start = Instant::now();
    let ticker = progress.then(|| tokio::spawn(progress_lines(counters.clone(), start)));

    let mut bucket = TokenBucket::new(args.rate, (args.rate / 10.0).max(args.batch as f64), start);
    let mut queue = Queue {
        devices: args.devices,
        seed: args.seed,
        urgent: VecDeque::new(),
        cursor: 0,
    };
    let mut last: Vec<u8> = vec![u8::MAX; usize::try_from(args.devices).unwrap_or(usize::MAX)];
    let mut stage = timeline.stage(0.0);
    let mut next_client = 0;
    let mut storm_left: u64 = 0;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= args.duration {
            break;
        }
        let now_stage = timeline.stage(elapsed.as_secs_f64() / args.duration.as_secs_f64());
        if let Some(everyone) = timeline.transition(stage, now_stage) {
            for i in 0..args.devices {
                let base = profile_of(args.seed, i);
                let reports_now = if everyone {
                    base != Profile::Stale
                } else {
                    timeline.in_burst(i, base)
                };
                if reports_now {
                    queue.urgent.push_back(i);
                }
            }
            if everyone {
                storm_left = queue.urgent.len() as u64;
                if progress {
                    eprintln!("simulate: reconnect storm: {storm_left} devices at once");
                }
            }
        }
        stage = now_stage;
        if !timeline.sending(stage) {
            tokio::time::sleep(Duration::from_millis(100).min(args.duration - elapsed)).await;
            continue;
        }
        let now_s = unix_now();
        let mut reports = Vec::with_capacity(args.batch);
        while reports.len() < args.batch {
            let Some((i, _urgent)) = queue.next() else {
                break;
            };
            let profile = timeline.profile(i, profile_of(args.seed, i), stage);
            let slot = usize::try_from(i).unwrap_or(usize::MAX);
            let heartbeat = last.get(slot) == Some(&(profile as u8));
            if let Some(s) = last.get_mut(slot) {
                *s = profile as u8;
            }
            reports.push(build_report(
                &templates, args.seed, i, profile, now_s, heartbeat,
            ));
        }
        if reports.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let n = reports.len() as u64;
        // The storm is unthrottled: every device reconnects at once, bounded only by IN_FLIGHT.
        if storm_left > 0 {
            storm_left = storm_left.saturating_sub(n);
        } else {
            let wait = bucket.take(n as f64, Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        counters.sent.fetch_add(n, Ordering::Relaxed);
        counters.calls.fetch_add(1, Ordering::Relaxed);
        let client = clients[next_client % clients.len()].clone();
        next_client += 1;
        let (c, l) = (counters.clone(), latencies.clone());
        tokio::spawn(async move {
            call(client, ReportBatch { reports }, c, l).await;
            drop(permit);
        });
    }
    // Wait for every outstanding call.
    let _ = permits.acquire_many(IN_FLIGHT as u32).await;
    if let Some(t) = ticker {
        t.abort();
    }
    let elapsed = start.elapsed();
    let mut lat = latencies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let summary = Summary {
        sent: get(&counters.sent),
        calls: get(&counters.calls),
        accepted: get(&counters.accepted),
        duplicates: get(&counters.duplicates),
        rejected: get(&counters.rejected),
        failed: get(&counters.failed),
        retries: get(&counters.retries),
        elapsed,
        p50: lat.percentile(50.0),
        p99: lat.percentile(99.0),
    };
    if summary.sent > 0 && summary.failed == summary.sent {
        return Err(SimError::Unreachable {
            url: args.collector.clone(),
            reason: "no call was answered".into(),
        });
    }
    Ok(summary)
}

async fn progress_lines(counters: Arc<Counters>, start: Instant) {
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.tick().await;
    let mut last = (0u64, Instant::now());
    loop {
        tick.tick().await;
        let acked =
            counters.accepted.load(Ordering::Relaxed) + counters.duplicates.load(Ordering::Relaxed);
        let now = Instant::now();
        let rate = (acked - last.0.min(acked)) as f64 / (now - last.1).as_secs_f64().max(1e-9);
        last = (acked, now);
        eprintln!(
            "simulate: {:>6.1}s sent {} acked {} rejected {} unanswered {} rate {:.0}/s",
            start.elapsed().as_secs_f64(),
            counters.sent.load(Ordering::Relaxed),
            acked,
            counters.rejected.load(Ordering::Relaxed),
            counters.failed.load(Ordering::Relaxed),
            rate
        );
    }
}

/// The `simulate` subcommand: runs, prints the summary, maps errors to the exit table
/// (done, bad flags, collector unreachable, no runtime).
pub fn main(args: SimulateArgs) -> Exit {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dsreg-agent: cannot start the runtime: {e}");
            return Exit::Fault;
        }
    };
    match runtime.block_on(run(&args, true)) {
        Ok(summary) => {
            print!("{summary}");
            Exit::Ok
        }
        Err(e @ SimError::Unreachable { .. }) => {
            eprintln!("dsreg-agent: {e}");
            Exit::Unreachable
        }
        Err(e) => {
            eprintln!("dsreg-agent: {e}");
            Exit::BadInput
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_runs_round_robin_and_silences_stale_devices_after_one_report() {
        let seed = 11;
        let devices = 200;
        let stale = (0..devices)
            .filter(|&i| profile_of(seed, i) == Profile::Stale)
            .count() as u64;
        assert!(stale > 0, "the seed has stale devices");
        let mut q = Queue {
            devices,
            seed,
            urgent: VecDeque::from([7, 7]),
            cursor: 0,
        };
        assert_eq!(q.next(), Some((7, true)));
        assert_eq!(q.next(), Some((7, true)));
        let first: Vec<u64> = (0..devices).filter_map(|_| q.next().map(|x| x.0)).collect();
        assert_eq!(
            first,
            (0..devices).collect::<Vec<_>>(),
            "first cycle: everyone"
        );
        let second: Vec<u64> = (0..devices - stale)
            .filter_map(|_| q.next().map(|x| x.0))
            .collect();
        assert!(
            second
                .iter()
                .all(|&i| profile_of(seed, i) != Profile::Stale)
        );
        assert_eq!(second.len() as u64, devices - stale);
        // A fleet of only stale devices falls silent instead of spinning.
        let seed = (0..100_000)
            .find(|&s| profile_of(s, 0) == Profile::Stale)
            .unwrap_or(0);
        let mut q = Queue {
            devices: 1,
            seed,
            urgent: VecDeque::new(),
            cursor: 0,
        };
        assert_eq!(q.next(), Some((0, false)));
        assert_eq!(q.next(), None);
    }

    #[test]
    fn summary_rate_counts_acknowledged_reports() {
        let s = Summary {
            sent: 100,
            calls: 1,
            accepted: 90,
            duplicates: 10,
            rejected: 0,
            failed: 0,
            retries: 0,
            elapsed: Duration::from_secs(2),
            p50: None,
            p99: None,
        };
        assert!((s.rate() - 50.0).abs() < 1e-9);
        assert!(s.to_string().contains("achieved      50 reports/s"));
    }

    #[tokio::test]
    async fn an_unreachable_collector_is_reported_as_such() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let args = SimulateArgs {
            collector: format!("http://127.0.0.1:{port}"),
            devices: 10,
            rate: 10.0,
            duration: Duration::from_millis(100),
            scenario: Scenario::Steady,
            batch: 5,
            seed: 1,
        };
        assert!(matches!(
            run(&args, false).await,
            Err(SimError::Unreachable { .. })
        ));
    }
}
