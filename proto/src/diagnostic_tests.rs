//! The six pre-join diagnostic tests of `dsregcmd /status` (Diagnostic Data), in one table.
//!
//! [`DIAGNOSTIC_TESTS`] is the one list: the agent's parser routes a printed test line to its
//! field by [`DiagnosticTest::printed`], the collector stores which tests failed as the bits of
//! [`failing_bits`] and labels `dsreg_devices_diagnostic_test_failing` by [`NAMES`], and each
//! entry carries the phase a failure means and the label dsregcmd prints, as the diagnosis
//! reads them (its chain of rule 2 walks this table).
//!
//! Invariants:
//! - The order is the order dsregcmd prints the tests in, which is the diagnosis's chain order
//!   (the first failing test decides) and the bit order of `failing_tests`: bit `i` stands for
//!   `DIAGNOSTIC_TESTS[i]`. Stored rows hold those bits, so entries are appended, never
//!   reordered; at most eight fit the `u8`.
//! - `name` is the field of [`DiagnosticTests`] (and of its JSON form), so names are a public
//!   contract like the metrics labels they become.

use crate::Phase;
use crate::v1::{DiagnosticTests, TestResult, TestStatus};

/// One diagnostic test: its names, its meaning and where its result lives.
#[derive(Debug, Clone, Copy)]
pub struct DiagnosticTest {
    /// snake_case name: the [`DiagnosticTests`] field, the JSON key, the `test` metrics label.
    pub name: &'static str,
    /// The label dsregcmd prints before ` : PASS` (`AD Connectivity Test`).
    pub printed: &'static str,
    /// The join phase a failure of this test means.
    pub phase: Phase,
    result: fn(&DiagnosticTests) -> Option<&TestResult>,
    result_mut: fn(&mut DiagnosticTests) -> &mut Option<TestResult>,
}

impl DiagnosticTest {
    /// This test's result in `tests`, if the capture printed it.
    pub fn result<'a>(&self, tests: &'a DiagnosticTests) -> Option<&'a TestResult> {
        (self.result)(tests)
    }

    /// The slot of this test's result in `tests` (for the parser).
    pub fn result_mut<'a>(&self, tests: &'a mut DiagnosticTests) -> &'a mut Option<TestResult> {
        (self.result_mut)(tests)
    }

    /// Whether the capture printed FAIL for this test.
    pub fn failed(&self, tests: &DiagnosticTests) -> bool {
        self.result(tests)
            .is_some_and(|r| r.result == TestStatus::Fail as i32)
    }
}

macro_rules! tests {
    ($($field:ident, $printed:literal, $phase:ident;)*) => {
        /// The tests in dsregcmd's print order (= chain order = `failing_tests` bit order).
        pub const DIAGNOSTIC_TESTS: [DiagnosticTest; 6] = [$(DiagnosticTest {
            name: stringify!($field),
            printed: $printed,
            phase: Phase::$phase,
            result: |t| t.$field.as_ref(),
            result_mut: |t| &mut t.$field,
        },)*];

        /// The tests' names, in [`DIAGNOSTIC_TESTS`] order.
        pub const NAMES: [&str; 6] = [$(stringify!($field),)*];
    };
}

tests! {
    ad_connectivity, "AD Connectivity Test", PreCheck;
    ad_configuration, "AD Configuration Test", Discover;
    drs_discovery, "DRS Discovery Test", Discover;
    drs_connectivity, "DRS Connectivity Test", Discover;
    // The Kerberos Ticket Test checks that the device gets a Kerberos ticket for the DRS, which
    // it presents to authenticate the sync join / device renew: an authentication failure.
    kerberos_ticket, "Kerberos Ticket Test", Auth;
    token_acquisition, "Token acquisition Test", Auth;
}

const _: () = assert!(DIAGNOSTIC_TESTS.len() <= u8::BITS as usize);

/// The tests that printed FAIL, as bits: bit `i` set when `DIAGNOSTIC_TESTS[i]` failed.
pub fn failing_bits(tests: &DiagnosticTests) -> u8 {
    DIAGNOSTIC_TESTS
        .iter()
        .enumerate()
        .filter(|(_, t)| t.failed(tests))
        .fold(0, |bits, (i, _)| bits | 1 << i)
}

/// The test whose printed label is `key`, compared without ASCII case (the parser's keys are
/// normalised to lower case).
pub fn by_printed(key: &[u8]) -> Option<&'static DiagnosticTest> {
    DIAGNOSTIC_TESTS
        .iter()
        .find(|t| t.printed.as_bytes().eq_ignore_ascii_case(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{DeviceState, Diagnostics, Snapshot};
    use crate::{ExecutionContext, diagnosis};

    fn failing(only: usize) -> DiagnosticTests {
        let mut tests = DiagnosticTests::default();
        for (i, t) in DIAGNOSTIC_TESTS.iter().enumerate() {
            let status = if i == only {
                TestStatus::Fail
            } else {
                TestStatus::Pass
            };
            *t.result_mut(&mut tests) = Some(TestResult {
                result: status as i32,
                ..Default::default()
            });
        }
        tests
    }

    #[test]
    fn names_are_the_fields_in_table_order_and_unique() {
        let names: Vec<&str> = DIAGNOSTIC_TESTS.iter().map(|t| t.name).collect();
        assert_eq!(names, NAMES);
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), DIAGNOSTIC_TESTS.len());
    }

    #[test]
    fn each_test_owns_one_slot_and_one_bit() {
        for (i, t) in DIAGNOSTIC_TESTS.iter().enumerate() {
            let tests = failing(i);
            assert_eq!(failing_bits(&tests), 1 << i, "{}", t.name);
            assert!(t.failed(&tests), "{}", t.name);
            assert_eq!(
                DIAGNOSTIC_TESTS.iter().filter(|o| o.failed(&tests)).count(),
                1
            );
        }
        assert_eq!(failing_bits(&DiagnosticTests::default()), 0);
    }

    #[test]
    fn printed_labels_route_back_to_their_test() {
        for t in &DIAGNOSTIC_TESTS {
            let lower = t.printed.to_ascii_lowercase();
            assert_eq!(by_printed(lower.as_bytes()).map(|x| x.name), Some(t.name));
        }
        assert!(by_printed(b"ad connectivity").is_none());
        assert!(by_printed(b"").is_none());
    }

    /// The diagnosis walks this table: each failing test gives its phase, its source and its
    /// printed line.
    #[test]
    fn the_diagnosis_chain_agrees_with_the_table() {
        for (i, t) in DIAGNOSTIC_TESTS.iter().enumerate() {
            let snapshot = Snapshot {
                device_state: Some(DeviceState {
                    azure_ad_joined: Some(false),
                    domain_joined: Some(true),
                    ..Default::default()
                }),
                diagnostics: Some(Diagnostics {
                    tests: Some(failing(i)),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let f = diagnosis::failure(&snapshot, &[], ExecutionContext::System)
                .unwrap_or_else(|| panic!("{} failing gives no failure", t.name));
            assert_eq!(f.phase, t.phase as i32, "{}", t.name);
            assert_eq!(f.source, format!("test:{}", t.name));
            assert!(
                f.evidence.iter().any(|e| e.starts_with(t.printed)),
                "{}: {:?}",
                t.name,
                f.evidence
            );
        }
    }
}
