//! The Prometheus tier of the end-to-end tests: `promtool` and a real `prometheus`.
//!
//! - [`require_tool`] finds `promtool` / `prometheus` on `PATH` and otherwise **fails** the
//!   test with the install command: the tier is a real dependency (DESIGN §9), never skipped.
//! - [`Prometheus`] starts a real server on a free loopback port with a generated config and a
//!   temporary TSDB, and answers instant queries; the process dies with the value (also when a
//!   test panics).
//! - [`dashboard_queries`]: every PromQL query of the Grafana dashboards, variables set.
//! - [`rules`] reads the project's rules file (`dashboards/prometheus/dsreg.rules.yml`): every
//!   alert and recording rule with its expression.
//!
//! Everything binds 127.0.0.1 and every wait is bounded.

use std::ffi::OsStr;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::http::{agent, http_get};
use crate::process::{KillOnDrop, find_on_path, free_loopback_port, repo_root};

/// The command that installs `promtool` and `prometheus` (Debian package).
pub const INSTALL_HINT: &str = "apt-get install -y prometheus";

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
        Self::start_scraping(&[target], rule_files)
    }

    /// Like [`Prometheus::start`] with several targets in one job (each its own `instance`),
    /// as one Prometheus scrapes several collectors (`docs/scaling.md`).
    pub fn start_scraping(targets: &[&str], rule_files: &[PathBuf]) -> anyhow::Result<Self> {
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
             static_configs:\n      - targets: {targets:?}\n"
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

    /// The `data.result` array of an instant query evaluated at `time` (Unix seconds), so
    /// several queries see the same data (empty on failure).
    pub fn result_at(&self, expr: &str, time: f64) -> Vec<serde_json::Value> {
        let answer = agent()
            .get(format!("{}/api/v1/query", self.base))
            .query("query", expr)
            .query("time", format!("{time:.3}"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok());
        answer
            .filter(|v| v["status"] == "success")
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default()
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

/// The project's rules file.
pub fn rules_file() -> PathBuf {
    repo_root().join("dashboards/prometheus/dsreg.rules.yml")
}

/// Every rule of [`rules_file`] in file order: its name (`alert:` or `record:`) and `expr`.
pub fn rules() -> Vec<(String, String)> {
    let path = rules_file();
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let doc: serde_yaml::Value = serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    let groups = doc["groups"].as_sequence().expect("`groups:` is a list");
    groups
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("`rules:` is a list").iter())
        .map(|r| {
            let name = r["alert"].as_str().or(r["record"].as_str());
            let name = name.expect("a rule has `alert:` or `record:`");
            let expr = r["expr"].as_str().expect("a rule has `expr:`");
            (name.to_string(), expr.to_string())
        })
        .collect()
}

/// The expression of the rule named `name` in [`rules_file`]; panics when there is none.
pub fn rule_expr(name: &str) -> String {
    rules()
        .into_iter()
        .find_map(|(n, e)| (n == name).then_some(e))
        .unwrap_or_else(|| panic!("no rule {name} in {}", rules_file().display()))
}

/// Every PromQL expression of every dashboard panel, Grafana variables substituted:
/// (dashboard file, panel title, expression).
pub fn dashboard_queries() -> Vec<(String, String, String)> {
    let dir = repo_root().join("dashboards/grafana");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let d: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        // Query variables with an "All" value become that value (`.*` inside `=~`).
        let mut vars: Vec<(String, String)> = vec![
            ("__rate_interval".into(), "1m".into()),
            ("__interval".into(), "15s".into()),
            ("__range".into(), "1h".into()),
        ];
        for v in d["templating"]["list"].as_array().unwrap() {
            if let Some(all) = v["allValue"].as_str() {
                vars.push((v["name"].as_str().unwrap().into(), all.into()));
            }
        }
        let mut stack: Vec<&serde_json::Value> = d["panels"].as_array().unwrap().iter().collect();
        while let Some(p) = stack.pop() {
            if let Some(nested) = p["panels"].as_array() {
                stack.extend(nested);
            }
            for t in p["targets"].as_array().into_iter().flatten() {
                let mut expr = t["expr"].as_str().unwrap().to_string();
                for (k, v) in &vars {
                    expr = expr
                        .replace(&format!("${{{k}}}"), v)
                        .replace(&format!("${k}"), v);
                }
                assert!(
                    !expr.contains('$'),
                    "{name}: unknown variable left in {expr}"
                );
                out.push((
                    name.clone(),
                    p["title"].as_str().unwrap_or("?").into(),
                    expr,
                ));
            }
        }
    }
    out
}
