//! HTTP clients of the end-to-end tests: [`http_get`] (ureq, any status, 10 s bound) and
//! [`raw_get`], a hand-written HTTP/1.1 GET that sends the request target byte for byte (no
//! client-side normalisation of `..`, `%2e` or `%00`) for the hostile-input tests.
//!
//! Also the pieces both collector tiers (process and in-process) share: [`ready`], the
//! `/readyz` probe, and [`get_json`].
//!
//! Invariants: every call is bounded by a 10 s timeout; only loopback addresses are used.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context as _, bail};

/// The blocking HTTP client of the tests: any status is an answer, 10 s overall bound.
pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// GET `url`; the status and body (any status, including 4xx/5xx).
pub fn http_get(url: &str) -> anyhow::Result<(u16, String)> {
    let mut resp = agent()
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .read_to_string()
        .with_context(|| format!("read body of {url}"))?;
    Ok((status, body))
}

/// A response read by [`raw_get`].
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// `content-type` header value (lower-case), `""` when absent.
    pub content_type: String,
    /// The body (lossy UTF-8).
    pub body: String,
}

/// `GET {target} HTTP/1.1` on `addr`, the target sent exactly as given (it may contain `..`,
/// `%00`, `%2f`, 100 kB keys). Bounded by a 10 s read timeout.
/// Whether the collector on `http` answers `/readyz` with 200 (over HTTPS trusting `https_ca`
/// when given).
pub fn ready(http: SocketAddr, https_ca: Option<&std::path::Path>) -> bool {
    let probe = match https_ca {
        Some(ca) => crate::tls::https_get(&format!("https://{http}/readyz"), ca, None),
        None => http_get(&format!("http://{http}/readyz")),
    };
    matches!(probe, Ok((200, _)))
}

/// GET `url`: status and JSON body (`Null` when not JSON).
pub fn get_json(url: &str) -> anyhow::Result<(u16, serde_json::Value)> {
    let (status, body) = http_get(url)?;
    Ok((
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    ))
}

pub fn raw_get(addr: SocketAddr, target: &str) -> anyhow::Result<RawResponse> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).context("read response")?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> anyhow::Result<RawResponse> {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!(
            "no header end in {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(200)])
        );
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad status line in {head:?}"))?;
    let mut content_type = String::new();
    let mut chunked = false;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
        if k == "content-type" {
            content_type = v;
        } else if k == "transfer-encoding" && v.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = raw[split + 4..].to_vec();
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(RawResponse {
        status,
        content_type,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            bail!("truncated chunk header");
        };
        let size = std::str::from_utf8(&b[..eol])?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_plain_and_chunked() {
        let r = parse_response(
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\r\n{\"error\":\"x\"}",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_str()), (400, "{\"error\":\"x\"}"));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, "abcde");
    }
}
