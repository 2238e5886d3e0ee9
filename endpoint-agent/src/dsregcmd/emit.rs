//! The typed setters and the sink for `extra` lines and warnings.
//!
//! [`Emit`] is one key/value line being applied: each setter converts the value to its
//! field's shape and writes it, or keeps the line in `extra` (with a warning when the value
//! looks malformed, or when the field was already set by an earlier line: a repeat).
//! Invariant: a setter never overwrites a field that is already set.

use dsreg_proto::v1::{ExtraField, ParseWarning, TestResult, Validity};

use super::values::{self, ErrorValue};

/// Collected `extra` lines and warnings (kept apart from the snapshot so setters can borrow
/// a field of the snapshot and the sink at the same time).
#[derive(Debug, Default)]
pub(crate) struct Sink {
    pub extra: Vec<ExtraField>,
    pub warnings: Vec<ParseWarning>,
}

impl Sink {
    /// Adds a warning tied to a 1-based line (0: not tied to a line).
    pub(crate) fn warn(&mut self, line: u32, message: String) {
        self.warnings.push(ParseWarning { line, message });
    }

    /// Keeps a line in `extra`.
    pub(crate) fn extra(&mut self, section: &str, key: &str, value: &str) {
        self.extra.push(ExtraField {
            section: section.to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
        });
    }
}

/// One key/value line being applied.
pub(crate) struct Emit<'s, 'a> {
    pub sink: &'s mut Sink,
    pub section: &'a str,
    pub key: &'a str,
    pub value: &'a str,
    pub line: u32,
    /// Set when the key is not one the section knows (the line went to `extra`).
    pub unknown_key: bool,
}

impl Emit<'_, '_> {
    /// Keeps a line whose key is not known here in `extra`.
    pub(crate) fn unknown(&mut self) {
        self.unknown_key = true;
        self.extra();
    }

    pub(crate) fn extra(&mut self) {
        self.sink.extra(self.section, self.key, self.value);
    }

    pub(crate) fn warn(&mut self, message: String) {
        self.sink.warn(self.line, message);
    }

    pub(crate) fn repeat(&mut self) {
        self.extra();
        let (key, section) = (self.key, self.section);
        self.warn(format!(
            "repeated key '{key}' in section '{section}': kept the first value, the repeat is in extra"
        ));
    }

    pub(crate) fn unconverted(&mut self, shape: &str) {
        self.extra();
        if !values::is_legit_non_value(self.value) {
            let (key, value) = (self.key, self.value);
            self.warn(format!("{key}: '{value}' is not {shape}; kept in extra"));
        }
    }

    pub(crate) fn text(&mut self, slot: &mut Option<String>) {
        if slot.is_some() {
            return self.repeat();
        }
        *slot = Some(self.value.to_owned());
    }

    pub(crate) fn typed<T>(
        &mut self,
        slot: &mut Option<T>,
        f: impl FnOnce(&str) -> Option<T>,
        shape: &str,
    ) {
        if slot.is_some() {
            return self.repeat();
        }
        match f(self.value) {
            Some(v) => *slot = Some(v),
            None => self.unconverted(shape),
        }
    }

    pub(crate) fn yes_no(&mut self, slot: &mut Option<bool>) {
        self.typed(slot, values::yes_no, "YES or NO");
    }

    pub(crate) fn enabled(&mut self, slot: &mut Option<bool>) {
        self.typed(slot, values::enabled, "ENABLED or DISABLED");
    }

    pub(crate) fn time(&mut self, slot: &mut Option<String>) {
        self.typed(slot, values::time, "a timestamp");
    }

    pub(crate) fn code(&mut self, slot: &mut Option<u32>) {
        self.typed(slot, values::code, "an error code");
    }

    pub(crate) fn number(&mut self, slot: &mut Option<u32>) {
        self.typed(slot, values::number, "a number");
    }

    pub(crate) fn validity(&mut self, slot: &mut Option<Validity>) {
        let f = |v: &str| {
            values::validity(v).map(|(a, b)| Validity {
                not_before: Some(a),
                not_after: Some(b),
            })
        };
        self.typed(slot, f, "a validity range [ start -- end ]");
    }

    pub(crate) fn test(&mut self, slot: &mut Option<TestResult>) {
        if slot.is_some() {
            return self.repeat();
        }
        let Some(t) = values::test(self.value) else {
            return self.unconverted("PASS, FAIL or SKIPPED");
        };
        if t.bad_codes {
            let (key, value) = (self.key, self.value);
            self.warn(format!(
                "{key}: unreadable code in '{value}'; result kept, code unset"
            ));
        }
        *slot = Some(TestResult {
            result: t.status as i32,
            code: t.code,
            sub_code: t.sub_code,
        });
    }

    /// YES/NO → `flag`; `ERROR 0x…` / `ERROR (0x…)` → `error`.
    pub(crate) fn yes_no_or_error(&mut self, flag: &mut Option<bool>, error: &mut Option<u32>) {
        if flag.is_some() || error.is_some() {
            return self.repeat();
        }
        if let Some(b) = values::yes_no(self.value) {
            *flag = Some(b);
            return;
        }
        self.error_code(error);
    }

    /// `ERROR 0x…` / `ERROR (0x…)` → `error`; anything else → extra.
    pub(crate) fn error_code(&mut self, error: &mut Option<u32>) {
        if error.is_some() {
            return self.repeat();
        }
        match values::error_value(self.value) {
            ErrorValue::Code(c) => *error = Some(c),
            ErrorValue::Bare => self.extra(),
            ErrorValue::Malformed => self.unconverted("ERROR with a code"),
            ErrorValue::NotError => self.unconverted("YES, NO or ERROR (0x…)"),
        }
    }
}
