//! Who this device is: the stable machine id, host name, AD domain and OS build.
//!
//! Pre-join devices (the ones that fail) have no Entra DeviceId, so the device key is the
//! machine's own stable id: Windows `MachineGuid` (`HKLM\SOFTWARE\Microsoft\Cryptography`), or
//! `/etc/machine-id` elsewhere. The platform reads sit behind [`Platform`] so the logic that
//! interprets them (`reg query` output, fallbacks) is tested on any OS.

use std::process::Command;

/// The identity fields of a report envelope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Stable machine id (MachineGuid on Windows).
    pub machine_id: String,
    /// Host name.
    pub hostname: String,
    /// Active Directory domain, empty when unknown.
    pub ad_domain: String,
    /// OS build, e.g. `10.0.22631.4460`.
    pub os_build: String,
}

/// The platform reads identity needs.
pub trait Platform {
    /// An environment variable.
    fn env(&self, name: &str) -> Option<String>;
    /// A file's text.
    fn read_file(&self, path: &str) -> Option<String>;
    /// The stdout of `reg query <key> /v <value>` (Windows only).
    fn reg_query(&self, key: &str, value: &str) -> Option<String>;
}

/// The real platform.
#[derive(Debug, Default, Clone, Copy)]
pub struct System;

impl Platform for System {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }

    fn read_file(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }

    fn reg_query(&self, key: &str, value: &str) -> Option<String> {
        if !cfg!(windows) {
            return None;
        }
        let out = Command::new("reg")
            .args(["query", key, "/v", value])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Extracts a value's data from `reg query` output:
/// `    MachineGuid    REG_SZ    5b1c…` → `5b1c…`.
pub fn parse_reg_value(output: &str, value: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        let name = parts.next()?;
        if !name.eq_ignore_ascii_case(value) {
            return None;
        }
        let kind = parts.next()?;
        if !kind.starts_with("REG_") {
            return None;
        }
        let data = parts.collect::<Vec<_>>().join(" ");
        (!data.is_empty()).then_some(data)
    })
}

const CRYPTO_KEY: &str = r"HKLM\SOFTWARE\Microsoft\Cryptography";
const CURRENT_VERSION_KEY: &str = r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion";

/// Reads the identity of this machine from `platform`.
pub fn detect(platform: &impl Platform) -> Identity {
    let machine_id = platform
        .reg_query(CRYPTO_KEY, "MachineGuid")
        .and_then(|o| parse_reg_value(&o, "MachineGuid"))
        .or_else(|| platform.read_file("/etc/machine-id"))
        .or_else(|| platform.read_file("/var/lib/dbus/machine-id"))
        .map(|s| s.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let hostname = platform
        .env("COMPUTERNAME")
        .or_else(|| platform.read_file("/proc/sys/kernel/hostname"))
        .or_else(|| platform.env("HOSTNAME"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let ad_domain = platform
        .env("USERDNSDOMAIN")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let os_build = match (
        platform
            .reg_query(CURRENT_VERSION_KEY, "CurrentBuild")
            .and_then(|o| parse_reg_value(&o, "CurrentBuild")),
        platform
            .reg_query(CURRENT_VERSION_KEY, "UBR")
            .and_then(|o| parse_reg_value(&o, "UBR")),
    ) {
        (Some(build), Some(ubr)) => {
            let ubr = ubr
                .strip_prefix("0x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .map_or(ubr.clone(), |v| v.to_string());
            format!("10.0.{build}.{ubr}")
        }
        (Some(build), None) => format!("10.0.{build}"),
        _ => platform
            .read_file("/proc/sys/kernel/osrelease")
            .map(|s| format!("linux {}", s.trim()))
            .unwrap_or_default(),
    };
    Identity {
        machine_id,
        hostname,
        ad_domain,
        os_build,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Fake {
        env: HashMap<&'static str, &'static str>,
        files: HashMap<&'static str, &'static str>,
        reg: HashMap<&'static str, &'static str>,
    }

    impl Platform for Fake {
        fn env(&self, name: &str) -> Option<String> {
            self.env.get(name).map(|s| s.to_string())
        }
        fn read_file(&self, path: &str) -> Option<String> {
            self.files.get(path).map(|s| s.to_string())
        }
        fn reg_query(&self, _key: &str, value: &str) -> Option<String> {
            self.reg.get(value).map(|s| s.to_string())
        }
    }

    #[test]
    fn windows_identity_from_registry_and_environment() {
        let fake = Fake {
            env: [("COMPUTERNAME", "PC-0421"), ("USERDNSDOMAIN", "CONTOSO.LOCAL")].into(),
            reg: [
                (
                    "MachineGuid",
                    "\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Cryptography\r\n    MachineGuid    REG_SZ    5B1C7E0A-8F52-4C57-9E0B-2E2C3D4F5A6B\r\n\r\n",
                ),
                ("CurrentBuild", "    CurrentBuild    REG_SZ    22631\r\n"),
                ("UBR", "    UBR    REG_DWORD    0x116c\r\n"),
            ]
            .into(),
            ..Default::default()
        };
        let id = detect(&fake);
        assert_eq!(id.machine_id, "5b1c7e0a-8f52-4c57-9e0b-2e2c3d4f5a6b");
        assert_eq!(id.hostname, "PC-0421");
        assert_eq!(id.ad_domain, "CONTOSO.LOCAL");
        assert_eq!(id.os_build, "10.0.22631.4460");
    }

    #[test]
    fn linux_fallbacks() {
        let fake = Fake {
            files: [
                ("/etc/machine-id", "0123456789abcdef0123456789abcdef\n"),
                ("/proc/sys/kernel/hostname", "builder\n"),
                ("/proc/sys/kernel/osrelease", "6.1.0\n"),
            ]
            .into(),
            ..Default::default()
        };
        let id = detect(&fake);
        assert_eq!(id.machine_id, "0123456789abcdef0123456789abcdef");
        assert_eq!(id.hostname, "builder");
        assert_eq!(id.os_build, "linux 6.1.0");
        assert_eq!(id.ad_domain, "");
    }

    #[test]
    fn reg_value_needs_the_named_value_and_a_type() {
        assert_eq!(parse_reg_value("ERROR: not found", "MachineGuid"), None);
        assert_eq!(
            parse_reg_value("    MachineGuid    REG_SZ", "MachineGuid"),
            None
        );
        assert_eq!(
            parse_reg_value("    ProductName    REG_SZ    Windows 10 Pro", "productname"),
            Some("Windows 10 Pro".into())
        );
    }
}
