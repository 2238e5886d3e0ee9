//! The gRPC ingest service: `dsreg.v1.Telemetry/Report`.
//!
//! validate (see [`crate::validate`]: a batch over the limit → INVALID_ARGUMENT, a bad report →
//! REJECTED in place) → queue the valid reports to the writer (full queue → UNAVAILABLE with
//! `retry-after-ms`) → wait for COMMIT → ack, one result per report in batch order. The ack is never sent before
//! the writer's transaction committed, so an acknowledged report survives `kill -9`.
//!
//! Credentials ([`crate::enroll`]): a report sent with a device token for another machine id
//! is answered REJECTED in place (the rest of the batch is stored); the enroll secret is
//! PERMISSION_DENIED on `Report`. `Enroll` needs the enroll secret and issues a device token.

use std::sync::Arc;
use std::time::Instant;

use dsreg_proto::v1::telemetry_server::Telemetry;
use dsreg_proto::v1::{
    EnrollRequest, EnrollResponse, ReportAck, ReportBatch, ReportResult, ReportStatus,
};
use tonic::{Request, Response, Status};

use crate::enroll::{Credential, DeviceTokens};
use crate::error::Error;
use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::store::{BatchOutcome, Store};
use crate::validate;

/// The Telemetry service implementation.
#[derive(Clone)]
pub struct Ingest {
    store: Store,
    fleet: Arc<Fleet>,
    metrics: Arc<Metrics>,
    max_batch: usize,
    devices: Option<Arc<DeviceTokens>>,
    limits: Option<Arc<ClientLimits>>,
}

/// The per-client rate limits ([`crate::ratelimit`]).
#[derive(Debug)]
pub struct ClientLimits {
    /// Per device token (machine id).
    pub device: RateLimiter,
    /// Per peer address, for calls without a token; `None`: unlimited.
    pub open: Option<RateLimiter>,
    /// Per peer address, for `Enroll`.
    pub enroll: RateLimiter,
}

impl ClientLimits {
    /// Checks one call made with `credential` from `peer`.
    pub fn check(
        &self,
        credential: &Credential,
        peer: Option<std::net::IpAddr>,
    ) -> Result<(), Error> {
        let peer = peer.map_or_else(|| "unknown".to_string(), |p| p.to_string());
        let (what, verdict) = match credential {
            Credential::Device(m) => ("device token", self.device.check(m)),
            Credential::Open => match &self.open {
                Some(l) => ("peer address", l.check(&peer)),
                None => return Ok(()),
            },
            Credential::Enroll => ("peer address", self.enroll.check(&peer)),
            Credential::Fleet => return Ok(()),
        };
        verdict.map_err(|wait| Error::RateLimited {
            what,
            retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1),
        })
    }
}

impl Ingest {
    /// A service writing to `store`.
    pub fn new(store: Store, fleet: Arc<Fleet>, metrics: Arc<Metrics>, max_batch: usize) -> Ingest {
        Ingest {
            store,
            fleet,
            metrics,
            max_batch,
            devices: None,
            limits: None,
        }
    }

    /// Turns the per-client rate limits on.
    pub fn with_limits(mut self, limits: Arc<ClientLimits>) -> Ingest {
        self.limits = Some(limits);
        self
    }

    fn rate_limit(
        &self,
        credential: &Credential,
        peer: Option<std::net::SocketAddr>,
    ) -> Result<(), Status> {
        match &self.limits {
            Some(l) => l.check(credential, peer.map(|p| p.ip())).map_err(|e| {
                tracing::debug!(error = %e, ?peer, "call over its rate limit");
                self.answer(e)
            }),
            None => Ok(()),
        }
    }

    /// The status a failed Telemetry call answers; a call refused for load or rate is counted
    /// in `dsreg_ingest_refused_total` here, the one place every refusal passes.
    fn answer(&self, e: Error) -> Status {
        if let Some(reason) = e.refusal_reason() {
            self.metrics.refused(reason);
        }
        Status::from(e)
    }

    /// Turns enrollment on: `Enroll` issues tokens into `devices`.
    pub fn with_device_tokens(mut self, devices: Arc<DeviceTokens>) -> Ingest {
        self.devices = Some(devices);
        self
    }

    /// [`Ingest::ingest`] for a call made with `credential`: reports a device token may not
    /// send are REJECTED in place; devices are counted by credential kind.
    pub async fn ingest_as(
        &self,
        batch: ReportBatch,
        credential: &Credential,
    ) -> Result<ReportAck, Error> {
        if *credential == Credential::Enroll {
            return Err(Error::PermissionDenied(
                "the enroll secret only enrolls: report with the device token Enroll returned"
                    .into(),
            ));
        }
        let bound = match credential {
            Credential::Device(m) if batch.reports.len() <= self.max_batch => Some(m.as_str()),
            _ => None,
        };
        let foreign = |r: &dsreg_proto::v1::Report| bound.is_some_and(|m| r.machine_id != m);
        let ack = if batch.reports.iter().any(foreign) {
            let mut slots = Vec::with_capacity(batch.reports.len());
            let mut own = Vec::new();
            for r in batch.reports {
                if foreign(&r) {
                    tracing::warn!(
                        machine_id = %r.machine_id,
                        token_for = bound.unwrap_or_default(),
                        "report for another machine id refused: device token mismatch"
                    );
                    slots.push(Some(ReportResult {
                        report_id: r.report_id,
                        status: ReportStatus::Rejected as i32,
                        message: "machine_id: the device token is bound to another machine id"
                            .into(),
                    }));
                } else {
                    slots.push(None);
                    own.push(r);
                }
            }
            let refused = slots.iter().filter(|s| s.is_some()).count() as u64;
            self.metrics.reports(0, 0, refused);
            let stored = if own.is_empty() {
                Vec::new()
            } else {
                let ids: Vec<String> = own.iter().map(|r| r.machine_id.clone()).collect();
                let ack = self.ingest(ReportBatch { reports: own }).await?;
                self.seen(&ids, &ack, credential);
                ack.results
            };
            let mut stored = stored.into_iter();
            ReportAck {
                results: slots
                    .into_iter()
                    .filter_map(|s| s.or_else(|| stored.next()))
                    .collect(),
            }
        } else {
            let ids: Vec<String> = batch.reports.iter().map(|r| r.machine_id.clone()).collect();
            let ack = self.ingest(batch).await?;
            self.seen(&ids, &ack, credential);
            ack
        };
        Ok(ack)
    }

    /// Counts the devices of the stored reports of `ack` by `credential`.
    fn seen(&self, machine_ids: &[String], ack: &ReportAck, credential: &Credential) {
        if let Some(d) = &self.devices {
            for (m, r) in machine_ids.iter().zip(&ack.results) {
                if r.status != ReportStatus::Rejected as i32 {
                    d.seen(m, credential);
                }
            }
        }
    }

    /// Issues a device token for the request's machine id (the call's credential must be the
    /// enroll secret).
    pub async fn enroll_as(
        &self,
        req: EnrollRequest,
        credential: &Credential,
    ) -> Result<EnrollResponse, Error> {
        let Some(devices) = self.devices.clone() else {
            return Err(Error::FailedPrecondition(
                "enrollment is off on this collector (no --enroll-secret-file)".into(),
            ));
        };
        if *credential != Credential::Enroll {
            return Err(Error::PermissionDenied(
                "enroll needs the enroll secret as `authorization: Bearer`".into(),
            ));
        }
        validate::enroll(&req).map_err(|e| Error::InvalidArgument(e.0))?;
        let token =
            tokio::task::spawn_blocking(move || devices.enroll(&req.machine_id, &req.hostname))
                .await
                .map_err(|e| Error::Internal(e.to_string()))?
                .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(EnrollResponse {
            device_token: token,
        })
    }

    /// Validates, stores and acknowledges one batch (the transport-independent core).
    pub async fn ingest(&self, batch: ReportBatch) -> Result<ReportAck, Error> {
        let started = Instant::now();
        let n = batch.reports.len();
        let verdicts = match validate::batch(&batch, self.max_batch) {
            Ok(v) => v,
            Err(e) => {
                // A refused batch stores nothing; its reports count as rejected.
                self.metrics.reports(0, 0, n as u64);
                return Err(Error::InvalidArgument(e.0));
            }
        };
        // Invalid reports are answered REJECTED in place; the valid ones go to the store.
        let mut slots: Vec<Option<ReportResult>> = Vec::with_capacity(n);
        let mut valid = Vec::with_capacity(n);
        for (r, verdict) in batch.reports.into_iter().zip(verdicts) {
            match verdict {
                Ok(()) => {
                    slots.push(None);
                    valid.push(r);
                }
                Err(e) => {
                    tracing::debug!(machine_id = %r.machine_id, error = %e, "report rejected");
                    slots.push(Some(ReportResult {
                        report_id: r.report_id,
                        status: ReportStatus::Rejected as i32,
                        message: e.0,
                    }));
                }
            }
        }
        let outcome = if valid.is_empty() {
            BatchOutcome::default()
        } else {
            self.store.submit(valid).await?
        };
        let mut stored = outcome.results.into_iter();
        let results: Vec<ReportResult> = slots
            .into_iter()
            .filter_map(|slot| slot.or_else(|| stored.next()))
            .collect();
        let (mut accepted, mut duplicate, mut rejected) = (0, 0, 0);
        for r in &results {
            match ReportStatus::try_from(r.status) {
                Ok(ReportStatus::Accepted) => accepted += 1,
                Ok(ReportStatus::Duplicate) => duplicate += 1,
                _ => rejected += 1,
            }
        }
        self.metrics.reports(accepted, duplicate, rejected);
        self.metrics
            .registration_failures(&self.fleet, &outcome.new_attempts);
        self.metrics.batch_duration(started.elapsed());
        tracing::debug!(
            reports = n,
            accepted,
            duplicate,
            rejected,
            "batch committed"
        );
        Ok(ReportAck { results })
    }
}

#[tonic::async_trait]
impl Telemetry for Ingest {
    async fn report(&self, request: Request<ReportBatch>) -> Result<Response<ReportAck>, Status> {
        let credential = request
            .extensions()
            .get::<Credential>()
            .cloned()
            .unwrap_or(Credential::Open);
        self.rate_limit(&credential, request.remote_addr())?;
        let batch = request.into_inner();
        match self.ingest_as(batch, &credential).await {
            Ok(ack) => Ok(Response::new(ack)),
            Err(e) => {
                tracing::debug!(error = %e, "batch refused");
                Err(self.answer(e))
            }
        }
    }

    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let credential = request
            .extensions()
            .get::<Credential>()
            .cloned()
            .unwrap_or(Credential::Open);
        self.rate_limit(&Credential::Enroll, request.remote_addr())?;
        match self.enroll_as(request.into_inner(), &credential).await {
            Ok(r) => Ok(Response::new(r)),
            Err(e) => {
                tracing::debug!(error = %e, "enroll refused");
                Err(self.answer(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use dsreg_proto::v1::Report;

    use super::*;
    use crate::fleet::FleetCounts;
    use crate::store::StoreOptions;

    fn counted(metrics: &Metrics, reason: &str) -> String {
        let text = metrics.render(&FleetCounts::default());
        let series = format!("dsreg_ingest_refused_total{{reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .unwrap_or("absent")
            .to_string()
    }

    fn batch(from: u64, n: u64) -> ReportBatch {
        ReportBatch {
            reports: (from..from + n)
                .map(|i| Report {
                    report_id: format!("00000000-0000-4000-8000-{i:012}"),
                    machine_id: format!("m-{i}"),
                    hostname: format!("PC-{i}"),
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn a_call_refused_as_busy_is_counted_and_told_when_to_retry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.db");
        let metrics = Arc::new(Metrics::new());
        let fleet = Arc::new(Fleet::new(Duration::from_secs(3600)));
        let opts = StoreOptions {
            queue_depth: 64,
            history_per_device: 5,
            readers: 1,
        };
        let store = Store::open(&path, opts, fleet.clone(), metrics.clone()).unwrap();
        let ingest = Ingest::new(store.clone(), fleet, metrics.clone(), 1000);
        assert_eq!(
            counted(&metrics, "busy"),
            "0",
            "exported before any refusal"
        );
        assert_eq!(counted(&metrics, "rate_limited"), "0");
        // Nothing commits while this holds the write lock, and 10 queued reports already make
        // the writer's time bound: the next call is refused at once.
        let blocker = rusqlite::Connection::open(&path).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        store.assume_cost(crate::store::MAX_QUEUE_WAIT / 10, Duration::ZERO);
        let queued = store.enqueue(batch(1, 11).reports).unwrap();
        let e = ingest
            .report(Request::new(batch(100, 1)))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        assert!(e.metadata().get("retry-after-ms").is_some(), "{e:?}");
        assert_eq!(counted(&metrics, "busy"), "1");
        assert_eq!(counted(&metrics, "rate_limited"), "0");
        // A refused call is not a report result: nothing is counted as rejected.
        let text = metrics.render(&FleetCounts::default());
        assert!(
            text.contains("dsreg_reports_total{result=\"rejected\"} 0"),
            "{text}"
        );
        blocker.execute_batch("COMMIT").unwrap();
        assert_eq!(queued.outcome().await.unwrap().results.len(), 11);
        store.close().await;
    }
}
