//! Line splitting and classification: what one line of a capture is, before any meaning.
//!
//! [`Lines`] splits on `\r\n`, `\n` or a lone `\r`. [`classify`] looks at one line after
//! trimming (so indentation from copy-paste never matters) and says whether it is a header
//! box line, Markdown decoration, the footer, known noise, the `/debug` end marker, a
//! `key : value` line (1803+ layout, or the pre-1803 `Key: value` layout) or a keyless line.
//! Invariants: no allocation, no panics (every slice boundary comes from `find` on ASCII
//! needles), and [`normalize_key`] writes into a caller's stack buffer.

/// Splits text into lines on `\r\n`, `\n` or a lone `\r`, without the terminators.
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    rest: &'a str,
    /// Whether the last line returned ended with a terminator.
    pub last_terminated: bool,
}

impl<'a> Lines<'a> {
    /// Lines of `text`.
    pub fn new(text: &'a str) -> Self {
        Lines {
            rest: text,
            last_terminated: true,
        }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let bytes = self.rest.as_bytes();
        match bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            Some(i) => {
                let line = self.rest.get(..i).unwrap_or_default();
                let skip = if bytes.get(i) == Some(&b'\r') && bytes.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                self.rest = self.rest.get(i + skip..).unwrap_or_default();
                self.last_terminated = true;
                Some(line)
            }
            None => {
                let line = self.rest;
                self.rest = "";
                self.last_terminated = false;
                Some(line)
            }
        }
    }
}

/// What one (trimmed) line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind<'a> {
    /// Empty or whitespace only.
    Blank,
    /// A header box rule `+----+`.
    Rule,
    /// A header box title `| Title |`, trimmed.
    Title(&'a str),
    /// Markdown decoration added by a poster: code fences, `====` / `----` / `****` rules.
    Decoration,
    /// `For more information, please visit …`: structural, not kept.
    Footer,
    /// Known noise such as `Waiting for Diagnostics Task to complete…`: skipped silently.
    Noise,
    /// `DSREGCMD_END_STATUS`: the end of a `/debug` trace, a short status follows.
    EndStatus,
    /// A field line; `key` and `value` trimmed, bold markers removed.
    KeyValue {
        /// The key as printed.
        key: &'a str,
        /// The value as printed (may be empty).
        value: &'a str,
    },
    /// Any other text.
    Keyless(&'a str),
}

/// The `/debug` trace end marker.
pub const END_STATUS: &str = "DSREGCMD_END_STATUS";

/// Number of leading spaces and tabs.
pub fn indent(line: &str) -> usize {
    line.bytes()
        .take_while(|b| *b == b' ' || *b == b'\t')
        .count()
}

/// Classifies one line (it is trimmed here).
pub fn classify(line: &str) -> LineKind<'_> {
    let t = line.trim();
    let Some(&first) = t.as_bytes().first() else {
        return LineKind::Blank;
    };
    let last = t.as_bytes().last().copied().unwrap_or(first);
    if first == b'+' && last == b'+' && t.len() >= 3 {
        let inner = t.get(1..t.len() - 1).unwrap_or_default();
        if inner.bytes().all(|b| b == b'-') {
            return LineKind::Rule;
        }
    }
    if first == b'|' && last == b'|' && t.len() >= 2 {
        let inner = t.get(1..t.len() - 1).unwrap_or_default().trim();
        return if inner.is_empty() {
            LineKind::Decoration
        } else {
            LineKind::Title(inner)
        };
    }
    if t.starts_with("```") || t.starts_with("~~~") || is_rule_of(t) {
        return LineKind::Decoration;
    }
    if t.starts_with("For more information, please visit") {
        return LineKind::Footer;
    }
    if t.starts_with("Waiting for Diagnostics Task to complete") {
        return LineKind::Noise;
    }
    if t == END_STATUS {
        return LineKind::EndStatus;
    }
    split_key_value(t)
}

/// A line made of one repeated Markdown rule character (`=`, `-`, `*`, `_`), 3 or more.
fn is_rule_of(t: &str) -> bool {
    let bytes = t.as_bytes();
    match bytes.first() {
        Some(&c) if matches!(c, b'=' | b'-' | b'*' | b'_') && bytes.len() >= 3 => {
            bytes.iter().all(|&b| b == c)
        }
        _ => false,
    }
}

/// Splits a trimmed, non-structural line into key and value.
///
/// 1803+ layout: split on the first `" : "`; a line ending in `" :"` is a key with an empty
/// value. A key that itself ends in `:` loses it (`KeySignTest: : MUST Run elevated…`).
/// Pre-1803 layout: one token without whitespace, then `:`, then a space or the end of the
/// line (`AzureAdJoined: YES`). `**bold**` markers around the line or key/value are removed.
fn split_key_value(t: &str) -> LineKind<'_> {
    let bold = t.starts_with("**");
    let t = if bold {
        t.get(2..).unwrap_or_default().trim_start()
    } else {
        t
    };
    let (key, value) = if let Some(i) = t.find(" : ") {
        (
            t.get(..i).unwrap_or_default(),
            t.get(i + 3..).unwrap_or_default(),
        )
    } else if let Some(k) = t.strip_suffix(" :") {
        (k, "")
    } else if let Some(i) = t.find(':') {
        let key = t.get(..i).unwrap_or_default();
        let after = t.get(i + 1..).unwrap_or_default();
        let ends_token = after.is_empty() || after.starts_with([' ', '\t']);
        if key.is_empty() || !ends_token || key.contains(char::is_whitespace) {
            return LineKind::Keyless(t);
        }
        // `KeySignTest: : MUST Run elevated to test.` has a doubled colon.
        let after = after.trim_start();
        let after = after.strip_prefix(':').unwrap_or(after);
        (key, after)
    } else {
        return LineKind::Keyless(t);
    };
    let key = strip_bold(key.trim());
    let key = key.strip_suffix(':').unwrap_or(key).trim_end();
    if key.is_empty() {
        return LineKind::Keyless(t);
    }
    let mut value = value.trim();
    if bold {
        value = value.strip_suffix("**").unwrap_or(value).trim_end();
    }
    LineKind::KeyValue {
        key,
        value: strip_bold(value),
    }
}

/// Removes `**` around a token when it has them on both sides and no other `*` inside:
/// masks such as `***\*******` are runs of `*` and must stay verbatim.
fn strip_bold(s: &str) -> &str {
    match s.strip_prefix("**").and_then(|s| s.strip_suffix("**")) {
        Some(inner) if !inner.is_empty() && !inner.contains('*') => inner.trim(),
        _ => s,
    }
}

/// Normalises a key or a section title for lookup: ASCII lower case, runs of whitespace
/// collapsed to one space, `*` dropped. Spaces are kept on purpose: `Server ErrorCode`
/// (Previous Registration) and `Server Error Code` (PRT diagnostics) are different fields.
/// Returns an empty slice when the key does not fit the buffer (no key is that long).
pub fn normalize_key<'b>(key: &str, buf: &'b mut [u8; 64]) -> &'b [u8] {
    let mut n = 0usize;
    let mut pending_space = false;
    for b in key.trim().bytes() {
        if b == b' ' || b == b'\t' {
            pending_space = n > 0;
            continue;
        }
        if b == b'*' {
            continue;
        }
        if pending_space {
            match buf.get_mut(n) {
                Some(slot) => *slot = b' ',
                None => return &[],
            }
            n += 1;
            pending_space = false;
        }
        match buf.get_mut(n) {
            Some(slot) => *slot = b.to_ascii_lowercase(),
            None => return &[],
        }
        n += 1;
    }
    buf.get(..n).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_all_terminators() {
        let lines: Vec<_> = Lines::new("a\r\nb\rc\n\nd").collect();
        assert_eq!(lines, ["a", "b", "c", "", "d"]);
        let mut it = Lines::new("a\n");
        assert_eq!(it.next(), Some("a"));
        assert!(it.last_terminated);
        assert_eq!(it.next(), None);
    }

    #[test]
    fn classifies_layouts() {
        use LineKind::*;
        assert_eq!(classify("  +-----+  "), Rule);
        assert_eq!(classify("| Device State      |  "), Title("Device State"));
        assert_eq!(classify("```"), Decoration);
        assert_eq!(classify("========"), Decoration);
        assert_eq!(classify("   "), Blank);
        assert_eq!(
            classify("       MdmUrl :"),
            KeyValue {
                key: "MdmUrl",
                value: ""
            }
        );
        assert_eq!(
            classify("JoinSrvId : urn:ms-drs:x"),
            KeyValue {
                key: "JoinSrvId",
                value: "urn:ms-drs:x"
            }
        );
        assert_eq!(
            classify("     KeySignTest: : MUST Run elevated to test."),
            KeyValue {
                key: "KeySignTest",
                value: "MUST Run elevated to test."
            }
        );
        assert_eq!(
            classify("  dmComplianceUrl: https://x/?a=b"),
            KeyValue {
                key: "dmComplianceUrl",
                value: "https://x/?a=b"
            }
        );
        assert_eq!(
            classify("   **NgcSet : YES**"),
            KeyValue {
                key: "NgcSet",
                value: "YES"
            }
        );
        assert_eq!(
            classify("Executing Account Name : ***\\*******"),
            KeyValue {
                key: "Executing Account Name",
                value: "***\\*******"
            }
        );
        assert_eq!(
            classify("NgcSet : **YES**"),
            KeyValue {
                key: "NgcSet",
                value: "YES"
            }
        );
        assert_eq!(
            classify("OsVersionUpdated   : Managed by MDM"),
            KeyValue {
                key: "OsVersionUpdated",
                value: "Managed by MDM"
            }
        );
        assert_eq!(
            classify("sing WPAD. code: 0x80072f94"),
            Keyless("sing WPAD. code: 0x80072f94")
        );
        assert_eq!(
            classify("PS C:\\Users\\x> dsregcmd /status"),
            Keyless("PS C:\\Users\\x> dsregcmd /status")
        );
        assert_eq!(
            classify("dsregcmd::wmain logging"),
            Keyless("dsregcmd::wmain logging")
        );
    }

    #[test]
    fn normalizes_keys() {
        let mut buf = [0u8; 64];
        assert_eq!(
            normalize_key("Token  acquisition\tTest ", &mut buf),
            b"token acquisition test"
        );
        assert_eq!(normalize_key(&"x".repeat(65), &mut buf), b"");
    }
}
