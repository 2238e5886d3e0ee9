//! Event-log exports → [`EventRecord`]s: the `Microsoft-Windows-User Device Registration/Admin`
//! records that carry a join attempt's phase, exit code and server answer
//! (`reference/event-log.md` §2).
//!
//! Two export formats are read, detected from the first non-blank character:
//!
//! * `wevtutil qe … /f:xml` (or `/f:RenderedXml`): a sequence of `<Event>` elements without a
//!   root, or wrapped in `<Events>`; see [`xml`].
//! * `Get-WinEvent … | ConvertTo-Json`, from PowerShell 5.1 or 7: one object or an array;
//!   see [`json`].
//!
//! Both become [`RawEvent`]s (system fields, insertion strings in order, rendered message),
//! and [`map_event`] turns each into an [`EventRecord`] by event ID and insertion-string
//! position. When a record has no insertion strings (or they do not give the exit code), the
//! rendered message is parsed instead ([`text`]), tolerating the template drift between builds
//! (`%4` / `%5` leftovers, the debug blob in the wrong slot).
//!
//! Invariants: [`parse_events`] never panics; it fails only when the input is neither XML nor
//! JSON; everything it could not map is kept in `EventRecord.data` or reported as a warning.

mod json;
mod text;
mod xml;

use std::collections::HashMap;

use dsreg_proto::EventRecord;

pub use text::{parse_server_response, reverse_message_code};

/// The result of parsing one export.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventsParse {
    /// The records, in the order of the export.
    pub records: Vec<EventRecord>,
    /// What looked wrong (malformed XML, truncated JSON, an event without an ID, …).
    pub warnings: Vec<String>,
}

/// Why an export could not be read at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventsError {
    /// The input is neither XML (`<…`) nor JSON (`{…` / `[…`).
    #[error("event export is neither wevtutil XML nor Get-WinEvent JSON: it starts with {seen:?}")]
    UnknownFormat {
        /// The first characters of the input, for the message.
        seen: String,
    },
}

/// One event as read from an export, before mapping: the common shape of both formats.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RawEvent {
    pub event_id: Option<u32>,
    pub time: Option<String>,
    pub record_id: Option<u64>,
    pub level: Option<String>,
    /// Insertion strings in order: (name when the export named it, value).
    pub data: Vec<(Option<String>, String)>,
    /// The rendered message, when the export carried one.
    pub message: Option<String>,
    /// The log it came from (`System/Channel`, `LogName`).
    pub channel: Option<String>,
    /// The provider that wrote it (`System/Provider@Name`, `ProviderName`).
    pub provider: Option<String>,
    /// The activity id of the run (`System/Correlation@ActivityID`, `ActivityId`).
    pub activity_id: Option<String>,
}

/// Parses a `wevtutil` XML or `Get-WinEvent | ConvertTo-Json` export (UTF-8, or UTF-16 with a
/// BOM as a PowerShell redirect writes it).
pub fn parse_events(input: &[u8]) -> Result<EventsParse, EventsError> {
    let mut warnings = Vec::new();
    let text = decode(input, &mut warnings);
    let body = text.trim_start();
    let raw = match body.chars().next() {
        None => {
            warnings.push("event export is empty".to_owned());
            Vec::new()
        }
        Some('<') => xml::parse(body, &mut warnings),
        Some('{' | '[') => json::parse(body, &mut warnings),
        Some(_) => {
            let seen: String = body.chars().take(40).collect();
            return Err(EventsError::UnknownFormat { seen });
        }
    };
    let mut records = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        if r.event_id.is_none() {
            warnings.push(format!("event {} has no event ID; skipped", i + 1));
            continue;
        }
        records.push(map_event(r, &mut warnings));
    }
    Ok(EventsParse { records, warnings })
}

/// Bytes → text with the dsregcmd parser's decoder (UTF-8 with or without BOM, UTF-16LE/BE
/// with or without BOM, OEM code page fallback); its guesses become warnings.
fn decode(input: &[u8], warnings: &mut Vec<String>) -> String {
    let decoded = crate::dsregcmd::decode(input);
    warnings.extend(decoded.warnings);
    decoded.text.into_owned()
}

/// What an insertion-string position holds for a given event ID (event-log.md §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    ExitCode,
    HttpStatus,
    ServerResponse,
    ActivityId,
    ServerError,
    TenantType,
    TenantName,
    RegistrationType,
    DebugOutput,
    /// Free text whose first `0x…` token is the exit code (369).
    StatusText,
}

/// The positional template of an event ID (recent builds), `%1` first.
fn template(event_id: u32) -> &'static [Slot] {
    use Slot::*;
    match event_id {
        201 | 354 => &[ExitCode, HttpStatus, ServerResponse],
        204 => &[ExitCode, ActivityId, HttpStatus, ServerResponse],
        // 369: the Workstation Service's text ("… initial state with status 0x80070003").
        369 => &[StatusText],
        304 | 370 => &[
            ExitCode,
            ServerError,
            TenantType,
            RegistrationType,
            DebugOutput,
        ],
        305 => &[ExitCode, ServerError, TenantType, TenantName],
        200 | 202 | 203 | 205 | 206 | 220 | 239 | 240 | 244 | 245 | 307 | 309 | 344 | 345 => {
            &[ExitCode]
        }
        _ => &[],
    }
}

/// Maps one raw event by ID and insertion-string position; falls back to the rendered message.
pub(crate) fn map_event(raw: RawEvent, warnings: &mut Vec<String>) -> EventRecord {
    let event_id = raw.event_id.unwrap_or_default();
    let mut rec = EventRecord {
        event_id,
        time: raw.time,
        record_id: raw.record_id.unwrap_or_default(),
        level: raw.level,
        message: raw.message.filter(|m| !m.trim().is_empty()),
        channel: raw.channel.filter(|c| !c.trim().is_empty()),
        provider: raw.provider.filter(|p| !p.trim().is_empty()),
        // 204 names its activity in an insertion string too; that one wins when present.
        activity_id: raw.activity_id.filter(|a| !a.trim().is_empty()),
        ..EventRecord::default()
    };
    let slots = template(event_id);
    let mut data = HashMap::new();
    for (i, (name, value)) in raw.data.into_iter().enumerate() {
        let key = name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| format!("%{}", i + 1));
        match slots.get(i) {
            Some(slot) => {
                let fits = apply_slot(&mut rec, *slot, &value);
                if !fits {
                    warnings.push(format!(
                        "event {event_id} record {}: {key} = {:?} does not fit its slot ({slot:?})",
                        rec.record_id,
                        text::clip(&value)
                    ));
                }
                // The debug blob is parsed for three keys; keep the rest (tenantId,
                // adalCorrelationId, adalResponseCode, …) as printed.
                let debug = matches!(*slot, Slot::DebugOutput | Slot::StatusText)
                    || (*slot == Slot::TenantType && text::looks_like_debug(&value));
                if (!fits || debug) && !is_blank(&value) {
                    data.insert(key, value);
                }
            }
            None => {
                data.insert(key, value);
            }
        }
    }
    rec.data = data;
    if let Some(message) = rec.message.clone()
        && (rec.exit_code.is_none() || slots.is_empty())
    {
        text::apply_rendered(&mut rec, &message);
    }
    rec
}

/// Whether a value is "nothing": blank, `empty`, or a literal `%n` leftover.
fn is_blank(v: &str) -> bool {
    let v = v.trim().trim_end_matches('.').trim();
    v.is_empty() || v.eq_ignore_ascii_case("empty") || text::is_placeholder(v)
}

/// Sets one field from one insertion string; false when the value did not fit the slot.
fn apply_slot(rec: &mut EventRecord, slot: Slot, value: &str) -> bool {
    if is_blank(value) {
        return true;
    }
    let v = value.trim();
    match slot {
        Slot::ExitCode => match text::parse_code_text(v) {
            Some(c) => rec.exit_code = Some(c),
            None => return false,
        },
        Slot::HttpStatus => match v.parse::<u32>() {
            Ok(s) => rec.http_status = Some(s),
            Err(_) => return false,
        },
        Slot::ServerResponse => rec.server_response = Some(parse_server_response(v)),
        Slot::ActivityId => rec.activity_id = Some(v.to_owned()),
        Slot::ServerError => rec.server_error = Some(v.to_owned()),
        Slot::TenantType => {
            // Older builds put the whole debug blob here (event-log.md §3.2, first shape).
            if text::looks_like_debug(v) {
                text::apply_debug(rec, v);
            } else {
                rec.tenant_type = Some(v.to_owned());
            }
        }
        Slot::TenantName => rec.tenant_name = Some(v.to_owned()),
        Slot::RegistrationType => rec.registration_type = Some(v.to_owned()),
        Slot::DebugOutput => text::apply_debug(rec, v),
        // The text itself is kept in `data` (see `map_event`).
        Slot::StatusText => rec.exit_code = text::parse_code_text(v),
    }
    true
}

/// An exit code from an insertion string or a rendered value: `0x…`, signed or unsigned
/// decimal, text holding a `0x…` token (`Unknown HResult Error code: 0x801c03f2.`), or a known
/// Windows message text (`Keyset does not exist` → 0x80090016).
pub fn parse_exit_code(s: &str) -> Option<u32> {
    text::parse_code_text(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_format_names_what_was_seen() {
        let err = parse_events(b"Log Name: Microsoft-Windows-User Device Registration/Admin")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("neither wevtutil XML nor Get-WinEvent JSON"),
            "{err}"
        );
        assert!(err.contains("Log Name"), "{err}");
    }

    #[test]
    fn empty_input_is_no_records_with_a_warning() {
        let p = parse_events(b"  \r\n").unwrap_or_default();
        assert!(p.records.is_empty());
        assert_eq!(p.warnings, vec!["event export is empty".to_owned()]);
    }

    #[test]
    fn utf16le_with_bom_decodes() {
        let xml = "<Event><System><EventID>307</EventID></System>\
                   <EventData><Data>-2145648611</Data></EventData></Event>";
        let mut bytes = vec![0xff, 0xfe];
        bytes.extend(xml.encode_utf16().flat_map(u16::to_le_bytes));
        let p = parse_events(&bytes).unwrap_or_default();
        assert_eq!(p.records.len(), 1);
        assert_eq!(p.records[0].exit_code, Some(0x801c001d));
    }

    #[test]
    fn bad_slot_value_is_kept_in_data_with_a_warning() {
        let raw = RawEvent {
            event_id: Some(201),
            data: vec![(None, "0x801c0021".into()), (None, "four hundred".into())],
            ..RawEvent::default()
        };
        let mut w = Vec::new();
        let r = map_event(raw, &mut w);
        assert_eq!(r.http_status, None);
        assert_eq!(r.data.get("%2").map(String::as_str), Some("four hundred"));
        assert_eq!(w.len(), 1);
    }
}
