//! The Prometheus tier of the end-to-end tests: `promtool` and a real `prometheus`.
//!
//! - [`require_tool`] finds `promtool` / `prometheus` on `PATH` and otherwise **fails** the
//!   test with the install command: the tier is a real dependency (DESIGN §9), never skipped.
//! - [`Prometheus`] starts a real server on a free loopback port with a generated config and a
//!   temporary TSDB, and answers instant queries; the process dies with the value (also when a
//!   test panics).
//! - [`collector_binary`] builds and finds the real `dsreg-collector` (the process itself is
//!   run by [`crate::collector::CollectorProcess`]).
//! - Small blocking helpers: [`http_get`], [`wait_until`], [`free_loopback_port`].
//!
//! Everything binds 127.0.0.1 and every wait is bounded.

use std::ffi::OsStr;
use std::fs;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The command that installs `promtool` and `prometheus` (Debian package).
pub const INSTALL_HINT: &str = "apt-get install -y prometheus";

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The path of `name` on `PATH`, or `None`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The path of `name` (`promtool` or `prometheus`); panics with the install command when it is
/// missing, so the Prometheus tier fails loudly instead of passing silently.
pub fn require_tool(name: &str) -> PathBuf {
    find_on_path(name).unwrap_or_else(|| {
        panic!(
            "`{name}` is not on PATH. The Prometheus test tier needs it (DESIGN §9); install it \
             with `{INSTALL_HINT}` (Debian/Ubuntu; it brings both promtool and prometheus)"
        )
    })
}

/// What a tool run printed, and whether it exited 0.
#[derive(Debug)]
pub struct ToolOutput {
    /// Exit status 0.
    pub success: bool,
    /// stdout followed by stderr.
    pub text: String,
}

/// Runs `promtool` with `args` in `cwd`, feeding `stdin` when given.
pub fn promtool<S: AsRef<OsStr>>(args: &[S], cwd: &Path, stdin: Option<&str>) -> ToolOutput {
    let mut cmd = Command::new(require_tool("promtool"));
    cmd.args(args)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().expect("spawn promtool");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("promtool stdin");
        pipe.write_all(input.as_bytes())
            .expect("write to promtool stdin");
    }
    let out = child.wait_with_output().expect("wait for promtool");
    ToolOutput {
        success: out.status.success(),
        text: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// A loopback port that was free a moment ago (bind to 0, read, release).
pub fn free_loopback_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Polls `probe` every 200 ms until it returns `Some`, for at most `timeout`; panics naming
/// `what` (and `context()`, e.g. a process log) on timeout.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// GET `url`; the status and body (any status, including 4xx/5xx).
pub fn http_get(url: &str) -> anyhow::Result<(u16, String)> {
    let mut resp = agent()
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .read_to_string()
        .with_context(|| format!("read body of {url}"))?;
    Ok((status, body))
}

/// A child process that is killed (and reaped) when dropped, also during a panic.
pub struct KillOnDrop {
    child: Child,
}

impl KillOnDrop {
    /// Takes ownership of `child`.
    pub fn new(child: Child) -> Self {
        Self { child }
    }

    /// The exit status if the process has already exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Prometheus server on 127.0.0.1 with a temporary TSDB.
pub struct Prometheus {
    child: KillOnDrop,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts `prometheus` scraping `target` (`host:port`, path `/metrics`) every second and
    /// evaluating `rule_files` every second, then waits for `/-/ready`.
    pub fn start(target: &str, rule_files: &[PathBuf]) -> anyhow::Result<Self> {
        let bin = require_tool("prometheus");
        let dir = tempfile::tempdir()?;
        let port = free_loopback_port();
        let rules: String = rule_files
            .iter()
            .map(|p| format!("  - {:?}\n", p.display().to_string()))
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n{rules}\
             scrape_configs:\n  - job_name: e2e-any-name\n    metrics_path: /metrics\n    \
             static_configs:\n      - targets: [{target:?}]\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        fs::write(&config_path, config)?;
        let log = dir.path().join("prometheus.log");
        let log_file = fs::File::create(&log)?;
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("spawn prometheus")?;
        let mut prom = Self {
            child: KillOnDrop::new(child),
            base: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = prom.child.exited() {
                bail!("prometheus exited early ({status}):\n{}", prom.log());
            }
            if matches!(http_get(&format!("{}/-/ready", prom.base)), Ok((200, _))) {
                return Ok(prom);
            }
            if Instant::now() >= deadline {
                bail!("prometheus not ready within 30s:\n{}", prom.log());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET an API path (e.g. `/api/v1/rules`) as JSON.
    pub fn api(&self, path_and_query: &str) -> anyhow::Result<serde_json::Value> {
        let (status, body) = http_get(&format!("{}{path_and_query}", self.base))?;
        serde_json::from_str(&body)
            .with_context(|| format!("HTTP {status} from {path_and_query}: {body}"))
    }

    /// An instant query: the whole API answer (`status`, `data`, `error`…), whatever the status.
    pub fn query(&self, expr: &str) -> anyhow::Result<serde_json::Value> {
        let mut resp = agent()
            .get(format!("{}/api/v1/query", self.base))
            .query("query", expr)
            .call()
            .with_context(|| format!("query {expr}"))?;
        let body = resp.body_mut().read_to_string()?;
        serde_json::from_str(&body).with_context(|| format!("query {expr}: {body}"))
    }

    /// The `data.result` array of a successful instant query (empty on failure).
    pub fn result(&self, expr: &str) -> Vec<serde_json::Value> {
        self.query(expr)
            .ok()
            .filter(|v| v["status"] == "success")
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default()
    }
}

/// The `dsreg-collector` binary of this workspace, built first (`cargo build -p
/// dsreg-collector`; a no-op when it is up to date) so `cargo test -p dsreg-e2e` works alone.
/// Built once per test process: a test that restarts the collector many times (soak, faults)
/// must not wait on a `cargo build` (and its file lock) at every restart.
pub fn collector_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_collector).clone()
}

fn build_collector() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "dsreg-collector", "--bin", "dsreg-collector"])
        .current_dir(repo_root())
        .status()
        .expect("run cargo build -p dsreg-collector");
    assert!(status.success(), "cargo build -p dsreg-collector failed");
    // This test binary lives in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let bin = profile_dir.join(format!("dsreg-collector{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.is_file(), "no collector binary at {}", bin.display());
    bin
}
