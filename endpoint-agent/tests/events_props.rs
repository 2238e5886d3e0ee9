//! Property tests of the event-log parser beyond `events.rs`' arbitrary bytes: the real
//! fixtures of `testdata/events/` MUTATED (byte flips, cuts, duplicated spans, hostile
//! snippets spliced in: CDATA ends, entities of NUL and lone surrogates, unbalanced tags,
//! JSON escapes), also re-encoded as UTF-16LE with lone surrogates, and pathological nesting.
//! The parser must be total: `Ok` or `Err`, never a panic, never a stack overflow.

use dsreg_agent::events::parse_events;
use proptest::prelude::*;

const FIXTURES: &[&str] = &[
    "wevtutil-204-directory-error.xml",
    "wevtutil-mixed.xml",
    "wevtutil-rendered-wrapped.xml",
    "get-winevent-ps51.json",
    "get-winevent-ps7.json",
];

const SNIPPETS: &[&str] = &[
    "<Event>",
    "</Event>",
    "</",
    "<",
    ">",
    "]]>",
    "<![CDATA[",
    "&#0;",
    "&#xD800;",
    "&#x110000;",
    "&unknown;",
    "&amp",
    "<Data Name=\"",
    "<?xml version=\"1.0\" encoding=\"UTF-16\"?>",
    "<!DOCTYPE x [<!ENTITY a \"aaaaaaaaaa\">]>",
    "\"",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\\u0000",
    "\\ud800",
    "\\udfff\\ud800",
    "\"Id\": 99999999999999999999999",
    "\"TimeCreated\": \"/Date(-99999999999999)/\"",
    "\u{0}",
    "\u{feff}",
    "\r",
];

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/testdata/events/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, byte: u8 },
    Cut { at: usize },
    Delete { at: usize, len: usize },
    Duplicate { at: usize, len: usize },
    Insert { at: usize, snippet: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Flip { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Cut { at }),
        (any::<usize>(), 0usize..200).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), 0usize..400).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        (any::<usize>(), 0..SNIPPETS.len())
            .prop_map(|(at, snippet)| Mutation::Insert { at, snippet }),
    ]
}

fn apply(mut b: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let n = b.len().max(1);
        match *m {
            Mutation::Flip { at, byte } => {
                if !b.is_empty() {
                    b[at % n] = byte;
                }
            }
            Mutation::Cut { at } => b.truncate(at % n),
            Mutation::Delete { at, len } => {
                let at = at % n;
                let end = (at + len).min(b.len());
                if at < end {
                    b.drain(at..end);
                }
            }
            Mutation::Duplicate { at, len } => {
                let at = at % n;
                let end = (at + len).min(b.len());
                if at < end {
                    let span = b[at..end].to_vec();
                    b.splice(end..end, span);
                }
            }
            Mutation::Insert { at, snippet } => {
                let at = (at % n).min(b.len());
                b.splice(at..at, SNIPPETS[snippet].bytes());
            }
        }
    }
    b
}

/// UTF-16LE with BOM, then (possibly) lone surrogates written over some code units.
fn utf16le(text: &[u8], surrogates: &[(usize, u16)]) -> Vec<u8> {
    let s = String::from_utf8_lossy(text);
    let mut units: Vec<u16> = s.encode_utf16().collect();
    for (at, unit) in surrogates {
        if !units.is_empty() {
            let i = at % units.len();
            units[i] = *unit;
        }
    }
    let mut out = vec![0xff, 0xfe];
    for u in units {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn mutated_fixtures_never_panic(
        which in 0..FIXTURES.len(),
        muts in proptest::collection::vec(mutation(), 1..12),
    ) {
        let bytes = apply(fixture(FIXTURES[which]), &muts);
        if let Ok(p) = parse_events(&bytes) {
            // What comes out is well formed: every warning is text a person can read.
            for w in &p.warnings {
                prop_assert!(!w.is_empty());
            }
        }
    }

    #[test]
    fn mutated_utf16_with_lone_surrogates_never_panics(
        which in 0..FIXTURES.len(),
        muts in proptest::collection::vec(mutation(), 0..6),
        surrogates in proptest::collection::vec((any::<usize>(), 0xd800u16..0xe000), 0..6),
        odd in any::<bool>(),
    ) {
        let mut bytes = utf16le(&apply(fixture(FIXTURES[which]), &muts), &surrogates);
        if odd {
            bytes.push(0x41); // an odd byte count: a cut UTF-16 stream
        }
        let _ = parse_events(&bytes);
    }
}

#[test]
fn pathological_nesting_is_an_error_not_a_stack_overflow() {
    for input in [
        "[".repeat(100_000),
        "{\"a\":".repeat(50_000),
        "<a>".repeat(100_000),
        format!("<Event>{}</Event>", "<Data>".repeat(50_000)),
        "<Events>".to_string()
            + &"<Event><System><EventID>204</EventID></System></Event>".repeat(20_000),
    ] {
        let _ = parse_events(input.as_bytes());
    }
}
