//! `reg query` output → registry keys and values.
//!
//! What `reg query KEY` prints, for one or several keys concatenated (a capture script runs it
//! once per key and appends, usually with `2>&1`):
//!
//! ```text
//!
//! HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\CDJ\AAD
//!     TenantId    REG_SZ    72f988bf-86f1-41af-91ab-2d7cd011db47
//!     TenantName    REG_SZ    contoso.onmicrosoft.com
//!
//! ERROR: The system was unable to find the specified registry key or value.
//!
//! HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Control\ProductOptions
//!     ProductType    REG_SZ    WinNT
//!     ProductSuite    REG_MULTI_SZ    Terminal Server\0
//! ```
//!
//! A header line names a key (`HKEY_LOCAL_MACHINE\…`, or the short `HKLM\…` forms); a value
//! line is `    Name    REG_TYPE    data`, four spaces apart (names may contain single spaces,
//! `(Default)` / `(Standard)` is the unnamed value, data may be empty or contain anything).
//! Without `/s`, `reg query` also lists the subkeys as bare header lines; they simply have no
//! values. `ERROR:` / `FEHLER:` lines (a key or value that does not exist, written in the
//! system language) and the `End of search: N match(es) found.` trailer of `/s` are
//! recognised; a missing key is "not set", never an error.
//!
//! Invariants: [`parse`] is total (any bytes in, a [`RegistryDump`] out, never a panic); it
//! keeps at most [`MAX_VALUES`] values of at most [`MAX_DATA`] characters each and at most
//! [`MAX_WARNINGS`] warnings, so a hostile or huge file costs bounded memory. Key paths are
//! normalised (`HKLM` → `HKEY_LOCAL_MACHINE`, a `WOW6432Node\` level dropped) and compared
//! case-insensitively, as Windows does.

use crate::dsregcmd::decode;

/// At most this many values are kept (the keys the agent reads have a few dozen).
pub const MAX_VALUES: usize = 4096;
/// Value data longer than this many characters is cut (and a warning says so).
pub const MAX_DATA: usize = 1024;
/// At most this many warnings are kept; one more says how many were left out.
pub const MAX_WARNINGS: usize = 32;

/// One registry value as `reg query` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegValue {
    /// The value name; empty for the unnamed `(Default)` value.
    pub name: String,
    /// The type as printed: `REG_SZ`, `REG_DWORD`, `REG_MULTI_SZ`, …
    pub kind: String,
    /// The data as printed: `0x1` for a DWORD, `a\0b` for a MULTI_SZ, hex digits for binary.
    pub data: String,
}

impl RegValue {
    /// A `REG_DWORD` / `REG_QWORD` (`0x…` as `reg query` prints it, or decimal) as a number;
    /// `None` for anything else or a value that does not fit.
    pub fn number(&self) -> Option<u64> {
        let d = self.data.trim();
        let n = match d.strip_prefix("0x").or_else(|| d.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16).ok()?,
            None => d.parse().ok()?,
        };
        matches!(
            self.kind.as_str(),
            "REG_DWORD" | "REG_QWORD" | "REG_DWORD_BIG_ENDIAN"
        )
        .then_some(n)
    }

    /// The data as text for a string type (`REG_SZ`, `REG_EXPAND_SZ`; the first string of a
    /// `REG_MULTI_SZ`), trimmed; `None` when empty or not a string type.
    pub fn text(&self) -> Option<&str> {
        let d = match self.kind.as_str() {
            "REG_SZ" | "REG_EXPAND_SZ" => self.data.as_str(),
            "REG_MULTI_SZ" => self.data.split("\\0").next().unwrap_or(""),
            _ => return None,
        };
        let d = d.trim();
        (!d.is_empty() && d != "(value not set)" && d != "(Wert nicht festgelegt)").then_some(d)
    }
}

/// One key and the values printed under it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegKey {
    /// Normalised path, e.g. `HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows NT\CurrentVersion`.
    pub path: String,
    /// Values in the order printed.
    pub values: Vec<RegValue>,
}

/// Everything read from one capture (or from the registry itself on Windows).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryDump {
    /// Keys in the order printed; a key printed twice appears twice.
    pub keys: Vec<RegKey>,
    /// How many `ERROR:` lines (keys or values not found) the capture had.
    pub not_found: usize,
    /// What looked wrong, each naming the line.
    pub warnings: Vec<String>,
}

impl RegistryDump {
    /// The value `name` of the key `path` (any spelling [`normalize_key`] accepts), compared
    /// case-insensitively; the first one printed wins.
    pub fn get(&self, path: &str, name: &str) -> Option<&RegValue> {
        let path = normalize_key(path);
        self.keys
            .iter()
            .filter(|k| k.path.eq_ignore_ascii_case(&path))
            .flat_map(|k| k.values.iter())
            .find(|v| v.name.eq_ignore_ascii_case(name))
    }

    /// The first value called `name` under any key.
    pub fn find_anywhere(&self, name: &str) -> Option<&RegValue> {
        self.keys
            .iter()
            .flat_map(|k| k.values.iter())
            .find(|v| v.name.eq_ignore_ascii_case(name))
    }

    fn warn(&mut self, message: String) {
        match self.warnings.len() {
            n if n < MAX_WARNINGS => self.warnings.push(message),
            n if n == MAX_WARNINGS => self
                .warnings
                .push("registry file: further warnings left out".to_owned()),
            _ => {}
        }
    }

    fn value_count(&self) -> usize {
        self.keys.iter().map(|k| k.values.len()).sum()
    }
}

/// The long root names `reg query` prints, and the short forms people paste.
const ROOTS: &[(&str, &str)] = &[
    ("HKEY_LOCAL_MACHINE", "HKEY_LOCAL_MACHINE"),
    ("HKLM", "HKEY_LOCAL_MACHINE"),
    ("HKEY_CURRENT_USER", "HKEY_CURRENT_USER"),
    ("HKCU", "HKEY_CURRENT_USER"),
    ("HKEY_USERS", "HKEY_USERS"),
    ("HKU", "HKEY_USERS"),
    ("HKEY_CLASSES_ROOT", "HKEY_CLASSES_ROOT"),
    ("HKCR", "HKEY_CLASSES_ROOT"),
    ("HKEY_CURRENT_CONFIG", "HKEY_CURRENT_CONFIG"),
    ("HKCC", "HKEY_CURRENT_CONFIG"),
];

/// `HKLM\Software\WOW6432Node\X` → `HKEY_LOCAL_MACHINE\Software\X`: the long root name, no
/// `WOW6432Node` level, no trailing backslash. `None` when `line` does not start with a root.
fn key_path(line: &str) -> Option<String> {
    let (root, rest) = match line.split_once('\\') {
        Some((r, rest)) => (r, rest),
        None => (line, ""),
    };
    let long = ROOTS
        .iter()
        .find(|(short, _)| short.eq_ignore_ascii_case(root.trim()))?
        .1;
    let mut out = String::from(long);
    for part in rest.split('\\').filter(|p| !p.is_empty()) {
        if part.eq_ignore_ascii_case("WOW6432Node") {
            continue;
        }
        out.push('\\');
        out.push_str(part);
    }
    Some(out)
}

/// Normalises a key path the way the parser does (see the module doc); a path without a
/// known root is returned as given.
pub fn normalize_key(path: &str) -> String {
    key_path(path.trim()).unwrap_or_else(|| path.trim().to_owned())
}

/// Splits a value line at its `REG_…` type: `(name, type, data)`.
fn value_line(line: &str) -> Option<(&str, &str, &str)> {
    // The type is the first `REG_` token that stands alone between runs of spaces (or at
    // the start of a copy-pasted line that lost its name column).
    let mut search = 0;
    while let Some(rel) = line.get(search..)?.find("REG_") {
        let at = search + rel;
        let before = line.get(..at)?;
        let boundary = before.is_empty() || before.ends_with(' ') || before.ends_with('\t');
        let after = line.get(at..)?;
        let kind_len = after.find([' ', '\t']).unwrap_or(after.len());
        let kind = after.get(..kind_len)?;
        let kind_ok = kind.len() > 4
            && kind
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit());
        if boundary && kind_ok {
            let name = before.trim();
            let data = after.get(kind_len..)?;
            // `reg query` puts four spaces between type and data; keep data's own spaces.
            let data = data
                .strip_prefix("    ")
                .unwrap_or_else(|| data.trim_start());
            return Some((name, kind, data.trim_end()));
        }
        search = at + 4;
    }
    None
}

/// True for the "not found" line in the languages seen in the field.
fn is_error_line(t: &str) -> bool {
    const PREFIXES: &[&str] = &["ERROR:", "FEHLER:", "ERREUR:", "ERRORE:", "FOUT:"];
    PREFIXES
        .iter()
        .any(|p| t.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p)))
}

/// True for the `/s` trailer (`End of search: 2 match(es) found.`, German
/// `Suche beendet: …`).
fn is_trailer(t: &str) -> bool {
    t.starts_with("End of search:") || t.starts_with("Suche beendet:")
}

/// Parses `reg query` output; see the module doc.
pub fn parse(input: &[u8]) -> RegistryDump {
    let decoded = decode::decode(input);
    let mut dump = RegistryDump::default();
    for w in decoded.warnings {
        dump.warn(format!("registry file: {w}"));
    }
    let mut current: Option<usize> = None;
    for (i, raw) in decoded.text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim_end_matches(['\r', '\u{0}']);
        let t = line.trim();
        if t.is_empty() || is_trailer(t) {
            continue;
        }
        if is_error_line(t) {
            dump.not_found += 1;
            // What follows an error belongs to no key until the next header.
            current = None;
            continue;
        }
        if let Some(path) = key_path(t).filter(|_| !t.contains("    ")) {
            dump.keys.push(RegKey {
                path,
                values: Vec::new(),
            });
            current = Some(dump.keys.len() - 1);
            continue;
        }
        let Some((name, kind, data)) = value_line(line) else {
            dump.warn(format!(
                "registry file line {line_no}: not a key or a value: {:?}",
                clip(t, 80)
            ));
            continue;
        };
        let Some(k) = current else {
            dump.warn(format!(
                "registry file line {line_no}: value {:?} before any key line",
                clip(name, 80)
            ));
            continue;
        };
        if dump.value_count() >= MAX_VALUES {
            dump.warn(format!(
                "registry file line {line_no}: more than {MAX_VALUES} values; the rest is left out"
            ));
            break;
        }
        let name = match name {
            "(Default)" | "(Standard)" | "(Par défaut)" | "(Predefinito)" => "",
            n => n,
        };
        if data.chars().count() > MAX_DATA {
            dump.warn(format!(
                "registry file line {line_no}: value {:?} longer than {MAX_DATA} characters, cut",
                clip(name, 80)
            ));
        }
        let value = RegValue {
            name: clip(name, 256),
            kind: clip(kind, 32),
            data: clip(data, MAX_DATA),
        };
        if let Some(key) = dump.keys.get_mut(k) {
            key.values.push(value);
        }
    }
    dump
}

/// The first `max` characters of `s`.
pub(crate) fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_split_at_the_type_column() {
        assert_eq!(
            value_line("    TenantName    REG_SZ    Contoso Ltd    (EU)"),
            Some(("TenantName", "REG_SZ", "Contoso Ltd    (EU)"))
        );
        assert_eq!(
            value_line("    Default Printer    REG_SZ    "),
            Some(("Default Printer", "REG_SZ", ""))
        );
        assert_eq!(
            value_line("    UBR    REG_DWORD    0x1130"),
            Some(("UBR", "REG_DWORD", "0x1130"))
        );
        assert_eq!(value_line("    MY_REG_SZ_NAME    no type"), None);
        assert_eq!(value_line("HKEY_LOCAL_MACHINE\\X"), None);
    }

    #[test]
    fn key_paths_are_normalised() {
        assert_eq!(
            normalize_key(r"hklm\SOFTWARE\WOW6432Node\Microsoft\"),
            r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft"
        );
        assert_eq!(key_path("HKEY_FOO\\x"), None);
    }

    #[test]
    fn numbers_and_text_follow_the_type() {
        let v = |kind: &str, data: &str| RegValue {
            name: "x".into(),
            kind: kind.into(),
            data: data.into(),
        };
        assert_eq!(v("REG_DWORD", "0x1130").number(), Some(0x1130));
        assert_eq!(v("REG_DWORD", "0xZZ").number(), None);
        assert_eq!(v("REG_SZ", "0x1").number(), None);
        assert_eq!(v("REG_MULTI_SZ", "a\\0b\\0").text(), Some("a"));
        assert_eq!(v("REG_SZ", "  ").text(), None);
        assert_eq!(v("REG_SZ", "(value not set)").text(), None);
        assert_eq!(v("REG_BINARY", "0102").text(), None);
    }
}
