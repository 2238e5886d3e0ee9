//! A browser-like HTTP client for the web UI tests: it does not follow redirects (so a test
//! sees each `303`/`Location` and `Set-Cookie`), keeps the one cookie the collector sets and
//! sends it back like a browser, posts forms, and trusts one CA for https.
//!
//! Invariants: every request is bounded by a 10 s timeout; the client keeps at most one
//! cookie (`name=value`, attributes stripped), replaced by each `Set-Cookie` it receives.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

/// One answer, read whole.
#[derive(Debug, Clone)]
pub struct Page {
    /// The status code.
    pub status: u16,
    /// The `Location` header, when present.
    pub location: Option<String>,
    /// The raw `Set-Cookie` header (with its attributes), when present.
    pub set_cookie: Option<String>,
    /// The body.
    pub body: String,
}

/// A client with a cookie jar of one.
pub struct Browser {
    agent: ureq::Agent,
    base: String,
    cookie: Option<String>,
}

impl Browser {
    /// A client for `base` (`http://ADDR` or `https://ADDR`), trusting only the CA in `ca`
    /// (PEM) when given.
    pub fn new(base: &str, ca: Option<&Path>) -> anyhow::Result<Browser> {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(10)));
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).with_context(|| format!("read {}", ca.display()))?;
            let cert = ureq::tls::Certificate::from_pem(&pem).context("parse CA PEM")?;
            let tls = ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]))
                .build();
            config = config.tls_config(tls);
        }
        Ok(Browser {
            agent: config.build().into(),
            base: base.trim_end_matches('/').to_string(),
            cookie: None,
        })
    }

    /// The cookie the client sends (`name=value`), if any.
    pub fn cookie(&self) -> Option<&str> {
        self.cookie.as_deref()
    }

    /// Replaces the cookie (e.g. with a forged one).
    pub fn set_cookie(&mut self, cookie: Option<String>) {
        self.cookie = cookie;
    }

    /// `GET {base}{path}` with the cookie.
    pub fn get(&mut self, path: &str) -> anyhow::Result<Page> {
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.get(&url).header("Accept", "text/html");
        if let Some(c) = &self.cookie {
            req = req.header("Cookie", c);
        }
        let resp = req.call().with_context(|| format!("GET {url}"))?;
        self.read(resp, &url)
    }

    /// `POST {base}{path}` of an urlencoded form, with the cookie.
    pub fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> anyhow::Result<Page> {
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.post(&url).header("Accept", "text/html");
        if let Some(c) = &self.cookie {
            req = req.header("Cookie", c);
        }
        let resp = req
            .send_form(fields.iter().copied())
            .with_context(|| format!("POST {url}"))?;
        self.read(resp, &url)
    }

    fn read(
        &mut self,
        mut resp: ureq::http::Response<ureq::Body>,
        url: &str,
    ) -> anyhow::Result<Page> {
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (location, set_cookie) = (header("location"), header("set-cookie"));
        if let Some(c) = &set_cookie {
            let pair = c.split(';').next().unwrap_or_default().trim();
            let cleared = pair.ends_with('=');
            self.cookie = (!cleared).then(|| pair.to_string());
        }
        let body = resp
            .body_mut()
            .read_to_string()
            .with_context(|| format!("read body of {url}"))?;
        Ok(Page {
            status: resp.status().as_u16(),
            location,
            set_cookie,
            body,
        })
    }
}
