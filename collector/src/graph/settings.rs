//! The Graph sync settings: validation of the raw values and the all-or-nothing rule.
//!
//! Invariants of a loaded [`crate::config::Config`]: the sync is either off (no `graph_*`
//! identity setting given) or complete — tenant, client id and exactly one credential (a
//! secret file, or a certificate with its key). Base URLs are `https://…`, or `http://…` on a
//! loopback host only (the tests' stand-in Graph), have no query or fragment, and are kept
//! without a trailing slash. Tenant and client ids are restricted to the characters of a GUID
//! or a domain name, because they are pasted into URL paths.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Config, ConfigError};

/// How the collector proves its identity to Entra.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A client secret, read from this file at each token request.
    SecretFile(PathBuf),
    /// A certificate (PEM) and its PKCS#8 RSA key (PEM): a signed client assertion.
    Certificate {
        /// The certificate registered on the app.
        cert: PathBuf,
        /// Its private key.
        key: PathBuf,
    },
}

/// The complete settings of the Graph sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphSettings {
    /// Entra tenant (GUID or domain).
    pub tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
    /// The credential.
    pub credential: Credential,
    /// Time between rounds.
    pub interval: Duration,
    /// Token endpoint base (no trailing slash).
    pub login_url: String,
    /// Graph base (no trailing slash).
    pub graph_url: String,
}

/// A tenant or client id: 1–128 characters of `[A-Za-z0-9.-]` (GUIDs and domain names).
pub(crate) fn graph_name(v: &str) -> Result<String, String> {
    let v = v.trim();
    if v.is_empty() || v.len() > 128 {
        return Err("must be 1 to 128 characters".into());
    }
    if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err("expected a GUID or a domain name (letters, digits, '-', '.')".into());
    }
    Ok(v.to_string())
}

/// A base URL: `https://host[:port][/path]`, or `http://` on a loopback host only.
pub(crate) fn graph_base_url(v: &str) -> Result<String, String> {
    let v = v.trim().trim_end_matches('/');
    let (scheme, rest) = v
        .split_once("://")
        .ok_or_else(|| "not a URL (expected https://host)".to_string())?;
    if rest.is_empty() || rest.contains(['?', '#', '@', ' ']) {
        return Err("expected https://host[:port][/path] without query, fragment or user".into());
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(v.to_string()),
        "http" if is_loopback_host(rest) => Ok(v.to_string()),
        "http" => Err("http:// is allowed on a loopback host only; use https://".into()),
        _ => Err("expected an https:// URL".into()),
    }
}

/// True when the authority of `rest` (after `scheme://`) is a loopback host.
fn is_loopback_host(rest: &str) -> bool {
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Config {
    /// The Graph sync settings, or `None` when the sync is off.
    pub fn graph(&self) -> Option<GraphSettings> {
        let credential = match (
            &self.graph_client_secret_file,
            &self.graph_client_cert,
            &self.graph_client_key,
        ) {
            (Some(s), None, None) => Credential::SecretFile(s.clone()),
            (None, Some(c), Some(k)) => Credential::Certificate {
                cert: c.clone(),
                key: k.clone(),
            },
            _ => return None,
        };
        Some(GraphSettings {
            tenant_id: self.graph_tenant_id.clone()?,
            client_id: self.graph_client_id.clone()?,
            credential,
            interval: self.graph_interval,
            login_url: self.graph_login_url.clone(),
            graph_url: self.graph_url.clone(),
        })
    }

    /// The all-or-nothing rule of the Graph settings (called by `Config::load`).
    pub(crate) fn check_graph(&self) -> Result<(), ConfigError> {
        let any = self.graph_tenant_id.is_some()
            || self.graph_client_id.is_some()
            || self.graph_client_secret_file.is_some()
            || self.graph_client_cert.is_some()
            || self.graph_client_key.is_some();
        if !any {
            return Ok(());
        }
        let fail = |m: &str| Err(ConfigError::Incomplete(m.to_string()));
        if self.graph_tenant_id.is_none() || self.graph_client_id.is_none() {
            return fail(
                "the Graph sync needs --graph-tenant-id and --graph-client-id \
                 (graph_tenant_id, graph_client_id) together with a credential",
            );
        }
        let secret = self.graph_client_secret_file.is_some();
        let cert = self.graph_client_cert.is_some();
        let key = self.graph_client_key.is_some();
        if cert != key {
            return fail(
                "--graph-client-cert and --graph-client-key (graph_client_cert, \
                 graph_client_key) go together: give both or neither",
            );
        }
        match (secret, cert) {
            (true, true) => fail(
                "give either --graph-client-secret-file or --graph-client-cert/--graph-client-key, \
                 not both",
            ),
            (false, false) => fail(
                "the Graph sync needs a credential: --graph-client-secret-file \
                 (graph_client_secret_file) or --graph-client-cert/--graph-client-key",
            ),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::Parser;

    use super::*;
    use crate::config::Args;

    /// Parses flags as the binary does (typed, checked by the settings' own parsers).
    fn flags(argv: &[&str]) -> Result<Args, String> {
        Args::try_parse_from(std::iter::once("dsreg-collector").chain(argv.iter().copied()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn urls_are_https_or_loopback_http() {
        assert_eq!(
            graph_base_url("https://graph.microsoft.us/").unwrap(),
            "https://graph.microsoft.us"
        );
        assert!(graph_base_url("http://127.0.0.1:8080").is_ok());
        assert!(graph_base_url("http://[::1]:8080/x").is_ok());
        assert!(graph_base_url("http://localhost").is_ok());
        let err = graph_base_url("http://graph.example.com").unwrap_err();
        assert!(err.contains("loopback"), "{err}");
        assert!(graph_base_url("ftp://x").is_err());
        assert!(graph_base_url("https://x/?a=b").is_err());
        assert!(graph_base_url("graph.microsoft.com").is_err());
    }

    #[test]
    fn graph_settings_are_all_or_nothing_and_layered() {
        let cfg = Config::load(&Args::default(), &HashMap::new()).unwrap();
        assert_eq!(cfg.graph(), None, "off by default");
        let env: HashMap<String, String> = [
            ("DSREG_GRAPH_TENANT_ID", "contoso.onmicrosoft.com"),
            (
                "DSREG_GRAPH_CLIENT_ID",
                "11111111-2222-3333-4444-555555555555",
            ),
            ("DSREG_GRAPH_CLIENT_SECRET_FILE", "/etc/dsreg/graph-secret"),
            ("DSREG_GRAPH_INTERVAL", "5m"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let args = flags(&["--graph-url", "http://127.0.0.1:9/"]).unwrap();
        let g = Config::load(&args, &env).unwrap().graph().unwrap();
        assert_eq!(g.interval, Duration::from_secs(300));
        assert_eq!(g.graph_url, "http://127.0.0.1:9");
        assert_eq!(g.login_url, "https://login.microsoftonline.com");
        assert_eq!(
            g.credential,
            Credential::SecretFile("/etc/dsreg/graph-secret".into())
        );

        // The file layer, under env and flags.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "graph_tenant_id = \"from-file\"\ngraph_client_id = \"c\"\n\
             graph_client_cert = \"c.pem\"\ngraph_client_key = \"k.pem\"\n\
             graph_interval = \"1h\"\ngraph_url = \"https://graph.microsoft.us\"\n",
        )
        .unwrap();
        let args = Args {
            config: Some(file),
            ..Args::default()
        };
        let mut env = HashMap::new();
        env.insert("DSREG_GRAPH_TENANT_ID".to_string(), "from-env".to_string());
        let g = Config::load(&args, &env).unwrap().graph().unwrap();
        assert_eq!(g.tenant_id, "from-env", "env beats file");
        assert_eq!(g.interval, Duration::from_secs(3600));
        assert_eq!(g.graph_url, "https://graph.microsoft.us");
        assert_eq!(
            g.credential,
            Credential::Certificate {
                cert: "c.pem".into(),
                key: "k.pem".into()
            }
        );
        assert_eq!(
            crate::graph::scope(&g.graph_url),
            "https://graph.microsoft.us/.default",
            "national clouds ask for their own Graph"
        );

        let args = flags(&["--graph-tenant-id", "t"]).unwrap();
        let err = Config::load(&args, &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("--graph-client-id"), "{err}");
        let args = Args {
            graph_client_cert: Some("c.pem".into()),
            ..args
        };
        let mut env = HashMap::new();
        env.insert("DSREG_GRAPH_CLIENT_ID".to_string(), "c".to_string());
        let err = Config::load(&args, &env).unwrap_err().to_string();
        assert!(err.contains("--graph-client-key"), "{err}");
        let err = flags(&["--graph-url", "http://graph.example.com"]).unwrap_err();
        assert!(
            err.contains("--graph-url") && err.contains("graph.example.com"),
            "{err}"
        );
        let err = flags(&["--graph-tenant-id", "a/b"]).unwrap_err();
        assert!(err.contains("--graph-tenant-id"), "{err}");
        let env = HashMap::from([("DSREG_GRAPH_TENANT_ID".to_string(), "a/b".to_string())]);
        let err = Config::load(&Args::default(), &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("DSREG_GRAPH_TENANT_ID"), "{err}");
    }
}
