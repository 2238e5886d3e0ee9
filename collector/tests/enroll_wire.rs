//! Enrollment on the wire with the generated Rust client (not the agent): the enroll secret
//! buys a device token; that token reports for its own machine id only (a forged report for
//! another machine id is REJECTED in place and not stored); the enroll secret cannot report;
//! an unknown token is UNAUTHENTICATED; the fleet-wide agent token keeps working; `/metrics`
//! counts devices by credential; the admin API revokes a device token, and only with an admin
//! token.

use std::net::SocketAddr;

use dsreg_collector::config::Config;
use dsreg_proto::v1::telemetry_client::TelemetryClient;
use dsreg_proto::v1::{DeviceState, EnrollRequest, Report, ReportBatch, ReportStatus, Snapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::Channel;

const SECRET: &str = "enroll-secret-0123456789abcdef";
const FLEET: &str = "fleet-agent-token-0123456789";
const ADMIN: &str = "admin-token-0123456789abcdef";
const READER: &str = "reader-token-0123456789abcdef";

fn report(n: u64, machine: &str) -> Report {
    Report {
        report_id: format!("00000000-0000-4000-8000-{n:012}"),
        machine_id: machine.into(),
        hostname: machine.to_uppercase(),
        snapshot: Some(Box::new(Snapshot {
            device_state: Some(DeviceState {
                domain_joined: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn with_bearer<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    req
}

/// A raw HTTP/1.1 request; returns (status, body).
async fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn devices_in(db: &std::path::Path, machine: &str) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row(
        "SELECT count(*) FROM devices WHERE machine_id = ?1",
        [machine],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_token_reports_only_for_its_own_machine() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, content: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("{content}\n")).unwrap();
        Some(p)
    };
    let db = dir.path().join("dsreg.db");
    let config = Config {
        db: db.clone(),
        enroll_secret_file: file("enroll", SECRET),
        agent_token_file: file("agents", FLEET),
        admin_token_file: file("admins", ADMIN),
        reader_token_file: file("readers", READER),
        ..Default::default()
    };
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", grpc.local_addr().unwrap());
    let http_addr = http_listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dsreg_collector::run(config, grpc, http_listener, async {
        let _ = stop_rx.await;
    }));
    let channel: Channel = loop {
        if let Ok(c) = Channel::from_shared(url.clone()).unwrap().connect().await {
            break c;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let mut client = TelemetryClient::new(channel);
    let enroll_req = || EnrollRequest {
        machine_id: "machine-a".into(),
        hostname: "PC-A".into(),
    };

    // Enroll needs the enroll secret.
    let e = client
        .enroll(with_bearer(enroll_req(), None))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let e = client
        .enroll(with_bearer(enroll_req(), Some(FLEET)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let token = client
        .enroll(with_bearer(enroll_req(), Some(SECRET)))
        .await
        .unwrap()
        .into_inner()
        .device_token;
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));

    // Its own machine: accepted. A forged report for machine-b in the same batch: REJECTED,
    // and nothing stored for machine-b.
    let ack = client
        .report(with_bearer(
            ReportBatch {
                reports: vec![report(1, "machine-a"), report(2, "machine-b")],
            },
            Some(&token),
        ))
        .await
        .unwrap()
        .into_inner();
    let statuses: Vec<_> = ack.results.iter().map(|r| r.status()).collect();
    assert_eq!(statuses, [ReportStatus::Accepted, ReportStatus::Rejected]);
    assert!(ack.results[1].message.contains("machine_id"), "{ack:?}");
    assert_eq!(devices_in(&db, "machine-a"), 1);
    assert_eq!(devices_in(&db, "machine-b"), 0);

    // The enroll secret cannot report; an unknown token is refused.
    let batch = || ReportBatch {
        reports: vec![report(3, "machine-a")],
    };
    let e = client
        .report(with_bearer(batch(), Some(SECRET)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let unknown = "0".repeat(64);
    let e = client
        .report(with_bearer(batch(), Some(&unknown)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let e = client.report(with_bearer(batch(), None)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    // The fleet token still reports, for any machine id (migration).
    let ack = client
        .report(with_bearer(
            ReportBatch {
                reports: vec![report(4, "machine-c")],
            },
            Some(FLEET),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.results[0].status(), ReportStatus::Accepted);

    let (status, text) = http(http_addr, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    for line in [
        "dsreg_device_credentials 1",
        "dsreg_devices_by_credential{credential=\"device\"} 1",
        "dsreg_devices_by_credential{credential=\"fleet\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }

    // Revocation: admin token only.
    let path = "/api/v1/devices/machine-a/credential";
    assert_eq!(http(http_addr, "DELETE", path, None).await.0, 401);
    assert_eq!(http(http_addr, "DELETE", path, Some(READER)).await.0, 401);
    assert_eq!(http(http_addr, "DELETE", path, Some(ADMIN)).await.0, 204);
    assert_eq!(http(http_addr, "DELETE", path, Some(ADMIN)).await.0, 404);
    let e = client
        .report(with_bearer(batch(), Some(&token)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    // The reader API is unchanged by the admin route.
    let (status, _) = http(http_addr, "GET", "/api/v1/devices/machine-a", Some(READER)).await;
    assert_eq!(status, 200);

    // Enrolling again gives a new token; the old one stays dead.
    let token2 = client
        .enroll(with_bearer(enroll_req(), Some(SECRET)))
        .await
        .unwrap()
        .into_inner()
        .device_token;
    assert_ne!(token, token2);
    let ack = client
        .report(with_bearer(batch(), Some(&token2)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.results[0].status(), ReportStatus::Accepted);

    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
    // Only digests at rest.
    for name in ["dsreg.db", "dsreg.db-wal"] {
        let bytes = std::fs::read(dir.path().join(name)).unwrap_or_default();
        assert!(!bytes.windows(64).any(|w| w == token2.as_bytes()), "{name}");
    }
}

/// A collector on loopback: its gRPC client, the HTTP address (for `/metrics`), and the sender
/// that stops it.
async fn serve(
    config: Config,
) -> (
    TelemetryClient<Channel>,
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
) {
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http_listener.local_addr().unwrap();
    let url = format!("http://{}", grpc.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(dsreg_collector::run(config, grpc, http_listener, async {
        let _ = stop_rx.await;
    }));
    let channel: Channel = loop {
        if let Ok(c) = Channel::from_shared(url.clone()).unwrap().connect().await {
            break c;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    (TelemetryClient::new(channel), http_addr, stop_tx)
}

/// The value of `dsreg_ingest_refused_total{reason}` on the collector's `/metrics`.
async fn refused(http_addr: SocketAddr, reason: &str) -> String {
    let (_, text) = http(http_addr, "GET", "/metrics", None).await;
    let series = format!("dsreg_ingest_refused_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .unwrap_or("absent")
        .to_string()
}

fn retry_after_ms(status: &tonic::Status) -> u64 {
    status
        .metadata()
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_over_their_rate_are_told_when_to_retry() {
    // Per device token.
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("enroll");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let (mut client, http_addr, stop) = serve(Config {
        db: dir.path().join("a.db"),
        enroll_secret_file: Some(secret),
        rate_limit_per_minute: 1,
        rate_limit_burst: 2,
        ..Default::default()
    })
    .await;
    let token = client
        .enroll(with_bearer(
            EnrollRequest {
                machine_id: "machine-r".into(),
                hostname: "PC-R".into(),
            },
            Some(SECRET),
        ))
        .await
        .unwrap()
        .into_inner()
        .device_token;
    for n in 0..2 {
        let batch = ReportBatch {
            reports: vec![report(10 + n, "machine-r")],
        };
        client
            .report(with_bearer(batch, Some(&token)))
            .await
            .unwrap();
    }
    let batch = ReportBatch {
        reports: vec![report(20, "machine-r")],
    };
    let e = client
        .report(with_bearer(batch, Some(&token)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let hint = retry_after_ms(&e);
    assert!(hint > 1000 && hint <= 60_000, "retry-after-ms {hint}");
    assert!(e.message().contains("device token"), "{}", e.message());
    // Operators see the shed calls apart from bad reports.
    assert_eq!(refused(http_addr, "rate_limited").await, "1");
    assert_eq!(refused(http_addr, "busy").await, "0");
    let _ = stop.send(());

    // Per peer, for calls without a token (when configured).
    let (mut client, http_addr, stop) = serve(Config {
        db: dir.path().join("b.db"),
        rate_limit_open_per_minute: Some(1),
        rate_limit_burst: 2,
        ..Default::default()
    })
    .await;
    for n in 0..2 {
        let batch = ReportBatch {
            reports: vec![report(30 + n, "machine-o")],
        };
        client.report(with_bearer(batch, None)).await.unwrap();
    }
    let batch = ReportBatch {
        reports: vec![report(40, "machine-o")],
    };
    let e = client.report(with_bearer(batch, None)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(retry_after_ms(&e) > 0);
    assert_eq!(refused(http_addr, "rate_limited").await, "1");
    let _ = stop.send(());
}
