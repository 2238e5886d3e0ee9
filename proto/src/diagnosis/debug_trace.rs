//! Rule 1b: the join attempt recorded in a `dsregcmd /debug` trace.
//!
//! `/debug` output carries no Previous Registration block: the attempt's outcome is only in
//! the trace lines the parser keeps in `extra` (section `""`), e.g.
//! `Join HTTP status: 400`, `Join error code: DirectoryError`, `Join message: …` and the final
//! `DsrDeviceAutoJoin failed 0x801c03f2.`. The last `… failed … 0x…` line of the join is the
//! attempt's result; an earlier federated failure (`GetComputerTokenForADRS failed with error
//! 0xcaa9002c`) followed by "Try synchronized join" is not, because dsregcmd went on — but it
//! is kept, in order, in the evidence and as an attempt of its own ([`attempts`]), so the
//! technician sees both the federated failure and the fallback sync join's.

use super::{server_error_text, symbol};
use crate::Failure;
use crate::catalog;
use crate::server_message::{self as classify, ServerError};
use crate::v1::ExtraField;

/// Lines that end the join with its result code.
const RESULT_MARKERS: &[&str] = &[
    "DsrDeviceAutoJoin failed",
    "AutoEnrollSync failed with error code",
];

/// The first `0x` followed by eight hex digits in `s`.
fn code_in(s: &str) -> Option<u32> {
    let bytes = s.as_bytes();
    (0..bytes.len().saturating_sub(9)).find_map(|i| {
        let window = s.get(i..i + 10)?;
        let hex = window.strip_prefix("0x")?;
        hex.bytes()
            .all(|b| b.is_ascii_hexdigit())
            .then(|| u32::from_str_radix(hex, 16).ok())
            .flatten()
    })
}

/// The value after `prefix` on a trace line, trimmed.
fn after<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    line.strip_prefix(prefix)
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Whether a trace line records a failed step with a code (`… join failed with error 0x…`,
/// `GetComputerTokenForADRS failed with error 0x…`), other than the result line itself.
fn is_step_failure(line: &str) -> bool {
    contains_ignore_case(line, "failed with error")
        && !RESULT_MARKERS.iter().any(|m| line.contains(m))
        && code_in(line).is_some_and(|c| c != 0)
}

/// Whether `hay` contains the ASCII `needle`, ignoring ASCII case (without allocating).
fn contains_ignore_case(hay: &str, needle: &str) -> bool {
    let n = needle.as_bytes();
    let Some(first) = n.first().map(u8::to_ascii_lowercase) else {
        return true;
    };
    hay.as_bytes()
        .windows(n.len())
        .any(|w| w[0].to_ascii_lowercase() == first && w.eq_ignore_ascii_case(n))
}

/// The join tries a `/debug` trace records, newest first: each `… join failed with error
/// 0x…` the join went on from (a federated join before the fallback sync join), then the
/// result. `result` is [`from_debug_trace`] of the same `extra` (read once by the caller);
/// `None` when the trace has no result line.
pub(super) fn attempts(
    extra: &[ExtraField],
    result: Option<&Failure>,
) -> Option<Vec<crate::v1::Attempt>> {
    let result = result?;
    let mut out = vec![super::attempts::attempt_of(
        result,
        None,
        vec!["debug_trace".to_owned()],
        None,
    )];
    let tries = extra
        .iter()
        .filter(|e| e.section.is_empty() && e.key.is_empty())
        .map(|e| e.value.trim())
        .filter(|l| contains_ignore_case(l, "join failed with error"))
        .filter(|l| !RESULT_MARKERS.iter().any(|m| l.contains(m)));
    for line in tries {
        let Some(code) = code_in(line).filter(|c| *c != 0) else {
            continue;
        };
        let described = catalog::describe(code);
        let f = Failure {
            phase: described.phase as i32,
            code: Some(code),
            symbol: symbol(Some(code)),
            cause: described.cause.id.to_owned(),
            source: "debug_trace".to_owned(),
            evidence: vec![line.to_owned()],
            ..Failure::default()
        };
        out.push(super::attempts::attempt_of(
            &f,
            None,
            vec!["debug_trace".to_owned()],
            None,
        ));
    }
    // Lines were read oldest first after the result; the result is the newest.
    out[1..].reverse();
    Some(out)
}

/// The failure a `/debug` trace shows, if its join ended with an error code.
pub(super) fn from_debug_trace(extra: &[ExtraField]) -> Option<Failure> {
    let trace: Vec<&str> = extra
        .iter()
        .filter(|e| e.section.is_empty() && e.key.is_empty())
        .map(|e| e.value.trim())
        .collect();
    let (result_at, code) = trace.iter().enumerate().rev().find_map(|(i, l)| {
        RESULT_MARKERS
            .iter()
            .any(|m| l.contains(m))
            .then(|| code_in(l).filter(|c| *c != 0).map(|c| (i, c)))
            .flatten()
    })?;
    let mut error_code = None;
    let mut message = None;
    let mut evidence = Vec::new();
    for line in &trace[..=result_at] {
        if is_step_failure(line) {
            // An earlier failure the join went on from (federated → sync): kept in order.
        } else if after(line, "Join HTTP status:").is_some() {
            // Evidence only: the status adds nothing to the cause beyond the error code.
        } else if let Some(v) = after(line, "Join error code:") {
            error_code = Some(v);
        } else if let Some(v) = after(line, "Join message:") {
            message = Some(v);
        } else {
            continue;
        }
        evidence.push((*line).to_owned());
    }
    evidence.push(trace[result_at].to_owned());
    let server = ServerError {
        error_code,
        message,
        ..ServerError::default()
    };
    let refined = classify::refine(Some(code), &server);
    let described = catalog::describe(code);
    Some(Failure {
        phase: described.phase as i32,
        code: Some(code),
        sub_code: None,
        symbol: symbol(Some(code)),
        cause: refined.unwrap_or(described.cause).id.to_owned(),
        source: "debug_trace".to_owned(),
        server_error: server_error_text(error_code, message),
        evidence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Phase;

    fn lines(ls: &[&str]) -> Vec<ExtraField> {
        ls.iter()
            .map(|l| ExtraField {
                section: String::new(),
                key: String::new(),
                value: (*l).to_owned(),
            })
            .collect()
    }

    #[test]
    fn sync_join_directory_error_after_federated_failure() {
        let f = from_debug_trace(&lines(&[
            "AutoEnrollAsComputer: Unable to retrieve access token. GetComputerTokenForADRS failed with error 0xcaa9002c.",
            "DsrCmdJoinHelper::Join: Federated ADRS join failed with error 0xcaa1000e. Try synchronized join.",
            "Join HTTP status: 400",
            "Join error code: DirectoryError",
            "Join message: The device object by the given id (Device ID) is not found.",
            "DsrDeviceAutoJoin failed 0x801c03f2.",
            "DsrCmdJoinHelper::Join: DsrCmdDeviceEnroller::AutoEnrollSync failed with error code 0x801c03f2.",
        ]))
        .unwrap();
        assert_eq!(f.code, Some(0x801c03f2));
        assert_eq!(f.phase, Phase::Join as i32);
        assert_eq!(f.cause, "device_not_synced");
        assert_eq!(f.source, "debug_trace");
        assert_eq!(f.symbol.as_deref(), Some("DSREG_E_DIRECTORY_FAILURE"));
        assert!(f.evidence.iter().any(|e| e.starts_with("Join error code")));
        assert!(
            f.evidence.last().unwrap().contains("AutoEnrollSync failed"),
            "{:?}",
            f.evidence
        );
    }

    #[test]
    fn no_result_line_no_failure() {
        assert!(
            from_debug_trace(&lines(&["PreJoinChecks Complete.", "resultCode: 0x0"])).is_none()
        );
        assert!(from_debug_trace(&lines(&["DsrDeviceAutoJoin failed 0x00000000."])).is_none());
        // Lines under a real section are not trace lines.
        let mut under_section = lines(&["DsrDeviceAutoJoin failed 0x801c03f2."]);
        under_section[0].section = "Diagnostic Data".into();
        assert!(from_debug_trace(&under_section).is_none());
    }

    #[test]
    fn code_scan_is_total() {
        assert_eq!(code_in("failed 0x801C03F2."), Some(0x801c03f2));
        assert_eq!(code_in("0x12"), None);
        assert_eq!(code_in("é0x801c03f2é"), Some(0x801c03f2));
        assert_eq!(code_in(""), None);
    }
}
