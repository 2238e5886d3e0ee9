//! Text inside events: rendered messages, exit-code strings, the server response JSON, the
//! 304 debug blob, and timestamps (`reference/event-log.md` §3).
//!
//! Rendered messages are the fallback when an export has no insertion strings. They differ
//! between builds: the exit code is rendered as text (`Unknown HResult Error code: 0x…`, or
//! the Windows message itself), `%4` / `%5` leftovers appear when the event carried fewer
//! strings than the template, and the debug blob can land in the "Tenant type" slot. The
//! scanning here is label-based and never assumes one layout.

use dsreg_proto::v1::ServerResponse;
use dsreg_proto::{EventRecord, catalog};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Windows message texts that can stand in for an exit code in a rendered message, and the
/// code they render (event-log.md §3.1). Compared case-insensitively, without the final dot.
const MESSAGE_CODES: &[(&str, u32)] = &[
    ("The operation completed successfully", 0),
    ("Keyset does not exist", 0x8009_0016),
    ("The system cannot find the file specified", 0x8007_0002),
    ("The system cannot find the path specified", 0x8007_0003),
    ("Access is denied", 0x8007_0005),
    ("The data is invalid", 0x8007_000d),
    (
        "The specified target is unknown or unreachable",
        0x8009_0303,
    ),
    ("The operation timed out", 0x8007_2ee2),
    (
        "The server name or address could not be resolved",
        0x8007_2ee7,
    ),
    (
        "A connection with the server could not be established",
        0x8007_2efd,
    ),
    (
        "The connection with the server was terminated abnormally",
        0x8007_2efe,
    ),
];

/// The code a Windows message text stands for, e.g. `Keyset does not exist` → 0x80090016.
pub fn reverse_message_code(message: &str) -> Option<u32> {
    let m = message.trim().trim_end_matches('.').trim();
    MESSAGE_CODES
        .iter()
        .find(|(text, _)| m.eq_ignore_ascii_case(text))
        .map(|(_, code)| *code)
}

/// A code from an insertion string or a rendered value: `0x…`, signed or unsigned decimal,
/// text holding a `0x…` token (`Unknown HResult Error code: 0x801c03f2.`), or a known Windows
/// message text.
pub(crate) fn parse_code_text(s: &str) -> Option<u32> {
    let v = s.trim().trim_end_matches('.').trim();
    catalog::parse_code(v)
        .or_else(|| hex_token(v))
        .or_else(|| reverse_message_code(v))
}

/// The first `0x` followed by 1–8 hex digits in `s`.
fn hex_token(s: &str) -> Option<u32> {
    let lower = s.to_ascii_lowercase();
    let mut rest = lower.as_str();
    while let Some(i) = rest.find("0x") {
        let digits: String = rest[i + 2..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect();
        if (1..=8).contains(&digits.len()) {
            return u32::from_str_radix(&digits, 16).ok();
        }
        rest = &rest[i + 2..];
    }
    None
}

/// A literal `%n` left by a template with more insertion strings than the event carried.
pub(crate) fn is_placeholder(s: &str) -> bool {
    let s = s.trim();
    s.len() > 1 && s.starts_with('%') && s[1..].chars().all(|c| c.is_ascii_digit())
}

/// At most 60 characters of `s`, for warnings.
pub(crate) fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Whether a value is the 304 debug output (`joinMode: …`, `errorPhase: …`).
pub(crate) fn looks_like_debug(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    ["errorphase:", "joinmode:", "drsinstance:"]
        .iter()
        .any(|k| l.contains(k))
}

/// Reads `errorPhase`, `registrationType` and `tenantType` from the 304 debug output into
/// fields that are still unset. `undefined` values are skipped.
pub(crate) fn apply_debug(rec: &mut EventRecord, debug: &str) {
    for line in debug.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if value.is_empty() || value.eq_ignore_ascii_case("undefined") {
            continue;
        }
        let slot = match key.trim().to_ascii_lowercase().as_str() {
            "errorphase" => &mut rec.error_phase,
            "registrationtype" => &mut rec.registration_type,
            "tenanttype" => &mut rec.tenant_type,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value.to_owned());
        }
    }
}

/// The labelled values of a rendered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    ServerResponse,
    HttpStatus,
    ExitCode,
    ActivityId,
    ServerError,
    TenantType,
    TenantName,
    RegistrationType,
    DebugOutput,
}

/// Label texts as they appear before a colon, lower case. "Server response was" runs to the
/// end of its line (the JSON may hold anything).
const LABELS: &[(&str, Label)] = &[
    ("server response was", Label::ServerResponse),
    ("the server returned http status", Label::HttpStatus),
    ("exit code", Label::ExitCode),
    ("activity id", Label::ActivityId),
    ("server error", Label::ServerError),
    ("tenant type", Label::TenantType),
    ("tenant name", Label::TenantName),
    ("registration type", Label::RegistrationType),
    ("debug output", Label::DebugOutput),
];

/// Fills the fields still unset from a rendered message.
pub(crate) fn apply_rendered(rec: &mut EventRecord, message: &str) {
    for (label, value) in labelled_values(message) {
        let v = value.trim();
        let blank = {
            let b = v.trim_end_matches('.').trim();
            b.is_empty() || b.eq_ignore_ascii_case("empty") || is_placeholder(b)
        };
        if blank {
            continue;
        }
        match label {
            Label::ExitCode if rec.exit_code.is_none() => rec.exit_code = parse_code_text(v),
            Label::HttpStatus if rec.http_status.is_none() => {
                rec.http_status = v.trim_end_matches('.').trim().parse().ok();
            }
            Label::ServerResponse if rec.server_response.is_none() => {
                rec.server_response = Some(parse_server_response(v));
            }
            Label::ActivityId if rec.activity_id.is_none() => rec.activity_id = Some(v.into()),
            Label::ServerError if rec.server_error.is_none() => rec.server_error = Some(v.into()),
            Label::TenantType if looks_like_debug(v) => apply_debug(rec, v),
            Label::TenantType if rec.tenant_type.is_none() => rec.tenant_type = Some(v.into()),
            Label::TenantName if rec.tenant_name.is_none() => rec.tenant_name = Some(v.into()),
            Label::RegistrationType if rec.registration_type.is_none() => {
                rec.registration_type = Some(v.into());
            }
            Label::DebugOutput => apply_debug(rec, v),
            _ => {}
        }
    }
}

/// Splits a message at its labels: each label's value runs to the next label.
fn labelled_values(message: &str) -> Vec<(Label, &str)> {
    // ASCII lower-casing keeps byte offsets, so positions index `message` too.
    let lower = message.to_ascii_lowercase();
    let mut found: Vec<(usize, usize, Label)> = Vec::new();
    for (text, label) in LABELS {
        let mut from = 0;
        while let Some(i) = lower[from..].find(text) {
            let start = from + i;
            let after = start + text.len();
            from = after;
            let rest = &lower[after..];
            let gap = rest.len() - rest.trim_start_matches([' ', '\t']).len();
            if rest[gap..].starts_with(':') {
                found.push((start, after + gap + 1, *label));
            }
        }
    }
    found.sort_by_key(|(start, _, _)| *start);
    // Labels inside the server response's line belong to the JSON, not to the message.
    let mut kept: Vec<(usize, usize, Label)> = Vec::new();
    let mut response_end = 0;
    for f in found {
        if f.0 < response_end {
            continue;
        }
        if f.2 == Label::ServerResponse {
            response_end = lower[f.1..].find('\n').map_or(lower.len(), |i| f.1 + i);
        }
        kept.push(f);
    }
    let mut out = Vec::with_capacity(kept.len());
    for (i, (_, value_start, label)) in kept.iter().enumerate() {
        let mut end = kept.get(i + 1).map_or(message.len(), |n| n.0);
        if *label == Label::ServerResponse {
            end = end.min(response_end);
        }
        if let Some(v) = message.get(*value_start..end.max(*value_start)) {
            out.push((*label, v));
        }
    }
    out
}

/// Parses the DRS server response of events 201/204 (`{"ErrorType":…,"Message":…}`).
///
/// Real JSON is read with serde_json; anything else (the doc sample's unquoted
/// `"TraceId":<TraceID>`, a cut string) by a key scan. Text with none of the keys is kept as
/// the message.
pub fn parse_server_response(s: &str) -> ServerResponse {
    let s = s.trim();
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(s) {
        let get = |names: &[&str]| {
            map.iter()
                .find(|(k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n)))
                .and_then(|(_, v)| json_text(v))
        };
        return ServerResponse {
            error_type: get(&["ErrorType", "ErrorCode"]),
            message: get(&["Message", "ErrorMessage"]),
            trace_id: get(&["TraceId"]),
            time: get(&["Time"]),
            sub_error_code: get(&["SubErrorCode", "ErrorSubCode"]),
        };
    }
    let r = ServerResponse {
        error_type: scan_key(s, "ErrorType").or_else(|| scan_key(s, "ErrorCode")),
        message: scan_key(s, "Message"),
        trace_id: scan_key(s, "TraceId"),
        time: scan_key(s, "Time"),
        sub_error_code: scan_key(s, "SubErrorCode").or_else(|| scan_key(s, "ErrorSubCode")),
    };
    if r == ServerResponse::default() && !s.is_empty() {
        return ServerResponse {
            message: Some(s.to_owned()),
            ..r
        };
    }
    r
}

/// A JSON value as text: strings as they are, null as nothing, anything else compact.
pub(crate) fn json_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Finds `"key"` (case-insensitive) followed by `:` and reads a quoted string (with `\"`
/// escapes) or a bare token up to `,` or `}`.
fn scan_key(s: &str, key: &str) -> Option<String> {
    let lower = s.to_ascii_lowercase();
    let needle = format!("\"{}\"", key.to_ascii_lowercase());
    let mut from = 0;
    while let Some(i) = lower[from..].find(&needle) {
        let after = from + i + needle.len();
        from = after;
        let rest = s[after..].trim_start();
        let Some(rest) = rest.strip_prefix(':') else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.chars();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => match chars.next() {
                        Some('n') => out.push('\n'),
                        Some('t') => out.push('\t'),
                        Some(other) => out.push(other),
                        None => break,
                    },
                    c => out.push(c),
                }
            }
            return Some(out);
        }
        let end = rest.find([',', '}', '\n']).unwrap_or(rest.len());
        let token = rest[..end].trim();
        return (!token.is_empty() && token != "null").then(|| token.to_owned());
    }
    None
}

/// An RFC 3339 time with any offset → RFC 3339 UTC. A time without an offset is taken as UTC.
pub(crate) fn rfc3339_utc(s: &str) -> Option<String> {
    let s = s.trim();
    let parsed = OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(&format!("{s}Z"), &Rfc3339))
        .ok()?;
    parsed.to_offset(UtcOffset::UTC).format(&Rfc3339).ok()
}

/// PowerShell 5.1's `/Date(1667836224000)/` (milliseconds since the epoch, optionally with an
/// offset suffix that does not change the instant) → RFC 3339 UTC.
pub(crate) fn ms_date_utc(s: &str) -> Option<String> {
    let inner = s.trim().strip_prefix("/Date(")?.strip_suffix(")/")?;
    let digits_end = inner
        .char_indices()
        .skip(1)
        .find(|(_, c)| !c.is_ascii_digit())
        .map_or(inner.len(), |(i, _)| i);
    let ms: i128 = inner[..digits_end].parse().ok()?;
    let t = OffsetDateTime::from_unix_timestamp_nanos(ms.checked_mul(1_000_000)?).ok()?;
    t.format(&Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_from_every_form() {
        assert_eq!(parse_code_text("0x801C03F2"), Some(0x801c03f2));
        assert_eq!(parse_code_text("-2145647630"), Some(0x801c03f2));
        assert_eq!(parse_code_text("2149319666"), Some(0x801c03f2));
        assert_eq!(
            parse_code_text("Unknown HResult Error code: 0x801c03f2. "),
            Some(0x801c03f2)
        );
        assert_eq!(parse_code_text("Keyset does not exist"), Some(0x80090016));
        assert_eq!(
            parse_code_text("The operation completed successfully."),
            Some(0)
        );
        assert_eq!(parse_code_text("something else"), None);
        assert_eq!(parse_code_text("0xZZ"), None);
    }

    #[test]
    fn server_response_json_placeholder_and_text() {
        let r = parse_server_response(
            r#"{"ErrorType":"DirectoryError","Message":"The device object by the given id (<Device ID>) is not found.","TraceId":<TraceID>,"Time":"<Date and time>"}"#,
        );
        assert_eq!(r.error_type.as_deref(), Some("DirectoryError"));
        assert_eq!(
            r.message.as_deref(),
            Some("The device object by the given id (<Device ID>) is not found.")
        );
        assert_eq!(r.trace_id.as_deref(), Some("<TraceID>"));
        assert_eq!(r.time.as_deref(), Some("<Date and time>"));

        let r = parse_server_response(r#"{"ErrorType":"DirectoryError","TraceId":42}"#);
        assert_eq!(r.trace_id.as_deref(), Some("42"));
        let r = parse_server_response("<html>proxy login</html>");
        assert_eq!(r.message.as_deref(), Some("<html>proxy login</html>"));
        assert_eq!(r.error_type, None);
    }

    #[test]
    fn times() {
        assert_eq!(
            ms_date_utc("/Date(1667836224000)/").as_deref(),
            Some("2022-11-07T15:50:24Z")
        );
        assert_eq!(ms_date_utc("/Date(x)/"), None);
        assert_eq!(
            rfc3339_utc("2022-11-07T16:50:24.5+01:00").as_deref(),
            Some("2022-11-07T15:50:24.5Z")
        );
        assert_eq!(rfc3339_utc("yesterday"), None);
    }

    #[test]
    fn placeholders() {
        assert!(is_placeholder("%4"));
        assert!(!is_placeholder("%"));
        assert!(!is_placeholder("40%"));
    }
}
