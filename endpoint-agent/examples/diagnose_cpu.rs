//! Parse + diagnose, a fixed number of times, for a CPU-time and allocation count that a busy
//! machine does not blur (criterion's wall time does): run it under `perf stat -e task-clock`
//! and divide by the count. Same inputs as `benches/diagnose.rs` (a capture, and the mixed
//! wevtutil export plus a two-attempt sync-lag window beside it).
//!
//! ```text
//! cargo build --release -p dsreg-agent --example diagnose_cpu
//! cd endpoint-agent/testdata
//! perf stat -e task-clock ../../target/release/examples/diagnose_cpu \
//!     dsregcmd/entra-joined-healthy-prt-cloud-tgt.txt 30000 [parse|diagnose]
//! ```
//!
//! `parse` (the default) parses and diagnoses each time; `diagnose` clones a parsed snapshot
//! and diagnoses it. It prints the allocations and bytes allocated per call to stderr.

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use dsreg_agent::dsregcmd::parse;
use dsreg_agent::events::parse_events;
use dsreg_proto::{ExecutionContext, diagnosis};

/// Counting is on only for a short pass after the timed loop, so the timed loop pays one
/// relaxed load per allocation, not two atomic adds.
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting allocations.
struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn count(bytes: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(bytes, Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(capture), Some(count)) = (args.first(), args.get(1)) else {
        eprintln!("usage: diagnose_cpu <capture> <count> [parse|diagnose] (run in testdata/)");
        return ExitCode::from(2);
    };
    let Ok(count) = count.parse::<usize>() else {
        eprintln!("count {count:?} is not a number");
        return ExitCode::from(2);
    };
    let reparse = match args.get(2).map(String::as_str) {
        None | Some("parse") => true,
        Some("diagnose") => false,
        Some(other) => {
            eprintln!("mode {other:?} is neither parse nor diagnose");
            return ExitCode::from(2);
        }
    };
    let read = |path: &str| std::fs::read(path).map_err(|e| eprintln!("{path}: {e}"));
    let (Ok(bytes), Ok(mixed), Ok(sync_lag)) = (
        read(capture),
        read("events/wevtutil-mixed.xml"),
        read("events/wevtutil-sync-lag-two-attempts.xml"),
    ) else {
        return ExitCode::FAILURE;
    };
    let mut events = parse_events(&mixed).map(|p| p.records).unwrap_or_default();
    events.extend(
        parse_events(&sync_lag)
            .map(|p| p.records)
            .unwrap_or_default(),
    );
    let parsed = parse(&bytes);
    let once = || {
        let mut s = if reparse {
            parse(std::hint::black_box(&bytes))
        } else {
            parsed.clone()
        };
        diagnosis::apply(
            &mut s,
            std::hint::black_box(&events),
            ExecutionContext::System,
        );
        s.attempts.len()
    };
    let mut attempts = 0;
    for _ in 0..count {
        attempts += once();
    }
    // The counted pass.
    const COUNTED: usize = 100;
    COUNTING.store(true, Ordering::Relaxed);
    for _ in 0..COUNTED {
        std::hint::black_box(once());
    }
    COUNTING.store(false, Ordering::Relaxed);
    eprintln!(
        "{} allocations, {} bytes per call; {} attempts per call",
        ALLOCS.load(Ordering::Relaxed) / COUNTED,
        BYTES.load(Ordering::Relaxed) / COUNTED,
        attempts / count.max(1),
    );
    ExitCode::SUCCESS
}
