//! The closed set of causes: every id that can appear in `failure.cause`, a metrics label or
//! an API filter.
//!
//! Invariants (checked by the tests in `catalog`): ids are unique snake_case identifiers (the
//! macro takes them as Rust identifiers, so nothing else can even be written); every catalog
//! entry, every refinement in `server_message` and every facility fallback (`unknown_<facility>`)
//! names a cause from this list. Ids are a public contract: add new ones, never rename.
//!
//! Text and resolution are one line each, written for the technician who reads the drill-down,
//! paraphrased from `reference/error-codes.md` and never copied from it.

use super::Cause;
use crate::Phase;

/// Builds the cause table from `id, Phase, "text", "resolution";` rows.
macro_rules! causes {
    ($($id:ident, $phase:ident, $text:literal, $resolution:literal;)*) => {
        &[$(Cause {
            id: stringify!($id),
            phase: Phase::$phase,
            text: $text,
            resolution: $resolution,
        }),*]
    };
}

/// Every cause, grouped by phase in flow order.
pub(super) const CAUSES: &[Cause] = causes! {
    // ── pre-check ────────────────────────────────────────────────────────────────────────────
    join_task_disabled, PreCheck,
        "The scheduled task Automatic-Device-Join is disabled, so the device never tries to join.",
        "Enable \\Microsoft\\Windows\\Workplace Join\\Automatic-Device-Join (Task Scheduler, or the baseline/GPO that disabled it), then run it or sign in again.";
    dc_unreachable, PreCheck,
        "The device cannot locate or reach a domain controller (AD Connectivity Test FAIL, event 334).",
        "Connect the device to the corporate network or VPN so that it can see a DC, then rerun the join task.";
    not_system, PreCheck,
        "The join task was not running as SYSTEM, so it stopped before trying (event 333).",
        "Let the scheduled task Automatic-Device-Join run as SYSTEM; do not start the join from a user context.";
    join_task_state_failed, PreCheck,
        "The automatic join task could not work out its starting state; a path it needs is missing (event 369).",
        "Check that the Workplace Join scheduled task and its registry keys exist, then restart the device.";

    // ── discover ─────────────────────────────────────────────────────────────────────────────
    scp_read_failed, Discover,
        "Tenant information could not be read from the service connection point in AD (also logged as event 220 at join time, then usually an AD replication issue).",
        "Read the AD Configuration Test sub-code; configure the SCP (Entra Connect or by hand) or the client-side CDJ\\AAD registry values; fix AD replication if event 220 shows it.";
    scp_not_configured, Discover,
        "No service connection point exists in the forest, so the device does not know its tenant (AD Configuration Test FAIL [0x80070002], or events 307/304 with 0x801c001d).",
        "Expected where hybrid join is not intended (and hybrid join is unsupported on domain controllers): ignore it there. Where it is intended, create the SCP with Entra Connect or a script, or set TenantId/TenantName under HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\CDJ\\AAD.";
    discovery_failed, Discover,
        "Fetching the registration service's discovery metadata failed.",
        "Look at the second code of 'DRS Discovery Test : FAIL [...]' or at event 201 for the underlying error.";
    discovery_timeout, Discover,
        "Discovery of the registration service did not finish in time.",
        "Verify that SYSTEM can reach https://enterpriseregistration.windows.net, including through the proxy.";
    realm_discovery_failed, Discover,
        "Realm discovery at the Entra sign-in service failed, so the device cannot tell a managed from a federated domain.",
        "Check the sub-error and that SYSTEM can reach https://login.microsoftonline.com through the proxy.";
    discovery_redirect_untrusted, Discover,
        "Discovery was redirected to a location the client does not trust.",
        "Check for a proxy or DNS entry that redirects the registration endpoints.";
    tenant_not_found, Discover,
        "The tenant named by the SCP is unknown to Entra, or it has no active subscription (AADSTS90002).",
        "Correct the tenant ID in the SCP (or the CDJ\\AAD registry values) and confirm the tenant's subscriptions are active.";
    both_drs_configured, Discover,
        "Both the Entra registration service and an on-premises (AD FS) one are configured; only one may be (event 330).",
        "Remove the enterprise DRS configuration or the Entra SCP, whichever is not meant to be used.";
    tenant_id_not_found, Discover,
        "No tenant ID was available for the registration request (named only in the MDM docs).",
        "Verify the SCP or CDJ\\AAD registry values carry the tenant ID.";
    drs_busy, Discover,
        "The registration service answered HTTP 503: it is busy or briefly unavailable.",
        "Nothing to fix on the device; the next run of the join task retries.";
    invalid_server_response, Discover,
        "The server's answer could not be parsed; often a proxy returned an HTML login page with HTTP 200.",
        "Make sure SYSTEM passes the proxy silently (no interactive proxy sign-in) or bypass the proxy for Microsoft endpoints.";
    network_cannot_connect, Discover,
        "The device could not open a connection to the Microsoft registration endpoints.",
        "Check firewall, proxy and routing from the SYSTEM context to the Microsoft endpoints.";
    network_timeout, Discover,
        "A network request timed out (during discovery, or while registering with the service at join time).",
        "Check that SYSTEM can reach https://enterpriseregistration.windows.net and login.microsoftonline.com.";
    proxy_decoding_failed, Discover,
        "A response could not be decoded, typically because a proxy rewrote it.",
        "Exempt the Microsoft endpoints from proxy inspection or rewriting.";
    proxy_autodetect_failed, Discover,
        "Automatic proxy detection (WPAD/PAC) found nothing.",
        "Only a problem if the network needs a proxy: publish WPAD or configure the proxy for SYSTEM (netsh winhttp).";

    // ── auth ─────────────────────────────────────────────────────────────────────────────────
    federation_protocol_unsupported, Auth,
        "The federation server does not speak WS-Trust.",
        "Enable WS-Trust on the on-premises identity provider.";
    federation_response_not_xml, Auth,
        "The federation server's metadata exchange did not come back as XML.",
        "Confirm MEX answers with well-formed XML and that no proxy substitutes its own page.";
    wstrust_endpoint_not_found, Auth,
        "The metadata exchange lists no username/password WS-Trust endpoint.",
        "Enable the WS-Trust endpoints on the federation server and check what MEX publishes.";
    auth_network_timeout, Auth,
        "Authentication timed out talking to Entra or the federation server.",
        "Check that SYSTEM can reach login.microsoftonline.com and the on-premises identity provider.";
    auth_network_cannot_connect, Auth,
        "No connection to the Entra sign-in service could be opened.",
        "Check the network path and proxy from the SYSTEM context to login.microsoftonline.com.";
    auth_connection_aborted, Auth,
        "The connection to the authentication endpoint was cut off.",
        "Usually transient: retry, or try from another network.";
    tls_validation_failed, Auth,
        "Validation of the server's TLS certificate failed.",
        "Check the clock and that the issuing root (for example the AD FS root CA) is trusted; then retry.";
    saml_token_rejected, Auth,
        "Entra refused the SAML token issued by the on-premises identity provider.",
        "Compare the federation configuration with the server error code logged in event 305.";
    wstrust_fault, Auth,
        "The federation server answered the WS-Trust request with a fault instead of a token.",
        "Check the federation configuration and the fault text in event 305.";
    token_endpoint_error, Auth,
        "The token endpoint answered with an error.",
        "Read the ADAL/AAD operational log for the server's error.";
    adal_failure, Auth,
        "The authentication library failed without a specific reason.",
        "Read the sub-error or the server error in event 305 and the AAD operational log.";
    kerberos_target_unknown, Auth,
        "A Kerberos ticket for the registration service could not be obtained: the target is unknown or unreachable.",
        "Check the DRS service principal (adrs/enterpriseregistration.windows.net) and DC reachability; for cloud Kerberos trust check its setup.";
    enterprise_drs_auth_failed, Auth,
        "Authentication against an on-premises (AD FS) registration service failed with an undocumented code.",
        "Read event 305 and the AD FS admin log for the server's reason.";
    unrecognized_url_scheme, Auth,
        "A URL used during authentication had a scheme the HTTP stack does not handle.",
        "Check the endpoint URLs that the SCP, AD FS or MEX publish.";

    // ── join ─────────────────────────────────────────────────────────────────────────────────
    directory_error, Join,
        "The registration service reported a directory error; the server message tells which one.",
        "Read Server Message / event 204; most often the device is simply not synced yet.";
    device_not_synced, Join,
        "Entra has no device object for this computer yet: expected until Entra Connect syncs it (or the object was deleted).",
        "Wait for the next Entra Connect sync cycle. If it lasts, check that the computer's OU is in the sync scope and that its userCertificate attribute is populated (the join task writes it), then trigger a delta sync; only if the object still does not appear, dsregcmd /leave, delete the MS-Organization-Access certificate and restart.";
    throttled, Join,
        "The registration service throttled the device after too many requests.",
        "Nothing to fix; the next attempt after the cool-down (about five minutes) normally succeeds.";
    public_key_not_found, Join,
        "The device object has no userCertificate, so the service cannot match the device's key.",
        "Run dsregcmd /leave, delete the device certificate, reboot, check userCertificate is written and synced, then delta sync.";
    sid_verification_pending, Join,
        "The service could not verify the computer's SID against the synced object; sync has probably not finished.",
        "Wait for Entra Connect to sync the computer object, then let the join task retry.";
    drs_authentication_error, Join,
        "The registration service rejected the request with an authentication error.",
        "Read the server error code and message for the reason.";
    drs_internal_error, Join,
        "The registration service reported an internal error (the docs' description of this code is unreliable).",
        "Read the server error; retry later and open a case if it persists.";
    drs_bad_request, Join,
        "The registration service found the request message malformed.",
        "Read the server message; update Windows if the client sends a bad request.";
    drs_authorization_error, Join,
        "The registration service refused to authorise the request.",
        "Read the server message; check that users or devices are allowed to register.";
    device_quota_exceeded, Join,
        "The user has reached the maximum number of devices allowed in Entra.",
        "Delete stale devices of that user or raise the per-user device limit.";
    reboot_required, Join,
        "The device must restart before registration can go on.",
        "Restart the device.";
    tpm_attestation_failed, Join,
        "The service could not validate the TPM's attestation or its AIK.",
        "Check TPM firmware and health; if it keeps failing, disable the TPM for registration.";
    user_sid_not_found, Join,
        "The user's SID could not be found for the request.",
        "Read the server message and check the account exists and is synced.";
    device_object_not_found, Join,
        "Entra has no device object for this device (seen during Autopilot pre-provisioning).",
        "Check the device object exists in Entra; re-import or re-register the device.";
    ad_computer_object_unreadable, Join,
        "The computer object in AD could not be accessed (event 220), typically an AD replication problem.",
        "Fix AD replication; it may also clear on its own at the next attempt.";
    tpm_keyset_missing, Join,
        "The TPM key set is gone or unusable: the TPM was cleared, Windows does not own it, or the image came from a registered machine.",
        "Never capture images from joined or registered machines, do not clear the TPM; if it was cleared, re-register and re-add accounts.";
    tpm_error, Join,
        "The TPM reported a generic error.",
        "Disable the TPM on the device; 1809 and later detect this and join without it.";
    tpm_fips_mode, Join,
        "A TPM (1.2) in FIPS mode cannot be used for registration.",
        "Disable the TPM; 1809 and later handle this by themselves.";
    tpm_locked_out, Join,
        "The TPM is locked out by its anti-hammering protection.",
        "Transient: wait for the lockout to expire, then let the join task retry.";
    dns_name_not_resolved, Join,
        "DNS could not resolve the registration service's host name.",
        "Check DNS resolution of enterpriseregistration.windows.net from the device.";
    connection_aborted, Join,
        "The connection to the registration service ended abnormally.",
        "Usually transient: retry, or try from another network.";

    // ── post-join ────────────────────────────────────────────────────────────────────────────
    no_prt, PostJoin,
        "The device is joined but the user has no Primary Refresh Token, so cloud SSO does not work.",
        "Read the PRT diagnostics (Attempt Status, server error), the AAD Operational log (errors) and AAD Analytic events 1006/1007 (start and end of PRT acquisition).";
    device_auth_failed, PostJoin,
        "Entra refuses the device: it is disabled or deleted (DeviceAuthStatus FAILED. Device is either disabled or deleted, or AADSTS50155 during PRT acquisition).",
        "Enable the device object, or re-register the device the way its join type requires.";
    device_auth_check_failed, PostJoin,
        "The device authentication check could not reach Entra (DeviceAuthStatus FAILED. ERROR): nothing says the device is disabled or deleted.",
        "Do not re-register: check that SYSTEM can reach login.microsoftonline.com and enterpriseregistration.windows.net through the proxy, then run dsregcmd /status again.";
    prt_stale, PostJoin,
        "The user's PRT has not been renewed for more than a day (AzureAdPrtUpdateTime), so SSO and Conditional Access run on an old token.",
        "Lock and unlock or sign out and in; if it stays old, read the AAD Operational log (errors) and the AAD Analytic log (events 1006/1007) for the renewal error.";
    dual_state, PostJoin,
        "The device is hybrid (or domain) joined and the user also has it Entra registered (WorkplaceJoined YES): dual state confuses Conditional Access and Intune.",
        "Remove the work account registration (Settings > Accounts > Access work or school), set BlockAADWorkplaceJoin=1 under HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows\\WorkplaceJoin; Windows 10 1803+ clears it by itself once hybrid joined.";
    aad_recovery_pending, PostJoin,
        "Windows has marked the join for recovery (AadRecoveryEnabled YES): the device keys no longer work.",
        "Sign in so that recovery runs, or re-join the device.";
    key_sign_failed, PostJoin,
        "The device key failed the signing test (KeySignTest), so the device cannot prove its identity.",
        "Check the TPM and the device certificate; re-register the device if the key is broken.";
    prt_logon_failure, PostJoin,
        "Getting a PRT failed: the Entra sign-in service was unreachable or answered HTTP 400.",
        "Check the computer account's proxy access; the server error is in AAD events 1081 (Entra) / 1088 (WS-Trust), the URL in 1022.";
    prt_request_rejected, PostJoin,
        "Entra or the WS-Trust server answered the PRT request with HTTP 400.",
        "Read the server error (AAD events 1081/1088) and the URL in event 1022.";
    prt_network_error, PostJoin,
        "The PRT request hit a network problem or an HTTP error above 400.",
        "For server errors read AAD events 1081/1088; for network errors read 1022 (URL) and 1084 (sub-error).";
    prt_network_timeout, PostJoin,
        "A PRT request timed out.",
        "Check the path to the URL in AAD event 1022 and the sub-error in 1084.";
    prt_name_not_resolved, PostJoin,
        "A host name needed for the PRT could not be resolved.",
        "Check DNS for the URL in AAD event 1022.";
    prt_cannot_connect, PostJoin,
        "No connection could be opened for the PRT request.",
        "Check firewall and proxy for the URL in AAD event 1022.";
    prt_connection_error, PostJoin,
        "The connection used for the PRT request was reset or broke.",
        "Usually transient; check the proxy if it repeats.";
    upn_suffix_not_verified, PostJoin,
        "Entra does not know the domain of the user's UPN (unverified or non-routable suffix).",
        "Add and verify the custom domain in Entra; for suffixes such as .local fall back to Alternate Login ID; event 1144 records the UPN.";
    upn_malformed, PostJoin,
        "The user's UPN is not in a valid name@domain form (for hybrid it comes from the DC).",
        "Fix the UPN (check whoami /upn) or use Alternate Login ID.";
    id_token_missing_sid, PostJoin,
        "The ID token Entra returned has no user SID.",
        "Check for a proxy that alters the response.";
    wstrust_error, PostJoin,
        "The WS-Trust server answered the PRT request with an error.",
        "Check the proxy and AAD event 1088.";
    mex_no_password_endpoint, PostJoin,
        "The federation metadata (MEX) lists no username/password endpoint.",
        "Fix what MEX publishes and check the proxy.";
    mex_no_certificate_endpoint, PostJoin,
        "The federation metadata (MEX) lists no certificate endpoint.",
        "Fix what MEX publishes.";
    wstrust_dtd_prohibited, PostJoin,
        "The WS-Trust answer contains a DTD, which the client refuses.",
        "Fix the identity provider's answer; AAD event 1022 shows the URL.";
    invalid_credentials, PostJoin,
        "Entra rejected the user's credentials; on hybrid devices often a new password not yet synced (AADSTS50126).",
        "Wait for password hash sync, then sign in again; otherwise check the password.";
    user_not_in_tenant, PostJoin,
        "The user account does not exist in the tenant (AADSTS50034).",
        "Check the UPN the user signs in with and that the account is synced; event 1144 shows the UPN.";
    adfs_device_not_registered, PostJoin,
        "AD FS refused the request: it was signed by a certificate of a device it does not know (MSIS9682).",
        "Check AD FS device registration and device writeback for this device.";
    user_state_query_failed, PostJoin,
        "A user-side check (WAM default account, Ngc prerequisites) could not run, as expected when dsregcmd runs without a user session.",
        "Ignore it in SYSTEM captures; run dsregcmd /status as the signed-in user to see user state.";
    token_broker_failed, PostJoin,
        "The token broker (WAM) failed an operation (AAD event 1098).",
        "Read the AAD operational log around event 1098 for the underlying error.";

    // ── facility fallbacks for codes the catalog does not know ───────────────────────────────
    unknown_dsreg, Join,
        "An undocumented device-registration (DSREG, 0x801c) error.",
        "Read the Previous Registration block and the User Device Registration admin log (events 201-307).";
    unknown_win32, Join,
        "An undocumented Windows (Win32, 0x8007) error wrapped as an HRESULT.",
        "The low 16 bits are the Win32 error number: look it up (certutil -error) and read the registration log.";
    unknown_wininet, Discover,
        "An undocumented network (WinINet/WinHTTP, 0x80072exx-0x80072fxx) error.",
        "Check connectivity, DNS and proxy from the SYSTEM context to the Microsoft endpoints.";
    unknown_adal, Auth,
        "An undocumented authentication library (ADAL, 0xcaa) error.",
        "Read event 305 and the AAD operational log; 0xcaa8 codes wrap a network error in the low word.";
    unknown_tpm, Join,
        "An undocumented TPM (0x8028/0x8029) error.",
        "Check TPM health in tpm.msc; consider disabling the TPM for registration.";
    unknown_ntstatus, PostJoin,
        "An undocumented NTSTATUS (0xc000) error, usually from PRT acquisition.",
        "Read the PRT diagnostics, the AAD Operational log, and AAD Analytic events 1006/1007 (1007 holds the final error).";
    unknown_nt_hresult, PostJoin,
        "An undocumented NTSTATUS wrapped as an HRESULT (0xd...), usually from a user-state check.",
        "Clear bit 28 to get the NTSTATUS and look it up; rerun dsregcmd /status as the user.";
    unknown_security, Join,
        "An undocumented security or crypto provider (0x8009) error, often about the device key.",
        "Check the device key's provider and the TPM; read the registration log.";
    unknown_cloudap, PostJoin,
        "An undocumented CloudAP (0xc004/0x8004) error from the Entra sign-in plug-in, usually during PRT acquisition.",
        "Read the PRT diagnostics, the AAD Operational log (errors), and AAD Analytic events 1006/1007.";
    unknown_mdm_enroll, PostJoin,
        "An undocumented MDM enrollment (0x8018) error, raised after the join.",
        "Read the DeviceManagement-Enterprise-Diagnostics-Provider admin log.";
    unknown_other, Join,
        "A code from no facility the catalog knows.",
        "Look the code up (certutil -error) and read the registration log around the failure.";
};
