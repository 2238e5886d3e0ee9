//! OAuth 2.0 client-credentials tokens for Microsoft Graph (Entra v2.0 token endpoint).
//!
//! Invariants: the secret (or the private key) is read from its file at each token request
//! and lives only in that request's form — it is never logged, echoed or kept; a token is
//! cached until [`EARLY`] before its `expires_in` and dropped at once when Graph answers 401;
//! an Entra error is turned into a message naming the setting to fix (AADSTS7000215 → the
//! secret file) with any echo of the secret redacted.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::http::Http;
use super::settings::{Credential, GraphSettings};
use super::{GraphError, scope};

/// A token is renewed this long before it expires.
pub const EARLY: Duration = Duration::from_secs(300);
/// Longest message taken from an Entra error description.
const DESCRIPTION_MAX: usize = 400;

/// The token cache of one sync.
pub struct TokenSource {
    settings: GraphSettings,
    cached: Option<(String, Instant)>,
    warned_permissions: bool,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: Option<String>,
    expires_in: Option<serde_json::Value>,
    error: Option<String>,
    error_description: Option<String>,
}

impl TokenSource {
    /// An empty cache for `settings`.
    pub fn new(settings: GraphSettings) -> TokenSource {
        TokenSource {
            settings,
            cached: None,
            warned_permissions: false,
        }
    }

    /// Forgets the cached token (Graph answered 401).
    pub fn invalidate(&mut self) {
        self.cached = None;
    }

    /// A valid token: the cached one, or a new one from the token endpoint.
    pub fn get(
        &mut self,
        http: &Http,
        on_retry: impl FnMut(&'static str),
    ) -> Result<String, GraphError> {
        if let Some((t, until)) = &self.cached
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let s = &self.settings;
        let url = format!("{}/{}/oauth2/v2.0/token", s.login_url, s.tenant_id);
        let scope = scope(&s.graph_url);
        let (secret, assertion);
        let mut form = vec![
            ("client_id", s.client_id.as_str()),
            ("scope", scope.as_str()),
            ("grant_type", "client_credentials"),
        ];
        match &s.credential {
            Credential::SecretFile(path) => {
                secret = read_secret(path, &mut self.warned_permissions)?;
                form.push(("client_secret", secret.as_str()));
            }
            Credential::Certificate { cert, key } => {
                assertion = super::assertion::client_assertion(cert, key, &s.client_id, &url)?;
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ));
                form.push(("client_assertion", assertion.as_str()));
            }
        }
        let reply = http.retrying(|| http.post_form(&url, &form), on_retry)?;
        let redact = |text: &str| -> String {
            let mut t: String = text.chars().take(DESCRIPTION_MAX).collect();
            if let Some((_, v)) = form.iter().find(|(k, _)| *k == "client_secret")
                && !v.is_empty()
            {
                t = t.replace(v, "[redacted]");
            }
            t
        };
        let parsed: Option<TokenReply> = serde_json::from_str(&reply.body).ok();
        match parsed {
            Some(TokenReply {
                access_token: Some(token),
                expires_in,
                ..
            }) if reply.status == 200 && !token.is_empty() => {
                let secs = expires_in
                    .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
                    .unwrap_or(3599);
                let life = Duration::from_secs(secs);
                // Cache until EARLY before expiry; a very short life is used once, not cached.
                let until = Instant::now() + life.saturating_sub(EARLY.min(life / 2));
                self.cached = Some((token.clone(), until));
                tracing::debug!(expires_in = secs, "graph: token acquired");
                Ok(token)
            }
            Some(r) => Err(token_error(
                &self.settings,
                reply.status,
                r.error.as_deref().unwrap_or(""),
                &redact(r.error_description.as_deref().unwrap_or("")),
            )),
            None => Err(GraphError::Token(format!(
                "token endpoint {url} answered {} with a body that is not a token response",
                reply.status
            ))),
        }
    }
}

/// The error for an Entra token refusal, naming the setting that is probably wrong.
fn token_error(s: &GraphSettings, status: u16, error: &str, description: &str) -> GraphError {
    let first_line = description.lines().next().unwrap_or_default();
    let credential = match s.credential {
        Credential::SecretFile(_) => "--graph-client-secret-file (DSREG_GRAPH_CLIENT_SECRET_FILE)",
        Credential::Certificate { .. } => {
            "--graph-client-cert/--graph-client-key (DSREG_GRAPH_CLIENT_CERT/_KEY)"
        }
    };
    let hint = if description.contains("AADSTS7000215") {
        Some(format!("invalid client secret: check {credential}"))
    } else if description.contains("AADSTS7000222") {
        Some(format!(
            "the client secret has expired: renew it and update {credential}"
        ))
    } else if description.contains("AADSTS700027") || description.contains("AADSTS700024") {
        Some(format!(
            "the client assertion was refused: check {credential}"
        ))
    } else if description.contains("AADSTS700016") {
        Some(
            "application not found in the tenant: check --graph-client-id (DSREG_GRAPH_CLIENT_ID)"
                .into(),
        )
    } else if description.contains("AADSTS90002") || description.contains("AADSTS900023") {
        Some("tenant not found: check --graph-tenant-id (DSREG_GRAPH_TENANT_ID)".into())
    } else {
        None
    };
    match hint {
        Some(hint) => GraphError::Config(format!(
            "graph token refused ({status} {error}): {hint}: {first_line}"
        )),
        None => GraphError::Token(format!(
            "graph token refused ({status} {error}): {first_line}"
        )),
    }
}

/// Reads the client secret (first line, trimmed); WARNs once when others may read the file.
fn read_secret(path: &Path, warned: &mut bool) -> Result<String, GraphError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        GraphError::Config(format!(
            "cannot read --graph-client-secret-file {}: {e}",
            path.display()
        ))
    })?;
    #[cfg(unix)]
    if !*warned {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                file = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "graph client secret file is readable by group or others: chmod 600 it"
            );
        }
        *warned = true;
    }
    #[cfg(not(unix))]
    let _ = warned;
    let secret = text.lines().next().unwrap_or_default().trim().to_string();
    if secret.is_empty() {
        return Err(GraphError::Config(format!(
            "--graph-client-secret-file {} is empty",
            path.display()
        )));
    }
    Ok(secret)
}

/// Seconds since the unix epoch (JWT times).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
