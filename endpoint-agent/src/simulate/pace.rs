//! Pacing and measurement primitives shared by `simulate` and `dsreg-bench`: a token bucket
//! (open-loop rate limit) and a latency recorder with exact percentiles.

use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens per second, holding at most `burst`.
///
/// [`TokenBucket::take`] spends tokens (the balance may go negative, which is a debt) and says
/// how long the caller must wait before the spend is covered. Callers sleep that long, so the
/// long-run rate never exceeds `rate` while a batch larger than the burst is still allowed.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `start`. `rate` must be positive; `burst` is at least one token.
    pub fn new(rate: f64, burst: f64, start: Instant) -> TokenBucket {
        let burst = burst.max(1.0);
        TokenBucket {
            rate: rate.max(f64::MIN_POSITIVE),
            burst,
            tokens: burst,
            last: start,
        }
    }

    /// Spends `n` tokens at `now`; returns how long to wait before they are covered.
    pub fn take(&mut self, n: f64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - n;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// Latencies of calls, in microseconds; percentiles are exact (nearest rank on the sorted
/// samples). 4 bytes per call: a million calls cost 4 MB.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    micros: Vec<u32>,
    sorted: bool,
}

impl Latencies {
    /// An empty recorder.
    pub fn new() -> Latencies {
        Latencies::default()
    }

    /// Records one call.
    pub fn record(&mut self, d: Duration) {
        self.micros
            .push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
        self.sorted = false;
    }

    /// Adds another recorder's samples.
    pub fn merge(&mut self, other: &Latencies) {
        self.micros.extend_from_slice(&other.micros);
        self.sorted = false;
    }

    /// Samples recorded.
    pub fn len(&self) -> usize {
        self.micros.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.micros.is_empty()
    }

    /// The `p`-th percentile (0..=100) by nearest rank, or `None` when empty.
    pub fn percentile(&mut self, p: f64) -> Option<Duration> {
        if self.micros.is_empty() {
            return None;
        }
        if !self.sorted {
            self.micros.sort_unstable();
            self.sorted = true;
        }
        let n = self.micros.len();
        let rank = ((p.clamp(0.0, 100.0) / 100.0) * n as f64).ceil() as usize;
        let i = rank.clamp(1, n) - 1;
        Some(Duration::from_micros(u64::from(self.micros[i])))
    }
}

/// Milliseconds with two decimals, for tables.
pub fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".into(),
        |d| format!("{:.2}", d.as_secs_f64() * 1000.0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_holds_the_long_run_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100.0, 10.0, t0);
        // The burst is free, the next token costs 1/rate.
        assert_eq!(b.take(10.0, t0), Duration::ZERO);
        let wait = b.take(1.0, t0);
        assert!((wait.as_secs_f64() - 0.01).abs() < 1e-9, "{wait:?}");
        // A big batch creates a debt the caller sleeps off.
        let mut b = TokenBucket::new(1000.0, 100.0, t0);
        assert_eq!(b.take(100.0, t0), Duration::ZERO);
        let wait = b.take(500.0, t0);
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9, "{wait:?}");
        // Simulated caller that always sleeps exactly as told: 10 s at 1000/s → ~10 000 tokens.
        let mut b = TokenBucket::new(1000.0, 100.0, t0);
        let mut now = t0;
        let mut spent = 0.0;
        while now < t0 + Duration::from_secs(10) {
            now += b.take(50.0, now);
            spent += 50.0;
        }
        assert!((spent - 10_100.0_f64).abs() <= 100.0, "{spent}");
    }

    #[test]
    fn bucket_never_saves_more_than_the_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5.0, t0);
        let later = t0 + Duration::from_secs(100);
        assert_eq!(b.take(5.0, later), Duration::ZERO);
        assert!(b.take(1.0, later) > Duration::ZERO);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut l = Latencies::new();
        assert_eq!(l.percentile(50.0), None);
        for us in (1..=100).rev() {
            l.record(Duration::from_micros(us));
        }
        assert_eq!(l.percentile(50.0), Some(Duration::from_micros(50)));
        assert_eq!(l.percentile(99.0), Some(Duration::from_micros(99)));
        assert_eq!(l.percentile(100.0), Some(Duration::from_micros(100)));
        assert_eq!(l.percentile(0.0), Some(Duration::from_micros(1)));
        let mut one = Latencies::new();
        one.record(Duration::from_millis(3));
        assert_eq!(one.percentile(99.0), Some(Duration::from_millis(3)));
        let mut merged = Latencies::new();
        merged.merge(&l);
        merged.merge(&one);
        assert_eq!(merged.len(), 101);
        assert_eq!(merged.percentile(100.0), Some(Duration::from_millis(3)));
        assert_eq!(ms(Some(Duration::from_micros(1500))), "1.50");
    }
}
