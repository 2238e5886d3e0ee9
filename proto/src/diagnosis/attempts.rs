//! Rule 1 of the diagnosis: join attempts (DESIGN §4).
//!
//! [`super::correlate`] groups the event records into runs of the join task; this module
//! classifies each run **once**, with the richest evidence of the run: a terminal record that
//! carries only a code (304 says `0x801c03f2`) takes its cause from the server's answer of the
//! same run (the 204 JSON that says "device object … not found"), and the Previous
//! Registration block of dsregcmd, which describes the newest attempt, is merged into the run
//! it describes (same time, within the run's window) instead of counting as an attempt of its
//! own. A `/debug` trace is one more source (see `debug_trace`).
//!
//! Invariants: every attempt has one phase, one code and one cause from the catalog's closed
//! set; a run yields one attempt; attempts are returned newest first and bounded by
//! [`MAX_ATTEMPTS`].

use super::correlate::{self, Run, SUCCESSES, TERMINAL_FAILURES, epoch_ms};
use super::{
    ADCONFIG_READ_FAILED, FILE_NOT_FOUND, fallback_cause, from_previous_registration, non_empty,
    one_line, server_error_text, symbol,
};
use crate::catalog;
use crate::server_message::{self as classify, ServerError};
use crate::v1::{Attempt, DiagnosticTests, JoinConfig, PreviousRegistration};
use crate::{EventRecord, Failure, Phase, Snapshot, TestStatus, hex};

/// At most this many attempts are kept on a snapshot (the newest).
pub const MAX_ATTEMPTS: usize = 32;
/// Evidence lines kept per attempt.
const MAX_EVIDENCE: usize = 12;
/// How far the Previous Registration time may lie outside a run and still describe it.
const PREVIOUS_SLACK_MS: i64 = 2 * 60 * 1000;

/// One classified attempt and, when it failed, the failure it stands for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Classified {
    /// The attempt as the snapshot and the API show it.
    pub attempt: Attempt,
    /// Its failure (with evidence lines); `None` for a success.
    pub failure: Option<Failure>,
    /// Sort key: epoch ms of the attempt (`None` sorts oldest).
    pub at: Option<i64>,
    /// The index of its run in the correlated runs (for the evidence lines).
    run: Option<usize>,
}

/// Every attempt the snapshot and the records show, newest first, and the count of dropped
/// records (other channels, duplicates) for warnings.
pub(crate) fn classify(
    snapshot: &Snapshot,
    events: &[EventRecord],
) -> (Vec<Classified>, correlate::Dropped) {
    let diag = snapshot.diagnostics.as_ref();
    let tests = diag.and_then(|d| d.tests.as_ref());
    let previous = diag
        .and_then(|d| d.previous_registration.as_ref())
        .filter(|p| describes_failure(p));
    let config = snapshot.join_config.as_ref();
    let (runs, dropped) = correlate::runs(events);

    // The run the Previous Registration block describes: the one whose window holds its time;
    // without a time, the newest run when the codes agree.
    let previous_at = previous.and_then(|p| p.time.as_deref()).and_then(epoch_ms);
    let described = previous.and_then(|p| match previous_at {
        Some(t) => runs.iter().rposition(|r| {
            let (Some(first), Some(last)) = (r.first_ms(), r.last_ms()) else {
                return false;
            };
            t >= first - PREVIOUS_SLACK_MS && t <= last + PREVIOUS_SLACK_MS
        }),
        None => runs
            .iter()
            .rposition(|r| run_code(r).is_some() && run_code(r) == p.client_error_code),
    });

    let mut out: Vec<Classified> = runs
        .iter()
        .enumerate()
        .map(|(i, run)| {
            let p = if described == Some(i) { previous } else { None };
            Classified {
                run: Some(i),
                ..from_run(run, p, tests, config)
            }
        })
        .collect();
    if let Some(p) = previous
        && described.is_none()
        && let Some(f) = from_previous_registration(p, tests, None)
    {
        out.push(Classified {
            attempt: attempt_of(
                &f,
                p.time.clone(),
                vec!["previous_registration".into()],
                None,
            ),
            failure: Some(f),
            at: previous_at,
            run: None,
        });
    }
    // Newest first; equal or unknown times keep the run order (stable sort, reversed input).
    out.reverse();
    out.sort_by_key(|c| std::cmp::Reverse(c.at));
    out.truncate(MAX_ATTEMPTS);
    // Only the newest attempt can be the device's failure: only its evidence lines are built.
    if let Some(Classified {
        failure: Some(f),
        run: Some(i),
        ..
    }) = out.first_mut()
        && let Some(run) = runs.get(*i)
    {
        for r in run
            .records
            .iter()
            .filter(|r| correlate::is_failure(r.event_id))
        {
            let line = event_line(r);
            if !f.evidence.contains(&line) {
                f.evidence.push(line);
            }
        }
        f.evidence.truncate(MAX_EVIDENCE);
    }
    (out, dropped)
}

/// Whether a Previous Registration block records a failure at all.
fn describes_failure(p: &PreviousRegistration) -> bool {
    p.client_error_code.is_some_and(|c| c != 0)
        || non_empty(p.server_error_code.as_deref()).is_some()
        || non_empty(p.server_message.as_deref()).is_some()
        || p.error_phase
            .as_deref()
            .and_then(Phase::from_label)
            .is_some()
}

fn from_run(
    run: &Run<'_>,
    previous: Option<&PreviousRegistration>,
    tests: Option<&DiagnosticTests>,
    config: Option<&JoinConfig>,
) -> Classified {
    let sources: Vec<String> = previous
        .map(|_| "previous_registration".to_owned())
        .into_iter()
        .chain(
            run.records
                .iter()
                .map(|r| format!("event:{}#{}", r.event_id, r.record_id)),
        )
        .collect();
    let activity = run
        .records
        .iter()
        .find_map(|r| non_empty(r.activity_id.as_deref()).map(str::to_owned));
    let outcome = run.outcome();
    let at = outcome
        .and_then(|r| r.time.as_deref())
        .and_then(epoch_ms)
        .or_else(|| run.first_ms());
    let time = outcome
        .and_then(|r| r.time.clone())
        .or_else(|| run.records.iter().find_map(|r| r.time.clone()));

    if run.succeeded() {
        let id = outcome.map_or(SUCCESSES[0], |r| r.event_id);
        return Classified {
            attempt: Attempt {
                time,
                sources,
                activity_id: activity,
                succeeded: true,
                ..Attempt::default()
            },
            failure: None,
            run: None,
            at: at.or_else(|| {
                run.records
                    .iter()
                    .find(|r| r.event_id == id)
                    .and_then(|r| r.time.as_deref())
                    .and_then(epoch_ms)
            }),
        };
    }

    let answer = server_answer(run);
    let f = match previous.and_then(|p| from_previous_registration(p, tests, answer)) {
        Some(f) => f,
        None => event_failure(run, answer, tests, config),
    };
    let time = previous
        .and_then(|p| p.time.clone())
        .filter(|_| time.is_none())
        .or(time);
    Classified {
        attempt: attempt_of(&f, time, sources, activity),
        failure: Some(f),
        at,
        run: None,
    }
}

/// The attempt record of a classified failure.
pub(crate) fn attempt_of(
    f: &Failure,
    time: Option<String>,
    sources: Vec<String>,
    activity_id: Option<String>,
) -> Attempt {
    let (server_error_type, server_message) = match f.server_error.as_deref() {
        Some(s) => match s.split_once(": ") {
            Some((t, m)) if !t.contains(' ') => (Some(t.to_owned()), Some(m.to_owned())),
            _ => (None, Some(s.to_owned())),
        },
        None => (None, None),
    };
    Attempt {
        time,
        phase: f.phase,
        code: f.code,
        symbol: f.symbol.clone(),
        cause: f.cause.clone(),
        server_error_type,
        server_message,
        activity_id,
        sources,
        succeeded: false,
        sub_code: f.sub_code,
    }
}

/// The run's server answer for its failure: the newest 201 (discover) or 204/354 (join) whose
/// JSON names an error type or message — of the failure's own phase when the failure record
/// tells it (a discover failure never takes a join answer's message, nor the reverse).
fn server_answer<'a>(run: &Run<'a>) -> Option<&'a EventRecord> {
    let wanted: &[u32] = match failure_record(run).map(|f| (f.event_id, f.error_phase.as_deref())) {
        Some((201 | 307 | 309 | 330, _)) => &[201],
        Some((304, Some(p))) if Phase::from_label(p) == Some(Phase::Discover) => &[201],
        Some((305 | 333 | 334 | 369, _)) => &[],
        Some((204 | 304 | 205 | 354, _)) => &[204, 354],
        _ => &[201, 204, 354],
    };
    run.records
        .iter()
        .rev()
        .find(|r| {
            wanted.contains(&r.event_id)
                && r.server_response.as_ref().is_some_and(|s| {
                    non_empty(s.error_type.as_deref()).is_some()
                        || non_empty(s.message.as_deref()).is_some()
                })
        })
        .copied()
}

/// The run's failure record: the last terminal failure, else the last step failure.
fn failure_record<'a>(run: &Run<'a>) -> Option<&'a EventRecord> {
    let records = &run.records;
    records
        .iter()
        .rev()
        .find(|r| TERMINAL_FAILURES.contains(&r.event_id))
        .or_else(|| {
            records
                .iter()
                .rev()
                .find(|r| correlate::is_failure(r.event_id))
        })
        .copied()
}

/// Failure records that carry no code by nature (pre-check verdicts, configuration findings):
/// their run's code is their own, never another record's.
const CODELESS: &[u32] = &[220, 330, 333, 334, 369];

/// The run's client code: the failure record's, else (for a join-flow record) the newest
/// non-zero one of the run's other failure records.
fn run_code(run: &Run<'_>) -> Option<u32> {
    let f = failure_record(run)?;
    let own = f.exit_code.filter(|c| *c != 0);
    if own.is_some() || CODELESS.contains(&f.event_id) {
        return own;
    }
    run.records
        .iter()
        .rev()
        .filter(|r| correlate::is_failure(r.event_id))
        .find_map(|r| r.exit_code.filter(|c| *c != 0))
}

/// The failure of a run known from events only.
fn event_failure(
    run: &Run<'_>,
    answer: Option<&EventRecord>,
    tests: Option<&DiagnosticTests>,
    config: Option<&JoinConfig>,
) -> Failure {
    let Some(f_rec) = failure_record(run) else {
        // `correlate::runs` keeps only runs with a failure or success record.
        return Failure::default();
    };
    let code = run_code(run);
    let response = answer.and_then(|a| a.server_response.as_ref());
    let error_code = response.and_then(|r| non_empty(r.error_type.as_deref()));
    let message = response
        .and_then(|r| non_empty(r.message.as_deref()))
        .or_else(|| {
            run.records
                .iter()
                .rev()
                .find_map(|r| non_empty(r.server_error.as_deref()))
        });
    let server = ServerError {
        error_code,
        sub_code: response.and_then(|r| non_empty(r.sub_error_code.as_deref())),
        message,
        operation: None,
    };
    let described = code.map(catalog::describe);
    let error_phase = run
        .records
        .iter()
        .rev()
        .find_map(|r| r.error_phase.as_deref().and_then(Phase::from_label));
    let phase = match f_rec.event_id {
        305 => Phase::Auth,
        333 | 334 | 369 => Phase::PreCheck,
        201 | 200 | 307 | 309 | 330 => Phase::Discover,
        206 => Phase::PostJoin,
        204 | 202 | 203 | 205 | 220 | 344 | 345 | 354 => Phase::Join,
        _ => error_phase
            .or_else(|| match answer.map(|a| a.event_id) {
                Some(201) => Some(Phase::Discover),
                Some(204) => Some(Phase::Join),
                _ => None,
            })
            .or(described.as_ref().filter(|d| d.known).map(|d| d.phase))
            .unwrap_or(Phase::Join),
    };
    // The discover sub-error: 201 names the underlying error under a terminal code.
    let sub_code = answer
        .filter(|a| a.event_id == 201)
        .and_then(|a| a.exit_code)
        .filter(|c| Some(*c) != code && *c != 0);
    let cause: &'static str = if f_rec.event_id == 333 {
        "not_system"
    } else if f_rec.event_id == 334 {
        "dc_unreachable"
    } else if f_rec.event_id == 330 {
        "both_drs_configured"
    } else if f_rec.event_id == 369 && code.is_none_or(|c| !catalog::describe(c).known) {
        "join_task_state_failed"
    } else if f_rec.event_id == 220 {
        "ad_computer_object_unreadable"
    } else if code == Some(ADCONFIG_READ_FAILED)
        && run.records.iter().any(|r| matches!(r.event_id, 304 | 307))
    {
        scp_cause(tests, config)
    } else {
        classify::refine(code, &server)
            .map(|c| c.id)
            .or_else(|| super::generic_sub_cause(code.unwrap_or(0), sub_code))
            .or(match (f_rec.event_id, code) {
                (344, None) => Some("tpm_locked_out"),
                (345, None) => Some("tpm_keyset_missing"),
                _ => None,
            })
            .or_else(|| described.as_ref().map(|d| d.cause.id))
            .unwrap_or(fallback_cause(server.error_code))
    };
    Failure {
        phase: phase as i32,
        code,
        sub_code,
        symbol: symbol(code),
        cause: cause.to_owned(),
        source: format!("event:{}", f_rec.event_id),
        server_error: server_error_text(error_code, message),
        evidence: Vec::new(),
    }
}

/// 0x801c001d from events: the SCP could not be read. Whether there is no SCP at all is told
/// by the AD Configuration Test (its code or sub-code 0x80070002) when the build has it; a
/// client-side SCP in the registry (targeted rollout) means one is configured; otherwise the
/// signature of a network where hybrid join is not set up (KB4480781).
fn scp_cause(tests: Option<&DiagnosticTests>, config: Option<&JoinConfig>) -> &'static str {
    if let Some(t) = tests.and_then(|t| t.ad_configuration.as_ref())
        && t.result == TestStatus::Fail as i32
    {
        let no_scp = t.code == Some(FILE_NOT_FOUND) || t.sub_code == Some(FILE_NOT_FOUND);
        return if no_scp {
            "scp_not_configured"
        } else {
            "scp_read_failed"
        };
    }
    let client_scp = config.is_some_and(|c| {
        non_empty(c.registry_tenant_id.as_deref()).is_some()
            || non_empty(c.registry_tenant_name.as_deref()).is_some()
    });
    if client_scp {
        "scp_read_failed"
    } else {
        "scp_not_configured"
    }
}

/// One line per event: `event 204 at …: exit code 0x801c03f2, HTTP 400, DirectoryError: …`.
pub(crate) fn event_line(e: &EventRecord) -> String {
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
    .or_else(|| non_empty(e.server_error.as_deref()).map(one_line))
    .or_else(|| non_empty(e.message.as_deref()).map(one_line))
    .map(|s| s.chars().take(300).collect::<String>());
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
