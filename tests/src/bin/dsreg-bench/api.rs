//! API read latency under ingest: the p99 of four `/api/v1` reads while an open loop of
//! reports runs against the same collector (issue 14: aggregate reads flat in fleet size).
//!
//! One thread, one keep-alive HTTP connection, calls paced round-robin every [`PACE`] (each of
//! the four reads [`PER_READ_HZ`] times a second, so the probe adds little load of its own):
//! - `GET /api/v1/failures` and `GET /api/v1/agents` (in-memory aggregates);
//! - `GET /api/v1/devices?cause=…&limit=100` (a filtered page of 100, the cause of the largest
//!   failure group, read once before the phase);
//! - `GET /api/v1/devices/{key}` (one device document, a random fleet device each time).
//!
//! Latency is the call's own duration (send to full body). Any answer but 200 fails the run:
//! a bench that times error pages measures nothing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use dsreg_agent::simulate::fleet::{machine_id, mix};
use dsreg_agent::simulate::pace::Latencies;

/// Each read is called this often per second.
pub const PER_READ_HZ: u32 = 10;
/// The pause between two calls (four reads round-robin).
const PACE: Duration = Duration::from_millis(1000 / (4 * PER_READ_HZ as u64));

/// The four reads' latencies.
#[derive(Default, Clone)]
pub struct ApiLatencies {
    /// `GET /api/v1/failures`.
    pub failures: Latencies,
    /// `GET /api/v1/agents`.
    pub agents: Latencies,
    /// `GET /api/v1/devices?cause=…&limit=100`.
    pub device_list: Latencies,
    /// `GET /api/v1/devices/{key}`.
    pub device_doc: Latencies,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// GETs `path` and returns the body, failing on anything but 200.
fn get(agent: &ureq::Agent, http: SocketAddr, path: &str) -> anyhow::Result<String> {
    let url = format!("http://{http}{path}");
    let mut resp = agent
        .get(&url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string()?;
    anyhow::ensure!(status == 200, "GET {url} answered {status}: {body:.200}");
    Ok(body)
}

/// The cause of the largest failure group (`/api/v1/failures` lists the largest first).
fn largest_cause(agent: &ureq::Agent, http: SocketAddr) -> anyhow::Result<String> {
    let body = get(agent, http, "/api/v1/failures")?;
    let doc: serde_json::Value = serde_json::from_str(&body)?;
    doc["groups"][0]["cause"]
        .as_str()
        .map(str::to_string)
        .context("no failure group in the fleet to filter the device list by")
}

/// Probes the four reads for `dur` against the collector's HTTP listener `http`, picking
/// device documents among `devices` simulated devices of fleet `seed`. Blocking: run it on
/// its own thread while the ingest loop runs.
pub fn probe(
    http: SocketAddr,
    seed: u64,
    devices: u64,
    dur: Duration,
) -> anyhow::Result<ApiLatencies> {
    let agent = agent();
    let cause = largest_cause(&agent, http)?;
    let list = format!("/api/v1/devices?cause={cause}&limit=100");
    let mut out = ApiLatencies::default();
    let start = Instant::now();
    let mut k = 0u64;
    while start.elapsed() < dur {
        let at = start + PACE * u32::try_from(k).unwrap_or(u32::MAX);
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let (path, lat) = match k % 4 {
            0 => ("/api/v1/failures".to_string(), &mut out.failures),
            1 => ("/api/v1/agents".to_string(), &mut out.agents),
            2 => (list.clone(), &mut out.device_list),
            _ => {
                let key = machine_id(seed, mix(k ^ 0x6b65_7973) % devices.max(1));
                (format!("/api/v1/devices/{key}"), &mut out.device_doc)
            }
        };
        let t = Instant::now();
        get(&agent, http, &path)?;
        lat.record(t.elapsed());
        k += 1;
    }
    Ok(out)
}

/// p99 in milliseconds (`NaN` without samples), for the `RESULT` line.
pub fn p99_ms(lat: &mut Latencies) -> f64 {
    lat.percentile(99.0)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}
