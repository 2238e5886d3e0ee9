//! Server-response refinement: the code alone misleads for some errors, so the server's error
//! code and message pick a finer cause (DESIGN §4).
//!
//! Two kinds of server answer reach [`refine`]:
//! - the registration service (DRS) answer of a join attempt: Previous Registration
//!   `Server ErrorCode` / `ErrorSubCode` / `Server Message`, or event 204's JSON, with an
//!   `ErrorType` such as `DirectoryError` or `AuthenticationError`;
//! - the sign-in service answer of a PRT attempt: SSO State `Server Error Code` (an OAuth error
//!   such as `invalid_grant`) and `Server Error Description` (`AADSTS50126: …`, `MSIS9682: …`).
//!
//! The same AADSTS code can mean different things in each (AADSTS90002 is a wrong SCP tenant
//! for a join, an unverified UPN suffix for a PRT), so [`refine`] first decides which kind it
//! has. Messages are free text with GUIDs, quotes and placeholders: matching is on a normalised
//! form (lower case, apostrophes dropped, other punctuation as single spaces) and on numeric
//! AADSTS/MSIS codes parsed whole, never on exact sentences.
//!
//! Invariant: every cause returned here is in [`crate::catalog::causes`] (tested).

use crate::Phase;
use crate::catalog::{self, Cause};

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
pub fn refine(code: Option<u32>, server: &ServerError<'_>) -> Option<&'static Cause> {
    refined_id(code, server).and_then(catalog::cause)
}

/// The rules, as cause ids.
fn refined_id(code: Option<u32>, server: &ServerError<'_>) -> Option<&'static str> {
    let error_code = normalise(server.error_code.unwrap_or(""));
    let sub_code = normalise(server.sub_code.unwrap_or(""));
    let message = normalise(server.message.unwrap_or(""));
    let all = format!("{error_code} {sub_code} {message}");
    let aadsts = server_codes(&all, "aadsts");
    let msis = server_codes(&all, "msis");
    let has = |needle: &str| message.contains(needle);

    if is_prt(code, &error_code) {
        return if aadsts.contains(&50126) || has("invalid username or password") {
            Some("invalid_credentials")
        } else if aadsts.contains(&50155) || has("device authentication failed") {
            Some("device_authentication_failed")
        } else if aadsts.contains(&50034) || has("does not exist in tenant") {
            Some("user_not_in_tenant")
        } else if aadsts.contains(&90002) || (has("tenant") && has("not found")) {
            Some("upn_suffix_not_verified")
        } else if msis.contains(&9682) {
            Some("adfs_device_not_registered")
        } else {
            None
        };
    }

    // Registration service (DRS) answer. The public-key rule comes first: its message also
    // says "not found on the device object".
    let not_found = has("not found") || has("is missing") || has("does not exist");
    if has("public key") && has("certificate") && not_found {
        Some("public_key_not_found")
    } else if sub_code.contains("error missing device")
        || (has("device object") && not_found)
        || (has("device") && has("by the given id") && not_found)
    {
        Some("device_not_synced")
    } else if aadsts.contains(&90002) || (has("tenant") && has("not found")) {
        Some("tenant_not_found")
    } else if has("throttled") || (has("try after") && has("seconds")) {
        Some("throttled")
    } else if (error_code == "authenticationerror" || code == Some(DEVICE_AUTHENTICATION_ERROR))
        && has("target computer")
        && (has("sid") || has("verification"))
    {
        Some("sid_verification_pending")
    } else {
        None
    }
}

/// `DSREG_E_DEVICE_AUTHENTICATION_ERROR`, the client code of a DRS `AuthenticationError`.
const DEVICE_AUTHENTICATION_ERROR: u32 = 0x801c0002;

/// Whether this answer comes from PRT acquisition rather than from a join attempt.
///
/// A DRS `ErrorType` settles it; otherwise a post-join client code, or an OAuth-style error
/// code (`invalid_grant`, `invalid_request`, …) without a join-time client code, means PRT.
fn is_prt(code: Option<u32>, error_code: &str) -> bool {
    const DRS_ERROR_TYPES: [&str; 5] = [
        "directoryerror",
        "authenticationerror",
        "authorizationerror",
        "internalserviceerror",
        "badrequest",
    ];
    if DRS_ERROR_TYPES.contains(&error_code) {
        return false;
    }
    match code.map(|c| catalog::describe(c).phase) {
        Some(Phase::PostJoin) => true,
        Some(_) => false,
        None => {
            error_code.starts_with("invalid ")
                || matches!(
                    error_code,
                    "interaction required" | "unauthorized client" | "access denied"
                )
        }
    }
}

/// Lower case, apostrophes (straight and curly) dropped, every other run of non-alphanumeric
/// characters turned into one space, trimmed. "computer's SID" → "computers sid",
/// "error_missing_device" → "error missing device", "invalid_grant" → "invalid grant".
fn normalise(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\'' | '\u{2019}' | '\u{2018}' | '`') {
            continue;
        }
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.ends_with(' ') {
            out.push(' ');
        }
    }
    out.trim().to_owned()
}

/// Every number that directly follows `prefix` in normalised text (`aadsts50126` → 50126).
/// The digits are taken whole, so AADSTS500341 never reads as 50034.
fn server_codes(text: &str, prefix: &str) -> Vec<u64> {
    text.match_indices(prefix)
        .filter_map(|(i, _)| {
            let digits: String = text[i + prefix.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .take(12)
                .collect();
            digits.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIRECTORY_FAILURE: Option<u32> = Some(0x801c03f2);

    fn drs(error_code: &str, message: &str) -> ServerError<'static> {
        ServerError {
            error_code: Some(leak(error_code)),
            message: Some(leak(message)),
            ..ServerError::default()
        }
    }

    fn leak(s: &str) -> &'static str {
        Box::leak(s.to_owned().into_boxed_str())
    }

    fn id(code: Option<u32>, server: &ServerError<'_>) -> Option<&'static str> {
        refine(code, server).map(|c| c.id)
    }

    #[test]
    fn directory_error_messages() {
        let cases = [
            (
                "The device object by the given id (f87ed8ef-b923-4c78-8539-c9e49fd923e2) is not found.",
                "device_not_synced",
            ),
            (
                "AADSTS90002: Tenant 5c8e9c62-0000-0000-0000-000000000000 not found. This may happen if there are no active subscriptions for the tenant.",
                "tenant_not_found",
            ),
            ("Tenant '[TenantId]' not found.", "tenant_not_found"),
            (
                "Your request is throttled temporarily. Please try after 300 seconds.",
                "throttled",
            ),
            (
                "The public key user certificate is not found on the device object with id: (f87ed8ef-b923-4c78-8539-c9e49fd923e2).",
                "public_key_not_found",
            ),
        ];
        for (message, want) in cases {
            let server = drs("DirectoryError", message);
            assert_eq!(id(DIRECTORY_FAILURE, &server), Some(want), "{message}");
            // Same answer from event 204's JSON without a client code.
            assert_eq!(id(None, &server), Some(want), "{message}");
        }
    }

    #[test]
    fn missing_device_sub_code_alone() {
        let server = ServerError {
            sub_code: Some("error_missing_device"),
            operation: Some("DeviceRenew"),
            ..ServerError::default()
        };
        assert_eq!(id(None, &server), Some("device_not_synced"));
    }

    #[test]
    fn sid_verification() {
        for message in [
            "The verification of the target computer's SID failed",
            "The verification of the target computer\u{2019}s SID failed.",
            "THE VERIFICATION OF THE TARGET COMPUTER'S SID",
        ] {
            let server = drs("AuthenticationError", message);
            assert_eq!(
                id(Some(0x801c0002), &server),
                Some("sid_verification_pending")
            );
            assert_eq!(id(None, &server), Some("sid_verification_pending"));
        }
    }

    #[test]
    fn prt_server_errors() {
        let cases = [
            (
                Some(0xc000006d),
                "invalid_grant",
                "AADSTS50126: Error validating credentials due to invalid username or password.",
                "invalid_credentials",
            ),
            (
                None,
                "invalid_grant",
                "AADSTS50155: Device authentication failed for user.",
                "device_authentication_failed",
            ),
            (
                Some(0xc000006d),
                "invalid_grant",
                "AADSTS50034: The user account [UserPrincipalName] does not exist in the [TenantId] directory.",
                "user_not_in_tenant",
            ),
            (
                Some(0xc00000d0),
                "invalid_request",
                "AADSTS90002: Tenant 'earthlocal.com' not found.",
                "upn_suffix_not_verified",
            ),
            (
                Some(0xc000006d),
                "invalid_grant",
                "MSIS9682: Received invalid OAuth JWT Bearer request. The certificate used to sign JWT Bearer request is not from a registered device with a Transport key.",
                "adfs_device_not_registered",
            ),
        ];
        for (code, error_code, message, want) in cases {
            let server = drs(error_code, message);
            assert_eq!(id(code, &server), Some(want), "{message}");
        }
    }

    #[test]
    fn codes_are_parsed_whole() {
        let server = drs("invalid_grant", "AADSTS500341: something else");
        assert_eq!(id(Some(0xc000006d), &server), None);
        assert_eq!(
            server_codes("aadsts50126 x aadsts90002", "aadsts"),
            [50126, 90002]
        );
    }

    #[test]
    fn nothing_matches() {
        for (code, server) in [
            (
                DIRECTORY_FAILURE,
                drs("DirectoryError", "Something unexpected happened."),
            ),
            (
                Some(0xc000006d),
                drs("invalid_grant", "AADSTS70000: unrelated"),
            ),
            (None, ServerError::default()),
            (Some(0x801c0002), drs("AuthenticationError", "")),
        ] {
            assert_eq!(id(code, &server), None, "{server:?}");
        }
    }

    #[test]
    fn every_refined_cause_is_in_the_catalog() {
        for id in [
            "device_not_synced",
            "tenant_not_found",
            "throttled",
            "public_key_not_found",
            "sid_verification_pending",
            "invalid_credentials",
            "device_authentication_failed",
            "user_not_in_tenant",
            "upn_suffix_not_verified",
            "adfs_device_not_registered",
        ] {
            assert!(catalog::cause(id).is_some(), "{id}");
        }
    }

    #[test]
    fn normalise_examples() {
        assert_eq!(normalise("  Computer's SID!! "), "computers sid");
        assert_eq!(normalise("error_missing_device"), "error missing device");
        assert_eq!(normalise("(f87e-b9)"), "f87e b9");
    }
}
