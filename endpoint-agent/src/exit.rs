//! The one table of `dsreg-agent` exit codes: every subcommand, the Windows service's
//! service-specific exit code and the `--help` texts ([`crate::app`]) use [`Exit`].
//!
//! Invariant: a code means the same thing in every subcommand — 0 done, 1 a local fault (or,
//! for `diagnose --detect`, "needs remediation"), 2 bad input, 3 the collector not reached.

use std::process::ExitCode;

/// How a `dsreg-agent` run ended, and its process exit code ([`Exit::code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done — parsed, diagnosed, delivered, handed off, or stopped cleanly.
    Ok,
    /// 1: `diagnose --detect` found a device that is failing, or not joined although
    /// targeted (an Intune Remediations detection script).
    NeedsRemediation,
    /// 1: a local fault or internal error — the spool, the user inbox or the log file cannot
    /// be written, the runtime cannot start, standard output is closed.
    Fault,
    /// 2: bad input — an unreadable capture or settings file, a bad flag, setting or collector
    /// URL, an unknown machine id, `--service` outside the service control manager.
    BadInput,
    /// 3: the collector could not be reached or refused the report (`send`: it stays queued in
    /// the spool; `simulate`: nothing was driven).
    Unreachable,
}

impl Exit {
    /// The process exit code.
    pub const fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::NeedsRemediation | Exit::Fault => 1,
            Exit::BadInput => 2,
            Exit::Unreachable => 3,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_ones() {
        let table: Vec<u8> = [
            Exit::Ok,
            Exit::NeedsRemediation,
            Exit::Fault,
            Exit::BadInput,
            Exit::Unreachable,
        ]
        .iter()
        .map(|e| e.code())
        .collect();
        assert_eq!(table, [0, 1, 1, 2, 3]);
        for text in [
            crate::app::help::EXIT_CODES,
            crate::app::help::SEND_EXIT_CODES,
        ] {
            for code in ["0  ", "1  ", "2  "] {
                assert!(text.contains(code), "{code:?} missing in {text}");
            }
        }
    }
}
