//! Pseudonymized users (`--pseudonymize-key-file`): every user name and UPN the agent would
//! send is replaced by HMAC-SHA-256(fleet key, name) in lower-case hex, before the report is
//! spooled — so no user name ever reaches the disk queue, the wire or the collector.
//!
//! Invariants:
//! - The same user gives the same token on every device of the fleet (one key, and names are
//!   normalised: trimmed and lower-cased, as UPNs and `DOMAIN\user` are case-insensitive), so
//!   the collector can still count "devices of the same user"; without the key a token cannot
//!   be reversed or confirmed (a dictionary of UPNs is no help without the key).
//! - What is replaced: the account fields (`diagnostics.executing_account_name`, the proxy
//!   section's executing account, `sso_state.acquire_prt_diagnostics.user_identity`), every
//!   value of an `extra` line whose key names an account (user, account, identity, upn, e-mail,
//!   logon, sam), and, in every free-text field (other `extra` values, warnings, server
//!   messages, event messages and insertion strings, event server responses), every substring
//!   shaped like `local@domain.tld` (UPN or e-mail). Codes, tenant ids and host names stay.
//! - Idempotent: a value that already is a token (64 lower-case hex digits) is left as it is,
//!   so a report pseudonymized by a user run and again at the SYSTEM agent's spool keeps one
//!   token per user.
//! - The key file is read once per run; a key shorter than 16 bytes is refused.

use std::path::{Path, PathBuf};

use dsreg_proto::v1::{EventRecord, Report, ServerResponse, Snapshot};
use sha2::{Digest, Sha256};

/// Shortest key accepted.
pub const MIN_KEY_LEN: usize = 16;

/// Why the key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PseudonymError {
    /// The file could not be read.
    #[error("cannot read --pseudonymize-key-file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The key is too short (the message never shows it).
    #[error(
        "--pseudonymize-key-file {path}: key shorter than {MIN_KEY_LEN} bytes; use a long \
         random value shared by the fleet (e.g. `openssl rand -hex 32`)"
    )]
    TooShort {
        /// The file.
        path: PathBuf,
    },
}

/// Replaces user names with keyed hashes.
#[derive(Clone)]
pub struct Pseudonymizer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(<key redacted>)")
    }
}

/// HMAC-SHA-256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| block.iter().map(move |k| k ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn is_account_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["user", "account", "identity", "upn", "mail", "logon", "sam"]
        .iter()
        .any(|w| k.contains(w))
}

fn local_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._%+-'".contains(c)
}

fn domain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '-'
}

impl Pseudonymizer {
    /// A pseudonymizer with `key`.
    pub fn new(key: &[u8]) -> Pseudonymizer {
        Pseudonymizer { key: key.to_vec() }
    }

    /// Reads the key from `path` (surrounding whitespace trimmed).
    pub fn from_file(path: &Path) -> Result<Pseudonymizer, PseudonymError> {
        let bytes = std::fs::read(path).map_err(|source| PseudonymError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let key = bytes.trim_ascii();
        if key.len() < MIN_KEY_LEN {
            return Err(PseudonymError::TooShort {
                path: path.to_path_buf(),
            });
        }
        Ok(Pseudonymizer::new(key))
    }

    /// The token of a user name: HMAC-SHA-256 of the trimmed, lower-cased name, hex. A value
    /// that already is a token is returned as it is.
    pub fn token(&self, name: &str) -> String {
        let norm = name.trim().to_lowercase();
        if norm.len() == 64 && norm.bytes().all(|b| b.is_ascii_hexdigit()) {
            return norm;
        }
        hmac_sha256(&self.key, norm.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn field(&self, v: &mut Option<String>) {
        if let Some(s) = v.as_mut()
            && !s.trim().is_empty()
        {
            *s = self.token(s);
        }
    }

    /// `text` with every `local@domain.tld` replaced by its token.
    pub fn scrub(&self, text: &str) -> String {
        let chars: Vec<char> = text.chars().collect();
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        let mut copied = 0;
        while i < chars.len() {
            if chars[i] != '@' {
                i += 1;
                continue;
            }
            let mut start = i;
            while start > copied && local_char(chars[start - 1]) {
                start -= 1;
            }
            let mut end = i + 1;
            while end < chars.len() && domain_char(chars[end]) {
                end += 1;
            }
            // Trailing dots/hyphens belong to the sentence, not the domain.
            while end > i + 1 && matches!(chars[end - 1], '.' | '-') {
                end -= 1;
            }
            let domain: String = chars[i + 1..end].iter().collect();
            if start < i && domain.contains('.') && !domain.starts_with('.') {
                out.extend(&chars[copied..start]);
                let name: String = chars[start..end].iter().collect();
                out.push_str(&self.token(&name));
                copied = end;
                i = end;
            } else {
                i += 1;
            }
        }
        out.extend(&chars[copied..]);
        out
    }

    fn scrub_opt(&self, v: &mut Option<String>) {
        if let Some(s) = v.as_mut() {
            *s = self.scrub(s);
        }
    }

    fn snapshot(&self, s: &mut Snapshot) {
        if let Some(d) = s.diagnostics.as_mut() {
            self.field(&mut d.executing_account_name);
            if let Some(p) = d.previous_registration.as_mut() {
                self.scrub_opt(&mut p.server_message);
            }
        }
        if let Some(p) = s.ie_proxy_config_for_system_account.as_mut() {
            self.field(&mut p.executing_account_name);
        }
        if let Some(prt) = s
            .sso_state
            .as_mut()
            .and_then(|sso| sso.acquire_prt_diagnostics.as_mut())
        {
            self.field(&mut prt.user_identity);
        }
        for a in &mut s.attempts {
            self.scrub_opt(&mut a.server_message);
        }
        for x in &mut s.extra {
            x.value = if is_account_key(&x.key) && !x.value.trim().is_empty() {
                self.token(&x.value)
            } else {
                self.scrub(&x.value)
            };
        }
        for w in &mut s.warnings {
            w.message = self.scrub(&w.message);
        }
    }

    fn server_response(&self, r: &mut ServerResponse) {
        self.scrub_opt(&mut r.message);
    }

    fn event(&self, e: &mut EventRecord) {
        self.scrub_opt(&mut e.message);
        self.scrub_opt(&mut e.server_error);
        if let Some(r) = e.server_response.as_mut() {
            self.server_response(r);
        }
        for (k, v) in e.data.iter_mut() {
            *v = if is_account_key(k) && !v.trim().is_empty() {
                self.token(v)
            } else {
                self.scrub(v)
            };
        }
    }

    /// Replaces every user name and UPN in `r` (see the module docs).
    pub fn apply(&self, r: &mut Report) {
        if let Some(s) = r.snapshot.as_mut() {
            self.snapshot(s);
        }
        for e in &mut r.events {
            self.event(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsreg_proto::v1::{Diagnostics, ExtraField, PrtDiagnostics, SsoState};

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn names_become_the_same_token_everywhere_and_codes_stay() {
        let p = Pseudonymizer::new(b"fleet-key-0123456789");
        let t = p.token("Alice@Contoso.com");
        assert_eq!(t, p.token(" alice@contoso.com "));
        assert_eq!(t.len(), 64);
        assert_ne!(
            t,
            Pseudonymizer::new(b"another-key-0123456789").token("alice@contoso.com")
        );
        let mut r = Report {
            snapshot: Some(Box::new(Snapshot {
                diagnostics: Some(Diagnostics {
                    executing_account_name: Some("CONTOSO\\alice, alice@contoso.com".into()),
                    ..Default::default()
                }),
                sso_state: Some(SsoState {
                    acquire_prt_diagnostics: Some(PrtDiagnostics {
                        user_identity: Some("alice@contoso.com".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                extra: vec![
                    ExtraField {
                        section: "Work Account 1".into(),
                        key: "WorkplaceUserEmail".into(),
                        value: "Alice@contoso.com".into(),
                    },
                    ExtraField {
                        section: "Diagnostic Data".into(),
                        key: "Trace".into(),
                        value: "error 0x801c03f2 for alice@contoso.com.".into(),
                    },
                ],
                ..Default::default()
            })),
            ..Default::default()
        };
        p.apply(&mut r);
        let once = r.clone();
        p.apply(&mut r);
        assert_eq!(r, once, "applying twice changes nothing");
        let text = format!("{r:?}").to_lowercase();
        assert!(!text.contains("alice"), "{text}");
        let s = r.snapshot.unwrap();
        assert_eq!(
            s.sso_state
                .unwrap()
                .acquire_prt_diagnostics
                .unwrap()
                .user_identity,
            Some(t.clone())
        );
        assert_eq!(s.extra[0].value, t);
        assert_eq!(s.extra[1].value, format!("error 0x801c03f2 for {t}."));
    }

    #[test]
    fn scrub_leaves_text_without_addresses_alone() {
        let p = Pseudonymizer::new(b"fleet-key-0123456789");
        for s in [
            "",
            "@",
            "no at here",
            "a@b",
            "x@.com",
            "@contoso.com",
            "C:\\Windows",
        ] {
            assert_eq!(p.scrub(s), s, "{s:?}");
        }
    }

    #[test]
    fn short_keys_are_refused_without_showing_them() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k");
        std::fs::write(&f, "short\n").unwrap();
        let e = Pseudonymizer::from_file(&f).unwrap_err().to_string();
        assert!(
            e.contains("--pseudonymize-key-file") && !e.contains("short\""),
            "{e}"
        );
        std::fs::write(&f, "0123456789abcdef0123\n").unwrap();
        assert!(Pseudonymizer::from_file(&f).is_ok());
    }
}
