//! `/api/v1/devices/{key}`, `/api/v1/devices/{key}/attempts` and
//! `/api/v1/devices/{key}/history`: the drill-down of one device, as typed answers.
//!
//! Invariants: [`device_document`] is the one builder of the drill-down (the API and the web
//! UI both show it), reading the device row, its events, history and stored parts on one
//! read-only connection inside one read transaction, so the parts are consistent with each
//! other. A key resolves by machine id, host name or Entra device id ([`resolve`]). Nothing a
//! device sent is interpreted here: strings pass through as data (the UI escapes them, JSON
//! encodes them).

use std::collections::BTreeMap;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use dsreg_proto::catalog;
use dsreg_proto::v1::{Attempt, EventRecord, Snapshot};
use serde::Serialize;
use utoipa::ToSchema;

use super::devices::RECENT;
use super::openapi::{ErrorBody, ReadErrors};
use super::{AppState, rejected, shown};
use crate::error::Error;
use crate::store::merge;
use crate::store::read::{self, DeviceSummary, FailureView, HistoryRow};

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

/// The `{key}` of a device path, or a 400 naming it.
fn path_key(key: Result<Path<String>, PathRejection>) -> Result<String, Error> {
    key.map(|Path(k)| k).map_err(|e| rejected("device key", e))
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
            let parts = merge::parts(&tx, &id2, None)?;
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
        ReadErrors,
    ),
)]
pub async fn device(
    State(s): State<AppState>,
    graph: Option<axum::Extension<std::sync::Arc<crate::graph::GraphState>>>,
    key: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<DeviceDocument>, Error> {
    let mut doc = device_document(&s, path_key(key)?).await?;
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
        ReadErrors,
    ),
)]
pub async fn device_attempts(
    State(s): State<AppState>,
    key: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<DeviceAttempts>, Error> {
    let id = resolve(&s, path_key(key)?).await?;
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
        ReadErrors,
    ),
)]
pub async fn device_history(
    State(s): State<AppState>,
    key: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<DeviceHistory>, Error> {
    let id = resolve(&s, path_key(key)?).await?;
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
