//! Property tests of report validation: arbitrary reports (empty, whitespace, NUL-bearing,
//! non-ASCII and huge strings; counts just under, at and over every limit; batches around
//! `max_batch`). `validate::batch` never panics; a refused batch names `reports` and the
//! `max_batch` limit; every rejected report's message starts with its path
//! (`reports[i].<field>`) naming a real field; every accepted report really is within the
//! limits; messages stay short whatever the input.
//!
//! (Invalid UTF-8 cannot exist in a prost `String`; on the wire it fails decoding before
//! validation — see `tests/tests/e2e/grpc_abuse.rs`.)

use std::collections::HashMap;

use dsreg_collector::validate::{
    self, MAX_EVENT_DATA, MAX_EVENTS, MAX_EXTRA, MAX_ID_LEN, MAX_TEXT_LEN, MAX_WARNINGS,
    MAX_WORK_ACCOUNTS,
};
use dsreg_proto::v1::{
    DeviceDetails, DeviceState, EventRecord, ExtraField, Report, ReportBatch, Snapshot, WorkAccount,
};
use proptest::prelude::*;

/// Strings a hostile or buggy agent might send.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("   \t".to_string()),
        "[a-zA-Z0-9-]{1,20}",
        "\\PC{0,40}",
        "[a-z]{0,8}\u{0}[a-z]{0,8}",
        (1usize..4, "[a-zé]{1,4}").prop_map(|(k, s)| s.repeat(k * MAX_ID_LEN / 4)),
        (0usize..3, "[a-z]{1,3}")
            .prop_map(|(k, s)| s.repeat(MAX_TEXT_LEN / 2 + k * MAX_TEXT_LEN / 3)),
    ]
}

fn report_id() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).simple().to_string()),
        text(),
    ]
}

/// A count just under, at or over `max` (or small).
fn around(max: usize) -> impl Strategy<Value = usize> {
    prop_oneof![0..3usize, (max - 1)..=(max + 1)]
}

fn event() -> impl Strategy<Value = EventRecord> {
    (
        proptest::option::of(text()),
        proptest::option::of(text()),
        around(MAX_EVENT_DATA),
        text(),
    )
        .prop_map(|(message, server_error, n, value)| EventRecord {
            message,
            server_error,
            data: (0..n)
                .map(|i| (format!("k{i}"), value.clone()))
                .collect::<HashMap<_, _>>(),
            ..Default::default()
        })
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    (
        around(MAX_EXTRA),
        around(MAX_WARNINGS),
        around(MAX_WORK_ACCOUNTS),
        text(),
        text(),
        proptest::option::of(text()),
        proptest::option::of(text()),
    )
        .prop_map(
            |(extra, warnings, accounts, key, value, device_id, device_name)| Snapshot {
                extra: vec![
                    ExtraField {
                        section: "s".into(),
                        key,
                        value,
                    };
                    extra
                ],
                warnings: vec![dsreg_proto::v1::ParseWarning::default(); warnings],
                work_accounts: vec![WorkAccount::default(); accounts],
                device_details: Some(DeviceDetails {
                    device_id,
                    ..Default::default()
                }),
                device_state: Some(DeviceState {
                    device_name,
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
}

fn report() -> impl Strategy<Value = Report> {
    (
        report_id(),
        (text(), text(), text(), text(), text()),
        proptest::option::of(snapshot().prop_map(Box::new)),
        prop_oneof![
            3 => proptest::collection::vec(event(), 0..3),
            1 => around(MAX_EVENTS).prop_map(|n| vec![EventRecord::default(); n]),
        ],
    )
        .prop_map(
            |(
                report_id,
                (machine_id, hostname, ad_domain, agent_version, os_build),
                snapshot,
                events,
            )| {
                Report {
                    report_id,
                    machine_id,
                    hostname,
                    ad_domain,
                    agent_version,
                    os_build,
                    snapshot,
                    events,
                    ..Default::default()
                }
            },
        )
}

/// The fields validation may name (the path after `reports[i].`, up to an index or `:`).
const FIELDS: &[&str] = &[
    "report_id",
    "machine_id",
    "hostname",
    "ad_domain",
    "agent_version",
    "os_build",
    "events",
    "snapshot.extra",
    "snapshot.warnings",
    "snapshot.work_accounts",
    "snapshot.device_details.device_id",
    "snapshot.device_state.device_name",
];

fn within(s: &str, max: usize) -> bool {
    s.len() <= max && !s.contains('\0')
}

/// What an accepted report must satisfy (written independently of the validator).
fn acceptable(r: &Report) -> bool {
    let id = |s: &str| !s.trim().is_empty() && within(s, MAX_ID_LEN);
    let events_ok = r.events.len() <= MAX_EVENTS
        && r.events.iter().all(|e| {
            e.data.len() <= MAX_EVENT_DATA
                && e.message.as_deref().is_none_or(|m| within(m, MAX_TEXT_LEN))
                && e.server_error
                    .as_deref()
                    .is_none_or(|m| within(m, MAX_TEXT_LEN))
                && e.data.values().all(|v| within(v, MAX_TEXT_LEN))
        });
    let snapshot_ok = r.snapshot.as_ref().is_none_or(|s| {
        s.extra.len() <= MAX_EXTRA
            && s.warnings.len() <= MAX_WARNINGS
            && s.work_accounts.len() <= MAX_WORK_ACCOUNTS
            && s.extra
                .iter()
                .all(|x| within(&x.key, MAX_ID_LEN) && within(&x.value, MAX_TEXT_LEN))
            && s.device_details
                .as_ref()
                .and_then(|d| d.device_id.as_deref())
                .is_none_or(|v| within(v, MAX_ID_LEN))
            && s.device_state
                .as_ref()
                .and_then(|d| d.device_name.as_deref())
                .is_none_or(|v| within(v, MAX_ID_LEN))
    });
    id(&r.report_id)
        && uuid::Uuid::parse_str(&r.report_id).is_ok()
        && id(&r.machine_id)
        && [&r.hostname, &r.ad_domain, &r.agent_version, &r.os_build]
            .iter()
            .all(|s| within(s, MAX_ID_LEN))
        && events_ok
        && snapshot_ok
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn validation_is_total_and_names_the_field(
        reports in proptest::collection::vec(report(), 0..5),
        max_batch in 0usize..6,
    ) {
        let batch = ReportBatch { reports };
        match validate::batch(&batch, max_batch) {
            Err(e) => {
                prop_assert!(batch.reports.len() > max_batch);
                prop_assert!(e.0.starts_with("reports: ") && e.0.contains("max_batch"), "{}", e.0);
            }
            Ok(verdicts) => {
                prop_assert!(batch.reports.len() <= max_batch);
                prop_assert_eq!(verdicts.len(), batch.reports.len());
                for (i, (r, v)) in batch.reports.iter().zip(verdicts).enumerate() {
                    match v {
                        Ok(()) => prop_assert!(acceptable(r), "accepted a bad report {}: {:?}", i, r.report_id),
                        Err(e) => {
                            let msg = e.0;
                            prop_assert!(!acceptable(r), "rejected a good report: {}", msg);
                            let prefix = format!("reports[{i}].");
                            prop_assert!(msg.starts_with(&prefix), "{}", msg);
                            let path = &msg[prefix.len()..];
                            prop_assert!(
                                FIELDS.iter().any(|f| path.starts_with(f)),
                                "message names no known field: {}", msg
                            );
                            prop_assert!(msg.len() < 4096, "message of {} bytes", msg.len());
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn extreme_counts_are_refused_cheaply() {
    // A million empty events: refused on the count, before looking at any of them.
    let r = Report {
        report_id: uuid::Uuid::from_u128(1).to_string(),
        machine_id: "m".into(),
        events: vec![EventRecord::default(); 1_000_000],
        ..Default::default()
    };
    let e = validate::report(&r, "reports[0]").unwrap_err().0;
    assert_eq!(
        e,
        "reports[0].events: 1000000 items exceed the limit of 1000"
    );
    let e = validate::batch(
        &ReportBatch {
            reports: vec![Report::default(); 100_000],
        },
        1000,
    )
    .unwrap_err()
    .0;
    assert!(e.contains("100000 reports exceed the limit of 1000"), "{e}");
}
