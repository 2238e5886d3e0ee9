//! `/api/v1/devices`, `/api/v1/devices/{key}` and `/api/v1/devices/{key}/history`: the device
//! list and the drill-down document, as typed answers.
//!
//! Invariants: [`device_document`] is the one builder of the drill-down (the API and the web
//! UI both show it), reading the device row, its events, history and stored parts on one
//! read-only connection inside one read transaction, so the parts are consistent with each
//! other. Nothing a device sent is interpreted here: strings pass through as data (the UI
//! escapes them, JSON encodes them).

use std::collections::{BTreeMap, HashMap};

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use dsreg_proto::v1::{Attempt, EventRecord, Snapshot};
use dsreg_proto::{JoinType, Phase, catalog, labels};
use serde::Serialize;
use utoipa::ToSchema;

use super::openapi::ErrorBody;
use super::{AppState, bad, rejected, shown};
use crate::error::Error;
use crate::store::merge;
use crate::store::read::{self, DeviceFilter, DeviceSummary, FailureView, HistoryRow};

/// Default page size of `/api/v1/devices`.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size.
pub const MAX_LIMIT: usize = 1000;
/// Events and history rows shown in a device drill-down.
pub const RECENT: usize = 20;

/// One page of `/api/v1/devices`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceList {
    /// The devices of this page, by machine id.
    pub devices: Vec<DeviceSummary>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The current failure of a device, with the catalog's texts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FailureDetail {
    /// Phase label.
    pub phase: String,
    /// Cause id.
    pub cause: String,
    /// `0x%08x`, absent when the failure had no code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Catalog symbol, `""` when unknown.
    pub symbol: String,
    /// The sub-error, `0x%08x`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_code: Option<String>,
    /// Where the failure was read (`previous_registration`, `test:<name>`, `event:<id>`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The server's error type and message, as the device reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_error: Option<String>,
    /// The capture's lines that show the failure.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    /// What the cause means (null for a cause outside the catalog).
    pub cause_text: Option<String>,
    /// What to do about it.
    pub resolution: Option<String>,
    /// What the code means, when the catalog knows the code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_text: Option<String>,
    /// What to do about the code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_resolution: Option<String>,
}

/// Where one stored part of the device view came from.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SourceInfo {
    /// The execution context of the report (`system`, `user` or `unspecified`).
    pub context: String,
    /// When the agent collected it.
    pub collected_at: Option<String>,
    /// When the collector received it.
    pub received_at: String,
    /// The report that last updated it.
    pub report_id: String,
}

/// The agent health a device shows.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AgentHealth {
    /// The part it is taken from (`device` or `user`).
    pub from: Option<String>,
    /// dsreg-agent version.
    pub version: String,
    /// Reports waiting in its spool.
    pub spool_depth: i64,
    /// Reports its spool dropped since install.
    pub spool_dropped: i64,
    /// Its last acknowledged delivery.
    pub last_delivery: Option<String>,
    /// Parse warnings of its snapshot.
    pub parse_warnings: i64,
}

/// `/api/v1/devices/{key}`: everything known about one device.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeviceDocument {
    /// The device key (the agent's machine id).
    pub machine_id: String,
    /// Host name.
    pub hostname: String,
    /// AD domain.
    pub ad_domain: String,
    /// Entra DeviceId, when joined.
    pub entra_device_id: Option<String>,
    /// Join type label.
    pub join_type: String,
    /// Current failure; null when healthy.
    pub failure: Option<FailureDetail>,
    /// Since when the current failure is seen.
    pub failing_since: Option<String>,
    /// First report.
    pub first_seen: String,
    /// Last report.
    pub last_seen: String,
    /// Not heard from within the stale window.
    pub stale: bool,
    /// Agent version of the latest snapshot.
    pub agent_version: String,
    /// Windows build.
    pub os_build: String,
    /// `system`, `user` or `""`.
    pub execution_context: String,
    /// When the agent collected the latest snapshot.
    pub collected_at: Option<String>,
    /// The merged snapshot (DESIGN §3; the prost-generated message, documented as an object).
    #[schema(value_type = Object)]
    pub snapshot: Snapshot,
    /// Recent event records, newest first.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<EventRecord>,
    /// Recent transitions and samples, newest first.
    pub transitions: Vec<HistoryRow>,
    /// Stored parts (`device`, `user`) and where each came from.
    pub sources: BTreeMap<String, SourceInfo>,
    /// Snapshot section → the part it was taken from.
    pub provenance: BTreeMap<String, String>,
    /// Agent health.
    pub agent: AgentHealth,
    /// The newest join attempts (all of them at `/attempts`), newest first (DESIGN §4).
    #[schema(value_type = Vec<Object>)]
    pub attempts: Vec<Attempt>,
    /// Whether hybrid join is intended for this device (DESIGN §4b).
    pub targeted: Targeted,
    /// The cloud side (Microsoft Graph), when the Graph sync is configured and matched it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub cloud: Option<serde_json::Value>,
}

/// Whether a device is meant to join at all.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Targeted {
    /// False for a domain controller or a device where hybrid join is off by policy.
    pub targeted: bool,
    /// `domain_controller` or `policy_disabled` when not targeted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the reason means, for a person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl Targeted {
    /// From the snapshot's derived `not_targeted`.
    pub fn of(not_targeted: Option<&str>) -> Targeted {
        let text = |r: &str| match r {
            "domain_controller" => "a domain controller: hybrid join is not supported there",
            "policy_disabled" => "hybrid join is turned off by policy (autoWorkplaceJoin = 0)",
            _ => "hybrid join is not intended for this device",
        };
        Targeted {
            targeted: not_targeted.is_none(),
            reason: not_targeted.map(str::to_owned),
            text: not_targeted.map(|r| text(r).to_owned()),
        }
    }
}

/// `/api/v1/devices/{key}/attempts`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceAttempts {
    /// The device key.
    pub machine_id: String,
    /// Every join attempt the device's records show, newest first.
    pub attempts: Vec<AttemptDetail>,
}

/// One join attempt with its cause text (DESIGN §4).
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptDetail {
    /// The attempt as derived (time, phase, code, symbol, cause, server error type and
    /// message, activity id, source records, succeeded).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub attempt: Attempt,
    /// What the cause means.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause_text: Option<String>,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
}

/// How many attempts the device document carries.
pub const RECENT_ATTEMPTS: usize = 5;

/// `/api/v1/devices/{key}/history`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceHistory {
    /// The device key.
    pub machine_id: String,
    /// Every kept history row, newest first.
    pub history: Vec<HistoryRow>,
}

/// The query parameters `/api/v1/devices` accepts.
pub const LIST_PARAMS: &[&str] = &[
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
            "unknown parameter {:?} (expected one of {})",
            shown(k),
            LIST_PARAMS.join(", ")
        )));
    }
    let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let mut f = DeviceFilter {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    if let Some(v) = get("join_type") {
        if v != labels::UNKNOWN && JoinType::from_label(v).is_none() {
            let all: Vec<_> = labels::join_type_labels().collect();
            return Err(bad(
                "join_type",
                v,
                &format!("expected one of {}", all.join(", ")),
            ));
        }
        f.join_type = Some(v.to_string());
    }
    if let Some(v) = get("phase") {
        // Exactly a label (the document's enum), not the lenient dsregcmd spellings.
        let p = Phase::ALL
            .into_iter()
            .find(|p| p.label() == v)
            .ok_or_else(|| {
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
        f.limit = parse_limit(v)?;
    }
    if let Some(v) = get("cursor") {
        f.after = Some(parse_cursor(v)?);
    }
    Ok(f)
}

/// A `limit` parameter: a number in `1..=MAX_LIMIT` (the device list and the reconcile list).
pub fn parse_limit(v: &str) -> Result<usize, Error> {
    let n: usize = v.parse().map_err(|_| bad("limit", v, "not a number"))?;
    if !(1..=MAX_LIMIT).contains(&n) {
        return Err(bad(
            "limit",
            v,
            &format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    Ok(n)
}

/// A `cursor` parameter: one this API returned (see [`encode_cursor`]).
pub fn parse_cursor(v: &str) -> Result<String, Error> {
    decode_cursor(v).ok_or_else(|| bad("cursor", v, "not a cursor returned by this API"))
}

/// Cursors are the hex of the last machine id, behind a version tag (opaque to clients).
pub fn encode_cursor(machine_id: &str) -> String {
    let mut s = String::from("c1");
    for b in machine_id.as_bytes() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub fn decode_cursor(c: &str) -> Option<String> {
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

/// One page of devices matching `filter`.
pub async fn list(s: &AppState, filter: DeviceFilter) -> Result<DeviceList, Error> {
    let cutoff = s.stale_cutoff();
    let (devices, next) = s
        .store
        .read(move |c| read::list_devices(c, &filter, cutoff))
        .await?;
    Ok(DeviceList {
        devices,
        next_cursor: next.map(|id| encode_cursor(&id)),
    })
}

/// `GET /api/v1/devices`: one page of devices matching the filters.
#[utoipa::path(
    get,
    path = "/api/v1/devices",
    responses(
        (status = 200, description = "OK", body = DeviceList),
        (status = 400, description = "A bad parameter, named in the message.", body = ErrorBody),
        (status = 401, description = "No reader token, or a wrong one.", body = ErrorBody),
        (status = 503, description = "The store is unavailable (shutting down, disk full).", body = ErrorBody),
    ),
)]
pub async fn devices(
    State(s): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<axum::Json<DeviceList>, Error> {
    let Query(q) = q.map_err(|e| rejected("query string", e))?;
    let filter = parse_filter(&q)?;
    Ok(axum::Json(list(&s, filter).await?))
}

/// The machine id `key` names (machine id, host name or Entra DeviceId), or a 404 naming it.
pub async fn resolve(s: &AppState, key: String) -> Result<String, Error> {
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

fn failure_detail(f: &FailureView, snap: Option<&dsreg_proto::Failure>) -> FailureDetail {
    let cause = catalog::cause(&f.cause);
    let entry = f.code.as_deref().and_then(catalog::find);
    FailureDetail {
        phase: f.phase.clone(),
        cause: f.cause.clone(),
        code: f.code.clone(),
        symbol: f.symbol.clone(),
        sub_code: snap.and_then(|s| s.sub_code).map(dsreg_proto::hex),
        source: snap.map(|s| s.source.clone()),
        server_error: snap.and_then(|s| s.server_error.clone()),
        evidence: snap.map(|s| s.evidence.clone()).unwrap_or_default(),
        cause_text: cause.map(|c| c.text.to_string()),
        resolution: cause.map(|c| c.resolution.to_string()),
        code_text: entry.map(|e| e.text.to_string()),
        code_resolution: entry.map(|e| e.resolution.to_string()),
    }
}

/// The drill-down of the device `key` names: one read transaction for every part of it.
pub async fn device_document(s: &AppState, key: String) -> Result<DeviceDocument, Error> {
    let id = resolve(s, key).await?;
    let cutoff = s.stale_cutoff();
    let id2 = id.clone();
    let (d, parts) = s
        .store
        .read(move |c| {
            let tx = c.unchecked_transaction()?;
            let d = read::device(&tx, &id2, cutoff, RECENT)?;
            let parts = merge::parts(&tx, &id2)?;
            tx.finish()?;
            Ok((d, parts))
        })
        .await?;
    let d = d.ok_or_else(|| Error::NotFound(format!("device {:?} disappeared", shown(&id))))?;
    let view = merge::view(&parts);
    let sources = parts
        .iter()
        .map(|p| {
            let context = match p.context.label() {
                "" => "unspecified",
                l => l,
            };
            let info = SourceInfo {
                context: context.to_string(),
                collected_at: p.collected_at.map(read::rfc3339),
                received_at: read::rfc3339(p.received_at),
                report_id: p.report_id.clone(),
            };
            (p.part.label().to_string(), info)
        })
        .collect();
    let a = &view.agent;
    let agent = AgentHealth {
        from: parts.first().map(|p| p.part.label().to_string()),
        version: a.version.clone(),
        spool_depth: a.spool_depth,
        spool_dropped: a.spool_dropped,
        last_delivery: a.last_delivery.map(read::rfc3339),
        parse_warnings: a.parse_warnings,
    };
    let DeviceSummary {
        machine_id,
        hostname,
        ad_domain,
        entra_device_id,
        join_type,
        failure,
        failing_since,
        first_seen,
        last_seen,
        stale,
    } = d.summary;
    Ok(DeviceDocument {
        machine_id,
        hostname,
        ad_domain,
        entra_device_id,
        join_type,
        failure: failure
            .as_ref()
            .map(|f| failure_detail(f, d.snapshot.failure.as_ref())),
        failing_since,
        first_seen,
        last_seen,
        stale,
        agent_version: d.agent_version,
        os_build: d.os_build,
        execution_context: d.execution_context,
        collected_at: d.collected_at,
        attempts: d
            .snapshot
            .attempts
            .iter()
            .take(RECENT_ATTEMPTS)
            .cloned()
            .collect(),
        targeted: Targeted::of(d.snapshot.not_targeted.as_deref()),
        cloud: None,
        snapshot: d.snapshot,
        events: d.events,
        transitions: d.history,
        sources,
        provenance: view
            .provenance
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        agent,
    })
}

/// `GET /api/v1/devices/{key}`: the drill-down document.
#[utoipa::path(
    get,
    path = "/api/v1/devices/{key}",
    params(("key" = String, Path, example = "PC-0001", description = "Machine id, host name (case-insensitive) or Entra device id.")),
    responses(
        (status = 200, description = "OK", body = DeviceDocument),
        (status = 404, description = "No device has that key.", body = ErrorBody),
        (status = 400, description = "A bad parameter, named in the message.", body = ErrorBody),
        (status = 401, description = "No reader token, or a wrong one.", body = ErrorBody),
        (status = 503, description = "The store is unavailable (shutting down, disk full).", body = ErrorBody),
    ),
)]
pub async fn device(
    State(s): State<AppState>,
    graph: Option<axum::Extension<std::sync::Arc<crate::graph::GraphState>>>,
    key: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<DeviceDocument>, Error> {
    let Path(key) = key.map_err(|e| rejected("device key", e))?;
    let mut doc = device_document(&s, key).await?;
    doc.cloud =
        super::reconcile::device_cloud(graph.as_deref().map(|g| g.as_ref()), &doc.machine_id);
    Ok(axum::Json(doc))
}

/// `GET /api/v1/devices/{key}/attempts`: the device's join attempts, newest first (time,
/// phase, code, symbol, cause with its text, server error type and message, source records).
#[utoipa::path(
    get,
    path = "/api/v1/devices/{key}/attempts",
    params(("key" = String, Path, example = "PC-0001", description = "Machine id, host name (case-insensitive) or Entra device id.")),
    responses(
        (status = 200, description = "OK", body = DeviceAttempts),
        (status = 404, description = "No device has that key.", body = ErrorBody),
        (status = 400, description = "A bad parameter, named in the message.", body = ErrorBody),
        (status = 401, description = "No reader token, or a wrong one.", body = ErrorBody),
        (status = 503, description = "The store is unavailable (shutting down, disk full).", body = ErrorBody),
    ),
)]
pub async fn device_attempts(
    State(s): State<AppState>,
    key: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<DeviceAttempts>, Error> {
    let Path(key) = key.map_err(|e| rejected("device key", e))?;
    let id = resolve(&s, key).await?;
    let cutoff = s.stale_cutoff();
    let id2 = id.clone();
    let d = s
        .store
        .read(move |c| read::device(c, &id2, cutoff, 0))
        .await?
        .ok_or_else(|| Error::NotFound(format!("device {:?} disappeared", shown(&id))))?;
    let attempts = d
        .snapshot
        .attempts
        .into_iter()
        .map(|attempt| {
            let cause = catalog::cause(&attempt.cause);
            AttemptDetail {
                cause_text: cause.map(|c| c.text.to_owned()),
                resolution: cause.map(|c| c.resolution.to_owned()),
                attempt,
            }
        })
        .collect();
    Ok(axum::Json(DeviceAttempts {
        machine_id: id,
        attempts,
    }))
}

/// `GET /api/v1/devices/{key}/history`: every kept history row.
#[utoipa::path(
    get,
    path = "/api/v1/devices/{key}/history",
    params(("key" = String, Path, example = "PC-0001", description = "Machine id, host name (case-insensitive) or Entra device id.")),
    responses(
        (status = 200, description = "OK", body = DeviceHistory),
        (status = 404, description = "No device has that key.", body = ErrorBody),
        (status = 400, description = "A bad parameter, named in the message.", body = ErrorBody),
        (status = 401, description = "No reader token, or a wrong one.", body = ErrorBody),
        (status = 503, description = "The store is unavailable (shutting down, disk full).", body = ErrorBody),
    ),
)]
pub async fn device_history(
    State(s): State<AppState>,
    key: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<DeviceHistory>, Error> {
    let Path(key) = key.map_err(|e| rejected("device key", e))?;
    let id = resolve(&s, key).await?;
    let id2 = id.clone();
    let history = s
        .store
        .read(move |c| read::history(c, &id2, usize::MAX >> 1))
        .await?;
    Ok(axum::Json(DeviceHistory {
        machine_id: id,
        history,
    }))
}
