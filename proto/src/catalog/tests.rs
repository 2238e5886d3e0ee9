//! Catalog invariants and the reference's §0 doc-bug corrections.

use std::collections::HashSet;

use super::*;

fn is_snake_case(s: &str) -> bool {
    !s.is_empty()
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('_')
        && !s.contains("__")
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[test]
fn signed_matches_code() {
    for e in entries() {
        assert_eq!(e.signed as u32, e.code, "{} signed/hex mismatch", e.symbol);
    }
}

#[test]
fn no_duplicate_codes_aliases_or_symbols() {
    let mut codes = HashSet::new();
    let mut symbols = HashSet::new();
    for e in entries() {
        for c in std::iter::once(e.code).chain(e.aliases.iter().copied()) {
            assert!(codes.insert(c), "code {:#010x} listed twice", c);
        }
        assert!(
            symbols.insert(e.symbol.to_ascii_uppercase()),
            "symbol {} listed twice",
            e.symbol
        );
    }
}

#[test]
fn symbols_follow_the_convention() {
    for e in entries() {
        assert!(
            e.symbol
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == 'x'),
            "{}",
            e.symbol
        );
        if let Some((_, hex)) = e.symbol.rsplit_once("_0x") {
            assert_eq!(hex.len(), 8, "{}", e.symbol);
            assert!(
                hex.chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()),
                "{}",
                e.symbol
            );
            assert!(!e.is_named());
        } else {
            assert!(e.is_named());
            assert!(!e.symbol.contains('x'), "{}", e.symbol);
        }
    }
    assert!(!find("0xd0020017").is_some_and(Entry::is_named));
    assert!(find("0x80070002").is_some_and(Entry::is_named));
}

#[test]
fn every_entry_has_text_and_an_existing_cause() {
    for e in entries() {
        let c = cause(e.cause).unwrap_or_else(|| panic!("{}: no cause {}", e.symbol, e.cause));
        assert!(
            !e.text.is_empty() && !e.resolution.is_empty(),
            "{}",
            e.symbol
        );
        assert!(!e.text.contains('\n') && !e.resolution.contains('\n'));
        // A cause's phase is its entries' phase, except causes shared across phases on purpose.
        let shared = ["tenant_not_found"];
        assert!(
            c.phase == e.phase || shared.contains(&c.id),
            "{}: phase {:?} but cause {} is {:?}",
            e.symbol,
            e.phase,
            c.id,
            c.phase
        );
    }
}

#[test]
fn cause_ids_are_unique_snake_case_with_text() {
    let mut seen = HashSet::new();
    for c in causes() {
        assert!(is_snake_case(c.id), "{} is not snake_case", c.id);
        assert!(seen.insert(c.id), "cause {} listed twice", c.id);
        assert!(!c.text.is_empty() && !c.resolution.is_empty(), "{}", c.id);
        assert_ne!(c.phase, Phase::Unspecified, "{}", c.id);
    }
}

#[test]
fn diagnosis_causes_exist() {
    for (id, phase) in [
        ("dc_unreachable", Phase::PreCheck),
        ("not_system", Phase::PreCheck),
        ("scp_not_configured", Phase::Discover),
        ("no_prt", Phase::PostJoin),
        ("device_auth_failed", Phase::PostJoin),
        ("aad_recovery_pending", Phase::PostJoin),
        ("key_sign_failed", Phase::PostJoin),
        ("directory_error", Phase::Join),
    ] {
        assert_eq!(cause(id).map(|c| c.phase), Some(phase), "{id}");
    }
}

#[test]
fn lookup_by_every_form() {
    let want = Some("DSREG_E_DIRECTORY_FAILURE");
    for q in [
        "0x801c03f2",
        "0x801C03F2",
        "0X801c03f2",
        "  0x801c03f2\t",
        "-2145647630",
        "2149319666",
        "DSREG_E_DIRECTORY_FAILURE",
        "dsreg_e_directory_failure",
        " Dsreg_E_Directory_Failure ",
        "0xffffffff801c03f2",
    ] {
        assert_eq!(find(q).map(|e| e.symbol), want, "{q:?}");
    }
    assert_eq!(
        lookup(0x801c03f2).map(|e| e.hex()),
        Some("0x801c03f2".into())
    );
    assert_eq!(
        find("12002").map(|e| e.symbol),
        Some("ERROR_WINHTTP_TIMEOUT")
    );
    assert_eq!(
        find("0x80072ee2").map(|e| e.symbol),
        Some("WININET_E_TIMEOUT")
    );
    assert_eq!(find("0x2EE2").map(Entry::hex), Some("0x00002ee2".into()));
    for q in [
        "",
        "0x",
        "nonsense",
        "0x1ffffffff",
        "-99999999999",
        "DSREG_E",
    ] {
        assert_eq!(find(q), None, "{q:?}");
    }
}

#[test]
fn doc_bug_userrealm_is_0x801c003d() {
    let e = find("DSREG_AUTOJOIN_USERREALM_DISCOVERY_FAILED").expect("in catalog");
    assert_eq!((e.code, e.signed), (0x801c003d, -2145648579));
    assert_eq!(find("-2145648579").map(|e| e.symbol), Some(e.symbol));
    // The wrong pair the old docs print belongs to two other codes.
    assert_eq!(
        find("0x801c0021").map(|e| e.symbol),
        Some("DSREG_AUTOJOIN_DISC_FAILED")
    );
    assert_eq!(
        find("-2145648611").map(|e| e.symbol),
        Some("DSREG_AUTOJOIN_ADCONFIG_READ_FAILED")
    );
}

#[test]
fn doc_bug_saml_tokens_forms() {
    let sym = Some("AAD_CLOUDAP_E_WSTRUST_SAML_TOKENS_ARE_EMPTY");
    for q in [
        "0xc00484c1",
        "0x800484c1",
        "0x800484C1",
        "-2147187519",
        "-1073445695",
        "--1073445695",
    ] {
        assert_eq!(find(q).map(|e| e.symbol), sym, "{q:?}");
    }
    assert_eq!(describe(0x800484c1).symbol, sym);
    assert_eq!(describe(0x800484c1).code, 0x800484c1);
}

#[test]
fn doc_bug_mixed_case_hex() {
    assert_eq!(
        find("0xc004848C").map(|e| e.symbol),
        Some("AAD_CLOUDAP_E_HTTP_CERTIFICATE_URI_IS_EMPTY")
    );
}

#[test]
fn doc_bug_internalservice_error_is_not_directory_error() {
    let e = find("0x801c0006").expect("in catalog");
    assert_eq!(e.symbol, "DSREG_E_DEVICE_INTERNALSERVICE_ERROR");
    assert_ne!(e.cause, "directory_error");
    assert!(e.text.contains("unreliable"), "{}", e.text);
    assert_eq!(
        find("0x801c0002").map(|e| e.cause),
        Some("drs_authentication_error")
    );
}

#[test]
fn facilities() {
    for (code, f) in [
        (0x801c9999, Facility::Dsreg),
        (0x80072eff, Facility::WinInet),
        (0x80072ee0, Facility::WinInet),
        (0x80072fff, Facility::WinInet),
        (0x80073000, Facility::Win32),
        (0x80072edf, Facility::Win32),
        (0xcaa99999, Facility::Adal),
        (0xcaa82ee2, Facility::Adal),
        (0x80280099, Facility::Tpm),
        (0x80290407, Facility::Tpm),
        (0xc0001234, Facility::NtStatus),
        (0xc0048442, Facility::CloudAp),
        (0x80048442, Facility::CloudAp),
        (0xd0020017, Facility::NtHresult),
        (0x80090016, Facility::Security),
        (0x80180014, Facility::MdmEnroll),
        (0x00002ee2, Facility::Other),
    ] {
        assert_eq!(facility(code), f, "{code:#010x}");
    }
}

#[test]
fn describe_falls_back_by_facility() {
    for (code, id, phase) in [
        (0x801c9999, "unknown_dsreg", Phase::Join),
        (0x80072eff, "unknown_wininet", Phase::Discover),
        (0xcaa99999, "unknown_adal", Phase::Auth),
        (0x80280099, "unknown_tpm", Phase::Join),
        (0xc0001234, "unknown_ntstatus", Phase::PostJoin),
        (0x12345678, "unknown_other", Phase::Join),
    ] {
        let d = describe(code);
        assert!(!d.known && d.symbol.is_none(), "{code:#010x}");
        assert_eq!((d.cause.id, d.phase, d.code), (id, phase, code));
    }
    let d = describe(0x801c03f2);
    assert!(d.known);
    assert_eq!(d.symbol, Some("DSREG_E_DIRECTORY_FAILURE"));
    assert_eq!((d.cause.id, d.phase), ("directory_error", Phase::Join));
}

#[test]
fn every_facility_has_its_unknown_cause() {
    for f in Facility::ALL {
        let id = format!("unknown_{}", f.name());
        assert_eq!(f.unknown_cause().id, id);
        assert!(cause(&id).is_some(), "{id}");
    }
    // No stray `unknown_*` cause outside the facility set.
    let n = causes()
        .iter()
        .filter(|c| c.id.starts_with("unknown_"))
        .count();
    assert_eq!(n, Facility::ALL.len());
}
