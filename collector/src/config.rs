//! Collector configuration: Defaults ← TOML file ← `DSREG_*` environment ← command-line flags.
//!
//! Every setting is documented once, on [`Args`] (which is what `--help` prints) and in the
//! README table. [`Config::load`] takes the environment as a map, so tests never mutate the
//! process environment. Invariants of a loaded [`Config`]: every limit is non-zero;
//! `tls_cert` and `tls_key` come together (and `tls_client_ca` only with them); a non-loopback
//! gRPC address needs TLS and agent tokens, a non-loopback HTTP address needs TLS and reader
//! tokens — or `insecure`, which makes exposing an unprotected listener an explicit, loud
//! decision (see [`Config::exposure_gaps`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

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

/// Command-line flags. Every flag is optional so that file and environment values show
/// through; defaults are applied by [`Config::load`].
#[derive(Debug, Default, Clone, Parser)]
#[command(
    name = "dsreg-collector",
    version,
    about = "dsreg-fleet collector: gRPC ingest, SQLite store, fleet aggregates, /metrics and drill-down API",
    after_help = "Online backup: dsreg-collector backup --db PATH --to FILE (see `backup --help`)."
)]
pub struct Args {
    /// TOML config file (keys as the flags with `_`, e.g. `grpc_listen = "127.0.0.1:50051"`).
    /// Env: DSREG_CONFIG.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:50051]. Env: DSREG_GRPC_LISTEN.
    #[arg(long, value_name = "ADDR")]
    pub grpc_listen: Option<String>,
    /// HTTP listen address for /metrics, /healthz, /readyz and /api/v1
    /// [default: 127.0.0.1:9184]. Env: DSREG_HTTP_LISTEN.
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<String>,
    /// SQLite database path [default: ./dsreg.db]. Env: DSREG_DB.
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Days to keep reports, history, attempts and events [default: 90]. Env: DSREG_RETENTION_DAYS.
    #[arg(long, value_name = "DAYS")]
    pub retention_days: Option<String>,
    /// History rows kept per device [default: 50]. Env: DSREG_HISTORY_PER_DEVICE.
    #[arg(long, value_name = "N")]
    pub history_per_device: Option<String>,
    /// A device not heard from for this long is stale, e.g. 26h, 90m, 2d [default: 26h: a laptop
    /// that sleeps overnight misses two 6-h heartbeats every night; 26h = one day plus slack
    /// for reboots and spool retries]. Env: DSREG_STALE_AFTER.
    #[arg(long, value_name = "DURATION")]
    pub stale_after: Option<String>,
    /// Most reports in one batch [default: 1000]. Env: DSREG_MAX_BATCH.
    #[arg(long, value_name = "N")]
    pub max_batch: Option<String>,
    /// Largest gRPC message accepted, in bytes [default: 4194304]. Env: DSREG_MAX_MESSAGE_BYTES.
    #[arg(long, value_name = "BYTES")]
    pub max_message_bytes: Option<String>,
    /// Writer queue size, in slots of 1000 reports: when N×1000 reports wait for the SQLite
    /// writer, clients get UNAVAILABLE with a retry hint [default: 16].
    /// Env: DSREG_QUEUE_DEPTH.
    #[arg(long, value_name = "N")]
    pub queue_depth: Option<String>,
    /// Allow non-loopback listen addresses without TLS/tokens (logs a WARN). Without it a
    /// non-loopback gRPC address needs --tls-cert/--tls-key and --agent-token-file, and a
    /// non-loopback HTTP address needs --tls-cert/--tls-key and --reader-token-file.
    /// Env: DSREG_INSECURE.
    #[arg(long)]
    pub insecure: bool,
    /// PEM certificate chain: TLS on both listeners (with --tls-key); plaintext is then
    /// refused. Env: DSREG_TLS_CERT.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert. Env: DSREG_TLS_KEY.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): gRPC clients must present a certificate signed by one (mTLS).
    /// Needs --tls-cert. Env: DSREG_TLS_CLIENT_CA.
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Agent tokens, one per line (`#` comments): required on Telemetry/Report as
    /// `authorization: Bearer <token>`. Re-read on SIGHUP. Env: DSREG_AGENT_TOKEN_FILE.
    #[arg(long, value_name = "FILE")]
    pub agent_token_file: Option<PathBuf>,
    /// Reader tokens, one per line: required on /api/v1/* as `Authorization: Bearer <token>`.
    /// Re-read on SIGHUP. Env: DSREG_READER_TOKEN_FILE.
    #[arg(long, value_name = "FILE")]
    pub reader_token_file: Option<PathBuf>,
    /// Metrics tokens, one per line: when set, /metrics needs one (Prometheus
    /// `authorization.credentials_file`). Re-read on SIGHUP. Env: DSREG_METRICS_TOKEN_FILE.
    #[arg(long, value_name = "FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// Write `grpc=ADDR http=ADDR` here once both listeners are bound. Env: DSREG_READY_FILE.
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
    /// Entra tenant (GUID or verified domain) whose devices Microsoft Graph sync reads; with
    /// --graph-client-id and a credential it turns the sync on [default: off].
    /// Env: DSREG_GRAPH_TENANT_ID.
    #[arg(long, value_name = "TENANT")]
    pub graph_tenant_id: Option<String>,
    /// Application (client) id of the app registration with Device.Read.All.
    /// Env: DSREG_GRAPH_CLIENT_ID.
    #[arg(long, value_name = "GUID")]
    pub graph_client_id: Option<String>,
    /// File holding the app's client secret (never logged; a WARN when others can read it).
    /// Env: DSREG_GRAPH_CLIENT_SECRET_FILE.
    #[arg(long, value_name = "FILE")]
    pub graph_client_secret_file: Option<PathBuf>,
    /// PEM certificate registered on the app, for certificate credentials instead of a
    /// secret (with --graph-client-key). Env: DSREG_GRAPH_CLIENT_CERT.
    #[arg(long, value_name = "FILE")]
    pub graph_client_cert: Option<PathBuf>,
    /// PEM (PKCS#8) RSA private key of --graph-client-cert. Env: DSREG_GRAPH_CLIENT_KEY.
    #[arg(long, value_name = "FILE")]
    pub graph_client_key: Option<PathBuf>,
    /// Time between Graph device sync rounds [default: 15m]. Env: DSREG_GRAPH_INTERVAL.
    #[arg(long, value_name = "DURATION")]
    pub graph_interval: Option<String>,
    /// Entra token endpoint base, for national clouds
    /// [default: https://login.microsoftonline.com]. Env: DSREG_GRAPH_LOGIN_URL.
    #[arg(long, value_name = "URL")]
    pub graph_login_url: Option<String>,
    /// Microsoft Graph base, for national clouds [default: https://graph.microsoft.com];
    /// http:// only on loopback (tests). Env: DSREG_GRAPH_URL.
    #[arg(long, value_name = "URL")]
    pub graph_url: Option<String>,
    /// Connections open at once on the gRPC listener; at the cap the oldest connection with
    /// no call in flight is closed to make room [default: 8192]. Both caps shrink to fit the
    /// file-descriptor limit. Env: DSREG_GRPC_MAX_CONNECTIONS.
    #[arg(long, value_name = "N")]
    pub grpc_max_connections: Option<String>,
    /// Connections open at once on the HTTP listener (as --grpc-max-connections)
    /// [default: 1024]. Env: DSREG_HTTP_MAX_CONNECTIONS.
    #[arg(long, value_name = "N")]
    pub http_max_connections: Option<String>,
    /// Connections open at once from one peer address, on each listener [default: 256; raise
    /// it when many agents reach the collector through one NAT or proxy address].
    /// Env: DSREG_MAX_CONNECTIONS_PER_PEER.
    #[arg(long, value_name = "N")]
    pub max_connections_per_peer: Option<String>,
    /// Time a new connection has to finish its handshake (TLS, the HTTP/2 preface, an HTTP
    /// request head) [default: 10s]. Env: DSREG_HANDSHAKE_TIMEOUT.
    #[arg(long, value_name = "DURATION")]
    pub handshake_timeout: Option<String>,
    /// A connection with no call in flight for this long is closed [default: 5m].
    /// Env: DSREG_IDLE_TIMEOUT.
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// Enroll secret (one or more lines, as a token file): turns enrollment on. An agent
    /// presenting it on `Telemetry/Enroll` gets a device token bound to its machine id; with
    /// enrollment on, a report needs a device token (only for its own machine id) or an agent
    /// token. Re-read on SIGHUP. Env: DSREG_ENROLL_SECRET_FILE.
    #[arg(long, value_name = "FILE")]
    pub enroll_secret_file: Option<PathBuf>,
    /// Admin tokens, one per line: required on the admin API (`DELETE
    /// /api/v1/devices/{machine_id}/credential`); without it the admin API is off.
    /// Re-read on SIGHUP. Env: DSREG_ADMIN_TOKEN_FILE.
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Report calls per minute allowed per device token (token bucket); over it,
    /// RESOURCE_EXHAUSTED with `retry-after-ms` [default: 120].
    /// Env: DSREG_RATE_LIMIT_PER_MINUTE.
    #[arg(long, value_name = "N")]
    pub rate_limit_per_minute: Option<String>,
    /// Bucket size of the per-client rate limits: calls allowed at once after a quiet spell
    /// [default: 60]. Env: DSREG_RATE_LIMIT_BURST.
    #[arg(long, value_name = "N")]
    pub rate_limit_burst: Option<String>,
    /// Report calls per minute per peer address for calls without any token (a collector
    /// with neither agent tokens nor enrollment) [default: unlimited].
    /// Env: DSREG_RATE_LIMIT_OPEN_PER_MINUTE.
    #[arg(long, value_name = "N")]
    pub rate_limit_open_per_minute: Option<String>,
}

/// The TOML file: the same settings as [`Args`], unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    grpc_listen: Option<String>,
    http_listen: Option<String>,
    db: Option<PathBuf>,
    retention_days: Option<u64>,
    history_per_device: Option<u64>,
    stale_after: Option<String>,
    max_batch: Option<u64>,
    max_message_bytes: Option<u64>,
    queue_depth: Option<u64>,
    insecure: Option<bool>,
    ready_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    agent_token_file: Option<PathBuf>,
    reader_token_file: Option<PathBuf>,
    metrics_token_file: Option<PathBuf>,
    graph_tenant_id: Option<String>,
    graph_client_id: Option<String>,
    graph_client_secret_file: Option<PathBuf>,
    graph_client_cert: Option<PathBuf>,
    graph_client_key: Option<PathBuf>,
    graph_interval: Option<String>,
    graph_login_url: Option<String>,
    graph_url: Option<String>,
    grpc_max_connections: Option<u64>,
    http_max_connections: Option<u64>,
    max_connections_per_peer: Option<u64>,
    handshake_timeout: Option<String>,
    idle_timeout: Option<String>,
    enroll_secret_file: Option<PathBuf>,
    admin_token_file: Option<PathBuf>,
    rate_limit_per_minute: Option<u64>,
    rate_limit_burst: Option<u64>,
    rate_limit_open_per_minute: Option<u64>,
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

/// One layer's raw values, before parsing (file values are re-rendered as text).
#[derive(Default)]
struct Layer {
    source: &'static str,
    values: Vec<(&'static str, String)>,
}

const KEYS: &[&str] = &[
    "grpc_listen",
    "http_listen",
    "db",
    "retention_days",
    "history_per_device",
    "stale_after",
    "max_batch",
    "max_message_bytes",
    "queue_depth",
    "insecure",
    "ready_file",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "agent_token_file",
    "reader_token_file",
    "metrics_token_file",
    "graph_tenant_id",
    "graph_client_id",
    "graph_client_secret_file",
    "graph_client_cert",
    "graph_client_key",
    "graph_interval",
    "graph_login_url",
    "graph_url",
    "grpc_max_connections",
    "http_max_connections",
    "max_connections_per_peer",
    "handshake_timeout",
    "idle_timeout",
    "enroll_secret_file",
    "admin_token_file",
    "rate_limit_per_minute",
    "rate_limit_burst",
    "rate_limit_open_per_minute",
];

/// The settings that name files, as pushed by each layer.
const PATH_KEYS: &[&str] = &[
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "agent_token_file",
    "reader_token_file",
    "metrics_token_file",
];

impl Config {
    /// Loads Defaults ← file (`--config` or `DSREG_CONFIG`) ← `env` ← `args`, then checks it.
    pub fn load(args: &Args, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let mut cfg = Config::default();
        let file = args
            .config
            .clone()
            .or_else(|| env.get("DSREG_CONFIG").map(PathBuf::from));
        if let Some(path) = file {
            cfg.apply(file_layer(&path)?)?;
        }
        let mut env_layer = Layer {
            source: "env",
            values: Vec::new(),
        };
        for key in KEYS {
            if let Some(v) = env.get(&format!("DSREG_{}", key.to_ascii_uppercase())) {
                env_layer.values.push((key, v.clone()));
            }
        }
        cfg.apply(env_layer)?;
        let mut flags = Layer {
            source: "flag",
            values: Vec::new(),
        };
        let mut push = |k: &'static str, v: Option<String>| {
            if let Some(v) = v {
                flags.values.push((k, v));
            }
        };
        push("grpc_listen", args.grpc_listen.clone());
        push("http_listen", args.http_listen.clone());
        push("db", args.db.as_ref().map(|p| p.display().to_string()));
        push("retention_days", args.retention_days.clone());
        push("history_per_device", args.history_per_device.clone());
        push("stale_after", args.stale_after.clone());
        push("max_batch", args.max_batch.clone());
        push("max_message_bytes", args.max_message_bytes.clone());
        push("queue_depth", args.queue_depth.clone());
        push("insecure", args.insecure.then(|| "true".to_string()));
        push(
            "ready_file",
            args.ready_file.as_ref().map(|p| p.display().to_string()),
        );
        for (key, path) in PATH_KEYS.iter().zip([
            &args.tls_cert,
            &args.tls_key,
            &args.tls_client_ca,
            &args.agent_token_file,
            &args.reader_token_file,
            &args.metrics_token_file,
        ]) {
            push(key, path.as_ref().map(|p| p.display().to_string()));
        }
        push("graph_tenant_id", args.graph_tenant_id.clone());
        push("graph_client_id", args.graph_client_id.clone());
        for (key, path) in [
            ("graph_client_secret_file", &args.graph_client_secret_file),
            ("graph_client_cert", &args.graph_client_cert),
            ("graph_client_key", &args.graph_client_key),
        ] {
            push(key, path.as_ref().map(|p| p.display().to_string()));
        }
        push("graph_interval", args.graph_interval.clone());
        push("graph_login_url", args.graph_login_url.clone());
        push("graph_url", args.graph_url.clone());
        push("grpc_max_connections", args.grpc_max_connections.clone());
        push("http_max_connections", args.http_max_connections.clone());
        push(
            "max_connections_per_peer",
            args.max_connections_per_peer.clone(),
        );
        push("handshake_timeout", args.handshake_timeout.clone());
        push("idle_timeout", args.idle_timeout.clone());
        push(
            "enroll_secret_file",
            args.enroll_secret_file
                .as_ref()
                .map(|p| p.display().to_string()),
        );
        push(
            "admin_token_file",
            args.admin_token_file
                .as_ref()
                .map(|p| p.display().to_string()),
        );
        push("rate_limit_per_minute", args.rate_limit_per_minute.clone());
        push("rate_limit_burst", args.rate_limit_burst.clone());
        push(
            "rate_limit_open_per_minute",
            args.rate_limit_open_per_minute.clone(),
        );
        cfg.apply(flags)?;
        cfg.check()?;
        Ok(cfg)
    }

    fn apply(&mut self, layer: Layer) -> Result<(), ConfigError> {
        for (key, value) in layer.values {
            let bad = |reason: &str| ConfigError::Value {
                setting: setting_name(layer.source, key),
                value: value.clone(),
                reason: reason.to_string(),
            };
            match key {
                "grpc_listen" => {
                    self.grpc_listen = value.parse().map_err(|_| bad("not an ip:port address"))?
                }
                "http_listen" => {
                    self.http_listen = value.parse().map_err(|_| bad("not an ip:port address"))?
                }
                "db" => self.db = PathBuf::from(&value),
                "retention_days" => self.retention_days = positive(&value).map_err(|r| bad(&r))?,
                "history_per_device" => {
                    self.history_per_device = positive(&value).map_err(|r| bad(&r))?
                }
                "stale_after" => self.stale_after = parse_duration(&value).map_err(|r| bad(&r))?,
                "max_batch" => self.max_batch = positive(&value).map_err(|r| bad(&r))?,
                "max_message_bytes" => {
                    self.max_message_bytes = positive(&value).map_err(|r| bad(&r))?
                }
                "queue_depth" => self.queue_depth = positive(&value).map_err(|r| bad(&r))?,
                "insecure" => self.insecure = parse_bool(&value).map_err(|r| bad(&r))?,
                "ready_file" => self.ready_file = Some(PathBuf::from(&value)),
                "tls_cert" => self.tls_cert = Some(PathBuf::from(&value)),
                "tls_key" => self.tls_key = Some(PathBuf::from(&value)),
                "tls_client_ca" => self.tls_client_ca = Some(PathBuf::from(&value)),
                "agent_token_file" => self.agent_token_file = Some(PathBuf::from(&value)),
                "reader_token_file" => self.reader_token_file = Some(PathBuf::from(&value)),
                "metrics_token_file" => self.metrics_token_file = Some(PathBuf::from(&value)),
                "graph_tenant_id" => {
                    self.graph_tenant_id =
                        Some(crate::graph::settings::graph_name(&value).map_err(|r| bad(&r))?)
                }
                "graph_client_id" => {
                    self.graph_client_id =
                        Some(crate::graph::settings::graph_name(&value).map_err(|r| bad(&r))?)
                }
                "graph_client_secret_file" => {
                    self.graph_client_secret_file = Some(PathBuf::from(&value))
                }
                "graph_client_cert" => self.graph_client_cert = Some(PathBuf::from(&value)),
                "graph_client_key" => self.graph_client_key = Some(PathBuf::from(&value)),
                "graph_interval" => {
                    self.graph_interval = parse_duration(&value).map_err(|r| bad(&r))?
                }
                "graph_login_url" => {
                    self.graph_login_url =
                        crate::graph::settings::graph_base_url(&value).map_err(|r| bad(&r))?
                }
                "graph_url" => {
                    self.graph_url =
                        crate::graph::settings::graph_base_url(&value).map_err(|r| bad(&r))?
                }
                "grpc_max_connections" => {
                    self.grpc_max_connections = positive(&value).map_err(|r| bad(&r))?
                }
                "http_max_connections" => {
                    self.http_max_connections = positive(&value).map_err(|r| bad(&r))?
                }
                "max_connections_per_peer" => {
                    self.max_connections_per_peer = positive(&value).map_err(|r| bad(&r))?
                }
                "handshake_timeout" => {
                    self.handshake_timeout = parse_duration(&value).map_err(|r| bad(&r))?
                }
                "idle_timeout" => {
                    self.idle_timeout = parse_duration(&value).map_err(|r| bad(&r))?
                }
                "enroll_secret_file" => self.enroll_secret_file = Some(PathBuf::from(&value)),
                "admin_token_file" => self.admin_token_file = Some(PathBuf::from(&value)),
                "rate_limit_per_minute" => {
                    self.rate_limit_per_minute = positive(&value).map_err(|r| bad(&r))?
                }
                "rate_limit_burst" => {
                    self.rate_limit_burst = positive(&value).map_err(|r| bad(&r))?
                }
                "rate_limit_open_per_minute" => {
                    self.rate_limit_open_per_minute = Some(positive(&value).map_err(|r| bad(&r))?)
                }
                _ => {}
            }
        }
        Ok(())
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

fn setting_name(source: &str, key: &str) -> String {
    match source {
        "env" => format!("DSREG_{}", key.to_ascii_uppercase()),
        "flag" => format!("--{}", key.replace('_', "-")),
        _ => format!("{key} (config file)"),
    }
}

fn file_layer(path: &Path) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let f: FileConfig = toml::from_str(&text).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut values = Vec::new();
    let mut push = |k: &'static str, v: Option<String>| {
        if let Some(v) = v {
            values.push((k, v));
        }
    };
    push("grpc_listen", f.grpc_listen);
    push("http_listen", f.http_listen);
    push("db", f.db.map(|p| p.display().to_string()));
    push("retention_days", f.retention_days.map(|v| v.to_string()));
    push(
        "history_per_device",
        f.history_per_device.map(|v| v.to_string()),
    );
    push("stale_after", f.stale_after);
    push("max_batch", f.max_batch.map(|v| v.to_string()));
    push(
        "max_message_bytes",
        f.max_message_bytes.map(|v| v.to_string()),
    );
    push("queue_depth", f.queue_depth.map(|v| v.to_string()));
    push("insecure", f.insecure.map(|v| v.to_string()));
    push("ready_file", f.ready_file.map(|p| p.display().to_string()));
    for (key, path) in PATH_KEYS.iter().zip([
        f.tls_cert,
        f.tls_key,
        f.tls_client_ca,
        f.agent_token_file,
        f.reader_token_file,
        f.metrics_token_file,
    ]) {
        push(key, path.map(|p| p.display().to_string()));
    }
    push("graph_tenant_id", f.graph_tenant_id);
    push("graph_client_id", f.graph_client_id);
    for (key, path) in [
        ("graph_client_secret_file", f.graph_client_secret_file),
        ("graph_client_cert", f.graph_client_cert),
        ("graph_client_key", f.graph_client_key),
    ] {
        push(key, path.map(|p| p.display().to_string()));
    }
    push("graph_interval", f.graph_interval);
    push("graph_login_url", f.graph_login_url);
    push("graph_url", f.graph_url);
    push(
        "grpc_max_connections",
        f.grpc_max_connections.map(|v| v.to_string()),
    );
    push(
        "http_max_connections",
        f.http_max_connections.map(|v| v.to_string()),
    );
    push(
        "max_connections_per_peer",
        f.max_connections_per_peer.map(|v| v.to_string()),
    );
    push("handshake_timeout", f.handshake_timeout);
    push("idle_timeout", f.idle_timeout);
    push(
        "enroll_secret_file",
        f.enroll_secret_file.map(|p| p.display().to_string()),
    );
    push(
        "admin_token_file",
        f.admin_token_file.map(|p| p.display().to_string()),
    );
    push(
        "rate_limit_per_minute",
        f.rate_limit_per_minute.map(|v| v.to_string()),
    );
    push(
        "rate_limit_burst",
        f.rate_limit_burst.map(|v| v.to_string()),
    );
    push(
        "rate_limit_open_per_minute",
        f.rate_limit_open_per_minute.map(|v| v.to_string()),
    );
    Ok(Layer {
        source: "file",
        values,
    })
}

fn positive<T: TryFrom<u64>>(s: &str) -> Result<T, String> {
    let n: u64 = s
        .trim()
        .parse()
        .map_err(|_| "not a whole number".to_string())?;
    if n == 0 {
        return Err("must be at least 1".into());
    }
    T::try_from(n).map_err(|_| "too large".to_string())
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err("not a boolean (true/false)".into()),
    }
}

/// Parses `26h`, `90m`, `30s`, `2d`, `1500ms` (a bare number is seconds). Must be > 0.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| "not a duration like 26h, 90m, 30s, 2d".to_string())?;
    let secs = match unit.trim() {
        "ms" => return nonzero(Duration::from_millis(n)),
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        u => return Err(format!("unknown unit {u:?} (use ms, s, m, h or d)")),
    };
    nonzero(Duration::from_secs(secs))
}

fn nonzero(d: Duration) -> Result<Duration, String> {
    if d.is_zero() {
        Err("must be greater than zero".into())
    } else {
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_apply_without_anything() {
        let cfg = Config::load(&Args::default(), &HashMap::new()).unwrap();
        assert_eq!(cfg, Config::default());
        assert_eq!(cfg.stale_after, Duration::from_secs(26 * 3600));
    }

    #[test]
    fn precedence_is_file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "retention_days = 30\nhistory_per_device = 7\nmax_batch = 10\nstale_after = \"2d\"\n",
        )
        .unwrap();
        let args = Args {
            config: Some(file),
            max_batch: Some("12".into()),
            ..Args::default()
        };
        let e = env(&[("DSREG_HISTORY_PER_DEVICE", "8"), ("DSREG_MAX_BATCH", "11")]);
        let cfg = Config::load(&args, &e).unwrap();
        assert_eq!(cfg.retention_days, 30, "file beats default");
        assert_eq!(cfg.history_per_device, 8, "env beats file");
        assert_eq!(cfg.max_batch, 12, "flag beats env");
        assert_eq!(cfg.stale_after, Duration::from_secs(2 * 86_400));
    }

    #[test]
    fn bad_values_name_the_setting_and_value() {
        let e = env(&[("DSREG_QUEUE_DEPTH", "lots")]);
        let err = Config::load(&Args::default(), &e).unwrap_err().to_string();
        assert!(
            err.contains("DSREG_QUEUE_DEPTH") && err.contains("lots"),
            "{err}"
        );
        let args = Args {
            stale_after: Some("5 weeks".into()),
            ..Args::default()
        };
        let err = Config::load(&args, &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--stale-after") && err.contains("5 weeks"),
            "{err}"
        );
    }

    #[test]
    fn unknown_file_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "grpc_listn = \"127.0.0.1:1\"\n").unwrap();
        let args = Args {
            config: Some(file),
            ..Args::default()
        };
        let err = Config::load(&args, &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("grpc_listn"), "{err}");
    }

    #[test]
    fn non_loopback_needs_insecure() {
        let args = Args {
            grpc_listen: Some("0.0.0.0:50051".into()),
            ..Args::default()
        };
        let err = Config::load(&args, &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--insecure") && err.contains("0.0.0.0:50051"),
            "{err}"
        );
        let e = env(&[("DSREG_INSECURE", "true")]);
        let cfg = Config::load(&args, &e).unwrap();
        assert!(cfg.insecure && cfg.exposed());
    }

    #[test]
    fn exposure_needs_tls_and_the_listeners_tokens() {
        let base = Args {
            grpc_listen: Some("0.0.0.0:50051".into()),
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            ..Args::default()
        };
        let err = Config::load(&base, &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--agent-token-file") && !err.contains("--tls-cert"),
            "{err}"
        );
        let e = env(&[("DSREG_AGENT_TOKEN_FILE", "/etc/dsreg/agents")]);
        let cfg = Config::load(&base, &e).unwrap();
        assert!(cfg.exposed() && cfg.exposure_gaps().is_empty());
        assert_eq!(
            cfg.agent_token_file.as_deref(),
            Some(Path::new("/etc/dsreg/agents"))
        );
        // The HTTP listener needs reader tokens, not agent tokens.
        let args = Args {
            http_listen: Some("[::]:9184".into()),
            ..base.clone()
        };
        let err = Config::load(&args, &e).unwrap_err().to_string();
        assert!(err.contains("--reader-token-file"), "{err}");
        // --insecure lets it start, and the gaps stay visible for the WARN.
        let args = Args {
            insecure: true,
            ..args
        };
        let cfg = Config::load(&args, &e).unwrap();
        assert_eq!(cfg.exposure_gaps().len(), 1);
    }

    #[test]
    fn tls_settings_go_together() {
        let args = Args {
            tls_cert: Some("c.pem".into()),
            ..Args::default()
        };
        let err = Config::load(&args, &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("--tls-key"), "{err}");
        let args = Args {
            tls_client_ca: Some("ca.pem".into()),
            ..Args::default()
        };
        let err = Config::load(&args, &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("--tls-client-ca"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\ntls_client_ca = \"ca.pem\"\n\
             reader_token_file = \"r\"\nmetrics_token_file = \"m\"\n",
        )
        .unwrap();
        let args = Args {
            config: Some(file),
            ..Args::default()
        };
        let cfg = Config::load(&args, &HashMap::new()).unwrap();
        assert_eq!(cfg.tls_client_ca.as_deref(), Some(Path::new("ca.pem")));
        assert_eq!(cfg.metrics_token_file.as_deref(), Some(Path::new("m")));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("0h").is_err());
        assert!(parse_duration("h").is_err());
    }
}
