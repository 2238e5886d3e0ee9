//! The collector's settings, each written once: flag, `DSREG_*` variable, file key, parser,
//! help text. [`declare_settings!`](dsreg_settings::declare_settings) derives [`Args`] (the
//! command line, what `--help` prints), [`FileSettings`] (the TOML file, unknown keys refused),
//! [`Settings`] (one layer's values, every setting optional) and `Settings::apply` (into
//! [`Config`]). Defaults live in `Config::default`; the help text repeats them in brackets.
//!
//! Zero is refused for every count and every duration here (a zero limit or timeout would
//! stop the collector from working rather than configure it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use dsreg_settings::parse;

use super::Config;
use crate::graph::settings::{graph_base_url, graph_name};

dsreg_settings::declare_settings! {
    flags:
    /// Command-line flags. Every setting is optional, so that file and environment values show
    /// through; defaults are applied by [`Config::load`].
    #[derive(Debug, Default, Clone, clap::Parser)]
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
    }
    partial:
    /// One layer's settings (flags, environment or file), every one optional.
    pub struct Settings;
    file:
    /// The TOML file: the same settings as [`Args`], unknown keys refused.
    pub struct FileSettings;
    apply: Config;
    settings: {
        /// gRPC listen address [default: 127.0.0.1:50051].
        grpc_listen: SocketAddr {
            parse: parse::address,
            env: "DSREG_GRPC_LISTEN",
            file: grpc_listen: String,
            flag: [value_name = "ADDR"],
        }
        /// HTTP listen address for /metrics, /healthz, /readyz and /api/v1
        /// [default: 127.0.0.1:9184].
        http_listen: SocketAddr {
            parse: parse::address,
            env: "DSREG_HTTP_LISTEN",
            file: http_listen: String,
            flag: [value_name = "ADDR"],
        }
        /// SQLite database path [default: ./dsreg.db].
        db: PathBuf {
            parse: parse::path,
            env: "DSREG_DB",
            file: db: PathBuf,
            flag: [value_name = "PATH"],
        }
        /// Days to keep reports, history, attempts and events [default: 90].
        retention_days: u32 {
            parse: parse::positive::<u32>,
            env: "DSREG_RETENTION_DAYS",
            file: retention_days: u64,
            flag: [value_name = "DAYS"],
        }
        /// History rows kept per device [default: 50].
        history_per_device: u32 {
            parse: parse::positive::<u32>,
            env: "DSREG_HISTORY_PER_DEVICE",
            file: history_per_device: u64,
            flag: [value_name = "N"],
        }
        /// A device not heard from for this long is stale, e.g. 26h, 90m, 2d [default: 26h: a
        /// laptop that sleeps overnight misses two 6-h heartbeats every night; 26h = one day plus
        /// slack for reboots and spool retries].
        stale_after: Duration {
            parse: parse::nonzero_duration,
            env: "DSREG_STALE_AFTER",
            file: stale_after: String,
            flag: [value_name = "DURATION"],
        }
        /// Most reports in one batch [default: 1000].
        max_batch: usize {
            parse: parse::positive::<usize>,
            env: "DSREG_MAX_BATCH",
            file: max_batch: u64,
            flag: [value_name = "N"],
        }
        /// Largest gRPC message accepted, in bytes [default: 4194304].
        max_message_bytes: usize {
            parse: parse::positive::<usize>,
            env: "DSREG_MAX_MESSAGE_BYTES",
            file: max_message_bytes: u64,
            flag: [value_name = "BYTES"],
        }
        /// Writer queue size, in slots of 1000 reports: when N×1000 reports wait for the SQLite
        /// writer (or the queued work would hold a new call over 250 ms), clients get
        /// UNAVAILABLE with a retry hint [default: 16].
        queue_depth: usize {
            parse: parse::positive::<usize>,
            env: "DSREG_QUEUE_DEPTH",
            file: queue_depth: u64,
            flag: [value_name = "N"],
        }
        /// Allow non-loopback listen addresses without TLS/tokens (logs a WARN). Without it a
        /// non-loopback gRPC address needs --tls-cert/--tls-key and --agent-token-file, and a
        /// non-loopback HTTP address needs --tls-cert/--tls-key and --reader-token-file.
        /// `--insecure` alone means true; `--insecure=false` overrides the file or environment.
        insecure: bool {
            parse: parse::boolean,
            env: "DSREG_INSECURE",
            file: insecure: bool,
            flag: [num_args = 0..=1, require_equals = true, default_missing_value = "true"],
        }
        /// Write `grpc=ADDR http=ADDR` here once both listeners are bound.
        ready_file: PathBuf {
            parse: parse::path,
            env: "DSREG_READY_FILE",
            file: ready_file: PathBuf,
            flag: [value_name = "FILE"],
        }
        /// PEM certificate chain: TLS on both listeners (with --tls-key); plaintext is then
        /// refused.
        tls_cert: PathBuf {
            parse: parse::path,
            env: "DSREG_TLS_CERT",
            file: tls_cert: PathBuf,
            flag: [value_name = "FILE"],
        }
        /// PEM private key of --tls-cert.
        tls_key: PathBuf {
            parse: parse::path,
            env: "DSREG_TLS_KEY",
            file: tls_key: PathBuf,
            flag: [value_name = "FILE"],
        }
        /// PEM CA certificate(s): gRPC clients must present a certificate signed by one (mTLS).
        /// Needs --tls-cert.
        tls_client_ca: PathBuf {
            parse: parse::path,
            env: "DSREG_TLS_CLIENT_CA",
            file: tls_client_ca: PathBuf,
            flag: [value_name = "FILE"],
        }
        /// Agent tokens, one per line (`#` comments): required on Telemetry/Report as
        /// `authorization: Bearer <token>`. Re-read on SIGHUP.
        agent_token_file: PathBuf {
            parse: parse::path,
            env: "DSREG_AGENT_TOKEN_FILE",
            file: agent_token_file: PathBuf,
            flag: [value_name = "FILE"],
        }
        /// Reader tokens, one per line: required on /api/v1/* as `Authorization: Bearer
        /// <token>`. Re-read on SIGHUP.
        reader_token_file: PathBuf {
            parse: parse::path,
            env: "DSREG_READER_TOKEN_FILE",
            file: reader_token_file: PathBuf,
            flag: [value_name = "FILE"],
        }
        /// Metrics tokens, one per line: when set, /metrics needs one (Prometheus
        /// `authorization.credentials_file`). Re-read on SIGHUP.
        metrics_token_file: PathBuf {
            parse: parse::path,
            env: "DSREG_METRICS_TOKEN_FILE",
            file: metrics_token_file: PathBuf,
            flag: [value_name = "FILE"],
        }
        /// Entra tenant (GUID or verified domain) whose devices Microsoft Graph sync reads; with
        /// --graph-client-id and a credential it turns the sync on [default: off].
        graph_tenant_id: String {
            parse: graph_name,
            env: "DSREG_GRAPH_TENANT_ID",
            file: graph_tenant_id: String,
            flag: [value_name = "TENANT"],
        }
        /// Application (client) id of the app registration with Device.Read.All.
        graph_client_id: String {
            parse: graph_name,
            env: "DSREG_GRAPH_CLIENT_ID",
            file: graph_client_id: String,
            flag: [value_name = "GUID"],
        }
        /// File holding the app's client secret (never logged; a WARN when others can read it).
        graph_client_secret_file: PathBuf {
            parse: parse::path,
            env: "DSREG_GRAPH_CLIENT_SECRET_FILE",
            file: graph_client_secret_file: PathBuf,
            flag: [value_name = "FILE"],
        }
        /// PEM certificate registered on the app, for certificate credentials instead of a
        /// secret (with --graph-client-key).
        graph_client_cert: PathBuf {
            parse: parse::path,
            env: "DSREG_GRAPH_CLIENT_CERT",
            file: graph_client_cert: PathBuf,
            flag: [value_name = "FILE"],
        }
        /// PEM (PKCS#8) RSA private key of --graph-client-cert.
        graph_client_key: PathBuf {
            parse: parse::path,
            env: "DSREG_GRAPH_CLIENT_KEY",
            file: graph_client_key: PathBuf,
            flag: [value_name = "FILE"],
        }
        /// Time between Graph device sync rounds [default: 15m].
        graph_interval: Duration {
            parse: parse::nonzero_duration,
            env: "DSREG_GRAPH_INTERVAL",
            file: graph_interval: String,
            flag: [value_name = "DURATION"],
        }
        /// Entra token endpoint base, for national clouds
        /// [default: https://login.microsoftonline.com].
        graph_login_url: String {
            parse: graph_base_url,
            env: "DSREG_GRAPH_LOGIN_URL",
            file: graph_login_url: String,
            flag: [value_name = "URL"],
        }
        /// Microsoft Graph base, for national clouds [default: https://graph.microsoft.com];
        /// http:// only on loopback (tests).
        graph_url: String {
            parse: graph_base_url,
            env: "DSREG_GRAPH_URL",
            file: graph_url: String,
            flag: [value_name = "URL"],
        }
        /// Connections open at once on the gRPC listener; at the cap the oldest connection with
        /// no call in flight is closed to make room [default: 8192]. Both caps shrink to fit the
        /// file-descriptor limit.
        grpc_max_connections: usize {
            parse: parse::positive::<usize>,
            env: "DSREG_GRPC_MAX_CONNECTIONS",
            file: grpc_max_connections: u64,
            flag: [value_name = "N"],
        }
        /// Connections open at once on the HTTP listener (as --grpc-max-connections)
        /// [default: 1024].
        http_max_connections: usize {
            parse: parse::positive::<usize>,
            env: "DSREG_HTTP_MAX_CONNECTIONS",
            file: http_max_connections: u64,
            flag: [value_name = "N"],
        }
        /// Connections open at once from one peer address, on each listener [default: 256;
        /// raise it when many agents reach the collector through one NAT or proxy address].
        max_connections_per_peer: usize {
            parse: parse::positive::<usize>,
            env: "DSREG_MAX_CONNECTIONS_PER_PEER",
            file: max_connections_per_peer: u64,
            flag: [value_name = "N"],
        }
        /// Time a new connection has to finish its handshake (TLS, the HTTP/2 preface, an HTTP
        /// request head) [default: 10s].
        handshake_timeout: Duration {
            parse: parse::nonzero_duration,
            env: "DSREG_HANDSHAKE_TIMEOUT",
            file: handshake_timeout: String,
            flag: [value_name = "DURATION"],
        }
        /// A connection with no call in flight for this long is closed [default: 5m].
        idle_timeout: Duration {
            parse: parse::nonzero_duration,
            env: "DSREG_IDLE_TIMEOUT",
            file: idle_timeout: String,
            flag: [value_name = "DURATION"],
        }
        /// Enroll secret (one or more lines, as a token file): turns enrollment on. An agent
        /// presenting it on `Telemetry/Enroll` gets a device token bound to its machine id;
        /// with enrollment on, a report needs a device token (only for its own machine id) or
        /// an agent token. Re-read on SIGHUP.
        enroll_secret_file: PathBuf {
            parse: parse::path,
            env: "DSREG_ENROLL_SECRET_FILE",
            file: enroll_secret_file: PathBuf,
            flag: [value_name = "FILE"],
        }
        /// Admin tokens, one per line: required on the admin API (`DELETE
        /// /api/v1/devices/{machine_id}/credential`); without it the admin API is off.
        /// Re-read on SIGHUP.
        admin_token_file: PathBuf {
            parse: parse::path,
            env: "DSREG_ADMIN_TOKEN_FILE",
            file: admin_token_file: PathBuf,
            flag: [value_name = "FILE"],
        }
        /// Report calls per minute allowed per device token (token bucket); over it,
        /// RESOURCE_EXHAUSTED with `retry-after-ms` [default: 120].
        rate_limit_per_minute: u32 {
            parse: parse::positive::<u32>,
            env: "DSREG_RATE_LIMIT_PER_MINUTE",
            file: rate_limit_per_minute: u64,
            flag: [value_name = "N"],
        }
        /// Bucket size of the per-client rate limits: calls allowed at once after a quiet
        /// spell [default: 60].
        rate_limit_burst: u32 {
            parse: parse::positive::<u32>,
            env: "DSREG_RATE_LIMIT_BURST",
            file: rate_limit_burst: u64,
            flag: [value_name = "N"],
        }
        /// Report calls per minute per peer address for calls without any token (a collector
        /// with neither agent tokens nor enrollment) [default: unlimited].
        rate_limit_open_per_minute: u32 {
            parse: parse::positive::<u32>,
            env: "DSREG_RATE_LIMIT_OPEN_PER_MINUTE",
            file: rate_limit_open_per_minute: u64,
            flag: [value_name = "N"],
        }
    }
}
