//! Per-client rate limits on the gRPC Telemetry service: a token bucket per device token
//! (its machine id), per peer address for calls without a token (`Open`), and per peer
//! address for `Enroll`. Over the limit a call is answered RESOURCE_EXHAUSTED with
//! `retry-after-ms` (the time until the bucket holds a token again), which the agent already
//! honours as its next retry delay.
//!
//! Invariants: a bucket holds at most `burst` tokens and refills at `per_minute / 60` per
//! second; the map is bounded by [`MAX_BUCKETS`] — when full, buckets that have refilled
//! completely (the idle ones, which carry no state worth keeping) are dropped first, and if
//! none are, the oldest-refilled half is dropped (a client then starts from a full bucket:
//! the limit errs on the side of letting traffic through, never of refusing it wrongly for
//! long). Calls with a fleet-wide agent token are not limited per client (one token, the
//! whole fleet behind it); the writer queue still bounds them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most buckets kept at once.
pub const MAX_BUCKETS: usize = 200_000;

/// One client's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A set of token buckets with one rate.
#[derive(Debug)]
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `per_minute` calls per minute per key, bursts of `burst`.
    pub fn new(per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            per_sec: f64::from(per_minute.max(1)) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`: `Ok` when allowed, else the time until one is available.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(key) && map.len() >= MAX_BUCKETS {
            self.shrink(&mut map, now);
        }
        let b = map.entry(key.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_sec).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / self.per_sec;
            Err(Duration::from_secs_f64(wait.max(0.001)))
        }
    }

    fn shrink(&self, map: &mut HashMap<String, Bucket>, now: Instant) {
        let full = |b: &Bucket| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * self.per_sec
                >= self.burst
        };
        map.retain(|_, b| !full(b));
        if map.len() >= MAX_BUCKETS {
            let mut ats: Vec<Instant> = map.values().map(|b| b.at).collect();
            ats.sort_unstable();
            let cut = ats[ats.len() / 2];
            map.retain(|_, b| b.at > cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills_at_the_rate() {
        let l = RateLimiter::new(60, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check_at("a", t0).is_ok());
        }
        let wait = l.check_at("a", t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(l.check_at("b", t0).is_ok(), "keys are independent");
        assert!(l.check_at("a", t0 + Duration::from_millis(1000)).is_ok());
        assert!(l.check_at("a", t0 + Duration::from_millis(1000)).is_err());
        // Never more than the burst after a long pause.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(l.check_at("a", later).is_ok());
        }
        assert!(l.check_at("a", later).is_err());
    }
}
