//! Certificate credentials: the signed client assertion (RFC 7523 JWT) Entra accepts instead
//! of a client secret.
//!
//! Header `{"alg":"RS256","typ":"JWT","x5t":…,"x5t#S256":…}` (SHA-1 and SHA-256 thumbprints of
//! the certificate, base64url); claims `aud` = the token endpoint, `iss` = `sub` = the client
//! id, a random `jti`, `nbf`/`iat` = now, `exp` = now + 10 min. Signed with the PKCS#8 RSA key
//! through ring (the same crypto provider as the collector's TLS). The key bytes live only
//! for the call; nothing of them is logged.

use std::path::Path;

use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use serde_json::json;

use super::GraphError;
use super::token::unix_now;

/// A client assertion for `client_id` at the token endpoint `audience`.
pub fn client_assertion(
    cert: &Path,
    key: &Path,
    client_id: &str,
    audience: &str,
) -> Result<String, GraphError> {
    let cert_der = CertificateDer::from_pem_file(cert).map_err(|e| {
        GraphError::Config(format!(
            "cannot read --graph-client-cert {}: {e}",
            cert.display()
        ))
    })?;
    let key_der = PrivatePkcs8KeyDer::from_pem_file(key).map_err(|e| {
        GraphError::Config(format!(
            "cannot read --graph-client-key {} (a PKCS#8 PEM \"PRIVATE KEY\"): {e}",
            key.display()
        ))
    })?;
    let pair = RsaKeyPair::from_pkcs8(key_der.secret_pkcs8_der()).map_err(|e| {
        GraphError::Config(format!(
            "--graph-client-key {} is not a usable RSA key: {e}",
            key.display()
        ))
    })?;
    let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, cert_der.as_ref());
    let sha256 = ring::digest::digest(&ring::digest::SHA256, cert_der.as_ref());
    let header = json!({
        "alg": "RS256",
        "typ": "JWT",
        "x5t": b64url(sha1.as_ref()),
        "x5t#S256": b64url(sha256.as_ref()),
    });
    let now = unix_now();
    let claims = json!({
        "aud": audience,
        "iss": client_id,
        "sub": client_id,
        "jti": uuid::Uuid::now_v7().to_string(),
        "nbf": now,
        "iat": now,
        "exp": now + 600,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut sig = vec![0u8; pair.public().modulus_len()];
    pair.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        signing_input.as_bytes(),
        &mut sig,
    )
    .map_err(|_| GraphError::Config("signing the client assertion failed".into()))?;
    Ok(format!("{signing_input}.{}", b64url(&sig)))
}

/// Base64url without padding (RFC 4648 §5), as JWTs use.
pub fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_rfc4648_vectors() {
        assert_eq!(b64url(b""), "");
        assert_eq!(b64url(b"f"), "Zg");
        assert_eq!(b64url(b"fo"), "Zm8");
        assert_eq!(b64url(b"foo"), "Zm9v");
        assert_eq!(b64url(b"foob"), "Zm9vYg");
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
    }
}
