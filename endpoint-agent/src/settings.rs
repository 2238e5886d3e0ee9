//! Agent settings for `send` and `run`: defaults ← TOML file ← `DSREG_*` environment ← flags.
//!
//! Each setting is written once, in the [`declare_settings!`](dsreg_settings::declare_settings)
//! below: its flag, environment variable, file key, parser and help text. From it come
//! [`Request`] (the flags of `send` and `run`, what `--help` prints), [`FileSettings`] (the TOML
//! file the Windows installer writes, unknown keys refused by name), [`Settings`] (one layer,
//! every setting optional) and the key table [`Settings::SPECS`].
//!
//! | key | flag | environment | default |
//! | --- | --- | --- | --- |
//! | `collector` | `--collector URL` | `DSREG_COLLECTOR` | `http://127.0.0.1:50051` |
//! | `spool_dir` | `--spool-dir DIR` | `DSREG_SPOOL_DIR` | per platform, see [`default_spool_dir`] |
//! | `interval_minutes` | `--interval DURATION` | `DSREG_AGENT_INTERVAL` | 60 min |
//! | `heartbeat_hours` | `--heartbeat DURATION` | `DSREG_AGENT_HEARTBEAT` | 6 h |
//! | `status_timeout_seconds` | `--status-timeout DURATION` | `DSREG_AGENT_STATUS_TIMEOUT` | 30 s |
//! | `insecure` | `--insecure` | `DSREG_AGENT_INSECURE` | false |
//! | `token_file` | `--token-file FILE` | `DSREG_AGENT_TOKEN_FILE` | none: no token sent |
//! | `ca_file` | `--ca-file FILE` | `DSREG_AGENT_CA_FILE` | none: the platform's trust store |
//! | `client_cert` | `--client-cert FILE` | `DSREG_AGENT_CLIENT_CERT` | none: no client certificate (mTLS off) |
//! | `client_key` | `--client-key FILE` | `DSREG_AGENT_CLIENT_KEY` | none |
//! | `log_file` | `--log-file FILE` (`run`) | `DSREG_AGENT_LOG_FILE` | none: standard error |
//! | `user_inbox` | `--user-inbox DIR` | `DSREG_AGENT_USER_INBOX` | none: no handoff (see [`crate::inbox`]) |
//! | `spool_max_reports` | `--spool-max-reports N` | `DSREG_AGENT_SPOOL_MAX_REPORTS` | 1000 |
//! | `spool_max_bytes` | `--spool-max-bytes BYTES` | `DSREG_AGENT_SPOOL_MAX_BYTES` | 16 MiB |
//! | `enroll_secret_file` | `--enroll-secret-file FILE` | `DSREG_AGENT_ENROLL_SECRET_FILE` | none: no enrollment (see [`crate::enroll`]) |
//! | `pseudonymize_key_file` | `--pseudonymize-key-file FILE` | `DSREG_AGENT_PSEUDONYMIZE_KEY_FILE` | none: user names sent as they are (see [`crate::pseudonym`]) |
//!
//! Environment names: `DSREG_AGENT_<KEY>`, so that an agent and a collector started from one
//! shell never read each other's settings (both have `insecure` and `enroll_secret_file`);
//! `DSREG_COLLECTOR` and `DSREG_SPOOL_DIR` keep the names they had before the prefix rule.
//! The settings file itself is `--config` or `DSREG_AGENT_CONFIG`.
//!
//! Durations use the one grammar of [`dsreg_settings::parse`]. Zero is refused for the interval
//! (a busy loop) and the status timeout (dsregcmd killed at once); a zero heartbeat is allowed
//! and queues every collection. The file keys keep their units (`interval_minutes` in minutes,
//! `heartbeat_hours` in hours, `status_timeout_seconds` in seconds).
//!
//! The loader takes the environment as a parameter so tests never mutate the process's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dsreg_settings::parse;

dsreg_settings::declare_settings! {
    flags:
    /// What `send` and `run` were asked to do: the invocation's own flags, then the settings
    /// given as flags (merged over the environment and the settings file by
    /// [`Request::resolve`](crate::service)).
    #[derive(Debug, Clone, Default, clap::Args)]
    pub struct Request {
        /// Settings file (TOML); the environment and flags win over it.
        #[arg(long, value_name = "FILE", env = "DSREG_AGENT_CONFIG")]
        pub config: Option<PathBuf>,
        /// Read the dsregcmd /status capture from FILE instead of running dsregcmd.
        #[arg(long, value_name = "FILE")]
        pub status_file: Option<PathBuf>,
        /// Read registration events from FILE (wevtutil XML or Get-WinEvent JSON).
        #[arg(long, value_name = "FILE")]
        pub events_file: Option<PathBuf>,
        /// Device key to report [default: MachineGuid on Windows, /etc/machine-id elsewhere].
        #[arg(long, value_name = "ID")]
        pub machine_id: Option<String>,
        /// Host name to report [default: this machine's name].
        #[arg(long, value_name = "NAME")]
        pub hostname: Option<String>,
        /// Collect in the signed-in user's context (adds PRT / WAM state; the logon task uses
        /// it).
        #[arg(long)]
        pub user_context: bool,
        /// Join configuration captures instead of the registry and Task Scheduler (off
        /// Windows).
        #[command(flatten)]
        pub join: crate::joinconfig::Files,
    }
    partial:
    /// One layer's settings (flags, environment or file), every one optional.
    pub struct Settings;
    file:
    /// The settings file, as written by the Windows installer (every key optional, unknown
    /// keys refused).
    pub struct FileSettings;
    settings: {
        /// Collector gRPC URL [default: http://127.0.0.1:50051].
        collector: String {
            parse: parse::text,
            env: "DSREG_COLLECTOR",
            file: collector: String,
            flag: [value_name = "URL"],
        }
        /// Spool directory [default: %ProgramData%\dsreg-agent\spool on Windows,
        /// ~/.local/state/dsreg-agent/spool or /var/lib/dsreg-agent/spool elsewhere].
        spool_dir: PathBuf {
            parse: parse::path,
            env: "DSREG_SPOOL_DIR",
            file: spool_dir: PathBuf,
            flag: [value_name = "DIR"],
        }
        /// Time between collections for `run`, e.g. 60m [default: 60m; settings key
        /// interval_minutes, in minutes].
        interval: Duration {
            parse: parse::nonzero_duration,
            env: "DSREG_AGENT_INTERVAL",
            file: interval_minutes: u64 => parse::nonzero_minutes,
            flag: [value_name = "DURATION"],
        }
        /// Queue an unchanged snapshot after this long anyway, e.g. 6h; 0 queues every
        /// collection [default: 6h; settings key heartbeat_hours, in hours].
        heartbeat: Duration {
            parse: parse::duration,
            env: "DSREG_AGENT_HEARTBEAT",
            file: heartbeat_hours: u64 => parse::hours,
            flag: [value_name = "DURATION"],
        }
        /// Kill dsregcmd / wevtutil after this long, e.g. 30s [default: 30s; settings key
        /// status_timeout_seconds, in seconds].
        status_timeout: Duration {
            parse: parse::nonzero_duration,
            env: "DSREG_AGENT_STATUS_TIMEOUT",
            file: status_timeout_seconds: u64 => parse::nonzero_seconds,
            flag: [value_name = "DURATION"],
        }
        /// Allow plain http:// to a collector that is not on loopback (lab use only).
        /// `--insecure` alone means true; `--insecure=false` overrides the file or environment.
        insecure: bool {
            parse: parse::boolean,
            env: "DSREG_AGENT_INSECURE",
            file: insecure: bool,
            flag: [num_args = 0..=1, require_equals = true, default_missing_value = "true"],
        }
        /// Most reports kept in the spool; over it the overflow policy drops, oldest first
        /// [default: 1000].
        spool_max_reports: usize {
            parse: parse::whole::<usize>,
            env: "DSREG_AGENT_SPOOL_MAX_REPORTS",
            file: spool_max_reports: u64,
            flag: [value_name = "N"],
        }
        /// Most bytes of reports kept in the spool [default: 16777216].
        spool_max_bytes: u64 {
            parse: parse::whole::<u64>,
            env: "DSREG_AGENT_SPOOL_MAX_BYTES",
            file: spool_max_bytes: u64,
            flag: [value_name = "BYTES"],
        }
        /// File holding the agent token (sent as `authorization: Bearer`; never logged).
        token_file: PathBuf {
            parse: parse::path,
            env: "DSREG_AGENT_TOKEN_FILE",
            file: token_file: PathBuf,
            flag: [value_name = "FILE"],
        }
        /// PEM CA certificate(s) that signed an https:// collector's certificate
        /// [default: the platform's trust store].
        ca_file: PathBuf {
            parse: parse::path,
            env: "DSREG_AGENT_CA_FILE",
            file: ca_file: PathBuf,
            flag: [value_name = "FILE"],
        }
        /// PEM client certificate for a collector that requires mTLS (with --client-key).
        client_cert: PathBuf {
            parse: parse::path,
            env: "DSREG_AGENT_CLIENT_CERT",
            file: client_cert: PathBuf,
            flag: [value_name = "FILE"],
        }
        /// PEM private key of --client-cert.
        client_key: PathBuf {
            parse: parse::path,
            env: "DSREG_AGENT_CLIENT_KEY",
            file: client_key: PathBuf,
            flag: [value_name = "FILE"],
        }
        /// `run`: append log lines to FILE instead of standard error (a service has no
        /// console); renamed to FILE.old at start when over 10 MiB.
        log_file: PathBuf {
            parse: parse::path,
            env: "DSREG_AGENT_LOG_FILE",
            file: log_file: PathBuf,
            flag: [value_name = "FILE"],
        }
        /// The user-context handoff directory. With --user-context: write the report there
        /// for the device agent instead of delivering it (the user needs no token or client
        /// key; exit 0 once written). Without: the SYSTEM agent takes the user reports of this
        /// device from there before each delivery.
        user_inbox: PathBuf {
            parse: parse::path,
            env: "DSREG_AGENT_USER_INBOX",
            file: user_inbox: PathBuf,
            flag: [value_name = "DIR"],
        }
        /// The fleet's enroll secret: on first contact trade it for a device token bound to
        /// this machine id (kept in the spool directory as `device-token`) and report with
        /// that token; enroll again once when the collector no longer knows it.
        enroll_secret_file: PathBuf {
            parse: parse::path,
            env: "DSREG_AGENT_ENROLL_SECRET_FILE",
            file: enroll_secret_file: PathBuf,
            flag: [value_name = "FILE"],
        }
        /// The fleet's pseudonymization key: every user name and UPN is replaced by
        /// HMAC-SHA-256(key, name) in hex before the report is spooled, so none reaches the
        /// collector; the same user gives the same token on every device.
        pseudonymize_key_file: PathBuf {
            parse: parse::path,
            env: "DSREG_AGENT_PSEUDONYMIZE_KEY_FILE",
            file: pseudonymize_key_file: PathBuf,
            flag: [value_name = "FILE"],
        }
    }
}

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file could not be read.
    #[error("cannot read settings file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown key.
    #[error("settings file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the key.
        message: String,
    },
    /// A duration could not be read.
    #[error("bad duration {value:?}: use a number with a unit, like 30s, 15m, 6h or 2d")]
    Duration {
        /// The value given.
        value: String,
    },
    /// A setting's value does not parse or is out of range (names the layer and the key).
    #[error(transparent)]
    Value(#[from] dsreg_settings::InvalidValue),
}

/// Reads a settings file into its layer of settings.
pub fn load_file(path: &Path) -> Result<Settings, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file: FileSettings = toml::from_str(&text).map_err(|e| SettingsError::Parse {
        path: path.to_path_buf(),
        message: e.message().to_string(),
    })?;
    Ok(Settings::from_file(file)?)
}

/// The settings of `send` and `run`: `flags` over the `DSREG_*` environment `env` over the
/// settings file (`flags.config`, else `DSREG_AGENT_CONFIG`). Defaults are applied by the
/// caller ([`crate::service`]).
pub fn layered(flags: &Request, env: &HashMap<String, String>) -> Result<Settings, SettingsError> {
    let path = flags
        .config
        .clone()
        .or_else(|| env.get("DSREG_AGENT_CONFIG").map(PathBuf::from));
    let file = match path {
        Some(p) => load_file(&p)?,
        None => Settings::default(),
    };
    let env = Settings::from_env(env)?;
    Ok(Settings::from_flags(flags).or(env).or(file))
}

/// The settings file keys with their environment variables, for `--help`.
pub fn file_keys_help() -> String {
    let keys: Vec<String> = Settings::SPECS
        .iter()
        .map(|s| format!("{} ({})", s.file_key, s.env))
        .collect();
    format!(
        "Settings file (--config or DSREG_AGENT_CONFIG, TOML) keys, with their environment \
         variables: {}. Flags win over the environment, which wins over the file.",
        keys.join(", ")
    )
}

/// Parses `30s`, `15m`, `6h`, `2d` (or a bare number of seconds); zero allowed. The grammar is
/// [`dsreg_settings::parse::duration`], shared with the collector.
pub fn parse_duration(value: &str) -> Result<Duration, SettingsError> {
    parse::duration(value).map_err(|_| SettingsError::Duration {
        value: value.to_string(),
    })
}

/// The default spool directory: `%ProgramData%\dsreg-agent\spool` for SYSTEM and
/// `%LOCALAPPDATA%\dsreg-agent\spool` for a user on Windows; `/var/lib/dsreg-agent/spool` for
/// root and `$XDG_STATE_HOME/dsreg-agent/spool` (or `~/.local/state/…`) elsewhere.
pub fn default_spool_dir(env: &HashMap<String, String>, user_context: bool) -> PathBuf {
    let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let leaf = |base: PathBuf| base.join("dsreg-agent").join("spool");
    if cfg!(windows) {
        let base = if user_context {
            get("LOCALAPPDATA")
        } else {
            get("ProgramData").or_else(|| get("PROGRAMDATA"))
        };
        return leaf(base.unwrap_or_else(|| PathBuf::from(r"C:\ProgramData")));
    }
    if env.get("USER").is_some_and(|u| u == "root") && !user_context {
        return leaf(PathBuf::from("/var/lib"));
    }
    get("XDG_STATE_HOME")
        .or_else(|| get("HOME").map(|h| h.join(".local").join("state")))
        .map_or_else(|| leaf(std::env::temp_dir()), leaf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("6h").unwrap(), Duration::from_secs(21_600));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        let e = parse_duration("soon").unwrap_err();
        assert!(e.to_string().contains("\"soon\""), "{e}");
        assert!(parse_duration("5w").is_err());
    }

    #[test]
    fn file_rejects_unknown_keys_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        std::fs::write(
            &p,
            "collector = \"http://127.0.0.1:1\"\ninterval_minutes = 5\n",
        )
        .unwrap();
        let s = load_file(&p).unwrap();
        assert_eq!(s.collector.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(s.interval, Some(Duration::from_secs(300)));
        std::fs::write(&p, "colector = \"x\"\n").unwrap();
        let e = load_file(&p).unwrap_err().to_string();
        assert!(e.contains("colector"), "{e}");
    }

    #[test]
    fn spool_dir_defaults() {
        let env: HashMap<String, String> = [
            ("HOME".to_string(), "/home/it".to_string()),
            ("USER".to_string(), "it".to_string()),
        ]
        .into();
        if !cfg!(windows) {
            assert_eq!(
                default_spool_dir(&env, false),
                PathBuf::from("/home/it/.local/state/dsreg-agent/spool")
            );
            let root: HashMap<String, String> = [("USER".to_string(), "root".to_string())].into();
            assert_eq!(
                default_spool_dir(&root, false),
                PathBuf::from("/var/lib/dsreg-agent/spool")
            );
        }
    }

    #[test]
    fn layers_merge_flags_over_env_over_file_and_name_the_bad_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        std::fs::write(
            &p,
            "collector = \"http://file:1\"\nheartbeat_hours = 2\ninterval_minutes = 5\n",
        )
        .unwrap();
        let env: HashMap<String, String> = [
            ("DSREG_AGENT_CONFIG", p.to_str().unwrap()),
            ("DSREG_COLLECTOR", "http://env:1"),
            ("DSREG_AGENT_HEARTBEAT", "3h"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let flags = Request {
            heartbeat: Some(Duration::from_secs(60)),
            ..Request::default()
        };
        let s = layered(&flags, &env).unwrap();
        assert_eq!(
            s.collector.as_deref(),
            Some("http://env:1"),
            "env beats file"
        );
        assert_eq!(s.heartbeat, Some(Duration::from_secs(60)), "flag beats env");
        assert_eq!(
            s.interval,
            Some(Duration::from_secs(300)),
            "file beats default"
        );

        std::fs::write(&p, "interval_minutes = 0\n").unwrap();
        let e = layered(&Request::default(), &env).unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid interval_minutes (config file): \"0\": must be greater than zero"
        );
        let env: HashMap<String, String> = [(
            "DSREG_AGENT_SPOOL_MAX_REPORTS".to_string(),
            "many".to_string(),
        )]
        .into();
        let e = layered(&Request::default(), &env).unwrap_err().to_string();
        assert!(
            e.contains("DSREG_AGENT_SPOOL_MAX_REPORTS") && e.contains("many"),
            "{e}"
        );
    }

    #[test]
    fn every_setting_has_an_env_variable_and_a_file_key_in_help() {
        let help = file_keys_help();
        assert_eq!(Settings::SPECS.len(), 16);
        for spec in Settings::SPECS {
            assert!(spec.env.starts_with("DSREG_"), "{spec:?}");
            assert!(
                help.contains(spec.file_key) && help.contains(spec.env),
                "{spec:?}"
            );
        }
    }
}
