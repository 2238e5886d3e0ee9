//! Serves the axum router on connections from [`crate::conn::accept_loop`], with hyper's
//! HTTP/1 server directly instead of `axum::serve`, for the knobs `axum::serve` lacks.
//!
//! Each connection runs in its own task: the TLS handshake (when TLS is on) under the
//! handshake deadline, then hyper HTTP/1 with `header_read_timeout` (a request head, including
//! each one after the first on a keep-alive connection, must arrive within the handshake
//! timeout, plus a second) and keep-alive. Every request is marked as a call on the connection, so
//! [`crate::conn::Limited`] can tell busy connections from idle ones. On shutdown each
//! connection is asked to finish gracefully (the request in progress is answered, then the
//! connection closes) and is dropped after [`crate::DRAIN_GRACE`] at the latest. The server
//! future returns once the accept loop has stopped; it does not wait for open connections
//! (the gRPC drain decides how long shutdown waits).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::conn::{ConnState, Limited};

/// Serves `app` on every connection received from `conns` until the channel closes.
pub async fn serve(
    mut conns: mpsc::Receiver<Limited>,
    app: Router,
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    stop: watch::Receiver<bool>,
) {
    while let Some(conn) = conns.recv().await {
        let (app, tls, stop) = (app.clone(), tls.clone(), stop.clone());
        tokio::spawn(async move {
            let peer = conn.peer().ok();
            let state = conn.state();
            match tls {
                None => connection(conn, state, app, handshake_timeout, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(conn)).await {
                        Ok(Ok(tls)) => connection(tls, state, app, handshake_timeout, stop).await,
                        Ok(Err(e)) => tracing::debug!(?peer, error = %e, "tls handshake failed"),
                        Err(_) => tracing::debug!(?peer, "tls handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn connection<I>(
    io: I,
    state: Arc<ConnState>,
    app: Router,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let call = state.begin();
        let app = app.clone();
        async move {
            let resp = app.oneshot(req.map(axum::body::Body::new)).await;
            drop(call);
            Ok::<_, Infallible>(match resp {
                Ok(r) => r,
                Err(never) => match never {},
            })
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // A little longer than the handshake deadline of `Limited`, which thus closes (and
        // counts) a first request head that never arrives; hyper's covers later heads.
        .header_read_timeout(header_timeout + Duration::from_secs(1))
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    if *stop.borrow() {
        return;
    }
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "http connection ended");
            }
        }
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(crate::DRAIN_GRACE, conn).await;
        }
    }
}
