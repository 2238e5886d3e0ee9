//! Snapshot-level diagnosis: derives `join_type`, the join `attempts`, whether the device is
//! meant to join (`not_targeted`) and the current `failure` (DESIGN §4, §4b).
//!
//! Pure functions over a parsed [`Snapshot`] (with its `join_config`) and the event-log
//! records read beside it. A device that is not targeted (a domain controller, hybrid join
//! turned off by policy) has no failure. Otherwise the failure is the first match of these
//! rule groups, in this order:
//!
//! 0. the join task is disabled (`join_task_disabled`), while the device is not joined;
//! 1. the newest join attempt, while the device is not Entra joined (once joined, old attempts
//!    are history): event records correlated into runs of the join task and classified once
//!    each, with the Previous Registration block merged into the run it describes
//!    (`attempts`, `correlate`); a newer success (306/335) clears it, a cycle without new
//!    records does not; 1b. the join result a `dsregcmd /debug` trace recorded;
//! 2. failing pre-join diagnostic tests, in chain order (AD connectivity → AD configuration →
//!    DRS discovery → DRS connectivity → Kerberos ticket → token acquisition), on builds that
//!    have Diagnostic Data (1803+);
//! 3. post-join problems on a joined device (`post_join`): DeviceAuthStatus, AadRecoveryEnabled,
//!    KeySignTest, PRT diagnostics (judged with the PRT rules; 21H1+), dual state, a PRT not
//!    renewed for a day, no PRT for an Entra user.
//!
//! Invariants: every `cause` is an id of the catalog's closed cause set (bounded metric labels);
//! `evidence` lines are reconstructed as `Key : value` so a technician can find them in the
//! capture; every attempt is classified once, with one cause; nothing here panics on any
//! snapshot or records.
//!
//! Modules: `correlate` (records → runs of the join task), `attempts` (a run → one classified
//! attempt), `previous` (the Previous Registration block), `debug_trace` (a `/debug` trace),
//! `post_join` (rule group 3), `text` (evidence and source texts).

use crate::catalog::{self, Cause};
use crate::diagnostic_tests::{DIAGNOSTIC_TESTS, DiagnosticTest};
use crate::v1::{DiagnosticTests, TestResult};
use crate::{EventRecord, ExecutionContext, Failure, JoinType, Phase, Snapshot, TestStatus, hex};

mod attempts;
pub mod correlate;
mod debug_trace;
mod post_join;
mod previous;
#[cfg(test)]
mod tests;
mod text;

pub(crate) use previous::generic_sub_cause;
use previous::{fallback_cause, from_previous_registration};
use text::{push, server_error_text};

/// DSREG_AUTOJOIN_ADCONFIG_READ_FAILED: the SCP could not be read.
const ADCONFIG_READ_FAILED: u32 = 0x801c_001d;
/// ERROR_FILE_NOT_FOUND under the AD Configuration Test: there is no SCP at all.
const FILE_NOT_FOUND: u32 = 0x8007_0002;
/// Codes the docs call generic ("look at the sub-error"): the sub-code names the real cause.
const GENERIC_CODES: &[u32] = &[
    0x801c_0021, // DSREG_AUTOJOIN_DISC_FAILED
    0x801c_003d, // DSREG_AUTOJOIN_USERREALM_DISCOVERY_FAILED
    0xcaa1_002d, // ERROR_ADAL_OPERATION_PENDING
];
/// OS builds (the third part of `10.0.BUILD.UBR`) where dsregcmd's output gained a feature.
pub mod builds {
    /// Windows 10 1803: the Diagnostic Data section (pre-join tests, Previous Registration).
    pub const DIAGNOSTIC_DATA: u32 = 17134;
    /// Windows 10 1809: a failing TPM makes the join fall back to a software key.
    pub const TPM_FALLBACK: u32 = 17763;
    /// Windows 10 21H1: DeviceAuthStatus and the PRT diagnostics blocks.
    pub const DEVICE_AUTH_STATUS: u32 = 19043;
}

/// The OS build number of the snapshot (`join_config.os_build`, `10.0.22631.4460` → 22631).
pub fn os_build(snapshot: &Snapshot) -> Option<u32> {
    let b = snapshot.join_config.as_ref()?.os_build.as_deref()?;
    let mut parts = b.trim().split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(_), Some(build)) => build.parse().ok(),
        (Some(build), None, None) => build.parse().ok(),
        _ => None,
    }
}

/// Whether a rule that needs `build` applies: the build is unknown or at least that.
fn since(snapshot: &Snapshot, build: u32) -> bool {
    os_build(snapshot).is_none_or(|b| b >= build)
}

/// Derives the join type from Device State (and User State for Entra registered).
///
/// DomainJoined YES without AzureAdJoined is `domain_joined` even when the user also has a
/// workplace account: the device is the hybrid-join target and that is what fails.
pub fn join_type(snapshot: &Snapshot) -> JoinType {
    let Some(ds) = snapshot.device_state.as_ref() else {
        return JoinType::Unspecified;
    };
    let yes = |v: Option<bool>| v == Some(true);
    if yes(ds.azure_ad_joined) && yes(ds.domain_joined) {
        return JoinType::HybridJoined;
    }
    if yes(ds.azure_ad_joined) {
        return JoinType::EntraJoined;
    }
    if yes(ds.enterprise_joined) {
        return JoinType::EnterpriseJoined;
    }
    if yes(ds.domain_joined) {
        return JoinType::DomainJoined;
    }
    let workplace = snapshot
        .user_state
        .as_ref()
        .is_some_and(|u| u.workplace_joined == Some(true));
    if workplace || !snapshot.work_accounts.is_empty() {
        return JoinType::EntraRegistered;
    }
    let flags = [ds.azure_ad_joined, ds.enterprise_joined, ds.domain_joined];
    if flags.iter().any(Option::is_some) {
        // Every flag that was printed said NO.
        JoinType::NotJoined
    } else {
        JoinType::Unspecified
    }
}

/// Why hybrid join is not intended for this device, or `None` when it is (or cannot be told):
/// `domain_controller` (ProductType LanmanNT: hybrid join is not supported there) or
/// `policy_disabled` (autoWorkplaceJoin = 0). A device that is already Entra joined is
/// targeted, whatever its policy says now.
pub fn not_targeted(snapshot: &Snapshot) -> Option<&'static str> {
    let joined = snapshot
        .device_state
        .as_ref()
        .and_then(|d| d.azure_ad_joined)
        == Some(true);
    let config = snapshot.join_config.as_ref()?;
    if joined {
        return None;
    }
    if config
        .product_type
        .as_deref()
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("LanmanNT"))
    {
        return Some("domain_controller");
    }
    if config.policy_auto_workplace_join == Some(false) {
        return Some("policy_disabled");
    }
    None
}

/// The reasons [`not_targeted`] can give, for metric label sets.
pub const NOT_TARGETED_REASONS: [&str; 2] = ["domain_controller", "policy_disabled"];

/// Every join attempt the snapshot and the records show, newest first (at most
/// [`attempts::MAX_ATTEMPTS`]).
pub fn attempts(snapshot: &Snapshot, events: &[EventRecord]) -> Vec<crate::v1::Attempt> {
    let trace = debug_trace::from_debug_trace(&snapshot.extra);
    attempt_list(
        attempts::classify(snapshot, events).0,
        &snapshot.extra,
        trace.as_ref(),
    )
}

/// The classified attempts, then the tries a `/debug` trace in `extra` records (`trace`: its
/// result, read once).
fn attempt_list(
    classified: Vec<attempts::Classified>,
    extra: &[crate::v1::ExtraField],
    trace: Option<&Failure>,
) -> Vec<crate::v1::Attempt> {
    let mut all: Vec<_> = classified.into_iter().map(|c| c.attempt).collect();
    if let Some(tries) = debug_trace::attempts(extra, trace) {
        all.extend(tries);
    }
    all
}

/// Derives the current failure, or `None` when the device looks healthy or is not targeted.
///
/// `context` is who ran dsregcmd: a SYSTEM run never shows a user PRT, so "no PRT" is not a
/// failure there.
pub fn failure(
    snapshot: &Snapshot,
    events: &[EventRecord],
    context: ExecutionContext,
) -> Option<Failure> {
    let classified = attempts::classify(snapshot, events).0;
    let trace = debug_trace::from_debug_trace(&snapshot.extra);
    failure_with(snapshot, &classified, trace.as_ref(), context)
}

/// The failure from the classified attempts and the `/debug` trace's result (`trace`).
fn failure_with(
    snapshot: &Snapshot,
    classified: &[attempts::Classified],
    trace: Option<&Failure>,
    context: ExecutionContext,
) -> Option<Failure> {
    let azure_ad_joined = snapshot
        .device_state
        .as_ref()
        .and_then(|d| d.azure_ad_joined);
    let joined = azure_ad_joined == Some(true);
    if not_targeted(snapshot).is_some() {
        return None;
    }
    let tests = snapshot
        .diagnostics
        .as_ref()
        .and_then(|d| d.tests.as_ref())
        .filter(|_| since(snapshot, builds::DIAGNOSTIC_DATA));

    if !joined && let Some(f) = task_disabled(snapshot) {
        return Some(f);
    }
    // The newest attempt decides: its failure stays until a newer attempt or a success.
    if !joined && let Some(newest) = classified.first() {
        if let Some(f) = &newest.failure {
            return Some(f.clone());
        }
    } else if !joined && let Some(f) = trace {
        return Some(f.clone());
    }
    if let Some(f) = tests.and_then(from_tests) {
        return Some(f);
    }
    // Post-join checks need a device that is (or may be, in a fragment without Device State)
    // joined; on a device known not to be joined they describe nothing.
    if azure_ad_joined != Some(false) {
        return post_join::post_join(snapshot, context);
    }
    None
}

/// Sets `join_type`, `attempts`, `not_targeted` and `failure` from the snapshot and the
/// events; records of other channels and duplicates dropped on the way become warnings.
pub fn apply(snapshot: &mut Snapshot, events: &[EventRecord], context: ExecutionContext) {
    snapshot.join_type = join_type(snapshot) as i32;
    snapshot.not_targeted = not_targeted(snapshot).map(str::to_owned);
    let (classified, dropped) = attempts::classify(snapshot, events);
    let trace = debug_trace::from_debug_trace(&snapshot.extra);
    snapshot.failure = failure_with(snapshot, &classified, trace.as_ref(), context);
    snapshot.attempts = attempt_list(classified, &snapshot.extra, trace.as_ref());
    let mut warn = |n: usize, what: &str| {
        let message = format!("{n} event record(s) {what}; not read as join attempts");
        if n > 0 && !snapshot.warnings.iter().any(|w| w.message == message) {
            snapshot
                .warnings
                .push(crate::v1::ParseWarning { line: 0, message });
        }
    };
    warn(dropped.foreign, "from another log or provider");
    warn(dropped.duplicates, "repeated");
    warn(dropped.over_limit, "over the correlation limit");
}

/// Whether the device's user is an Entra user: only such a user ever has a PRT. Positive
/// evidence only — `IsUserAzureAD`, a WAM default account, or an Executing Account Name that
/// is an `AzureAD\` account or carries a UPN (a synced AD user); a local account has none.
pub fn is_entra_user(snapshot: &Snapshot) -> bool {
    if let Some(b) = snapshot
        .ngc_prerequisite_check
        .as_ref()
        .and_then(|n| n.is_user_azure_ad)
    {
        return b;
    }
    if snapshot.user_state.as_ref().and_then(|u| u.wam_default_set) == Some(true) {
        return true;
    }
    let account = snapshot
        .diagnostics
        .as_ref()
        .and_then(|d| d.executing_account_name.as_deref())
        .unwrap_or("");
    let (name, upn) = account.split_once(',').unwrap_or((account, ""));
    let name = name.trim();
    name.to_ascii_lowercase().starts_with("azuread\\")
        || (upn.contains('@') && !name.ends_with('$'))
}

/// Whether the device counts as "without PRT" (`dsreg_devices_without_prt`): Entra or hybrid
/// joined, PRT state read in the user's context, an Entra user, and AzureAdPrt NO.
pub fn without_prt(snapshot: &Snapshot, context: ExecutionContext) -> bool {
    let join = join_type(snapshot);
    matches!(join, JoinType::HybridJoined | JoinType::EntraJoined)
        && context != ExecutionContext::System
        && snapshot.sso_state.as_ref().and_then(|s| s.azure_ad_prt) == Some(false)
        && is_entra_user(snapshot)
}

// ── rule 0: the join task ───────────────────────────────────────────────────────────────────

fn task_disabled(snapshot: &Snapshot) -> Option<Failure> {
    let c = snapshot.join_config.as_ref()?;
    let state_disabled = c
        .task_state
        .as_deref()
        .is_some_and(|s| s.trim().eq_ignore_ascii_case("disabled"));
    if c.task_enabled != Some(false) && !state_disabled {
        return None;
    }
    let mut evidence = vec![
        "Task \\Microsoft\\Windows\\Workplace Join\\Automatic-Device-Join : Disabled".to_owned(),
    ];
    push(
        &mut evidence,
        "Last Run Time",
        c.task_last_run_time.as_deref(),
    );
    push(
        &mut evidence,
        "Last Result",
        c.task_last_result.map(hex).as_deref(),
    );
    Some(Failure {
        phase: Phase::PreCheck as i32,
        cause: "join_task_disabled".to_owned(),
        source: "join_task".to_owned(),
        evidence,
        ..Failure::default()
    })
}

// ── rule 2: diagnostic tests ────────────────────────────────────────────────────────────────

/// The tests the capture printed, in chain order ([`DIAGNOSTIC_TESTS`]), with their results.
fn chain(t: &DiagnosticTests) -> Vec<(&'static DiagnosticTest, &TestResult)> {
    DIAGNOSTIC_TESTS
        .iter()
        .filter_map(|test| test.result(t).map(|r| (test, r)))
        .collect()
}

fn is_fail(r: &TestResult) -> bool {
    r.result == TestStatus::Fail as i32
}

fn from_tests(t: &DiagnosticTests) -> Option<Failure> {
    let (test, r) = chain(t).into_iter().find(|(_, r)| is_fail(r))?;
    let (name, phase) = (test.name, test.phase);
    let code = r.code;
    let known = code.and_then(catalog::lookup).map(|e| e.cause);
    let cause = match name {
        // No line of sight to a DC is what the test means, unless its code says otherwise.
        "ad_connectivity" => known.unwrap_or("dc_unreachable"),
        "ad_configuration" if code == Some(FILE_NOT_FOUND) => "scp_not_configured",
        "ad_configuration" => known.unwrap_or("scp_read_failed"),
        _ => code
            .and_then(|c| generic_sub_cause(c, r.sub_code))
            .or(known)
            .or_else(|| code.map(|c| catalog::describe(c).cause.id))
            .unwrap_or(crate::labels::UNKNOWN_CAUSE),
    };
    Some(Failure {
        phase: phase as i32,
        code,
        sub_code: r.sub_code,
        symbol: symbol(code),
        cause: cause.to_owned(),
        source: format!("test:{name}"),
        server_error: None,
        evidence: vec![test_line(test, r)],
    })
}

/// The test line as dsregcmd prints it: `DRS Discovery Test : FAIL [0x801c0021/0x80072ee2]`.
fn test_line(test: &DiagnosticTest, r: &TestResult) -> String {
    let label = test.printed;
    let status = TestStatus::try_from(r.result)
        .unwrap_or(TestStatus::Unspecified)
        .label();
    match (r.code, r.sub_code) {
        (Some(c), Some(s)) => format!("{label} : {status} [{}/{}]", hex(c), hex(s)),
        (Some(c), None) => format!("{label} : {status} [{}]", hex(c)),
        _ => format!("{label} : {status}"),
    }
}

// ── helpers ─────────────────────────────────────────────────────────────────────────────────

/// The resolved cause for a failure's cause id, for renderers (`None` for an unknown id).
pub fn cause_of(failure: &Failure) -> Option<&'static Cause> {
    catalog::cause(&failure.cause)
}

fn symbol(code: Option<u32>) -> Option<String> {
    code.and_then(|c| catalog::describe(c).symbol)
        .map(str::to_owned)
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim)
        .filter(|s| !s.is_empty() && !s.eq_ignore_ascii_case("empty"))
}

#[cfg(test)]
mod attempt_tests;
