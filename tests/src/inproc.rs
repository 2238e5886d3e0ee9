//! The in-process tier: `dsreg_collector::run` inside the test process, on listeners the test
//! binds itself on `127.0.0.1:0`, with the same flags a process test would pass.
//!
//! [`InProcessCollector::start`] parses `--db DB` and the caller's flags exactly as the binary
//! does (its `Args` and `Config::load`, with no `DSREG_*` environment), runs the collector on
//! a thread with its own Tokio runtime (so sync and async tests can both use it) and returns
//! once `/readyz` answers 200. Dropping the value resolves the shutdown future and joins the
//! thread: the writer commits and checkpoints as at SIGTERM. Every wait is bounded.
//!
//! Use the process tier ([`crate::collector::CollectorProcess`]) for what needs a separate
//! process: `kill -9`, signals, exit codes, the log, the real binary's CLI, per-process limits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser as _;
use dsreg_collector::config::{Args, Config};
use tokio::sync::oneshot;

use crate::collector::START_TIMEOUT;

/// A collector running inside the test process.
pub struct InProcessCollector {
    /// The bound gRPC address.
    pub grpc: SocketAddr,
    /// The bound HTTP address.
    pub http: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

/// The collector's configuration for `--db db` plus `flags`, as the binary would build it
/// from its command line with an empty environment.
pub fn config_from_flags(db: &Path, flags: &[&str]) -> anyhow::Result<Config> {
    let mut argv: Vec<std::ffi::OsString> = vec!["dsreg-collector".into(), "--db".into()];
    argv.push(db.into());
    argv.extend(flags.iter().map(Into::into));
    let args = Args::try_parse_from(argv).context("collector flags")?;
    Ok(Config::load(&args, &HashMap::new())?)
}

impl InProcessCollector {
    /// Starts the collector on `db` with `flags` (any flag of the binary except the listen
    /// addresses, which are bound here on `127.0.0.1:0`).
    pub fn start(db: &Path, flags: &[&str]) -> anyhow::Result<InProcessCollector> {
        Self::start_probed(db, flags, None)
    }

    /// Like [`InProcessCollector::start`] for flags that include `--tls-cert/--tls-key`:
    /// readiness is probed over https, trusting only the CA in `ca`.
    pub fn start_tls(db: &Path, flags: &[&str], ca: &Path) -> anyhow::Result<InProcessCollector> {
        Self::start_probed(db, flags, Some(ca))
    }

    fn start_probed(
        db: &Path,
        flags: &[&str],
        https_ca: Option<&Path>,
    ) -> anyhow::Result<InProcessCollector> {
        let config = config_from_flags(db, flags)?;
        let grpc = std::net::TcpListener::bind("127.0.0.1:0").context("bind grpc")?;
        let http = std::net::TcpListener::bind("127.0.0.1:0").context("bind http")?;
        let (grpc_addr, http_addr) = (grpc.local_addr()?, http.local_addr()?);
        grpc.set_nonblocking(true)?;
        http.set_nonblocking(true)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("in-process-collector".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .map_err(|e| format!("tokio runtime: {e}"))?;
                rt.block_on(async move {
                    let grpc =
                        tokio::net::TcpListener::from_std(grpc).map_err(|e| e.to_string())?;
                    let http =
                        tokio::net::TcpListener::from_std(http).map_err(|e| e.to_string())?;
                    dsreg_collector::run(config, grpc, http, async move {
                        let _ = stopped.await;
                    })
                    .await
                    .map_err(|e| e.to_string())
                })
            })
            .context("spawn the collector thread")?;
        let mut me = InProcessCollector {
            grpc: grpc_addr,
            http: http_addr,
            stop: Some(stop),
            thread: Some(thread),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if me.thread.as_ref().is_some_and(JoinHandle::is_finished) {
                let outcome = me.stop_and_join();
                bail!("the in-process collector stopped during start-up: {outcome:?}");
            }
            if crate::http::ready(me.http, https_ca) {
                return Ok(me);
            }
            if Instant::now() >= deadline {
                bail!("/readyz not 200 within {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
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

    /// No separate log in process (the collector logs through `tracing`, not initialised
    /// here); kept so a failure message can be written the same way for both tiers.
    pub fn log(&self) -> String {
        String::from("(in-process collector: no separate log)")
    }

    /// Shuts down as at SIGTERM and waits for `run` to return; its error, if any.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        match self.stop_and_join() {
            Ok(()) => Ok(()),
            Err(e) => bail!("{e}"),
        }
    }

    fn stop_and_join(&mut self) -> Result<(), String> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| "the collector thread panicked".to_string())?,
            None => Ok(()),
        }
    }
}

impl Drop for InProcessCollector {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}
