//! The value grammar shared by every setting of both binaries.
//!
//! Durations: a whole number and a unit — `ms`, `s`, `m` (or `min`), `h`, `d` — with spaces
//! allowed between them; a bare number is seconds (`26h`, `90m`, `1500ms`, `45`). There is one
//! grammar; whether zero is allowed is the setting's choice: [`duration`] accepts `0` (the
//! agent's heartbeat: "queue every cycle"), [`nonzero_duration`] refuses it (every timeout and
//! interval, where zero would mean a busy loop or an instant kill).
//!
//! Every parser returns the reason alone, lower-case; the caller names the layer, the setting
//! and the value around it ([`crate::InvalidValue`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Parses a duration (`26h`, `90m`, `30s`, `2d`, `1500ms`, or bare seconds); zero allowed.
pub fn duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| "not a duration like 26h, 90m, 30s, 2d".to_string())?;
    let scale = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(n)),
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        u => return Err(format!("unknown unit {u:?} (use ms, s, m, h or d)")),
    };
    n.checked_mul(scale)
        .map(Duration::from_secs)
        .ok_or_else(|| "too large".to_string())
}

/// [`duration`], refusing zero.
pub fn nonzero_duration(s: &str) -> Result<Duration, String> {
    match duration(s)? {
        d if d.is_zero() => Err("must be greater than zero".into()),
        d => Ok(d),
    }
}

/// A whole number, zero allowed, that fits `T`.
pub fn whole<T: TryFrom<u64>>(s: &str) -> Result<T, String> {
    let n: u64 = s
        .trim()
        .parse()
        .map_err(|_| "not a whole number".to_string())?;
    T::try_from(n).map_err(|_| "too large".to_string())
}

/// A whole number of at least 1 that fits `T`.
pub fn positive<T: TryFrom<u64>>(s: &str) -> Result<T, String> {
    match whole::<u64>(s)? {
        0 => Err("must be at least 1".into()),
        n => T::try_from(n).map_err(|_| "too large".to_string()),
    }
}

/// `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`/empty, any case.
pub fn boolean(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err("not a boolean (true/false)".into()),
    }
}

/// An `ip:port` socket address.
pub fn address(s: &str) -> Result<SocketAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| "not an ip:port address".to_string())
}

/// A path, taken as written.
pub fn path(s: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(s))
}

/// A string, taken as written.
pub fn text(s: &str) -> Result<String, String> {
    Ok(s.to_string())
}

/// A file value in whole minutes (the agent's `interval_minutes`).
pub fn minutes(n: &u64) -> Result<Duration, String> {
    scaled(*n, 60)
}

/// A file value in whole hours (the agent's `heartbeat_hours`).
pub fn hours(n: &u64) -> Result<Duration, String> {
    scaled(*n, 3600)
}

/// A file value in whole seconds (the agent's `status_timeout_seconds`).
pub fn seconds(n: &u64) -> Result<Duration, String> {
    scaled(*n, 1)
}

fn scaled(n: u64, scale: u64) -> Result<Duration, String> {
    n.checked_mul(scale)
        .map(Duration::from_secs)
        .ok_or_else(|| "too large".to_string())
}

/// [`minutes`], refusing zero.
pub fn nonzero_minutes(n: &u64) -> Result<Duration, String> {
    nonzero(minutes(n)?)
}

/// [`seconds`], refusing zero.
pub fn nonzero_seconds(n: &u64) -> Result<Duration, String> {
    nonzero(seconds(n)?)
}

fn nonzero(d: Duration) -> Result<Duration, String> {
    if d.is_zero() {
        Err("must be greater than zero".into())
    } else {
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_one_grammar() {
        assert_eq!(duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("15min"), Ok(Duration::from_secs(900)));
        assert_eq!(duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(duration(" 45 "), Ok(Duration::from_secs(45)));
        assert_eq!(duration("6 h"), Ok(Duration::from_secs(21_600)));
        assert_eq!(duration("0s"), Ok(Duration::ZERO));
        assert!(nonzero_duration("0h").is_err());
        assert!(duration("h").is_err());
        assert!(duration("5w").unwrap_err().contains("\"w\""));
        assert!(duration("soon").is_err());
        assert_eq!(duration("99999999999999999d"), Err("too large".into()));
    }

    #[test]
    fn numbers_booleans_and_addresses() {
        assert_eq!(positive::<u32>("12"), Ok(12));
        assert_eq!(positive::<u32>("0"), Err("must be at least 1".into()));
        assert_eq!(whole::<usize>("0"), Ok(0));
        assert_eq!(positive::<u32>("5000000000"), Err("too large".into()));
        assert!(positive::<u32>("lots").is_err());
        assert_eq!(boolean("On"), Ok(true));
        assert_eq!(boolean(""), Ok(false));
        assert!(boolean("maybe").is_err());
        assert!(address("127.0.0.1:1").is_ok());
        assert!(address("localhost").is_err());
        assert_eq!(minutes(&5), Ok(Duration::from_secs(300)));
        assert!(nonzero_minutes(&0).is_err());
        assert!(hours(&u64::MAX).is_err());
    }
}
