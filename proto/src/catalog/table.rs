//! The catalog data: one row per code of `reference/error-codes.md` §A, §C, §E, §F and §G.
//!
//! Row layout: `SYMBOL, hex, signed decimal, Phase, cause_id [aliases], "text", "resolution";`.
//! Hex and signed decimal are both written as the docs print them (corrected where §0 says the
//! docs are wrong), so the test that checks `signed as u32 == code` catches a typo in either.
//!
//! Symbol convention: a symbol the docs (or the Windows SDK, where the doc names the meaning
//! with certainty) give is used as is. A code with no certain name gets a synthetic symbol
//! ending in `_0x` and eight upper-case hex digits: the family prefix (`DSREG_`, `ADAL_`) and
//! the code itself, or the wrapping macro and the wrapped value (`HRESULT_FROM_NT_0xC0020017`).
//! [`super::Entry::is_named`] tells the two apart.
//!
//! Where a code is listed twice (0x801c001d, 0x80072ee2, the §A/§F overlaps) there is one row
//! in the phase of its first listing and the text names the other context.

use super::Entry;
use crate::Phase;

/// Builds the entry table from rows (see the module docs for the layout).
macro_rules! entries {
    ($($symbol:ident, $code:literal, $signed:literal, $phase:ident, $cause:ident
        $([$($alias:literal),*])?, $text:literal, $resolution:literal;)*) => {
        &[$(Entry {
            symbol: stringify!($symbol),
            code: $code,
            signed: $signed,
            phase: Phase::$phase,
            cause: stringify!($cause),
            text: $text,
            resolution: $resolution,
            aliases: &[$($($alias),*)?],
        }),*]
    };
}

/// Every catalog entry, by doc section.
pub(super) const ENTRIES: &[Entry] = entries! {
    // ── §A join-time client codes: discover ──────────────────────────────────────────────────
    DSREG_AUTOJOIN_ADCONFIG_READ_FAILED, 0x801c001d, -2145648611, Discover, scp_read_failed,
        "The SCP could not be read from AD, so no tenant was found; as event 220 at join time it means the computer object was unreadable (AD replication).",
        "Check the AD Configuration Test sub-code; create the SCP or the CDJ\\AAD registry values; for event 220 fix AD replication.";
    DSREG_AUTOJOIN_DISC_FAILED, 0x801c0021, -2145648607, Discover, discovery_failed,
        "Generic discovery failure: the registration service metadata could not be fetched.",
        "Read the sub-error after the slash in 'DRS Discovery Test : FAIL [...]' or in event 201.";
    DSREG_AUTOJOIN_DISC_WAIT_TIMEOUT, 0x801c001f, -2145648609, Discover, discovery_timeout,
        "Discovery timed out.",
        "Let SYSTEM reach https://enterpriseregistration.windows.net (proxy, firewall).";
    // §0.1: older docs print 0x801c0021 / -2145648611 here, a mix of two other codes.
    DSREG_AUTOJOIN_USERREALM_DISCOVERY_FAILED, 0x801c003d, -2145648579, Discover, realm_discovery_failed,
        "Realm lookup at the sign-in service failed; the device cannot tell a managed from a federated domain (1809 and later).",
        "Check the sub-error; let SYSTEM reach https://login.microsoftonline.com through the proxy.";
    WININET_E_CANNOT_CONNECT, 0x80072efd, -2147012867, Discover, network_cannot_connect,
        "No connection to the server could be made.",
        "Check the network path to the Microsoft endpoints from the SYSTEM context.";
    WININET_E_TIMEOUT, 0x80072ee2, -2147012894, Discover, network_timeout,
        "A network operation timed out, during discovery or (join phase) while talking to the registration service.",
        "Check connectivity; for the join phase check https://enterpriseregistration.windows.net.";
    WININET_E_DECODING_FAILED, 0x80072f8f, -2147012721, Discover, proxy_decoding_failed,
        "The server's response could not be decoded.",
        "Make sure no proxy modifies the response.";
    DSREG_DISCOVERY_TENANT_NOT_FOUND, 0x801c003a, -2145648582, Discover, tenant_not_found,
        "The tenant ID in the SCP is wrong, or that tenant lacks an active subscription.",
        "Correct the tenant ID in the SCP and check the tenant's subscriptions.";
    DSREG_SERVER_BUSY, 0x801c0025, -2145648603, Discover, drs_busy,
        "The registration service answered HTTP 503.",
        "Transient: let the join task retry later.";
    E_INVALIDDATA, 0x8007000d, -2147024883, Discover, invalid_server_response,
        "The server's JSON could not be parsed, likely an HTML proxy login page sent with HTTP 200.",
        "SYSTEM must find the proxy and authenticate to it silently.";

    // ── §A: auth ─────────────────────────────────────────────────────────────────────────────
    ERROR_ADAL_PROTOCOL_NOT_SUPPORTED, 0xcaa90017, -894894057, Auth, federation_protocol_unsupported,
        "The federation protocol in use is not WS-Trust.",
        "Make the on-premises identity provider support WS-Trust.";
    ERROR_ADAL_FAILED_TO_PARSE_XML, 0xcaa9002c, -894894036, Auth, federation_response_not_xml,
        "The federation service's answer was not XML.",
        "Confirm MEX answers with well-formed XML and nothing rewrites it on the way.";
    ERROR_ADAL_COULDNOT_DISCOVER_USERNAME_PASSWORD_ENDPOINT, 0xcaa90023, -894894045, Auth, wstrust_endpoint_not_found,
        "MEX did not reveal a username/password endpoint.",
        "Turn on the WS-Trust endpoints of the federation server and review what MEX advertises.";
    ERROR_ADAL_INTERNET_TIMEOUT, 0xcaa82ee2, -894947614, Auth, auth_network_timeout,
        "Authentication timed out (network timeout wrapped by ADAL).",
        "Make sure the SYSTEM context gets to login.microsoftonline.com and to the federation server.";
    ERROR_ADAL_INTERNET_CONNECTION_ABORTED, 0xcaa82efe, -894947586, Auth, auth_connection_aborted,
        "The connection to the authentication endpoint was aborted.",
        "Retry, or try another network.";
    ERROR_ADAL_INTERNET_SECURE_FAILURE, 0xcaa82f8f, -894947441, Auth, tls_validation_failed,
        "The authentication server's TLS certificate failed validation.",
        "Check clock skew and trusted roots (e.g. the AD FS root CA), then retry.";
    ERROR_ADAL_INTERNET_CANNOT_CONNECT, 0xcaa82efd, -894947587, Auth, auth_network_cannot_connect,
        "login.microsoftonline.com could not be reached.",
        "Check the network path and proxy.";
    ERROR_ADAL_SERVER_ERROR_INVALID_GRANT, 0xcaa20003, -895352829, Auth, saml_token_rejected,
        "Entra did not accept the SAML token from the on-premises identity provider.",
        "Check the federation configuration and the server error code.";
    ERROR_ADAL_WSTRUST_REQUEST_SECURITYTOKEN_FAILED, 0xcaa90014, -894894060, Auth, wstrust_fault,
        "The WS-Trust answer was a fault without an assertion.",
        "Check the federation configuration and the server error.";
    ERROR_ADAL_WSTRUST_TOKEN_REQUEST_FAIL, 0xcaa90006, -894894074, Auth, token_endpoint_error,
        "The token endpoint answered with an error.",
        "Read the ADAL log.";
    ERROR_ADAL_OPERATION_PENDING, 0xcaa1002d, -895418323, Auth, adal_failure,
        "Generic ADAL failure.",
        "Read the sub-error or the server error.";

    // ── §A: join ─────────────────────────────────────────────────────────────────────────────
    DSREG_E_DIRECTORY_FAILURE, 0x801c03f2, -2145647630, Join, directory_error,
        "The registration service answered with ErrorCode DirectoryError.",
        "Read the server message; for sync join it is usually 'device object not found' until Entra Connect syncs the device.";
    DSREG_E_DEVICE_AUTHENTICATION_ERROR, 0x801c0002, -2145648638, Join, drs_authentication_error,
        "The registration service answered AuthenticationError with a sub-code other than DeviceNotFound.",
        "Read the server error code and message.";
    // §0.2: every doc version describes this as "DirectoryError", a copy of 0x801c03f2.
    DSREG_E_DEVICE_INTERNALSERVICE_ERROR, 0x801c0006, -2145648634, Join, drs_internal_error,
        "Most likely an internal error of the registration service; the docs' 'DirectoryError' description is a copy-paste and unreliable.",
        "Read the server error; retry later.";
    NTE_BAD_KEYSET, 0x80090016, -2146893802, Join, tpm_keyset_missing,
        "The key set is missing or the TPM operation was invalid: TPM cleared, TPM not owned by Windows, or a sysprep image of a registered machine.",
        "Build images only from machines never joined or registered; do not clear the TPM; after a clear, re-add the accounts.";
    TPM_E_PCP_INTERNAL_ERROR, 0x80290407, -2144795641, Join, tpm_error,
        "Generic TPM error.",
        "Disable the TPM on the device; 1809 and later notice this and join without it.";
    TPM_E_NOTFIPS, 0x80280036, -2144862154, Join, tpm_fips_mode,
        "The TPM is in FIPS mode, which is not supported (TPM 1.2).",
        "Disable the TPM; 1809 and later handle it automatically.";
    NTE_AUTHENTICATION_IGNORED, 0x80090031, -2146893775, Join, tpm_locked_out,
        "Anti-hammering protection has locked the TPM.",
        "Transient: wait for the cool-down.";
    WININET_E_NAME_NOT_RESOLVED, 0x80072ee7, -2147012889, Join, dns_name_not_resolved,
        "DNS could not resolve the server name.",
        "Verify the device resolves enterpriseregistration.windows.net.";
    WININET_E_CONNECTION_ABORTED, 0x80072efe, -2147012866, Join, connection_aborted,
        "The connection ended abnormally.",
        "Retry, or try another network.";

    // ── §C post-join / PRT (Attempt Status, AAD event 1007) ──────────────────────────────────
    STATUS_LOGON_FAILURE, 0xc000006d, -1073741715, PostJoin, prt_logon_failure,
        "PRT request failed: Entra's auth service was unreachable, or Entra or WS-Trust answered HTTP 400.",
        "Check whether the computer account can pass the proxy; server errors are in AAD events 1081/1088, the URL in 1022.";
    STATUS_WRONG_PASSWORD, 0xc000006a, -1073741718, PostJoin, prt_logon_failure,
        "PRT request failed in the same way as STATUS_LOGON_FAILURE (unreachable, or HTTP 400).",
        "Same as STATUS_LOGON_FAILURE: proxy, then AAD events 1081/1088/1022.";
    STATUS_REQUEST_NOT_ACCEPTED, 0xc00000d0, -1073741616, PostJoin, prt_request_rejected,
        "Entra or WS-Trust answered the PRT request with HTTP 400 (observed with AADSTS90002 when the UPN suffix is not verified).",
        "Read AAD events 1081/1088 and the URL in 1022.";
    STATUS_NETWORK_UNREACHABLE, 0xc000023c, -1073741252, PostJoin, prt_network_error,
        "PRT acquisition hit a network failure or an HTTP status above 400 from Entra or WS-Trust.",
        "Server errors: AAD events 1081/1088; connectivity: 1022 (URL) and 1084 (sub-error).";
    STATUS_BAD_NETWORK_PATH, 0xc00000be, -1073741634, PostJoin, prt_network_error,
        "HTTP error above 400 or a network problem during PRT acquisition.",
        "Server errors: AAD events 1081/1088; connectivity: 1022 and 1084.";
    STATUS_UNEXPECTED_NETWORK_ERROR, 0xc00000c4, -1073741628, PostJoin, prt_network_error,
        "HTTP error above 400 or a network problem during PRT acquisition.",
        "Server errors: AAD events 1081/1088; connectivity: 1022 and 1084.";
    STATUS_NO_SUCH_LOGON_SESSION, 0xc000005f, -1073741729, PostJoin, upn_suffix_not_verified,
        "Realm discovery failed: Entra does not know the domain of the user's UPN.",
        "Add or verify the custom domain; for non-routable suffixes use Alternate Login ID; event 1144 shows the UPN.";
    AAD_CLOUDAP_E_OAUTH_USERNAME_IS_MALFORMED, 0xc004844c, -1073445812, PostJoin, upn_malformed,
        "The UPN is malformed (for hybrid devices it comes from the DC).",
        "Use an RFC 822 style UPN (check whoami /upn) or Alternate Login ID.";
    AAD_CLOUDAP_E_OAUTH_USER_SID_IS_EMPTY, 0xc0048442, -1073445822, PostJoin, id_token_missing_sid,
        "The ID token has no user SID.",
        "Look for a proxy altering the response.";
    // §0.3: the docs print the decimal as "--1073445695"; PRT-doc also gives 0x800484c1.
    AAD_CLOUDAP_E_WSTRUST_SAML_TOKENS_ARE_EMPTY, 0xc00484c1, -1073445695, PostJoin, wstrust_error [0x800484c1],
        "WS-Trust answered with an error instead of SAML tokens.",
        "Check the proxy and AAD event 1088.";
    AAD_CLOUDAP_E_HTTP_PASSWORD_URI_IS_EMPTY, 0xc004848b, -1073445749, PostJoin, mex_no_password_endpoint,
        "MEX contains no password URLs.",
        "Fix the MEX content and check the proxy.";
    // §0.4: v2024 prints this hex in mixed case (0xc004848C).
    AAD_CLOUDAP_E_HTTP_CERTIFICATE_URI_IS_EMPTY, 0xc004848c, -1073445748, PostJoin, mex_no_certificate_endpoint,
        "MEX contains no certificate URLs.",
        "Fix the MEX content.";
    WC_E_DTDPROHIBITED, 0xc00cee4f, -1072894385, PostJoin, wstrust_dtd_prohibited,
        "The WS-Trust XML carries a DTD, which is refused.",
        "Fix the identity provider; AAD event 1022 has the URL.";

    // ── §E WinHTTP codes in the PRT section, printed in decimal (raw, not HRESULTs) ──────────
    ERROR_WINHTTP_TIMEOUT, 0x00002ee2, 12002, PostJoin, prt_network_timeout,
        "WinHTTP timeout during PRT acquisition (raw 12002; its HRESULT form is 0x80072ee2).",
        "Check the URL in AAD event 1022 and the sub-error in 1084.";
    ERROR_WINHTTP_NAME_NOT_RESOLVED, 0x00002ee7, 12007, PostJoin, prt_name_not_resolved,
        "WinHTTP could not resolve a host name during PRT acquisition (raw 12007).",
        "Check DNS for the URL in AAD event 1022.";
    ERROR_WINHTTP_CANNOT_CONNECT, 0x00002efd, 12029, PostJoin, prt_cannot_connect,
        "WinHTTP could not connect during PRT acquisition (raw 12029).",
        "Check firewall and proxy for the URL in AAD event 1022.";
    ERROR_WINHTTP_CONNECTION_ERROR, 0x00002efe, 12030, PostJoin, prt_connection_error,
        "WinHTTP connection reset or broken during PRT acquisition (raw 12030).",
        "Usually transient; check the proxy if it repeats.";

    // ── §F supplementary DSREG_E_* names (Windows MDM doc) ───────────────────────────────────
    DSREG_E_DEVICE_MESSAGE_FORMAT_ERROR, 0x801c0001, -2145648639, Join, drs_bad_request,
        "The registration service considered the request message malformed.",
        "Read the server message.";
    DSREG_E_DEVICE_AUTHORIZATION_ERROR, 0x801c0003, -2145648637, Join, drs_authorization_error,
        "The registration service did not authorise the request.",
        "Read the server message; check who may register devices.";
    DSREG_E_DISCOVERY_REDIRECTION_NOT_TRUSTED, 0x801c000b, -2145648629, Discover, discovery_redirect_untrusted,
        "Discovery was redirected somewhere the client does not trust.",
        "Look for a proxy or DNS redirect of the registration endpoints.";
    DSREG_E_DISCOVERY_FAILED, 0x801c000c, -2145648628, Discover, discovery_failed,
        "Discovery failed; commonly the sub-error of 0x801c0021 in the DRS Discovery Test.",
        "Check connectivity to the discovery endpoint and event 201.";
    // Spelled EXCCEEDED in the MDM doc; kept as documented.
    DSREG_E_DEVICE_REGISTRATION_QUOTA_EXCCEEDED, 0x801c000e, -2145648626, Join, device_quota_exceeded,
        "The user has too many registered devices.",
        "Remove stale devices or raise the per-user device limit.";
    DSREG_E_DEVICE_REQUIRES_REBOOT, 0x801c000f, -2145648625, Join, reboot_required,
        "Registration needs a restart first.",
        "Restart the device.";
    DSREG_E_DEVICE_AIK_VALIDATION_ERROR, 0x801c0010, -2145648624, Join, tpm_attestation_failed,
        "The TPM's attestation identity key failed validation.",
        "Check the TPM; disable it for registration if it keeps failing.";
    DSREG_E_DEVICE_ATTESTATION_ERROR, 0x801c0011, -2145648623, Join, tpm_attestation_failed,
        "TPM attestation failed.",
        "Check the TPM; disable it for registration if it keeps failing.";
    DSREG_E_DISCOVERY_BAD_MESSAGE_ERROR, 0x801c0012, -2145648622, Discover, invalid_server_response,
        "The discovery answer was malformed.",
        "Look for a proxy that replaces the answer.";
    DSREG_E_TENANTID_NOT_FOUND, 0x801c0013, -2145648621, Discover, tenant_id_not_found,
        "No tenant ID was found for the request.",
        "Check the SCP or the CDJ\\AAD registry values.";
    DSREG_E_USERSID_NOT_FOUND, 0x801c0014, -2145648620, Join, user_sid_not_found,
        "The user's SID was not found.",
        "Check the account exists and is synced.";

    // ── §G codes seen in real output; symbols only where certain ─────────────────────────────
    ERROR_FILE_NOT_FOUND, 0x80070002, -2147024894, Discover, scp_not_configured,
        "AD Configuration Test found no SCP (Win32 2, file not found); leads to 0x801c001d.",
        "Create the SCP or the CDJ\\AAD registry values.";
    ERROR_WINHTTP_AUTODETECTION_FAILED, 0x80072f94, -2147012716, Discover, proxy_autodetect_failed,
        "Proxy auto-detection (WPAD) failed (WinHTTP 12180, seen as Auto Detect PAC Status).",
        "Only matters where a proxy is required: publish WPAD or set the SYSTEM proxy.";
    SEC_E_TARGET_UNKNOWN, 0x80090303, -2146893053, Auth, kerberos_target_unknown,
        "Kerberos Ticket Test failed: the target (SPN adrs/enterpriseregistration.windows.net) is unknown or unreachable.",
        "Check the DRS SPN and DC reachability, and the cloud Kerberos trust setup.";
    // The doc infers RPC_NT_SERVER_UNAVAILABLE but is not certain, hence the synthetic symbol.
    HRESULT_FROM_NT_0xC0020017, 0xd0020017, -805175273, PostJoin, user_state_query_failed,
        "WamDefaultSet / NgcPreReq check failed with NTSTATUS 0xC0020017 (probably RPC server unavailable).",
        "Expected without a user session; run dsregcmd /status as the signed-in user.";
    // Win32 1312; event 220 may carry the raw value.
    ERROR_NO_SUCH_LOGON_SESSION, 0x80070520, -2147023584, PostJoin, user_state_query_failed [0x00000520],
        "No logon session (Win32 1312): WamDefaultSet failed without a user session; in event 220 it hints at AD replication.",
        "Run dsregcmd /status as the user; with event 220 fix AD replication.";
    // Win32 1317, named in §A (event 220) next to 1312; not in any code table.
    ERROR_NO_SUCH_USER, 0x80070525, -2147023579, Join, ad_computer_object_unreadable [0x00000525],
        "The computer account was not found when event 220 tried to read it (Win32 1317), pointing at AD replication.",
        "Fix AD replication; it may clear by itself.";
    HRESULT_FROM_NT_STATUS_INVALID_PARAMETER, 0xd000000d, -805306355, PostJoin, user_state_query_failed,
        "IsDefaultAccountSet failed with an invalid parameter (seen in dsregcmd /debug).",
        "Run dsregcmd /status as the signed-in user.";
    ERROR_PATH_NOT_FOUND, 0x80070003, -2147024893, PreCheck, join_task_state_failed,
        "The automatic join task could not compute its initial state: path not found (event 369).",
        "Check the Workplace Join task and its registry keys.";
    DSREG_0x801C03F3, 0x801c03f3, -2145647629, Join, device_object_not_found,
        "Entra has no device object for this device (known Autopilot pre-provisioning issue; no documented name).",
        "Check the device object exists in Entra; re-register if it was deleted.";
    DSREG_0x801C0515, 0x801c0515, -2145647339, Auth, enterprise_drs_auth_failed,
        "Undocumented exit code of event 305 against an on-premises (AD FS) registration service.",
        "Read event 305 and the AD FS admin log.";
    ADAL_0xCAA1000E, 0xcaa1000e, -895418354, Auth, adal_failure,
        "Undocumented top-level ADAL error reported by events 304/305.",
        "Read the server error in the event and the AAD operational log.";
    ADAL_0xCAA10009, 0xcaa10009, -895418359, Auth, adal_failure,
        "Undocumented ADAL error seen with \"'clientId' must be non-empty\".",
        "Read the AAD operational log for the failing request.";
    ADAL_0xCAA5001C, 0xcaa5001c, -895156196, PostJoin, token_broker_failed,
        "Undocumented ADAL/WAM error with AAD event 1098 (token broker operation failed).",
        "Read the AAD operational log around event 1098.";
    ERROR_WINHTTP_UNRECOGNIZED_SCHEME, 0x00002ee6, 12006, Auth, unrecognized_url_scheme,
        "WinHTTP 12006 (raw): a URL's scheme is not supported; seen in the ADAL log against an on-premises DRS.",
        "Check the URLs the SCP, AD FS or MEX publish.";
};
