//! `Get-WinEvent -LogName 'Microsoft-Windows-User Device Registration/Admin' | ConvertTo-Json`.
//!
//! One object or an array of objects. Fields used: `Id`, `RecordId`, `TimeCreated`,
//! `LevelDisplayName` (else the numeric `Level`), `Message`, `Properties: [{"Value": …}]`
//! (positional insertion strings). `ProviderName` / `LogName` are informational.
//!
//! PowerShell 5.1 writes `TimeCreated` as `"\/Date(1667836224000)\/"` (sometimes wrapped in an
//! object `{"value": …, "DateTime": …}`); PowerShell 7 writes ISO 8601 with an offset. With the
//! default `-Depth 2`, 5.1 can flatten `Properties` items to the type name
//! `System.Diagnostics.Eventing.Reader.EventProperty`; those are dropped with a warning and the
//! rendered message is used instead.

use serde_json::Value;

use super::RawEvent;
use super::text::{json_text, ms_date_utc, rfc3339_utc};
use super::xml::level_name;

/// What a too-shallow `ConvertTo-Json` writes instead of a property object.
const FLATTENED_PROPERTY: &str = "System.Diagnostics.Eventing.Reader.EventProperty";

/// Reads every event object of an export.
pub(crate) fn parse(input: &str, warnings: &mut Vec<String>) -> Vec<RawEvent> {
    let value: Value = match serde_json::from_str(input) {
        Ok(v) => v,
        Err(e) => {
            warnings.push(format!("malformed JSON: {e}; no events read"));
            return Vec::new();
        }
    };
    let items = match value {
        Value::Array(items) => items,
        Value::Object(_) => vec![value],
        _ => Vec::new(),
    };
    let mut events = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if !item.is_object() {
            warnings.push(format!("JSON item {} is not an object; skipped", i + 1));
            continue;
        }
        events.push(event(item, i + 1, warnings));
    }
    events
}

/// A field by name, case-insensitively (PowerShell keys are PascalCase, but be lenient).
fn field<'a>(item: &'a Value, name: &str) -> Option<&'a Value> {
    item.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn number<T: TryFrom<u64> + std::str::FromStr>(v: Option<&Value>) -> Option<T> {
    match v? {
        Value::Number(n) => n.as_u64().and_then(|n| T::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn event(item: &Value, index: usize, warnings: &mut Vec<String>) -> RawEvent {
    let time = field(item, "TimeCreated").and_then(|t| {
        let text = match t {
            // PowerShell 5.1 with extended type data: {"value": "/Date(…)/", "DateTime": …}.
            Value::Object(_) => field(t, "value").and_then(Value::as_str),
            other => other.as_str(),
        }?;
        let converted = ms_date_utc(text).or_else(|| rfc3339_utc(text));
        if converted.is_none() {
            warnings.push(format!(
                "event {index}: TimeCreated {text:?} is not a known time"
            ));
        }
        converted
    });
    let level = field(item, "LevelDisplayName")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .or_else(|| {
            field(item, "Level")
                .and_then(json_text)
                .and_then(|l| level_name(&l))
        });
    let mut data = Vec::new();
    if let Some(Value::Array(props)) = field(item, "Properties") {
        let mut flattened = false;
        for p in props {
            match p {
                Value::Object(_) => {
                    let value = field(p, "Value").map(property_text).unwrap_or_default();
                    data.push((None, value));
                }
                Value::String(s) if s == FLATTENED_PROPERTY => flattened = true,
                other => data.push((None, property_text(other))),
            }
        }
        if flattened {
            warnings.push(format!(
                "event {index}: Properties were flattened by ConvertTo-Json (use -Depth 4); \
                 read from the message instead"
            ));
            data.clear();
        }
    }
    RawEvent {
        event_id: number(field(item, "Id")),
        time,
        record_id: number(field(item, "RecordId")),
        level,
        data,
        message: field(item, "Message")
            .and_then(Value::as_str)
            .map(str::to_owned),
        channel: field(item, "LogName").and_then(json_text),
        provider: field(item, "ProviderName").and_then(json_text),
        activity_id: field(item, "ActivityId").and_then(|v| match v {
            Value::Object(_) => field(v, "Guid").and_then(json_text),
            other => json_text(other),
        }),
    }
}

/// An insertion string's text: strings as they are, numbers in decimal, a serialised GUID
/// (`{"Guid": …}`) or nested `value` unwrapped, anything else as compact JSON.
fn property_text(v: &Value) -> String {
    match v {
        Value::Object(_) => field(v, "Guid")
            .or_else(|| field(v, "value"))
            .and_then(json_text)
            .unwrap_or_else(|| v.to_string()),
        other => json_text(other).unwrap_or_default(),
    }
}
