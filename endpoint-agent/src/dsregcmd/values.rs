//! Value shapes: pure conversions from one printed value to its typed form.
//!
//! Every function takes the trimmed value text and returns `None` (or a `Bad…` variant) when
//! the text does not have the shape; none allocates except [`time`], which builds the RFC 3339
//! string. Invariant: all byte indexing is checked (`get`), so no input can panic.

use dsreg_proto::TestStatus;

/// `YES`/`NO` (any case) → bool.
pub fn yes_no(v: &str) -> Option<bool> {
    if v.eq_ignore_ascii_case("yes") {
        Some(true)
    } else if v.eq_ignore_ascii_case("no") {
        Some(false)
    } else {
        None
    }
}

/// `ENABLED`/`DISABLED` (any case) → bool.
pub fn enabled(v: &str) -> Option<bool> {
    if v.eq_ignore_ascii_case("enabled") {
        Some(true)
    } else if v.eq_ignore_ascii_case("disabled") {
        Some(false)
    } else {
        None
    }
}

/// Values dsregcmd legitimately prints instead of the usual shape: they leave the typed field
/// unset (the line goes to `extra`) without a warning. Empty values are legitimate too.
pub fn is_legit_non_value(v: &str) -> bool {
    v.is_empty()
        || ["UNKNOWN", "NONE", "NOT SET", "N/A", "Managed by MDM"]
            .iter()
            .any(|w| v.eq_ignore_ascii_case(w))
        || error_prefix(v).is_some()
}

/// A code: `0x…` hex (any case, up to 8 digits), unsigned decimal, or signed decimal
/// (HRESULTs printed as negative `i32`).
pub fn code(v: &str) -> Option<u32> {
    let v = v.trim();
    if let Some(hex) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        return u32::from_str_radix(hex, 16).ok();
    }
    if let Some(neg) = v.strip_prefix('-') {
        if neg.is_empty() || !neg.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        return v.parse::<i32>().ok().map(|i| i as u32);
    }
    number(v)
}

/// An unsigned decimal integer that fits `u32`.
pub fn number(v: &str) -> Option<u32> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// The rest after `ERROR` when the value starts with it (`ERROR`, `ERROR 0x…`, `ERROR (0x…)`).
fn error_prefix(v: &str) -> Option<&str> {
    let head = v.get(..5)?;
    if !head.eq_ignore_ascii_case("error") {
        return None;
    }
    let rest = v.get(5..)?;
    if rest.is_empty() || rest.starts_with([' ', '(', ':']) {
        Some(rest)
    } else {
        None
    }
}

/// What an `ERROR…` value carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorValue {
    /// Not an `ERROR` value at all.
    NotError,
    /// `ERROR` with no code.
    Bare,
    /// `ERROR 0x…` or `ERROR (0x…)`.
    Code(u32),
    /// `ERROR` followed by something that is not a code.
    Malformed,
}

/// Parses `ERROR`, `ERROR 0xd0020017`, `ERROR (0xd0020017)`.
pub fn error_value(v: &str) -> ErrorValue {
    let Some(rest) = error_prefix(v) else {
        return ErrorValue::NotError;
    };
    let rest = rest.trim_start_matches([' ', ':']).trim();
    if rest.is_empty() {
        return ErrorValue::Bare;
    }
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or(rest);
    code(inner).map_or(ErrorValue::Malformed, ErrorValue::Code)
}

/// A parsed test line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Test {
    /// PASS / FAIL / SKIPPED.
    pub status: TestStatus,
    /// First code in the brackets.
    pub code: Option<u32>,
    /// Second code in the brackets.
    pub sub_code: Option<u32>,
    /// The brackets held something that is not `code` or `code/sub_code`.
    pub bad_codes: bool,
}

/// `PASS`, `SKIPPED`, `FAIL`, `FAIL [0x80070002]`, `FAIL [0x801c0021/0x80072ee2]`
/// (spaces inside the brackets tolerated). `None` when the status word is not recognised.
pub fn test(v: &str) -> Option<Test> {
    let (word, rest) = match v.find(['[', ' ']) {
        Some(i) => (v.get(..i)?, v.get(i..)?.trim()),
        None => (v, ""),
    };
    let status = if word.eq_ignore_ascii_case("pass") || word.eq_ignore_ascii_case("passed") {
        TestStatus::Pass
    } else if word.eq_ignore_ascii_case("fail") || word.eq_ignore_ascii_case("failed") {
        TestStatus::Fail
    } else if word.eq_ignore_ascii_case("skipped") {
        TestStatus::Skipped
    } else {
        return None;
    };
    let mut t = Test {
        status,
        code: None,
        sub_code: None,
        bad_codes: false,
    };
    if rest.is_empty() {
        return Some(t);
    }
    let inner = rest.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
    match inner {
        Some(inner) => {
            let (a, b) = match inner.split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (inner, None),
            };
            t.code = code(a);
            t.sub_code = b.and_then(code);
            t.bad_codes = t.code.is_none() || (b.is_some() && t.sub_code.is_none());
            if t.bad_codes {
                t.code = None;
                t.sub_code = None;
            }
        }
        None => t.bad_codes = true,
    }
    Some(t)
}

/// `2025-03-09 11:00:27.000 UTC` → `2025-03-09T11:00:27Z`; non-zero fractions are kept as
/// printed (`.789` → `2020-07-18T20:10:33.789Z`). The ` UTC` suffix is optional.
pub fn time(v: &str) -> Option<String> {
    let v = v.trim();
    let v = v.strip_suffix("UTC").unwrap_or(v).trim_end();
    let b = v.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = b.get(r)?;
        if !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(s.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')))
    };
    let (y, mo, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (h, mi, s) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let seps = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if seps.iter().any(|&(i, c)| b.get(i) != Some(&c)) || !matches!(b.get(10), Some(b' ' | b'T')) {
        return None;
    }
    if y == 0 || !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let frac = match b.get(19..)? {
        [] => &[][..],
        [b'.', rest @ ..] if !rest.is_empty() && rest.iter().all(u8::is_ascii_digit) => rest,
        _ => return None,
    };
    let mut out = String::with_capacity(30);
    out.push_str(v.get(..10)?);
    out.push('T');
    out.push_str(v.get(11..19)?);
    if frac.iter().any(|&d| d != b'0') {
        out.push('.');
        out.push_str(v.get(20..)?);
    }
    out.push('Z');
    Some(out)
}

/// `[ start -- end ]` → (not_before, not_after).
pub fn validity(v: &str) -> Option<(String, String)> {
    let inner = v.trim().strip_prefix('[')?.strip_suffix(']')?;
    let (a, b) = inner.split_once("--")?;
    Some((time(a)?, time(b)?))
}

/// `YES ( StateReady )` → (true, Some("StateReady")); `NO` → (false, None).
pub fn annotated_yes_no(v: &str) -> Option<(bool, Option<&str>)> {
    match v.split_once('(') {
        Some((word, rest)) => {
            let state = rest.trim().strip_suffix(')')?.trim();
            Some((yes_no(word.trim())?, Some(state)))
        }
        None => Some((yes_no(v)?, None)),
    }
}

/// An identity-provider domain such as `login.windows.net` has a dot; `logi` does not.
pub fn looks_like_domain(v: &str) -> bool {
    v.contains('.') && !v.ends_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(code("0x801C001D"), Some(0x801c001d));
        assert_eq!(code("0x0"), Some(0));
        assert_eq!(code("-2145648611"), Some(0x801c001d));
        assert_eq!(code("400"), Some(400));
        assert_eq!(code("0x"), None);
        assert_eq!(code("0x1234567890"), None);
        assert_eq!(code("0xzz"), None);
        assert_eq!(code("-"), None);
    }

    #[test]
    fn errors() {
        assert_eq!(
            error_value("ERROR (0xd0020017)"),
            ErrorValue::Code(0xd0020017)
        );
        assert_eq!(
            error_value("ERROR 0xd0020017"),
            ErrorValue::Code(0xd0020017)
        );
        assert_eq!(error_value("ERROR"), ErrorValue::Bare);
        assert_eq!(error_value("ERROR (oops)"), ErrorValue::Malformed);
        assert_eq!(error_value("YES"), ErrorValue::NotError);
        assert_eq!(error_value("ERRORS"), ErrorValue::NotError);
    }

    #[test]
    fn tests() {
        let t = test("FAIL [0x801c0021/0x80072ee2]").unwrap();
        assert_eq!(
            (t.status, t.code, t.sub_code),
            (TestStatus::Fail, Some(0x801c0021), Some(0x80072ee2))
        );
        let t = test("FAIL [ 0x80070002 ]").unwrap();
        assert_eq!(t.code, Some(0x80070002));
        let t = test("FAIL [0xZZ]").unwrap();
        assert!(t.bad_codes && t.code.is_none());
        assert_eq!(test("SKIPPED").unwrap().status, TestStatus::Skipped);
        assert_eq!(test("PASS").unwrap().status, TestStatus::Pass);
        assert!(test("MAYBE").is_none());
    }

    #[test]
    fn times() {
        assert_eq!(
            time("2025-03-09 11:00:27.000 UTC").as_deref(),
            Some("2025-03-09T11:00:27Z")
        );
        assert_eq!(
            time("2020-07-18 20:10:33.789 UTC").as_deref(),
            Some("2020-07-18T20:10:33.789Z")
        );
        assert_eq!(
            time("2020-07-18 20:10:33 UTC").as_deref(),
            Some("2020-07-18T20:10:33Z")
        );
        assert_eq!(time("[Date] UTC"), None);
        assert_eq!(time("NONE"), None);
        assert_eq!(time("2020-13-18 20:10:33.000 UTC"), None);
        assert_eq!(time("2020-07-18 20:10:33.7x9 UTC"), None);
        assert_eq!(time("2020-07-18 20:10:33.é UTC"), None);
    }

    #[test]
    fn validities_and_annotations() {
        let v = validity("[ 2025-03-09 10:23:00.000 UTC -- 2035-03-09 11:53:00.000 UTC ]").unwrap();
        assert_eq!(
            v,
            ("2025-03-09T10:23:00Z".into(), "2035-03-09T11:53:00Z".into())
        );
        assert_eq!(
            annotated_yes_no("YES ( StateReady )"),
            Some((true, Some("StateReady")))
        );
        assert_eq!(annotated_yes_no("NO"), Some((false, None)));
        assert_eq!(annotated_yes_no("MAYBE (x)"), None);
    }
}
