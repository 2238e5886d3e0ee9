//! What `dsreg-agent diagnose` adds beyond the failure: the `--format json` document, the
//! `--detect` verdict (an Intune Remediations detection script), and the text sections for
//! the join configuration and the attempts seen.
//!
//! The JSON document is the failure part of the collector's device API (`GET
//! /api/v1/devices/{key}`): `join_type`, `failure` with `phase`, `cause`, `code`, `symbol`,
//! `sub_code`, `source`, `server_error`, `evidence`, `cause_text`, `resolution`,
//! `code_text`, `code_resolution`; plus `status`, `not_targeted`, `attempts` (newest first)
//! and `join_config` in their snapshot JSON form (DESIGN §3), and `device`. Absent stays
//! absent (or null), as in the API.
//!
//! Verdict ([`verdict`]): a device with a failure is `failing`; one that is domain joined
//! only, not joined, or whose join type cannot be told, is `not_joined` unless the diagnosis
//! says it is not targeted (`snapshot.not_targeted`: domain controller, policy-disabled);
//! `--detect` exits 1 for those two and 0 for `healthy` and `not_targeted`.

use std::fmt::Write as _;

use dsreg_proto::v1::{Attempt, JoinConfig};
use dsreg_proto::{JoinType, Phase, Snapshot, catalog, hex};
use serde_json::{Value, json};

/// What `--detect` decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Joined and no failure.
    Healthy,
    /// A failure was found.
    Failing,
    /// Not (hybrid) joined although the device is meant to be.
    NotJoined,
    /// Hybrid join is not intended here (domain controller, policy).
    NotTargeted,
}

impl Verdict {
    /// The label used in the JSON document's `status`.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::Failing => "failing",
            Verdict::NotJoined => "not_joined",
            Verdict::NotTargeted => "not_targeted",
        }
    }

    /// True when an Intune detection script must report an issue (exit 1).
    pub fn needs_remediation(self) -> bool {
        matches!(self, Verdict::Failing | Verdict::NotJoined)
    }
}

/// Decides the verdict of a diagnosed snapshot (see the module doc).
pub fn verdict(s: &Snapshot) -> Verdict {
    if s.failure.is_some() {
        return Verdict::Failing;
    }
    if s.not_targeted.as_deref().is_some_and(|r| !r.is_empty()) {
        return Verdict::NotTargeted;
    }
    match JoinType::try_from(s.join_type).unwrap_or_default() {
        JoinType::DomainJoined | JoinType::NotJoined | JoinType::Unspecified => Verdict::NotJoined,
        _ => Verdict::Healthy,
    }
}

/// The failure part of the API document for a snapshot's failure, or `null`.
pub fn failure_document(s: &Snapshot) -> Value {
    let Some(f) = &s.failure else {
        return Value::Null;
    };
    let mut doc = serde_json::to_value(f).unwrap_or(Value::Null);
    if !doc.is_object() {
        return Value::Null;
    }
    // The API always has a symbol ("" when unknown) and null texts for unknown ids.
    if doc.get("symbol").is_none() {
        doc["symbol"] = json!("");
    }
    let (text, resolution) = match catalog::cause(&f.cause) {
        Some(c) => (json!(c.text), json!(c.resolution)),
        None => (Value::Null, Value::Null),
    };
    doc["cause_text"] = text;
    doc["resolution"] = resolution;
    if let Some(e) = f.code.and_then(catalog::lookup) {
        doc["code_text"] = json!(e.text);
        doc["code_resolution"] = json!(e.resolution);
    }
    doc
}

/// The `diagnose --format json` document.
pub fn document(s: &Snapshot, event_records: usize, event_warnings: usize) -> Value {
    let join = JoinType::try_from(s.join_type).unwrap_or_default();
    let ds = s.device_state.as_ref();
    json!({
        "device": {
            "device_name": ds.and_then(|d| d.device_name.clone()),
            "domain_name": ds.and_then(|d| d.domain_name.clone()),
        },
        "join_type": match join.label() { "" => Value::Null, l => json!(l) },
        "status": verdict(s).label(),
        "failure": failure_document(s),
        "not_targeted": s.not_targeted,
        "attempts": serde_json::to_value(&s.attempts).unwrap_or(Value::Null),
        "join_config": serde_json::to_value(&s.join_config).unwrap_or(Value::Null),
        "parse_warnings": s.warnings.len() + event_warnings,
        "event_records": event_records,
    })
}

/// Appends the join configuration section (nothing when none was read); `label` is the width
/// of the label column including its two-space indent.
pub fn write_join_config(out: &mut String, c: Option<&JoinConfig>, label: usize) {
    let Some(c) = c else { return };
    let _ = writeln!(out, "\nJoin configuration:");
    let yes_no = |b: Option<bool>, yes: &str, no: &str| match b {
        Some(true) => yes.to_owned(),
        Some(false) => no.to_owned(),
        None => "not set".to_owned(),
    };
    let mut task = yes_no(c.task_enabled, "enabled", "DISABLED");
    if let Some(state) = &c.task_state {
        let _ = write!(task, " ({state})");
    }
    let last_run = match (&c.task_last_run_time, c.task_last_result) {
        (Some(t), Some(r)) => format!("{t}, result {}", with_symbol(r)),
        (Some(t), None) => t.clone(),
        (None, Some(r)) => format!("never ran (result {})", with_symbol(r)),
        (None, None) => "not set".to_owned(),
    };
    let product = c.product_type.as_deref().map(|p| match p {
        "WinNT" => "WinNT (workstation)".to_owned(),
        "ServerNT" => "ServerNT (member server)".to_owned(),
        "LanmanNT" => "LanmanNT (domain controller)".to_owned(),
        other => other.to_owned(),
    });
    let rows: [(&str, Option<String>); 8] = [
        ("Join task", Some(task)),
        ("Last run", Some(last_run)),
        (
            "SCP (registry)",
            match (&c.registry_tenant_name, &c.registry_tenant_id) {
                (Some(n), Some(i)) => Some(format!("{n} ({i})")),
                (n, i) => n.clone().or_else(|| i.clone()),
            },
        ),
        (
            "Policy join",
            Some(yes_no(
                c.policy_auto_workplace_join,
                "autoWorkplaceJoin=1 (on)",
                "autoWorkplaceJoin=0 (hybrid join OFF by policy)",
            )),
        ),
        (
            "Block WPJ",
            c.policy_block_aad_workplace_join.map(|b| {
                (if b {
                    "BlockAADWorkplaceJoin=1"
                } else {
                    "BlockAADWorkplaceJoin=0"
                })
                .to_owned()
            }),
        ),
        ("Product type", product),
        ("OS build", c.os_build.clone()),
        ("Computer SID", c.computer_sid.clone()),
    ];
    for (name, value) in &rows {
        let value = value.as_deref().unwrap_or("not set");
        let _ = writeln!(out, "  {name:<width$}: {value}", width = label - 2);
    }
}

fn with_symbol(code: u32) -> String {
    match catalog::describe(code).symbol {
        Some(s) => format!("{} {s}", hex(code)),
        None => hex(code),
    }
}

/// Appends the attempts section, newest first as the diagnosis orders them (nothing when
/// there are none). At most `max` are listed; a line says how many more there were.
pub fn write_attempts(out: &mut String, attempts: &[Attempt], max: usize) {
    if attempts.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nAttempts seen (newest first):");
    for a in attempts.iter().take(max) {
        let time = a.time.as_deref().unwrap_or("time unknown");
        let what = if a.succeeded {
            "succeeded".to_owned()
        } else {
            let phase = match Phase::try_from(a.phase).unwrap_or_default() {
                Phase::Unspecified => "phase unknown",
                p => p.label(),
            };
            let code = a
                .code
                .map(|c| format!(" {}", with_symbol(c)))
                .unwrap_or_default();
            format!("{phase}{code} - {}", a.cause)
        };
        let _ = writeln!(out, "  {time}  {what}");
        if let Some(m) = a.server_message.as_deref().filter(|m| !m.is_empty()) {
            let kind = a.server_error_type.as_deref().unwrap_or("server");
            let _ = writeln!(
                out,
                "      {kind}: {}",
                m.chars().take(200).collect::<String>()
            );
        }
    }
    if attempts.len() > max {
        let _ = writeln!(out, "  … and {} older", attempts.len() - max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsreg_proto::v1::Failure;

    fn snap(join: JoinType) -> Snapshot {
        Snapshot {
            join_type: join as i32,
            ..Snapshot::default()
        }
    }

    #[test]
    fn verdicts_for_detect() {
        assert_eq!(verdict(&snap(JoinType::HybridJoined)), Verdict::Healthy);
        assert_eq!(verdict(&snap(JoinType::EntraJoined)), Verdict::Healthy);
        assert_eq!(verdict(&snap(JoinType::DomainJoined)), Verdict::NotJoined);
        assert_eq!(verdict(&snap(JoinType::Unspecified)), Verdict::NotJoined);
        let mut dc = snap(JoinType::DomainJoined);
        dc.not_targeted = Some("domain_controller".into());
        assert_eq!(verdict(&dc), Verdict::NotTargeted);
        assert!(!verdict(&dc).needs_remediation());
        let mut failing = snap(JoinType::HybridJoined);
        failing.failure = Some(Failure {
            cause: "device_not_synced".into(),
            ..Failure::default()
        });
        assert_eq!(verdict(&failing), Verdict::Failing);
        assert!(verdict(&failing).needs_remediation());
    }

    #[test]
    fn failure_document_has_the_api_texts() {
        let mut s = snap(JoinType::DomainJoined);
        s.failure = Some(Failure {
            phase: Phase::Join as i32,
            code: Some(0x801c03f2),
            cause: "device_not_synced".into(),
            source: "previous_registration".into(),
            ..Failure::default()
        });
        let doc = document(&s, 0, 0);
        assert_eq!(doc["status"], "failing");
        assert_eq!(doc["failure"]["code"], "0x801c03f2");
        assert_eq!(doc["failure"]["phase"], "join");
        assert!(doc["failure"]["cause_text"].is_string(), "{doc}");
        assert!(doc["failure"]["resolution"].is_string(), "{doc}");
        assert!(doc["failure"]["code_text"].is_string(), "{doc}");
        assert!(doc["not_targeted"].is_null());
    }

    #[test]
    fn attempts_are_listed_with_a_limit() {
        let a = Attempt {
            time: Some("2026-11-30T09:00:00Z".into()),
            phase: Phase::Join as i32,
            code: Some(0x801c03f2),
            cause: "device_not_synced".into(),
            server_error_type: Some("DirectoryError".into()),
            server_message: Some("The device object by the given id (x) is not found.".into()),
            ..Attempt::default()
        };
        let mut out = String::new();
        write_attempts(&mut out, &[a.clone(), a.clone(), a], 2);
        assert_eq!(out.matches("2026-11-30T09:00:00Z").count(), 2, "{out}");
        assert!(out.contains("DSREG_E_DIRECTORY_FAILURE"), "{out}");
        assert!(out.contains("DirectoryError: The device object"), "{out}");
        assert!(out.contains("1 older"), "{out}");
    }

    #[test]
    fn join_config_section_names_a_disabled_task() {
        let mut out = String::new();
        let c = JoinConfig {
            task_enabled: Some(false),
            task_state: Some("Disabled".into()),
            task_last_result: Some(0x41303),
            product_type: Some("LanmanNT".into()),
            ..JoinConfig::default()
        };
        write_join_config(&mut out, Some(&c), 16);
        assert!(out.contains("Join task     : DISABLED (Disabled)"), "{out}");
        assert!(out.contains("never ran (result 0x00041303"), "{out}");
        assert!(out.contains("domain controller"), "{out}");
        assert!(out.contains("Computer SID  : not set"), "{out}");
    }
}
