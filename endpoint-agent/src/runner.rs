//! The service loop behind `dsreg-agent run`, and the one-shot cycle behind `send`.
//!
//! One cycle: collect (`dsregcmd /status` + registration events since the bookmark) → build the
//! report → spool it if the state changed or a heartbeat is due → take the user reports handed
//! in through the inbox ([`crate::inbox`]) → drain the spool to the collector. The loop runs a cycle at start, then every interval with ±jitter; between
//! cycles, a failed delivery is retried on an exponential backoff with full jitter (honouring
//! the collector's retry hint), never more often than the backoff allows.
//!
//! The Windows calls sit behind [`Source`] ([`crate::source`]); when the loop wakes is
//! [`Schedule`] ([`crate::schedule`]), kept clock-free so it is tested in virtual time.
//!
//! State that must survive restarts (the event bookmark, the last state fingerprint, when the
//! last report was queued) lives in the spool's ledger ([`Spool::update_state`]), saved
//! durably with the spool's own counters.

use std::time::Duration;

use dsreg_proto::v1::AgentHealth;
use dsreg_proto::{EventRecord, ExecutionContext, Report, Snapshot};
use prost::Message;
use time::OffsetDateTime;

use crate::deliver::{self, DeliveryConfig, DeliveryError, DeliveryOutcome};
use crate::identity::Identity;
use crate::inbox::{self, InboxConfig, Ingested};
use crate::report::{self, Capture};
use crate::spool::{Spool, SpoolError};

pub use crate::schedule::{Jitter, Schedule, jittered};
pub use crate::source::{CommandSource, FileSource, Source, SourceError};

/// A stable fingerprint of what a snapshot says, ignoring fields that change on every run
/// (client time, PRT renewal times), so that only real changes go on the wire.
pub fn fingerprint(snapshot: &Snapshot) -> u64 {
    let mut s = snapshot.clone();
    if let Some(d) = s.diagnostics.as_mut() {
        d.client_time = None;
    }
    if let Some(j) = s.join_config.as_mut() {
        // The join task runs at every logon and on its triggers: its run time alone is no
        // change (its result is).
        j.task_last_run_time = None;
    }
    if let Some(sso) = s.sso_state.as_mut() {
        sso.azure_ad_prt_update_time = None;
        sso.azure_ad_prt_expiry_time = None;
        sso.enterprise_prt_update_time = None;
        sso.enterprise_prt_expiry_time = None;
    }
    // FNV-1a: stable across Rust releases, unlike `DefaultHasher`.
    s.encode_to_vec()
        .iter()
        .fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
        })
}

/// Settings of one collection cycle.
#[derive(Debug, Clone)]
pub struct CycleConfig {
    /// Who this device is.
    pub identity: Identity,
    /// SYSTEM or user.
    pub context: ExecutionContext,
    /// Queue an unchanged snapshot after this long anyway (heartbeat).
    pub heartbeat: Duration,
    /// Queue every collection, changed or not (`send` does).
    pub always_queue: bool,
    /// SYSTEM agent: the user-context handoff directory to ingest before each delivery.
    pub user_inbox: Option<InboxConfig>,
}

/// What one cycle did.
#[derive(Debug)]
pub struct CycleOutcome {
    /// The report queued in this cycle, if any (its id and whether it was a heartbeat).
    pub queued: Option<(String, bool)>,
    /// The delivery result: delivered counts, or why the spool stays.
    pub delivery: Result<DeliveryOutcome, DeliveryError>,
    /// Reports still waiting in the spool.
    pub spool_depth: usize,
    /// Reports dropped by overflow in this cycle.
    pub dropped: usize,
    /// What the user inbox gave this cycle.
    pub ingested: Ingested,
}

/// Why a cycle could not even queue or deliver.
#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    /// Collection failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The spool failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// Parses an event export into records.
fn parse_events(bytes: &[u8]) -> Result<Vec<EventRecord>, SourceError> {
    crate::events::parse_events(bytes)
        .map(|p| p.records)
        .map_err(|e| SourceError::Events(e.to_string()))
}

/// Runs one cycle: collect, maybe queue, then drain the spool.
pub async fn cycle(
    source: &mut impl Source,
    spool: &mut Spool,
    cfg: &CycleConfig,
    delivery: &DeliveryConfig,
    now: OffsetDateTime,
) -> Result<CycleOutcome, CycleError> {
    let state = spool.state().clone();
    let status = source.status().await?;
    let join = source.join_config().await?;
    let events = match source.events(state.event_bookmark).await? {
        Some(bytes) => parse_events(&bytes)?,
        None => Vec::new(),
    };
    let new_events: Vec<EventRecord> = events
        .into_iter()
        .filter(|e| state.event_bookmark.is_none_or(|b| e.record_id > b))
        .collect();
    let health = AgentHealth {
        spool_depth: u32::try_from(spool.len()).unwrap_or(u32::MAX),
        spool_dropped: spool.state().dropped,
        last_delivery: spool
            .state()
            .last_delivery_unix
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
            .map(report::timestamp),
        parse_warnings: 0,
    };
    let mut rep: Report = report::build(
        Capture {
            status: &status,
            events: &new_events,
            join_config: join.as_ref(),
        },
        &cfg.identity,
        cfg.context,
        now,
        health,
    );
    let fp = rep.snapshot.as_deref().map(fingerprint);
    let changed = fp != state.last_fingerprint || !new_events.is_empty();
    let heartbeat_due = state
        .last_queued_unix
        .is_none_or(|t| now.unix_timestamp() - t >= cfg.heartbeat.as_secs() as i64);
    let mut queued = None;
    let mut dropped = 0;
    if cfg.always_queue || changed || heartbeat_due {
        rep.heartbeat = !changed;
        dropped = spool.push(&rep)?;
        queued = Some((rep.report_id.clone(), rep.heartbeat));
        let bookmark = new_events.iter().map(|e| e.record_id).max();
        let saved = spool.update_state(|s| {
            s.last_fingerprint = fp;
            s.last_queued_unix = Some(now.unix_timestamp());
            if let Some(max) = bookmark {
                s.event_bookmark = Some(max);
            }
        });
        if let Err(e) = saved {
            tracing::warn!(error = %e, "could not save agent state; the next cycle may resend");
        }
    }
    let mut ingested = Ingested::default();
    if let Some(inbox_cfg) = &cfg.user_inbox {
        // A broken inbox must not stop the device's own reports: log and deliver anyway.
        match inbox::ingest(inbox_cfg, spool, &cfg.identity.machine_id) {
            Ok(i) => {
                if i.accepted + i.rejected > 0 {
                    tracing::info!(
                        accepted = i.accepted,
                        rejected = i.rejected,
                        left = i.left,
                        "user inbox ingested"
                    );
                }
                ingested = i;
            }
            Err(e) => tracing::warn!(error = %e, "user inbox not ingested this cycle"),
        }
    }
    let delivery = deliver_spool(spool, delivery).await;
    Ok(CycleOutcome {
        queued,
        delivery,
        spool_depth: spool.len(),
        dropped,
        ingested,
    })
}

/// Connects and drains the spool (nothing to do when it is empty).
pub async fn deliver_spool(
    spool: &mut Spool,
    cfg: &DeliveryConfig,
) -> Result<DeliveryOutcome, DeliveryError> {
    if spool.is_empty() {
        return Ok(DeliveryOutcome::default());
    }
    let Some(enrollment) = &cfg.enrollment else {
        let mut client = deliver::connect(cfg).await?;
        return deliver::drain(spool, &mut client, cfg, || {
            OffsetDateTime::now_utc().unix_timestamp()
        })
        .await;
    };
    // With a device token: enroll on first contact, and once more when the collector no
    // longer knows the token (revoked, or its database restored from an older backup).
    let mut retried = false;
    loop {
        let had_token = enrollment.has_token();
        let device = enrollment.authorized(cfg).await?;
        let mut client = deliver::connect(&device).await?;
        let result = deliver::drain(spool, &mut client, &device, || {
            OffsetDateTime::now_utc().unix_timestamp()
        })
        .await;
        match result {
            Err(DeliveryError::TokenRefused {
                code: tonic::Code::Unauthenticated,
                ..
            }) if had_token && !retried => {
                tracing::warn!("the collector refused the device token; enrolling again");
                enrollment.forget();
                retried = true;
            }
            other => return other,
        }
    }
}

/// Settings of the service loop.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// What each cycle does.
    pub cycle: CycleConfig,
    /// Time between collections (default 60 min).
    pub interval: Duration,
    /// Fraction of the interval used as ± jitter (default 0.1), so a fleet that booted
    /// together does not report together.
    pub jitter: f64,
    /// First retry delay after a failed delivery (doubles up to `retry_cap`).
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_cap: Duration,
}

/// The service loop: a cycle at start, then every jittered interval; failed deliveries are
/// retried on the backoff schedule in between. Returns as soon as `shutdown` completes, also
/// in the middle of a cycle (a running `dsregcmd` is killed, a delivery abandoned): the spool
/// is durable after every push and a push is never interrupted (no await inside it), and a
/// report whose delivery was cut off stays spooled and is answered `DUPLICATE` if the
/// collector had already stored it. So there is nothing to flush, and a service stop is quick.
pub async fn run(
    source: &mut impl Source,
    spool: &mut Spool,
    cfg: &RunConfig,
    delivery: &DeliveryConfig,
    shutdown: impl Future<Output = ()>,
) {
    let mut rng = Jitter::from_entropy();
    let mut schedule = Schedule::start(tokio::time::Instant::now());
    tokio::pin!(shutdown);
    loop {
        let wake = schedule.wake();
        tokio::select! {
            biased;
            () = &mut shutdown => {
                tracing::info!(spool_depth = spool.len(), "shutting down; spooled reports stay on disk");
                return;
            }
            () = tokio::time::sleep_until(wake) => {}
        }
        let now = tokio::time::Instant::now();
        let collect = schedule.collect_due(now, cfg, rng.unit());
        let work = async {
            if !collect {
                return deliver_spool(spool, delivery).await;
            }
            match cycle(
                source,
                spool,
                &cfg.cycle,
                delivery,
                OffsetDateTime::now_utc(),
            )
            .await
            {
                Ok(out) => {
                    if let Some((id, heartbeat)) = &out.queued {
                        tracing::debug!(report_id = %id, heartbeat, "queued");
                    }
                    if out.dropped > 0 {
                        tracing::warn!(dropped = out.dropped, "spool full: older reports dropped");
                    }
                    out.delivery
                }
                Err(e) => {
                    tracing::warn!(error = %e, "collection failed; delivering what is spooled");
                    deliver_spool(spool, delivery).await
                }
            }
        };
        let delivery_result = tokio::select! {
            biased;
            () = &mut shutdown => {
                tracing::info!("shutting down during a cycle; spooled reports stay on disk");
                return;
            }
            result = work => result,
        };
        match delivery_result {
            Ok(d) => {
                if d.accepted + d.duplicates + d.rejected > 0 {
                    tracing::info!(
                        accepted = d.accepted,
                        duplicates = d.duplicates,
                        rejected = d.rejected,
                        "delivered"
                    );
                }
                schedule.delivered(Ok(()), tokio::time::Instant::now(), cfg, 0.0);
            }
            Err(e) => {
                let hint = match &e {
                    DeliveryError::Unreachable { retry_after, .. } => *retry_after,
                    _ => None,
                };
                let delay =
                    schedule.delivered(Err(hint), tokio::time::Instant::now(), cfg, rng.unit());
                tracing::warn!(error = %e, retry_in = ?delay, spool_depth = spool.len(), "delivery failed; reports stay spooled");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_ignores_volatile_times_only() {
        let a = crate::dsregcmd::parse(include_bytes!(
            "../testdata/dsregcmd/entra-joined-healthy-prt-cloud-tgt.txt"
        ));
        let mut b = a.clone();
        if let Some(s) = b.sso_state.as_mut() {
            s.azure_ad_prt_update_time = Some("2030-01-01T00:00:00Z".into());
        }
        assert_eq!(fingerprint(&a), fingerprint(&b));
        if let Some(s) = b.sso_state.as_mut() {
            s.azure_ad_prt = Some(false);
        }
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }

    /// The loop's memory lives in the spool's ledger: an unchanged state is not queued again,
    /// also after the spool is reopened (a restart).
    #[test]
    fn unchanged_state_is_not_queued_again_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let capture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/dsregcmd/entra-joined-healthy-prt-cloud-tgt.txt");
        let mut source = FileSource {
            status_file: capture,
            events_file: None,
            join: crate::joinconfig::Files::default(),
        };
        let cfg = CycleConfig {
            identity: Identity {
                machine_id: "m".into(),
                ..Identity::default()
            },
            context: ExecutionContext::System,
            heartbeat: Duration::from_secs(6 * 3600),
            always_queue: false,
            user_inbox: None,
        };
        // Nothing listens on port 1: delivery fails at once and the reports stay spooled.
        let delivery = DeliveryConfig::new("http://127.0.0.1:1");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let now = OffsetDateTime::now_utc();
        let mut queued = Vec::new();
        for _ in 0..2 {
            let mut spool = Spool::open(crate::spool::SpoolConfig::new(dir.path())).unwrap();
            for _ in 0..2 {
                let out = rt
                    .block_on(cycle(&mut source, &mut spool, &cfg, &delivery, now))
                    .unwrap();
                queued.push(out.queued.is_some());
            }
            assert!(spool.state().last_fingerprint.is_some());
        }
        assert_eq!(queued, [true, false, false, false]);
        assert!(!dir.path().join("agent-state.json").exists());
    }
}
