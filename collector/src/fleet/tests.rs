//! Fleet aggregate tests: transitions, stale and undelivered sweeps, label caps.

use std::collections::BTreeMap;

use super::*;

fn failing(code: u32) -> DeviceFacts {
    DeviceFacts {
        join_type: "domain_joined".into(),
        failure: Some(FailureFacts {
            phase: "join".into(),
            cause: "no_such_cause_id".into(),
            code: Some(code),
            symbol: String::new(),
        }),
        failing_tests: 0b100,
        without_prt: false,
        ..Default::default()
    }
}

#[test]
fn transitions_subtract_and_add() {
    let f = Fleet::new(Duration::from_secs(60));
    f.set("a", Some(&failing(0x8000_0001)), 1000);
    f.set("b", Some(&failing(0x8000_0001)), 1000);
    let c = f.counts(1000);
    assert_eq!(c.devices["domain_joined"], 2);
    assert_eq!(c.diagnostic_tests_failing["drs_discovery"], 2);
    let key = c.failing.keys().next().unwrap().clone();
    assert_eq!(
        (key.cause.as_str(), key.code.as_str()),
        (OTHER, "0x80000001")
    );
    let healthy = DeviceFacts {
        join_type: "hybrid_joined".into(),
        without_prt: true,
        ..Default::default()
    };
    f.set("a", Some(&healthy), 2000);
    let c = f.counts(2000);
    assert_eq!(c.devices.get("domain_joined"), Some(&1));
    assert_eq!(c.without_prt["hybrid_joined"], 1);
    assert_eq!(c.failing[&key], 1);
    assert_eq!(c.total, 2);
}

#[test]
fn stale_moves_out_and_back() {
    let f = Fleet::new(Duration::from_secs(10));
    f.set("a", Some(&DeviceFacts::default()), 0);
    f.set("b", Some(&DeviceFacts::default()), 5_000);
    assert_eq!(f.counts(12_000).stale, 1);
    assert_eq!(f.counts(16_000).stale, 2);
    f.set("a", None, 16_000);
    assert_eq!(f.counts(16_000).stale, 1);
    assert_eq!(f.counts(30_000).stale, 2);
}

#[test]
fn agent_versions_fold_and_undelivered_sweeps_after_a_day() {
    let f = Fleet::new(Duration::from_secs(3600));
    for i in 0..(MAX_AGENT_VERSIONS + 3) {
        let facts = DeviceFacts {
            agent_version: format!("0.{i}.0"),
            spool_overflowing: i == 0,
            ..Default::default()
        };
        f.set(&format!("d{i}"), Some(&facts), 0);
    }
    let c = f.counts(0);
    assert_eq!(c.agent_versions.len(), MAX_AGENT_VERSIONS + 1);
    assert_eq!(c.agent_versions[OTHER], 3);
    assert_eq!(c.spool_overflowing, 1);
    assert_eq!(c.not_delivered_1d, 0);
    let day = NOT_DELIVERED_AFTER.as_millis() as i64;
    assert_eq!(f.counts(day + 1).not_delivered_1d, c.total);
    f.set("d0", None, day + 1);
    assert_eq!(f.counts(day + 1).not_delivered_1d, c.total - 1);
}

#[test]
fn unknown_codes_fold_beyond_the_cap() {
    let f = Fleet::new(Duration::from_secs(10));
    for i in 0..(MAX_UNKNOWN_CODES as u32 + 5) {
        f.set(&format!("d{i}"), Some(&failing(0x8123_0000 + i)), 0);
    }
    let c = f.counts(0);
    assert_eq!(c.failing.len(), MAX_UNKNOWN_CODES + 1);
    let other: u64 = c
        .failing
        .iter()
        .filter(|(k, _)| k.code == OTHER)
        .map(|(_, v)| *v)
        .sum();
    assert_eq!(other, 5);
    // An admitted code keeps its label.
    assert_eq!(f.code_label(Some(0x8123_0000)), "0x81230000");
}

#[test]
fn seen_keys_order_exactly_like_the_pair() {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let edges = [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
    let mut pairs: Vec<(i64, u32)> = Vec::new();
    for &a in &edges {
        for s in [0, 1, u32::MAX] {
            pairs.push((a, s));
        }
    }
    for _ in 0..2000 {
        let v = next();
        // Mix of small (same high half) and arbitrary times, and repeated times.
        let t = match v % 3 {
            0 => (v >> 8) as i64,
            1 => (v >> 40) as i64 - (1 << 23),
            _ => 1_800_000_000_000 + (v >> 50) as i64,
        };
        pairs.push((t, (next() % 5) as u32));
    }
    let mut by_pair = pairs.clone();
    by_pair.sort();
    let mut by_seen = pairs;
    by_seen.sort_by_key(|&(t, s)| Seen::new(t, s));
    assert_eq!(by_pair, by_seen);
    assert!(Seen::cutoff(5) <= Seen::new(5, 0));
    assert!(Seen::new(4, u32::MAX) < Seen::cutoff(5));
}

fn facts(join: &str, version: &str, failure: Option<(&str, &str, Option<u32>)>) -> DeviceFacts {
    DeviceFacts {
        join_type: join.into(),
        failure: failure.map(|(phase, cause, code)| FailureFacts {
            phase: phase.into(),
            cause: cause.into(),
            code,
            symbol: code
                .and_then(dsreg_proto::catalog::lookup)
                .map_or("", |e| e.symbol)
                .into(),
        }),
        agent_version: version.into(),
        ..Default::default()
    }
}

#[test]
fn a_device_changing_label_sets_moves_every_aggregate_and_freed_ids_do_not_leak() {
    let f = Fleet::new(Duration::from_secs(3600));
    let directory = dsreg_proto::catalog::entries()
        .iter()
        .find(|e| e.symbol == "DSREG_E_DIRECTORY_FAILURE")
        .expect("catalog has DSREG_E_DIRECTORY_FAILURE");
    let mut a = facts(
        "domain_joined",
        "1.0.0",
        Some(("join", directory.cause, Some(directory.code))),
    );
    a.failing_tests = 0b11;
    a.spool_overflowing = true;
    f.set("a", Some(&a), 0);
    let mut b = facts("hybrid_joined", "1.0.0", None);
    b.without_prt = true;
    f.set("b", Some(&b), 0);
    let c = f.counts(0);
    assert_eq!(c.failing.len(), 1);
    let key = c
        .failing
        .keys()
        .next()
        .cloned()
        .unwrap_or_else(|| unreachable!());
    assert_eq!(key.code, dsreg_proto::hex(directory.code));
    assert_eq!(key.symbol, "DSREG_E_DIRECTORY_FAILURE");
    assert_eq!(c.spool_overflowing, 1);
    assert_eq!(c.diagnostic_tests_failing.len(), 2);

    // "a" recovers and changes every label: its old join type, version and failure key have
    // no device left and must vanish (their ids are freed).
    let mut a2 = facts("entra_joined", "2.0.0", None);
    a2.without_prt = true;
    f.set("a", Some(&a2), 10);
    let c = f.counts(10);
    assert_eq!(
        c.devices,
        BTreeMap::from([("entra_joined".into(), 1), ("hybrid_joined".into(), 1)])
    );
    assert!(c.failing.is_empty());
    assert!(c.diagnostic_tests_failing.is_empty());
    assert_eq!(c.spool_overflowing, 0);
    assert_eq!(
        c.agent_versions,
        BTreeMap::from([("1.0.0".into(), 1), ("2.0.0".into(), 1)])
    );
    assert_eq!(
        c.without_prt,
        BTreeMap::from([("entra_joined".into(), 1), ("hybrid_joined".into(), 1)])
    );

    // New labels take the freed ids; nothing of the old labels' counts may show under them.
    f.set(
        "c",
        Some(&facts("not_joined", "3.0.0", Some(("discover", "x", None)))),
        20,
    );
    let c = f.counts(20);
    assert_eq!(c.devices["not_joined"], 1);
    assert!(!c.without_prt.contains_key("not_joined"));
    assert_eq!(c.agent_versions["3.0.0"], 1);
    let (k, n) = c.failing.iter().next().unwrap_or_else(|| unreachable!());
    assert_eq!(
        (k.phase.as_str(), k.cause.as_str(), k.code.as_str(), *n),
        ("discover", OTHER, "", 1)
    );
    assert_eq!(c.total, 3);

    // A facts-less update (an out-of-order report) changes no label.
    f.set("c", None, 5);
    assert_eq!(f.counts(20), c);
    // A facts-less update of an unknown device adds nothing.
    f.set("nobody", None, 20);
    assert_eq!(f.counts(20), c);
}

#[test]
fn admission_caps_stay_sticky_when_every_device_leaves_a_label() {
    let f = Fleet::new(Duration::from_secs(3600));
    let healthy = facts("hybrid_joined", "1.0.0", None);
    for i in 0..MAX_UNKNOWN_CODES as u32 {
        let id = format!("d{i}");
        f.set(
            &id,
            Some(&facts(
                "domain_joined",
                "1.0.0",
                Some(("join", "x", Some(0x8123_0000 + i))),
            )),
            0,
        );
        f.set(&id, Some(&healthy), 1);
    }
    for i in 0..MAX_AGENT_VERSIONS {
        let id = format!("v{i}");
        f.set(
            &id,
            Some(&facts("hybrid_joined", &format!("0.{i}"), None)),
            0,
        );
        f.set(&id, Some(&healthy), 1);
    }
    let c = f.counts(1);
    assert!(c.failing.is_empty(), "every failing label was left: {c:?}");
    assert_eq!(c.agent_versions.len(), 1);
    // The caps are full although no device has those labels any more.
    let late = facts(
        "domain_joined",
        "9.9.9",
        Some(("join", "x", Some(0x8124_0000))),
    );
    f.set("late", Some(&late), 2);
    let c = f.counts(2);
    assert_eq!(
        c.failing.keys().next().map(|k| k.code.as_str()),
        Some(OTHER)
    );
    assert_eq!(c.agent_versions.get(OTHER), Some(&1));
    assert!(!c.agent_versions.contains_key("9.9.9"));
    // An admitted code and version still keep their own label.
    assert_eq!(f.code_label(Some(0x8123_0001)), "0x81230001");
    f.set("d1", Some(&facts("hybrid_joined", "0.3", None)), 3);
    assert_eq!(f.counts(3).agent_versions.get("0.3"), Some(&1));
}

#[test]
fn join_types_past_the_label_guard_fold_into_other() {
    let f = Fleet::new(Duration::from_secs(3600));
    let n = MAX_SMALL_LABELS + 10;
    for i in 0..n {
        f.set(
            &format!("d{i}"),
            Some(&facts(&format!("j{i}"), "1", None)),
            0,
        );
    }
    let c = f.counts(0);
    assert_eq!(c.devices.len(), MAX_SMALL_LABELS + 1);
    assert_eq!(c.devices[OTHER], 10);
    assert_eq!(c.devices.values().sum::<u64>(), n as u64);
    // At the guard, even a common label folds (the guard is never reached by real join
    // types); once devices leave, new labels get their own ids again.
    for i in 0..20 {
        f.set(
            &format!("d{i}"),
            Some(&facts("hybrid_joined", "1", None)),
            1,
        );
    }
    f.set("new", Some(&facts("fresh_label", "1", None)), 1);
    let c = f.counts(1);
    assert_eq!(c.devices["fresh_label"], 1);
    assert_eq!(c.devices["hybrid_joined"] + c.devices[OTHER], 30);
    assert!(
        c.devices["hybrid_joined"] >= 10,
        "{:?}",
        c.devices["hybrid_joined"]
    );
    assert_eq!(c.devices.values().sum::<u64>(), n as u64 + 1);
}

#[test]
fn stale_and_undelivered_follow_the_marks_with_slot_ids() {
    let day = NOT_DELIVERED_AFTER.as_millis() as i64;
    let f = Fleet::new(Duration::from_secs(10));
    let d = DeviceFacts::default();
    // Slots 0, 1, 2 at 0, 5 s and 5 s: equal times order by slot.
    f.set("a", Some(&d), 0);
    f.set("b", Some(&d), 5_000);
    f.set("c", Some(&d), 5_000);
    assert_eq!(
        f.counts(10_000).stale,
        0,
        "last seen AT the cut-off is not stale"
    );
    assert_eq!(f.counts(10_001).stale, 1);
    assert_eq!(f.counts(15_001).stale, 3);
    // A device first seen below the mark counts at once, without another sweep.
    f.set("d", Some(&d), 1_000);
    let c = f.counts(15_001);
    assert_eq!((c.stale, c.total), (4, 4));
    // A report moves one device out; an older report (None) does not move it.
    f.set("b", None, 15_000);
    f.set("c", None, 4_000);
    assert_eq!(f.counts(15_001).stale, 3);
    // The clock steps back: the mark follows and the count stays exact.
    assert_eq!(
        f.counts(14_000).stale,
        2,
        "a (0) and d (1 000) are before 4 000"
    );
    assert_eq!(f.counts(0).stale, 0);
    assert_eq!(f.counts(15_001).stale, 3);
    // The one-day mark is independent of the stale one.
    let c = f.counts(day + 4_999);
    assert_eq!((c.stale, c.not_delivered_1d), (4, 2));
    let c = f.counts(day + 15_001);
    assert_eq!((c.stale, c.not_delivered_1d), (4, 4));
    f.set("a", Some(&d), day + 15_001);
    let c = f.counts(day + 15_001);
    assert_eq!((c.stale, c.not_delivered_1d), (3, 3));
    // Back again: nothing was last seen before 0 ms; then c (5 000) and d (1 000) again.
    let c = f.counts(day);
    assert_eq!((c.stale, c.not_delivered_1d), (3, 0));
    assert_eq!(f.counts(day + 5_001).not_delivered_1d, 2);
}

/// A tiny deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Every aggregate recomputed from a plain model of the devices (labels folded like the fleet
/// does, with codes and versions under their caps so no admission order matters).
fn recount(model: &BTreeMap<String, (DeviceFacts, i64)>, now: i64, stale_ms: i64) -> FleetCounts {
    let mut c = FleetCounts::default();
    let day = now - NOT_DELIVERED_AFTER.as_millis() as i64;
    for (f, seen) in model.values() {
        *c.devices.entry(f.join_type.clone()).or_default() += 1;
        *c.agent_versions.entry(f.agent_version.clone()).or_default() += 1;
        if let Some(x) = &f.failure {
            let key = FailureKey {
                phase: x.phase.clone(),
                cause: cause_label(&x.cause),
                code: x.code.map(dsreg_proto::hex).unwrap_or_default(),
                symbol: x.symbol.clone(),
            };
            *c.failing.entry(key).or_default() += 1;
        }
        for (i, t) in TESTS.iter().enumerate() {
            if f.failing_tests & (1 << i) != 0 {
                *c.diagnostic_tests_failing.entry(t.to_string()).or_default() += 1;
            }
        }
        if f.without_prt {
            *c.without_prt.entry(f.join_type.clone()).or_default() += 1;
        }
        c.spool_overflowing += u64::from(f.spool_overflowing);
        if let Some(r) = f.not_targeted {
            *c.not_targeted.entry(r.to_string()).or_default() += 1;
        }
        c.stale += u64::from(*seen < now - stale_ms);
        c.not_delivered_1d += u64::from(*seen < day);
        c.total += 1;
    }
    c
}

/// The lazy index's invariants (`fleet/last_seen.rs`): every device has one key, never later
/// than its `last_seen`, and below each mark every key is exact and its device flagged.
fn check_index(f: &Fleet, step: usize) {
    let g = f.lock();
    assert_eq!(
        g.order.len(),
        g.devices.len(),
        "step {step}: one key per device"
    );
    let mut slots: Vec<Slot> = g.order.iter().map(|k| k.slot()).collect();
    slots.sort_unstable();
    slots.dedup();
    assert_eq!(
        slots.len(),
        g.devices.len(),
        "step {step}: a device keyed twice"
    );
    for &key in &g.order {
        let d = g
            .devices
            .get(key.slot())
            .expect("a keyed slot has a record");
        let exact = Seen::new(d.last_seen, key.slot());
        assert!(key <= exact, "step {step}: a key later than its device");
        for (mark, flag) in [(&g.stale, STALE), (&g.not_delivered, NOT_DELIVERED)] {
            if key < mark.at() {
                assert_eq!(key, exact, "step {step}: an outdated key below a mark");
                assert_ne!(d.flags & flag, 0, "step {step}: unflagged below a mark");
            }
        }
    }
}

#[test]
fn random_updates_match_a_recount_at_every_step() {
    let stale_ms = 3_600_000;
    let f = Fleet::new(Duration::from_millis(stale_ms as u64));
    let mut model: BTreeMap<String, (DeviceFacts, i64)> = BTreeMap::new();
    let mut rng = Rng(0x5eed_f1ee_7000_0001);
    let joins = [
        "hybrid_joined",
        "domain_joined",
        "entra_joined",
        "not_joined",
        "unknown",
    ];
    let causes = ["device_not_synced", "throttled", "not_a_cause"];
    let day = NOT_DELIVERED_AFTER.as_millis() as i64;
    let mut now = 2 * day;
    for step in 0..3000 {
        let id = format!("pc-{:03}", rng.below(150));
        // Mostly forward, sometimes an old report, sometimes a clock step back.
        now += rng.below(3 * stale_ms as u64) as i64 - stale_ms / 2;
        let seen = now - rng.below(2 * day as u64) as i64;
        if rng.below(5) == 0 {
            f.set(&id, None, seen);
            if let Some((_, s)) = model.get_mut(&id) {
                *s = (*s).max(seen);
            }
        } else {
            let failure = (rng.below(3) == 0).then(|| FailureFacts {
                phase: ["join", "auth", "discover"][rng.below(3) as usize].into(),
                cause: causes[rng.below(3) as usize].into(),
                code: [
                    None,
                    Some(0x801c_03f2),
                    Some(0x8123_0000 + rng.below(20) as u32),
                ][rng.below(3) as usize],
                symbol: ["", "DSREG_E_DIRECTORY_FAILURE"][rng.below(2) as usize].into(),
            });
            let facts = DeviceFacts {
                join_type: joins[rng.below(joins.len() as u64) as usize].into(),
                failure,
                failing_tests: rng.below(64) as u8,
                without_prt: rng.below(4) == 0,
                agent_version: format!("1.{}", rng.below(MAX_AGENT_VERSIONS as u64)),
                spool_overflowing: rng.below(10) == 0,
                not_targeted: [
                    None,
                    None,
                    Some("domain_controller"),
                    Some("policy_disabled"),
                ][rng.below(4) as usize],
            };
            f.set(&id, Some(&facts), seen);
            let old = model.get(&id).map_or(seen, |(_, s)| (*s).max(seen));
            model.insert(id, (facts, old));
        }
        if step % 7 == 0 {
            assert_eq!(f.counts(now), recount(&model, now, stale_ms), "step {step}");
            check_index(&f, step);
        }
    }
    let c = f.counts(now);
    assert_eq!(c, recount(&model, now, stale_ms));
    assert!(
        c.total > 100 && c.stale > 0 && c.not_delivered_1d > 0,
        "{c:?}"
    );
}

#[test]
fn heartbeats_move_lazy_keys_that_the_sweeps_then_catch_up() {
    // Fresh reports of unflagged devices only move their records; the sweeps must then move
    // each outdated key they reach instead of flagging it, while silent devices still turn
    // stale and undelivered, and back.
    let stale_ms = 3_600_000;
    let f = Fleet::new(Duration::from_millis(stale_ms as u64));
    let mut model: BTreeMap<String, (DeviceFacts, i64)> = BTreeMap::new();
    let mut rng = Rng(0x1a2b_3c4d_5e6f_7081);
    let facts = DeviceFacts {
        join_type: "hybrid_joined".into(),
        agent_version: "1.0".into(),
        ..Default::default()
    };
    let mut now = 2 * NOT_DELIVERED_AFTER.as_millis() as i64;
    let (mut lazy, mut stale, mut undelivered) = (0, 0, 0);
    for step in 0..4000 {
        now += rng.below(stale_ms as u64 / 20) as i64;
        // Devices 0–19 report often (every half hour or so), 20–39 rarely (hours of silence),
        // 40–44 seldom (days).
        let n = match rng.below(200) {
            0 => 40 + rng.below(5),
            1..25 => 20 + rng.below(20),
            _ => rng.below(20),
        };
        let id = format!("pc-{n:02}");
        let unflagged = {
            let g = f.lock();
            let d = g.devices.find(&id).and_then(|s| g.devices.get(s).copied());
            d.is_some_and(|d| d.flags & (STALE | NOT_DELIVERED) == 0)
        };
        lazy += u64::from(unflagged);
        let seen = now - rng.below(60_000) as i64;
        f.set(&id, Some(&facts), seen);
        let old = model.get(&id).map_or(seen, |(_, s)| (*s).max(seen));
        model.insert(id, (facts.clone(), old));
        let c = f.counts(now);
        assert_eq!(c, recount(&model, now, stale_ms), "step {step}");
        stale += c.stale;
        undelivered += c.not_delivered_1d;
        check_index(&f, step);
    }
    assert!(
        lazy > 2000 && stale > 1000 && undelivered > 100,
        "{lazy} lazy moves, {stale} stale, {undelivered} undelivered"
    );
}
