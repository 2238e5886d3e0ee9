//! Rule 3 of the diagnosis: event-log failure records (event-log.md §2.2, §4).
//!
//! The newest failure record (by time, then record id) is the failure, unless a 306
//! (succeeded) or 335 (already joined) is newer. Phase comes from the event ID (304: its
//! `errorPhase`), cause from the server answer, else the catalog.

use super::{
    ADCONFIG_READ_FAILED, FAILURE_EVENTS, SUCCESS_EVENTS, fallback_cause, non_empty, one_line,
    server_error_text, symbol,
};
use crate::catalog;
use crate::classify::{self, ServerError};
use crate::{EventRecord, Failure, Phase, hex};

/// Ordering key for "newest": time (normalised RFC 3339), then record id.
fn event_key(e: &EventRecord) -> (Option<(String, String)>, u64) {
    (e.time.as_deref().map(time_key), e.record_id)
}

/// Splits an RFC 3339 UTC time into (seconds part, fraction padded to 9 digits) so that
/// `…:00Z` and `…:00.5Z` compare in time order, not byte order.
fn time_key(t: &str) -> (String, String) {
    let t = t.trim().trim_end_matches(['Z', 'z']);
    let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
    let frac: String = frac.chars().take_while(char::is_ascii_digit).collect();
    (secs.replace(['t', ' '], "T"), format!("{frac:0<9}"))
}

pub(super) fn from_events(events: &[EventRecord]) -> Option<Failure> {
    let newest = events
        .iter()
        .filter(|e| FAILURE_EVENTS.contains(&e.event_id))
        .max_by(|a, b| event_key(a).cmp(&event_key(b)))?;
    let cleared = events
        .iter()
        .filter(|e| SUCCESS_EVENTS.contains(&e.event_id))
        .any(|s| event_key(s) > event_key(newest));
    if cleared {
        return None;
    }
    Some(event_failure(newest))
}

fn event_failure(e: &EventRecord) -> Failure {
    let code = e.exit_code.filter(|c| *c != 0);
    let response = e.server_response.as_ref();
    // Only the 201/204 JSON names an error type; the 304/305 "Server error" is free text.
    let error_code = response.and_then(|r| non_empty(r.error_type.as_deref()));
    let message = response
        .and_then(|r| non_empty(r.message.as_deref()))
        .or_else(|| non_empty(e.server_error.as_deref()));
    let server = ServerError {
        error_code,
        sub_code: response.and_then(|r| non_empty(r.sub_error_code.as_deref())),
        message,
        operation: None,
    };
    let described = code.map(catalog::describe);
    let phase = match e.event_id {
        201 | 307 => Phase::Discover,
        204 | 220 => Phase::Join,
        305 => Phase::Auth,
        333 | 334 => Phase::PreCheck,
        _ => e
            .error_phase
            .as_deref()
            .and_then(Phase::from_label)
            .or(described.as_ref().filter(|d| d.known).map(|d| d.phase))
            .unwrap_or(Phase::Join),
    };
    let cause: &'static str = match (e.event_id, code) {
        // KB4480781: 307/304 with 0x801c001d is expected where hybrid join is not configured.
        (304 | 307, Some(ADCONFIG_READ_FAILED)) => "scp_not_configured",
        (333, _) => "not_system",
        (334, _) => "dc_unreachable",
        (220, _) => "ad_computer_object_unreadable",
        _ => classify::refine(code, &server)
            .map(|c| c.id)
            .or_else(|| described.as_ref().map(|d| d.cause.id))
            .unwrap_or_else(|| fallback_cause(server.error_code)),
    };
    Failure {
        phase: phase as i32,
        code,
        sub_code: None,
        symbol: symbol(code),
        cause: cause.to_owned(),
        source: format!("event:{}", e.event_id),
        server_error: server_error_text(error_code, message),
        evidence: vec![event_line(e)],
    }
}

/// One line per event: `event 204 at …: exit code 0x801c03f2, HTTP 400, DirectoryError: …`.
fn event_line(e: &EventRecord) -> String {
    let mut parts = Vec::new();
    if let Some(c) = e.exit_code {
        parts.push(format!("exit code {}", hex(c)));
    }
    if let Some(s) = e.http_status {
        parts.push(format!("HTTP {s}"));
    }
    if let Some(p) = non_empty(e.error_phase.as_deref()) {
        parts.push(format!("errorPhase {p}"));
    }
    if let Some(t) = non_empty(e.tenant_type.as_deref()) {
        parts.push(format!("tenant type {t}"));
    }
    let response = e.server_response.as_ref();
    let server = server_error_text(
        response.and_then(|r| non_empty(r.error_type.as_deref())),
        response.and_then(|r| non_empty(r.message.as_deref())),
    )
    .or_else(|| non_empty(e.server_error.as_deref()).map(one_line));
    if let Some(s) = server {
        parts.push(s);
    }
    let at = e
        .time
        .as_deref()
        .map(|t| format!(" at {t}"))
        .unwrap_or_default();
    format!("event {}{at}: {}", e.event_id, parts.join(", "))
}
