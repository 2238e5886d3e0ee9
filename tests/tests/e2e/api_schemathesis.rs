//! The OpenAPI contract, verified by a real client: schemathesis (PyPI, installed by
//! `tests/run.sh`) reads `/api/v1/openapi.json` from a real collector with reader tokens on and
//! fuzzes every operation: no 5xx, every answer matches the document (status, content type,
//! schema), invalid input is answered 4xx, and a request without the token is refused.
//!
//! Bounded: few examples per operation, a time budget for the run, and a hard timeout on the
//! process. Without schemathesis the test fails naming the install command.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use dsreg_e2e::collector::CollectorProcess;
use dsreg_e2e::process::{find_on_path, run_bounded};
use dsreg_e2e::reports::{ReportBuilder, send_accepted};
use dsreg_proto::v1::Report;
use dsreg_proto::v1::telemetry_client::TelemetryClient;

const INSTALL_HINT: &str = "python3 -m pip install schemathesis";
const TOKEN: &str = "reader-token-for-schemathesis-0123456789";
/// Examples per operation and phase.
const MAX_EXAMPLES: &str = "8";
/// schemathesis' own time budget for the run, in seconds.
const MAX_TIME_SECS: &str = "30";
/// The hard limit on the process.
const HARD_TIMEOUT: Duration = Duration::from_secs(300);

fn schemathesis() -> PathBuf {
    ["st", "schemathesis"]
        .iter()
        .find_map(|n| find_on_path(n))
        .unwrap_or_else(|| {
            panic!(
                "schemathesis is not on PATH. The OpenAPI contract test needs it; install it with \
                 `{INSTALL_HINT}` (tests/run.sh does this when it can)"
            )
        })
}

fn report(n: u32) -> Report {
    let r = ReportBuilder::new(u64::from(n), "st")
        .machine(format!("st-{n:03}"))
        .hostname(format!("PC-{n:04}"))
        .entra_joined(n.is_multiple_of(3));
    if n.is_multiple_of(3) {
        return r.build();
    }
    r.failure("2026-11-30T08:00:00Z", 0x801c03f2)
        .server_error("DirectoryError", "The device object (x) is not found.")
        .build()
}

fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let mut req = agent.get(url);
    if let Some(t) = token {
        req = req.header("authorization", &format!("Bearer {t}"));
    }
    let mut resp = req.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap_or_default())
}

#[test]
fn schemathesis_finds_the_api_true_to_its_openapi_document() {
    let st = schemathesis();
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("readers");
    std::fs::write(&tokens, format!("{TOKEN}\n")).unwrap();
    let c = CollectorProcess::start(
        &dir.path().join("dsreg.db"),
        dir.path(),
        &["--reader-token-file", tokens.to_str().unwrap()],
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut client = TelemetryClient::connect(c.grpc_url()).await.unwrap();
        send_accepted(&mut client, (0..12).map(report).collect())
            .await
            .unwrap();
    });

    // The document itself is behind the token, like the rest of /api/v1.
    let (status, _) = get(&c.url("/api/v1/openapi.json"), None);
    assert_eq!(status, 401);
    let (status, doc) = get(&c.url("/api/v1/openapi.json"), Some(TOKEN));
    assert_eq!(status, 200, "{doc:.500}");
    let spec = dir.path().join("openapi.json");
    std::fs::write(&spec, &doc).unwrap();

    let log = dir.path().join("schemathesis.log");
    let mut cmd = Command::new(&st);
    cmd.arg("run")
        .arg(&spec)
        .args(["--url", &c.url("")])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--checks", "all"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--max-time", MAX_TIME_SECS])
        .args(["--seed", "14"])
        .args(["--workers", "1"])
        .args(["--request-timeout", "10"])
        .args(["--suppress-health-check", "all"])
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(dir.path());
    let err_path = dir.path().join("schemathesis.err");
    let status = run_bounded(cmd, &log, &err_path, HARD_TIMEOUT).unwrap_or_else(|e| {
        panic!(
            "schemathesis ({}): {e:#}\n{}",
            st.display(),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    let err = std::fs::read_to_string(dir.path().join("schemathesis.err")).unwrap_or_default();
    println!("{out}");
    assert!(
        status.success(),
        "schemathesis failed ({status}):\n{out}\n{err}"
    );
    // It ran every operation of the document (counted from the document itself).
    let operations: usize = serde_json::from_str::<serde_json::Value>(&doc)
        .ok()
        .and_then(|v| {
            v["paths"].as_object().map(|p| {
                p.values()
                    .filter_map(|m| m.as_object())
                    .map(|m| m.len())
                    .sum()
            })
        })
        .unwrap_or(0);
    assert!(operations >= 7, "operations in the document: {operations}");
    assert!(
        out.contains(&format!("{operations} selected / {operations} total")),
        "not every operation ran:\n{out}"
    );
    assert!(!c.log().contains("panicked"), "collector log: {}", c.log());
}
