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

use super::correlate::{self, Run, TERMINAL_FAILURES, epoch_ms};
use super::text::{event_line, event_source, server_error_text};
use super::{
    ADCONFIG_READ_FAILED, FILE_NOT_FOUND, fallback_cause, from_previous_registration, non_empty,
    symbol,
};
use crate::catalog;
use crate::server_message::{ReadAnswer, ServerError};
use crate::v1::{Attempt, DiagnosticTests, JoinConfig, PreviousRegistration};
use crate::{EventRecord, Failure, Phase, Snapshot, TestStatus};

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
    /// Its failure (with evidence lines) when it is the newest attempt and failed; `None`
    /// for a success and for older attempts (they are history, never the device's failure).
    pub failure: Option<Failure>,
    /// Sort key: epoch ms of the attempt (`None` sorts oldest).
    pub at: Option<i64>,
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

    // The order (newest first) is known before anything is classified: only the newest
    // attempt can be the device's failure, so only it keeps one (with evidence lines); the
    // others move their texts into the attempt.
    let previous_alone = previous.filter(|_| described.is_none());
    let mut order: Vec<(Option<i64>, Option<usize>)> = runs
        .iter()
        .enumerate()
        .map(|(i, run)| (run_at(run), Some(i)))
        .chain(previous_alone.map(|_| (previous_at, None)))
        .collect();
    // Newest first; equal or unknown times keep the run order (stable sort, reversed input).
    order.reverse();
    order.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    order.truncate(MAX_ATTEMPTS);

    let mut answers = Answers::default();
    let mut out: Vec<Classified> = Vec::with_capacity(order.len());
    for (pos, (at, slot)) in order.into_iter().enumerate() {
        let newest = pos == 0;
        let classified = match slot {
            Some(i) => {
                let p = if described == Some(i) { previous } else { None };
                let mut c = from_run(&runs[i], p, tests, config, &mut answers, at, newest);
                if let Some(f) = c.failure.as_mut() {
                    push_evidence(f, &runs[i]);
                }
                Some(c)
            }
            None => previous_alone
                .and_then(|p| from_previous_registration(p, tests, None).map(|f| (p, f)))
                .map(|(p, f)| {
                    let sources = vec!["previous_registration".to_owned()];
                    let (attempt, failure) = split(f, p.time.clone(), sources, None, newest);
                    Classified {
                        attempt,
                        failure,
                        at,
                    }
                }),
        };
        out.extend(classified);
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

fn from_run<'a>(
    run: &Run<'a>,
    previous: Option<&PreviousRegistration>,
    tests: Option<&DiagnosticTests>,
    config: Option<&JoinConfig>,
    answers: &mut Answers<'a>,
    at: Option<i64>,
    keep_failure: bool,
) -> Classified {
    let mut sources: Vec<String> = Vec::with_capacity(run.records.len() + 1);
    if previous.is_some() {
        sources.push("previous_registration".to_owned());
    }
    sources.extend(run.records.iter().map(|r| event_source(r)));
    let activity = run
        .records
        .iter()
        .find_map(|r| non_empty(r.activity_id.as_deref()).map(str::to_owned));
    let time = run
        .outcome()
        .and_then(|r| r.time.clone())
        .or_else(|| run.records.iter().find_map(|r| r.time.clone()));

    if run.succeeded() {
        return Classified {
            attempt: Attempt {
                time,
                sources,
                activity_id: activity,
                succeeded: true,
                ..Attempt::default()
            },
            failure: None,
            at,
        };
    }

    let answer = server_answer(run);
    let f = match previous.and_then(|p| from_previous_registration(p, tests, answer)) {
        Some(f) => f,
        None => event_failure(run, answer, tests, config, answers),
    };
    let time = previous
        .and_then(|p| p.time.clone())
        .filter(|_| time.is_none())
        .or(time);
    let (attempt, failure) = split(f, time, sources, activity, keep_failure);
    Classified {
        attempt,
        failure,
        at,
    }
}

/// When a run happened (its sort key): its outcome's time, else its first record's.
fn run_at(run: &Run<'_>) -> Option<i64> {
    run.outcome()
        .and_then(|r| r.time.as_deref())
        .and_then(epoch_ms)
        .or_else(|| run.first_ms())
}

/// The attempt of a failure and, when `keep_failure`, the failure itself (else its texts move
/// into the attempt without a copy).
fn split(
    f: Failure,
    time: Option<String>,
    sources: Vec<String>,
    activity_id: Option<String>,
    keep_failure: bool,
) -> (Attempt, Option<Failure>) {
    if keep_failure {
        let attempt = attempt_of(&f, time, sources, activity_id);
        return (attempt, Some(f));
    }
    let (server_error_type, server_message) = split_server_error(f.server_error);
    let attempt = Attempt {
        time,
        phase: f.phase,
        code: f.code,
        symbol: f.symbol,
        cause: f.cause,
        server_error_type,
        server_message,
        activity_id,
        sources,
        succeeded: false,
        sub_code: f.sub_code,
    };
    (attempt, None)
}

/// `DirectoryError: message` → (type, message); text without a type is the message.
fn split_server_error(s: Option<String>) -> (Option<String>, Option<String>) {
    let Some(s) = s else {
        return (None, None);
    };
    match s.split_once(": ") {
        Some((t, m)) if !t.contains(' ') => (Some(t.to_owned()), Some(m.to_owned())),
        _ => (None, Some(s)),
    }
}

/// The evidence lines of a run's failure records, after the failure's own lines.
fn push_evidence(f: &mut Failure, run: &Run<'_>) {
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

/// The attempt record of a classified failure.
pub(crate) fn attempt_of(
    f: &Failure,
    time: Option<String>,
    sources: Vec<String>,
    activity_id: Option<String>,
) -> Attempt {
    let (server_error_type, server_message) = split_server_error(f.server_error.clone());
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

/// The server answers of one classification, each read once: hourly retries repeat the same
/// answer, and normalising a long message is the costly part of classifying a run.
#[derive(Default)]
struct Answers<'a> {
    seen: Vec<(ServerError<'a>, ReadAnswer, Option<String>)>,
}

impl<'a> Answers<'a> {
    /// The refined cause id and the one-line server text of `server` under `code`.
    fn read(
        &mut self,
        code: Option<u32>,
        server: ServerError<'a>,
    ) -> (Option<&'static str>, Option<String>) {
        let i = match self.seen.iter().position(|(s, ..)| {
            s.error_code == server.error_code
                && s.sub_code == server.sub_code
                && s.message == server.message
        }) {
            Some(i) => i,
            None => {
                let text = server_error_text(server.error_code, server.message);
                self.seen.push((server, ReadAnswer::new(&server), text));
                self.seen.len() - 1
            }
        };
        let (_, answer, text) = &self.seen[i];
        (answer.refine(code).map(|c| c.id), text.clone())
    }
}

/// The failure of a run known from events only.
fn event_failure<'a>(
    run: &Run<'a>,
    answer: Option<&'a EventRecord>,
    tests: Option<&DiagnosticTests>,
    config: Option<&JoinConfig>,
    answers: &mut Answers<'a>,
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
    let (refined, server_error) = answers.read(code, server);
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
        refined
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
        server_error,
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
