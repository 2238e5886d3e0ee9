//! The gRPC ingest service: `dsreg.v1.Telemetry/Report`.
//!
//! validate (see [`crate::validate`]: a batch over the limit → INVALID_ARGUMENT, a bad report →
//! REJECTED in place) → queue the valid reports to the writer (full queue → UNAVAILABLE with
//! `retry-after-ms`) → wait for COMMIT → ack, one result per report in batch order. The ack is never sent before
//! the writer's transaction committed, so an acknowledged report survives `kill -9`.

use std::sync::Arc;
use std::time::Instant;

use dsreg_proto::v1::telemetry_server::Telemetry;
use dsreg_proto::v1::{ReportAck, ReportBatch, ReportResult, ReportStatus};
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::store::{BatchOutcome, Store};
use crate::validate;

/// The Telemetry service implementation.
#[derive(Clone)]
pub struct Ingest {
    store: Store,
    fleet: Arc<Fleet>,
    metrics: Arc<Metrics>,
    max_batch: usize,
}

impl Ingest {
    /// A service writing to `store`.
    pub fn new(store: Store, fleet: Arc<Fleet>, metrics: Arc<Metrics>, max_batch: usize) -> Ingest {
        Ingest {
            store,
            fleet,
            metrics,
            max_batch,
        }
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
        let batch = request.into_inner();
        match self.ingest(batch).await {
            Ok(ack) => Ok(Response::new(ack)),
            Err(e) => {
                tracing::debug!(error = %e, "batch refused");
                Err(e.into())
            }
        }
    }
}
