//! Bytes → text: detects how a `dsregcmd /status` capture was encoded and decodes it.
//!
//! Captures arrive as UTF-8 (with or without BOM), UTF-16LE with BOM (a Windows PowerShell 5.1
//! `>` redirect), UTF-16BE with BOM, UTF-16 without BOM (recognised by its NUL pattern), or the
//! OEM code page bytes dsregcmd writes to a pipe (decoded as cp850, the Western-European OEM
//! code page). Invariants: [`decode`] is total (any bytes in, text out, never a panic), runs
//! in one linear pass, and borrows the input when it is already valid UTF-8 without a BOM.
//! Every guess or repair it makes is reported in [`Decoded::warnings`].

use std::borrow::Cow;

/// The encoding [`decode`] detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 without a byte-order mark (ASCII included).
    Utf8,
    /// UTF-8 with a byte-order mark (stripped).
    Utf8Bom,
    /// UTF-16 little-endian; `bom` is false when detected from the NUL pattern.
    Utf16Le {
        /// Whether the input started with a byte-order mark.
        bom: bool,
    },
    /// UTF-16 big-endian; `bom` is false when detected from the NUL pattern.
    Utf16Be {
        /// Whether the input started with a byte-order mark.
        bom: bool,
    },
    /// Not valid UTF-8: decoded as OEM code page 850.
    Cp850,
}

impl Encoding {
    /// A short human name, used in warnings.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "UTF-8",
            Encoding::Utf8Bom => "UTF-8 with BOM",
            Encoding::Utf16Le { bom: true } => "UTF-16LE with BOM",
            Encoding::Utf16Le { bom: false } => "UTF-16LE without BOM",
            Encoding::Utf16Be { bom: true } => "UTF-16BE with BOM",
            Encoding::Utf16Be { bom: false } => "UTF-16BE without BOM",
            Encoding::Cp850 => "OEM code page 850",
        }
    }
}

/// The decoded text of a capture.
#[derive(Debug, Clone)]
pub struct Decoded<'a> {
    /// The text, without byte-order mark. Borrowed when the input was plain UTF-8.
    pub text: Cow<'a, str>,
    /// What [`decode`] detected.
    pub encoding: Encoding,
    /// What looked wrong or was guessed (no BOM, invalid sequences, code-page fallback).
    pub warnings: Vec<String>,
}

/// Decodes a capture's bytes; see the module doc for the detection order.
pub fn decode(input: &[u8]) -> Decoded<'_> {
    if let Some(rest) = input.strip_prefix(b"\xEF\xBB\xBF") {
        return utf8_or_cp850(rest, Encoding::Utf8Bom);
    }
    if let Some(rest) = input.strip_prefix(b"\xFF\xFE") {
        return utf16(rest, true, Encoding::Utf16Le { bom: true });
    }
    if let Some(rest) = input.strip_prefix(b"\xFE\xFF") {
        return utf16(rest, false, Encoding::Utf16Be { bom: true });
    }
    match nul_pattern(input) {
        Some(true) => utf16(input, true, Encoding::Utf16Le { bom: false }),
        Some(false) => utf16(input, false, Encoding::Utf16Be { bom: false }),
        None => utf8_or_cp850(input, Encoding::Utf8),
    }
}

/// Guesses BOM-less UTF-16 from where the NUL bytes sit in the first 512 bytes: text that is
/// mostly ASCII has a NUL in every odd byte (LE) or every even byte (BE). Returns `Some(true)`
/// for LE, `Some(false)` for BE, `None` for "not UTF-16".
fn nul_pattern(input: &[u8]) -> Option<bool> {
    let head = input.get(..input.len().min(512))?;
    let pairs = head.len() / 2;
    if pairs < 2 {
        return None;
    }
    let (mut even_nul, mut odd_nul) = (0usize, 0usize);
    for pair in head.chunks_exact(2) {
        if let [a, b] = pair {
            even_nul += usize::from(*a == 0);
            odd_nul += usize::from(*b == 0);
        }
    }
    // At least 3/4 of the code units look like ASCII in that byte order, the other byte
    // is rarely NUL.
    if odd_nul * 4 >= pairs * 3 && even_nul * 4 < pairs {
        Some(true)
    } else if even_nul * 4 >= pairs * 3 && odd_nul * 4 < pairs {
        Some(false)
    } else {
        None
    }
}

fn utf8_or_cp850(bytes: &[u8], encoding: Encoding) -> Decoded<'_> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Decoded {
            text: Cow::Borrowed(text),
            encoding,
            warnings: Vec::new(),
        },
        Err(err) => Decoded {
            text: Cow::Owned(cp850(bytes)),
            encoding: Encoding::Cp850,
            warnings: vec![format!(
                "input is not valid UTF-8 (bad byte at offset {}); decoded as OEM code page 850",
                err.valid_up_to()
            )],
        },
    }
}

fn utf16(bytes: &[u8], little_endian: bool, encoding: Encoding) -> Decoded<'_> {
    let mut warnings = Vec::new();
    if !matches!(
        encoding,
        Encoding::Utf16Le { bom: true } | Encoding::Utf16Be { bom: true }
    ) {
        warnings.push(format!(
            "input has no byte-order mark; decoded as {} (NUL-byte pattern)",
            encoding.name()
        ));
    }
    let units = bytes.chunks_exact(2).map(|pair| match pair {
        [a, b] if little_endian => u16::from_le_bytes([*a, *b]),
        [a, b] => u16::from_be_bytes([*a, *b]),
        _ => 0xFFFD,
    });
    let mut text = String::with_capacity(bytes.len() / 2 + 8);
    let mut bad = 0usize;
    for unit in char::decode_utf16(units) {
        match unit {
            Ok(c) => text.push(c),
            Err(_) => {
                bad += 1;
                text.push(char::REPLACEMENT_CHARACTER);
            }
        }
    }
    if bad > 0 {
        warnings.push(format!(
            "{bad} unpaired UTF-16 surrogate(s) in the {} input replaced by U+FFFD",
            encoding.name()
        ));
    }
    if bytes.len() % 2 == 1 {
        warnings.push(format!(
            "{} input has an odd number of bytes; the last byte was dropped",
            encoding.name()
        ));
    }
    Decoded {
        text: Cow::Owned(text),
        encoding,
        warnings,
    }
}

/// Decodes OEM code page 850 bytes (ASCII below 0x80, [`CP850_HIGH`] above).
pub fn cp850(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() + bytes.len() / 4);
    for &b in bytes {
        if b < 0x80 {
            text.push(char::from(b));
        } else {
            text.push(CP850_HIGH[usize::from(b & 0x7F)]);
        }
    }
    text
}

/// Encodes text as cp850 (for tests and tools); characters outside the code page become `?`.
pub fn encode_cp850(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| {
            if c.is_ascii() {
                c as u8
            } else {
                CP850_HIGH
                    .iter()
                    .position(|&h| h == c)
                    .map_or(b'?', |i| 0x80 | (i as u8))
            }
        })
        .collect()
}

/// OEM code page 850, bytes 0x80..=0xFF (from the Microsoft code page table).
pub const CP850_HIGH: [char; 128] = [
    // 0x80
    'Ç', 'ü', 'é', 'â', 'ä', 'à', 'å', 'ç', 'ê', 'ë', 'è', 'ï', 'î', 'ì', 'Ä', 'Å',
    // 0x90
    'É', 'æ', 'Æ', 'ô', 'ö', 'ò', 'û', 'ù', 'ÿ', 'Ö', 'Ü', 'ø', '£', 'Ø', '×', 'ƒ',
    // 0xA0
    'á', 'í', 'ó', 'ú', 'ñ', 'Ñ', 'ª', 'º', '¿', '®', '¬', '½', '¼', '¡', '«', '»',
    // 0xB0
    '░', '▒', '▓', '│', '┤', 'Á', 'Â', 'À', '©', '╣', '║', '╗', '╝', '¢', '¥', '┐',
    // 0xC0
    '└', '┴', '┬', '├', '─', '┼', 'ã', 'Ã', '╚', '╔', '╩', '╦', '╠', '═', '╬', '¤',
    // 0xD0
    'ð', 'Ð', 'Ê', 'Ë', 'È', 'ı', 'Í', 'Î', 'Ï', '┘', '┌', '█', '▄', '¦', 'Ì', '▀',
    // 0xE0
    'Ó', 'ß', 'Ô', 'Ò', 'õ', 'Õ', 'µ', 'þ', 'Þ', 'Ú', 'Û', 'Ù', 'ý', 'Ý', '¯', '´',
    // 0xF0
    '\u{AD}', '±', '‗', '¾', '¶', '§', '÷', '¸', '°', '¨', '·', '¹', '³', '²', '■', '\u{A0}',
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_utf8_is_borrowed() {
        let d = decode(b"A : B\r\n");
        assert!(matches!(d.text, Cow::Borrowed("A : B\r\n")));
        assert_eq!(d.encoding, Encoding::Utf8);
        assert!(d.warnings.is_empty());
    }

    #[test]
    fn cp850_table_spot_checks() {
        // é printed by a cp1252 program and read as cp850 shows as Ú (reference §1.4).
        assert_eq!(cp850(&[0xE9]), "Ú");
        assert_eq!(cp850(&[0x82, 0x80, 0x9C, 0xFF]), "éÇ£\u{A0}");
        let d = decode(b"TenantName : Soci\x82t\x82");
        assert_eq!(d.encoding, Encoding::Cp850);
        assert_eq!(d.text, "TenantName : Société");
        assert_eq!(d.warnings.len(), 1);
        assert!(d.warnings[0].contains("code page 850"));
    }

    #[test]
    fn cp850_round_trip() {
        let all: Vec<u8> = (0x80..=0xFFu8).collect();
        assert_eq!(encode_cp850(&cp850(&all)), all);
    }

    #[test]
    fn utf16_without_bom_is_detected() {
        let le: Vec<u8> = "AzureAdJoined : YES\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let d = decode(&le);
        assert_eq!(d.encoding, Encoding::Utf16Le { bom: false });
        assert_eq!(d.text, "AzureAdJoined : YES\n");
        assert_eq!(d.warnings.len(), 1);
        let be: Vec<u8> = "AzureAdJoined : YES\n"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        assert_eq!(decode(&be).encoding, Encoding::Utf16Be { bom: false });
    }

    #[test]
    fn odd_and_broken_utf16_is_repaired() {
        let d = decode(b"\xFF\xFEA\x00\x00\xD8B");
        assert_eq!(d.text, "A\u{FFFD}");
        assert_eq!(d.warnings.len(), 2);
    }
}
