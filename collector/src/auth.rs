//! Bearer tokens: agent tokens for `Telemetry/Report`, reader tokens for `/api/v1/*`, optional
//! metrics tokens for `/metrics`.
//!
//! Token files hold one token per line; blank lines and `#` comments are ignored; surrounding
//! whitespace is trimmed. Only SHA-256 digests are kept in memory, and a presented token is
//! compared against every digest of its role in constant time ([`ct_eq`] on equal-length
//! digests, so neither the content nor the length of a token leaks through timing, and the
//! loop never stops early). The roles are separate sets: an agent token on the API, or a
//! reader token on gRPC, is simply not in the set and is answered exactly like a wrong token
//! (UNAUTHENTICATED / 401), so a probe learns nothing about which role a token has.
//!
//! A role without a file is open (the loopback default of DESIGN §6; [`crate::config`]
//! refuses to expose a listener without its tokens unless `--insecure`). On SIGHUP every file
//! is read again ([`Auth::reload`]); a file that became unreadable or empty keeps the previous
//! tokens, so a bad edit never locks the fleet out. Logs show counts, never tokens.
//! `/healthz`, `/readyz` and `grpc.health.v1` never need a token.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use crate::config::Config;
use crate::enroll::{Credential, DeviceTokens};
use crate::error::Error;

/// Shortest token accepted in a token file (a guessable token is no protection).
pub const MIN_TOKEN_LEN: usize = 16;

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file could not be read.
    #[error("cannot read {setting} {path}: {source}")]
    Read {
        /// Which setting named the file.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file holds no token.
    #[error("{setting} {path} holds no token: every client of this role would be refused")]
    Empty {
        /// Which setting named the file.
        setting: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A token is too short (the message names the line, never the token).
    #[error(
        "{setting} {path} line {line}: token shorter than {MIN_TOKEN_LEN} characters; use a \
         long random value (e.g. `openssl rand -hex 32`)"
    )]
    TooShort {
        /// Which setting named the file.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
}

/// The tokens of a file: lines trimmed, blank lines and `#` comments skipped, each with its
/// 1-based line number.
pub fn parse_tokens(text: &str) -> Vec<(usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// Constant-time equality of two digests.
pub fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// One role's token file and the digests read from it.
#[derive(Debug)]
pub struct TokenFile {
    setting: &'static str,
    path: PathBuf,
    digests: RwLock<Arc<Vec<[u8; 32]>>>,
}

impl TokenFile {
    /// Reads `path` (named by `setting` in messages).
    pub fn load(setting: &'static str, path: &Path) -> Result<TokenFile, AuthError> {
        let digests = read_digests(setting, path)?;
        Ok(TokenFile {
            setting,
            path: path.to_path_buf(),
            digests: RwLock::new(Arc::new(digests)),
        })
    }

    /// Reads the file again; on error the previous tokens stay. Returns the new count.
    pub fn reload(&self) -> Result<usize, AuthError> {
        let digests = read_digests(self.setting, &self.path)?;
        let n = digests.len();
        let mut slot = self.digests.write().unwrap_or_else(|p| p.into_inner());
        *slot = Arc::new(digests);
        Ok(n)
    }

    /// Tokens currently accepted.
    pub fn count(&self) -> usize {
        self.current().len()
    }

    fn current(&self) -> Arc<Vec<[u8; 32]>> {
        self.digests
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// True when `presented` is one of the tokens. Every digest is compared, in constant time.
    pub fn accepts(&self, presented: &str) -> bool {
        let d = digest(presented);
        let mut found = subtle::Choice::from(0);
        for known in self.current().iter() {
            found |= known.ct_eq(&d);
        }
        found.into()
    }
}

fn read_digests(setting: &'static str, path: &Path) -> Result<Vec<[u8; 32]>, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
        setting,
        path: path.to_path_buf(),
        source,
    })?;
    let tokens = parse_tokens(&text);
    if tokens.is_empty() {
        return Err(AuthError::Empty {
            setting,
            path: path.to_path_buf(),
        });
    }
    let mut out = Vec::with_capacity(tokens.len());
    for (line, t) in tokens {
        if t.chars().count() < MIN_TOKEN_LEN {
            return Err(AuthError::TooShort {
                setting,
                path: path.to_path_buf(),
                line,
            });
        }
        out.push(digest(t));
    }
    Ok(out)
}

/// The token of an `authorization: Bearer <token>` header value, if it has that form.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The token files of every role (a role without a file is open).
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// Agent tokens (`Telemetry/Report`).
    pub agent: Option<Arc<TokenFile>>,
    /// Reader tokens (`/api/v1/*`).
    pub reader: Option<Arc<TokenFile>>,
    /// Metrics tokens (`/metrics`).
    pub metrics: Option<Arc<TokenFile>>,
    /// The HTTP listener has TLS: the UI's login cookie is `Secure`.
    pub secure_cookie: bool,
    /// The enroll secret (`Telemetry/Enroll`); enrollment is on when set.
    pub enroll: Option<Arc<TokenFile>>,
    /// Admin tokens (the admin API); the admin API is off when unset.
    pub admin: Option<Arc<TokenFile>>,
}

impl Auth {
    /// Reads the token files named in `config`.
    pub fn load(config: &Config) -> Result<Auth, AuthError> {
        let load = |setting, p: &Option<PathBuf>| -> Result<_, AuthError> {
            p.as_deref()
                .map(|p| TokenFile::load(setting, p).map(Arc::new))
                .transpose()
        };
        let auth = Auth {
            agent: load("agent_token_file", &config.agent_token_file)?,
            reader: load("reader_token_file", &config.reader_token_file)?,
            metrics: load("metrics_token_file", &config.metrics_token_file)?,
            secure_cookie: config.tls_cert.is_some(),
            enroll: load("enroll_secret_file", &config.enroll_secret_file)?,
            admin: load("admin_token_file", &config.admin_token_file)?,
        };
        auth.log_counts("tokens loaded");
        Ok(auth)
    }

    fn files(&self) -> impl Iterator<Item = &Arc<TokenFile>> {
        [
            &self.agent,
            &self.reader,
            &self.metrics,
            &self.enroll,
            &self.admin,
        ]
        .into_iter()
        .flatten()
    }

    fn log_counts(&self, what: &str) {
        let count = |f: &Option<Arc<TokenFile>>| f.as_ref().map(|f| f.count());
        tracing::info!(
            agent = ?count(&self.agent),
            reader = ?count(&self.reader),
            metrics = ?count(&self.metrics),
            enroll = ?count(&self.enroll),
            admin = ?count(&self.admin),
            "{what} (counts; None = role open)"
        );
    }

    /// Reads every token file again (SIGHUP). A file that fails keeps its previous tokens.
    pub fn reload(&self) {
        for f in self.files() {
            match f.reload() {
                Ok(n) => tracing::info!(setting = f.setting, tokens = n, "token file reloaded"),
                Err(e) => {
                    tracing::warn!(error = %e, "token file not reloaded; previous tokens stay")
                }
            }
        }
    }

    /// Reloads on every SIGHUP until `stop` turns true (Unix; elsewhere it only waits).
    pub async fn reload_on_hangup(self, mut stop: watch::Receiver<bool>) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut hup = match signal(SignalKind::hangup()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGHUP; token files are read only at start");
                    return;
                }
            };
            loop {
                tokio::select! {
                    got = hup.recv() => {
                        if got.is_none() { return; }
                        tracing::info!("SIGHUP received: reloading token files");
                        self.reload();
                    }
                    changed = stop.changed() => {
                        if changed.is_err() || *stop.borrow() { return; }
                    }
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = stop.wait_for(|s| *s).await;
        }
    }

    /// The gRPC interceptor for the Telemetry service (no device tokens).
    pub fn grpc(&self) -> GrpcAuth {
        self.grpc_with(None)
    }

    /// The gRPC interceptor, also accepting the device tokens of `devices`.
    pub fn grpc_with(&self, devices: Option<Arc<DeviceTokens>>) -> GrpcAuth {
        GrpcAuth {
            agent: self.agent.clone(),
            enroll: self.enroll.clone(),
            devices,
        }
    }
}

fn refused(role: &str) -> Error {
    Error::Unauthenticated(format!(
        "missing or invalid {role} token (send `authorization: Bearer <token>`)"
    ))
}

/// Finds the credential of a `Telemetry` call and puts it in the request extensions as a
/// [`Credential`]; the methods decide what it allows (`Report`: open, fleet or device;
/// `Enroll`: the enroll secret). A token that is none of them is UNAUTHENTICATED here.
#[derive(Debug, Clone)]
pub struct GrpcAuth {
    agent: Option<Arc<TokenFile>>,
    enroll: Option<Arc<TokenFile>>,
    devices: Option<Arc<DeviceTokens>>,
}

impl GrpcAuth {
    /// The credential `presented` stands for; `None` when it must be refused.
    pub fn credential(&self, presented: Option<&str>) -> Option<Credential> {
        let open = self.agent.is_none() && self.enroll.is_none();
        let Some(t) = presented else {
            return open.then_some(Credential::Open);
        };
        if self.agent.as_ref().is_some_and(|f| f.accepts(t)) {
            return Some(Credential::Fleet);
        }
        if self.enroll.as_ref().is_some_and(|f| f.accepts(t)) {
            return Some(Credential::Enroll);
        }
        if let Some(machine) = self.devices.as_ref().and_then(|d| d.lookup(t)) {
            return Some(Credential::Device(machine));
        }
        open.then_some(Credential::Open)
    }
}

impl tonic::service::Interceptor for GrpcAuth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let presented = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(bearer);
        match self.credential(presented) {
            Some(c) => {
                req.extensions_mut().insert(c);
                Ok(req)
            }
            None => {
                tracing::debug!(remote = ?req.remote_addr(), "grpc call refused: bad agent token");
                Err(refused("agent").into())
            }
        }
    }
}

/// The HTTP guard: `/healthz` and `/readyz` are open; `/metrics` needs a metrics token when
/// metrics tokens are configured; every other path (the API, the UI and unknown paths alike)
/// needs a reader token when reader tokens are configured, as a bearer header or as the UI's
/// login cookie. The login page itself is open (it checks the token it is given), and a web
/// page asked for without a token is answered with a redirect to it instead of a JSON 401.
pub async fn http_guard(State(auth): State<Auth>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if crate::admin::is_admin_path(path) {
        // Off unless admin tokens are configured, even on loopback.
        let presented = req
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer);
        return match (&auth.admin, presented) {
            (Some(tokens), Some(t)) if tokens.accepts(t) => next.run(req).await,
            _ => {
                tracing::debug!(path, "http request refused: bad admin token");
                refused("admin").into_response()
            }
        };
    }
    let (role, tokens) = match path {
        "/healthz" | "/readyz" => return next.run(req).await,
        crate::ui::login::LOGIN_PATH | crate::ui::login::LOGOUT_PATH => {
            req.extensions_mut().insert(auth.clone());
            return next.run(req).await;
        }
        "/metrics" => ("metrics", &auth.metrics),
        _ => ("reader", &auth.reader),
    };
    let Some(tokens) = tokens else {
        return next.run(req).await;
    };
    let presented = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    let accepted = match presented {
        Some(t) => tokens.accepts(t),
        None if role == "reader" => {
            crate::ui::login::cookie_token(req.headers()).is_some_and(|t| tokens.accepts(&t))
        }
        None => false,
    };
    if accepted {
        return next.run(req).await;
    }
    tracing::debug!(path, "http request refused: bad {role} token");
    if role == "reader"
        && crate::ui::login::is_page(path)
        && req.method() == axum::http::Method::GET
    {
        return crate::ui::login::login_redirect(req.uri());
    }
    refused(role).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_lines() {
        let text = "# agents\n\n  tok-aaaaaaaaaaaaaaaa  \r\n#tok-commented-out-xxxx\ntok-bbbbbbbbbbbbbbbb\n";
        assert_eq!(
            parse_tokens(text),
            vec![(3, "tok-aaaaaaaaaaaaaaaa"), (5, "tok-bbbbbbbbbbbbbbbb")]
        );
        assert!(parse_tokens("# only a comment\n \n").is_empty());
    }

    #[test]
    fn constant_time_compare_of_digests() {
        let a = digest("tok-aaaaaaaaaaaaaaaa");
        assert!(ct_eq(&a, &digest("tok-aaaaaaaaaaaaaaaa")));
        assert!(!ct_eq(&a, &digest("tok-aaaaaaaaaaaaaaab")));
        assert!(!ct_eq(&a, &digest("tok-aaaaaaaaaaaaaaaa ")));
        assert!(!ct_eq(&a, &digest("")));
    }

    #[test]
    fn files_load_accept_reload_and_refuse_bad_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agents");
        std::fs::write(&p, "tok-aaaaaaaaaaaaaaaa\ntok-bbbbbbbbbbbbbbbb\n").unwrap();
        let f = TokenFile::load("agent_token_file", &p).unwrap();
        assert_eq!(f.count(), 2);
        assert!(f.accepts("tok-bbbbbbbbbbbbbbbb"));
        assert!(!f.accepts("tok-cccccccccccccccc"));
        assert!(!f.accepts(""));

        std::fs::write(&p, "tok-cccccccccccccccc\n").unwrap();
        assert_eq!(f.reload().unwrap(), 1);
        assert!(f.accepts("tok-cccccccccccccccc") && !f.accepts("tok-aaaaaaaaaaaaaaaa"));

        // A broken edit keeps the previous tokens, and the error never shows a token.
        std::fs::write(&p, "short\n").unwrap();
        let e = f.reload().unwrap_err().to_string();
        assert!(e.contains("line 1") && !e.contains("short\""), "{e}");
        std::fs::write(&p, "# nothing\n").unwrap();
        assert!(matches!(f.reload(), Err(AuthError::Empty { .. })));
        std::fs::remove_file(&p).unwrap();
        assert!(matches!(f.reload(), Err(AuthError::Read { .. })));
        assert!(f.accepts("tok-cccccccccccccccc"));
    }

    #[test]
    fn bearer_header_forms() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }
}
