//! `/api/v1/agents`: fleet agent health — devices per agent version, spool overflow and
//! devices not delivered for a day, each with a few sample devices.
//!
//! Counts and the sample devices come from the in-memory aggregates (versions beyond the cap
//! fold into `other`, as in the metrics); only the sampled devices' rows are read, by key, so
//! the cost does not grow with the fleet. Samples are bounded to [`AGENT_SAMPLES`].

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::openapi::ReadErrors;
use crate::error::Error;
use crate::store::now_ms;
use crate::store::read::{self, AgentSample};

/// Devices listed per agent-health problem.
pub const AGENT_SAMPLES: usize = 20;

/// Devices running one agent version.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VersionCount {
    /// dsreg-agent version (`other` beyond the label cap).
    pub version: String,
    /// Devices.
    pub devices: u64,
}

/// One agent-health problem: how many devices have it and a few of them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AgentProblem {
    /// Devices with the problem.
    pub devices: u64,
    /// Up to [`AGENT_SAMPLES`] of them.
    pub sample: Vec<AgentSample>,
}

/// `/api/v1/agents`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Agents {
    /// All devices.
    pub devices: u64,
    /// Devices per agent version.
    pub versions: Vec<VersionCount>,
    /// Agents that dropped spooled reports.
    pub spool_overflowing: AgentProblem,
    /// Devices with no report received for a day.
    pub not_delivered_1d: AgentProblem,
}

/// Fleet agent health.
pub async fn health(s: &AppState) -> Result<Agents, Error> {
    let now = now_ms();
    let counts = s.fleet.counts(now);
    let day = now.saturating_sub(crate::fleet::NOT_DELIVERED_AFTER.as_millis() as i64);
    // The sample devices come from the aggregates' indexes; only their rows are read.
    let dropped_ids = s.fleet.spool_overflowing_sample(AGENT_SAMPLES);
    let undelivered_ids = s.fleet.seen_before(day, AGENT_SAMPLES);
    let (mut dropped, undelivered) = s
        .store
        .read(move |c| {
            Ok((
                read::agent_rows(c, &dropped_ids)?,
                read::agent_rows(c, &undelivered_ids)?,
            ))
        })
        .await?;
    dropped.sort_by_key(|a| std::cmp::Reverse(a.spool_dropped));
    Ok(Agents {
        devices: counts.total,
        versions: counts
            .agent_versions
            .iter()
            .map(|(v, n)| VersionCount {
                version: v.clone(),
                devices: *n,
            })
            .collect(),
        spool_overflowing: AgentProblem {
            devices: counts.spool_overflowing,
            sample: dropped,
        },
        not_delivered_1d: AgentProblem {
            devices: counts.not_delivered_1d,
            sample: undelivered,
        },
    })
}

/// `GET /api/v1/agents`.
#[utoipa::path(
    get,
    path = "/api/v1/agents",
    responses(
        (status = 200, description = "OK", body = Agents),
        ReadErrors,
    ),
)]
pub async fn agents(State(s): State<AppState>) -> Result<axum::Json<Agents>, Error> {
    Ok(axum::Json(health(&s).await?))
}
