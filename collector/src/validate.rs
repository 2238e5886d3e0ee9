//! Validation of an incoming `ReportBatch`, before anything touches the store.
//!
//! Policy (documented in the README):
//! - Batch/envelope problems (more than `max_batch` reports) fail the WHOLE call with
//!   INVALID_ARGUMENT naming the limit; nothing is stored.
//! - A report with a bad field (missing `machine_id`, `report_id` not a UUID, a string over
//!   its length cap, too many `extra`/`warnings`/`events`) is answered `REJECTED` in the ack
//!   with a message naming the field (`reports[3].machine_id: required`); the other reports of
//!   the batch are stored. Retrying a rejected report cannot help, and the agent sets it aside
//!   (its spool's `rejected/`) instead of letting one bad report block everything behind it.
//! - The decoded message size is capped earlier by tonic (`max_decoding_message_size`,
//!   answered RESOURCE_EXHAUSTED).

use std::fmt::{Arguments, Display};

use dsreg_proto::v1::{EventRecord, Report, ReportBatch, Snapshot};

/// Longest id, hostname, domain, version string (bytes).
pub const MAX_ID_LEN: usize = 256;
/// Longest free-text field of a snapshot or event (bytes).
pub const MAX_TEXT_LEN: usize = 16 * 1024;
/// Most `extra` lines per snapshot.
pub const MAX_EXTRA: usize = 2000;
/// Most parse warnings per snapshot.
pub const MAX_WARNINGS: usize = 500;
/// Most event records per report.
pub const MAX_EVENTS: usize = 1000;
/// Most work accounts per snapshot.
pub const MAX_WORK_ACCOUNTS: usize = 64;
/// Most insertion strings per event record.
pub const MAX_EVENT_DATA: usize = 64;

/// Why a batch was refused; the message names the field and the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValidationError(pub String);

fn err(field: impl Display, what: impl Display) -> ValidationError {
    ValidationError(format!("{field}: {what}"))
}

/// Checks a batch: `Err` for a batch-level problem, else one verdict per report, in order.
pub fn batch(
    b: &ReportBatch,
    max_batch: usize,
) -> Result<Vec<Result<(), ValidationError>>, ValidationError> {
    if b.reports.len() > max_batch {
        return Err(err(
            "reports",
            format!(
                "{} reports exceed the limit of {max_batch} per batch (max_batch)",
                b.reports.len()
            ),
        ));
    }
    Ok(b.reports
        .iter()
        .enumerate()
        .map(|(i, r)| report(r, format_args!("reports[{i}]")))
        .collect())
}

fn required_id(value: &str, field: Arguments<'_>) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(err(field, "required"));
    }
    capped(value, field, MAX_ID_LEN)
}

fn capped(value: &str, field: Arguments<'_>, max: usize) -> Result<(), ValidationError> {
    if value.len() > max {
        return Err(err(
            field,
            format!("{} bytes exceed the limit of {max}", value.len()),
        ));
    }
    if value.contains('\0') {
        return Err(err(field, "contains a NUL character"));
    }
    Ok(())
}

fn count(n: usize, field: Arguments<'_>, max: usize) -> Result<(), ValidationError> {
    if n > max {
        return Err(err(field, format!("{n} items exceed the limit of {max}")));
    }
    Ok(())
}

/// Checks one report; `at` is its path in the batch (`reports[3]`). Field paths are only
/// formatted for an error: a valid report allocates nothing here.
pub fn report(r: &Report, at: impl Display) -> Result<(), ValidationError> {
    required_id(&r.report_id, format_args!("{at}.report_id"))?;
    if uuid::Uuid::parse_str(&r.report_id).is_err() {
        return Err(err(
            format!("{at}.report_id"),
            format!("{:?} is not a UUID", r.report_id),
        ));
    }
    required_id(&r.machine_id, format_args!("{at}.machine_id"))?;
    capped(&r.hostname, format_args!("{at}.hostname"), MAX_ID_LEN)?;
    capped(&r.ad_domain, format_args!("{at}.ad_domain"), MAX_ID_LEN)?;
    capped(
        &r.agent_version,
        format_args!("{at}.agent_version"),
        MAX_ID_LEN,
    )?;
    capped(&r.os_build, format_args!("{at}.os_build"), MAX_ID_LEN)?;
    count(r.events.len(), format_args!("{at}.events"), MAX_EVENTS)?;
    for (i, e) in r.events.iter().enumerate() {
        event(e, &format_args!("{at}.events[{i}]"))?;
    }
    if let Some(s) = &r.snapshot {
        snapshot(s, &format_args!("{at}.snapshot"))?;
    }
    Ok(())
}

fn snapshot(s: &Snapshot, at: &dyn Display) -> Result<(), ValidationError> {
    count(s.extra.len(), format_args!("{at}.extra"), MAX_EXTRA)?;
    count(
        s.warnings.len(),
        format_args!("{at}.warnings"),
        MAX_WARNINGS,
    )?;
    count(
        s.work_accounts.len(),
        format_args!("{at}.work_accounts"),
        MAX_WORK_ACCOUNTS,
    )?;
    for (i, x) in s.extra.iter().enumerate() {
        capped(
            &x.value,
            format_args!("{at}.extra[{i}].value"),
            MAX_TEXT_LEN,
        )?;
        capped(&x.key, format_args!("{at}.extra[{i}].key"), MAX_ID_LEN)?;
    }
    if let Some(id) = s
        .device_details
        .as_ref()
        .and_then(|d| d.device_id.as_deref())
    {
        capped(
            id,
            format_args!("{at}.device_details.device_id"),
            MAX_ID_LEN,
        )?;
    }
    if let Some(name) = s
        .device_state
        .as_ref()
        .and_then(|d| d.device_name.as_deref())
    {
        capped(
            name,
            format_args!("{at}.device_state.device_name"),
            MAX_ID_LEN,
        )?;
    }
    Ok(())
}

fn event(e: &EventRecord, at: &dyn Display) -> Result<(), ValidationError> {
    count(e.data.len(), format_args!("{at}.data"), MAX_EVENT_DATA)?;
    if let Some(m) = &e.message {
        capped(m, format_args!("{at}.message"), MAX_TEXT_LEN)?;
    }
    if let Some(m) = &e.server_error {
        capped(m, format_args!("{at}.server_error"), MAX_TEXT_LEN)?;
    }
    for (k, v) in &e.data {
        capped(v, format_args!("{at}.data[{k:?}]"), MAX_TEXT_LEN)?;
    }
    Ok(())
}

/// Checks an `EnrollRequest`: a machine id as in a report, a bounded host name.
pub fn enroll(r: &dsreg_proto::v1::EnrollRequest) -> Result<(), ValidationError> {
    required_id(&r.machine_id, format_args!("machine_id"))?;
    capped(&r.hostname, format_args!("hostname"), MAX_ID_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsreg_proto::v1::ExtraField;

    fn good(i: u32) -> Report {
        Report {
            report_id: format!("00000000-0000-4000-8000-{i:012}"),
            machine_id: format!("machine-{i}"),
            hostname: format!("PC-{i:04}"),
            ..Default::default()
        }
    }

    #[test]
    fn messages_name_the_field() {
        let mut b = ReportBatch {
            reports: (0..5).map(good).collect(),
        };
        let first_error = |b: &ReportBatch| {
            batch(b, 10)
                .unwrap()
                .into_iter()
                .find_map(|r| r.err())
                .map(|e| e.0)
        };
        assert_eq!(first_error(&b), None);
        b.reports[3].machine_id.clear();
        assert_eq!(first_error(&b).unwrap(), "reports[3].machine_id: required");
        let verdicts = batch(&b, 10).unwrap();
        assert_eq!(
            verdicts.iter().filter(|v| v.is_ok()).count(),
            4,
            "others pass"
        );
        b.reports[3].machine_id = "x".repeat(300);
        assert_eq!(
            first_error(&b).unwrap(),
            "reports[3].machine_id: 300 bytes exceed the limit of 256"
        );
        b.reports[3] = good(3);
        b.reports[1].report_id = "not-a-uuid".into();
        assert_eq!(
            first_error(&b).unwrap(),
            "reports[1].report_id: \"not-a-uuid\" is not a UUID"
        );
    }

    #[test]
    fn batch_and_count_limits() {
        let b = ReportBatch {
            reports: (0..5).map(good).collect(),
        };
        let e = batch(&b, 4).unwrap_err().0;
        assert!(e.contains("limit of 4") && e.contains("max_batch"), "{e}");
        let mut r = good(1);
        r.snapshot = Some(Box::new(Snapshot {
            extra: vec![ExtraField::default(); MAX_EXTRA + 1],
            ..Default::default()
        }));
        let e = report(&r, "reports[0]").unwrap_err().0;
        assert_eq!(
            e,
            "reports[0].snapshot.extra: 2001 items exceed the limit of 2000"
        );
    }
}
