//! Cloud side (issue 13): Microsoft Graph devices, synced incrementally and reconciled with
//! what the agents report. Off unless configured (`Config::graph`).
//!
//! - [`settings`]: the `--graph-*` settings and their all-or-nothing rule.
//! - [`http`]: blocking HTTP (ureq, rustls) with the retry policy for 429/503/504.
//! - [`token`], [`assertion`]: client-credentials tokens (secret file or certificate).
//! - [`delta`]: one round of `devices/delta`, pages stored as they come.
//! - [`cloud`]: the `cloud_devices` / `graph_sync` tables.
//! - [`reconcile`]: matching and the (client, cloud) states.
//!
//! The sync runs on its own `std::thread` ([`Graph::start`]): it is sequential and blocking
//! (one HTTP call at a time, its own SQLite connection), so it never occupies a runtime
//! thread and never touches the writer's queue — a failing or slow sync cannot affect
//! ingest or `/readyz`. Each result of the reconciliation is published whole (an `Arc`
//! swapped under a lock) for the API and the metrics. Shutdown sets a flag that every wait
//! checks within 50 ms; the collector waits for the thread at most `SHUTDOWN_GRACE` (an HTTP
//! call in flight is not waited for beyond that).

pub mod assertion;
pub mod cloud;
pub mod delta;
pub mod http;
pub mod reconcile;
pub mod settings;
pub mod token;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::metrics::{Metrics, names};
use crate::store::{StoreError, now_ms};
use cloud::CloudState;
use reconcile::{ClientState, Reconciled};
pub use settings::{Credential, GraphSettings};

/// Between rounds the reconciliation is recomputed this often, so client-side changes show
/// without waiting for the next round.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(60);

/// The error reasons of `dsreg_graph_sync_errors_total{reason}` (a closed set).
pub const REASONS: &[&str] = &[
    "token",
    "throttled",
    "server",
    "network",
    "resync",
    "decode",
    "store",
];

/// Why a round failed.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// A setting is wrong (the message names it): bad secret, unknown app, missing consent.
    #[error("graph sync configuration: {0}")]
    Config(String),
    /// The token endpoint refused or answered nonsense.
    #[error("graph token: {0}")]
    Token(String),
    /// Still throttled after the retries.
    #[error("graph throttled: {0}")]
    Throttled(String),
    /// Graph answered an error.
    #[error("graph server: {0}")]
    Server(String),
    /// Connection, TLS or timeout.
    #[error("graph network: {0}")]
    Network(String),
    /// The delta token expired (handled inside a round by a full round).
    #[error("graph delta token expired")]
    Resync,
    /// A body that is not what Graph documents.
    #[error("graph response: {0}")]
    Decode(String),
    /// SQLite failed.
    #[error("graph store: {0}")]
    Store(#[from] StoreError),
    /// Shutdown was requested.
    #[error("stopped")]
    Stopped,
}

impl From<rusqlite::Error> for GraphError {
    fn from(e: rusqlite::Error) -> Self {
        GraphError::Store(StoreError::Sqlite(e))
    }
}

impl GraphError {
    /// The `reason` label.
    pub fn reason(&self) -> &'static str {
        match self {
            GraphError::Config(_) | GraphError::Token(_) => "token",
            GraphError::Throttled(_) => "throttled",
            GraphError::Server(_) | GraphError::Stopped => "server",
            GraphError::Network(_) => "network",
            GraphError::Resync => "resync",
            GraphError::Decode(_) => "decode",
            GraphError::Store(_) => "store",
        }
    }
}

/// The token scope: Graph's own for the public cloud (and loopback test stand-ins), the
/// configured Graph origin for national clouds.
pub fn scope(graph_url: &str) -> String {
    let public = "https://graph.microsoft.com";
    if graph_url.starts_with("https://") && !graph_url.eq_ignore_ascii_case(public) {
        format!("{graph_url}/.default")
    } else {
        format!("{public}/.default")
    }
}

/// Where the sync reports its incidents (the collector's [`Metrics`], or a test double).
pub trait SyncMetrics: Send + Sync {
    /// One incident of `reason` (one of [`REASONS`]).
    fn error(&self, reason: &'static str);
}

impl SyncMetrics for Metrics {
    fn error(&self, reason: &'static str) {
        self.add_counter(
            names::GRAPH_SYNC_ERRORS_TOTAL,
            &[("reason", reason.into())],
            1,
        );
    }
}

/// What the API shows about the sync.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SyncStatus {
    /// Last successful round (RFC 3339).
    pub last_success: Option<String>,
    /// Message of the last failed round, cleared by a success.
    pub last_error: Option<String>,
    /// Rounds attempted since start.
    pub rounds: u64,
    /// A complete round has been stored (now or before a restart).
    pub complete: bool,
}

/// Shared state between the sync thread and the HTTP handlers.
#[derive(Debug, Default)]
pub struct GraphState {
    reconciled: RwLock<Arc<Reconciled>>,
    status: Mutex<SyncStatus>,
}

impl GraphState {
    /// The latest reconciliation.
    pub fn reconciled(&self) -> Arc<Reconciled> {
        self.reconciled
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The sync status.
    pub fn status(&self) -> SyncStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn publish(&self, r: Reconciled) {
        *self.reconciled.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(r);
    }
}

/// A running sync: its shared state and the means to stop it.
pub struct Graph {
    state: Arc<GraphState>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    done: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
}

/// How long [`Graph::shutdown`] waits for the sync thread (an HTTP call in flight may take
/// longer; the process then exits without it — SQLite rolls back its open page).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

impl Graph {
    /// Opens the sync's connection to `db` (already migrated by the store) and starts the
    /// sync thread: a reconciliation of what is stored, then a round every `interval`.
    pub fn start(
        settings: GraphSettings,
        db: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<Graph, GraphError> {
        let conn = open(db)?;
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(GraphState::default());
        for reason in REASONS {
            metrics.add_counter(
                names::GRAPH_SYNC_ERRORS_TOTAL,
                &[("reason", (*reason).into())],
                0,
            );
        }
        metrics.set_gauge(
            names::GRAPH_SYNC_STARTED_TIMESTAMP_SECONDS,
            &[],
            now_ms() as f64 / 1000.0,
        );
        let last: Option<i64> = conn.query_row(
            "SELECT last_success_at FROM graph_sync WHERE id = 1",
            [],
            |r| r.get(0),
        )?;
        if let Some(ms) = last {
            metrics.set_gauge(
                names::GRAPH_SYNC_LAST_SUCCESS_TIMESTAMP_SECONDS,
                &[],
                ms as f64 / 1000.0,
            );
            state
                .status
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .last_success = Some(crate::store::read::rfc3339(ms));
        }
        tracing::info!(
            tenant = %settings.tenant_id,
            graph = %settings.graph_url,
            interval = ?settings.interval,
            credential = match settings.credential { Credential::SecretFile(_) => "secret", Credential::Certificate { .. } => "certificate" },
            "graph device sync on"
        );
        let http = http::Http::new(stop.clone());
        let interval = settings.interval;
        let syncer = delta::Syncer::new(settings, http, conn, metrics.clone());
        let (st, stp) = (state.clone(), stop.clone());
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("dsreg-graph-sync".into())
            .spawn(move || {
                sync_loop(syncer, st, metrics, stp, interval);
                let _ = done_tx.send(());
            })
            .map_err(|e| GraphError::Store(StoreError::Join(e.to_string())))?;
        Ok(Graph {
            state,
            stop,
            thread: Mutex::new(Some(thread)),
            done: Mutex::new(Some(done_rx)),
        })
    }

    /// The shared state (for the API).
    pub fn state(&self) -> Arc<GraphState> {
        self.state.clone()
    }

    /// Asks the thread to stop and waits for it at most [`SHUTDOWN_GRACE`] (async callers).
    pub async fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let done = self.done.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(done) = done
            && tokio::time::timeout(SHUTDOWN_GRACE, done).await.is_err()
        {
            tracing::warn!("graph sync still in an HTTP call at shutdown; not waiting for it");
        }
    }

    /// Asks the thread to stop and waits for it (call from a blocking context).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

fn open(db: &Path) -> Result<Connection, GraphError> {
    let conn = Connection::open(db)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

fn sync_loop(
    mut syncer: delta::Syncer,
    state: Arc<GraphState>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    interval: Duration,
) {
    let mut cache = PublishCache::default();
    let stopped = || stop.load(Ordering::SeqCst);
    publish(&syncer, &state, &metrics, &mut cache);
    while !stopped() {
        let started = Instant::now();
        let result = syncer.round();
        {
            let mut st = state.status.lock().unwrap_or_else(|p| p.into_inner());
            st.rounds += 1;
            match &result {
                Ok(stats) => {
                    let now = now_ms();
                    st.last_success = Some(crate::store::read::rfc3339(now));
                    st.last_error = None;
                    metrics.set_gauge(
                        names::GRAPH_SYNC_LAST_SUCCESS_TIMESTAMP_SECONDS,
                        &[],
                        now as f64 / 1000.0,
                    );
                    tracing::info!(
                        full = stats.full,
                        pages = stats.pages,
                        upserted = stats.upserted,
                        removed = stats.removed,
                        vanished = stats.vanished,
                        ms = started.elapsed().as_millis() as u64,
                        "graph: round complete"
                    );
                }
                Err(GraphError::Stopped) => break,
                Err(e) => {
                    metrics.error(e.reason());
                    st.last_error = Some(e.to_string());
                    if matches!(e, GraphError::Config(_)) {
                        tracing::error!(error = %e, "graph: round failed: fix the setting named");
                    } else {
                        tracing::warn!(error = %e, reason = e.reason(), "graph: round failed");
                    }
                }
            }
        }
        publish(&syncer, &state, &metrics, &mut cache);
        let next = Instant::now() + interval;
        loop {
            let left = next.saturating_duration_since(Instant::now());
            if left.is_zero() || stopped() {
                break;
            }
            let step = left.min(RECONCILE_EVERY);
            let end = Instant::now() + step;
            while Instant::now() < end && !stopped() {
                std::thread::sleep(Duration::from_millis(50).min(step));
            }
            if !stopped() && step == RECONCILE_EVERY {
                publish(&syncer, &state, &metrics, &mut cache);
            }
        }
    }
    tracing::info!("graph device sync stopped");
}

/// Recomputes the reconciliation from the tables and publishes it (state and gauges).
fn publish(
    syncer: &delta::Syncer,
    state: &GraphState,
    metrics: &Metrics,
    cache: &mut PublishCache,
) {
    match compute(syncer.conn(), &mut cache.sids) {
        Ok(r) => {
            state
                .status
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .complete = r.complete;
            set_gauges(metrics, &r, &mut cache.exported);
            state.publish(r);
        }
        Err(e) => {
            metrics.error("store");
            tracing::warn!(error = %e, "graph: reconciliation failed");
        }
    }
}

/// What the sync thread keeps between reconciliations.
#[derive(Default)]
struct PublishCache {
    /// `cause` labels of `dsreg_devices_cloud_pending_over_1d` exported so far.
    exported: HashSet<String>,
    /// Decoded computer SIDs.
    sids: reconcile::SidCache,
}

/// One reconciliation from the stored cloud devices and reported devices.
pub fn compute(
    conn: &Connection,
    sids: &mut reconcile::SidCache,
) -> Result<Reconciled, GraphError> {
    let complete = cloud::state(conn)?.last_complete_at.is_some();
    let objects = cloud::load_all(conn)?;
    let known: HashSet<&str> = objects
        .iter()
        .filter_map(|o| o.device_id.as_deref())
        .collect();
    let reported = reconcile::load_reported(
        conn,
        |d| {
            d.entra_device_id
                .as_deref()
                .is_none_or(|id| !known.contains(id.to_ascii_lowercase().as_str()))
        },
        sids,
    )?;
    Ok(reconcile::reconcile(&reported, objects, complete, now_ms()))
}

fn set_gauges(metrics: &Metrics, r: &Reconciled, exported: &mut HashSet<String>) {
    for client in ClientState::ALL {
        for cloud in CloudState::ALL {
            let n = r.counts.get(&(client, cloud)).copied().unwrap_or(0);
            metrics.set_gauge(
                names::DEVICES_RECONCILED,
                &[
                    ("client", client.label().into()),
                    ("cloud", cloud.label().into()),
                ],
                n as f64,
            );
        }
    }
    metrics.set_gauge(names::GRAPH_NAMES_AMBIGUOUS, &[], r.ambiguous_names as f64);
    metrics.set_gauge(names::GRAPH_CLOUD_DEVICES, &[], r.cloud_objects as f64);
    for cause in exported.iter() {
        if !r.pending_over_1d.contains_key(cause) {
            metrics.set_gauge(
                names::DEVICES_CLOUD_PENDING_OVER_1D,
                &[("cause", cause.clone())],
                0.0,
            );
        }
    }
    for (cause, n) in &r.pending_over_1d {
        metrics.set_gauge(
            names::DEVICES_CLOUD_PENDING_OVER_1D,
            &[("cause", cause.clone())],
            *n as f64,
        );
        exported.insert(cause.clone());
    }
}
