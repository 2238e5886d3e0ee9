//! The HTTP side: `/healthz`, `/readyz`, `/metrics` and the drill-down API under `/api/v1`.
//!
//! Invariants: every response is JSON except `/metrics`; every error is
//! `{"error": "<message>"}` through [`Error`] (the one status mapping); a bad parameter is a 400
//! naming the parameter and its value, never a 500; unknown query parameters are refused so a
//! typo does not silently return the unfiltered fleet. Queries run on read-only connections in
//! the blocking pool; `/metrics` reads only the in-memory aggregates.

pub mod agents;
pub mod catalog;
pub mod device;
pub mod devices;
pub mod failures;
pub mod openapi;
pub mod reconcile;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

pub use devices::{DEFAULT_LIMIT, MAX_LIMIT, RECENT, parse_filter};

use crate::error::Error;
use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::store::{Store, now_ms};

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// The aggregates.
    pub fleet: Arc<Fleet>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// The stale window in milliseconds.
    pub stale_after_ms: i64,
}

impl AppState {
    pub(crate) fn stale_cutoff(&self) -> i64 {
        now_ms().saturating_sub(self.stale_after_ms)
    }
}

/// The HTTP router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/devices", get(devices::devices))
        .route("/api/v1/devices/{key}", get(device::device))
        .route("/api/v1/devices/{key}/history", get(device::device_history))
        .route(
            "/api/v1/devices/{key}/attempts",
            get(device::device_attempts),
        )
        .route("/api/v1/reconcile", get(reconcile::list))
        .route("/api/v1/failures", get(failures::failures))
        .route("/api/v1/agents", get(agents::agents))
        .route("/api/v1/catalog", get(catalog::catalog_doc))
        .route("/api/v1/openapi.json", get(openapi::openapi_json))
        .merge(crate::ui::routes())
        .fallback(|| async { Error::NotFound("no such endpoint".into()) })
        .with_state(state)
}

async fn readyz(State(s): State<AppState>) -> Result<axum::Json<Value>, Error> {
    if s.store.writer_alive() {
        Ok(axum::Json(json!({"status": "ready"})))
    } else {
        Err(Error::Unavailable(
            "the sqlite writer is not running".into(),
        ))
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let counts = s.fleet.counts(now_ms());
    let body = s.metrics.render(&counts);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

pub(crate) fn bad(param: &str, value: &str, why: &str) -> Error {
    let value = shown(value);
    Error::InvalidArgument(format!("invalid {param} {value:?}: {why}"))
}

/// A client's value as echoed in an error: at most [`ECHO_MAX`] bytes, so a 100 kB key does
/// not come back as a 100 kB message (or log line).
pub(crate) fn shown(value: &str) -> String {
    match value.char_indices().nth(ECHO_MAX) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_string(),
    }
}

/// Characters of a client value echoed in an error message.
const ECHO_MAX: usize = 128;

/// Axum's own rejections (bad percent-encoding, invalid UTF-8) become our JSON 400.
pub(crate) fn rejected(what: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("invalid {what}: {e}"))
}

#[cfg(test)]
pub(crate) mod test_app;
#[cfg(test)]
mod tests;
