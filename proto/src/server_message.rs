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

/// The refined cause of a PRT attempt (SSO State PRT diagnostics, AAD log): always judged with
/// the sign-in rules, whatever the code, so AADSTS90002 is the user's UPN suffix here, never
/// the SCP's tenant; `None` when the answer names no known sign-in error.
pub fn refine_prt(server: &ServerError<'_>) -> Option<&'static Cause> {
    Answer::new(server).prt_rule(true).and_then(catalog::cause)
}

/// A server answer read once (normalised), to be refined under several client codes: the
/// same answer repeats over a device's hourly retries.
pub struct ReadAnswer(Answer);

impl ReadAnswer {
    /// Reads (normalises) `server`.
    pub fn new(server: &ServerError<'_>) -> ReadAnswer {
        ReadAnswer(Answer::new(server))
    }

    /// [`refine`] of this answer under `code`.
    pub fn refine(&self, code: Option<u32>) -> Option<&'static Cause> {
        rules(code, &self.0).and_then(catalog::cause)
    }
}

/// The rules, as cause ids.
fn refined_id(code: Option<u32>, server: &ServerError<'_>) -> Option<&'static str> {
    rules(code, &Answer::new(server))
}

/// The rules over a read answer.
fn rules(code: Option<u32>, answer: &Answer) -> Option<&'static str> {
    if is_prt(code, &answer.error_code) {
        return answer.prt_rule(true);
    }
    answer.drs_rule(code).or_else(|| {
        // An answer that is not clearly from DRS may still carry a sign-in error that means
        // the same thing everywhere (AADSTS50126, …); the context-dependent 90002 is excluded.
        (code.is_none() && !is_drs_error_type(&answer.error_code))
            .then(|| answer.prt_rule(false))
            .flatten()
    })
}

/// A server answer in normalised form, with the numeric server codes it mentions.
struct Answer {
    error_code: String,
    sub_code: String,
    message: String,
    aadsts: Vec<u64>,
    msis: Vec<u64>,
}

impl Answer {
    fn new(server: &ServerError<'_>) -> Answer {
        let error_code = normalise(server.error_code.unwrap_or(""));
        let sub_code = normalise(server.sub_code.unwrap_or(""));
        let message = normalise(server.message.unwrap_or(""));
        // Normalised parts hold no prefix that runs across two of them, so each is searched
        // on its own.
        let parts = [&error_code, &sub_code, &message];
        let codes = |prefix: &str| -> Vec<u64> {
            parts.iter().flat_map(|t| server_codes(t, prefix)).collect()
        };
        Answer {
            aadsts: codes("aadsts"),
            msis: codes("msis"),
            error_code,
            sub_code,
            message,
        }
    }

    fn has(&self, needle: &str) -> bool {
        self.message.contains(needle)
    }

    fn tenant_not_found(&self) -> bool {
        self.aadsts.contains(&90002) || (self.has("tenant") && self.has("not found"))
    }

    /// Sign-in service answers to a PRT request (`with_tenant`: also the context-dependent
    /// AADSTS90002 rule, which means an unknown UPN suffix here).
    fn prt_rule(&self, with_tenant: bool) -> Option<&'static str> {
        if self.aadsts.contains(&50126) || self.has("invalid username or password") {
            Some("invalid_credentials")
        } else if self.aadsts.contains(&50155) || self.has("device authentication failed") {
            Some("device_auth_failed")
        } else if self.aadsts.contains(&50034)
            || (self.has("user account") && self.has("does not exist"))
        {
            Some("user_not_in_tenant")
        } else if with_tenant && self.tenant_not_found() {
            Some("upn_suffix_not_verified")
        } else if self.msis.contains(&9682) {
            Some("adfs_device_not_registered")
        } else {
            None
        }
    }

    /// Registration service (DRS) answers to a join attempt. The public-key rule comes first:
    /// its message also says "not found on the device object".
    fn drs_rule(&self, code: Option<u32>) -> Option<&'static str> {
        let not_found =
            self.has("not found") || self.has("is missing") || self.has("does not exist");
        if self.has("public key") && self.has("certificate") && not_found {
            Some("public_key_not_found")
        } else if self.sub_code.contains("error missing device")
            || (self.has("device object") && not_found)
            || (self.has("by the given id") && not_found)
        {
            Some("device_not_synced")
        } else if self.tenant_not_found() {
            Some("tenant_not_found")
        } else if self.has("throttled") || (self.has("try after") && self.has("seconds")) {
            Some("throttled")
        } else if (self.error_code == "authenticationerror"
            || code == Some(DEVICE_AUTHENTICATION_ERROR))
            && self.has("target computer")
            && (self.has("sid") || self.has("verification"))
        {
            Some("sid_verification_pending")
        } else {
            None
        }
    }
}

/// `DSREG_E_DEVICE_AUTHENTICATION_ERROR`, the client code of a DRS `AuthenticationError`.
const DEVICE_AUTHENTICATION_ERROR: u32 = 0x801c0002;

/// Whether this answer comes from PRT acquisition rather than from a join attempt.
///
/// A DRS `ErrorType` settles it; otherwise a post-join client code, or an OAuth-style error
/// code (`invalid_grant`, `invalid_request`, …) without a join-time client code, means PRT.
fn is_prt(code: Option<u32>, error_code: &str) -> bool {
    if is_drs_error_type(error_code) {
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

/// Whether a normalised error code is one of the registration service's `ErrorType`s.
fn is_drs_error_type(error_code: &str) -> bool {
    matches!(
        error_code,
        "directoryerror"
            | "authenticationerror"
            | "authorizationerror"
            | "internalserviceerror"
            | "badrequest"
    )
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
        if c.is_ascii_alphanumeric() {
            // The common case (server answers are ASCII) without the Unicode tables.
            out.push(c.to_ascii_lowercase());
        } else if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.is_empty() && !out.ends_with(' ') {
            out.push(' ');
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// Every number that directly follows `prefix` in normalised text (`aadsts50126` → 50126).
/// The digits are taken whole, so AADSTS500341 never reads as 50034.
fn server_codes<'t>(text: &'t str, prefix: &'t str) -> impl Iterator<Item = u64> + 't {
    // A plain scan: the texts are short and most hold no code, so building a substring
    // searcher per text and prefix would cost more than it saves.
    let (bytes, p) = (text.as_bytes(), prefix.as_bytes());
    (0..bytes.len().saturating_sub(p.len()) + 1)
        .filter(move |&i| bytes.get(i) == p.first() && bytes[i..].starts_with(p))
        .filter_map(move |i| {
            bytes[i + p.len()..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .take(12)
                .fold(None, |acc: Option<u64>, d| {
                    Some(acc.unwrap_or(0) * 10 + u64::from(d - b'0'))
                })
        })
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
                "device_auth_failed",
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
    fn sign_in_errors_without_context() {
        let server = ServerError {
            message: Some(
                "AADSTS50126: Error validating credentials due to invalid username or password.",
            ),
            ..ServerError::default()
        };
        assert_eq!(id(None, &server), Some("invalid_credentials"));
        // Without context AADSTS90002 reads as the join-time meaning.
        let server = ServerError {
            message: Some("AADSTS90002: Tenant 'contoso.local' not found."),
            ..ServerError::default()
        };
        assert_eq!(id(None, &server), Some("tenant_not_found"));
    }

    #[test]
    fn codes_are_parsed_whole() {
        let server = drs("invalid_grant", "AADSTS500341: something else");
        assert_eq!(id(Some(0xc000006d), &server), None);
        assert_eq!(
            server_codes("aadsts50126 x aadsts90002 aadsts", "aadsts").collect::<Vec<_>>(),
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
            "device_auth_failed",
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
        assert_eq!(normalise("--Ünïcode  TÉNANT--"), "ünïcode ténant");
        assert_eq!(normalise("   "), "");
    }
}
