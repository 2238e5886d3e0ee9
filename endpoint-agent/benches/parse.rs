//! Parser benchmark: for every fixture, `parse/<fixture>` (bytes → snapshot) against the
//! baseline `decode_and_split/<fixture>` (bytes → text → counted lines), the least any
//! parser of this input must do. Target (issue): p50 ≤ 20 µs for the full 1803+ capture
//! `entra-joined-healthy-prt-cloud-tgt.txt` in release mode.
//!
//! Run: `cargo bench -p dsreg-agent --bench parse -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dsreg_agent::dsregcmd::{Lines, decode, parse};

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = format!("{}/testdata/dsregcmd", env!("CARGO_MANIFEST_DIR"));
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .map(|p| {
            let name = p
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (name, bytes)
        })
        .collect();
    out.sort();
    out
}

fn bench(c: &mut Criterion) {
    let all = fixtures();
    let mut group = c.benchmark_group("parse");
    for (name, bytes) in &all {
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(name.as_str(), |b| b.iter(|| parse(black_box(bytes))));
    }
    group.finish();
    let mut group = c.benchmark_group("decode_and_split");
    for (name, bytes) in &all {
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(name.as_str(), |b| {
            b.iter(|| {
                let decoded = decode(black_box(bytes));
                Lines::new(&decoded.text).count()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
