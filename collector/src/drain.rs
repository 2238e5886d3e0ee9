//! The shutdown drain: count in-flight gRPC calls so that shutdown waits for THEM, not for
//! every open connection.
//!
//! hyper's graceful shutdown waits until every connection has closed, and a connection that
//! never finishes its HTTP/2 handshake (or its HTTP/1 request head) never closes by itself:
//! one idle client would hold every restart for the whole [`crate::DRAIN_GRACE`]. So
//! [`InFlight`] is a tower layer on the gRPC server counting calls in progress, and
//! [`InFlight::drained`] resolves once that count is zero (then lingers briefly so answers
//! already produced reach the wire). In-flight ingest calls — the ones whose ack promises a
//! commit — are therefore always waited for (up to the grace); idle connections are not.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Notify;

/// After the last in-flight call finished: how long answers may still be written out.
pub const LINGER: Duration = Duration::from_millis(300);

/// Counter of calls in progress; a tower [`tower::Layer`].
#[derive(Clone, Default)]
pub struct InFlight(Arc<Inner>);

#[derive(Default)]
struct Inner {
    calls: AtomicUsize,
    idle: Notify,
}

struct Guard(Arc<Inner>);

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.calls.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl InFlight {
    /// Calls in progress now.
    pub fn count(&self) -> usize {
        self.0.calls.load(Ordering::SeqCst)
    }

    fn enter(&self) -> Guard {
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        Guard(self.0.clone())
    }

    async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Resolves once no call is in flight (checked again after [`LINGER`], so a call that
    /// started meanwhile is waited for too), or after `grace`. True when drained.
    pub async fn drained(&self, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            if tokio::time::timeout_at(deadline, self.idle())
                .await
                .is_err()
            {
                return false;
            }
            tokio::time::sleep(LINGER).await;
            if self.count() == 0 {
                return true;
            }
        }
    }
}

impl<S> tower::Layer<S> for InFlight {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Tracked<S> {
        Tracked {
            inner,
            flight: self.clone(),
        }
    }
}

/// A service whose calls are counted by [`InFlight`].
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    flight: InFlight,
}

impl<S, R> tower::Service<R> for Tracked<S>
where
    S: tower::Service<R>,
    S::Future: Send + 'static,
    S::Response: 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let guard = self.flight.enter();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let out = fut.await;
            drop(guard);
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drained_waits_for_calls_not_for_ever() {
        let f = InFlight::default();
        assert!(f.drained(Duration::from_secs(5)).await, "nothing in flight");
        let g = f.enter();
        assert_eq!(f.count(), 1);
        assert!(!f.drained(Duration::from_millis(50)).await, "a stuck call");
        let f2 = f.clone();
        let waiter = tokio::spawn(async move { f2.drained(Duration::from_secs(60)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(g);
        assert!(waiter.await.unwrap());
        assert_eq!(f.count(), 0);
    }
}
