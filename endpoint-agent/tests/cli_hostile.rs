//! `dsreg-agent parse` and `diagnose` through the real binary on hostile input: random bytes,
//! a 20 MB line, NULs, UTF-16 with lone surrogates or an odd byte count, an event export of
//! garbage. The binary exits 0 (parsed, with warnings) or 2 (unreadable input) — never a
//! panic (101) or a signal. Linear cost is by construction (one pass, see `dsregcmd`) and
//! covered by `parse_props.rs`' large-input test and the criterion bench, not timed here.

use std::path::Path;
use std::process::{Command, Stdio};

fn lcg_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut s = seed ^ 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (s >> 33) as u8
        })
        .collect()
}

fn utf16le(units: &[u16]) -> Vec<u8> {
    let mut out = vec![0xff, 0xfe];
    for u in units {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out
}

fn run(args: &[&str], file: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dsreg-agent"))
        .args(args)
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run dsreg-agent");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    // `code()` is None when a signal (e.g. SIGSEGV from a stack overflow) ended it.
    (out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn parse_and_diagnose_exit_0_or_2_on_hostile_input() {
    let dir = tempfile::tempdir().unwrap();
    let status_line = b"        AzureAdJoined : NO\r\n".to_vec();
    let mut surrogates: Vec<u16> = "+----+\r\n| Device State |\r\n AzureAdJoined : "
        .encode_utf16()
        .collect();
    surrogates.extend([0xd800, 0x0041, 0xdc00, 0xdbff, 0x000a, 0xdfff, 0xd800]);
    let mut odd = utf16le(&"DomainJoined : YES\r\n".encode_utf16().collect::<Vec<_>>());
    odd.push(0x41);
    let mut big_line = vec![b'A'; 20 * 1024 * 1024];
    big_line.extend_from_slice(b" : value\r\n");
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("random-1mb", lcg_bytes(1, 1024 * 1024)),
        ("random-small", lcg_bytes(2, 333)),
        ("nuls", vec![0u8; 64 * 1024]),
        (
            "nuls-in-lines",
            [&status_line[..], b"\0\0 : \0\r\n", &status_line[..]].concat(),
        ),
        ("line-20mb", big_line),
        ("utf16-lone-surrogates", utf16le(&surrogates)),
        ("utf16-odd-length", odd),
        ("utf16be-bom-only", vec![0xfe, 0xff]),
        (
            "utf8-bom-then-garbage",
            [&[0xef, 0xbb, 0xbf][..], &lcg_bytes(3, 4096)].concat(),
        ),
        (
            "only-separators",
            b"+----+\n|\n+----+\n: : :\n".repeat(10_000),
        ),
    ];
    for (name, bytes) in inputs {
        let file = dir.path().join(name);
        std::fs::write(&file, &bytes).unwrap();
        let events = file.to_string_lossy().to_string();
        for args in [
            &["parse", "--format", "json"][..],
            &["parse", "--format", "text"][..],
            &["diagnose"][..],
            &["diagnose", "--events", &events][..],
        ] {
            let (code, stderr) = run(args, &file);
            assert!(
                code == 0 || code == 2,
                "{args:?} on {name}: exit {code}\n{stderr:.2000}"
            );
            assert!(
                !stderr.contains("panicked"),
                "{args:?} on {name}: {stderr:.2000}"
            );
        }
    }
}
