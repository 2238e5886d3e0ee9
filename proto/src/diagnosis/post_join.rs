//! Rule 3 of the diagnosis: problems of a device that is already joined.
//!
//! In order: DeviceAuthStatus FAILED (21H1+; `FAILED. ERROR` means the check could not reach
//! Entra, not that the device is disabled or deleted), AadRecoveryEnabled YES, KeySignTest
//! failed, a PRT diagnostics block with an Attempt Status (21H1+; always judged with the PRT
//! rules), dual state (hybrid/domain joined and still Workplace Joined), a PRT not renewed for
//! more than a day, AzureAdPrt NO for an Entra user outside the SYSTEM context (a local
//! account never has a PRT).

use super::correlate::epoch_ms;
use super::{builds, non_empty, push, server_error_text, since, symbol};
use crate::catalog;
use crate::server_message::{self as classify, ServerError};
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
        && since(s, builds::DEVICE_AUTH_STATUS)
        && let Some(cause) = device_auth_cause(status)
    {
        return Some(simple(
            cause,
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
    if since(s, builds::DEVICE_AUTH_STATUS) {
        for d in prt_blocks {
            if let Some(f) = from_prt_diagnostics(d) {
                return Some(f);
            }
        }
    }
    if let Some(f) = dual_state(s) {
        return Some(f);
    }
    if let Some(f) = prt_stale(s) {
        return Some(f);
    }
    // A SYSTEM process has no user session, so it never holds a user PRT: AzureAdPrt NO is
    // what SYSTEM always sees and says nothing about the user's sign-in; a local account never
    // has one either.
    if super::without_prt(s, context)
        || (context != ExecutionContext::System
            && super::join_type(s) == crate::JoinType::Unspecified
            && sso.and_then(|s| s.azure_ad_prt) == Some(false)
            && super::is_entra_user(s))
    {
        return Some(simple("no_prt", "prt", "AzureAdPrt : NO".to_owned()));
    }
    None
}

/// `DeviceAuthStatus` → cause: `FAILED. Device is either disabled or deleted` is Entra
/// refusing the device; `FAILED. ERROR` (or any other failure text) is the check failing to
/// reach Entra; `SUCCESS` is none.
fn device_auth_cause(status: &str) -> Option<&'static str> {
    let upper = status.trim().to_ascii_uppercase();
    if !upper.starts_with("FAILED") {
        return None;
    }
    if upper.contains("DISABLED") || upper.contains("DELETED") {
        Some("device_auth_failed")
    } else {
        Some("device_auth_check_failed")
    }
}

/// Hybrid (or domain) joined and the user's profile still Workplace Joined.
fn dual_state(s: &Snapshot) -> Option<Failure> {
    let ds = s.device_state.as_ref()?;
    if ds.domain_joined != Some(true) {
        return None;
    }
    if s.user_state.as_ref().and_then(|u| u.workplace_joined) != Some(true) {
        return None;
    }
    Some(Failure {
        phase: Phase::PostJoin as i32,
        cause: "dual_state".to_owned(),
        source: "workplace_joined".to_owned(),
        evidence: vec![
            "DomainJoined : YES".to_owned(),
            format!(
                "AzureAdJoined : {}",
                if ds.azure_ad_joined == Some(true) {
                    "YES"
                } else {
                    "NO"
                }
            ),
            "WorkplaceJoined : YES".to_owned(),
        ],
        ..Failure::default()
    })
}

/// A PRT that exists but was last renewed more than a day before the capture's Client Time.
fn prt_stale(s: &Snapshot) -> Option<Failure> {
    const DAY_MS: i64 = 24 * 3600 * 1000;
    let sso = s.sso_state.as_ref()?;
    if sso.azure_ad_prt != Some(true) {
        return None;
    }
    let updated = sso.azure_ad_prt_update_time.as_deref()?;
    let now = s.diagnostics.as_ref()?.client_time.as_deref()?;
    let (u, n) = (epoch_ms(updated)?, epoch_ms(now)?);
    if n - u <= DAY_MS {
        return None;
    }
    Some(Failure {
        phase: Phase::PostJoin as i32,
        cause: "prt_stale".to_owned(),
        source: "prt".to_owned(),
        evidence: vec![
            format!("AzureAdPrtUpdateTime : {updated}"),
            format!("Client Time : {now}"),
        ],
        ..Failure::default()
    })
}

fn from_prt_diagnostics(d: &PrtDiagnostics) -> Option<Failure> {
    let code = d.attempt_status.filter(|c| *c != 0)?;
    let server = ServerError {
        error_code: non_empty(d.server_error_code.as_deref()),
        sub_code: None,
        message: non_empty(d.server_error_description.as_deref()),
        operation: None,
    };
    // A PRT attempt is always judged with the PRT rules: its AADSTS90002 is the user's UPN
    // suffix, and an uncatalogued CloudAP status is `unknown_cloudap`, never a join cause.
    let described = catalog::describe(code);
    let cause = classify::refine_prt(&server)
        .map(|c| c.id)
        .unwrap_or(described.cause.id);
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
