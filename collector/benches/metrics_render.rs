//! `/metrics` render cost and body size with 10k, 100k and 1M devices in the fleet aggregates.
//!
//! Run: `cargo bench -p dsreg-collector --bench metrics_render` (release). Prints one table row
//! per fleet size: p50/p99/max of a full scrape (aggregate snapshot + text render, what the
//! `/metrics` handler does) and the body size. Target (issue "Prometheus metrics…"): ≤ 5 ms p99
//! and ≤ 64 KiB at every size — the render walks the aggregate maps, never the devices, so both
//! should stay flat as the fleet grows.
//!
//! The fleet mix is realistic and adversarial at once: most devices healthy, failures spread
//! over every catalog cause with its documented code, plus far more distinct unknown codes
//! than the label cap admits (they must fold into `code="other"`).

use std::time::{Duration, Instant};

use dsreg_collector::fleet::{DeviceFacts, FailureFacts, Fleet};
use dsreg_collector::metrics::Metrics;
use dsreg_proto::{JoinType, catalog};

const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];
const SCRAPES: usize = 200;

fn facts(i: usize) -> DeviceFacts {
    let entries = catalog::entries();
    let join = JoinType::ALL[i % JoinType::ALL.len()].label().to_string();
    let failure = match i % 10 {
        // 70 % healthy.
        0..=6 => None,
        // 20 % failing with a documented code and its cause.
        7 | 8 => {
            let e = &entries[i % entries.len()];
            Some(FailureFacts {
                phase: e.phase.label().to_string(),
                cause: e.cause.to_string(),
                code: Some(e.code),
                symbol: e.symbol.to_string(),
            })
        }
        // 10 % failing with codes nobody documented: thousands of distinct values.
        _ => Some(FailureFacts {
            phase: "join".to_string(),
            cause: "unknown_dsreg".to_string(),
            code: Some(0x801c_9000 + (i as u32 % 5_000)),
            symbol: String::new(),
        }),
    };
    DeviceFacts {
        join_type: join,
        failing_tests: (i % 64) as u8 & 0b0011_1111,
        without_prt: i.is_multiple_of(13),
        failure,
        ..Default::default()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let sizes: &[usize] = if quick { &SIZES[..1] } else { &SIZES };
    println!(
        "{:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>14}",
        "devices", "p50_ms", "p99_ms", "max_ms", "body_KiB", "series", "first_scrape_ms"
    );
    for &n in sizes {
        let fleet = Fleet::new(Duration::from_secs(26 * 3600));
        let now_ms = 1_800_000_000_000_i64;
        for i in 0..n {
            // A tenth of the fleet was last seen three days ago: stale.
            let seen = if i % 10 == 3 {
                now_ms - 3 * 86_400_000
            } else {
                now_ms - (i as i64 % 3_600_000)
            };
            fleet.set(&format!("machine-{i:07}"), Some(&facts(i)), seen);
        }
        let metrics = Metrics::new();
        // The first scrape after a tenth of the fleet went stale moves those devices from the
        // fresh index to the stale set once (amortised O(1) per device); report it apart.
        let t = Instant::now();
        std::hint::black_box(metrics.render(&fleet.counts(now_ms)));
        let first = t.elapsed();
        let mut times = Vec::with_capacity(SCRAPES);
        let mut body = String::new();
        for _ in 0..if quick { 5 } else { SCRAPES } {
            let t = Instant::now();
            let counts = fleet.counts(now_ms);
            body = metrics.render(&counts);
            times.push(t.elapsed());
            std::hint::black_box(&body);
        }
        times.sort();
        let series = body.lines().filter(|l| !l.starts_with('#')).count();
        println!(
            "{:>10} {:>10.3} {:>10.3} {:>10.3} {:>10.1} {:>8} {:>14.1}",
            n,
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.99).as_secs_f64() * 1e3,
            times.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
            body.len() as f64 / 1024.0,
            series,
            first.as_secs_f64() * 1e3
        );
    }
}
