//! The real `dsreg-collector` process for end-to-end tests.
//!
//! [`CollectorProcess::start`] runs the binary with `--grpc-listen 127.0.0.1:0
//! --http-listen 127.0.0.1:0 --ready-file FILE`, reads the bound addresses back from the ready
//! file (`grpc=ADDR http=ADDR`), then polls `/readyz`; every wait is bounded. The database
//! path is the caller's, so a test can `kill -9` the process and start a new one on the same
//! file. The process is killed when the value is dropped (also when a test panics).

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::process::{KillOnDrop, workspace_bin};

/// How long start-up (bind + open store + /readyz) may take.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running collector.
pub struct CollectorProcess {
    child: Option<KillOnDrop>,
    /// The bound gRPC address.
    pub grpc: SocketAddr,
    /// The bound HTTP address.
    pub http: SocketAddr,
    log: PathBuf,
}

/// The `dsreg-collector` binary of this workspace ([`workspace_bin`]).
pub fn collector_binary() -> PathBuf {
    workspace_bin("dsreg-collector")
}

fn parse_ready(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let mut grpc = None;
    let mut http = None;
    for part in line.split_whitespace() {
        if let Some(v) = part.strip_prefix("grpc=") {
            grpc = v.parse().ok();
        } else if let Some(v) = part.strip_prefix("http=") {
            http = v.parse().ok();
        }
    }
    Some((grpc?, http?))
}

impl CollectorProcess {
    /// Starts the collector on `db`, writing its log and ready file into `dir`.
    pub fn start(db: &Path, dir: &Path, extra: &[&str]) -> anyhow::Result<CollectorProcess> {
        Self::start_probed(db, dir, extra, None, &[])
    }

    /// Like [`CollectorProcess::start`] with extra environment variables for the child only
    /// (the test process's own environment is never changed: tests share it).
    pub fn start_env(
        db: &Path,
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<CollectorProcess> {
        Self::start_probed(db, dir, extra, None, env)
    }

    /// Like [`CollectorProcess::start`] for a collector started with `--tls-cert/--tls-key`
    /// in `extra`: readiness is probed over https, trusting only the CA in `ca`.
    pub fn start_tls(
        db: &Path,
        dir: &Path,
        extra: &[&str],
        ca: &Path,
    ) -> anyhow::Result<CollectorProcess> {
        Self::start_probed(db, dir, extra, Some(ca), &[])
    }

    fn start_probed(
        db: &Path,
        dir: &Path,
        extra: &[&str],
        https_ca: Option<&Path>,
        env: &[(&str, &str)],
    ) -> anyhow::Result<CollectorProcess> {
        let bin = collector_binary();
        let ready = dir.join("ready");
        let _ = fs::remove_file(&ready);
        let log = unique(dir.join("collector.log"));
        let log_file = fs::File::create(&log)?;
        let mut cmd = Command::new(bin);
        let child = crate::process::without_dsreg_env(&mut cmd)
            .args([
                "--grpc-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .arg("--db")
            .arg(db)
            .arg("--ready-file")
            .arg(&ready)
            .args(extra)
            .env("DSREG_LOG", "info")
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("spawn dsreg-collector")?;
        let mut child = KillOnDrop::new(child);
        let deadline = Instant::now() + START_TIMEOUT;
        let (grpc, http) = loop {
            if let Some(addrs) = fs::read_to_string(&ready)
                .ok()
                .as_deref()
                .and_then(parse_ready)
            {
                break addrs;
            }
            if let Some(status) = child.exited() {
                bail!("dsreg-collector exited early ({status}):\n{}", read(&log));
            }
            if Instant::now() >= deadline {
                bail!("no ready file within {START_TIMEOUT:?}:\n{}", read(&log));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let me = CollectorProcess {
            child: Some(child),
            grpc,
            http,
            log,
        };
        loop {
            if crate::http::ready(me.http, https_ca) {
                return Ok(me);
            }
            if Instant::now() >= deadline {
                bail!("/readyz not 200 within {START_TIMEOUT:?}:\n{}", me.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://HTTP_ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// `http://GRPC_ADDR` for a tonic client.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// GET `path` on the HTTP port: status and JSON body (`Null` when not JSON).
    pub fn get_json(&self, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        crate::http::get_json(&self.url(path))
    }

    /// The log so far.
    pub fn log(&self) -> String {
        read(&self.log)
    }

    /// The process id while it runs (to send it signals such as SIGHUP, or to read
    /// `/proc/<pid>/status`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(KillOnDrop::id)
    }

    /// SIGKILL (`kill -9`), and reap.
    pub fn kill9(&mut self) {
        drop(self.child.take());
    }

    /// SIGTERM, then waits (bounded) for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let Some(child) = self.child.as_mut() else {
            bail!("not running");
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .context("run kill -TERM")?;
        if !status.success() {
            bail!("kill -TERM failed: {status}");
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.exited() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "collector did not exit within {timeout:?} of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn unique(mut path: PathBuf) -> PathBuf {
    let mut n = 0;
    while path.exists() {
        n += 1;
        path.set_extension(format!("{n}.log"));
    }
    path
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// Sends `reports` again to the collector at `grpc_url`, `chunk` per call, and fails naming
/// the first one that is not answered DUPLICATE: the check that every report acknowledged
/// before a crash, a fault or a restart is still stored.
pub async fn expect_all_duplicates(
    grpc_url: &str,
    reports: &[dsreg_proto::Report],
    chunk: usize,
) -> anyhow::Result<()> {
    use dsreg_proto::v1::telemetry_client::TelemetryClient;
    use dsreg_proto::{ReportBatch, ReportStatus};
    let mut client = TelemetryClient::connect(grpc_url.to_string()).await?;
    for part in reports.chunks(chunk.max(1)) {
        let ack = client
            .report(ReportBatch {
                reports: part.to_vec(),
            })
            .await?
            .into_inner();
        if let Some(r) = ack
            .results
            .iter()
            .find(|r| r.status() != ReportStatus::Duplicate)
        {
            bail!(
                "acknowledged report {} was lost: answered {:?} {}",
                r.report_id,
                r.status(),
                r.message
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ready_line_parses() {
        let (g, h) = super::parse_ready("grpc=127.0.0.1:5 http=127.0.0.1:6\n").unwrap();
        assert_eq!((g.port(), h.port()), (5, 6));
        assert!(super::parse_ready("grpc=127.0.0.1:5").is_none());
    }
}
