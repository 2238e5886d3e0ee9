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
