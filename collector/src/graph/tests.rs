//! Reconciliation rules: the matching order, ambiguity, `absent` only after a complete
//! round, `no_agent` only for hybrid objects, the pending-over-a-day count.

use super::cloud::{CloudDevice, CloudState};
use super::reconcile::{ClientState, PENDING_ALERT_MS, Reported, reconcile, resolution};

fn obj(id: &str, device_id: &str, name: &str, trust: &str, keys: usize) -> CloudDevice {
    CloudDevice {
        object_id: id.into(),
        device_id: Some(device_id.into()),
        display_name: name.into(),
        trust_type: Some(trust.into()),
        account_enabled: Some(true),
        registered_keys: keys,
        ..CloudDevice::default()
    }
}

fn dev(id: &str, host: &str, join_type: &str, cause: Option<&str>) -> Reported {
    Reported {
        machine_id: id.into(),
        hostname: host.into(),
        ad_domain: "corp.contoso.com".into(),
        join_type: join_type.into(),
        failure_cause: cause.map(Into::into),
        ..Reported::default()
    }
}

#[test]
fn matching_goes_device_id_then_sid_then_unambiguous_name() {
    let mut by_id = dev("m-1", "PC-1", "hybrid_joined", None);
    by_id.entra_device_id = Some("AAAA-1".into());
    let mut by_sid = dev(
        "m-2",
        "PC-2-RENAMED",
        "domain_joined",
        Some("device_not_synced"),
    );
    by_sid.computer_sid = Some("s-1-5-21-9-9-9-1002".into());
    let by_name = dev("m-3", "pc-3", "domain_joined", None);
    let twin_a = dev("m-4", "PC-4", "domain_joined", None);
    let twin_b = dev("m-5", "pc-4", "domain_joined", None);
    let mut sid_conflict = dev("m-6", "PC-6", "domain_joined", None);
    sid_conflict.computer_sid = Some("S-1-5-21-9-9-9-6666".into());
    let unmatched = dev("m-7", "PC-7", "hybrid_joined", None);

    let mut sid_obj = obj("o-2", "bbbb-2", "PC-2", "ServerAd", 0);
    sid_obj.on_premises_sid = Some("S-1-5-21-9-9-9-1002".into());
    let mut conflict_obj = obj("o-6", "ffff-6", "PC-6", "ServerAd", 0);
    conflict_obj.on_premises_sid = Some("S-1-5-21-9-9-9-1006".into());
    let mut disabled = obj("o-1", "aaaa-1", "PC-1", "ServerAd", 1);
    disabled.account_enabled = Some(false);
    let cloud = vec![
        disabled,
        sid_obj,
        obj("o-3", "cccc-3", "PC-3", "ServerAd", 0),
        obj("o-4", "dddd-4", "PC-4", "ServerAd", 1),
        conflict_obj,
        obj("o-8", "eeee-8", "PC-8", "ServerAd", 0),
        obj("o-9", "9999-9", "PHONE", "Workplace", 1),
        obj("o-10", "1010-10", "PC-7", "Workplace", 1),
    ];
    let reported = [
        by_id,
        by_sid,
        by_name,
        twin_a,
        twin_b,
        sid_conflict,
        unmatched,
    ];
    let r = reconcile(&reported, cloud, true, 1_000);
    let get = |m: &str| &r.entries[r.by_machine[m]];
    assert_eq!(get("m-1").matched_by, Some("device_id"));
    assert_eq!(
        (get("m-1").client, get("m-1").cloud),
        (ClientState::Joined, CloudState::Disabled)
    );
    assert_eq!(get("m-2").matched_by, Some("sid"));
    assert_eq!(
        (get("m-2").client, get("m-2").cloud),
        (ClientState::Failing, CloudState::Pending)
    );
    assert_eq!(get("m-3").matched_by, Some("name"));
    assert_eq!(get("m-3").cloud, CloudState::Pending);
    assert_eq!(r.ambiguous_names, 1, "PC-4 is reported twice");
    assert_eq!(get("m-4").cloud, CloudState::Absent);
    assert_eq!(
        get("m-6").cloud,
        CloudState::Absent,
        "name match refused: SIDs differ"
    );
    assert_eq!(
        get("m-7").cloud,
        CloudState::Absent,
        "a Workplace object is never matched by name"
    );
    let no_agent: Vec<&str> = r
        .entries
        .iter()
        .filter(|e| e.client == ClientState::NoAgent)
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(no_agent, ["PC-4", "PC-6", "PC-8"], "hybrid objects only");
    assert_eq!(r.counts[&(ClientState::NoAgent, CloudState::Pending)], 2);
    assert_eq!(r.cloud_objects, 8);
    assert!(
        resolution(ClientState::Joined, CloudState::Absent)
            .unwrap()
            .contains("dsregcmd /leave")
    );
    assert!(
        resolution(ClientState::NoAgent, CloudState::Pending)
            .unwrap()
            .contains("install the agent")
    );
    assert!(
        resolution(ClientState::Failing, CloudState::Pending)
            .unwrap()
            .contains("client cause")
    );
    assert!(resolution(ClientState::Joined, CloudState::Registered).is_none());
}

#[test]
fn absent_needs_a_complete_round_and_long_pending_is_counted_by_cause() {
    let reported = [
        dev("m-1", "PC-1", "domain_joined", Some("tenant_not_found")),
        dev("m-2", "PC-2", "domain_joined", None),
    ];
    let r = reconcile(&reported, Vec::new(), false, 0);
    assert!(
        r.entries.is_empty(),
        "no cloud state before a complete round"
    );
    let now = 10 * PENDING_ALERT_MS;
    let mut old = obj("o-1", "a-1", "PC-1", "ServerAd", 0);
    old.pending_since = Some(now - PENDING_ALERT_MS - 1);
    let mut young = obj("o-3", "a-3", "PC-3", "ServerAd", 0);
    young.pending_since = Some(now - 1000);
    let mut lonely = obj("o-4", "a-4", "PC-4", "ServerAd", 0);
    lonely.pending_since = Some(0);
    let r = reconcile(&reported, vec![old, young, lonely], true, now);
    assert_eq!(r.entries[r.by_machine["m-2"]].cloud, CloudState::Absent);
    assert_eq!(r.pending_over_1d.get("tenant_not_found"), Some(&1));
    assert_eq!(
        r.pending_over_1d.get("no_agent"),
        Some(&1),
        "PC-4; PC-3 is too young"
    );
    assert_eq!(r.pending_over_1d.values().sum::<u64>(), 2);
}
