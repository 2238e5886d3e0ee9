//! Event-log export parsing against the fixtures in `testdata/events/`.
//!
//! THE FIXTURES ARE CONSTRUCTED, NOT CAPTURED: no real wevtutil or Get-WinEvent export of the
//! User Device Registration log is public, so each file was written by hand from the templates
//! and rendered texts in `reference/event-log.md` §2 and §3.1–3.4 (see
//! `testdata/events/README.md` for what is invented). Every expected value below was worked
//! out by hand from those files, not copied from the parser's output.

use dsreg_agent::events::{EventsError, parse_events};
use dsreg_proto::v1::{DeviceState, Snapshot};
use dsreg_proto::{EventRecord, ExecutionContext, Phase, diagnosis};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/testdata/events/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn parse(name: &str) -> (Vec<EventRecord>, Vec<String>) {
    let p = parse_events(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    (p.records, p.warnings)
}

fn by_record(records: &[EventRecord], record_id: u64) -> &EventRecord {
    records
        .iter()
        .find(|r| r.record_id == record_id)
        .unwrap_or_else(|| panic!("record {record_id} missing"))
}

fn domain_joined() -> Snapshot {
    Snapshot {
        device_state: Some(DeviceState {
            azure_ad_joined: Some(false),
            domain_joined: Some(true),
            enterprise_joined: Some(false),
            ..DeviceState::default()
        }),
        ..Snapshot::default()
    }
}

#[test]
fn wevtutil_204_directory_error() {
    let (records, warnings) = parse("wevtutil-204-directory-error.xml");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.event_id, 204);
    assert_eq!(r.record_id, 1042);
    assert_eq!(r.time.as_deref(), Some("2022-11-07T15:50:30.1234567Z"));
    assert_eq!(r.level.as_deref(), Some("Error"));
    assert_eq!(r.exit_code, Some(0x801c03f2));
    assert_eq!(r.activity_id.as_deref(), Some("<Activity Id>"));
    assert_eq!(r.http_status, Some(400));
    let resp = r.server_response.as_ref().expect("server response");
    assert_eq!(resp.error_type.as_deref(), Some("DirectoryError"));
    assert_eq!(
        resp.message.as_deref(),
        Some("The device object by the given id (<Device ID>) is not found.")
    );
    // The doc sample's unquoted placeholder survives the key scan.
    assert_eq!(resp.trace_id.as_deref(), Some("<TraceID>"));
    assert_eq!(resp.time.as_deref(), Some("<Date and time>"));
    assert_eq!(r.message, None);
    assert!(r.data.is_empty(), "{:?}", r.data);
}

#[test]
fn wevtutil_204_utf16le_with_bom() {
    let text = String::from_utf8(fixture("wevtutil-204-directory-error.xml")).expect("utf-8");
    let mut bytes = vec![0xff, 0xfe];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    let p = parse_events(&bytes).expect("parsed");
    assert_eq!(p.records.len(), 1);
    assert_eq!(p.records[0].exit_code, Some(0x801c03f2));
    assert_eq!(p.records[0].http_status, Some(400));
}

#[test]
fn wevtutil_mixed_without_root() {
    let (records, warnings) = parse("wevtutil-mixed.xml");
    assert!(warnings.is_empty(), "{warnings:?}");
    let ids: Vec<u32> = records.iter().map(|r| r.event_id).collect();
    assert_eq!(
        ids,
        vec![4096, 201, 204, 304, 304, 304, 305, 307, 309, 306, 335]
    );

    let r = by_record(&records, 100);
    assert_eq!(r.level.as_deref(), Some("Information"));
    assert_eq!(r.exit_code, None);

    // 201: named Data, signed decimal DSREG_SERVER_BUSY, HTML instead of JSON.
    let r = by_record(&records, 101);
    assert_eq!(r.exit_code, Some(0x801c0025));
    assert_eq!(r.http_status, Some(503));
    let resp = r.server_response.as_ref().expect("server response");
    assert_eq!(resp.error_type, None);
    assert_eq!(
        resp.message.as_deref(),
        Some("<html><body>Service Unavailable</body></html>")
    );
    assert!(r.data.is_empty(), "mapped names are not kept: {:?}", r.data);

    // 204: unsigned decimal code, real JSON.
    let r = by_record(&records, 102);
    assert_eq!(r.exit_code, Some(0x801c03f2));
    assert_eq!(
        r.activity_id.as_deref(),
        Some("6a4f07b3-6f0e-4bd4-9a53-3c9d5b3a1c11")
    );
    let resp = r.server_response.as_ref().expect("server response");
    assert_eq!(
        resp.message.as_deref(),
        Some("Your request is throttled temporarily. Please try after 300 seconds.")
    );
    assert_eq!(
        resp.trace_id.as_deref(),
        Some("0d9b7c3e-1f1a-4a8e-9a43-1d2f3c4b5a69")
    );
    assert_eq!(resp.time.as_deref(), Some("11-07-2022 15:50:02Z"));

    // 304 well-formed (five strings): errorPhase auth from the debug output.
    let r = by_record(&records, 103);
    assert_eq!(r.exit_code, Some(0xcaa1000e));
    assert_eq!(r.server_error, None);
    assert_eq!(r.tenant_type.as_deref(), Some("Federated"));
    assert_eq!(r.registration_type.as_deref(), Some("fed"));
    assert_eq!(r.error_phase.as_deref(), Some("auth"));
    assert!(
        r.data
            .get("%5")
            .is_some_and(|d| d.contains("tenantId: 383a3889")),
        "{:?}",
        r.data
    );

    // 304 first shape: the debug blob sits in %3, "empty" server error.
    let r = by_record(&records, 104);
    assert_eq!(r.exit_code, Some(0x801c03f2));
    assert_eq!(r.server_error, None);
    assert_eq!(r.tenant_type.as_deref(), Some("managed"));
    assert_eq!(r.registration_type.as_deref(), Some("sync"));
    assert_eq!(r.error_phase.as_deref(), Some("join"));
    assert!(r.data.contains_key("%3"), "{:?}", r.data);

    // 304 second shape: three strings, tenant type only.
    let r = by_record(&records, 105);
    assert_eq!(r.exit_code, Some(0x801c03f2));
    assert_eq!(r.tenant_type.as_deref(), Some("Managed"));
    assert_eq!(r.error_phase, None);
    assert_eq!(r.registration_type, None);

    // 305: ADAL server error lines, tenant type then tenant name.
    let r = by_record(&records, 106);
    assert_eq!(r.exit_code, Some(0x801c0515));
    let server = r.server_error.as_deref().unwrap_or_default();
    assert!(
        server.starts_with("AdalMessage: ADALUseWindowsAuthenticationNonHybrid failed"),
        "{server}"
    );
    assert!(server.contains("AdalErrorCode: 0x2ee6"), "{server}");
    assert_eq!(r.tenant_type.as_deref(), Some("Federated"));
    assert_eq!(r.tenant_name.as_deref(), Some("adfs.contoso.com"));

    // 307: signed decimal 0x801c001d.
    assert_eq!(by_record(&records, 107).exit_code, Some(0x801c001d));

    // 309 in UserData: leaf elements in order; the unmapped one keyed by its name.
    let r = by_record(&records, 108);
    assert_eq!(r.exit_code, Some(0x801c0021));
    assert_eq!(
        r.data.get("Domain").map(String::as_str),
        Some("contoso.com")
    );

    for id in [109, 110] {
        let r = by_record(&records, id);
        assert_eq!(r.exit_code, None);
        assert_eq!(r.level.as_deref(), Some("Information"));
    }
}

#[test]
fn wevtutil_rendered_messages_only() {
    let (records, warnings) = parse("wevtutil-rendered-wrapped.xml");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(records.len(), 8);

    // §3.1: every field from the Event Viewer text.
    let r = by_record(&records, 201);
    assert_eq!(r.event_id, 204);
    assert_eq!(r.level.as_deref(), Some("Error"));
    assert_eq!(r.exit_code, Some(0x801c03f2));
    assert_eq!(r.activity_id.as_deref(), Some("<Activity Id>"));
    assert_eq!(r.http_status, Some(400));
    let resp = r.server_response.as_ref().expect("server response");
    assert_eq!(resp.error_type.as_deref(), Some("DirectoryError"));
    assert_eq!(resp.trace_id.as_deref(), Some("<TraceID>"));
    assert!(
        r.message
            .as_deref()
            .is_some_and(|m| m.starts_with("The get join response operation callback failed"))
    );

    // §3.2 first shape: blob under "Tenant type", literal %4 / %5 ignored.
    let r = by_record(&records, 202);
    assert_eq!(r.exit_code, Some(0x801c03f2));
    assert_eq!(r.server_error, None);
    assert_eq!(r.tenant_type.as_deref(), Some("managed"));
    assert_eq!(r.registration_type.as_deref(), Some("sync"));
    assert_eq!(r.error_phase.as_deref(), Some("join"));

    // §3.2 second shape.
    let r = by_record(&records, 203);
    assert_eq!(r.exit_code, Some(0x801c03f2));
    assert_eq!(r.server_error, None);
    assert_eq!(r.tenant_type.as_deref(), Some("Managed"));
    assert_eq!(r.registration_type, None);
    assert_eq!(r.error_phase, None);

    // §3.3: 305 prints Tenant Name before Tenant Type; server error spans lines.
    let r = by_record(&records, 204);
    assert_eq!(r.exit_code, Some(0x801c0515));
    assert_eq!(r.tenant_name.as_deref(), Some("adfs.contoso.com"));
    assert_eq!(r.tenant_type.as_deref(), Some("Federated"));
    let server = r.server_error.as_deref().unwrap_or_default();
    assert!(server.starts_with("AdalMessage:"), "{server}");
    assert!(server.contains("AdalErrorCode: 0x2ee6"), "{server}");

    // §3.4 KB4480781 texts.
    assert_eq!(by_record(&records, 205).exit_code, Some(0x801c001d));
    let r = by_record(&records, 206);
    assert_eq!(r.exit_code, Some(0x801c001d));
    assert_eq!(r.server_error, None);
    assert_eq!(r.error_phase, None);

    // A rendered-only exit code with a Windows message text.
    let r = by_record(&records, 207);
    assert_eq!(r.exit_code, Some(0x80090016));
    assert_eq!(r.registration_type.as_deref(), Some("sync"));
    assert_eq!(r.error_phase.as_deref(), Some("join"));

    let r = by_record(&records, 208);
    assert_eq!(r.event_id, 306);
    assert_eq!(r.exit_code, None);
    assert_eq!(r.level.as_deref(), Some("Information"));
}

#[test]
fn get_winevent_powershell_51() {
    let (records, warnings) = parse("get-winevent-ps51.json");
    assert_eq!(records.len(), 4);
    // Only the flattened Properties of the 304 are worth a warning.
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("flattened"), "{warnings:?}");

    let r = by_record(&records, 107);
    assert_eq!(r.event_id, 307);
    assert_eq!(r.time.as_deref(), Some("2022-11-07T15:50:24Z"));
    assert_eq!(r.level.as_deref(), Some("Error"));
    assert_eq!(r.exit_code, Some(0x801c001d));

    // TimeCreated wrapped in {"value": …, "DateTime": …}.
    let r = by_record(&records, 108);
    assert_eq!(r.event_id, 204);
    assert_eq!(r.time.as_deref(), Some("2022-11-07T15:50:30Z"));
    assert_eq!(r.exit_code, Some(0x801c03f2));
    assert_eq!(r.http_status, Some(400));
    let resp = r.server_response.as_ref().expect("server response");
    assert_eq!(resp.error_type.as_deref(), Some("DirectoryError"));
    assert!(
        resp.message
            .as_deref()
            .is_some_and(|m| m.starts_with("The public key user certificate is not found"))
    );

    // Flattened Properties: everything comes from the rendered message.
    let r = by_record(&records, 109);
    assert_eq!(r.event_id, 304);
    assert_eq!(r.exit_code, Some(0x801c03f2));
    assert_eq!(r.error_phase.as_deref(), Some("join"));
    assert_eq!(r.tenant_type.as_deref(), Some("managed"));
    assert_eq!(r.registration_type.as_deref(), Some("sync"));
    assert!(r.data.is_empty(), "{:?}", r.data);

    let r = by_record(&records, 110);
    assert_eq!(r.event_id, 306);
    assert_eq!(r.time.as_deref(), Some("2022-11-07T16:50:24Z"));
    assert_eq!(r.level.as_deref(), Some("Information"));
}

#[test]
fn get_winevent_powershell_7() {
    let (records, warnings) = parse("get-winevent-ps7.json");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(records.len(), 2);

    let r = by_record(&records, 106);
    assert_eq!(r.event_id, 305);
    // +01:00 converted to UTC, 7 fractional digits kept.
    assert_eq!(r.time.as_deref(), Some("2022-11-07T15:50:05.1234567Z"));
    assert_eq!(r.exit_code, Some(0x801c0515));
    assert_eq!(r.tenant_type.as_deref(), Some("Federated"));
    assert_eq!(r.tenant_name.as_deref(), Some("adfs.contoso.com"));
    assert!(
        r.server_error
            .as_deref()
            .is_some_and(|s| s.ends_with("AdalErrorCode: 0x2ee6"))
    );

    let r = by_record(&records, 99);
    assert_eq!(r.event_id, 201);
    assert_eq!(r.time.as_deref(), Some("2022-11-07T15:49:59Z"));
    // No LevelDisplayName: the numeric level is named.
    assert_eq!(r.level.as_deref(), Some("Error"));
    assert_eq!(r.exit_code, Some(0x80072ee2));
    assert_eq!(r.http_status, Some(0));
    assert_eq!(r.server_response, None);
    assert_eq!(r.message, None);
}

#[test]
fn single_json_object() {
    let p = parse_events(br#"{"Id": 307, "RecordId": 5, "Properties": [{"Value": "0x801C001D"}]}"#)
        .expect("parsed");
    assert_eq!(p.records.len(), 1);
    assert_eq!(p.records[0].exit_code, Some(0x801c001d));
    assert_eq!(p.records[0].record_id, 5);
}

#[test]
fn neither_xml_nor_json_is_an_error_naming_the_start() {
    let err = parse_events(b"Event ID:      204\r\nLevel: Error").expect_err("not an export");
    assert!(matches!(err, EventsError::UnknownFormat { .. }));
    assert!(err.to_string().contains("Event ID:"), "{err}");
}

#[test]
fn malformed_and_truncated_inputs_never_panic() {
    let full = fixture("wevtutil-mixed.xml");
    for cut in (0..full.len()).step_by(37) {
        let _ = parse_events(&full[..cut]);
    }
    let json = fixture("get-winevent-ps51.json");
    for cut in (0..json.len()).step_by(53) {
        let _ = parse_events(&json[..cut]);
    }
    let p = parse_events(b"<Event><System><EventID>204</EventID></Sys").expect("xml");
    assert!(!p.warnings.is_empty());
    for junk in [
        &b"<<<>>>"[..],
        b"{\"Id\": -1}",
        b"[1, \"x\", null]",
        b"<Event/>",
    ] {
        let _ = parse_events(junk);
    }
}

#[test]
fn mixed_export_feeds_the_diagnosis() {
    let (records, _) = parse("wevtutil-mixed.xml");
    // The 306 at 16:50 is newer than every failure: nothing to report.
    assert_eq!(
        diagnosis::failure(&domain_joined(), &records, ExecutionContext::System),
        None
    );
    // Without the success records, the failures logged within seconds are one run of the join
    // task, whose last terminal record is the 309 (DRS discovery failed, 0x801c0021); the
    // 204's throttling answer belongs to the join phase and does not refine it.
    let failing: Vec<EventRecord> = records
        .into_iter()
        .filter(|r| r.event_id != 306 && r.event_id != 335)
        .collect();
    let f =
        diagnosis::failure(&domain_joined(), &failing, ExecutionContext::System).expect("failing");
    assert_eq!(f.source, "event:309");
    assert_eq!(f.phase, Phase::Discover as i32);
    assert_eq!(f.code, Some(0x801c0021));
    assert_ne!(f.cause, "throttled");
    let all = diagnosis::attempts(&domain_joined(), &failing);
    assert_eq!(all.len(), 1, "{all:?}");
    // The 307 alone (0x801c001d) is the signature of a missing SCP.
    let scp: Vec<EventRecord> = failing.into_iter().filter(|r| r.event_id == 307).collect();
    let f = diagnosis::failure(&domain_joined(), &scp, ExecutionContext::System).expect("failing");
    assert_eq!(
        (f.source.as_str(), f.cause.as_str()),
        ("event:307", "scp_not_configured")
    );
}

#[test]
fn rendered_204_refines_to_device_not_synced() {
    let (records, _) = parse("wevtutil-rendered-wrapped.xml");
    let only_204: Vec<EventRecord> = records.into_iter().filter(|r| r.event_id == 204).collect();
    let f =
        diagnosis::failure(&domain_joined(), &only_204, ExecutionContext::System).expect("failing");
    assert_eq!(f.source, "event:204");
    assert_eq!(f.phase, Phase::Join as i32);
    assert_eq!(f.cause, "device_not_synced");
    assert_eq!(f.symbol.as_deref(), Some("DSREG_E_DIRECTORY_FAILURE"));
}

#[test]
fn exit_codes_in_every_form() {
    use dsreg_agent::events::parse_exit_code;
    assert_eq!(parse_exit_code("-2145647630"), Some(0x801c03f2));
    assert_eq!(parse_exit_code("2149319666"), Some(0x801c03f2));
    assert_eq!(parse_exit_code("0x801C03F2"), Some(0x801c03f2));
    assert_eq!(
        parse_exit_code("Unknown HResult Error code: 0x801c03f2."),
        Some(0x801c03f2)
    );
    assert_eq!(parse_exit_code("Keyset does not exist"), Some(0x80090016));
    assert_eq!(
        parse_exit_code("The operation completed successfully."),
        Some(0)
    );
    assert_eq!(parse_exit_code("%1"), None);
}

proptest::proptest! {
    #[test]
    fn any_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
        let _ = parse_events(&bytes);
    }

    #[test]
    fn any_event_text_never_panics(body in "\\PC{0,300}", id in 0u32..5000) {
        let xml = format!(
            "<Event><System><EventID>{id}</EventID></System><RenderingInfo><Message>{}</Message></RenderingInfo><EventData><Data>{}</Data></EventData></Event>",
            body.replace('&', "&amp;").replace('<', "&lt;"),
            body.replace('&', "&amp;").replace('<', "&lt;"),
        );
        let _ = parse_events(xml.as_bytes());
        let json = serde_json::json!({"Id": id, "Message": body, "Properties": [{"Value": body}]});
        let _ = parse_events(json.to_string().as_bytes());
    }
}

/// A Windows 11 capture's JoinConfig build (Diagnostic Data present) or Server 2016's.
fn on_build(build: &str) -> dsreg_proto::Snapshot {
    let mut s = domain_joined();
    s.join_config = Some(dsreg_proto::v1::JoinConfig {
        os_build: Some(build.into()),
        ..Default::default()
    });
    s
}

#[test]
fn sync_lag_export_gives_two_attempts_each_device_not_synced() {
    let (records, warnings) = parse("wevtutil-sync-lag-two-attempts.xml");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(
        records
            .iter()
            .all(|r| r.channel.as_deref()
                == Some("Microsoft-Windows-User Device Registration/Admin"))
    );
    assert!(records.iter().all(|r| r.activity_id.is_some()));
    let s = on_build("10.0.22631.4460");
    let all = diagnosis::attempts(&s, &records);
    assert_eq!(all.len(), 2, "{all:?}");
    for a in &all {
        assert_eq!(a.cause, "device_not_synced");
        assert_eq!(a.code, Some(0x801c_03f2));
        assert_eq!(a.phase, Phase::Join as i32);
        assert_eq!(a.sources.len(), 4, "{:?}", a.sources);
    }
    assert!(all[0].time > all[1].time, "newest first");
    let f = diagnosis::failure(&s, &records, ExecutionContext::System).expect("failing");
    assert_eq!(
        (f.source.as_str(), f.cause.as_str()),
        ("event:304", "device_not_synced")
    );
}

#[test]
fn legacy_server_2016_export_tells_wrong_tenant_from_throttling() {
    let (records, _) = parse("wevtutil-legacy-ws2016-wrong-tenant-then-throttled.xml");
    let s = on_build("10.0.14393.7428");
    let mut snapshot = s.clone();
    diagnosis::apply(&mut snapshot, &records, ExecutionContext::System);
    let causes: Vec<&str> = snapshot.attempts.iter().map(|a| a.cause.as_str()).collect();
    assert_eq!(causes, ["throttled", "tenant_not_found"]);
    assert_eq!(
        snapshot.failure.map(|f| f.cause).as_deref(),
        Some("throttled"),
        "the newest attempt is the failure"
    );
    // The down-level log's 201 ("succeeded") is not read as a registration record.
    assert!(
        snapshot
            .warnings
            .iter()
            .any(|w| w.message.contains("another log")),
        "{:?}",
        snapshot.warnings
    );
    // Without the newer run, the wrong tenant is the failure: it must not look like sync lag.
    let older: Vec<_> = records.into_iter().filter(|r| r.record_id < 820).collect();
    let f = diagnosis::failure(&s, &older, ExecutionContext::System).expect("failing");
    assert_eq!(f.cause, "tenant_not_found");
}
