//! Process helpers shared by every end-to-end test: where the workspace and its binaries are,
//! children that die with the test, bounded waits.
//!
//! Invariants: [`workspace_bin`] builds with exactly the target selection and feature set of
//! `cargo test --workspace` (so the binaries the tests start are the ones that build already
//! made, and a nested build is a no-op instead of a rebuild of tonic/rustls with other
//! features); every wait here is bounded; a [`KillOnDrop`] child never outlives its test.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The path of `name` on `PATH`, or `None`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The arguments of the one build that provides the binaries the tests start. They select the
/// same targets as `cargo test --workspace` (bins and tests of every member), so cargo
/// resolves the same features (dev-dependencies included) and, after `cargo test --workspace`
/// (or `tests/run.sh`), finds everything fresh.
pub const BUILD_ARGS: [&str; 5] = ["build", "--workspace", "--bins", "--tests", "--locked"];

/// The binary `name` (`dsreg-collector`, `dsreg-agent`) of this workspace, in the profile
/// directory of the running test. Built once per test process with [`BUILD_ARGS`] (a no-op
/// when `cargo test --workspace` already built it), so `cargo test -p dsreg-e2e` also works
/// alone and a test that restarts a process many times never waits on cargo again.
pub fn workspace_bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(e) = BUILT.get_or_init(build_workspace_bins) {
        panic!("{e}");
    }
    // This test binary lives in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let bin = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.is_file(), "no binary {name} at {}", bin.display());
    bin
}

fn build_workspace_bins() -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // Cargo sets the running test's package variables (CARGO_MANIFEST_DIR, CARGO_PKG_NAME…)
    // for this process. Build scripts such as ring's watch them (`rerun-if-env-changed`), so
    // passing them on would rerun those scripts and rebuild ring → rustls → tonic → the
    // workspace: the nested build must see the environment the outer `cargo test` saw.
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        let from_cargo_test = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|p| k.starts_with(p))
            || [
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&k.as_ref())
            || k == "OUT_DIR";
        if from_cargo_test {
            cmd.env_remove(&key);
        }
    }
    let status = cmd
        .args(BUILD_ARGS)
        .current_dir(repo_root())
        .status()
        .map_err(|e| format!("cannot run cargo {}: {e}", BUILD_ARGS.join(" ")))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo {} failed: {status}", BUILD_ARGS.join(" ")))
    }
}

/// A loopback port that was free a moment ago (bind to 0, read, release).
pub fn free_loopback_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Polls `probe` every 200 ms until it returns `Some`, for at most `timeout`; panics naming
/// `what` (and `context()`, e.g. a process log) on timeout.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A child process that is killed (and reaped) when dropped, also during a panic.
pub struct KillOnDrop {
    child: Child,
}

impl KillOnDrop {
    /// Takes ownership of `child`.
    pub fn new(child: Child) -> Self {
        Self { child }
    }

    /// The exit status if the process has already exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` with stdout into the file `stdout` and stderr into `stderr` (the same path:
/// one file for both) and waits at most `timeout` for it to exit; a process still running then
/// is killed and reported as an error that quotes its stderr.
pub fn run_bounded(
    mut cmd: Command,
    stdout: &Path,
    stderr: &Path,
    timeout: Duration,
) -> anyhow::Result<ExitStatus> {
    let out =
        std::fs::File::create(stdout).with_context(|| format!("create {}", stdout.display()))?;
    let err = if stdout == stderr {
        out.try_clone()?
    } else {
        std::fs::File::create(stderr).with_context(|| format!("create {}", stderr.display()))?
    };
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("spawn {:?}", cmd.get_program()))?;
    let mut child = KillOnDrop::new(child);
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.exited() {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            drop(child);
            bail!(
                "{:?} still running after {timeout:?}:\n{}",
                cmd.get_program(),
                std::fs::read_to_string(stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd` (stdout and stderr captured together into `log`) and waits at most `timeout`
/// for it to exit ([`run_bounded`]); its status and the log.
pub fn run_to_exit(
    cmd: Command,
    log: &Path,
    timeout: Duration,
) -> anyhow::Result<(ExitStatus, String)> {
    let status = run_bounded(cmd, log, log, timeout)?;
    Ok((status, std::fs::read_to_string(log).unwrap_or_default()))
}

/// A process's exit status, stdout and stderr, for assertion messages.
pub fn output_text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `VmRSS` of a process in kB, from `/proc/<pid>/status` (Linux).
pub fn vm_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Removes from `cmd` every `DSREG_*` variable of the environment running the tests, so a
/// binary started by a test reads only the settings the test gives it (both binaries read a
/// `DSREG_*` variable for every setting).
pub fn without_dsreg_env(cmd: &mut std::process::Command) -> &mut std::process::Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("DSREG_") {
            cmd.env_remove(&key);
        }
    }
    cmd
}
