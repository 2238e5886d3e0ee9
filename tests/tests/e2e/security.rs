//! Transport security and authentication with the real binaries on loopback: TLS on both
//! listeners, agent / reader / metrics tokens kept apart, SIGHUP token reload, mTLS on gRPC,
//! and the technician-facing messages of `dsreg-agent send` (wrong CA, refused token) with the
//! report kept in the spool. Certificates are generated at test time ([`Pki`]); every wait is
//! a bounded poll on something observable.

use dsreg_e2e::agent::{agent_binary, isolated_agent, spooled_reports};
use dsreg_e2e::process::output_text;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use dsreg_collector::config::{Args, Config};
use dsreg_e2e::collector::CollectorProcess;
use dsreg_e2e::http::http_get;
use dsreg_e2e::process::{repo_root, wait_until};
use dsreg_e2e::tls::{Pki, https_get};
use dsreg_proto::v1::ReportBatch;
use dsreg_proto::v1::telemetry_client::TelemetryClient;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

const STATUS: &str = "domain-joined-discover-0x801c001d-elevated-ws2022.txt";
const AGENT_TOKEN: &str = "agent-token-0123456789abcdef";
const AGENT_TOKEN_2: &str = "agent-token-rotated-fedcba9876543210";
const READER_TOKEN: &str = "reader-token-0123456789abcdef";
const METRICS_TOKEN: &str = "metrics-token-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(30);

/// `dsreg-agent send` to `collector` with the fixture capture and `extra` flags.
fn send(collector: &str, spool: &Path, extra: &[&str]) -> Output {
    isolated_agent(&agent_binary())
        .arg("send")
        .args(["--collector", collector])
        .arg("--status-file")
        .arg(
            repo_root()
                .join("endpoint-agent/testdata/dsregcmd")
                .join(STATUS),
        )
        .args(["--machine-id", "security-e2e-0001", "--hostname", "SEC-E2E"])
        .arg("--spool-dir")
        .arg(spool)
        .args(extra)
        .output()
        .expect("run dsreg-agent send")
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, content).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// A tonic channel over TLS trusting `ca`, with an optional client identity.
async fn tls_channel(
    addr: std::net::SocketAddr,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> anyhow::Result<tonic::transport::Channel> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(fs::read(ca)?));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(fs::read(cert)?, fs::read(key)?));
    }
    Ok(Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .timeout(Duration::from_secs(10))
        .connect()
        .await?)
}

/// The gRPC code of an empty `Report` call with `token` (OK when the call succeeded).
async fn report_code(channel: tonic::transport::Channel, token: Option<&str>) -> tonic::Code {
    let header: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> =
        token.map(|t| format!("Bearer {t}").parse().unwrap());
    let mut client = TelemetryClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
        if let Some(h) = &header {
            r.metadata_mut().insert("authorization", h.clone());
        }
        Ok(r)
    });
    match client.report(ReportBatch { reports: vec![] }).await {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}

#[test]
fn tls_tokens_and_reload_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path()).unwrap();
    let agent_tokens = write(
        dir.path(),
        "agent.tokens",
        &format!("# agents\n\n{AGENT_TOKEN}\n"),
    );
    let reader_tokens = write(dir.path(), "reader.tokens", &format!("{READER_TOKEN}\n"));
    let metrics_tokens = write(dir.path(), "metrics.tokens", &format!("{METRICS_TOKEN}\n"));
    let c = CollectorProcess::start_tls(
        &dir.path().join("dsreg.db"),
        dir.path(),
        &[
            "--tls-cert",
            s(&pki.server_cert),
            "--tls-key",
            s(&pki.server_key),
            "--agent-token-file",
            s(&agent_tokens),
            "--reader-token-file",
            s(&reader_tokens),
            "--metrics-token-file",
            s(&metrics_tokens),
        ],
        &pki.ca,
    )
    .unwrap();
    let grpc = format!("https://{}", c.grpc);
    let web = |path: &str| format!("https://{}{path}", c.http);
    let token_file = write(dir.path(), "agent.token", &format!("  {AGENT_TOKEN}\n"));
    let ca = s(&pki.ca);
    let tf = s(&token_file);

    // The agent delivers over https with the CA file and its token.
    let spool = dir.path().join("spool-ok");
    let out = send(&grpc, &spool, &["--ca-file", ca, "--token-file", tf]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(spooled_reports(&spool), 0, "{}", output_text(&out));

    // A CA that did not sign the collector's certificate: queued, and the message says why.
    let spool = dir.path().join("spool-ca");
    let out = send(
        &grpc,
        &spool,
        &["--ca-file", s(&pki.other_ca), "--token-file", tf],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    assert!(
        err.contains("not trusted") && err.contains("--ca-file"),
        "{}",
        output_text(&out)
    );
    assert_eq!(spooled_reports(&spool), 1, "the report stays in the spool");

    // No token: queued, the message names --token-file. The same spool delivers later.
    let out = send(&grpc, &spool, &["--ca-file", ca]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    assert!(
        err.contains("token") && err.contains("--token-file"),
        "{}",
        output_text(&out)
    );
    assert!(
        spooled_reports(&spool) >= 1,
        "the reports stay in the spool"
    );
    // A reader token used as an agent token is refused the same way, and never printed.
    let wrong = write(dir.path(), "wrong.token", READER_TOKEN);
    let out = send(&grpc, &spool, &["--ca-file", ca, "--token-file", s(&wrong)]);
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    assert!(
        !output_text(&out).contains(READER_TOKEN),
        "token leaked: {}",
        output_text(&out)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token-file"));
    let out = send(&grpc, &spool, &["--ca-file", ca, "--token-file", tf]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(spooled_reports(&spool), 0);

    // Plaintext to the TLS ports fails: gRPC and HTTP alike.
    let out = send(
        &format!("http://{}", c.grpc),
        &dir.path().join("spool-plain"),
        &["--token-file", tf],
    );
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    assert!(http_get(&c.url("/healthz")).is_err(), "plain http answered");

    // HTTP: health open, the API for reader tokens only, /metrics for metrics tokens only.
    let get = |path: &str, token: Option<&str>| https_get(&web(path), &pki.ca, token).unwrap();
    assert_eq!(get("/healthz", None).0, 200);
    assert_eq!(get("/readyz", None).0, 200);
    let (status, body) = get("/api/v1/failures", Some(READER_TOKEN));
    assert_eq!(status, 200, "{body}");
    for token in [None, Some(AGENT_TOKEN), Some(METRICS_TOKEN), Some("x")] {
        let (status, body) = get("/api/v1/failures", token);
        assert_eq!(status, 401, "{token:?}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            json["error"].as_str().is_some_and(|e| e.contains("token")),
            "{body}"
        );
    }
    assert_eq!(
        get("/api/v1/devices/security-e2e-0001", Some(READER_TOKEN)).0,
        200
    );
    assert_eq!(get("/metrics", None).0, 401);
    assert_eq!(get("/metrics", Some(READER_TOKEN)).0, 401);
    let (status, body) = get("/metrics", Some(METRICS_TOKEN));
    assert_eq!(status, 200);
    assert!(body.contains("dsreg_reports_total"), "{body}");

    // gRPC: health open; Report for agent tokens only.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ch = tls_channel(c.grpc, &pki.ca, None).await.unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
        let resp = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap();
        assert_eq!(resp.into_inner().status, 1, "SERVING");
        assert_eq!(
            report_code(ch.clone(), Some(AGENT_TOKEN)).await,
            tonic::Code::Ok
        );
        for token in [None, Some(READER_TOKEN), Some(METRICS_TOKEN), Some("nope")] {
            assert_eq!(
                report_code(ch.clone(), token).await,
                tonic::Code::Unauthenticated,
                "{token:?}"
            );
        }
    });

    // SIGHUP after rotating the agent token: the new one works, the old one is refused.
    fs::write(&agent_tokens, format!("{AGENT_TOKEN_2}\n")).unwrap();
    let pid = c.pid().expect("collector running");
    let hup = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_until(
        "agent token file reloaded",
        WAIT,
        || c.log().contains("token file reloaded").then_some(()),
        || c.log(),
    );
    rt.block_on(async {
        let ch = tls_channel(c.grpc, &pki.ca, None).await.unwrap();
        assert_eq!(
            report_code(ch.clone(), Some(AGENT_TOKEN_2)).await,
            tonic::Code::Ok
        );
        assert_eq!(
            report_code(ch, Some(AGENT_TOKEN)).await,
            tonic::Code::Unauthenticated
        );
    });
    let rotated = write(dir.path(), "rotated.token", AGENT_TOKEN_2);
    let out = send(
        &grpc,
        &dir.path().join("spool-rotated"),
        &["--ca-file", ca, "--token-file", s(&rotated)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    // The log shows counts, never a token.
    let log = c.log();
    for t in [AGENT_TOKEN, AGENT_TOKEN_2, READER_TOKEN, METRICS_TOKEN] {
        assert!(!log.contains(t), "token in the collector log:\n{log}");
    }
}

#[test]
fn mtls_requires_a_client_certificate_from_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path()).unwrap();
    let c = CollectorProcess::start_tls(
        &dir.path().join("dsreg.db"),
        dir.path(),
        &[
            "--tls-cert",
            s(&pki.server_cert),
            "--tls-key",
            s(&pki.server_key),
            "--tls-client-ca",
            s(&pki.ca),
        ],
        &pki.ca,
    )
    .unwrap();
    let grpc = format!("https://{}", c.grpc);
    let ca = s(&pki.ca);

    let spool = dir.path().join("spool");
    let out = send(&grpc, &spool, &["--ca-file", ca]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "no client cert: {}",
        output_text(&out)
    );
    // Not just "unreachable": the message says a client certificate is required and names
    // the flags (and settings keys) that provide one.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("requires a client certificate")
            && err.contains("--client-cert")
            && err.contains("--client-key")
            && err.contains("client_cert")
            && !err.contains("unreachable"),
        "no client cert: {}",
        output_text(&out)
    );
    assert_eq!(spooled_reports(&spool), 1, "the report stays in the spool");
    let out = send(
        &grpc,
        &spool,
        &[
            "--ca-file",
            ca,
            "--client-cert",
            s(&pki.other_client_cert),
            "--client-key",
            s(&pki.other_client_key),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "foreign client cert: {}",
        output_text(&out)
    );
    assert_eq!(spooled_reports(&spool), 2);
    let out = send(
        &grpc,
        &spool,
        &[
            "--ca-file",
            ca,
            "--client-cert",
            s(&pki.client_cert),
            "--client-key",
            s(&pki.client_key),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(spooled_reports(&spool), 0);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Without a certificate the call fails (whether at the handshake or the first call).
        let code = match tls_channel(c.grpc, &pki.ca, None).await {
            Ok(ch) => report_code(ch, None).await,
            Err(_) => tonic::Code::Unavailable,
        };
        assert_ne!(code, tonic::Code::Ok);
        let ch = tls_channel(c.grpc, &pki.ca, Some((&pki.client_cert, &pki.client_key)))
            .await
            .unwrap();
        assert_eq!(report_code(ch, None).await, tonic::Code::Ok);
    });
    // HTTP has TLS but no client-certificate requirement (readers use tokens).
    let (status, _) = https_get(&format!("https://{}/healthz", c.http), &pki.ca, None).unwrap();
    assert_eq!(status, 200);
}

#[test]
fn example_config_security_keys_load() {
    // The commented-out security keys of the example config, uncommented, load as documented.
    let path = repo_root().join("deploy/collector.example.toml");
    let text = fs::read_to_string(&path).unwrap();
    let keys = [
        "tls_cert",
        "tls_key",
        "tls_client_ca",
        "agent_token_file",
        "reader_token_file",
        "metrics_token_file",
    ];
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if keys.iter().any(|k| rest.starts_with(&format!("{k} = "))) => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("collector.toml");
    fs::write(&file, uncommented).unwrap();
    let cfg = Config::load(
        &Args {
            config: Some(file),
            ..Args::default()
        },
        &HashMap::new(),
    )
    .unwrap();
    for (key, value) in [
        ("tls_cert", &cfg.tls_cert),
        ("tls_key", &cfg.tls_key),
        ("tls_client_ca", &cfg.tls_client_ca),
        ("agent_token_file", &cfg.agent_token_file),
        ("reader_token_file", &cfg.reader_token_file),
        ("metrics_token_file", &cfg.metrics_token_file),
    ] {
        assert!(value.is_some(), "{key} is documented in {}", path.display());
    }
}
