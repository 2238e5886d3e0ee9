//! Rule 1 of the diagnosis, the Previous Registration block: the failure dsregcmd recorded
//! for the newest join attempt (client code, server error code/sub-code/message, error
//! phase), refined with the server's answer of the same run when the block has no text, and
//! with the failing diagnostic test of the same phase for the sub-code.
//!
//! Invariant: the cause is always an id of the catalog's closed cause set.

use super::text::{push, server_error_text};
use super::{
    ADCONFIG_READ_FAILED, FILE_NOT_FOUND, GENERIC_CODES, chain, is_fail, non_empty, symbol,
    test_line,
};
use crate::catalog;
use crate::server_message::{self, ServerError};
use crate::v1::{DiagnosticTests, PreviousRegistration};
use crate::{EventRecord, Failure, Phase, hex};

/// The failure a Previous Registration block records; `answer` is the server's answer (event
/// 201/204) of the same run, used where the block itself has no server text.
pub(super) fn from_previous_registration(
    p: &PreviousRegistration,
    tests: Option<&DiagnosticTests>,
    answer: Option<&EventRecord>,
) -> Option<Failure> {
    let code = p.client_error_code.filter(|c| *c != 0);
    let has_server = non_empty(p.server_error_code.as_deref()).is_some()
        || non_empty(p.server_message.as_deref()).is_some();
    let error_phase = p.error_phase.as_deref().and_then(Phase::from_label);
    if code.is_none() && !has_server && error_phase.is_none() {
        return None;
    }
    let response = answer.and_then(|a| a.server_response.as_ref());
    let server = ServerError {
        error_code: non_empty(p.server_error_code.as_deref())
            .or_else(|| response.and_then(|r| non_empty(r.error_type.as_deref()))),
        sub_code: non_empty(p.server_error_sub_code.as_deref())
            .or_else(|| response.and_then(|r| non_empty(r.sub_error_code.as_deref()))),
        message: non_empty(p.server_message.as_deref())
            .or_else(|| response.and_then(|r| non_empty(r.message.as_deref()))),
        operation: non_empty(p.server_operation.as_deref()),
    };
    let refined = server_message::refine(code, &server);
    let entry_phase = code.and_then(catalog::lookup).map(|e| e.phase);
    let phase = error_phase
        .or(entry_phase)
        .or_else(|| server_phase(server.error_code))
        .or(refined.map(|c| c.phase))
        .or_else(|| code.map(|c| catalog::describe(c).phase))
        .unwrap_or(Phase::Unspecified);

    let failing_test = tests.and_then(|t| {
        chain(t)
            .into_iter()
            .find(|(test, r)| test.phase == phase && is_fail(r))
    });
    let sub_code = failing_test.and_then(|(_, r)| match (r.code, code) {
        (Some(tc), Some(c)) if tc == c => r.sub_code,
        _ => r.code,
    });

    let cause = refined
        .map(|c| c.id)
        .or_else(|| special_cause(code, sub_code, tests))
        .or_else(|| code.map(|c| catalog::describe(c).cause.id))
        .unwrap_or_else(|| fallback_cause(server.error_code));

    let mut evidence = Vec::new();
    push(&mut evidence, "Previous Registration", p.time.as_deref());
    push(
        &mut evidence,
        "Registration Type",
        p.registration_type.as_deref(),
    );
    push(&mut evidence, "Error Phase", p.error_phase.as_deref());
    push(&mut evidence, "Client ErrorCode", code.map(hex).as_deref());
    push(&mut evidence, "Server ErrorCode", server.error_code);
    push(&mut evidence, "Server ErrorSubCode", server.sub_code);
    push(&mut evidence, "Server Operation", server.operation);
    push(&mut evidence, "Server Message", server.message);
    push(
        &mut evidence,
        "Https Status",
        p.https_status.map(|s| s.to_string()).as_deref(),
    );
    push(&mut evidence, "Request Id", p.request_id.as_deref());
    if let Some((test, r)) = failing_test {
        evidence.push(test_line(test, r));
    }

    Some(Failure {
        phase: phase as i32,
        code,
        sub_code,
        symbol: symbol(code),
        cause: cause.to_owned(),
        source: "previous_registration".to_owned(),
        server_error: server_error_text(server.error_code, server.message),
        evidence,
    })
}

/// The cause rules the catalog and the server answer cannot express alone.
fn special_cause(
    code: Option<u32>,
    sub_code: Option<u32>,
    tests: Option<&DiagnosticTests>,
) -> Option<&'static str> {
    let code = code?;
    // 0x80070002 means "no SCP" only as the AD Configuration Test's own code or sub-code.
    let ad_config = tests
        .and_then(|t| t.ad_configuration.as_ref())
        .filter(|r| is_fail(r));
    if code == ADCONFIG_READ_FAILED
        && let Some(r) = ad_config
    {
        let no_scp = r.code == Some(FILE_NOT_FOUND) || r.sub_code == Some(FILE_NOT_FOUND);
        return Some(if no_scp {
            "scp_not_configured"
        } else {
            "scp_read_failed"
        });
    }
    generic_sub_cause(code, sub_code)
}

/// For a generic code whose sub-code the catalog knows, the sub-code's cause.
pub(crate) fn generic_sub_cause(code: u32, sub_code: Option<u32>) -> Option<&'static str> {
    if !GENERIC_CODES.contains(&code) {
        return None;
    }
    sub_code
        .filter(|s| *s != code)
        .and_then(catalog::lookup)
        .map(|e| e.cause)
}

/// The phase a server error code implies when nothing else says: DRS answered, so the join
/// call itself failed.
fn server_phase(error_code: Option<&str>) -> Option<Phase> {
    match error_code? {
        c if c.eq_ignore_ascii_case("DirectoryError") => Some(Phase::Join),
        c if c.eq_ignore_ascii_case("AuthenticationError") => Some(Phase::Join),
        _ => None,
    }
}

/// The cause when there is neither a code nor a refinement.
pub(super) fn fallback_cause(error_code: Option<&str>) -> &'static str {
    match error_code {
        Some(c) if c.eq_ignore_ascii_case("DirectoryError") => "directory_error",
        Some(c) if c.eq_ignore_ascii_case("AuthenticationError") => "drs_authentication_error",
        _ => crate::labels::UNKNOWN_CAUSE,
    }
}
