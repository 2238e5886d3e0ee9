//! The page shell every UI page shares: head with the embedded stylesheet, the navigation bar
//! with the hostname search, the error page, and the URL helpers.
//!
//! Invariants: every value reaches HTML through maud's `( )` splices, which escape `<`, `>`,
//! `&`, `"` and `'`; every value placed in a URL goes through [`enc`] first (percent-encoding
//! all but the unreserved characters), so a hostname cannot break out of an `href` or add a
//! query parameter. No page needs JavaScript, and none is served.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::error::Error;

/// The stylesheet, embedded in every page (small; printable: the navigation is hidden on paper).
const STYLE: &str = r#"
:root { --fg:#1d2327; --muted:#5b6770; --line:#d5dbe0; --bad:#b3261e; --ok:#1e6b34; --warn:#8a5a00; --bg2:#f4f6f8; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); margin: 0; }
header.nav { display:flex; gap:1.2rem; align-items:center; padding:.6rem 1.2rem; background:#20303c; color:#fff; }
header.nav a { color:#fff; text-decoration:none; font-weight:600; }
header.nav form { margin-left:auto; }
header.nav input { padding:.25rem .4rem; width:14rem; }
main { max-width: 1200px; margin: 0 auto; padding: 1rem 1.2rem 3rem; }
h1 { font-size:1.5rem; margin:.6rem 0; overflow-wrap:anywhere; }
h2 { font-size:1.15rem; margin:1.6rem 0 .5rem; border-bottom:1px solid var(--line); padding-bottom:.2rem; }
h3 { font-size:1rem; margin:1rem 0 .3rem; }
table { border-collapse: collapse; width:100%; margin:.4rem 0; }
th, td { text-align:left; vertical-align:top; padding:.3rem .5rem; border-bottom:1px solid var(--line); overflow-wrap:break-word; }
td.mono, td pre { overflow-wrap:anywhere; }
.nowrap { white-space:nowrap; }
th { background: var(--bg2); font-weight:600; }
table.kv th { width: 16rem; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Consolas, monospace; font-size: .88em; }
pre { background: var(--bg2); padding:.5rem; white-space: pre-wrap; overflow-wrap:anywhere; margin:.3rem 0; }
.muted { color: var(--muted); }
.bad { color: var(--bad); font-weight:600; }
.ok { color: var(--ok); font-weight:600; }
.warn { color: var(--warn); font-weight:600; }
.cards { display:flex; flex-wrap:wrap; gap:.8rem; margin:.6rem 0; }
.card { border:1px solid var(--line); border-radius:6px; padding:.5rem .8rem; min-width:9rem; }
.card b { display:block; font-size:1.4rem; }
.box { border-left:4px solid var(--bad); background:#fdf3f2; padding:.6rem .9rem; margin:.6rem 0; }
.box.ok { border-color: var(--ok); background:#f1f8f3; }
.box.info { border-color: #3b6ea8; background:#f0f5fb; }
form.filter { display:flex; flex-wrap:wrap; gap:.6rem; align-items:end; margin:.6rem 0; }
form.filter label { display:flex; flex-direction:column; font-size:.85rem; color:var(--muted); }
.pager { margin: .8rem 0; }
@media print { header.nav, form.filter, .pager, .noprint { display:none; } main { max-width:none; padding:0; } a { color: inherit; text-decoration:none; } }
"#;

/// Percent-encodes `s` for a URL path segment or query value (RFC 3986 unreserved kept).
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The drill-down URL of a device key (machine id or host name).
pub fn device_href(key: &str) -> String {
    format!("/ui/devices/{}", enc(key))
}

/// The device list URL with these filters (empty values left out).
pub fn list_href(params: &[(&str, &str)]) -> String {
    let q: Vec<String> = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    if q.is_empty() {
        "/ui/devices".to_string()
    } else {
        format!("/ui/devices?{}", q.join("&"))
    }
}

/// A whole page: `title` in the tab and as the heading, `body` below it.
pub fn page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — dsreg-fleet" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                header.nav {
                    a href="/" { "dsreg-fleet" }
                    a href="/" { "Fleet" }
                    a href="/ui/devices" { "Devices" }
                    form method="get" action="/ui/devices" {
                        input type="search" name="hostname" placeholder="host name prefix" aria-label="host name";
                        " "
                        button type="submit" { "Find" }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A UI error: the API's [`Error`] shown as a page with the same status.
#[derive(Debug)]
pub struct PageError(pub Error);

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        PageError(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.http_status();
        if let Error::Internal(detail) = &self.0 {
            // The detail is logged; the page shows only the generic message.
            tracing::error!(error = %detail, "ui page failed");
        }
        let title = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::BAD_REQUEST => "Bad request",
            _ => "Error",
        };
        let body = html! {
            div.box { p { (self.0.to_string()) } }
            p { a href="/" { "Back to the fleet" } }
        };
        (status, page(title, body)).into_response()
    }
}

/// Characters of a device-sent name shown in a list (the drill-down shows it whole).
pub const SHORT: usize = 48;

/// `s` cut to [`SHORT`] characters, with `…` when cut.
pub fn short(s: &str) -> String {
    match s.char_indices().nth(SHORT) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

/// A count with its noun, e.g. `1 device`, `3 devices`.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_cannot_be_broken_out_of() {
        assert_eq!(enc("PC-01_a.b~"), "PC-01_a.b~");
        assert_eq!(enc("a b&c=d/\"<"), "a%20b%26c%3Dd%2F%22%3C");
        assert_eq!(device_href("x/../y?z"), "/ui/devices/x%2F..%2Fy%3Fz");
        assert_eq!(
            list_href(&[("cause", "device_not_synced"), ("phase", "")]),
            "/ui/devices?cause=device_not_synced"
        );
        assert_eq!(list_href(&[]), "/ui/devices");
        assert_eq!(short("PC-1"), "PC-1");
        assert_eq!(short(&"é".repeat(100)).chars().count(), SHORT + 1);
    }

    #[test]
    fn page_escapes_its_title() {
        let html = page("<script>alert(1)</script>", html! {}).into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
    }
}
