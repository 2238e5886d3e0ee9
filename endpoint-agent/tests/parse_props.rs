//! Property tests: the parser is total. Arbitrary bytes and mutated fixtures (byte flips,
//! line deletions and duplications, truncation at any byte, random indentation, UTF-16)
//! never panic, and what comes out keeps its invariants. Case counts stay modest so the
//! suite is quick on a 2-core machine.

mod common;

use dsreg_agent::dsregcmd::parse;
use proptest::prelude::*;

fn fixture(i: usize) -> Vec<u8> {
    let names = common::dsregcmd_names();
    common::dsregcmd(&names[i % names.len()])
}

/// Parses and checks the invariants that hold for any input.
fn check(bytes: &[u8]) {
    let s = parse(bytes);
    assert_eq!(s.join_type, 0, "the parser never sets join_type");
    assert!(s.failure.is_none(), "the parser never sets failure");
    let lines = u32::try_from(bytes.len() + 1).unwrap();
    for w in &s.warnings {
        assert!(w.line <= lines, "warning line {} out of range", w.line);
        assert!(!w.message.is_empty());
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Building blocks of dsregcmd-like lines, to reach the deeper states faster than random
/// bytes do.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("+----------------------------------------------------------------------+".into()),
        Just("| Work Account 1 |".into()),
        Just("| SSO State |".into()),
        Just("| Diagnostic Data |".into()),
        Just("| Mystery |".into()),
        Just("AcquirePrtDiagnostics : PRESENT".into()),
        Just("RefreshPrtDiagnostics : PRESENT".into()),
        Just("Attempt Status : 0x".into()),
        Just("Previous Registration : 2022-11-07 15:50:24.000 UTC".into()),
        Just("AD Configuration Test : FAIL [0x8007/".into()),
        Just("WamDefaultSet : ERROR (".into()),
        Just("KeySignTest: : ".into()),
        Just("DSREGCMD_END_STATUS".into()),
        Just("**NgcSet : YES**".into()),
        Just("```".into()),
        "[ -~]{0,100}",
        "\\PC{0,40}",
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check(&bytes);
    }

    #[test]
    fn utf16_prefixed_bytes_never_panic(
        bom in prop_oneof![Just(&b"\xFF\xFE"[..]), Just(&b"\xFE\xFF"[..]), Just(&b"\xEF\xBB\xBF"[..])],
        bytes in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        check(&[bom, &bytes[..]].concat());
    }

    #[test]
    fn dsregcmd_like_lines_never_panic(
        lines in proptest::collection::vec(token(), 0..60),
        sep in prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
    ) {
        check(lines.join(sep).as_bytes());
    }

    #[test]
    fn byte_flips_never_panic(
        i in 0usize..16,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
    ) {
        let mut bytes = fixture(i);
        for (at, b) in flips {
            let at = at.index(bytes.len());
            bytes[at] = b;
        }
        check(&bytes);
    }

    #[test]
    fn truncation_at_any_byte_never_panics(i in 0usize..16, at in any::<prop::sample::Index>()) {
        let bytes = fixture(i);
        let cut = at.index(bytes.len() + 1);
        check(&bytes[..cut]);
        // The same cut in a UTF-16LE capture lands mid code unit half of the time.
        let text = String::from_utf8(bytes).unwrap();
        let mut wide = vec![0xFF, 0xFE];
        wide.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        let cut = at.index(wide.len() + 1);
        check(&wide[..cut]);
    }

    #[test]
    fn line_edits_and_indentation_never_panic(
        i in 0usize..16,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, 0usize..12), 1..24),
    ) {
        let text = String::from_utf8(fixture(i)).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        for (at, op, n) in edits {
            if lines.is_empty() {
                break;
            }
            let at = at.index(lines.len());
            match op {
                0 => drop(lines.remove(at)),
                1 => lines.insert(at, lines[at].clone()),
                2 => lines[at] = format!("{}{}", " ".repeat(n), lines[at].trim_start()),
                _ => lines[at] = format!("{}{}", "\t".repeat(n % 3), lines[at]),
            }
        }
        check(lines.join("\n").as_bytes());
    }
}

#[test]
fn long_inputs_stay_linear() {
    // A pathological input: one huge wrapped value, thousands of repeats and unknown
    // sections. It must finish quickly (no quadratic joins), so it is a plain test with a
    // size that would take minutes if the parser were quadratic.
    let mut text = String::from("| URL Specific Proxy Config |\n");
    text.push_str("Auto Detect PAC Status : ");
    text.push_str(&"wrapped value text ".repeat(4));
    text.push_str("abc\n");
    for _ in 0..20_000 {
        text.push_str("continues here with more text\n");
    }
    for i in 0..20_000 {
        text.push_str(&format!("| Section {i} |\nAzureAdJoined : YES\n"));
    }
    let s = parse(text.as_bytes());
    let pac = s
        .url_specific_proxy_config
        .unwrap()
        .auto_detect_pac_status
        .unwrap();
    assert!(pac.len() > 20_000 * 29);
}
