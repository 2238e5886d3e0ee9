//! Memory and speed of the in-memory fleet index (`fleet.rs`) with 10k, 100k and 1M devices.
//!
//! Run: `cargo bench -p dsreg-collector --bench fleet_memory` (release). Each fleet size runs
//! in a fresh child process (this binary re-executed with `--one N`), so the resident set of
//! one size does not carry over into the next. Per size it prints:
//!
//! - `B/device`: heap bytes held by the `Fleet` divided by the device count, counted by a
//!   `#[global_allocator]` wrapper around `System` (bytes requested, not allocator overhead);
//! - `heap_MiB`: the same in total;
//! - `rss_MiB` / `hwm_MiB`: the child's `VmRSS` after the build and its `VmHWM` (peak, which
//!   includes the transient copies of a growing hash table);
//! - `insert_ns` / `update_ns`: mean time of one `Fleet::set` for a new device, and for a known
//!   device with new facts and a newer `last_seen` (what the writer does per report);
//! - `sweep_ms`: the first `counts()` after the build, which moves the stale and undelivered
//!   devices out of the fresh indexes once; `counts_us`: a later `counts()` (must stay flat as
//!   the fleet grows).
//!
//! Target (issue 6): collector RSS ≤ 300 MB at 1M devices; the fleet index should stay well
//! under 150 bytes per device. The fleet mix: 80 % healthy hybrid joined devices (2 % of them
//! without a PRT), 20 % failing, spread over three dozen catalog phase/cause/code keys, four
//! agent versions, 1 % with an overflowing spool, 5 % stale (three days silent) and 2 % not
//! delivered for a day but not yet stale. Machine ids are 36-character GUIDs, like Windows'
//! `MachineGuid`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dsreg_collector::fleet::{DeviceFacts, FailureFacts, Fleet};
use dsreg_proto::catalog;

/// Counts the bytes currently allocated through it.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; only a counter is updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];
const STALE_AFTER: Duration = Duration::from_secs(26 * 3600);
const NOW_MS: i64 = 1_800_000_000_000;
const HOUR_MS: i64 = 3_600_000;
const VERSIONS: [&str; 4] = ["1.4.0", "1.4.1", "1.5.0", "1.5.1"];
/// Distinct catalog failure keys in the mix.
const FAILURE_KEYS: usize = 36;
/// Facts templates: devices share them, so the input costs nothing per device.
const TEMPLATES: usize = 4096;

/// A well-mixed 64-bit value from `i` (splitmix64), so the mix does not follow `i`'s digits.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn template(t: usize) -> DeviceFacts {
    let entries = catalog::entries();
    let r = mix(t as u64);
    let healthy = r % 100 < 80;
    let failure = (!healthy).then(|| {
        let e = &entries[((r >> 8) as usize % FAILURE_KEYS) * entries.len() / FAILURE_KEYS];
        FailureFacts {
            phase: e.phase.label().to_string(),
            cause: e.cause.to_string(),
            code: Some(e.code),
            symbol: e.symbol.to_string(),
        }
    });
    DeviceFacts {
        join_type: if healthy {
            "hybrid_joined"
        } else if (r >> 16).is_multiple_of(4) {
            "not_joined"
        } else {
            "domain_joined"
        }
        .to_string(),
        failing_tests: if healthy {
            0
        } else {
            (r >> 20) as u8 & 0b11_1111
        },
        without_prt: healthy && (r >> 28).is_multiple_of(40),
        agent_version: VERSIONS[(r >> 32) as usize % VERSIONS.len()].to_string(),
        spool_overflowing: (r >> 40).is_multiple_of(100),
        not_targeted: (r >> 48).is_multiple_of(200).then_some("domain_controller"),
        failure,
    }
}

/// The machine id of device `i`: a 36-character lower-case GUID.
fn machine_id(i: u64, buf: &mut String) {
    let (a, b) = (mix(i), mix(i ^ 0x5555_5555_5555_5555));
    buf.clear();
    let _ = write!(
        buf,
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    );
}

/// `last_seen` of device `i`: 5 % three days ago (stale), 2 % 25 h ago (undelivered, not yet
/// stale), the rest within the last 12 hours.
fn last_seen(i: u64) -> i64 {
    let r = mix(i ^ 0xabcd);
    match r % 100 {
        0..=4 => NOW_MS - 72 * HOUR_MS - (r >> 8) as i64 % HOUR_MS,
        5 | 6 => NOW_MS - 25 * HOUR_MS - (r >> 8) as i64 % HOUR_MS,
        _ => NOW_MS - (r >> 8) as i64 % (12 * HOUR_MS),
    }
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

const MIB: f64 = 1024.0 * 1024.0;

/// One fleet size, in this process: prints one table row.
fn one(n: usize) {
    let templates: Vec<DeviceFacts> = (0..TEMPLATES).map(template).collect();
    let mut id = String::with_capacity(64);
    let before = LIVE.load(Ordering::Relaxed);
    let fleet = Fleet::new(STALE_AFTER);
    let t = Instant::now();
    for i in 0..n as u64 {
        machine_id(i, &mut id);
        let facts = &templates[(mix(i ^ 0x1234) % TEMPLATES as u64) as usize];
        fleet.set(&id, Some(facts), last_seen(i));
    }
    let insert = t.elapsed();
    let heap = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    let (rss, hwm) = (status_kib("VmRSS:"), status_kib("VmHWM:"));

    let t = Instant::now();
    black_box(fleet.counts(NOW_MS));
    let sweep = t.elapsed();
    let rounds = 100;
    let t = Instant::now();
    for _ in 0..rounds {
        black_box(fleet.counts(NOW_MS));
    }
    let counts = t.elapsed() / rounds;

    // Every device reports once more, with other facts and a newer `last_seen` (a stale one
    // comes back): subtract, add, move in both ordered indexes.
    let t = Instant::now();
    for i in 0..n as u64 {
        machine_id(i, &mut id);
        let facts = &templates[(mix(i ^ 0x4321) % TEMPLATES as u64) as usize];
        fleet.set(&id, Some(facts), NOW_MS + 1 + (i % 1000) as i64);
    }
    let update = t.elapsed();
    black_box(fleet.counts(NOW_MS + 1000));

    println!(
        "{:>10} {:>9.1} {:>9.1} {:>8.1} {:>8.1} {:>10.0} {:>10.0} {:>9.2} {:>10.1}",
        n,
        heap as f64 / n as f64,
        heap as f64 / MIB,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        insert.as_nanos() as f64 / n as f64,
        update.as_nanos() as f64 / n as f64,
        sweep.as_secs_f64() * 1e3,
        counts.as_secs_f64() * 1e6,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(n) = args
        .iter()
        .position(|a| a == "--one")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
    {
        one(n);
        return;
    }
    // `cargo test --benches` runs bench targets with `--bench` absent: keep that quick.
    let quick = !args.iter().any(|a| a == "--bench");
    let sizes: &[usize] = if quick { &SIZES[..1] } else { &SIZES };
    println!(
        "{:>10} {:>9} {:>9} {:>8} {:>8} {:>10} {:>10} {:>9} {:>10}",
        "devices",
        "B/device",
        "heap_MiB",
        "rss_MiB",
        "hwm_MiB",
        "insert_ns",
        "update_ns",
        "sweep_ms",
        "counts_us"
    );
    let Ok(exe) = std::env::current_exe() else {
        eprintln!("cannot find this executable to run one size per process");
        std::process::exit(1);
    };
    for &n in sizes {
        let status = Command::new(&exe).args(["--one", &n.to_string()]).status();
        if !status.as_ref().is_ok_and(|s| s.success()) {
            eprintln!("size {n} failed: {status:?}");
            std::process::exit(1);
        }
    }
}
