//! Windows only: the join configuration read from the machine itself.
//!
//! - Registry: each value of [`super::REGISTRY_VALUES`] through `RegGetValueW` (Win32, no
//!   child process, no localised text), collected into the same [`RegistryDump`] the
//!   `reg query` parser produces, so [`super::from_registry`] picks the fields for both.
//! - Join task: `schtasks.exe /query /tn … /xml` (enabled, language-independent) and
//!   `/v /fo list` (status, last run time, last result) as child processes under the agent's
//!   command timeout, fed to [`super::task::parse`] — simpler than the Task Scheduler COM API
//!   and the same code path that `--task-file` tests. List-form times are converted with
//!   the device's current UTC offset. The list form is localised: on a system language other
//!   than English or German only the XML facts (enabled) are read.
//! - Computer account SID: `LookupAccountNameW("HOST$")` with the NetBIOS computer name, then
//!   `ConvertSidToStringSidW`. On a workgroup machine (no computer account) it stays unset.
//!
//! Invariants: never fails — what cannot be read is unset plus a warning; the registry and
//! SID reads run on a blocking thread bounded by the same timeout (a read that overruns is
//! abandoned with a warning, the thread finishes on its own).

use std::time::Duration;

use time::UtcOffset;
use windows_sys::Win32::Foundation::{ERROR_MORE_DATA, ERROR_SUCCESS, LocalFree};
use windows_sys::Win32::Security::Authorization::ConvertSidToStringSidW;
use windows_sys::Win32::Security::{LookupAccountNameW, SID_NAME_USE};
use windows_sys::Win32::System::Registry::{
    HKEY_LOCAL_MACHINE, REG_DWORD, REG_EXPAND_SZ, REG_MULTI_SZ, REG_QWORD, REG_SZ, REG_VALUE_TYPE,
    RRF_RT_ANY, RegGetValueW,
};
use windows_sys::Win32::System::SystemInformation::{ComputerNameNetBIOS, GetComputerNameExW};
use windows_sys::core::PWSTR;

use super::registry::{RegKey, RegValue, RegistryDump};
use super::{REGISTRY_VALUES, Read, task};

/// The join task's full path.
const TASK: &str = r"\Microsoft\Windows\Workplace Join\Automatic-Device-Join";

/// Reads the registry, the join task and the computer SID, all within `timeout` each.
pub async fn read(timeout: Duration) -> Read {
    let mut warnings = Vec::new();
    let blocking = tokio::task::spawn_blocking(|| (read_registry(), computer_sid()));
    let (dump, sid) = match tokio::time::timeout(timeout, blocking).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            warnings.push(format!("registry: the read failed: {e}"));
            (RegistryDump::default(), None)
        }
        Err(_) => {
            warnings.push(format!("registry: not read within {timeout:?}"));
            (RegistryDump::default(), None)
        }
    };
    let mut config = super::from_registry(&dump, &mut warnings);
    config.computer_sid = sid;
    let offset = UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC);
    let mut info = task::TaskInfo::default();
    for form in [&["/xml"][..], &["/v", "/fo", "list"][..]] {
        let mut argv: Vec<String> = ["schtasks", "/query", "/tn", TASK]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        argv.extend(form.iter().map(|s| (*s).to_owned()));
        match crate::source::run_command(&argv, timeout).await {
            Ok(bytes) => {
                let (t, w) = task::parse(&bytes, offset);
                info.merge(t);
                warnings.extend(w);
            }
            Err(e) => warnings.push(format!("join task: {e}")),
        }
    }
    super::apply_task(&mut config, info);
    Read { config, warnings }
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// UTF-16 up to the first NUL.
fn from_wide(w: &[u16]) -> String {
    let end = w.iter().position(|&c| c == 0).unwrap_or(w.len());
    String::from_utf16_lossy(w.get(..end).unwrap_or_default())
}

/// Every value of [`REGISTRY_VALUES`] that exists, grouped by key.
fn read_registry() -> RegistryDump {
    let mut dump = RegistryDump::default();
    for (key, name) in REGISTRY_VALUES {
        let Some(sub) = key.strip_prefix(r"HKEY_LOCAL_MACHINE\") else {
            continue;
        };
        match get_value(sub, name) {
            Some(value) => {
                let at = match dump.keys.iter().position(|k| k.path == *key) {
                    Some(i) => i,
                    None => {
                        dump.keys.push(RegKey {
                            path: (*key).to_owned(),
                            values: Vec::new(),
                        });
                        dump.keys.len() - 1
                    }
                };
                if let Some(k) = dump.keys.get_mut(at) {
                    k.values.push(value);
                }
            }
            None => dump.not_found += 1,
        }
    }
    dump
}

/// One value as `reg query` would print it, or `None` when it does not exist.
fn get_value(subkey: &str, name: &str) -> Option<RegValue> {
    let sub = wide(subkey);
    let value = wide(name);
    let mut buf: Vec<u16> = vec![0; 512];
    for _ in 0..2 {
        let mut kind: REG_VALUE_TYPE = 0;
        let mut len = u32::try_from(buf.len() * 2).unwrap_or(u32::MAX);
        // SAFETY: both names are NUL-terminated UTF-16; `buf` is writable for `len` bytes and
        // the call writes at most `len` bytes, updating `len` and `kind`.
        let rc = unsafe {
            RegGetValueW(
                HKEY_LOCAL_MACHINE,
                sub.as_ptr(),
                value.as_ptr(),
                RRF_RT_ANY,
                &mut kind,
                buf.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc == ERROR_MORE_DATA {
            buf.resize((len as usize).div_ceil(2).min(64 * 1024), 0);
            continue;
        }
        if rc != ERROR_SUCCESS {
            return None;
        }
        let words = buf.get(..(len as usize).div_ceil(2)).unwrap_or_default();
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let bytes = bytes.get(..len as usize).unwrap_or_default();
        let (kind_name, data) = match kind {
            REG_SZ => ("REG_SZ", from_wide(words)),
            REG_EXPAND_SZ => ("REG_EXPAND_SZ", from_wide(words)),
            REG_MULTI_SZ => (
                "REG_MULTI_SZ",
                words
                    .split(|&c| c == 0)
                    .filter(|s| !s.is_empty())
                    .map(String::from_utf16_lossy)
                    .collect::<Vec<_>>()
                    .join("\\0"),
            ),
            REG_DWORD => (
                "REG_DWORD",
                format!(
                    "0x{:x}",
                    u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?)
                ),
            ),
            REG_QWORD => (
                "REG_QWORD",
                format!(
                    "0x{:x}",
                    u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)
                ),
            ),
            _ => (
                "REG_BINARY",
                bytes.iter().map(|b| format!("{b:02X}")).collect(),
            ),
        };
        return Some(RegValue {
            name: (*name).to_owned(),
            kind: kind_name.to_owned(),
            data,
        });
    }
    None
}

/// The computer account's SID (`S-1-5-21-…`), or `None` off a domain.
fn computer_sid() -> Option<String> {
    let mut name = vec![0u16; 64];
    let mut len = u32::try_from(name.len()).unwrap_or(0);
    // SAFETY: `name` is writable for `len` UTF-16 units; the call writes the name and its
    // length (without the NUL) into `len`.
    let ok = unsafe { GetComputerNameExW(ComputerNameNetBIOS, name.as_mut_ptr(), &mut len) };
    if ok == 0 {
        return None;
    }
    let account = wide(&format!("{}$", from_wide(&name)));
    let mut sid = vec![0u8; 256];
    let mut sid_len = u32::try_from(sid.len()).unwrap_or(0);
    let mut domain = vec![0u16; 256];
    let mut domain_len = u32::try_from(domain.len()).unwrap_or(0);
    let mut use_: SID_NAME_USE = 0;
    // SAFETY: the account name is NUL-terminated; `sid` and `domain` are writable for the
    // sizes passed (bytes and UTF-16 units), which the call updates.
    let ok = unsafe {
        LookupAccountNameW(
            std::ptr::null(),
            account.as_ptr(),
            sid.as_mut_ptr().cast(),
            &mut sid_len,
            domain.as_mut_ptr(),
            &mut domain_len,
            &mut use_,
        )
    };
    if ok == 0 {
        return None;
    }
    let mut text: PWSTR = std::ptr::null_mut();
    // SAFETY: `sid` holds a valid SID written by LookupAccountNameW; on success `text` points
    // to a NUL-terminated string that LocalAlloc allocated and LocalFree releases.
    unsafe {
        if ConvertSidToStringSidW(sid.as_mut_ptr().cast(), &mut text) == 0 || text.is_null() {
            return None;
        }
        let mut n = 0usize;
        while n < 256 && *text.add(n) != 0 {
            n += 1;
        }
        let s = String::from_utf16_lossy(std::slice::from_raw_parts(text, n));
        LocalFree(text.cast());
        super::valid_sid(&s)
    }
}
