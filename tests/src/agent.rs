//! Helpers for tests that run the real `dsreg-agent` binary.

use std::path::Path;
use std::process::Output;

/// A process's exit status, stdout and stderr, for assertion messages.
pub fn output_text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

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
    c.env_remove("DSREG_AGENT_CONFIG")
        .env_remove("DSREG_COLLECTOR")
        .env_remove("DSREG_SPOOL_DIR")
        .stdin(std::process::Stdio::null());
    c
}

/// The `dsreg-agent` binary of this workspace, built once per test process (`cargo build -p
/// dsreg-agent` in the same target directory as the running test).
pub fn agent_binary() -> std::path::PathBuf {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(build_agent).clone()
}

fn build_agent() -> std::path::PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "-p", "dsreg-agent", "--bin", "dsreg-agent"])
        .current_dir(crate::prom::repo_root())
        .status()
        .expect("run cargo build -p dsreg-agent");
    assert!(status.success(), "cargo build -p dsreg-agent failed");
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let bin = profile_dir.join(format!("dsreg-agent{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.is_file(), "no agent binary at {}", bin.display());
    bin
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
