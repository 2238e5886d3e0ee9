//! `dsreg-collector`: receives agent reports over gRPC, stores them in SQLite, keeps fleet
//! aggregates in memory and serves `/metrics` plus a drill-down API.
//!
//! Module map:
//! - [`config`]: Defaults ← TOML ← `DSREG_*` env ← flags; the env is a parameter.
//! - [`error`]: the request error and the ONE mapping to gRPC code and HTTP status.
//! - [`validate`]: batch/report limits, messages naming the field.
//! - [`ingest`]: the `dsreg.v1.Telemetry` service (ack after commit).
//! - [`store`]: SQLite — one writer thread with group commit, read-only pool, migrations.
//! - [`fleet`]: in-memory aggregates, O(1) per state change, rebuilt at start.
//! - [`api`]: `/healthz`, `/readyz`, `/metrics`, `/api/v1/...` (axum).
//! - [`metrics`]: the Prometheus families of DESIGN §7.
//! - [`signal`]: SIGINT/SIGTERM as a future.
//! - [`drain`]: in-flight gRPC calls, so shutdown waits for calls, not idle connections.
//! - [`auth`]: agent / reader / metrics bearer tokens, constant-time, reloaded on SIGHUP.
//! - [`tls`]: TLS on both listeners (rustls, ring), mTLS on gRPC.
//! - [`graph`]: optional Microsoft Graph device sync and reconciliation (issue 13).
//! - [`ui`]: the read-only web UI (`/`, `/ui/devices`, `/ui/devices/{key}`, login cookie).
//! - [`conn`]: connection caps, handshake and idle deadlines, descriptor headroom.
//! - [`http_server`]: hyper HTTP/1 on the limited connections (header-read timeout).
//! - [`backup`]: online backup (`dsreg-collector backup`) and the start-up `quick_check`.
//! - [`enroll`]: per-device tokens (`Telemetry/Enroll`), bound to one machine id.
//! - [`admin`]: the admin API (revoke a device credential), behind admin tokens.
//! - [`ratelimit`]: token buckets per device token / per peer (RESOURCE_EXHAUSTED + hint).
//! - `bench` (cargo feature `bench`, for `dsreg-bench` only): the writer's statements for the
//!   benchmark's populate step and storage ceiling.
//!
//! [`run`] takes already-bound listeners and a shutdown future, so tests bind `127.0.0.1:0`.

pub mod api;
pub mod auth;
pub mod config;
pub mod drain;
pub mod error;
pub mod fleet;
pub mod graph;
pub mod ingest;
pub mod metrics;
pub mod signal;
pub mod store;
pub mod tls;
pub mod ui;
pub mod validate;

pub mod admin;
pub mod backup;
pub mod conn;
pub mod enroll;
pub mod http_server;
pub mod ratelimit;

#[cfg(feature = "bench")]
pub mod bench;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http;
use dsreg_proto::v1::telemetry_server::TelemetryServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;

use crate::config::Config;
use crate::fleet::Fleet;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, StoreOptions};

/// `Enroll` calls per minute per peer address (a fleet behind one NAT enrolls in bursts of
/// `--rate-limit-burst`, then at this rate; each agent enrolls once).
pub const ENROLL_PER_MINUTE: u32 = 600;
/// How long in-flight requests may take to drain after the shutdown signal.
pub const DRAIN_GRACE: Duration = Duration::from_secs(30);
/// How often the retention task runs.
pub const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// Read-only SQLite connections kept open for the API.
pub const READERS: usize = 4;
/// A gRPC call taking longer is answered CANCELLED (the client retries; `report_id` makes the
/// retry idempotent). Longer than a full writer queue takes to drain.
pub const GRPC_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// TCP and HTTP/2 keepalive: a dead peer's connection is noticed and dropped.
pub const KEEPALIVE: Duration = Duration::from_secs(60);
/// An HTTP/2 ping not answered within this closes the connection.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// A gRPC connection is closed (gracefully, then after [`DRAIN_GRACE`] forcefully) after this
/// long, which also bounds a connection that never completes its HTTP/2 handshake; agents
/// reconnect transparently.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(30 * 60);

/// Why the collector stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The store could not be opened.
    #[error("cannot open store: {0}")]
    Store(#[from] StoreError),
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The HTTP server failed.
    #[error("http server: {0}")]
    Http(#[from] std::io::Error),
    /// A token file is unusable.
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    /// The TLS files are unusable.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The Graph sync could not start.
    #[error("cannot start the graph sync: {0}")]
    Graph(#[from] graph::GraphError),
    /// The gRPC reflection service could not read the descriptor set.
    #[error("grpc reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The database failed its start-up integrity check.
    #[error("cannot open store: {0}")]
    Integrity(#[from] backup::BackupError),
    /// The device credentials could not be read.
    #[error(transparent)]
    Enroll(#[from] enroll::EnrollError),
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Serves gRPC on `grpc` and HTTP on `http` until `shutdown` resolves; then stops accepting,
/// drains in-flight requests (up to [`DRAIN_GRACE`]), lets the writer commit and checkpoint,
/// and returns.
pub async fn run(
    config: Config,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let auth = auth::Auth::load(&config)?;
    let tls = tls::load(&config)?;
    let metrics = Arc::new(Metrics::new());
    let (grpc_limits, http_limits) = connection_limits(&config);
    let fleet = Arc::new(Fleet::new(config.stale_after));
    let opts = StoreOptions {
        queue_depth: config.queue_depth,
        history_per_device: config.history_per_device,
        readers: READERS,
    };
    let db = config.db.clone();
    let checked =
        tokio::task::spawn_blocking(move || backup::quick_check(&db, backup::QUICK_CHECK_BUDGET))
            .await
            .map_err(|e| StoreError::Join(e.to_string()))??;
    if checked == backup::QuickCheck::Skipped {
        tracing::warn!(
            budget = ?backup::QUICK_CHECK_BUDGET,
            "quick_check did not finish within its budget; skipped (run `PRAGMA quick_check` offline)"
        );
    } else {
        tracing::info!(result = ?checked, "database quick_check");
    }
    let (db, f, m) = (config.db.clone(), fleet.clone(), metrics.clone());
    let store = tokio::task::spawn_blocking(move || Store::open(&db, opts, f, m))
        .await
        .map_err(|e| StoreError::Join(e.to_string()))??;

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<TelemetryServer<Ingest>>().await;
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutdown requested: no new connections, draining in-flight requests");
        let _ = stop_tx.send(true);
    });
    tokio::spawn(retention(
        store.clone(),
        config.retention_days,
        stop_rx.clone(),
    ));
    tokio::spawn(auth.clone().reload_on_hangup(stop_rx.clone()));
    let graph = match config.graph() {
        Some(settings) => {
            let (db, m) = (config.db.clone(), metrics.clone());
            let g = tokio::task::spawn_blocking(move || graph::Graph::start(settings, &db, m))
                .await
                .map_err(|e| StoreError::Join(e.to_string()))??;
            Some(Arc::new(g))
        }
        None => None,
    };
    let (grpc_conns, _) = conn::accept_loop(
        grpc,
        conn::Listener::Grpc,
        grpc_limits,
        metrics.clone(),
        stop_rx.clone(),
    );
    let (http_conns, _) = conn::accept_loop(
        http,
        conn::Listener::Http,
        http_limits,
        metrics.clone(),
        stop_rx.clone(),
    );

    let devices = match &auth.enroll {
        Some(_) => {
            let (db, m) = (config.db.clone(), metrics.clone());
            let d = tokio::task::spawn_blocking(move || enroll::DeviceTokens::open(&db, m))
                .await
                .map_err(|e| StoreError::Join(e.to_string()))??;
            tracing::info!(enrolled = d.enrolled(), "enrollment on");
            Some(Arc::new(d))
        }
        None => None,
    };
    let mut ingest = Ingest::new(
        store.clone(),
        fleet.clone(),
        metrics.clone(),
        config.max_batch,
    );
    if let Some(d) = &devices {
        ingest = ingest.with_device_tokens(d.clone());
    }
    ingest = ingest.with_limits(Arc::new(ingest::ClientLimits {
        device: ratelimit::RateLimiter::new(config.rate_limit_per_minute, config.rate_limit_burst),
        open: config
            .rate_limit_open_per_minute
            .map(|n| ratelimit::RateLimiter::new(n, config.rate_limit_burst)),
        enroll: ratelimit::RateLimiter::new(ENROLL_PER_MINUTE, config.rate_limit_burst),
    }));
    let flight = drain::InFlight::default();
    let telemetry =
        TelemetryServer::new(ingest).max_decoding_message_size(config.max_message_bytes);
    // gRPC reflection (v1 and v1alpha): `grpcurl` works without the `.proto` files. It serves
    // only the schema, so it needs no token, like grpc.health.v1.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(dsreg_proto::FILE_DESCRIPTOR_SET)
    };
    let (reflection_v1, reflection_v1alpha) =
        (reflection().build_v1()?, reflection().build_v1alpha()?);
    // gzip both ways when the agent asks (grpc-encoding); the size limit applies decompressed.
    let telemetry = telemetry
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let incoming = ReceiverStream::new(grpc_conns).map(Ok::<_, std::io::Error>);
    let mut grpc_builder = tonic::transport::Server::builder();
    if let Some(t) = &tls {
        grpc_builder = grpc_builder.tls_config(t.grpc.clone())?;
    }
    let grpc_server = grpc_builder
        .timeout(GRPC_REQUEST_TIMEOUT)
        .tcp_keepalive(Some(KEEPALIVE))
        .http2_keepalive_interval(Some(KEEPALIVE))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .max_connection_age(MAX_CONNECTION_AGE)
        .max_connection_age_grace(DRAIN_GRACE)
        .layer(flight.clone())
        .layer(conn::ActivityLayer)
        .layer(tower::util::MapResponseLayer::new(
            too_large_is_resource_exhausted,
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(InterceptedService::new(
            telemetry,
            auth.grpc_with(devices.clone()),
        ))
        .serve_with_incoming_shutdown(incoming, {
            let rx = stop_rx.clone();
            let health = health.clone();
            async move {
                stopped(rx).await;
                health
                    .set_service_status("", tonic_health::ServingStatus::NotServing)
                    .await;
            }
        });
    let state = api::AppState {
        store: store.clone(),
        fleet,
        metrics,
        stale_after_ms: i64::try_from(config.stale_after.as_millis()).unwrap_or(i64::MAX),
    };
    let mut app = api::router(state).merge(admin::router(devices));
    if let Some(g) = &graph {
        app = app.layer(axum::Extension(g.state()));
    }
    let app = app.layer(axum::middleware::from_fn_with_state(
        auth.clone(),
        auth::http_guard,
    ));
    let http_server = {
        let serve = http_server::serve(
            http_conns,
            app,
            tls.as_ref().map(|t| t.http.clone()),
            config.handshake_timeout,
            stop_rx.clone(),
        );
        async move {
            serve.await;
            Ok::<(), std::io::Error>(())
        }
    };
    tracing::info!(
        tls = tls.is_some(),
        mtls = tls.as_ref().is_some_and(|t| t.client_auth),
        "serving"
    );

    let servers = async { tokio::join!(grpc_server, http_server) };
    let result = tokio::select! {
        (g, h) = servers => g.map_err(RunError::from).and(h.map_err(RunError::from)),
        drained = async { stopped(stop_rx).await; flight.drained(DRAIN_GRACE).await } => {
            if drained {
                tracing::info!("in-flight calls drained; closing idle connections");
            } else {
                tracing::warn!(grace = ?DRAIN_GRACE, "in-flight requests did not drain in time");
            }
            Ok(())
        }
    };
    if let Some(g) = graph {
        g.shutdown().await;
    }
    store.close().await;
    tracing::info!("collector stopped");
    result
}

/// tonic answers a message over `max_decoding_message_size` with OUT_OF_RANGE; the gRPC spec
/// (and our contract) says RESOURCE_EXHAUSTED. The error is a trailers-only response, so the
/// status sits in the headers and can be rewritten here.
fn too_large_is_resource_exhausted<B>(mut resp: http::Response<B>) -> http::Response<B> {
    let h = resp.headers_mut();
    let too_large = h.get("grpc-status").is_some_and(|v| v == "11")
        && h.get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| m.replace("%20", " ").contains("message length too large"));
    if too_large {
        h.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    // Bytes that do not decode as a `ReportBatch` (garbage, invalid UTF-8 in a string) are the
    // client's fault: INVALID_ARGUMENT, not tonic's INTERNAL (which a client would retry).
    let undecodable = h.get("grpc-status").is_some_and(|v| v == "13")
        && h.get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| {
                m.replace("%20", " ")
                    .contains("failed to decode Protobuf message")
            });
    if undecodable {
        h.insert("grpc-status", http::HeaderValue::from_static("3"));
    }
    resp
}

async fn retention(store: Store, days: u32, stop: watch::Receiver<bool>) {
    let keep_ms = i64::from(days) * 86_400_000;
    let mut tick = tokio::time::interval(RETENTION_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped(stop.clone()) => return,
        }
        match store.prune(store::now_ms() - keep_ms).await {
            Ok(n) => tracing::info!(rows = n, days, "retention pass"),
            Err(e) => tracing::warn!(error = %e, "retention pass failed"),
        }
    }
}

/// The limits of both listeners from `config`, after raising the descriptor limit and
/// shrinking the caps to fit it (both logged).
fn connection_limits(config: &Config) -> (conn::Limits, conn::Limits) {
    let (mut grpc_max, mut http_max) = (config.grpc_max_connections, config.http_max_connections);
    match conn::raise_fd_limit() {
        Some((before, soft, hard)) => {
            tracing::info!(
                soft_before = before,
                soft,
                hard,
                "file descriptor limit (RLIMIT_NOFILE)"
            );
            let (g, h) = conn::fit_to_fd_limit(grpc_max, http_max, soft);
            if (g, h) != (grpc_max, http_max) {
                tracing::warn!(
                    fds = soft,
                    grpc_max_connections = g,
                    http_max_connections = h,
                    "connection caps lowered to fit the file descriptor limit; raise the hard \
                     limit (systemd LimitNOFILE=) to allow more"
                );
            }
            (grpc_max, http_max) = (g, h);
        }
        None => tracing::info!("no file descriptor limit on this platform"),
    }
    let limits = |max| conn::Limits {
        max,
        per_peer: config.max_connections_per_peer,
        handshake_timeout: config.handshake_timeout,
        idle_timeout: config.idle_timeout,
    };
    (limits(grpc_max), limits(http_max))
}
