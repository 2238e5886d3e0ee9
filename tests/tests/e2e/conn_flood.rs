//! A flood of idle connections against the real collector binary (its descriptor limit is
//! what matters here): half an HTTP/2 preface on the gRPC port, half an HTTP request head on
//! the HTTP port, from many loopback source addresses (127.1.x.y, so the per-peer cap does not
//! refuse them all and the listener caps are what holds). While the flood is held an agent's
//! report is acknowledged and `/metrics` answers; the shed connections are counted; after the
//! handshake timeout the collector has closed every flood connection and holds no more
//! descriptors than before.
//!
//! Bounded: `DSREG_FLOOD_CONNECTIONS` connections (default 3 000; set it higher, up to this
//! process' descriptor limit, for a manual figure), every wait bounded. Figures are printed
//! (`--nocapture`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dsreg_e2e::collector::CollectorProcess;
use dsreg_e2e::http::raw_get;
use dsreg_e2e::metrics::{metric_sum, samples};
use dsreg_e2e::reports::{ReportBuilder, batch};
use dsreg_proto::v1::telemetry_client::TelemetryClient;
use dsreg_proto::v1::{ReportBatch, ReportStatus};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

const HANDSHAKE: &str = "3s";
/// Flood connections per source address (below the default per-peer cap of 256).
const PER_SOURCE: usize = 200;

fn flood_size() -> usize {
    std::env::var("DSREG_FLOOD_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The value of `name{listener="…"}`.
fn per_listener(text: &str, name: &str, listener: &str) -> f64 {
    let needle = format!("listener=\"{listener}\"");
    samples(text, name)
        .iter()
        .filter(|l| l.contains(&needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn scrape(http: SocketAddr) -> (String, Duration) {
    let t = Instant::now();
    let r = raw_get(http, "/metrics").expect("/metrics answers during the flood");
    assert_eq!(r.status, 200);
    (r.body, t.elapsed())
}

async fn connect_from(n: usize, to: SocketAddr) -> std::io::Result<TcpStream> {
    let group = n / PER_SOURCE;
    let source = SocketAddr::from(([127, 1, (group / 250) as u8, (group % 250 + 1) as u8], 0));
    let sock = TcpSocket::new_v4()?;
    sock.bind(source)?;
    sock.connect(to).await
}

fn report(n: u64) -> ReportBatch {
    batch([ReportBuilder::new(n, "flood-probe")
        .hostname("FLOOD-PROBE")
        .build()])
}

#[test]
fn an_idle_flood_neither_starves_agents_nor_metrics_and_leaves_nothing_open() {
    let dir = tempfile::tempdir().unwrap();
    let c = CollectorProcess::start(
        &dir.path().join("dsreg.db"),
        dir.path(),
        &["--handshake-timeout", HANDSHAKE],
    )
    .unwrap();
    let pid = c.pid().unwrap();
    let fds_before = open_fds(pid);
    let n = flood_size();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut flood = Vec::with_capacity(n);
        let t = Instant::now();
        for i in 0..n {
            let (to, head): (SocketAddr, &[u8]) = if i % 2 == 0 {
                (c.grpc, b"PRI * HTTP/2.0\r\n")
            } else {
                (c.http, b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            };
            match connect_from(i, to).await {
                Ok(mut s) => {
                    let _ = s.write_all(head).await;
                    flood.push(s);
                }
                Err(e) => panic!("flood connection {i} failed on the client side: {e}"),
            }
        }
        let flood_time = t.elapsed();
        let fds_during = open_fds(pid);

        // An agent still delivers, and /metrics still answers, while the flood is held.
        let t = Instant::now();
        let mut client = TelemetryClient::connect(c.grpc_url()).await.unwrap();
        let ack = client.report(report(1)).await.unwrap().into_inner();
        let deliver = t.elapsed();
        assert_eq!(ack.results[0].status(), ReportStatus::Accepted);
        let (text, metrics_latency) = tokio::task::spawn_blocking({
            let http = c.http;
            move || scrape(http)
        })
        .await
        .unwrap();
        let open_grpc = per_listener(&text, "dsreg_connections_open", "grpc");
        let open_http = per_listener(&text, "dsreg_connections_open", "http");
        eprintln!(
            "flood: {n} idle connections opened in {flood_time:?}; collector fds {fds_before} → \
             {fds_during}; open grpc={open_grpc} http={open_http}; report delivered in \
             {deliver:?}; /metrics answered in {metrics_latency:?}"
        );
        // At the cap an evicted connection holds its descriptor until its task sees the
        // eviction (moments later), so the count may pass the cap by the evictions in flight.
        const IN_FLIGHT: f64 = 64.0;
        assert!(
            open_http <= 1024.0 + IN_FLIGHT,
            "http cap holds: {open_http}"
        );
        assert!(
            open_grpc <= 8192.0 + IN_FLIGHT,
            "grpc cap holds: {open_grpc}"
        );
        if n / 2 > 1024 {
            assert!(
                per_listener(&text, "dsreg_connections_rejected_total", "http") > 0.0,
                "the http flood beyond its cap was shed"
            );
        }

        // The handshake timeout closes every flood connection; the collector's descriptors
        // return to what they were.
        let deadline = Instant::now() + Duration::from_secs(30);
        let text = loop {
            let http = c.http;
            let (text, _) = tokio::task::spawn_blocking(move || scrape(http))
                .await
                .unwrap();
            let open = metric_sum(&text, "dsreg_connections_open");
            // The client's channel and this scrape's own connection may remain.
            if open <= 2.0 {
                break text;
            }
            assert!(
                Instant::now() < deadline,
                "flood connections still open after 30 s: {open}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let timed_out = samples(&text, "dsreg_connections_rejected_total")
            .iter()
            .filter(|l| l.contains("reason=\"handshake_timeout\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
        let shed = metric_sum(&text, "dsreg_connections_rejected_total");
        eprintln!("flood: shed {shed} connections, {timed_out} by the handshake timeout");
        assert!(timed_out > 0.0, "{text}");
        assert!(
            shed >= (n as f64) - 2.0,
            "every flood connection was shed: {shed}"
        );
        let fds_after = open_fds(pid);
        eprintln!("flood: collector fds after {fds_after}");
        assert!(
            fds_after <= fds_before + 4,
            "descriptors left open: {fds_before} before, {fds_after} after"
        );
        // Still serving after the flood.
        let ack = client.report(report(2)).await.unwrap().into_inner();
        assert_eq!(ack.results[0].status(), ReportStatus::Accepted);
        drop(flood);
    });
}
