//! Routing for the Diagnostic Data keys (tests, Previous Registration, post-join checks) and
//! the Ngc Prerequisite Check keys; split from `fields` to keep files readable.
//!
//! Each function returns `false` when the normalised key is not one of its keys, so the
//! caller can try the next group; it never creates a message for a key it does not own.

use dsreg_proto::v1::Snapshot;

use super::emit::Emit;
use super::values;

pub(crate) fn diagnostics(snap: &mut Snapshot, norm: &[u8], e: &mut Emit<'_, '_>) -> bool {
    let d = match norm {
        b"diagnostics reference"
        | b"user context"
        | b"client time"
        | b"fallback to sync-join"
        | b"fallback to fed-join"
        | b"executing account name"
        | b"aadrecoveryenabled"
        | b"keysigntest"
        | b"displaynameupdated"
        | b"osversionupdated"
        | b"hostnameupdated"
        | b"last hostname update" => snap.diagnostics.get_or_insert_default(),
        _ => return tests_or_registration(snap, norm, e),
    };
    match norm {
        b"diagnostics reference" => e.text(&mut d.diagnostics_reference),
        b"user context" => e.text(&mut d.user_context),
        b"client time" => e.time(&mut d.client_time),
        b"fallback to sync-join" => e.enabled(&mut d.fallback_to_sync_join),
        b"fallback to fed-join" => e.enabled(&mut d.fallback_to_fed_join),
        b"executing account name" => e.text(&mut d.executing_account_name),
        b"aadrecoveryenabled" => e.yes_no(&mut d.aad_recovery_enabled),
        b"keysigntest" => e.text(&mut d.key_sign_test),
        b"displaynameupdated" => e.yes_no(&mut d.display_name_updated),
        b"osversionupdated" => e.yes_no(&mut d.os_version_updated),
        b"hostnameupdated" => e.yes_no(&mut d.host_name_updated),
        _ => e.time(&mut d.last_host_name_update),
    }
    true
}

fn tests_or_registration(snap: &mut Snapshot, norm: &[u8], e: &mut Emit<'_, '_>) -> bool {
    if let Some(test) = dsreg_proto::diagnostic_tests::by_printed(norm) {
        let tests = snap
            .diagnostics
            .get_or_insert_default()
            .tests
            .get_or_insert_default();
        e.test(test.result_mut(tests));
        return true;
    }
    type Text = fn(&mut dsreg_proto::v1::PreviousRegistration) -> &mut Option<String>;
    let text: Text = match norm {
        b"previous registration" | b"client errorcode" | b"https status" => {
            let p = snap
                .diagnostics
                .get_or_insert_default()
                .previous_registration
                .get_or_insert_default();
            match norm {
                b"previous registration" => e.time(&mut p.time),
                b"client errorcode" => e.code(&mut p.client_error_code),
                _ => e.number(&mut p.https_status),
            }
            return true;
        }
        b"registration type" => |p| &mut p.registration_type,
        b"error phase" => |p| &mut p.error_phase,
        b"server errorcode" => |p| &mut p.server_error_code,
        b"server errorsubcode" => |p| &mut p.server_error_sub_code,
        b"server operation" => |p| &mut p.server_operation,
        b"server message" => |p| &mut p.server_message,
        b"request id" => |p| &mut p.request_id,
        _ => return false,
    };
    let p = snap
        .diagnostics
        .get_or_insert_default()
        .previous_registration
        .get_or_insert_default();
    e.text(text(p));
    true
}

pub(crate) fn ngc(snap: &mut Snapshot, norm: &[u8], e: &mut Emit<'_, '_>) -> bool {
    type Flag = fn(&mut dsreg_proto::v1::NgcPrerequisiteCheck) -> &mut Option<bool>;
    let flag: Flag = match norm {
        b"isdevicejoined" => |n| &mut n.is_device_joined,
        b"isuserazuread" => |n| &mut n.is_user_azure_ad,
        b"policyenabled" => |n| &mut n.policy_enabled,
        b"postlogonenabled" => |n| &mut n.post_logon_enabled,
        b"deviceeligible" => |n| &mut n.device_eligible,
        b"sessionisnotremote" => |n| &mut n.session_is_not_remote,
        b"adfsrefreshtoken" => |n| &mut n.adfs_refresh_token,
        b"adfsraisready" => |n| &mut n.adfs_ra_is_ready,
        b"ngcprereq" | b"certenrollment" | b"prereqresult" | b"logoncerttemplateready" => {
            let n = snap.ngc_prerequisite_check.get_or_insert_default();
            match norm {
                b"ngcprereq" => e.error_code(&mut n.ngc_pre_req_error),
                b"certenrollment" => e.text(&mut n.cert_enrollment),
                b"prereqresult" => e.text(&mut n.pre_req_result),
                _ => {
                    if n.logon_cert_template_ready.is_some() {
                        e.repeat();
                    } else if let Some((b, state)) = values::annotated_yes_no(e.value) {
                        n.logon_cert_template_ready = Some(b);
                        n.logon_cert_template_state = state.map(str::to_owned);
                    } else {
                        e.unconverted("YES or NO ( state )");
                    }
                }
            }
            return true;
        }
        _ => return false,
    };
    e.yes_no(flag(snap.ngc_prerequisite_check.get_or_insert_default()));
    true
}
