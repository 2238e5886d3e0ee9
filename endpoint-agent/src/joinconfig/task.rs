//! `schtasks` output for the join task → enabled state, status, last run time, last result.
//!
//! Two forms of `schtasks /query /tn "\Microsoft\Windows\Workplace Join\Automatic-Device-Join"`
//! are read; [`parse`] tells them apart by their first non-blank character (`<` = XML):
//!
//! - `/xml` (also `Export-ScheduledTask`): the Task Scheduler schema, UTF-16LE with BOM and
//!   CRLF as schtasks writes it (UTF-8 and UTF-16 without BOM are read too). Only
//!   `Task/Settings/Enabled` says whether the task is enabled — triggers have `<Enabled>` of
//!   their own, which are ignored — and it defaults to `true` when absent, as the schema says.
//!   A `<Tasks>` document (a folder query) picks the `Automatic-Device-Join` task by its
//!   `RegistrationInfo/URI` or the comment before it. The XML has no run history.
//! - `/v /fo list`: `Label:   value` lines, one block per trigger (the blocks repeat the same
//!   labels; the first value wins). Read: `Status` (`Ready`, `Disabled`, `Running`, `Queued`),
//!   `Scheduled Task State` (`Enabled` / `Disabled`), `Last Run Time` (`N/A`, or the local time
//!   in the system's date format; `11/30/1999 12:00:00 AM` is Task Scheduler's "never") and
//!   `Last Result` (decimal, negative for HRESULTs, or `0x…`).
//!
//! schtasks localises the labels and values of the list form. Handled: **English** and
//! **German** (`Status`, `Status der geplanten Aufgabe`, `Letzte Laufzeit`, `Letztes
//! Ergebnis`; `Bereit`, `Deaktiviert`, `Wird ausgeführt`, `Aktiviert`, `Nicht zutreffend`) —
//! the German strings are as recalled from a de-DE system, not checked against a capture in
//! this repository. Other languages give no values and one warning; the XML form is the same
//! in every language, so `--task-file` of `/xml` output is the portable choice.
//!
//! Dates: `M/D/YYYY h:mm:ss AM|PM` (en-US), `D/M/YYYY HH:mm:ss` (24-hour with slashes, e.g.
//! en-GB), `DD.MM.YYYY HH:mm:ss` (de) and `YYYY-MM-DD HH:mm:ss`. schtasks prints local time
//! without an offset: the caller passes the offset to apply (the device's own on Windows,
//! UTC for a file).
//!
//! Invariants: total (any bytes in, a [`TaskInfo`] and warnings out, never a panic); state
//! strings are cut to 64 characters.

use quick_xml::Reader;
use quick_xml::events::Event;
use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};

use super::registry::clip;
use crate::dsregcmd::decode;

/// What one schtasks capture says about the join task; every field unset when not said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskInfo {
    /// The task is enabled.
    pub enabled: Option<bool>,
    /// The status as printed, in English when it was a known localised word.
    pub state: Option<String>,
    /// The last run time, RFC 3339 UTC; `None` also when the task never ran.
    pub last_run_time: Option<String>,
    /// The last result (HRESULT as u32).
    pub last_result: Option<u32>,
    /// True when the capture says the task does not exist.
    pub missing: bool,
}

impl TaskInfo {
    /// Fills what `self` lacks from `other` (an earlier capture wins).
    pub fn merge(&mut self, other: TaskInfo) {
        self.enabled = self.enabled.or(other.enabled);
        self.state = self.state.take().or(other.state);
        self.last_run_time = self.last_run_time.take().or(other.last_run_time);
        self.last_result = self.last_result.or(other.last_result);
        self.missing |= other.missing;
    }
}

/// The join task's name, as the list form and the URI print it.
pub const TASK_NAME: &str = "Automatic-Device-Join";

/// Parses schtasks output (either form); `offset` is the UTC offset of the printed local
/// times. Returns what it found and warnings naming what it could not read.
pub fn parse(input: &[u8], offset: UtcOffset) -> (TaskInfo, Vec<String>) {
    let decoded = decode::decode(input);
    let mut warnings: Vec<String> = decoded
        .warnings
        .iter()
        .map(|w| format!("task file: {w}"))
        .collect();
    let text = decoded
        .text
        .trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    let info = if text.starts_with('<') {
        parse_xml(text, &mut warnings)
    } else {
        parse_list(text, offset, &mut warnings)
    };
    warnings.truncate(32);
    (info, warnings)
}

// ── XML ─────────────────────────────────────────────────────────────────────────────────────

/// One `<Task>` element's facts.
#[derive(Default)]
struct XmlTask {
    uri: Option<String>,
    comment: Option<String>,
    enabled: Option<bool>,
}

fn parse_xml(text: &str, warnings: &mut Vec<String>) -> TaskInfo {
    let mut reader = Reader::from_str(text);
    let mut path: Vec<String> = Vec::new();
    let mut tasks: Vec<XmlTask> = Vec::new();
    let mut last_comment: Option<String> = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                let name = e.local_name().as_ref().to_owned();
                if name == "Task" {
                    tasks.push(XmlTask {
                        comment: last_comment.take(),
                        ..XmlTask::default()
                    });
                }
                if path.len() < 64 {
                    path.push(name);
                }
            }
            Ok(Event::Empty(e)) => {
                if e.local_name().as_ref() == "Task" {
                    tasks.push(XmlTask::default());
                }
            }
            Ok(Event::End(_)) => {
                path.pop();
            }
            Ok(Event::Comment(c)) => {
                last_comment = Some(c.xml10_content().trim().to_owned());
            }
            Ok(Event::Text(t)) => {
                let value = t.xml10_content().trim().to_owned();
                let Some(task) = tasks.last_mut() else {
                    continue;
                };
                // Element path below the innermost <Task>.
                let Some(at) = path.iter().rposition(|p| p == "Task") else {
                    continue;
                };
                match path.get(at + 1..).unwrap_or_default() {
                    [a, b] if a == "Settings" && b == "Enabled" => match value.as_str() {
                        "true" | "1" => task.enabled = Some(true),
                        "false" | "0" => task.enabled = Some(false),
                        other => warnings.push(format!(
                            "task file: Settings/Enabled is {:?}, not true or false",
                            clip(other, 40)
                        )),
                    },
                    [a, b] if a == "RegistrationInfo" && b == "URI" => {
                        task.uri = Some(clip(&value, 260));
                    }
                    _ => {}
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => {
                warnings.push(format!(
                    "task file: XML error at byte {}: {e}",
                    reader.error_position()
                ));
                break;
            }
        }
    }
    let names_join_task = |t: &&XmlTask| {
        [t.uri.as_deref(), t.comment.as_deref()]
            .iter()
            .flatten()
            .any(|s| s.ends_with(TASK_NAME))
    };
    let chosen = match tasks.len() {
        0 => {
            warnings.push("task file: no <Task> element in the XML".to_owned());
            return TaskInfo::default();
        }
        1 => tasks.first(),
        _ => tasks.iter().find(names_join_task).or_else(|| {
            warnings.push(format!(
                "task file: {} tasks and none is {TASK_NAME}; the first is used",
                tasks.len()
            ));
            tasks.first()
        }),
    };
    TaskInfo {
        // Absent means enabled (Task Scheduler schema: Settings/Enabled defaults to true).
        enabled: chosen.map(|t| t.enabled.unwrap_or(true)),
        ..TaskInfo::default()
    }
}

// ── list ────────────────────────────────────────────────────────────────────────────────────

/// Which field a label names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Status,
    State,
    LastRun,
    LastResult,
    TaskName,
}

/// Labels in English and German; longest first where one could prefix another.
const LABELS: &[(&str, Field)] = &[
    ("Scheduled Task State:", Field::State),
    ("Status der geplanten Aufgabe:", Field::State),
    ("Last Run Time:", Field::LastRun),
    ("Letzte Laufzeit:", Field::LastRun),
    ("Last Result:", Field::LastResult),
    ("Letztes Ergebnis:", Field::LastResult),
    ("TaskName:", Field::TaskName),
    ("Aufgabenname:", Field::TaskName),
    ("Status:", Field::Status),
];

/// Localised status words → the English ones.
const STATES: &[(&str, &str)] = &[
    ("Ready", "Ready"),
    ("Running", "Running"),
    ("Disabled", "Disabled"),
    ("Queued", "Queued"),
    ("Could not start", "Could not start"),
    ("Unknown", "Unknown"),
    ("Bereit", "Ready"),
    ("Wird ausgeführt", "Running"),
    ("Deaktiviert", "Disabled"),
    ("In Warteschlange", "Queued"),
    ("Unbekannt", "Unknown"),
];

/// "not applicable" as printed for a time that does not exist.
const NOT_APPLICABLE: &[&str] = &["N/A", "Nicht zutreffend", "Nicht verfügbar", ""];

fn parse_list(text: &str, offset: UtcOffset, warnings: &mut Vec<String>) -> TaskInfo {
    let mut info = TaskInfo::default();
    let mut labelled = 0usize;
    let mut block_is_join_task = true;
    for raw in text.lines() {
        let t = raw.trim();
        if t.starts_with("ERROR:") || t.starts_with("FEHLER:") {
            info.missing = true;
            warnings.push(format!("task file: schtasks said {:?}", clip(t, 120)));
            continue;
        }
        let Some((label, field)) = LABELS.iter().find(|(l, _)| t.starts_with(l)) else {
            continue;
        };
        labelled += 1;
        let value = t.get(label.len()..).unwrap_or("").trim();
        match field {
            Field::TaskName => {
                // A folder query lists other tasks too: read only the join task's blocks.
                block_is_join_task = value.ends_with(TASK_NAME);
            }
            _ if !block_is_join_task => {}
            Field::Status => {
                if info.state.is_none() && !value.is_empty() {
                    let english = STATES.iter().find(|(l, _)| l.eq_ignore_ascii_case(value));
                    info.state = Some(english.map_or_else(|| clip(value, 64), |e| e.1.to_owned()));
                }
            }
            Field::State => {
                if info.enabled.is_none() {
                    info.enabled = match value {
                        "Enabled" | "Aktiviert" => Some(true),
                        "Disabled" | "Deaktiviert" => Some(false),
                        other => {
                            warnings.push(format!(
                                "task file: task state {:?} is neither Enabled nor Disabled",
                                clip(other, 40)
                            ));
                            None
                        }
                    };
                }
            }
            Field::LastRun => {
                if info.last_run_time.is_none() && !NOT_APPLICABLE.contains(&value) {
                    match local_time(value) {
                        Some(t) if t.year() <= 1999 => {} // Task Scheduler's "never ran"
                        Some(t) => info.last_run_time = rfc3339(t, offset),
                        None => warnings.push(format!(
                            "task file: last run time {:?} is in no known date format",
                            clip(value, 40)
                        )),
                    }
                }
            }
            Field::LastResult => {
                if info.last_result.is_none() {
                    info.last_result = result_code(value);
                    if info.last_result.is_none() {
                        warnings.push(format!(
                            "task file: last result {:?} is not a number",
                            clip(value, 40)
                        ));
                    }
                }
            }
        }
    }
    // A disabled task reports `Status: Disabled` even where the state line is missing.
    if info.enabled.is_none() && info.state.as_deref() == Some("Disabled") {
        info.enabled = Some(false);
    }
    if labelled == 0 && !info.missing {
        warnings.push(
            "task file: neither schtasks XML nor an English or German `/v /fo list` listing"
                .to_owned(),
        );
    }
    info
}

/// `0`, `-2147020576`, `267011`, `0x41303` → the HRESULT as u32.
pub fn result_code(v: &str) -> Option<u32> {
    let v = v.trim();
    if let Some(hex) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        return u32::from_str_radix(hex, 16).ok();
    }
    let n: i64 = v.parse().ok()?;
    u32::try_from(n)
        .ok()
        .or_else(|| i32::try_from(n).ok().map(|s| s as u32))
}

/// Reads a local date-time in the formats listed in the module doc.
pub fn local_time(v: &str) -> Option<PrimitiveDateTime> {
    let mut parts = v.split_whitespace();
    let date = parts.next()?;
    let time = parts.next()?;
    let meridiem = parts.next();
    if parts.next().is_some() {
        return None;
    }
    let pm = match meridiem.map(str::to_ascii_uppercase).as_deref() {
        None => None,
        Some("AM") => Some(false),
        Some("PM") => Some(true),
        Some(_) => return None,
    };
    let nums = |s: &str, sep: char| -> Option<Vec<u32>> {
        s.split(sep).map(|p| p.parse::<u32>().ok()).collect()
    };
    let (y, m, d) = if date.contains('/') {
        match nums(date, '/')?.as_slice() {
            // With AM/PM it is the US month-first order; 24-hour slashes are day-first.
            [a, b, y] if pm.is_some() => (*y, *a, *b),
            [a, b, y] => (*y, *b, *a),
            _ => return None,
        }
    } else if date.contains('.') {
        match nums(date.trim_end_matches('.'), '.')?.as_slice() {
            [d, m, y] => (*y, *m, *d),
            _ => return None,
        }
    } else {
        match nums(date, '-')?.as_slice() {
            [y, m, d] => (*y, *m, *d),
            _ => return None,
        }
    };
    let hms = nums(time, ':')?;
    let (mut h, mi, s) = match hms.as_slice() {
        [h, mi, s] => (*h, *mi, *s),
        [h, mi] => (*h, *mi, 0),
        _ => return None,
    };
    match pm {
        Some(_) if !(1..=12).contains(&h) => return None,
        Some(true) if h != 12 => h += 12,
        Some(false) if h == 12 => h = 0,
        _ => {}
    }
    let date = Date::from_calendar_date(
        i32::try_from(y).ok()?,
        Month::try_from(u8::try_from(m).ok()?).ok()?,
        u8::try_from(d).ok()?,
    )
    .ok()?;
    let time = Time::from_hms(
        u8::try_from(h).ok()?,
        u8::try_from(mi).ok()?,
        u8::try_from(s).ok()?,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, time))
}

fn rfc3339(t: PrimitiveDateTime, offset: UtcOffset) -> Option<String> {
    let utc = t.assume_offset(offset).to_offset(UtcOffset::UTC);
    utc.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_the_known_formats() {
        let s = |v: &str| local_time(v).map(|t| t.to_string());
        assert_eq!(
            s("11/30/2026 9:05:01 PM").as_deref(),
            Some("2026-11-30 21:05:01.0")
        );
        assert_eq!(
            s("11/30/2026 12:00:00 AM").as_deref(),
            Some("2026-11-30 0:00:00.0")
        );
        assert_eq!(
            s("30/11/2026 09:00:00").as_deref(),
            Some("2026-11-30 9:00:00.0")
        );
        assert_eq!(
            s("30.11.2026 09:00:00").as_deref(),
            Some("2026-11-30 9:00:00.0")
        );
        assert_eq!(
            s("2026-11-30 09:00:00").as_deref(),
            Some("2026-11-30 9:00:00.0")
        );
        assert_eq!(s("13/30/2026 9:00:00 AM"), None);
        assert_eq!(s("11/30/2026 13:00:00 PM"), None);
        assert_eq!(s("gestern"), None);
    }

    #[test]
    fn results_in_every_notation() {
        assert_eq!(result_code("0"), Some(0));
        assert_eq!(result_code("267011"), Some(0x0004_1303));
        assert_eq!(result_code("-2147020576"), Some(0x8007_10e0));
        assert_eq!(result_code("0x8007042B"), Some(0x8007_042b));
        assert_eq!(result_code("4294967296"), None);
        assert_eq!(result_code("n/a"), None);
    }

    #[test]
    fn an_offset_moves_local_time_to_utc() {
        let t = local_time("30.11.2026 09:00:00").unwrap();
        let cet = UtcOffset::from_hms(1, 0, 0).unwrap();
        assert_eq!(rfc3339(t, cet).as_deref(), Some("2026-11-30T08:00:00Z"));
    }
}
