//! Parse + diagnose benchmark: what one report costs the agent and (the diagnosis part) the
//! collector. `parse_diagnose/<capture>` parses a `dsregcmd /status` capture and runs
//! `diagnosis::apply` with an event export of the registration log beside it (the mixed
//! wevtutil export, parsed once outside the loop, and a sync-lag window of two hourly
//! attempts); `diagnose_only/<capture>` is the diagnosis alone. Issue 11's budget: within
//! 1.5x of the cost before attempts were correlated.
//!
//! Run: `cargo bench -p dsreg-agent --bench diagnose -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use dsreg_agent::dsregcmd::parse;
use dsreg_agent::events::parse_events;
use dsreg_proto::{ExecutionContext, diagnosis};

const CAPTURES: &[&str] = &[
    "entra-joined-healthy-prt-cloud-tgt.txt",
    "domain-joined-discover-0x801c001d-elevated-ws2022.txt",
    "hybrid-kerberos-test-fail-fallback-sync-device-renew-reformatted.txt",
];

fn read(rel: &str) -> Vec<u8> {
    let path = format!("{}/testdata/{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn bench(c: &mut Criterion) {
    let mut events = parse_events(&read("events/wevtutil-mixed.xml"))
        .map(|p| p.records)
        .unwrap_or_default();
    events.extend(
        parse_events(&read("events/wevtutil-sync-lag-two-attempts.xml"))
            .map(|p| p.records)
            .unwrap_or_default(),
    );
    let mut group = c.benchmark_group("parse_diagnose");
    for name in CAPTURES {
        let bytes = read(&format!("dsregcmd/{name}"));
        group.bench_function(*name, |b| {
            b.iter(|| {
                let mut s = parse(black_box(&bytes));
                diagnosis::apply(&mut s, black_box(&events), ExecutionContext::System);
                s
            })
        });
    }
    group.finish();
    let mut group = c.benchmark_group("diagnose_only");
    for name in CAPTURES {
        let parsed = parse(&read(&format!("dsregcmd/{name}")));
        group.bench_function(*name, |b| {
            b.iter(|| {
                let mut s = parsed.clone();
                diagnosis::apply(&mut s, black_box(&events), ExecutionContext::System);
                s
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
