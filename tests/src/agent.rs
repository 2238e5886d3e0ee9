//! Helpers for tests that run the real `dsreg-agent` binary: the binary, a command isolated
//! from the machine's `DSREG_*` settings, spool counts.

use std::path::Path;

use crate::process::{output_text, workspace_bin};

/// Reports waiting in a spool directory, counted by file name (safe while an agent runs).
pub fn spooled_reports(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |l| {
        l.flatten()
            .filter(|i| i.file_name().to_string_lossy().ends_with(".report"))
            .count()
    })
}

/// A `dsreg-agent` command (binary `bin`) that ignores the `DSREG_*` settings of the machine
/// running the tests and has no stdin; callers add the subcommand and flags.
pub fn isolated_agent(bin: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(bin);
    crate::process::without_dsreg_env(&mut c).stdin(std::process::Stdio::null());
    c
}

/// The `dsreg-agent` binary of this workspace ([`workspace_bin`]).
pub fn agent_binary() -> std::path::PathBuf {
    workspace_bin("dsreg-agent")
}

/// `dsreg-agent <subcommand> --help`, as text.
pub fn agent_help(subcommand: &str) -> String {
    let out = std::process::Command::new(agent_binary())
        .args([subcommand, "--help"])
        .output()
        .expect("run dsreg-agent --help");
    assert!(out.status.success(), "{}", output_text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
