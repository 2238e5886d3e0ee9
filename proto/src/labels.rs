//! Stable text names for the wire enums.
//!
//! These strings are part of the contract: JSON values, Prometheus label values and API
//! filter values all use them, so they never change once released.

use crate::v1::{ExecutionContext, JoinType, Phase, TestStatus};

/// The join type label of a device whose join type is not known, and the phase label of a
/// failure that no phase names.
pub const UNKNOWN: &str = "unknown";

/// The cause id when nothing names a cause: the catalog's fallback for a code of no known
/// facility, and the diagnosis's last resort.
pub const UNKNOWN_CAUSE: &str = "unknown_other";

/// The label of a value outside a closed label set (causes, codes and agent versions folded
/// to keep metrics bounded).
pub const OTHER: &str = "other";

/// Every join type label a device can carry: the [`JoinType`] labels, then [`UNKNOWN`].
pub fn join_type_labels() -> impl Iterator<Item = &'static str> {
    JoinType::ALL
        .iter()
        .map(|j| j.label())
        .chain(std::iter::once(UNKNOWN))
}

impl JoinType {
    /// The snake_case name (`hybrid_joined`, …); `""` for unspecified.
    pub fn label(self) -> &'static str {
        match self {
            JoinType::Unspecified => "",
            JoinType::HybridJoined => "hybrid_joined",
            JoinType::EntraJoined => "entra_joined",
            JoinType::EntraRegistered => "entra_registered",
            JoinType::EnterpriseJoined => "enterprise_joined",
            JoinType::DomainJoined => "domain_joined",
            JoinType::NotJoined => "not_joined",
        }
    }

    /// Every specified join type, in display order.
    pub const ALL: [JoinType; 6] = [
        JoinType::HybridJoined,
        JoinType::EntraJoined,
        JoinType::EntraRegistered,
        JoinType::EnterpriseJoined,
        JoinType::DomainJoined,
        JoinType::NotJoined,
    ];

    /// Parses a label produced by [`JoinType::label`].
    pub fn from_label(s: &str) -> Option<JoinType> {
        JoinType::ALL.into_iter().find(|j| j.label() == s)
    }
}

impl Phase {
    /// The phase as dsregcmd prints it in `Error Phase` (`pre-check`, …, plus `post-join`).
    pub fn label(self) -> &'static str {
        match self {
            Phase::Unspecified => "",
            Phase::PreCheck => "pre-check",
            Phase::Discover => "discover",
            Phase::Auth => "auth",
            Phase::Join => "join",
            Phase::PostJoin => "post-join",
        }
    }

    /// Every specified phase, in flow order.
    pub const ALL: [Phase; 5] = [
        Phase::PreCheck,
        Phase::Discover,
        Phase::Auth,
        Phase::Join,
        Phase::PostJoin,
    ];

    /// Parses a phase label, case-insensitively, also accepting `precheck` / `pre_check`.
    pub fn from_label(s: &str) -> Option<Phase> {
        // Compared byte by byte without the separators (labels are ASCII): no allocation,
        // since every event record's `errorPhase` is read through here.
        fn key(t: &str) -> impl Iterator<Item = u8> + '_ {
            t.trim()
                .bytes()
                .filter(|c| !matches!(c, b'-' | b'_' | b' '))
                .map(|c| c.to_ascii_lowercase())
        }
        Phase::ALL.into_iter().find(|p| key(s).eq(key(p.label())))
    }
}

impl TestStatus {
    /// As dsregcmd prints it: `PASS`, `FAIL`, `SKIPPED`.
    pub fn label(self) -> &'static str {
        match self {
            TestStatus::Unspecified => "",
            TestStatus::Pass => "PASS",
            TestStatus::Fail => "FAIL",
            TestStatus::Skipped => "SKIPPED",
        }
    }

    /// Parses `PASS` / `FAIL` / `SKIPPED`, case-insensitively.
    pub fn from_label(s: &str) -> Option<TestStatus> {
        [TestStatus::Pass, TestStatus::Fail, TestStatus::Skipped]
            .into_iter()
            .find(|t| t.label().eq_ignore_ascii_case(s.trim()))
    }
}

impl ExecutionContext {
    /// `system` or `user`; `""` for unspecified.
    pub fn label(self) -> &'static str {
        match self {
            ExecutionContext::Unspecified => "",
            ExecutionContext::System => "system",
            ExecutionContext::User => "user",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip() {
        for j in JoinType::ALL {
            assert_eq!(JoinType::from_label(j.label()), Some(j));
        }
        for p in Phase::ALL {
            assert_eq!(Phase::from_label(p.label()), Some(p));
        }
        assert_eq!(Phase::from_label("Pre_Check"), Some(Phase::PreCheck));
        assert_eq!(Phase::from_label("POST-JOIN"), Some(Phase::PostJoin));
        assert_eq!(Phase::from_label("joined"), None);
        assert_eq!(TestStatus::from_label("skipped"), Some(TestStatus::Skipped));
    }
}
