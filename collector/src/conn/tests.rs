use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

fn limits(max: usize, per_peer: usize) -> Limits {
    Limits {
        max,
        per_peer,
        handshake_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(600),
    }
}

fn shed(metrics: &Metrics, reason: &str) -> f64 {
    let text = metrics.render(&crate::fleet::FleetCounts::default());
    let prefix =
        format!("dsreg_connections_rejected_total{{listener=\"grpc\",reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// Connects from `source` (any 127.0.0.0/8 address) to `to`.
async fn connect_from(source: [u8; 4], to: SocketAddr) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((source, 0))).unwrap();
    sock.connect(to).await.unwrap()
}

/// True once the server closed `s` (EOF or reset), within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Serves accepted connections by reading them (as hyper would) until they fail.
fn drain_reads(mut rx: mpsc::Receiver<Limited>) {
    tokio::spawn(async move {
        while let Some(mut c) = rx.recv().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                while let Ok(n) = c.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
}

async fn bound() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

async fn wait_open(t: &Tracker, n: usize) {
    for _ in 0..500 {
        if t.open() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("open connections stayed at {} instead of {n}", t.open());
}

#[test]
fn caps_shrink_to_fit_the_descriptor_limit() {
    assert_eq!(fit_to_fd_limit(8192, 1024, 1_048_576), (8192, 1024));
    let (g, h) = fit_to_fd_limit(8192, 1024, 1024);
    assert!(g + h <= 1024 - FD_RESERVE as usize, "{g} {h}");
    assert!(g > h && h >= 1, "proportion kept: {g} {h}");
    assert_eq!(fit_to_fd_limit(10, 10, 0), (1, 1));
}

#[tokio::test]
async fn half_a_preface_is_closed_after_the_handshake_timeout() {
    let metrics = Arc::new(Metrics::new());
    let (l, addr) = bound().await;
    let (_stop_tx, stop) = watch::channel(false);
    let (rx, t) = accept_loop(l, Listener::Grpc, limits(16, 16), metrics.clone(), stop);
    drain_reads(rx);
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    wait_open(&t, 1).await;
    assert!(closed_within(&mut s, Duration::from_secs(5)).await);
    wait_open(&t, 0).await;
    assert_eq!(shed(&metrics, "handshake_timeout"), 1.0);
}

#[tokio::test]
async fn a_connection_without_calls_is_closed_after_the_idle_timeout() {
    let metrics = Arc::new(Metrics::new());
    let (l, addr) = bound().await;
    let (_stop_tx, stop) = watch::channel(false);
    let (rx, t) = accept_loop(l, Listener::Grpc, limits(16, 16), metrics.clone(), stop);
    drain_reads(rx);
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    wait_open(&t, 1).await;
    assert!(closed_within(&mut s, Duration::from_secs(5)).await);
    assert_eq!(shed(&metrics, "idle_timeout"), 1.0);
    assert_eq!(shed(&metrics, "handshake_timeout"), 0.0);
}

#[tokio::test]
async fn peers_are_capped_and_the_listener_evicts_idle_connections() {
    let metrics = Arc::new(Metrics::new());
    let (l, addr) = bound().await;
    let (_stop_tx, stop) = watch::channel(false);
    let mut long = limits(4, 2);
    long.handshake_timeout = Duration::from_secs(60);
    let (rx, t) = accept_loop(l, Listener::Grpc, long, metrics.clone(), stop);
    drain_reads(rx);
    let mut a1 = connect_from([127, 0, 0, 2], addr).await;
    let _a2 = connect_from([127, 0, 0, 2], addr).await;
    wait_open(&t, 2).await;
    let mut a3 = connect_from([127, 0, 0, 2], addr).await;
    assert!(closed_within(&mut a3, Duration::from_secs(5)).await);
    assert_eq!(shed(&metrics, "peer_limit"), 1.0);
    let _b1 = connect_from([127, 0, 0, 3], addr).await;
    let _b2 = connect_from([127, 0, 0, 3], addr).await;
    wait_open(&t, 4).await;
    // The listener is full: the oldest idle connection (a1) makes room for c1.
    let _c1 = connect_from([127, 0, 0, 4], addr).await;
    assert!(closed_within(&mut a1, Duration::from_secs(5)).await);
    wait_open(&t, 4).await;
    assert_eq!(shed(&metrics, "evicted"), 1.0);
}

#[tokio::test]
async fn busy_connections_are_not_evicted() {
    let metrics = Arc::new(Metrics::new());
    let (l, addr) = bound().await;
    let (_stop_tx, stop) = watch::channel(false);
    let (mut rx, t) = accept_loop(l, Listener::Http, limits(1, 4), metrics.clone(), stop);
    let _s = TcpStream::connect(addr).await.unwrap();
    let held = rx.recv().await.unwrap();
    let call = held.state().begin();
    let mut refused = TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut refused, Duration::from_secs(5)).await);
    let text = metrics.render(&crate::fleet::FleetCounts::default());
    assert!(
        text.contains(
            "dsreg_connections_rejected_total{listener=\"http\",reason=\"listener_limit\"} 1"
        ),
        "{text}"
    );
    drop(call);
    drop(held);
    wait_open(&t, 0).await;
}
