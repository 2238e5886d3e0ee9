//! The offline subcommands of `dsreg-agent`: `parse` and `diagnose`, for a technician or a
//! script at one machine.
//!
//! `main.rs` only parses flags and maps errors to exit codes; everything here takes plain
//! options and returns text, so tests reach it without a process. Reading: a capture path, or
//! standard input for `-` / no path; optional event-log export (`--events`) and join
//! configuration files (`--registry-file`, `--task-file`, [`crate::joinconfig`]). Then
//! [`crate::dsregcmd::parse`] → join configuration → [`dsreg_proto::diagnosis::apply`] → one
//! of four renderings: the DESIGN §3 JSON, a flat `section.key: value` listing, the diagnosis
//! report, or its JSON document ([`crate::diagnose`]).
//!
//! Errors: [`CliError`] names the file and the OS error; `main` exits 2 on any of them.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use dsreg_proto::diagnosis;
use dsreg_proto::{EventRecord, ExecutionContext, JoinType, Phase, Snapshot, catalog, hex};
use serde_json::Value;

use crate::events::{EventsError, parse_events};
use crate::joinconfig::{self, JoinConfigError};

/// Why a subcommand could not run: always an input problem (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A file (or standard input) could not be read.
    #[error("cannot read {what} {}: {source}", display_path(path))]
    Read {
        /// `capture` or `events file`.
        what: &'static str,
        /// The path, `None` for standard input.
        path: Option<PathBuf>,
        /// The OS error.
        source: std::io::Error,
    },
    /// The events file is neither XML nor JSON.
    #[error("cannot parse events file {}: {source}", display_path(&Some(path.clone())))]
    Events {
        /// The events file.
        path: PathBuf,
        /// What was wrong.
        source: EventsError,
    },
    /// A join configuration file could not be read, or `--computer-sid` is not a SID.
    #[error(transparent)]
    JoinConfig(#[from] JoinConfigError),
    /// The snapshot could not be serialised (should not happen; reported, not panicked).
    #[error("cannot render the snapshot as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

fn display_path(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!("`{}`", p.display()),
        None => "standard input".to_owned(),
    }
}

/// Output format of `parse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Pretty JSON of the snapshot, exactly the DESIGN §3 paths.
    #[default]
    Json,
    /// One `section.key: value` line per field, then extra lines and warnings.
    Text,
}

/// Where the input comes from and who ran dsregcmd.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// The capture; `None` or `-` reads standard input.
    pub capture: Option<PathBuf>,
    /// An event-log export (wevtutil XML or Get-WinEvent JSON).
    pub events: Option<PathBuf>,
    /// Who ran dsregcmd; `Unspecified` when not said.
    pub context: ExecutionContext,
    /// Join configuration captures (`--registry-file`, `--task-file`, `--computer-sid`).
    pub join: joinconfig::Files,
    /// Without captures: read this device's join configuration (Windows).
    pub this_device: bool,
}

/// A parsed and diagnosed capture.
#[derive(Debug, Clone, Default)]
pub struct Diagnosed {
    /// The snapshot with `join_type` and `failure` applied.
    pub snapshot: Snapshot,
    /// The event records read from `--events`.
    pub events: Vec<EventRecord>,
    /// Warnings from reading the events file.
    pub event_warnings: Vec<String>,
}

/// Reads a file, or standard input for `None` / `-`.
pub fn read_input(path: Option<&Path>, what: &'static str) -> Result<Vec<u8>, CliError> {
    match path.filter(|p| p.as_os_str() != "-") {
        Some(p) => std::fs::read(p).map_err(|source| CliError::Read {
            what,
            path: Some(p.to_owned()),
            source,
        }),
        None => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|source| CliError::Read {
                    what,
                    path: None,
                    source,
                })?;
            Ok(buf)
        }
    }
}

/// Reads, parses and diagnoses a capture (and its events file, if any).
pub fn load(input: &Input) -> Result<Diagnosed, CliError> {
    let (events, event_warnings) = match &input.events {
        Some(path) => {
            let bytes = read_input(Some(path), "events file")?;
            let parsed = parse_events(&bytes).map_err(|source| CliError::Events {
                path: path.clone(),
                source,
            })?;
            (parsed.records, parsed.warnings)
        }
        None => (Vec::new(), Vec::new()),
    };
    let join = match input.join.read()? {
        None if input.this_device => Some(joinconfig::read_this_device(
            std::time::Duration::from_secs(30),
        )),
        read => read,
    };
    let bytes = read_input(input.capture.as_deref(), "capture")?;
    Ok(diagnose_with(
        &bytes,
        events,
        event_warnings,
        input.context,
        join,
    ))
}

/// Parses and diagnoses capture bytes with already-read events.
pub fn diagnose_bytes(
    capture: &[u8],
    events: Vec<EventRecord>,
    event_warnings: Vec<String>,
    context: ExecutionContext,
) -> Diagnosed {
    diagnose_with(capture, events, event_warnings, context, None)
}

/// [`diagnose_bytes`] with a join configuration, set on the snapshot before the diagnosis
/// runs (the diagnosis reads it).
pub fn diagnose_with(
    capture: &[u8],
    events: Vec<EventRecord>,
    event_warnings: Vec<String>,
    context: ExecutionContext,
    join: Option<joinconfig::Read>,
) -> Diagnosed {
    let mut snapshot = crate::dsregcmd::parse(capture);
    if let Some(read) = join {
        joinconfig::apply(&mut snapshot, read);
    }
    diagnosis::apply(&mut snapshot, &events, context);
    Diagnosed {
        snapshot,
        events,
        event_warnings,
    }
}

/// `dsreg-agent parse`: the snapshot in the chosen format.
pub fn parse_command(input: &Input, format: Format) -> Result<String, CliError> {
    let d = load(input)?;
    match format {
        Format::Json => Ok(render_json(&d.snapshot)? + "\n"),
        Format::Text => Ok(render_text(&d.snapshot, &d.event_warnings)),
    }
}

/// `dsreg-agent diagnose`: the technician's report (`Format::Text`) or the JSON document of
/// [`crate::diagnose::document`], and the verdict that `--detect` turns into an exit code.
pub fn diagnose_command(
    input: &Input,
    format: Format,
) -> Result<(String, crate::diagnose::Verdict), CliError> {
    let d = load(input)?;
    let verdict = crate::diagnose::verdict(&d.snapshot);
    let out = match format {
        Format::Text => render_diagnosis(&d),
        Format::Json => {
            let doc =
                crate::diagnose::document(&d.snapshot, d.events.len(), d.event_warnings.len());
            serde_json::to_string_pretty(&doc)? + "\n"
        }
    };
    Ok((out, verdict))
}

/// The snapshot as pretty JSON (DESIGN §3 paths; absent fields stay absent).
pub fn render_json(snapshot: &Snapshot) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(snapshot)
}

/// The snapshot as `section.key: value` lines (nested paths, `[i]` for list items), then the
/// unmapped lines and the warnings.
pub fn render_text(snapshot: &Snapshot, event_warnings: &[String]) -> String {
    let mut out = String::new();
    let body = Snapshot {
        extra: Vec::new(),
        warnings: Vec::new(),
        ..snapshot.clone()
    };
    if let Ok(value) = serde_json::to_value(&body) {
        flatten("", &value, &mut out);
    }
    if !snapshot.extra.is_empty() {
        let _ = writeln!(out, "\nextra ({} lines not mapped):", snapshot.extra.len());
        for e in &snapshot.extra {
            let section = if e.section.is_empty() {
                String::new()
            } else {
                format!("[{}] ", e.section)
            };
            match e.key.as_str() {
                "" => writeln!(out, "  {section}{}", e.value),
                key => writeln!(out, "  {section}{key} : {}", e.value),
            }
            .ok();
        }
    }
    let total = snapshot.warnings.len() + event_warnings.len();
    let _ = writeln!(out, "\nwarnings ({total}):");
    for w in &snapshot.warnings {
        let _ = writeln!(out, "  line {}: {}", w.line, w.message);
    }
    for w in event_warnings {
        let _ = writeln!(out, "  events: {w}");
    }
    out
}

fn flatten(path: &str, value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{path}[{i}]"), v, out);
            }
        }
        Value::Null => {}
        Value::String(s) => {
            let _ = writeln!(out, "{path}: {s}");
        }
        other => {
            let _ = writeln!(out, "{path}: {other}");
        }
    }
}

/// Width of the label column in the diagnosis report.
const LABEL: usize = 14;
/// Wrap width for free text.
const WIDTH: usize = 96;

/// The diagnosis report: join type, healthy or the failing phase, code and symbol, cause,
/// what to do next, evidence, warning count.
pub fn render_diagnosis(d: &Diagnosed) -> String {
    let s = &d.snapshot;
    let mut out = String::new();
    // Long values wrap with a hanging indent under the value column.
    let mut line = |label: &str, value: &str| {
        let mut first = true;
        for chunk in wrap_lines(value, WIDTH - LABEL - 2) {
            if first {
                let _ = writeln!(out, "{label:<LABEL$}: {chunk}");
                first = false;
            } else {
                let _ = writeln!(out, "{:<LABEL$}  {chunk}", "");
            }
        }
    };
    if let Some(ds) = s.device_state.as_ref() {
        let name = ds.device_name.as_deref().unwrap_or("");
        match ds.domain_name.as_deref().filter(|d| !d.is_empty()) {
            Some(domain) => line("Device", &format!("{name} (domain {domain})")),
            None if !name.is_empty() => line("Device", name),
            None => {}
        }
    }
    let join = JoinType::try_from(s.join_type).unwrap_or_default();
    let join_label = match join {
        JoinType::Unspecified => "unknown (no Device State in the capture)",
        other => other.label(),
    };
    line("Join type", join_label);
    let not_targeted = s.not_targeted.as_deref().filter(|r| !r.is_empty());
    match s.failure.as_ref() {
        None if not_targeted.is_some() => line(
            "Status",
            &format!(
                "not targeted ({}): hybrid join is not intended for this device",
                not_targeted.unwrap_or_default()
            ),
        ),
        None => line("Status", "healthy: no failure found"),
        Some(f) => {
            let phase = Phase::try_from(f.phase).unwrap_or_default();
            let phase = match phase {
                Phase::Unspecified => "unknown phase",
                p => p.label(),
            };
            line("Status", &format!("FAILING in phase {phase}"));
            if let Some(code) = f.code {
                line("Code", &with_symbol(code, f.symbol.as_deref()));
            }
            if let Some(sub) = f.sub_code {
                let symbol = catalog::describe(sub).symbol;
                line("Sub-code", &with_symbol(sub, symbol));
            }
            let cause = catalog::cause(&f.cause);
            match cause {
                Some(c) => line("Cause", &format!("{} - {}", c.id, c.text)),
                None => line("Cause", &f.cause),
            }
            if let Some(server) = f.server_error.as_deref() {
                line("Server error", server);
            }
            line("Source", &f.source);
            if let Some(c) = cause {
                let _ = writeln!(out, "\nWhat to do next:");
                wrap(&mut out, c.resolution);
            }
            if !f.evidence.is_empty() {
                let _ = writeln!(out, "\nEvidence:");
                for e in &f.evidence {
                    let _ = writeln!(out, "  {e}");
                }
            }
        }
    }
    crate::diagnose::write_attempts(&mut out, &s.attempts, 10);
    crate::diagnose::write_join_config(&mut out, s.join_config.as_ref(), LABEL + 2);
    let warnings = s.warnings.len() + d.event_warnings.len();
    let _ = writeln!(out);
    let _ = write!(out, "{:<LABEL$}: {warnings}", "Parse warnings");
    if warnings > 0 {
        let _ = write!(out, " (see `dsreg-agent parse --format text`)");
    }
    let _ = writeln!(out);
    if !d.events.is_empty() {
        let _ = writeln!(out, "{:<LABEL$}: {}", "Event records", d.events.len());
    }
    out
}

fn with_symbol(code: u32, symbol: Option<&str>) -> String {
    match symbol {
        Some(s) => format!("{} {s}", hex(code)),
        None => format!("{} (not in the catalog)", hex(code)),
    }
}

/// Word-wraps `text` at [`WIDTH`] with a two-space indent.
fn wrap(out: &mut String, text: &str) {
    for l in wrap_lines(text, WIDTH) {
        let _ = writeln!(out, "  {l}");
    }
}

/// Splits `text` into lines of at most `width` characters at spaces (a longer word stays
/// whole); always at least one line.
fn wrap_lines(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let len = current.chars().count();
        if len > 0 && len + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
    }
    if !current.is_empty() || lines.is_empty() {
        lines.push(current);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_keeps_words_and_indent() {
        let mut out = String::new();
        wrap(&mut out, &"word ".repeat(40));
        assert!(
            out.lines()
                .all(|l| l.starts_with("  word") && l.len() <= WIDTH + 2)
        );
        assert_eq!(out.split_whitespace().count(), 40);
    }

    #[test]
    fn text_listing_has_nested_paths_and_warnings() {
        let d = diagnose_bytes(
            include_bytes!("../testdata/dsregcmd/entra-joined-healthy-prt-cloud-tgt.txt"),
            Vec::new(),
            vec!["odd".into()],
            ExecutionContext::System,
        );
        let text = render_text(&d.snapshot, &d.event_warnings);
        assert!(
            text.contains("device_state.azure_ad_joined: true"),
            "{text}"
        );
        assert!(text.contains("join_type: entra_joined"), "{text}");
        assert!(text.contains("events: odd"), "{text}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = read_input(Some(Path::new("/nonexistent/x.txt")), "capture")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("cannot read capture `/nonexistent/x.txt`: "),
            "{err}"
        );
    }
}
