//! The agent's own warnings and errors → the Windows Application event log, source
//! `dsreg-agent`, so Windows Event Forwarding and a SIEM see agent faults (spool full, the
//! collector unreachable, a service that cannot start) where they already look.
//!
//! [`EventLogLayer`] is a `tracing` layer: every WARN or ERROR event (after the `DSREG_LOG`
//! filter) becomes one event-log record — ERROR as an Error with event id
//! [`EVENT_ID_ERROR`], WARN as a Warning with [`EVENT_ID_WARNING`] — whose single string is
//! the message followed by its fields (`key=value`), cut to [`MAX_CHARS`]. INFO and below stay
//! in the log file / standard error only. The layer formats platform-neutrally and hands the
//! text to a [`Sink`]; only the sink that calls `RegisterEventSourceW` / `ReportEventW` is
//! `cfg(windows)`, so the formatting is tested everywhere.
//!
//! The installer registers the source (`New-EventLog -LogName Application -Source
//! dsreg-agent`, whose message file renders the string as the description) and the
//! uninstaller removes it. Without registration Windows still records the events, with a
//! "description cannot be found" preamble. The log file option stays: the event log gets
//! the faults, the file keeps the whole story.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The registered event source name.
pub const SOURCE: &str = "dsreg-agent";
/// Event id of an agent error.
pub const EVENT_ID_ERROR: u32 = 1000;
/// Event id of an agent warning.
pub const EVENT_ID_WARNING: u32 = 1001;
/// Longest record text, in characters (ReportEvent's limit is 31 839 per string).
pub const MAX_CHARS: usize = 8192;

/// Where formatted records go.
pub trait Sink: Send + Sync + 'static {
    /// Writes one record: `level` is ERROR or WARN.
    fn report(&self, level: Level, text: &str);
}

/// The `tracing` layer that forwards WARN and ERROR events to a [`Sink`].
#[derive(Debug)]
pub struct EventLogLayer<S> {
    sink: S,
}

impl<S: Sink> EventLogLayer<S> {
    /// A layer writing to `sink`.
    pub fn new(sink: S) -> Self {
        EventLogLayer { sink }
    }
}

/// Collects the message and the fields of one event.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

/// The record text of an event: message, then fields, then the target; cut to [`MAX_CHARS`].
fn format_event(event: &Event<'_>) -> String {
    let mut text = Text::default();
    event.record(&mut text);
    let mut out = text.message;
    if !text.fields.is_empty() {
        out.push_str(" (");
        out.push_str(text.fields.trim_start());
        out.push(')');
    }
    let _ = write!(out, " [{}]", event.metadata().target());
    if out.chars().count() > MAX_CHARS {
        out = out.chars().take(MAX_CHARS - 1).collect();
        out.push('…');
    }
    out
}

impl<S: Sink, Sub: Subscriber> Layer<Sub> for EventLogLayer<S> {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, Sub>) {
        let level = *event.metadata().level();
        if level == Level::ERROR || level == Level::WARN {
            self.sink.report(level, &format_event(event));
        }
    }
}

/// The Application event log on Windows; `None` elsewhere, or when the source cannot be
/// opened (then only the log file / standard error get the records).
pub fn system_layer() -> Option<EventLogLayer<SystemSink>> {
    SystemSink::open().map(EventLogLayer::new)
}

#[cfg(windows)]
pub use windows::SystemSink;

/// No event log off Windows: [`system_layer`] returns `None`.
#[cfg(not(windows))]
#[derive(Debug)]
pub struct SystemSink(());

#[cfg(not(windows))]
impl SystemSink {
    fn open() -> Option<Self> {
        None
    }
}

#[cfg(not(windows))]
impl Sink for SystemSink {
    fn report(&self, _level: Level, _text: &str) {}
}

#[cfg(windows)]
mod windows {
    use tracing::Level;
    use windows_sys::Win32::System::EventLog::{
        DeregisterEventSource, EVENTLOG_ERROR_TYPE, EVENTLOG_WARNING_TYPE, RegisterEventSourceW,
        ReportEventW,
    };

    use super::{EVENT_ID_ERROR, EVENT_ID_WARNING, SOURCE, Sink};

    /// A handle from `RegisterEventSourceW` (kept as an address: event-log handles may be
    /// used from any thread).
    #[derive(Debug)]
    pub struct SystemSink(usize);

    fn wide(s: &str) -> Vec<u16> {
        s.encode_utf16()
            .map(|c| if c == 0 { 0x20 } else { c })
            .chain(std::iter::once(0))
            .collect()
    }

    impl SystemSink {
        pub(super) fn open() -> Option<Self> {
            let source = wide(SOURCE);
            // SAFETY: a NULL server name means the local machine; `source` is NUL-terminated.
            let handle = unsafe { RegisterEventSourceW(std::ptr::null(), source.as_ptr()) };
            (!handle.is_null()).then(|| SystemSink(handle as usize))
        }
    }

    impl Sink for SystemSink {
        fn report(&self, level: Level, text: &str) {
            let (kind, id) = if level == Level::ERROR {
                (EVENTLOG_ERROR_TYPE, EVENT_ID_ERROR)
            } else {
                (EVENTLOG_WARNING_TYPE, EVENT_ID_WARNING)
            };
            let text = wide(text);
            let strings = [text.as_ptr()];
            // SAFETY: the handle is live until Drop; one NUL-terminated string, no raw data,
            // no user SID. A failed write is ignored: logging must not fail the agent.
            unsafe {
                ReportEventW(
                    self.0 as _,
                    kind,
                    0,
                    id,
                    std::ptr::null_mut(),
                    1,
                    0,
                    strings.as_ptr(),
                    std::ptr::null(),
                );
            }
        }
    }

    impl Drop for SystemSink {
        fn drop(&mut self) {
            // SAFETY: the handle came from RegisterEventSourceW and is released once.
            unsafe {
                DeregisterEventSource(self.0 as _);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::prelude::*;

    use super::*;

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<(Level, String)>>>);

    impl Sink for Recorder {
        fn report(&self, level: Level, text: &str) {
            if let Ok(mut v) = self.0.lock() {
                v.push((level, text.to_owned()));
            }
        }
    }

    #[test]
    fn warnings_and_errors_only_with_their_fields() {
        let rec = Recorder::default();
        let subscriber = tracing_subscriber::registry().with(EventLogLayer::new(rec.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("not forwarded");
            tracing::warn!(dropped = 3, "spool full: older reports dropped");
            tracing::error!(error = %"cannot open spool", "dsreg-agent run stopped on an error");
        });
        let got = rec.0.lock().map(|v| v.clone()).unwrap_or_default();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].0, Level::WARN);
        assert!(
            got[0]
                .1
                .starts_with("spool full: older reports dropped (dropped=3) ["),
            "{got:?}"
        );
        assert_eq!(got[1].0, Level::ERROR);
        assert!(got[1].1.contains("error=cannot open spool"), "{got:?}");
    }

    #[test]
    fn long_records_are_cut() {
        let rec = Recorder::default();
        let subscriber = tracing_subscriber::registry().with(EventLogLayer::new(rec.clone()));
        let long = "x".repeat(MAX_CHARS * 2);
        tracing::subscriber::with_default(subscriber, || tracing::warn!("{long}"));
        let got = rec.0.lock().map(|v| v.clone()).unwrap_or_default();
        assert_eq!(got[0].1.chars().count(), MAX_CHARS);
    }

    #[test]
    fn no_event_log_off_windows() {
        assert_eq!(system_layer().is_some(), cfg!(windows));
    }
}
