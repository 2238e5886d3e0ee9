//! `/api/v1/failures`: the failing fleet grouped by phase, cause, code and symbol, with the
//! catalog's texts and a few recently seen sample devices per group, from the in-memory
//! aggregates (kept on the writer path, `fleet/groups.rs`).

use axum::extract::State;
use dsreg_proto::catalog;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::openapi::ReadErrors;
use crate::error::Error;
use crate::fleet::FailureKey;
use crate::store::read;

/// One failure group.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FailureGroup {
    /// Phase label.
    pub phase: String,
    /// Cause id.
    pub cause: String,
    /// `0x%08x` (`other` for unknown codes beyond the label cap, as in the metrics), absent
    /// when the failures had no code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Catalog symbol, `""` when unknown.
    pub symbol: String,
    /// Devices in the group.
    pub devices: u64,
    /// Earliest `failing_since` in the group.
    pub first_seen: Option<String>,
    /// Latest `last_seen` in the group.
    pub last_seen: Option<String>,
    /// What the cause means (null outside the catalog).
    pub cause_text: Option<String>,
    /// What to do about it.
    pub resolution: Option<String>,
    /// Up to five most recently seen devices: host name, or machine id when it has none.
    pub sample_devices: Vec<String>,
    /// The trend: devices whose failure of this group began in the last 24 hours (counted
    /// when they entered it; a device that left since still counts).
    pub entered_24h: u64,
    /// Devices that entered the group in the 24 hours before that.
    pub entered_previous_24h: u64,
}

/// `/api/v1/failures`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Failures {
    /// The groups, largest first.
    pub groups: Vec<FailureGroup>,
}

/// The failure groups with the catalog's texts, largest first. Read from the in-memory
/// aggregates: the cost depends on the number of groups, not on the number of devices.
pub async fn groups(s: &AppState) -> Result<Failures, Error> {
    let groups = s
        .fleet
        .failure_groups()
        .into_iter()
        .map(|g| {
            let FailureKey {
                phase,
                cause,
                code,
                symbol,
            } = g.key;
            let doc = catalog::cause(&cause);
            FailureGroup {
                cause_text: doc.map(|c| c.text.to_string()),
                resolution: doc.map(|c| c.resolution.to_string()),
                phase,
                cause,
                code: (!code.is_empty()).then_some(code),
                symbol,
                devices: g.devices,
                first_seen: g.first_seen.map(read::rfc3339),
                last_seen: g.last_seen.map(read::rfc3339),
                sample_devices: g.sample_devices,
                entered_24h: g.entered_24h,
                entered_previous_24h: g.entered_previous_24h,
            }
        })
        .collect();
    Ok(Failures { groups })
}

/// `GET /api/v1/failures`.
#[utoipa::path(
    get,
    path = "/api/v1/failures",
    responses(
        (status = 200, description = "OK", body = Failures),
        ReadErrors,
    ),
)]
pub async fn failures(State(s): State<AppState>) -> Result<axum::Json<Failures>, Error> {
    Ok(axum::Json(groups(&s).await?))
}
