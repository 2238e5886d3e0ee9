//! Collector configuration: Defaults ← TOML file ← `DSREG_*` environment ← command-line flags.
//!
//! Every setting is written once, in `config/flags.rs` (flag, environment variable, file key, parser
//! and the help text `--help` prints), and documented in the README table. [`Config::load`]
//! takes the environment as a map, so tests never mutate the process environment. Invariants
//! of a loaded [`Config`]: every limit is non-zero; `tls_cert` and `tls_key` come together
//! (and `tls_client_ca` only with them); a non-loopback gRPC address needs TLS and agent
//! tokens, a non-loopback HTTP address needs TLS and reader tokens — or `insecure`, which makes
//! exposing an unprotected listener an explicit, loud decision (see
//! [`Config::exposure_gaps`]).
//!
//! Errors name the layer and the setting: `DSREG_QUEUE_DEPTH`, `queue_depth (config file)`,
//! or (from clap, which parses flags with the same parsers) `--queue-depth`.

mod flags;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use flags::{Args, FileSettings, Settings};

/// Errors while loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML file is not valid (unknown key, wrong type).
    #[error("invalid config file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said.
        message: String,
    },
    /// A setting has a value that does not parse or is out of range.
    #[error("invalid {setting}: {value:?}: {reason}")]
    Value {
        /// Setting name (flag, env var or file key).
        setting: String,
        /// The value given.
        value: String,
        /// Why it is wrong.
        reason: String,
    },
    /// A non-loopback address without its protections and without `--insecure`.
    #[error(
        "refusing to listen on non-loopback address {addr} ({setting}): {missing} not \
         configured; configure them, or pass --insecure (DSREG_INSECURE=true) to expose the \
         collector anyway"
    )]
    NotLoopback {
        /// Which listener.
        setting: &'static str,
        /// The address.
        addr: SocketAddr,
        /// What is missing, e.g. `--tls-cert/--tls-key and --agent-token-file`.
        missing: String,
    },
    /// Settings that only make sense together.
    #[error("{0}")]
    Incomplete(String),
}

impl From<dsreg_settings::InvalidValue> for ConfigError {
    fn from(e: dsreg_settings::InvalidValue) -> Self {
        ConfigError::Value {
            setting: e.setting,
            value: e.value,
            reason: e.reason,
        }
    }
}

/// The effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// gRPC listen address.
    pub grpc_listen: SocketAddr,
    /// HTTP listen address.
    pub http_listen: SocketAddr,
    /// SQLite database path.
    pub db: PathBuf,
    /// Retention of reports, history, attempts and events, in days.
    pub retention_days: u32,
    /// History rows kept per device.
    pub history_per_device: u32,
    /// Not heard from for this long → stale.
    pub stale_after: Duration,
    /// Most reports per batch.
    pub max_batch: usize,
    /// Largest decoded gRPC message.
    pub max_message_bytes: usize,
    /// Writer channel capacity, in batches.
    pub queue_depth: usize,
    /// Non-loopback listeners allowed without TLS/tokens.
    pub insecure: bool,
    /// Where to write the bound addresses.
    pub ready_file: Option<PathBuf>,
    /// TLS certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// CA for client certificates on gRPC (mTLS).
    pub tls_client_ca: Option<PathBuf>,
    /// Agent token file.
    pub agent_token_file: Option<PathBuf>,
    /// Reader token file.
    pub reader_token_file: Option<PathBuf>,
    /// Metrics token file.
    pub metrics_token_file: Option<PathBuf>,
    /// Entra tenant of the Graph device sync (the sync is on when [`Config::graph`] is some).
    pub graph_tenant_id: Option<String>,
    /// Application (client) id for the Graph sync.
    pub graph_client_id: Option<String>,
    /// File with the client secret.
    pub graph_client_secret_file: Option<PathBuf>,
    /// Client certificate (PEM) for certificate credentials.
    pub graph_client_cert: Option<PathBuf>,
    /// Private key (PEM, PKCS#8) of `graph_client_cert`.
    pub graph_client_key: Option<PathBuf>,
    /// Time between sync rounds.
    pub graph_interval: Duration,
    /// Token endpoint base URL (no trailing slash).
    pub graph_login_url: String,
    /// Graph base URL (no trailing slash).
    pub graph_url: String,
    /// Connection cap of the gRPC listener.
    pub grpc_max_connections: usize,
    /// Connection cap of the HTTP listener.
    pub http_max_connections: usize,
    /// Connection cap per peer address, on each listener.
    pub max_connections_per_peer: usize,
    /// Time to finish a handshake.
    pub handshake_timeout: Duration,
    /// A connection without calls for this long is closed.
    pub idle_timeout: Duration,
    /// Enroll secret file (enrollment on when set).
    pub enroll_secret_file: Option<PathBuf>,
    /// Admin token file (admin API on when set).
    pub admin_token_file: Option<PathBuf>,
    /// Report calls per minute per device token.
    pub rate_limit_per_minute: u32,
    /// Bucket size of the per-client limits.
    pub rate_limit_burst: u32,
    /// Report calls per minute per peer without a token; `None`: unlimited.
    pub rate_limit_open_per_minute: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 9184)),
            db: PathBuf::from("./dsreg.db"),
            retention_days: 90,
            history_per_device: 50,
            stale_after: Duration::from_secs(26 * 3600),
            max_batch: 1000,
            max_message_bytes: 4 * 1024 * 1024,
            queue_depth: 16,
            insecure: false,
            ready_file: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            agent_token_file: None,
            reader_token_file: None,
            metrics_token_file: None,
            graph_tenant_id: None,
            graph_client_id: None,
            graph_client_secret_file: None,
            graph_client_cert: None,
            graph_client_key: None,
            graph_interval: Duration::from_secs(15 * 60),
            graph_login_url: "https://login.microsoftonline.com".into(),
            graph_url: "https://graph.microsoft.com".into(),
            grpc_max_connections: 8192,
            http_max_connections: 1024,
            max_connections_per_peer: 256,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            enroll_secret_file: None,
            admin_token_file: None,
            rate_limit_per_minute: 120,
            rate_limit_burst: 60,
            rate_limit_open_per_minute: None,
        }
    }
}

impl Config {
    /// Loads Defaults ← file (`--config` or `DSREG_CONFIG`) ← `env` ← `args`, then checks it.
    pub fn load(args: &Args, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let path = args
            .config
            .clone()
            .or_else(|| env.get("DSREG_CONFIG").map(PathBuf::from));
        let file = match path {
            Some(path) => Settings::from_file(read_file(&path)?)?,
            None => Settings::default(),
        };
        let env = Settings::from_env(env)?;
        let mut cfg = Config::default();
        Settings::from_flags(args).or(env).or(file).apply(&mut cfg);
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Incomplete(
                "--tls-cert and --tls-key (tls_cert, tls_key) go together: give both or neither"
                    .into(),
            ));
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err(ConfigError::Incomplete(
                "--tls-client-ca (tls_client_ca) needs --tls-cert and --tls-key: mTLS is TLS"
                    .into(),
            ));
        }
        self.check_graph()?;
        if self.insecure {
            return Ok(());
        }
        match self.exposure_gaps().into_iter().next() {
            Some((setting, addr, missing)) => Err(ConfigError::NotLoopback {
                setting,
                addr,
                missing,
            }),
            None => Ok(()),
        }
    }

    /// Non-loopback listeners that lack TLS or their tokens: (setting, address, what is
    /// missing). Empty when nothing is exposed unprotected; only `insecure` lets a loaded
    /// config have gaps (callers log them as a loud WARN).
    pub fn exposure_gaps(&self) -> Vec<(&'static str, SocketAddr, String)> {
        let mut gaps = Vec::new();
        for (setting, addr, tokens, flag) in [
            (
                "grpc_listen",
                self.grpc_listen,
                &self.agent_token_file,
                "--agent-token-file",
            ),
            (
                "http_listen",
                self.http_listen,
                &self.reader_token_file,
                "--reader-token-file",
            ),
        ] {
            if addr.ip().is_loopback() {
                continue;
            }
            let mut missing = Vec::new();
            if self.tls_cert.is_none() {
                missing.push("--tls-cert/--tls-key");
            }
            // Enrollment protects gRPC as agent tokens do (a report then needs a device token).
            let enrolled = setting == "grpc_listen" && self.enroll_secret_file.is_some();
            if tokens.is_none() && !enrolled {
                missing.push(flag);
            }
            if !missing.is_empty() {
                gaps.push((setting, addr, missing.join(" and ")));
            }
        }
        gaps
    }

    /// True when a listener is not on loopback (callers log a loud WARN: `insecure` was used).
    pub fn exposed(&self) -> bool {
        !self.grpc_listen.ip().is_loopback() || !self.http_listen.ip().is_loopback()
    }
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Parses `26h`, `90m`, `30s`, `2d`, `1500ms` (a bare number is seconds). Must be > 0. The
/// grammar is [`dsreg_settings::parse::duration`], shared with the agent.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    dsreg_settings::parse::nonzero_duration(s)
}
