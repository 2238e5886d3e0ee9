//! Agent settings for `send` and `run`: defaults ← TOML file ← flags.
//!
//! | key | flag | default |
//! | --- | --- | --- |
//! | `collector` | `--collector URL` | `http://127.0.0.1:50051` |
//! | `spool_dir` | `--spool-dir DIR` | per platform, see [`default_spool_dir`] |
//! | `interval_minutes` | `--interval DURATION` | 60 min |
//! | `heartbeat_hours` | `--heartbeat DURATION` | 6 h |
//! | `status_timeout_seconds` | `--status-timeout DURATION` | 30 s |
//! | `insecure` | `--insecure` | false |
//! | `token_file` | `--token-file FILE` | none: no token sent |
//! | `ca_file` | `--ca-file FILE` | none: the platform's trust store |
//! | `client_cert` | `--client-cert FILE` | none: no client certificate (mTLS off) |
//! | `client_key` | `--client-key FILE` | none |
//! | `log_file` | `--log-file FILE` (`run`) | none: standard error |
//! | `user_inbox` | `--user-inbox DIR` | none: no handoff (see [`crate::inbox`]) |
//! | `spool_max_reports` | — | 1000 |
//! | `spool_max_bytes` | — | 16 MiB |
//! | `enroll_secret_file` | `--enroll-secret-file FILE` | none: no enrollment (see [`crate::enroll`]) |
//! | `pseudonymize_key_file` | `--pseudonymize-key-file FILE` | none: user names sent as they are (see [`crate::pseudonym`]) |
//!
//! The loader takes the environment as a parameter so tests never mutate the process's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The settings file, as written by the Windows installer (every key optional).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    /// Collector gRPC URL.
    pub collector: Option<String>,
    /// Spool directory.
    pub spool_dir: Option<PathBuf>,
    /// Minutes between collections.
    pub interval_minutes: Option<u64>,
    /// Hours between heartbeats of an unchanged state.
    pub heartbeat_hours: Option<u64>,
    /// Seconds before `dsregcmd` / `wevtutil` are killed.
    pub status_timeout_seconds: Option<u64>,
    /// Allow plain HTTP to a non-loopback collector.
    pub insecure: Option<bool>,
    /// Spool bound: reports.
    pub spool_max_reports: Option<usize>,
    /// Spool bound: bytes.
    pub spool_max_bytes: Option<u64>,
    /// File holding the agent's bearer token, sent on every call.
    pub token_file: Option<PathBuf>,
    /// PEM CA certificate(s) trusted for an `https://` collector.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mTLS.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// `run`: append log lines here instead of standard error (a service has no console).
    pub log_file: Option<PathBuf>,
    /// The user-context handoff directory (written by user runs, ingested by SYSTEM).
    pub user_inbox: Option<PathBuf>,
    /// The enroll secret: enroll for a device token of our own and report with it.
    pub enroll_secret_file: Option<PathBuf>,
    /// The fleet key: replace user names and UPNs with keyed hashes before spooling.
    pub pseudonymize_key_file: Option<PathBuf>,
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
}

/// Reads a settings file.
pub fn load_file(path: &Path) -> Result<FileSettings, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| SettingsError::Parse {
        path: path.to_path_buf(),
        message: e.message().to_string(),
    })
}

/// Parses `30s`, `15m`, `6h`, `2d` (or a bare number of seconds).
pub fn parse_duration(value: &str) -> Result<Duration, SettingsError> {
    let v = value.trim();
    let bad = || SettingsError::Duration {
        value: value.to_string(),
    };
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => return Ok(Duration::from_millis(n)),
        "m" | "min" => n.checked_mul(60).ok_or_else(bad)?,
        "h" => n.checked_mul(3600).ok_or_else(bad)?,
        "d" => n.checked_mul(86_400).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(secs))
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
        assert_eq!(s.interval_minutes, Some(5));
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
}
