//! Blocking HTTP for the Graph sync (ureq 3, rustls with ring, webpki roots), with the one
//! retry policy for throttling and transient failures.
//!
//! Invariants: one request at a time (the sync thread is sequential, so Graph never sees
//! more than one call in flight from us); 429/503/504 wait `Retry-After` (seconds) or, without
//! it, an exponential backoff with jitter, at most [`MAX_ATTEMPTS`] times; every wait is cut
//! into short slices that check the stop flag, so shutdown never waits for a backoff; bodies
//! are read with a size limit; redirects are not followed (a token must never follow one).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::GraphError;

/// Tries per request (the first call plus retries) for 429/503/504 and network errors.
pub const MAX_ATTEMPTS: u32 = 6;
/// Longest single wait, whatever `Retry-After` asks.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// First backoff step without `Retry-After` (doubles per attempt, plus up to 50 % jitter).
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Largest response body read (a Graph page is a few MB at most).
pub const MAX_BODY: u64 = 32 * 1024 * 1024;
/// Connect / whole-call timeouts.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// One HTTP answer, whatever its status.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body (UTF-8, bounded).
    pub body: String,
    /// `Retry-After` in seconds, when given as a number.
    pub retry_after: Option<Duration>,
}

/// The HTTP client of the sync, with the shutdown flag its waits observe.
pub struct Http {
    agent: ureq::Agent,
    stop: Arc<AtomicBool>,
}

impl Http {
    /// A client whose waits end early when `stop` becomes true.
    pub fn new(stop: Arc<AtomicBool>) -> Http {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(CALL_TIMEOUT))
            .user_agent(concat!("dsreg-collector/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Http { agent, stop }
    }

    /// True once shutdown was requested.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps `d` in slices, returning [`GraphError::Stopped`] as soon as shutdown is asked.
    pub fn sleep(&self, d: Duration) -> Result<(), GraphError> {
        let end = Instant::now() + d;
        loop {
            if self.stopped() {
                return Err(GraphError::Stopped);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }

    /// `GET url` with a bearer token (one attempt).
    pub fn get(&self, url: &str, token: &str) -> Result<Reply, GraphError> {
        let resp = self
            .agent
            .get(url)
            .header("Authorization", format!("Bearer {token}"))
            .header("Accept", "application/json")
            .call();
        read(resp)
    }

    /// `POST url` with an `application/x-www-form-urlencoded` body (one attempt).
    pub fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Result<Reply, GraphError> {
        let resp = self
            .agent
            .post(url)
            .header("Accept", "application/json")
            .send_form(form.iter().copied());
        read(resp)
    }

    /// Runs `call` until it answers something other than 429/503/504 or a network error, at
    /// most [`MAX_ATTEMPTS`] times; `on_retry` sees the reason of each retried answer
    /// (`throttled`, `server`, `network`) before the wait.
    pub fn retrying(
        &self,
        mut call: impl FnMut() -> Result<Reply, GraphError>,
        mut on_retry: impl FnMut(&'static str),
    ) -> Result<Reply, GraphError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (reason, wait, last) = match call() {
                Ok(r) if matches!(r.status, 429 | 503 | 504) => {
                    let reason = if r.status == 429 {
                        "throttled"
                    } else {
                        "server"
                    };
                    let wait = r.retry_after.unwrap_or_else(|| backoff(attempt));
                    let msg = format!("graph answered {} after {attempt} attempts", r.status);
                    let last = if r.status == 429 {
                        GraphError::Throttled(msg)
                    } else {
                        GraphError::Server(msg)
                    };
                    (reason, wait, last)
                }
                Ok(r) => return Ok(r),
                Err(GraphError::Network(m)) => {
                    ("network", backoff(attempt), GraphError::Network(m))
                }
                Err(e) => return Err(e),
            };
            if attempt >= MAX_ATTEMPTS {
                return Err(last);
            }
            on_retry(reason);
            let wait = wait.min(MAX_WAIT);
            tracing::info!(
                reason,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "graph: retrying"
            );
            self.sleep(wait)?;
        }
    }
}

fn read(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Reply, GraphError> {
    let mut resp = resp.map_err(|e| GraphError::Network(e.to_string()))?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(n) => {
                GraphError::Decode(format!("response body over {n} bytes"))
            }
            e => GraphError::Network(e.to_string()),
        })?;
    Ok(Reply {
        status,
        body,
        retry_after,
    })
}

/// Exponential backoff for `attempt` (1-based) with up to 50 % random jitter.
pub fn backoff(attempt: u32) -> Duration {
    let base = BACKOFF_BASE.saturating_mul(1 << attempt.saturating_sub(1).min(10));
    let jitter = random_u64() % (base.as_millis() as u64 / 2 + 1);
    (base + Duration::from_millis(jitter)).min(MAX_WAIT)
}

/// A random number from the std hasher's per-process random keys (jitter only).
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let a = backoff(1);
        assert!(a >= BACKOFF_BASE && a <= BACKOFF_BASE * 3 / 2, "{a:?}");
        let b = backoff(4);
        assert!(b >= BACKOFF_BASE * 8, "{b:?}");
        assert!(backoff(40) <= MAX_WAIT);
    }
}
