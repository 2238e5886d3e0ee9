//! When the service loop wakes: the [`Schedule`] of collections and delivery retries, and the
//! jitter that spreads a fleet's reports.
//!
//! Decided without a clock, so it is tested in virtual time: `T` is `tokio::time::Instant` in
//! [`crate::runner::run`] and any ordered type that adds a [`Duration`] in tests. Invariants:
//! a retry never delays the next collection; the backoff is full-jitter exponential, capped,
//! and never shorter than the collector's retry hint.

use std::time::Duration;

use crate::deliver;
use crate::runner::RunConfig;

/// A small, seedable uniform generator for jitter (no dependency, and testable).
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// Seeds from the clock and the process id, so devices differ.
    pub fn from_entropy() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Jitter(t ^ (u64::from(std::process::id()) << 32) | 1)
    }

    /// A uniform number in `[0, 1)` (xorshift64*).
    pub fn unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545F4914F6CDD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `interval` moved by up to ± `fraction` of itself.
pub fn jittered(interval: Duration, fraction: f64, unit: f64) -> Duration {
    let f = fraction.clamp(0.0, 1.0);
    interval.mul_f64(1.0 - f + 2.0 * f * unit.clamp(0.0, 1.0))
}

/// The loop's deadlines, decided without a clock so they can be tested in virtual time: `T` is
/// `tokio::time::Instant` in [`run`] and anything ordered that adds a [`Duration`] in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule<T> {
    /// When the next collection is due.
    pub next_collect: T,
    /// When to retry a failed delivery, if one failed.
    pub next_retry: Option<T>,
    /// Deliveries failed in a row (the backoff exponent).
    pub attempt: u32,
}

impl<T: Copy + Ord + std::ops::Add<Duration, Output = T>> Schedule<T> {
    /// At start: collect now, nothing to retry.
    pub fn start(now: T) -> Self {
        Schedule {
            next_collect: now,
            next_retry: None,
            attempt: 0,
        }
    }

    /// When the loop must wake: the earlier of the next collection and the next retry.
    pub fn wake(&self) -> T {
        self.next_retry
            .map_or(self.next_collect, |r| r.min(self.next_collect))
    }

    /// Whether a wake-up at `now` collects (else it only retries delivery). A collection
    /// also moves the next one a jittered interval ahead (`unit` in `[0, 1)`).
    pub fn collect_due(&mut self, now: T, cfg: &RunConfig, unit: f64) -> bool {
        if now < self.next_collect {
            return false;
        }
        self.next_collect = now + jittered(cfg.interval, cfg.jitter, unit);
        true
    }

    /// After a delivery at `now`: success clears the retry; failure (`Err(retry hint)`)
    /// schedules the next retry on the backoff and returns its delay.
    pub fn delivered(
        &mut self,
        result: Result<(), Option<Duration>>,
        now: T,
        cfg: &RunConfig,
        unit: f64,
    ) -> Option<Duration> {
        match result {
            Ok(()) => {
                self.attempt = 0;
                self.next_retry = None;
                None
            }
            Err(hint) => {
                let delay =
                    deliver::backoff(self.attempt, cfg.retry_base, cfg.retry_cap, hint, unit);
                self.attempt = self.attempt.saturating_add(1);
                self.next_retry = Some(now + delay);
                Some(delay)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::runner::CycleConfig;
    use dsreg_proto::ExecutionContext;

    fn run_config(interval_s: u64) -> RunConfig {
        RunConfig {
            cycle: CycleConfig {
                identity: Identity::default(),
                context: ExecutionContext::System,
                heartbeat: Duration::from_secs(6 * 3600),
                always_queue: false,
                user_inbox: None,
            },
            interval: Duration::from_secs(interval_s),
            jitter: 0.0,
            retry_base: Duration::from_secs(30),
            retry_cap: Duration::from_secs(interval_s),
        }
    }

    /// Virtual time: a wake-up is just "now = schedule.wake()"; no sleeping.
    #[test]
    fn failed_deliveries_retry_on_the_backoff_between_collections() {
        let cfg = run_config(3600);
        let secs = Duration::from_secs;
        let t0 = Duration::ZERO;
        let mut s = Schedule::start(t0);
        assert_eq!(s.wake(), t0);
        assert!(s.collect_due(t0, &cfg, 0.5));
        assert_eq!(s.next_collect, secs(3600));
        // Unit 1.0 = the top of the full-jitter band: 30 s, 60 s, 120 s, … up to the cap.
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..8 {
            let d = s.delivered(Err(None), now, &cfg, 1.0).unwrap();
            delays.push(d.as_secs());
            if now + d >= s.next_collect {
                assert_eq!(s.wake(), s.next_collect, "the collection comes first");
                break;
            }
            assert_eq!(s.wake(), now + d, "the retry wakes before the collection");
            now = s.wake();
            assert!(
                !s.collect_due(now, &cfg, 0.5),
                "a retry is not a collection"
            );
        }
        assert_eq!(&delays[..5], &[30, 60, 120, 240, 480]);
        assert!(delays.iter().all(|d| *d <= 3600), "{delays:?}");
        // The collector's retry hint wins over a shorter backoff.
        let mut h = Schedule::start(t0);
        let d = h.delivered(Err(Some(secs(90))), t0, &cfg, 0.0).unwrap();
        assert_eq!((d, h.next_retry), (secs(90), Some(secs(90))));
        // Success clears the retry and the exponent; the next wake is the collection.
        s.delivered(Ok(()), now, &cfg, 0.0);
        assert_eq!((s.next_retry, s.attempt), (None, 0));
        assert_eq!(s.wake(), s.next_collect);
    }

    #[test]
    fn a_retry_never_delays_the_next_collection() {
        let cfg = run_config(60);
        let mut s = Schedule::start(Duration::ZERO);
        assert!(s.collect_due(Duration::ZERO, &cfg, 0.0));
        // A retry due after the next collection: the collection wakes first.
        s.attempt = 10;
        s.delivered(
            Err(Some(Duration::from_secs(600))),
            Duration::ZERO,
            &cfg,
            1.0,
        );
        assert_eq!(s.wake(), Duration::from_secs(60));
        assert!(s.collect_due(s.wake(), &cfg, 0.0));
    }

    #[test]
    fn jitter_stays_within_the_band() {
        let mut j = Jitter(42);
        let hour = Duration::from_secs(3600);
        for _ in 0..1000 {
            let d = jittered(hour, 0.1, j.unit());
            assert!(
                d >= Duration::from_secs(3240) && d <= Duration::from_secs(3960),
                "{d:?}"
            );
        }
        assert_eq!(jittered(hour, 0.0, 0.7), hour);
    }
}
