//! Helpers for the hostile-input, fault and soak tests (`api_abuse`, `grpc_abuse`, `faults`,
//! `soak`): a raw HTTP/1.1 GET that sends the request target byte for byte (no client-side
//! normalisation of `..`, `%2e` or `%00`), Prometheus text parsing, `/proc` samples, a bounded
//! wait for a process that must exit, and a tiny deterministic PRNG so "random" kill points
//! are reproducible.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

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

/// The sample lines of metric `name` (exactly that name, with or without labels).
pub fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .collect()
}

/// The sum of every sample of metric `name`.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    samples(text, name)
        .iter()
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The distinct values of `label` on metric `name`.
pub fn label_values(text: &str, name: &str, label: &str) -> BTreeSet<String> {
    let needle = format!("{label}=\"");
    samples(text, name)
        .iter()
        .filter_map(|l| {
            let labels = l.split_once('{')?.1.rsplit_once('}')?.0;
            // `,code="…"` or `{code="…"` — label values here never contain `"`.
            let at = labels
                .match_indices(&needle)
                .find(|(i, _)| *i == 0 || labels.as_bytes()[i - 1] == b',')?
                .0;
            let rest = &labels[at + needle.len()..];
            Some(rest[..rest.find('"')?].to_string())
        })
        .collect()
}

/// `VmRSS` of a process in kB, from `/proc/<pid>/status` (Linux).
pub fn vm_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs `cmd` (stdout and stderr captured together into `log`) and waits at most `timeout`
/// for it to exit; a process still running then is killed and reported as an error.
pub fn run_to_exit(
    mut cmd: Command,
    log: &Path,
    timeout: Duration,
) -> anyhow::Result<(ExitStatus, String)> {
    let file = std::fs::File::create(log)?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .context("spawn")?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((status, std::fs::read_to_string(log).unwrap_or_default()));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "still running after {timeout:?}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A small deterministic PRNG (64-bit LCG, high bits out): reproducible "random" choices.
#[derive(Debug, Clone)]
pub struct Lcg(u64);

impl Lcg {
    /// Seeded generator.
    pub fn new(seed: u64) -> Lcg {
        Lcg(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 11
    }

    /// A value in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_sums() {
        let text = "# TYPE x gauge\nx{phase=\"join\",code=\"0x1\"} 2\nx{code=\"other\"} 3\nxy{code=\"z\"} 9\nx 1\n";
        assert_eq!(metric_sum(text, "x"), 6.0);
        let codes: Vec<_> = label_values(text, "x", "code").into_iter().collect();
        assert_eq!(codes, ["0x1", "other"]);
    }

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
