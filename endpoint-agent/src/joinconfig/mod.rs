//! The device's join configuration (DESIGN §4b) → `snapshot.join_config`.
//!
//! Whether hybrid join is meant to happen here is not in `dsregcmd /status`: it is in the
//! `Automatic-Device-Join` scheduled task (enabled? when did it last run, with what result?),
//! the client-side SCP of a targeted rollout (`…\CDJ\AAD` TenantId/TenantName), the
//! `WorkplaceJoin` policy, the product type (a domain controller is never joined) and the OS
//! build. This module turns those into a [`JoinConfig`]:
//!
//! - [`registry`]: `reg query` output → keys and values; [`from_registry`] picks the values.
//! - [`task`]: `schtasks /query … /xml` or `/v /fo list` output → the task's facts.
//! - [`Files`]: `--registry-file`, `--task-file` (repeatable: XML and list may both be given)
//!   and `--computer-sid`, read for `parse`, `diagnose`, `send` and `run` off Windows.
//! - [`native`] (`cfg(windows)`): the registry through the Win32 registry API, the task through
//!   `schtasks.exe` child processes fed to the same parser, the computer account's SID through
//!   `LookupAccountNameW` — all under one timeout.
//!
//! Invariants: nothing here fails on content. A key or value that does not exist leaves its
//! field unset ("not set" is never an error); odd lines become warnings (returned in
//! [`Read::warnings`], put into `snapshot.warnings` with line 0 by [`apply`]); only an
//! unreadable file is an error. The join configuration is set on the snapshot *before*
//! `diagnosis::apply`, which reads it.

pub mod registry;
pub mod task;

#[cfg(windows)]
pub mod native;

use std::path::PathBuf;

use dsreg_proto::Snapshot;
use dsreg_proto::v1::{JoinConfig, ParseWarning};
use time::UtcOffset;

use registry::{RegistryDump, clip};
use task::TaskInfo;

/// `HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\CDJ\AAD`: the client-side SCP.
pub const CDJ_AAD_KEY: &str =
    r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\CDJ\AAD";
/// The hybrid join policy (`Register domain joined computers as devices`).
pub const POLICY_KEY: &str =
    r"HKEY_LOCAL_MACHINE\SOFTWARE\Policies\Microsoft\Windows\WorkplaceJoin";
/// `ProductType`: `WinNT`, `ServerNT`, `LanmanNT`.
pub const PRODUCT_OPTIONS_KEY: &str =
    r"HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Control\ProductOptions";
/// The OS build and UBR.
pub const CURRENT_VERSION_KEY: &str =
    r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows NT\CurrentVersion";
/// The value name a capture uses to carry the computer account's SID (see the README).
pub const COMPUTER_SID_VALUE: &str = "ComputerSid";

/// The registry keys and values the agent reads, `(key, value)`.
pub const REGISTRY_VALUES: &[(&str, &str)] = &[
    (CDJ_AAD_KEY, "TenantId"),
    (CDJ_AAD_KEY, "TenantName"),
    (POLICY_KEY, "autoWorkplaceJoin"),
    (POLICY_KEY, "BlockAADWorkplaceJoin"),
    (PRODUCT_OPTIONS_KEY, "ProductType"),
    (CURRENT_VERSION_KEY, "CurrentMajorVersionNumber"),
    (CURRENT_VERSION_KEY, "CurrentMinorVersionNumber"),
    (CURRENT_VERSION_KEY, "CurrentVersion"),
    (CURRENT_VERSION_KEY, "CurrentBuildNumber"),
    (CURRENT_VERSION_KEY, "CurrentBuild"),
    (CURRENT_VERSION_KEY, "UBR"),
];

/// A join configuration and what looked wrong while reading it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Read {
    /// The configuration (fields unset when not read).
    pub config: JoinConfig,
    /// Warnings, each naming the file or value.
    pub warnings: Vec<String>,
}

/// Why a join configuration file could not be read (exit code 2 in the CLI).
#[derive(Debug, thiserror::Error)]
pub enum JoinConfigError {
    /// The file could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// `registry file` or `task file`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The `--computer-sid` value is not a SID.
    #[error("computer sid {0:?} is not a SID like S-1-5-21-…")]
    BadSid(String),
}

/// The join configuration inputs given as files (`--registry-file`, `--task-file`,
/// `--computer-sid`).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct Files {
    /// What `reg query` printed for the join configuration keys (several keys concatenated,
    /// "ERROR: … unable to find …" lines included; UTF-16 or UTF-8). See the README for the
    /// capture commands.
    #[arg(long, value_name = "FILE")]
    pub registry_file: Option<PathBuf>,
    /// What `schtasks /query /tn "\Microsoft\Windows\Workplace Join\Automatic-Device-Join"`
    /// printed with `/xml` or `/v /fo list`; give it twice to combine both.
    #[arg(long = "task-file", value_name = "FILE")]
    pub task_files: Vec<PathBuf>,
    /// The computer account's on-premises SID (Entra's onPremisesSecurityIdentifier), when
    /// not read from the machine; overrides a ComputerSid value in --registry-file.
    #[arg(long, value_name = "SID")]
    pub computer_sid: Option<String>,
}

impl Files {
    /// True when no join configuration input was given.
    pub fn is_empty(&self) -> bool {
        self.registry_file.is_none() && self.task_files.is_empty() && self.computer_sid.is_none()
    }

    /// Reads and parses the files; `None` when none was given. Times in a task listing are
    /// read as UTC (a file carries no offset).
    pub fn read(&self) -> Result<Option<Read>, JoinConfigError> {
        if self.is_empty() {
            return Ok(None);
        }
        let load = |what: &'static str, path: &PathBuf| {
            std::fs::read(path).map_err(|source| JoinConfigError::Read {
                what,
                path: path.clone(),
                source,
            })
        };
        let registry = self
            .registry_file
            .as_ref()
            .map(|p| load("registry file", p))
            .transpose()?;
        let tasks = self
            .task_files
            .iter()
            .map(|p| load("task file", p))
            .collect::<Result<Vec<_>, _>>()?;
        let sid = match &self.computer_sid {
            Some(s) => Some(valid_sid(s).ok_or_else(|| JoinConfigError::BadSid(clip(s, 80)))?),
            None => None,
        };
        let mut read = from_captures(registry.as_deref(), &tasks, UtcOffset::UTC);
        if sid.is_some() {
            read.config.computer_sid = sid;
        }
        Ok(Some(read))
    }
}

/// This machine's join configuration: read natively on Windows (registry, Task Scheduler,
/// computer SID, bounded by `timeout`); elsewhere nothing but a warning saying so. For the
/// offline commands, which have no async runtime of their own.
pub fn read_this_device(timeout: std::time::Duration) -> Read {
    #[cfg(windows)]
    {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(native::read(timeout)),
            Err(e) => Read {
                warnings: vec![format!("join configuration: cannot start the runtime: {e}")],
                ..Read::default()
            },
        }
    }
    #[cfg(not(windows))]
    {
        let _ = timeout;
        Read {
            warnings: vec![
                "join configuration: this device's registry and Task Scheduler exist only on \
                 Windows; pass --registry-file / --task-file"
                    .to_owned(),
            ],
            ..Read::default()
        }
    }
}

/// Builds the configuration from raw `reg query` and schtasks captures.
pub fn from_captures(registry: Option<&[u8]>, tasks: &[Vec<u8>], offset: UtcOffset) -> Read {
    let mut read = Read::default();
    if let Some(bytes) = registry {
        let dump = registry::parse(bytes);
        read.warnings.extend(dump.warnings.iter().cloned());
        read.config = from_registry(&dump, &mut read.warnings);
    }
    let mut info = TaskInfo::default();
    for bytes in tasks {
        let (t, w) = task::parse(bytes, offset);
        info.merge(t);
        read.warnings.extend(w);
    }
    apply_task(&mut read.config, info);
    read
}

/// Copies the task facts into the configuration.
pub fn apply_task(config: &mut JoinConfig, info: TaskInfo) {
    config.task_enabled = info.enabled;
    config.task_state = info.state;
    config.task_last_run_time = info.last_run_time;
    config.task_last_result = info.last_result;
}

/// Picks the join configuration values out of a registry dump (parsed or read natively).
pub fn from_registry(dump: &RegistryDump, warnings: &mut Vec<String>) -> JoinConfig {
    let text = |key: &str, name: &str| {
        dump.get(key, name)
            .and_then(|v| v.text())
            .map(|s| clip(s, 256))
    };
    let flag = |key: &str, name: &str, warnings: &mut Vec<String>| {
        let v = dump.get(key, name)?;
        match v.number() {
            Some(n) => Some(n != 0),
            None => {
                warnings.push(format!(
                    "registry: {name} is {} {:?}, not a REG_DWORD number",
                    v.kind,
                    clip(&v.data, 40)
                ));
                None
            }
        }
    };
    let number = |name: &str| dump.get(CURRENT_VERSION_KEY, name).and_then(|v| v.number());
    let build = text(CURRENT_VERSION_KEY, "CurrentBuildNumber")
        .or_else(|| text(CURRENT_VERSION_KEY, "CurrentBuild"))
        .filter(|b| b.bytes().all(|c| c.is_ascii_digit()) && b.len() <= 10);
    let os_build = build.map(|build| {
        // Windows 10+ has the major/minor DWORDs; older builds say `CurrentVersion` 6.x.
        let version = match (
            number("CurrentMajorVersionNumber"),
            number("CurrentMinorVersionNumber"),
        ) {
            (Some(major), Some(minor)) => format!("{major}.{minor}"),
            _ => text(CURRENT_VERSION_KEY, "CurrentVersion")
                .filter(|v| v.bytes().all(|c| c.is_ascii_digit() || c == b'.'))
                .unwrap_or_else(|| "10.0".to_owned()),
        };
        match number("UBR") {
            Some(ubr) => format!("{version}.{build}.{ubr}"),
            None => format!("{version}.{build}"),
        }
    });
    let computer_sid = dump.find_anywhere(COMPUTER_SID_VALUE).and_then(|v| {
        let sid = v.text().and_then(valid_sid);
        if sid.is_none() {
            warnings.push(format!(
                "registry: {COMPUTER_SID_VALUE} {:?} is not a SID like S-1-5-21-…",
                clip(&v.data, 80)
            ));
        }
        sid
    });
    JoinConfig {
        registry_tenant_id: text(CDJ_AAD_KEY, "TenantId"),
        registry_tenant_name: text(CDJ_AAD_KEY, "TenantName"),
        policy_auto_workplace_join: flag(POLICY_KEY, "autoWorkplaceJoin", warnings),
        policy_block_aad_workplace_join: flag(POLICY_KEY, "BlockAADWorkplaceJoin", warnings),
        product_type: text(PRODUCT_OPTIONS_KEY, "ProductType"),
        os_build,
        computer_sid,
        ..JoinConfig::default()
    }
}

/// `S-1-5-21-…` (revision 1, decimal sub-authorities, at most 15 of them) → the SID, trimmed
/// and upper-case `S`; `None` otherwise.
pub fn valid_sid(s: &str) -> Option<String> {
    let s = s.trim();
    let rest = s.strip_prefix("S-1-").or_else(|| s.strip_prefix("s-1-"))?;
    let parts: Vec<&str> = rest.split('-').collect();
    let ok = (2..=16).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 10 && p.bytes().all(|b| b.is_ascii_digit()));
    ok.then(|| format!("S-1-{rest}"))
}

/// Puts a join configuration on the snapshot (before the diagnosis runs) and its warnings
/// into `snapshot.warnings` (line 0: they are not about the dsregcmd capture).
pub fn apply(snapshot: &mut Snapshot, read: Read) {
    snapshot.join_config = Some(read.config);
    snapshot.warnings.extend(
        read.warnings
            .into_iter()
            .map(|message| ParseWarning { line: 0, message }),
    );
}

#[cfg(test)]
mod tests;
