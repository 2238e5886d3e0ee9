//! Server-response refinement: the code alone misleads for some errors, so the server's error
//! code and message pick a finer cause (DESIGN §4).
//!
//! SKELETON: the public API below is fixed; the rules are being filled in.

use crate::catalog::Cause;

/// What the server said about a failed attempt (from Previous Registration, PRT diagnostics
/// or event 204/304/305).
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerError<'a> {
    /// Server ErrorCode / ErrorType, e.g. `DirectoryError`, `AuthenticationError`, `invalid_grant`.
    pub error_code: Option<&'a str>,
    /// Server ErrorSubCode, e.g. `error_missing_device`.
    pub sub_code: Option<&'a str>,
    /// Server Message / Server Error Description.
    pub message: Option<&'a str>,
    /// Server Operation, e.g. `DeviceRenew`.
    pub operation: Option<&'a str>,
}

/// The refined cause for `code` given what the server said, or `None` when the server's answer
/// adds nothing beyond the code's own catalog cause.
pub fn refine(_code: Option<u32>, _server: &ServerError<'_>) -> Option<&'static Cause> {
    None
}
