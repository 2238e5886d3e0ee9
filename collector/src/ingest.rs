//! The gRPC ingest service: `dsreg.v1.Telemetry/Report`.
//!
//! validate (whole batch, see [`crate::validate`]) → queue to the writer (full queue →
//! UNAVAILABLE with `retry-after-ms`) → wait for COMMIT → ack. The ack is never sent before
//! the writer's transaction committed, so an acknowledged report survives `kill -9`.

use std::sync::Arc;
use std::time::Instant;

use dsreg_proto::v1::telemetry_server::Telemetry;
use dsreg_proto::v1::{ReportAck, ReportBatch, ReportStatus};
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::store::Store;
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
        if let Err(e) = validate::batch(&batch, self.max_batch) {
            // A refused batch stores nothing; its reports count as rejected.
            self.metrics.reports(0, 0, n as u64);
            return Err(Error::InvalidArgument(e.0));
        }
        if n == 0 {
            return Ok(ReportAck::default());
        }
        let outcome = self.store.submit(batch.reports).await?;
        let (mut accepted, mut duplicate, mut rejected) = (0, 0, 0);
        for r in &outcome.results {
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
        Ok(ReportAck {
            results: outcome.results,
        })
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
