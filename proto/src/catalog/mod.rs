//! The error-code catalog: every code of `reference/error-codes.md` §A–§G with symbol, hex,
//! signed decimal, phase, cause id, cause text and resolution, in our own words.
//!
//! SKELETON: the public API below is fixed; the table is being filled in.

use crate::Phase;

/// One documented code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Symbol, e.g. `DSREG_E_DIRECTORY_FAILURE`.
    pub symbol: &'static str,
    /// The code as an unsigned 32-bit value.
    pub code: u32,
    /// The signed decimal the docs print (checked against `code` in tests).
    pub signed: i32,
    /// The phase a failure with this code belongs to.
    pub phase: Phase,
    /// Stable snake_case cause id (see [`cause`]).
    pub cause: &'static str,
}

/// A cause: the stable id used in `failure.cause`, metrics labels and the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cause {
    /// Stable snake_case id, e.g. `device_not_synced`.
    pub id: &'static str,
    /// Phase this cause belongs to.
    pub phase: Phase,
    /// One line: what is wrong.
    pub text: &'static str,
    /// What to do next.
    pub resolution: &'static str,
}

const ENTRIES: &[Entry] = &[Entry {
    symbol: "DSREG_E_DIRECTORY_FAILURE",
    code: 0x801c03f2,
    signed: -2145647630,
    phase: Phase::Join,
    cause: "directory_error",
}];

const CAUSES: &[Cause] = &[Cause {
    id: "directory_error",
    phase: Phase::Join,
    text: "the device registration service answered with DirectoryError",
    resolution: "read the server message",
}];

/// Every catalog entry.
pub fn entries() -> &'static [Entry] {
    ENTRIES
}

/// Every cause id the classification can produce (a closed set: bounded metric labels).
pub fn causes() -> &'static [Cause] {
    CAUSES
}

/// The cause with this id.
pub fn cause(id: &str) -> Option<&'static Cause> {
    CAUSES.iter().find(|c| c.id == id)
}

/// The primary entry for a code.
pub fn lookup(code: u32) -> Option<&'static Entry> {
    ENTRIES.iter().find(|e| e.code == code)
}

/// Looks up by hex (`0x801C03F2`), signed or unsigned decimal, or symbol; case-insensitive.
pub fn find(query: &str) -> Option<&'static Entry> {
    let q = query.trim();
    parse_code(q)
        .and_then(lookup)
        .or_else(|| ENTRIES.iter().find(|e| e.symbol.eq_ignore_ascii_case(q)))
}

/// Parses `0x…` hex (any case) or a signed/unsigned decimal into a 32-bit code.
pub fn parse_code(s: &str) -> Option<u32> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return u32::from_str_radix(h, 16).ok();
    }
    if let Ok(v) = s.parse::<u32>() {
        return Some(v);
    }
    s.parse::<i32>().ok().map(|v| v as u32)
}
