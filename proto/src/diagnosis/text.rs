//! Evidence and source texts: `Key : value` lines, one-line server texts, the lines of event
//! records and the `event:<id>#<record id>` source names. Built with `push_str` rather than
//! the formatter: one diagnosis builds dozens of them (DESIGN §4; docs/performance.md).
//!
//! Invariant: every text is one line (whitespace runs collapsed); nothing here panics.

use super::non_empty;
use crate::{EventRecord, hex};

pub(super) fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_one_line(&mut out, s);
    out
}

/// Appends `s` with every run of whitespace as one space, trimmed.
fn push_one_line(out: &mut String, s: &str) {
    let b = s.as_bytes();
    let plain = b.first().is_none_or(|c| *c != b' ')
        && b.last().is_none_or(|c| *c != b' ')
        && !b.windows(2).any(|w| w == b"  ")
        && b.iter()
            .all(|c| c.is_ascii() && (*c == b' ' || !char::from(*c).is_whitespace()));
    if plain {
        // Already one line (the common case): copied as is.
        out.push_str(s);
        return;
    }
    for (i, word) in s.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
}

pub(super) fn server_error_text(code: Option<&str>, message: Option<&str>) -> Option<String> {
    match (code, message) {
        (Some(c), Some(m)) => {
            let mut out = String::with_capacity(c.len() + 2 + m.len());
            out.push_str(c);
            out.push_str(": ");
            push_one_line(&mut out, m);
            Some(out)
        }
        (Some(c), None) => Some(c.to_owned()),
        (None, Some(m)) => Some(one_line(m)),
        (None, None) => None,
    }
}

pub(super) fn push(evidence: &mut Vec<String>, key: &str, value: Option<&str>) {
    if let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) {
        let mut line = String::with_capacity(key.len() + 3 + v.len());
        line.push_str(key);
        line.push_str(" : ");
        line.push_str(v);
        evidence.push(line);
    }
}

/// `event:<id>#<record id>`, the source name of a record (built without the formatter: one
/// per record of every run).
pub(super) fn event_source(r: &EventRecord) -> String {
    let mut s = String::with_capacity(32);
    s.push_str("event:");
    push_decimal(&mut s, u64::from(r.event_id));
    s.push('#');
    push_decimal(&mut s, r.record_id);
    s
}

fn push_decimal(s: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        // `n % 10` is below 10: the cast cannot truncate.
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits: always UTF-8.
    if let Ok(d) = std::str::from_utf8(&digits[i..]) {
        s.push_str(d);
    }
}

/// One line per event: `event 204 at …: exit code 0x801c03f2, HTTP 400, DirectoryError: …`.
pub(crate) fn event_line(e: &EventRecord) -> String {
    let mut line = String::with_capacity(128);
    line.push_str("event ");
    push_decimal(&mut line, u64::from(e.event_id));
    if let Some(t) = e.time.as_deref() {
        line.push_str(" at ");
        line.push_str(t);
    }
    line.push_str(": ");
    let mut sep = "";
    let mut part = |line: &mut String, text: &str| {
        line.push_str(sep);
        line.push_str(text);
        sep = ", ";
    };
    if let Some(c) = e.exit_code {
        part(&mut line, "exit code ");
        line.push_str(&hex(c));
    }
    if let Some(s) = e.http_status {
        part(&mut line, "HTTP ");
        push_decimal(&mut line, u64::from(s));
    }
    if let Some(p) = non_empty(e.error_phase.as_deref()) {
        part(&mut line, "errorPhase ");
        line.push_str(p);
    }
    if let Some(t) = non_empty(e.tenant_type.as_deref()) {
        part(&mut line, "tenant type ");
        line.push_str(t);
    }
    let response = e.server_response.as_ref();
    let server = server_error_text(
        response.and_then(|r| non_empty(r.error_type.as_deref())),
        response.and_then(|r| non_empty(r.message.as_deref())),
    )
    .or_else(|| non_empty(e.server_error.as_deref()).map(one_line))
    .or_else(|| non_empty(e.message.as_deref()).map(one_line));
    if let Some(s) = server {
        part(&mut line, "");
        line.extend(s.chars().take(300));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_collapses_every_kind_of_whitespace() {
        // The copy-as-is path and the word-by-word path agree with the plain definition.
        for s in [
            "",
            "plain message",
            " leading",
            "trailing ",
            "two  spaces",
            "tab\there",
            "line\r\nbreak",
            "vertical\u{0b}tab",
            "no\u{a0}break space",
            "Ünïcode  text",
            "   ",
        ] {
            let want = s.split_whitespace().collect::<Vec<_>>().join(" ");
            assert_eq!(one_line(s), want, "{s:?}");
        }
    }
}
