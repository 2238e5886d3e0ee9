//! Hostile requests against the real collector's HTTP API: SQL metacharacters in every filter
//! and in `{key}`, path tricks, 100 kB keys, absurd limits, forged cursors, unknown
//! parameters. Every answer is a 2xx or a 4xx — never a 500 — and every 4xx is JSON
//! `{"error": "…"}` that leaks nothing (no SQL, no file paths, no panic text). LIKE
//! metacharacters in `hostname` match literally.

use std::net::SocketAddr;

use dsreg_e2e::http::{RawResponse, raw_get};
use dsreg_e2e::inproc::InProcessCollector;
use dsreg_e2e::reports::{ReportBuilder, send_accepted};
use dsreg_proto::v1::Report;
use dsreg_proto::v1::telemetry_client::TelemetryClient;
use serde_json::Value;

const PAYLOADS: &[&str] = &[
    "' OR 1=1 --",
    "\"; DROP TABLE devices; --",
    "%",
    "_",
    "\\",
    "%_%",
    "1; SELECT * FROM reports",
    "') UNION SELECT machine_id FROM devices --",
    "*",
    "\u{0}",
    "\u{feff}é",
];

/// Words that must never appear in an error answer: SQL engine text, paths, panics,
/// internals. (The bad value itself is echoed, so the payloads' own words cannot be listed.)
const LEAKS: &[&str] = &[
    "sqlite",
    "no such table",
    "no such column",
    "near \"",
    "constraint",
    "syntax error",
    "/src/",
    ".rs:",
    "/tmp",
    "/work",
    "panicked",
    "backtrace",
    "internal error",
];

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn report(n: usize, hostname: &str) -> Report {
    let n = n as u64;
    ReportBuilder::new(n, "abuse")
        .machine(format!("abuse-{n:03}"))
        .hostname(hostname)
        .build()
}

/// The checks every answer passes; returns the JSON body.
fn checked(http: SocketAddr, target: &str) -> (u16, Value) {
    let RawResponse {
        status,
        content_type,
        body,
    } = raw_get(http, target).unwrap_or_else(|e| panic!("GET {target:.200}: {e:#}"));
    let shown = &target[..target.len().min(200)];
    assert!(status < 500, "GET {shown}: {status} {body:.500}");
    if status == 414 {
        // hyper refuses an over-long request line before the router: no body to check.
        return (status, Value::Null);
    }
    assert!(
        content_type.starts_with("application/json"),
        "GET {shown}: {status} content-type {content_type:?} body {body:.300}"
    );
    let json: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("GET {shown}: not JSON ({e}): {body:.300}"));
    if status >= 400 {
        let msg = json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("GET {shown}: {status} without error message: {json}"));
        assert!(!msg.is_empty());
        let lower = msg.to_lowercase();
        for leak in LEAKS {
            assert!(
                !lower.contains(leak),
                "GET {shown}: error leaks {leak:?}: {msg:.300}"
            );
        }
    }
    (status, json)
}

fn hostnames(json: &Value) -> Vec<String> {
    json["devices"]
        .as_array()
        .unwrap_or_else(|| panic!("no device list: {json}"))
        .iter()
        .map(|d| d["hostname"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn hostile_requests_get_json_4xx_never_500() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dsreg.db");
    let c = InProcessCollector::start(&db, &[]).unwrap();
    let seed = [
        "PC-0001",
        "PCX-0002",
        "PC_100%",
        "O'Brien-PC",
        "back\\slash",
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut client = TelemetryClient::connect(c.grpc_url()).await.unwrap();
        let reports = seed.iter().enumerate().map(|(i, h)| report(i, h)).collect();
        send_accepted(&mut client, reports).await.unwrap();
    });
    let http = c.http;

    // Positive controls, so "0 devices" below means "matched nothing", not "broken".
    let (status, all) = checked(http, "/api/v1/devices");
    assert_eq!(status, 200);
    assert_eq!(hostnames(&all).len(), seed.len(), "{all}");

    // SQL metacharacters in every filter: 200 (free text) or 400 naming the parameter.
    for param in [
        "join_type",
        "phase",
        "cause",
        "code",
        "symbol",
        "hostname",
        "stale",
        "cursor",
        "limit",
    ] {
        for p in PAYLOADS {
            let target = format!("/api/v1/devices?{param}={}", enc(p));
            let (status, json) = checked(http, &target);
            match status {
                200 => {
                    // Only free text may pass; it must never widen the result.
                    assert_eq!(param, "hostname", "{target}: accepted {json}");
                    assert!(
                        hostnames(&json).len() <= 1,
                        "{target} matched too much: {json}"
                    );
                }
                400 => {
                    let msg = json["error"].as_str().unwrap();
                    assert!(msg.contains(param), "{target}: {msg}");
                }
                other => panic!("{target}: unexpected {other}: {json}"),
            }
        }
    }
    // LIKE metacharacters match literally.
    for (prefix, expect) in [
        ("PC_", vec!["PC_100%"]),
        ("PC%", vec![]),
        ("%", vec![]),
        ("_", vec![]),
        ("O'Brien", vec!["O'Brien-PC"]),
        ("back\\", vec!["back\\slash"]),
        ("' OR 1=1 --", vec![]),
        ("pc-", vec!["PC-0001"]),
    ] {
        let (status, json) = checked(http, &format!("/api/v1/devices?hostname={}", enc(prefix)));
        assert_eq!(status, 200, "{prefix}: {json}");
        assert_eq!(hostnames(&json), expect, "hostname prefix {prefix:?}");
    }

    // The same payloads as `{key}`: 404 (no such device) or 400, and the tables survive.
    for p in PAYLOADS {
        for suffix in ["", "/history"] {
            let target = format!("/api/v1/devices/{}{suffix}", enc(p));
            let (status, json) = checked(http, &target);
            assert!(matches!(status, 400 | 404), "{target}: {status} {json}");
        }
    }
    // A key that IS a seeded hostname with a quote still resolves (bound, not spliced).
    let (status, d) = checked(http, &format!("/api/v1/devices/{}", enc("O'Brien-PC")));
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["machine_id"], "abuse-003");

    // Path tricks.
    for target in [
        "/api/v1/devices/..",
        "/api/v1/devices/../catalog",
        "/api/v1/devices/%2e%2e",
        "/api/v1/devices/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/api/v1/devices/..%2f..%2f..%2fetc%2fpasswd",
        "/api/v1/devices/a%2fb",
        "/api/v1/devices/%00",
        "/api/v1/devices/abuse-000%00",
        "/api/v1/devices/%ff%fe",
        "/api/v1/devices/%",
        "/api/v1/devices/%zz",
        "/api/v1/devices//",
        "/api/v1//devices",
        "/api/v1/devices/abuse-000/history/../../..",
        "/../../etc/passwd",
        "/api/v1/%2e%2e/%2e%2e/metrics",
        "/api/v1/devices?%00=1",
        "/api/v1/devices?hostname=%ff",
        "/api/v1/devices?hostname=%",
        "/api/v1/devices?=",
        "/api/v1/devices?&&&",
    ] {
        let (status, json) = checked(http, target);
        assert!(
            matches!(status, 200 | 400 | 404),
            "{target}: {status} {json}"
        );
        if status == 200 {
            // Only the device list itself (an empty or lossy-decoded query), never a file.
            assert!(
                json["devices"].is_array() && target.starts_with("/api/v1/devices?"),
                "{target}: 200 {json}"
            );
        }
    }

    // Very long keys: 4 kB and 100 kB.
    for len in [4 * 1024, 100 * 1024] {
        let key = "A".repeat(len);
        for target in [
            format!("/api/v1/devices/{key}"),
            format!("/api/v1/devices?hostname={key}"),
            format!("/api/v1/devices?cursor=c1{}", "41".repeat(len / 2)),
        ] {
            let (status, json) = checked(http, &target);
            assert!(
                matches!(status, 200 | 400 | 404 | 414),
                "{len}-byte key: {status} {json:.300}"
            );
            if let Some(msg) = json["error"].as_str() {
                assert!(
                    msg.len() < 2048,
                    "error echoes the whole key: {} bytes",
                    msg.len()
                );
            }
        }
    }

    // Limits.
    for (limit, ok) in [
        ("1", true),
        ("1000", true),
        ("0", false),
        ("-1", false),
        ("1001", false),
        ("18446744073709551616", false),
        ("99999999999999999999999999999999", false),
        ("abc", false),
        ("1e3", false),
        ("0x10", false),
        ("1.5", false),
        ("+5", true),
        ("%20", true),
    ] {
        let target = format!("/api/v1/devices?limit={limit}");
        let (status, json) = checked(http, &target);
        assert_eq!(status == 200, ok, "{target}: {status} {json}");
    }

    // Cursors: malformed ones are 400; a forged but well-formed one is only a position.
    for cursor in [
        "Zm9vYmFy",
        "c1",
        "c1a",
        "c1zz",
        "c1ff",
        "c2616263",
        "c1%00",
        "eyJpZCI6MX0=",
    ] {
        let target = format!("/api/v1/devices?cursor={cursor}");
        let (status, json) = checked(http, &target);
        assert_eq!(status, 400, "{target}: {json}");
    }
    let forged: String = "' OR 1=1 --"
        .bytes()
        .fold(String::from("c1"), |s, b| s + &format!("{b:02x}"));
    let (status, json) = checked(http, &format!("/api/v1/devices?cursor={forged}&limit=2"));
    assert_eq!(status, 200, "{json}");
    assert_eq!(hostnames(&json).len(), 2, "a page after \"'\": {json}");

    // Unknown parameters are refused (a typo must not return the whole fleet).
    for q in [
        "foo=1",
        "hostname[]=x",
        "HOSTNAME=PC",
        "limit=1&evil=1",
        "cursor",
    ] {
        let target = format!("/api/v1/devices?{q}");
        let (status, json) = checked(http, &target);
        let unknown = !q.starts_with("cursor");
        if unknown {
            assert_eq!(status, 400, "{target}: {json}");
            assert!(
                json["error"]
                    .as_str()
                    .unwrap()
                    .contains("unknown parameter")
            );
        } else {
            assert_eq!(status, 200, "{target}: an empty value is no filter");
        }
    }

    // Everything still there, and the collector still serves.
    let (status, all) = checked(http, "/api/v1/devices");
    assert_eq!(status, 200);
    assert_eq!(hostnames(&all).len(), seed.len(), "{all}");
    let (status, _) = checked(http, "/readyz");
    assert_eq!(status, 200);
    let (status, _) = checked(http, "/api/v1/failures");
    assert_eq!(status, 200);
}
