//! Rule 4 of the diagnosis: problems of a device that is already joined.
//!
//! In order: DeviceAuthStatus FAILED, AadRecoveryEnabled YES, KeySignTest failed, a PRT
//! diagnostics block with an Attempt Status, AzureAdPrt NO outside the SYSTEM context.

use super::{non_empty, push, server_error_text, symbol};
use crate::catalog;
use crate::classify::{self, ServerError};
use crate::v1::PrtDiagnostics;
use crate::{ExecutionContext, Failure, Phase, Snapshot, hex};

pub(super) fn post_join(s: &Snapshot, context: ExecutionContext) -> Option<Failure> {
    let simple = |cause: &str, source: &str, line: String| Failure {
        phase: Phase::PostJoin as i32,
        cause: cause.to_owned(),
        source: source.to_owned(),
        evidence: vec![line],
        ..Failure::default()
    };
    let details = s.device_details.as_ref();
    if let Some(status) = details.and_then(|d| d.device_auth_status.as_deref())
        && status.trim().to_ascii_uppercase().starts_with("FAILED")
    {
        return Some(simple(
            "device_auth_failed",
            "device_auth_status",
            format!("DeviceAuthStatus : {}", status.trim()),
        ));
    }
    let diag = s.diagnostics.as_ref();
    if diag.and_then(|d| d.aad_recovery_enabled) == Some(true) {
        return Some(simple(
            "aad_recovery_pending",
            "aad_recovery_enabled",
            "AadRecoveryEnabled : YES".to_owned(),
        ));
    }
    if let Some(k) = diag.and_then(|d| d.key_sign_test.as_deref()) {
        let k = k.trim();
        // "MUST Run elevated to test." means the check did not run, not that it failed.
        let not_run = k.to_ascii_lowercase().contains("must run elevated");
        if !k.is_empty() && !k.eq_ignore_ascii_case("PASSED") && !not_run {
            return Some(simple(
                "key_sign_failed",
                "key_sign_test",
                format!("KeySignTest : {k}"),
            ));
        }
    }
    let sso = s.sso_state.as_ref();
    let prt_blocks = sso
        .into_iter()
        .flat_map(|s| [&s.acquire_prt_diagnostics, &s.refresh_prt_diagnostics])
        .flatten();
    for d in prt_blocks {
        if let Some(f) = from_prt_diagnostics(d) {
            return Some(f);
        }
    }
    // A SYSTEM process has no user session, so it never holds a user PRT: AzureAdPrt NO is
    // what SYSTEM always sees and says nothing about the user's sign-in.
    if context != ExecutionContext::System && sso.and_then(|s| s.azure_ad_prt) == Some(false) {
        return Some(simple("no_prt", "prt", "AzureAdPrt : NO".to_owned()));
    }
    None
}

fn from_prt_diagnostics(d: &PrtDiagnostics) -> Option<Failure> {
    let code = d.attempt_status.filter(|c| *c != 0)?;
    let server = ServerError {
        error_code: non_empty(d.server_error_code.as_deref()),
        sub_code: None,
        message: non_empty(d.server_error_description.as_deref()),
        operation: None,
    };
    let cause = classify::refine(Some(code), &server)
        .map(|c| c.id)
        .unwrap_or_else(|| catalog::describe(code).cause.id);
    let mut evidence = Vec::new();
    push(
        &mut evidence,
        "Previous Prt Attempt",
        d.previous_prt_attempt.as_deref(),
    );
    push(&mut evidence, "Attempt Status", Some(hex(code).as_str()));
    push(
        &mut evidence,
        "Credential Type",
        d.credential_type.as_deref(),
    );
    push(&mut evidence, "Endpoint URI", d.endpoint_uri.as_deref());
    push(
        &mut evidence,
        "HTTP Error",
        d.http_error.filter(|c| *c != 0).map(hex).as_deref(),
    );
    push(
        &mut evidence,
        "HTTP status",
        d.http_status.map(|s| s.to_string()).as_deref(),
    );
    push(&mut evidence, "Server Error Code", server.error_code);
    push(&mut evidence, "Server Error Description", server.message);
    Some(Failure {
        phase: Phase::PostJoin as i32,
        code: Some(code),
        sub_code: d.http_error.filter(|c| *c != 0),
        symbol: symbol(Some(code)),
        cause: cause.to_owned(),
        source: "prt_diagnostics".to_owned(),
        server_error: server_error_text(server.error_code, server.message),
        evidence,
    })
}
