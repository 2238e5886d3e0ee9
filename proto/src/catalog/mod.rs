//! The error-code catalog: every code of `reference/error-codes.md` §A, §C, §E, §F and §G with
//! symbol, hex, signed decimal, phase, cause id, cause text and resolution, in our own words;
//! plus the facility fallback for codes nobody documented.
//!
//! - [`entries`] / [`lookup`] / [`find`]: the documented codes (data in `table.rs`).
//! - [`causes`] / [`cause`]: the closed set of cause ids (data in `causes.rs`). It is closed on
//!   purpose: cause ids become Prometheus label values, so they must stay a bounded set.
//! - [`facility`] / [`describe`]: any 32-bit code, known or not, gets a phase and a cause; an
//!   unknown one gets `unknown_<facility>`.
//!
//! Invariants, all checked by the tests below: `signed as u32 == code` for every entry; no two
//! entries share a code, alias or symbol; every cause id an entry names exists; every cause id
//! is unique snake_case; an entry's phase is its cause's phase (except causes deliberately
//! shared across phases, listed in the test). The doc bugs of the reference's §0 are corrected
//! here and each has a test.

mod causes;
mod table;

use crate::Phase;

/// One documented code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Symbol, e.g. `DSREG_E_DIRECTORY_FAILURE`. Codes without a certain name carry a
    /// synthetic symbol ending in `_0x` + eight upper-case hex digits (see [`Entry::is_named`]).
    pub symbol: &'static str,
    /// The code as an unsigned 32-bit value.
    pub code: u32,
    /// The signed decimal the docs print (checked against `code` in tests).
    pub signed: i32,
    /// The phase a failure with this code belongs to (its first listing in the docs).
    pub phase: Phase,
    /// Stable snake_case cause id (see [`cause`]).
    pub cause: &'static str,
    /// One line: what this code means.
    pub text: &'static str,
    /// One line: what to do about it.
    pub resolution: &'static str,
    /// Other documented codes for the same symbol (e.g. 0x800484c1 for
    /// `AAD_CLOUDAP_E_WSTRUST_SAML_TOKENS_ARE_EMPTY`); [`lookup`] matches them too.
    pub aliases: &'static [u32],
}

impl Entry {
    /// The code as lower-case `0x%08x`, the form JSON and the API use.
    pub fn hex(&self) -> String {
        crate::hex(self.code)
    }

    /// `false` when the symbol is synthetic (the docs give the code no certain name).
    pub fn is_named(&self) -> bool {
        !self.symbol.contains("_0x")
    }

    /// The entry's cause (always present: the tests guarantee it).
    pub fn cause(&self) -> &'static Cause {
        cause(self.cause).unwrap_or(Facility::Other.unknown_cause())
    }
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

/// The family a 32-bit code belongs to, read from its bit pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Facility {
    /// `0x801cxxxx`: device registration (DSREG).
    Dsreg,
    /// `0x8007xxxx` outside the WinINet range: HRESULT_FROM_WIN32.
    Win32,
    /// `0x80072ee0..=0x80072fff`: WinINet/WinHTTP errors as HRESULTs.
    WinInet,
    /// `0xcaaxxxxx`: the ADAL authentication library.
    Adal,
    /// `0x8028xxxx` / `0x8029xxxx`: TPM.
    Tpm,
    /// `0xc000xxxx`: NTSTATUS.
    NtStatus,
    /// `0xdxxxxxxx`: HRESULT_FROM_NT (an NTSTATUS with the NT-facility bit set).
    NtHresult,
    /// `0x8009xxxx`: security and crypto providers (`NTE_*`, `SEC_E_*`).
    Security,
    /// `0x8018xxxx`: MDM enrollment (`MENROLL_E_*`).
    MdmEnroll,
    /// `0xc004xxxx` / `0x8004xxxx`: the CloudAP (Entra sign-in) plug-in.
    CloudAp,
    /// Anything else.
    Other,
}

impl Facility {
    /// Every facility, in the order [`facility`] tests them.
    pub const ALL: [Facility; 11] = [
        Facility::WinInet,
        Facility::Win32,
        Facility::Dsreg,
        Facility::Adal,
        Facility::Tpm,
        Facility::NtStatus,
        Facility::NtHresult,
        Facility::Security,
        Facility::MdmEnroll,
        Facility::CloudAp,
        Facility::Other,
    ];

    /// Stable snake_case name (`dsreg`, `wininet`, …); the suffix of `unknown_<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Facility::Dsreg => "dsreg",
            Facility::Win32 => "win32",
            Facility::WinInet => "wininet",
            Facility::Adal => "adal",
            Facility::Tpm => "tpm",
            Facility::NtStatus => "ntstatus",
            Facility::NtHresult => "nt_hresult",
            Facility::Security => "security",
            Facility::MdmEnroll => "mdm_enroll",
            Facility::CloudAp => "cloudap",
            Facility::Other => "other",
        }
    }

    /// The fallback cause `unknown_<name>` for an undocumented code of this facility.
    pub fn unknown_cause(self) -> &'static Cause {
        let id = match self {
            Facility::Dsreg => "unknown_dsreg",
            Facility::Win32 => "unknown_win32",
            Facility::WinInet => "unknown_wininet",
            Facility::Adal => "unknown_adal",
            Facility::Tpm => "unknown_tpm",
            Facility::NtStatus => "unknown_ntstatus",
            Facility::NtHresult => "unknown_nt_hresult",
            Facility::Security => "unknown_security",
            Facility::MdmEnroll => "unknown_mdm_enroll",
            Facility::CloudAp => "unknown_cloudap",
            Facility::Other => crate::labels::UNKNOWN_CAUSE,
        };
        // The last cause is `unknown_other`; a test checks every `unknown_*` id exists.
        cause(id).unwrap_or(&causes::CAUSES[causes::CAUSES.len() - 1])
    }
}

/// The facility of a code. WinINet is tested before Win32 because its range lies inside
/// `0x8007xxxx`.
pub fn facility(code: u32) -> Facility {
    match code {
        0x8007_2ee0..=0x8007_2fff => Facility::WinInet,
        _ => match code >> 16 {
            0x8007 => Facility::Win32,
            0x801c => Facility::Dsreg,
            0x8028 | 0x8029 => Facility::Tpm,
            0xc000 => Facility::NtStatus,
            0x8009 => Facility::Security,
            0x8018 => Facility::MdmEnroll,
            0xc004 | 0x8004 => Facility::CloudAp,
            _ if code >> 20 == 0xcaa => Facility::Adal,
            _ if code >> 28 == 0xd => Facility::NtHresult,
            _ => Facility::Other,
        },
    }
}

/// Everything known about a code: its catalog entry when documented, else its facility's
/// fallback cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Description {
    /// The code asked about (an alias stays as given).
    pub code: u32,
    /// The catalog symbol, `None` for an undocumented code.
    pub symbol: Option<&'static str>,
    /// The phase a failure with this code belongs to when nothing else says otherwise.
    pub phase: Phase,
    /// The cause: the entry's own, or `unknown_<facility>`.
    pub cause: &'static Cause,
    /// `true` when the code is in the catalog.
    pub known: bool,
}

/// Describes any code: catalog entry first, facility fallback second. Total: never fails.
pub fn describe(code: u32) -> Description {
    match lookup(code) {
        Some(e) => Description {
            code,
            symbol: Some(e.symbol),
            phase: e.phase,
            cause: e.cause(),
            known: true,
        },
        None => {
            let cause = facility(code).unknown_cause();
            Description {
                code,
                symbol: None,
                phase: cause.phase,
                cause,
                known: false,
            }
        }
    }
}

/// Every catalog entry.
pub fn entries() -> &'static [Entry] {
    table::ENTRIES
}

/// Every cause id the classification can produce (a closed set: bounded metric labels).
pub fn causes() -> &'static [Cause] {
    causes::CAUSES
}

/// The cause with this id.
pub fn cause(id: &str) -> Option<&'static Cause> {
    let id = canonical_cause(id);
    causes::CAUSES.iter().find(|c| c.id == id)
}

/// Cause ids that were merged into another one: `(old, kept)`. Ids are a public contract, so
/// an old id keeps resolving (API filters, stored rows of older versions) to the kept one.
pub const CAUSE_ALIASES: &[(&str, &str)] = &[
    // Both meant "Entra refuses the device: disabled or deleted" (DeviceAuthStatus and
    // AADSTS50155); one id, so one attempt is never counted under two causes.
    ("device_authentication_failed", "device_auth_failed"),
];

/// The kept id for `id` (itself unless it was merged into another, see [`CAUSE_ALIASES`]).
pub fn canonical_cause(id: &str) -> &str {
    CAUSE_ALIASES
        .iter()
        .find(|(old, _)| *old == id)
        .map_or(id, |(_, kept)| kept)
}

/// The entry for a code, matching its primary code first and then its aliases.
pub fn lookup(code: u32) -> Option<&'static Entry> {
    let all = table::ENTRIES;
    all.iter()
        .find(|e| e.code == code)
        .or_else(|| all.iter().find(|e| e.aliases.contains(&code)))
}

/// Looks up by hex (`0x801C03F2`), signed or unsigned decimal, or symbol; case-insensitive,
/// surrounding whitespace ignored.
pub fn find(query: &str) -> Option<&'static Entry> {
    let q = query.trim();
    parse_code(q).and_then(lookup).or_else(|| {
        table::ENTRIES
            .iter()
            .find(|e| e.symbol.eq_ignore_ascii_case(q))
    })
}

/// Parses `0x…` hex (any case) or a signed/unsigned decimal into a 32-bit code.
///
/// Also accepted, because real text contains them: a sign-extended 64-bit hex form
/// (`0xffffffff801c03f2`), a leading `+`, and a doubled minus (`--1073445695`, a typo in the
/// docs, §0.3).
pub fn parse_code(s: &str) -> Option<u32> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        let v = u64::from_str_radix(h, 16).ok()?;
        return match u32::try_from(v) {
            Ok(v) => Some(v),
            // Sign-extended: upper half all ones and bit 31 set.
            Err(_) if v >> 32 == 0xffff_ffff && v & 0x8000_0000 != 0 => Some(v as u32),
            Err(_) => None,
        };
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let s = s
        .strip_prefix('-')
        .filter(|r| r.starts_with('-'))
        .unwrap_or(s);
    if let Ok(v) = s.parse::<u32>() {
        return Some(v);
    }
    s.parse::<i32>().ok().map(|v| v as u32)
}

#[cfg(test)]
mod tests;
