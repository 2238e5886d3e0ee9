//! The HTTP side: `/healthz`, `/readyz`, `/metrics` and the drill-down API under `/api/v1`.
//!
//! Invariants: every response is JSON except `/metrics`; every error is
//! `{"error": "<message>"}` through [`Error`] (the one status mapping); a bad parameter is a 400
//! naming the parameter and its value, never a 500; unknown query parameters are refused so a
//! typo does not silently return the unfiltered fleet. Queries run on read-only connections in
//! the blocking pool; `/metrics` reads only the in-memory aggregates.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dsreg_proto::{JoinType, Phase, catalog};
use serde_json::{Value, json};

use crate::error::Error;
use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::store::merge;
use crate::store::read::{self, DeviceFilter, FailureView};
use crate::store::{Store, now_ms};

/// Default page size of `/api/v1/devices`.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size.
pub const MAX_LIMIT: usize = 1000;
/// Events and history rows shown in a device drill-down.
pub const RECENT: usize = 20;

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
    fn stale_cutoff(&self) -> i64 {
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
        .route("/api/v1/devices", get(devices))
        .route("/api/v1/devices/{key}", get(device))
        .route("/api/v1/devices/{key}/history", get(device_history))
        .route("/api/v1/devices/{key}/attempts", get(device_attempts))
        .route("/api/v1/failures", get(failures))
        .route("/api/v1/agents", get(agents))
        .route("/api/v1/catalog", get(catalog_doc))
        .route("/api/v1/reconcile", get(reconcile::list))
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

fn bad(param: &str, value: &str, why: &str) -> Error {
    let value = shown(value);
    Error::InvalidArgument(format!("invalid {param} {value:?}: {why}"))
}

/// A client's value as echoed in an error: at most [`ECHO_MAX`] bytes, so a 100 kB key does
/// not come back as a 100 kB message (or log line).
fn shown(value: &str) -> String {
    match value.char_indices().nth(ECHO_MAX) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_string(),
    }
}

/// Characters of a client value echoed in an error message.
const ECHO_MAX: usize = 128;

const LIST_PARAMS: &[&str] = &[
    "join_type",
    "phase",
    "cause",
    "code",
    "symbol",
    "hostname",
    "stale",
    "limit",
    "cursor",
];

/// Parses the query string of `/api/v1/devices` into a filter.
pub fn parse_filter(q: &HashMap<String, String>) -> Result<DeviceFilter, Error> {
    if let Some(k) = q.keys().find(|k| !LIST_PARAMS.contains(&k.as_str())) {
        return Err(Error::InvalidArgument(format!(
            "unknown parameter {k:?} (expected one of {})",
            LIST_PARAMS.join(", ")
        )));
    }
    let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let mut f = DeviceFilter {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    if let Some(v) = get("join_type") {
        if v != "unknown" && JoinType::from_label(v).is_none() {
            let all: Vec<_> = JoinType::ALL.iter().map(|j| j.label()).collect();
            return Err(bad(
                "join_type",
                v,
                &format!("expected one of {}, unknown", all.join(", ")),
            ));
        }
        f.join_type = Some(v.to_string());
    }
    if let Some(v) = get("phase") {
        let p = Phase::from_label(v).ok_or_else(|| {
            bad(
                "phase",
                v,
                "expected pre-check, discover, auth, join or post-join",
            )
        })?;
        f.phase = Some(p.label().to_string());
    }
    if let Some(v) = get("cause") {
        if catalog::cause(v).is_none() {
            return Err(bad("cause", v, "not a cause id of /api/v1/catalog"));
        }
        f.cause = Some(v.to_string());
    }
    if let Some(v) = get("code") {
        if v.eq_ignore_ascii_case("none") {
            // Failures without a code (e.g. a server message alone): the `code=""` groups.
            f.no_code = true;
        } else {
            let code = catalog::parse_code(v)
                .or_else(|| catalog::find(v).map(|e| e.code))
                .ok_or_else(|| {
                    bad(
                        "code",
                        v,
                        "expected 0x-hex, a decimal code, a symbol, or none",
                    )
                })?;
            f.code = Some(code);
        }
    }
    if let Some(v) = get("symbol") {
        let e = catalog::find(v)
            .filter(|e| e.symbol.eq_ignore_ascii_case(v))
            .ok_or_else(|| bad("symbol", v, "not a catalog symbol"))?;
        f.symbol = Some(e.symbol.to_string());
    }
    if let Some(v) = get("hostname") {
        f.hostname = Some(v.to_string());
    }
    if let Some(v) = get("stale") {
        f.stale = Some(match v {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(bad("stale", v, "expected true or false")),
        });
    }
    if let Some(v) = get("limit") {
        let n: usize = v.parse().map_err(|_| bad("limit", v, "not a number"))?;
        if !(1..=MAX_LIMIT).contains(&n) {
            return Err(bad(
                "limit",
                v,
                &format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        f.limit = n;
    }
    if let Some(v) = get("cursor") {
        f.after = Some(
            decode_cursor(v)
                .ok_or_else(|| bad("cursor", v, "not a cursor returned by this API"))?,
        );
    }
    Ok(f)
}

/// Cursors are the hex of the last machine id, behind a version tag (opaque to clients).
fn encode_cursor(machine_id: &str) -> String {
    let mut s = String::from("c1");
    for b in machine_id.as_bytes() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn decode_cursor(c: &str) -> Option<String> {
    let hex = c.strip_prefix("c1")?;
    if hex.is_empty() || hex.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// Axum's own rejections (bad percent-encoding, invalid UTF-8) become our JSON 400.
fn rejected(what: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("invalid {what}: {e}"))
}

async fn devices(
    State(s): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<axum::Json<Value>, Error> {
    let Query(q) = q.map_err(|e| rejected("query string", e))?;
    let filter = parse_filter(&q)?;
    let cutoff = s.stale_cutoff();
    let (list, next) = s
        .store
        .read(move |c| read::list_devices(c, &filter, cutoff))
        .await?;
    Ok(axum::Json(json!({
        "devices": list,
        "next_cursor": next.map(|id| encode_cursor(&id)),
    })))
}

async fn resolve(s: &AppState, key: String) -> Result<String, Error> {
    let k = key.clone();
    s.store
        .read(move |c| read::resolve_key(c, &k))
        .await?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no device with machine id, hostname or entra device id {:?}",
                shown(&key)
            ))
        })
}

fn cause_doc(cause: &str) -> (Value, Value) {
    match catalog::cause(cause) {
        Some(c) => (json!(c.text), json!(c.resolution)),
        None => (Value::Null, Value::Null),
    }
}

async fn device(
    State(s): State<AppState>,
    graph: Option<axum::Extension<Arc<crate::graph::GraphState>>>,
    key: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<Value>, Error> {
    let Path(key) = key.map_err(|e| rejected("device key", e))?;
    let id = resolve(&s, key).await?;
    let cutoff = s.stale_cutoff();
    let id2 = id.clone();
    let d = s
        .store
        .read(move |c| read::device(c, &id2, cutoff, RECENT))
        .await?
        .ok_or_else(|| Error::NotFound(format!("device {id:?} disappeared")))?;
    let mut doc = serde_json::to_value(&d.summary).map_err(|e| Error::Internal(e.to_string()))?;
    if let Some(f) = &d.summary.failure {
        let (text, resolution) = cause_doc(&f.cause);
        let mut fv = serde_json::to_value(f).map_err(|e| Error::Internal(e.to_string()))?;
        if let Some(sf) = &d.snapshot.failure {
            let extra = serde_json::to_value(sf).map_err(|e| Error::Internal(e.to_string()))?;
            for k in ["sub_code", "source", "server_error", "evidence"] {
                if let Some(v) = extra.get(k) {
                    fv[k] = v.clone();
                }
            }
        }
        fv["cause_text"] = text;
        fv["resolution"] = resolution;
        if let Some(e) = f.code.as_deref().and_then(catalog::find) {
            fv["code_text"] = json!(e.text);
            fv["code_resolution"] = json!(e.resolution);
        }
        doc["failure"] = fv;
    }
    doc["agent_version"] = json!(d.agent_version);
    doc["os_build"] = json!(d.os_build);
    doc["execution_context"] = json!(d.execution_context);
    doc["collected_at"] = json!(d.collected_at);
    doc["snapshot"] =
        serde_json::to_value(&d.snapshot).map_err(|e| Error::Internal(e.to_string()))?;
    doc["events"] = serde_json::to_value(&d.events).map_err(|e| Error::Internal(e.to_string()))?;
    doc["transitions"] = json!(d.history);
    // The newest join attempts (all of them at `/attempts`) and whether the device is meant
    // to join at all (DESIGN §4, §4b).
    doc["attempts"] = serde_json::to_value(
        d.snapshot
            .attempts
            .iter()
            .take(RECENT_ATTEMPTS)
            .collect::<Vec<_>>(),
    )
    .map_err(|e| Error::Internal(e.to_string()))?;
    doc["targeted"] = targeted_doc(d.snapshot.not_targeted.as_deref());
    let id3 = id.clone();
    let parts = s.store.read(move |c| Ok(merge::parts(c, &id3)?)).await?;
    let view = merge::view(&parts);
    let mut sources = serde_json::Map::new();
    for p in &parts {
        let context = match p.context.label() {
            "" => "unspecified",
            l => l,
        };
        sources.insert(
            p.part.label().to_string(),
            json!({
                "context": context,
                "collected_at": p.collected_at.map(read::rfc3339),
                "received_at": read::rfc3339(p.received_at),
                "report_id": p.report_id,
            }),
        );
    }
    doc["sources"] = Value::Object(sources);
    doc["provenance"] = json!(view.provenance);
    let a = &view.agent;
    doc["agent"] = json!({
        "from": parts.iter().map(|p| p.part.label()).next(),
        "version": a.version,
        "spool_depth": a.spool_depth,
        "spool_dropped": a.spool_dropped,
        "last_delivery": a.last_delivery.map(read::rfc3339),
        "parse_warnings": a.parse_warnings,
    });
    if let Some(cloud) = reconcile::device_cloud(graph.as_deref().map(|g| g.as_ref()), &id) {
        doc["cloud"] = cloud;
    }
    Ok(axum::Json(doc))
}

/// Devices listed per agent-health problem in `/api/v1/agents`.
const AGENT_SAMPLES: usize = 20;

/// `/api/v1/agents`: fleet agent health. Counts come from the in-memory aggregates (versions
/// beyond the cap fold into `other`, as in the metrics); the device lists are samples.
async fn agents(State(s): State<AppState>) -> Result<axum::Json<Value>, Error> {
    let now = now_ms();
    let counts = s.fleet.counts(now);
    let day = now.saturating_sub(crate::fleet::NOT_DELIVERED_AFTER.as_millis() as i64);
    let (dropped, undelivered) = s
        .store
        .read(move |c| {
            let sample = |sql: &str, arg: i64| -> Result<Vec<Value>, crate::store::StoreError> {
                let mut q = c.prepare(sql)?;
                let rows = q.query_map([arg, AGENT_SAMPLES as i64], |r| {
                    Ok(json!({
                        "machine_id": r.get::<_, String>(0)?,
                        "hostname": r.get::<_, String>(1)?,
                        "agent_version": r.get::<_, String>(2)?,
                        "spool_dropped": r.get::<_, i64>(3)?,
                        "spool_depth": r.get::<_, i64>(4)?,
                        "last_delivery": r.get::<_, Option<i64>>(5)?.map(read::rfc3339),
                        "last_seen": read::rfc3339(r.get(6)?),
                    }))
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            };
            let cols = "machine_id, hostname, agent_version, agent_spool_dropped, \
                agent_spool_depth, agent_last_delivery, last_seen FROM devices";
            Ok((
                sample(
                    &format!("SELECT {cols} WHERE agent_spool_dropped > ?1 ORDER BY agent_spool_dropped DESC LIMIT ?2"),
                    0,
                )?,
                sample(
                    &format!("SELECT {cols} WHERE last_seen < ?1 ORDER BY last_seen LIMIT ?2"),
                    day,
                )?,
            ))
        })
        .await?;
    let versions: Vec<Value> = counts
        .agent_versions
        .iter()
        .map(|(v, n)| json!({"version": v, "devices": n}))
        .collect();
    Ok(axum::Json(json!({
        "devices": counts.total,
        "versions": versions,
        "spool_overflowing": {"devices": counts.spool_overflowing, "sample": dropped},
        "not_delivered_1d": {"devices": counts.not_delivered_1d, "sample": undelivered},
    })))
}

/// How many attempts the device document carries.
const RECENT_ATTEMPTS: usize = 5;

/// `{"targeted": bool, "reason": …, "text": …}` for the device document.
fn targeted_doc(not_targeted: Option<&str>) -> Value {
    match not_targeted {
        None => json!({"targeted": true}),
        Some(reason) => json!({
            "targeted": false,
            "reason": reason,
            "text": match reason {
                "domain_controller" => "a domain controller: hybrid join is not supported there",
                "policy_disabled" => "hybrid join is turned off by policy (autoWorkplaceJoin = 0)",
                _ => "hybrid join is not intended for this device",
            },
        }),
    }
}

/// `GET /api/v1/devices/{key}/attempts`: the device's join attempts, newest first (time,
/// phase, code, symbol, cause with its text, server error type and message, source records).
async fn device_attempts(
    State(s): State<AppState>,
    key: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<Value>, Error> {
    let Path(key) = key.map_err(|e| rejected("device key", e))?;
    let id = resolve(&s, key).await?;
    let cutoff = s.stale_cutoff();
    let id2 = id.clone();
    let d = s
        .store
        .read(move |c| read::device(c, &id2, cutoff, 0))
        .await?
        .ok_or_else(|| Error::NotFound(format!("device {id:?} disappeared")))?;
    let mut attempts = Vec::with_capacity(d.snapshot.attempts.len());
    for a in &d.snapshot.attempts {
        let mut v = serde_json::to_value(a).map_err(|e| Error::Internal(e.to_string()))?;
        if let Some(c) = catalog::cause(&a.cause) {
            v["cause_text"] = json!(c.text);
            v["resolution"] = json!(c.resolution);
        }
        attempts.push(v);
    }
    Ok(axum::Json(json!({"machine_id": id, "attempts": attempts})))
}

async fn device_history(
    State(s): State<AppState>,
    key: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<Value>, Error> {
    let Path(key) = key.map_err(|e| rejected("device key", e))?;
    let id = resolve(&s, key).await?;
    let id2 = id.clone();
    let rows = s
        .store
        .read(move |c| read::history(c, &id2, usize::MAX >> 1))
        .await?;
    Ok(axum::Json(json!({"machine_id": id, "history": rows})))
}

async fn failures(State(s): State<AppState>) -> Result<axum::Json<Value>, Error> {
    let groups = s.store.read(read::failure_groups).await?;
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|g| {
            let FailureView {
                phase,
                cause,
                code,
                symbol,
            } = g.failure;
            let (text, resolution) = cause_doc(&cause);
            json!({
                "phase": phase, "cause": cause, "code": code, "symbol": symbol,
                "devices": g.devices, "first_seen": g.first_seen, "last_seen": g.last_seen,
                "cause_text": text, "resolution": resolution, "sample_devices": g.sample_devices,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "groups": groups })))
}

async fn catalog_doc() -> axum::Json<Value> {
    let entries: Vec<Value> = catalog::entries()
        .iter()
        .map(|e| {
            json!({
                "symbol": e.symbol, "code": e.hex(), "signed": e.signed, "phase": e.phase.label(),
                "cause": e.cause, "text": e.text, "resolution": e.resolution,
                "aliases": e.aliases.iter().map(|a| dsreg_proto::hex(*a)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let causes: Vec<Value> = catalog::causes()
        .iter()
        .map(|c| json!({"id": c.id, "phase": c.phase.label(), "text": c.text, "resolution": c.resolution}))
        .collect();
    axum::Json(json!({"entries": entries, "causes": causes}))
}

pub mod reconcile;

#[cfg(test)]
mod tests;
