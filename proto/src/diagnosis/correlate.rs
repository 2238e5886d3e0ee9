//! Correlation: event-log records → join attempts (DESIGN §4).
//!
//! One run of the `Automatic-Device-Join` task is one attempt; its records are spread over the
//! trigger (4096), the server's answer (201 discover / 204 join), intermediate failures (220,
//! 330, 344/345, …) and a terminal record (304/305/307/309/333/334/205/206 failed, 306/335
//! succeeded). [`runs`] groups them:
//!
//! 1. Only records of the registration Admin log count ([`is_registration_record`]); records
//!    of other channels or providers (the down-level `Microsoft-Workplace Join` log, whose 201
//!    means success) are dropped and counted.
//! 2. Duplicates (same record id; without one, the same content) are dropped.
//! 3. Records are ordered by time, then record id, so any interleaving of the input gives the
//!    same runs.
//! 4. A record starts a new run when it carries another activity id than the run, when it is
//!    a trigger (4096) after the run already has records, when it comes more than
//!    [`RUN_WINDOW_MS`] after the run's first record, or when the run already ended and the
//!    record is not a repeat of its outcome within [`REPEAT_WINDOW_MS`] (Windows logs 304
//!    twice per attempt, 307 and 304 together for a missing SCP, and a failed federated join
//!    goes straight on to a sync join in the same run).
//! 5. A run without any failure or success record (a trigger alone, proxy diagnostics) is not
//!    an attempt.
//!
//! Invariants: total over any input (no panics, no unbounded growth: at most
//! [`MAX_RECORDS`] records are read, newest kept); each record belongs to at most one run, so
//! an attempt is never counted twice.

use crate::EventRecord;

/// The log the agent reads.
pub const REGISTRATION_CHANNEL: &str = "Microsoft-Windows-User Device Registration/Admin";
/// The provider that writes it (some text exports show only "User Device Registration").
pub const REGISTRATION_PROVIDER: &str = "User Device Registration";
/// The task trigger record.
pub const TRIGGER: u32 = 4096;
/// The longest a run of the join task takes from its first to its last record (auth timeouts
/// included); retries are an hour apart.
pub const RUN_WINDOW_MS: i64 = 10 * 60 * 1000;
/// How close a repeat of a run's outcome (a second 304, a 304 after a 307) must follow it.
pub const REPEAT_WINDOW_MS: i64 = 2 * 60 * 1000;
/// At most this many records (the newest) are correlated per call.
pub const MAX_RECORDS: usize = 4096;

/// Terminal failure records: the run ended here.
pub const TERMINAL_FAILURES: &[u32] = &[304, 305, 307, 309, 333, 334, 205, 206];
/// Failure records inside a run (the server's answer, or a step that failed); the failure of
/// a run that has no terminal record.
pub const STEP_FAILURES: &[u32] = &[200, 201, 202, 203, 204, 220, 330, 344, 345, 354, 369];
/// Records that prove the run worked: 306 joined, 335 already joined.
pub const SUCCESSES: &[u32] = &[306, 335];

/// Whether a record comes from the registration Admin log. Records that do not say (old
/// agents, exports without the System block) are taken as such.
pub fn is_registration_record(e: &EventRecord) -> bool {
    let channel_ok = e.channel.as_deref().is_none_or(|c| {
        let c = c.trim();
        c.is_empty() || c.eq_ignore_ascii_case(REGISTRATION_CHANNEL)
    });
    let provider_ok = e.provider.as_deref().is_none_or(|p| {
        let p = p.trim();
        let n = REGISTRATION_PROVIDER.len();
        p.is_empty()
            || (p.len() >= n
                && p.is_char_boundary(p.len() - n)
                && p[p.len() - n..].eq_ignore_ascii_case(REGISTRATION_PROVIDER))
    });
    channel_ok && provider_ok
}

/// Whether a record says something failed.
pub fn is_failure(id: u32) -> bool {
    TERMINAL_FAILURES.contains(&id) || STEP_FAILURES.contains(&id)
}

/// Whether a record ends a run.
fn is_outcome(id: u32) -> bool {
    TERMINAL_FAILURES.contains(&id) || SUCCESSES.contains(&id)
}

/// A record's time as milliseconds since the Unix epoch: the UTC form every record and block
/// carries (`2025-03-09T11:00:27.5Z`) read directly, any other RFC 3339 form through `time`.
pub fn epoch_ms(t: &str) -> Option<i64> {
    let t = t.trim();
    fast_utc_ms(t).or_else(|| {
        use time::format_description::well_known::Rfc3339;
        let dt = time::OffsetDateTime::parse(t, &Rfc3339).ok()?;
        i64::try_from(dt.unix_timestamp_nanos() / 1_000_000).ok()
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.fff…]Z` → epoch ms without allocating (the hot path: every record's
/// time is read once per diagnosis); `None` for anything else.
fn fast_utc_ms(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 20 || !matches!(b[b.len() - 1], b'Z' | b'z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = b.get(r)?;
        s.iter().try_fold(0i64, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let frac = &b[19..b.len() - 1];
    let ms = match frac.split_first() {
        None => 0,
        Some((b'.', digits)) if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => {
            digits
                .iter()
                .chain(std::iter::repeat(&b'0'))
                .take(3)
                .fold(0i64, |acc, c| acc * 10 + i64::from(c - b'0'))
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms)
}

/// The records of one run, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Run<'a> {
    /// The records, in time order.
    pub records: Vec<&'a EventRecord>,
    /// The first record's time (epoch ms), read once.
    first: Option<i64>,
    /// The last record's time (epoch ms), read once.
    last: Option<i64>,
    /// The first activity id of its records, read once.
    activity: Option<&'a str>,
    /// Whether an outcome record (terminal failure or success) is among its records.
    ended: bool,
}

impl<'a> Run<'a> {
    /// The first record's time.
    pub fn first_ms(&self) -> Option<i64> {
        self.first
    }

    /// The last record's time.
    pub fn last_ms(&self) -> Option<i64> {
        self.last
    }

    /// The last outcome record (terminal failure or success), if the run ended.
    pub fn outcome(&self) -> Option<&'a EventRecord> {
        self.records
            .iter()
            .rev()
            .find(|r| is_outcome(r.event_id))
            .copied()
    }

    /// Whether the run ended in success: its last outcome (or, without one, its last
    /// meaningful record) is a 306/335.
    pub fn succeeded(&self) -> bool {
        self.records
            .iter()
            .rev()
            .find(|r| is_failure(r.event_id) || SUCCESSES.contains(&r.event_id))
            .is_some_and(|r| SUCCESSES.contains(&r.event_id))
    }

    /// Whether it holds any failure or success record (else it is not an attempt).
    pub fn is_attempt(&self) -> bool {
        self.records
            .iter()
            .any(|r| is_failure(r.event_id) || SUCCESSES.contains(&r.event_id))
    }

    fn push(&mut self, r: &'a EventRecord, t: Option<i64>) {
        self.records.push(r);
        self.first = self.first.or(t);
        self.last = t.or(self.last);
        self.activity = self.activity.or_else(|| activity(r));
        self.ended |= is_outcome(r.event_id);
    }
}

fn time_ms(r: &EventRecord) -> Option<i64> {
    r.time.as_deref().and_then(epoch_ms)
}

fn activity(r: &EventRecord) -> Option<&str> {
    r.activity_id
        .as_deref()
        .map(|a| a.trim().trim_matches(['{', '}']))
        .filter(|a| !a.is_empty() && a.chars().any(|c| c != '0' && c != '-'))
}

/// What was dropped while correlating, for parse warnings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Records of another channel or provider.
    pub foreign: usize,
    /// Repeated records.
    pub duplicates: usize,
    /// Records over [`MAX_RECORDS`] (the oldest).
    pub over_limit: usize,
}

/// Groups registration records into runs, oldest first (see the module docs).
pub fn runs(events: &[EventRecord]) -> (Vec<Run<'_>>, Dropped) {
    let mut dropped = Dropped::default();
    // Each record's time is read once.
    let mut records: Vec<(Option<i64>, &EventRecord)> =
        Vec::with_capacity(events.len().min(MAX_RECORDS));
    for e in events {
        if !is_registration_record(e) {
            dropped.foreign += 1;
        } else {
            records.push((time_ms(e), e));
        }
    }
    // Time order; a record without a time sorts by its record id among its neighbours' ids.
    records.sort_by_key(|(t, r)| (t.unwrap_or(i64::MIN), r.record_id));
    let before = records.len();
    records.dedup_by(|b, a| same_record(a.1, b.1));
    // `dedup_by` only drops neighbours; equal record ids with different times are rare
    // enough to be caught by a second pass.
    let mut ids: Vec<u64> = records
        .iter()
        .map(|(_, r)| r.record_id)
        .filter(|id| *id != 0)
        .collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        let mut seen = std::collections::HashSet::new();
        records.retain(|(_, r)| r.record_id == 0 || seen.insert(r.record_id));
    }
    dropped.duplicates = before - records.len();
    if records.len() > MAX_RECORDS {
        dropped.over_limit = records.len() - MAX_RECORDS;
        records.drain(..records.len() - MAX_RECORDS);
    }

    let mut runs: Vec<Run<'_>> = Vec::new();
    for (t, r) in records {
        let starts_new = match runs.last() {
            None => true,
            Some(run) => starts_new_run(run, r, t),
        };
        if starts_new {
            runs.push(Run {
                records: Vec::with_capacity(4),
                first: None,
                last: None,
                activity: None,
                ended: false,
            });
        }
        if let Some(run) = runs.last_mut() {
            run.push(r, t);
        }
    }
    runs.retain(Run::is_attempt);
    (runs, dropped)
}

fn same_record(a: &EventRecord, b: &EventRecord) -> bool {
    if a.record_id != 0 || b.record_id != 0 {
        return a.record_id == b.record_id;
    }
    a == b
}

fn starts_new_run(run: &Run<'_>, r: &EventRecord, t: Option<i64>) -> bool {
    if let (Some(a), Some(b)) = (run.activity, activity(r))
        && !a.eq_ignore_ascii_case(b)
    {
        return true;
    }
    if r.event_id == TRIGGER {
        return true;
    }
    if let (Some(first), Some(t)) = (run.first_ms(), t)
        && t - first > RUN_WINDOW_MS
    {
        return true;
    }
    if run.ended {
        // After the outcome only a repeat of it, or the next step of a fallback join that
        // follows at once, belongs to the same run.
        let close = match (run.last_ms(), t) {
            (Some(last), Some(t)) => t - last <= REPEAT_WINDOW_MS,
            _ => false,
        };
        let continues = is_failure(r.event_id) || SUCCESSES.contains(&r.event_id);
        return !(close && continues);
    }
    false
}

/// Registration records kept as context per device (agent state, collector part row).
pub const CONTEXT_RECORDS: usize = 64;

/// The records to keep as a device's context: `stored` and `new` together, registration
/// records only, duplicates dropped, the newest [`CONTEXT_RECORDS`] in time order. With them
/// the next diagnosis still sees the newest attempt when a cycle brings no new records, so a
/// failing device stays failing until a newer attempt or a success (DESIGN §4).
pub fn retain_context(stored: Vec<EventRecord>, new: &[EventRecord]) -> Vec<EventRecord> {
    let mut all: Vec<EventRecord> = stored
        .into_iter()
        .chain(new.iter().cloned())
        .filter(is_registration_record)
        .collect();
    all.sort_by_key(|r| (time_ms(r).unwrap_or(i64::MIN), r.record_id));
    let mut seen = std::collections::HashSet::new();
    // Keep the last copy of a repeated record id (the newest report's view of it).
    let mut out: Vec<EventRecord> = Vec::with_capacity(all.len());
    for r in all.into_iter().rev() {
        if r.record_id == 0 || seen.insert(r.record_id) {
            out.push(r);
        }
        if out.len() == CONTEXT_RECORDS {
            break;
        }
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn rec(id: u32, record_id: u64, time: &str) -> EventRecord {
        EventRecord {
            event_id: id,
            record_id,
            time: Some(time.to_owned()),
            ..Default::default()
        }
    }

    fn shape(events: &[EventRecord]) -> Vec<Vec<u64>> {
        runs(events)
            .0
            .iter()
            .map(|r| r.records.iter().map(|e| e.record_id).collect())
            .collect()
    }

    #[test]
    fn hourly_retries_are_separate_runs() {
        let events = [
            rec(4096, 1, "2025-03-09T10:00:00Z"),
            rec(204, 2, "2025-03-09T10:00:05Z"),
            rec(304, 3, "2025-03-09T10:00:06Z"),
            rec(304, 4, "2025-03-09T10:00:06.5Z"),
            rec(4096, 5, "2025-03-09T11:00:00Z"),
            rec(204, 6, "2025-03-09T11:00:04Z"),
            rec(304, 7, "2025-03-09T11:00:05Z"),
        ];
        assert_eq!(shape(&events), [vec![1, 2, 3, 4], vec![5, 6, 7]]);
    }

    #[test]
    fn without_triggers_the_window_splits() {
        let events = [
            rec(204, 2, "2025-03-09T10:00:05Z"),
            rec(304, 3, "2025-03-09T10:00:06Z"),
            rec(204, 6, "2025-03-09T11:00:04Z"),
            rec(304, 7, "2025-03-09T11:00:05Z"),
        ];
        assert_eq!(shape(&events), [vec![2, 3], vec![6, 7]]);
    }

    #[test]
    fn a_record_after_the_outcome_starts_a_new_run_unless_it_follows_at_once() {
        let events = [
            rec(307, 1, "2025-03-09T10:00:00Z"),
            rec(304, 2, "2025-03-09T10:00:01Z"), // KB4480781: 307 and 304 of one run
            rec(304, 3, "2025-03-09T10:05:00Z"), // 5 minutes later: another run
        ];
        assert_eq!(shape(&events), [vec![1, 2], vec![3]]);
    }

    #[test]
    fn activity_ids_split_runs_that_times_would_join() {
        let mut a = rec(204, 1, "2025-03-09T10:00:00Z");
        a.activity_id = Some("{AAAA0000-0000-0000-0000-000000000001}".into());
        let mut b = rec(204, 2, "2025-03-09T10:00:30Z");
        b.activity_id = Some("aaaa0000-0000-0000-0000-000000000002".into());
        assert_eq!(shape(&[a, b]), [vec![1], vec![2]]);
    }

    #[test]
    fn foreign_channels_and_duplicates_are_dropped() {
        let mut downlevel = rec(201, 9, "2025-03-09T10:00:00Z");
        downlevel.channel = Some("Microsoft-Workplace Join".into());
        let mut other_provider = rec(304, 8, "2025-03-09T10:00:00Z");
        other_provider.provider = Some("Microsoft-Windows-AAD".into());
        let events = [
            downlevel,
            other_provider,
            rec(304, 1, "2025-03-09T10:00:00Z"),
            rec(304, 1, "2025-03-09T10:00:00Z"),
        ];
        let (runs, dropped) = runs(&events);
        assert_eq!(runs.len(), 1);
        assert_eq!(
            dropped,
            Dropped {
                foreign: 2,
                duplicates: 1,
                over_limit: 0
            }
        );
    }

    #[test]
    fn triggers_and_proxy_records_alone_are_no_attempt() {
        let events = [
            rec(4096, 1, "2025-03-09T10:00:00Z"),
            rec(337, 2, "2025-03-09T10:00:01Z"),
            rec(4096, 3, "2025-03-09T11:00:00Z"),
        ];
        assert!(runs(&events).0.is_empty());
    }

    #[test]
    fn success_after_failure_in_a_later_run() {
        let events = [
            rec(304, 1, "2025-03-09T10:00:00Z"),
            rec(4096, 2, "2025-03-09T11:00:00Z"),
            rec(306, 3, "2025-03-09T11:00:09Z"),
        ];
        let (runs, _) = runs(&events);
        assert_eq!(runs.len(), 2);
        assert!(!runs[0].succeeded());
        assert!(runs[1].succeeded());
    }

    #[test]
    fn context_keeps_the_newest_registration_records() {
        let old: Vec<EventRecord> = (0..CONTEXT_RECORDS as u64)
            .map(|i| rec(304, i + 1, &format!("2025-03-09T10:{:02}:00Z", i % 60)))
            .collect();
        let mut foreign = rec(201, 1000, "2025-03-10T10:00:00Z");
        foreign.channel = Some("Microsoft-Workplace Join".into());
        let new = [
            rec(306, 999, "2025-03-10T11:00:00Z"),
            foreign,
            rec(304, 5, "2025-03-09T10:04:00Z"),
        ];
        let kept = retain_context(old, &new);
        assert_eq!(kept.len(), CONTEXT_RECORDS);
        assert_eq!(kept.last().map(|r| r.record_id), Some(999));
        assert!(kept.iter().all(|r| r.record_id != 1000));
        assert_eq!(kept.iter().filter(|r| r.record_id == 5).count(), 1);
    }

    #[test]
    fn epoch_ms_reads_rfc3339() {
        // The fast path agrees with the `time` crate on every form it takes.
        for t in [
            "1970-01-01T00:00:00Z",
            "2025-03-09T11:00:27.5Z",
            "2024-02-29T23:59:59.9999999Z",
            "2000-03-01T00:00:00.001Z",
            "1999-12-31T12:30:45.123456Z",
        ] {
            use time::format_description::well_known::Rfc3339;
            let slow = time::OffsetDateTime::parse(t, &Rfc3339).unwrap();
            let want = i64::try_from(slow.unix_timestamp_nanos() / 1_000_000).unwrap();
            assert_eq!(fast_utc_ms(t), Some(want), "{t}");
        }
        assert_eq!(fast_utc_ms("2025-13-09T11:00:27Z"), None);
        assert_eq!(epoch_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(epoch_ms("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(epoch_ms("garbage"), None);
    }
}
