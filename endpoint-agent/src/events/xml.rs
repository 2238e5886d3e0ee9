//! `wevtutil qe "Microsoft-Windows-User Device Registration/Admin" /f:xml` exports.
//!
//! wevtutil prints one `<Event xmlns="http://schemas.microsoft.com/win/2004/08/events/event">`
//! element per record with no root element; some tools wrap them in `<Events>`; `/f:RenderedXml`
//! adds `<RenderingInfo>` with the rendered `<Message>` and `<Level>`. Elements are matched by
//! local name, so namespaces and prefixes do not matter. Payload: `<EventData><Data Name="…">`
//! (named), unnamed `<Data>` (positional %1..%n), or `<UserData>` (every leaf element in order).
//!
//! Malformed XML stops the reading with a warning; the events read so far are kept.

use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use super::RawEvent;
use super::text::rfc3339_utc;

/// Where the reader is inside the current `<Event>`.
#[derive(Default)]
struct State {
    /// Local names of the open elements below `<Event>`.
    path: Vec<String>,
    /// Text collected for the element being read.
    text: String,
    /// `Name=` of the open `<Data>`.
    data_name: Option<String>,
    /// Whether the open UserData element has child elements (then it is not a leaf).
    has_children: Vec<bool>,
}

/// Reads every `<Event>` of an export.
pub(crate) fn parse(input: &str, warnings: &mut Vec<String>) -> Vec<RawEvent> {
    let mut reader = Reader::from_str(input);
    let config = reader.config_mut();
    config.expand_empty_elements = true;
    config.allow_dangling_amp = true;
    config.check_end_names = false;

    let mut events = Vec::new();
    let mut current: Option<(RawEvent, State)> = None;
    loop {
        let ev = match reader.read_event() {
            Ok(ev) => ev,
            Err(e) => {
                warnings.push(format!(
                    "malformed XML at byte {}: {e}; reading stopped",
                    reader.error_position()
                ));
                break;
            }
        };
        match ev {
            Event::Eof => break,
            Event::Start(start) => {
                let name = local(&start);
                match current.as_mut() {
                    None if name == "Event" => {
                        current = Some((RawEvent::default(), State::default()));
                    }
                    None => {} // <Events> wrapper or anything around the events.
                    Some((raw, state)) => open(raw, state, &start, name, warnings),
                }
            }
            Event::End(_) => {
                let Some((raw, state)) = current.as_mut() else {
                    continue;
                };
                if state.path.is_empty() {
                    // </Event>
                    if let Some((raw, _)) = current.take() {
                        events.push(raw);
                    }
                } else {
                    close(raw, state);
                }
            }
            Event::Text(t) => push_text(&mut current, &t.xml10_content()),
            Event::CData(t) => push_text(&mut current, &t.xml10_content()),
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => {
                        let name = r.xml10_content();
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .map_or_else(|| format!("&{name};"), str::to_owned)
                    }
                };
                push_text(&mut current, &resolved);
            }
            _ => {}
        }
    }
    if let Some((raw, _)) = current {
        warnings.push("the last <Event> is not closed; kept what was read".to_owned());
        events.push(raw);
    }
    events
}

fn local(start: &BytesStart<'_>) -> String {
    start.local_name().as_ref().to_owned()
}

fn attr(start: &BytesStart<'_>, name: &str) -> Option<String> {
    start
        .attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name)
        .and_then(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

fn push_text(current: &mut Option<(RawEvent, State)>, text: &str) {
    if let Some((_, state)) = current.as_mut()
        && !state.path.is_empty()
    {
        state.text.push_str(text);
    }
}

fn open(
    raw: &mut RawEvent,
    state: &mut State,
    start: &BytesStart<'_>,
    name: String,
    warnings: &mut Vec<String>,
) {
    let parent = state.path.last().map(String::as_str);
    match (parent, name.as_str()) {
        (Some("System"), "TimeCreated") => {
            if let Some(t) = attr(start, "SystemTime") {
                raw.time = rfc3339_utc(&t);
                if raw.time.is_none() {
                    warnings.push(format!("TimeCreated {t:?} is not an RFC 3339 time"));
                }
            }
        }
        (Some("EventData"), "Data") => state.data_name = attr(start, "Name"),
        (Some("System"), "Provider") => raw.provider = attr(start, "Name"),
        (Some("System"), "Correlation") => raw.activity_id = attr(start, "ActivityID"),
        _ => {}
    }
    if in_user_data(state)
        && let Some(last) = state.has_children.last_mut()
    {
        *last = true;
    }
    state.text.clear();
    state.path.push(name);
    state.has_children.push(false);
}

fn in_user_data(state: &State) -> bool {
    state.path.first().is_some_and(|p| p == "UserData") && state.path.len() >= 2
}

fn close(raw: &mut RawEvent, state: &mut State) {
    let leaf = !state.has_children.pop().unwrap_or(true);
    let user_data_leaf = leaf && in_user_data(state) && state.path.len() >= 3;
    let Some(name) = state.path.pop() else {
        return;
    };
    let parent = state.path.last().map(String::as_str);
    let text = std::mem::take(&mut state.text);
    match (parent, name.as_str()) {
        (Some("System"), "EventID") => raw.event_id = text.trim().parse().ok(),
        (Some("System"), "EventRecordID") => raw.record_id = text.trim().parse().ok(),
        (Some("System"), "Level") => raw.level = level_name(text.trim()).or(raw.level.take()),
        (Some("System"), "Channel") => raw.channel = Some(text.trim().to_owned()),
        (Some("EventData"), "Data") => raw.data.push((state.data_name.take(), text)),
        (Some("RenderingInfo"), "Message") => raw.message = Some(text),
        (Some("RenderingInfo"), "Level") if !text.trim().is_empty() => {
            raw.level = Some(text.trim().to_owned());
        }
        _ if user_data_leaf => raw.data.push((Some(name), text)),
        _ => {}
    }
}

/// Event level number → name (the standard Windows levels).
pub(crate) fn level_name(level: &str) -> Option<String> {
    let name = match level.trim().parse::<u8>().ok()? {
        0 => "LogAlways",
        1 => "Critical",
        2 => "Error",
        3 => "Warning",
        4 => "Information",
        5 => "Verbose",
        _ => return Some(level.trim().to_owned()),
    };
    Some(name.to_owned())
}
