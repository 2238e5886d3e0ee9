//! The one test app of the HTTP unit tests (`api/tests.rs`, `ui/tests.rs`): a store in a
//! temporary directory holding the given reports, the fleet and metrics it feeds, and the
//! `/api/v1` + UI router over them, optionally behind the HTTP token guard.
//!
//! Invariant: the reports are committed (acknowledged by the writer) before the router is
//! returned, so a test's first request already sees them. Test-only (`#[cfg(test)]`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use dsreg_proto::v1::Report;

use crate::api::{AppState, router};
use crate::auth::{Auth, http_guard};
use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::store::{Store, StoreOptions};

/// The router, its store, and the directory that holds the database (dropped last).
pub(crate) type TestApp = (Router, Store, tempfile::TempDir);

/// Stores `reports` in a fresh database and returns the router over it; with `auth`, behind
/// [`http_guard`] as `run` serves it.
pub(crate) async fn test_app(reports: Vec<Report>, auth: Option<Auth>) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Arc::new(Fleet::new(Duration::from_secs(3600)));
    let metrics = Arc::new(Metrics::new());
    let opts = StoreOptions {
        queue_depth: 8,
        history_per_device: 10,
        readers: 2,
    };
    let store = Store::open(
        &dir.path().join("a.db"),
        opts,
        fleet.clone(),
        metrics.clone(),
    )
    .unwrap();
    store.submit(reports).await.unwrap();
    let state = AppState {
        store: store.clone(),
        fleet,
        metrics,
        stale_after_ms: 3_600_000,
    };
    let app = router(state);
    let app = match auth {
        Some(auth) => app.layer(axum::middleware::from_fn_with_state(auth, http_guard)),
        None => app,
    };
    (app, store, dir)
}
