//! Where the agent's input comes from: the [`Source`] seam of the collection cycle.
//!
//! [`CommandSource`] runs `dsregcmd` and `wevtutil` with a hard timeout and reads raw stdout
//! bytes (the parser handles UTF-16 and code pages), and on Windows reads the join
//! configuration ([`crate::joinconfig::native`]); [`FileSource`] reads captures from files
//! (also `--registry-file` / `--task-file`), so the same loop runs in tests on Linux.
//! Invariant: a command never outlives its timeout (killed on drop), and its output is kept
//! whenever there is any, whatever its exit status.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a collection failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A capture file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A command could not be started or failed.
    #[error("command `{command}` failed: {reason}")]
    Command {
        /// The command line.
        command: String,
        /// What went wrong.
        reason: String,
    },
    /// A command ran past its timeout and was killed.
    #[error("command `{command}` did not finish within {timeout:?} and was killed")]
    Timeout {
        /// The command line.
        command: String,
        /// The limit.
        timeout: Duration,
    },
    /// The event export could not be parsed.
    #[error("event export: {0}")]
    Events(String),
    /// A join configuration file could not be read.
    #[error(transparent)]
    JoinConfig(#[from] crate::joinconfig::JoinConfigError),
}

/// Where the agent gets `dsregcmd /status` output and registration events.
pub trait Source {
    /// Raw `dsregcmd /status` output.
    fn status(&mut self) -> impl Future<Output = Result<Vec<u8>, SourceError>> + Send;
    /// Raw event export (wevtutil XML or Get-WinEvent JSON) of records after `after_record`,
    /// or `None` when this source has no events.
    fn events(
        &mut self,
        after_record: Option<u64>,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, SourceError>> + Send;
    /// The join configuration (task, registry, computer SID), or `None` when this source has
    /// none. Content problems are warnings inside the result, never an error.
    fn join_config(
        &mut self,
    ) -> impl Future<Output = Result<Option<crate::joinconfig::Read>, SourceError>> + Send {
        async { Ok(None) }
    }
}

/// Reads captures from files (tests, Linux, and `send --status-file`).
#[derive(Debug, Clone)]
pub struct FileSource {
    /// The `dsregcmd /status` capture; `-` reads standard input.
    pub status_file: PathBuf,
    /// An event export, if any.
    pub events_file: Option<PathBuf>,
    /// Join configuration captures, if any.
    pub join: crate::joinconfig::Files,
}

fn read_path(path: &Path) -> Result<Vec<u8>, SourceError> {
    let read = if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map(|_| buf)
    } else {
        std::fs::read(path)
    };
    read.map_err(|source| SourceError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl Source for FileSource {
    async fn status(&mut self) -> Result<Vec<u8>, SourceError> {
        read_path(&self.status_file)
    }

    async fn events(&mut self, _after: Option<u64>) -> Result<Option<Vec<u8>>, SourceError> {
        self.events_file.as_deref().map(read_path).transpose()
    }

    async fn join_config(&mut self) -> Result<Option<crate::joinconfig::Read>, SourceError> {
        Ok(self.join.read()?)
    }
}

/// Runs commands (on Windows: `dsregcmd /status` and `wevtutil qe …`).
#[derive(Debug, Clone)]
pub struct CommandSource {
    /// Program and arguments for the status capture.
    pub status_cmd: Vec<String>,
    /// Program and arguments for the event export; `{after}` in an argument is replaced by the
    /// bookmark (the last record id seen, 0 at first run).
    pub events_cmd: Option<Vec<String>>,
    /// Hard timeout per command.
    pub timeout: Duration,
}

impl CommandSource {
    /// The Windows defaults: `dsregcmd /status` and the Admin log through `wevtutil`.
    pub fn windows(timeout: Duration) -> Self {
        CommandSource {
            status_cmd: vec!["dsregcmd".into(), "/status".into()],
            events_cmd: Some(vec![
                "wevtutil".into(),
                "qe".into(),
                "Microsoft-Windows-User Device Registration/Admin".into(),
                "/f:xml".into(),
                "/q:*[System[EventRecordID>{after}]]".into(),
            ]),
            timeout,
        }
    }
}

pub(crate) async fn run_command(
    argv: &[String],
    timeout: Duration,
) -> Result<Vec<u8>, SourceError> {
    let command = argv.join(" ");
    let (program, args) = argv.split_first().ok_or_else(|| SourceError::Command {
        command: command.clone(),
        reason: "empty command".into(),
    })?;
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(timeout, child).await {
        Err(_) => Err(SourceError::Timeout { command, timeout }),
        Ok(Err(e)) => Err(SourceError::Command {
            command,
            reason: e.to_string(),
        }),
        // dsregcmd exits non-zero on some failing devices while still printing the status:
        // the output is the evidence, so keep it whenever there is any.
        Ok(Ok(out)) if !out.stdout.is_empty() => Ok(out.stdout),
        Ok(Ok(out)) => Err(SourceError::Command {
            command,
            reason: format!(
                "{} with no output: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }),
    }
}

impl Source for CommandSource {
    async fn status(&mut self) -> Result<Vec<u8>, SourceError> {
        run_command(&self.status_cmd, self.timeout).await
    }

    async fn events(&mut self, after: Option<u64>) -> Result<Option<Vec<u8>>, SourceError> {
        let Some(cmd) = &self.events_cmd else {
            return Ok(None);
        };
        let after = after.unwrap_or(0).to_string();
        let argv: Vec<String> = cmd.iter().map(|a| a.replace("{after}", &after)).collect();
        run_command(&argv, self.timeout).await.map(Some)
    }

    async fn join_config(&mut self) -> Result<Option<crate::joinconfig::Read>, SourceError> {
        #[cfg(windows)]
        {
            Ok(Some(crate::joinconfig::native::read(self.timeout).await))
        }
        #[cfg(not(windows))]
        {
            Ok(None)
        }
    }
}
