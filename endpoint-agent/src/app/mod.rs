//! `dsreg-agent`'s command line and dispatch: the binary parses [`Cli`] and calls [`main`].
//!
//! Each subcommand is a variant of [`Command`] whose logic lives in its own module ([`crate::cli`]
//! for `parse` / `diagnose`, [`crate::service`] for `send` / `run`, [`crate::simulate`]); this
//! module turns their results into output and one [`Exit`] each (the table is
//! [`crate::exit`]). Printing: results on standard output (a closed pipe is not an error),
//! errors as one `dsreg-agent: …` line on standard error.

pub mod help;
mod service;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use dsreg_proto::ExecutionContext;

use crate::cli::{self, CliError, Format, Input};
use crate::exit::Exit;
use crate::service::Request;

/// Collects Microsoft Entra hybrid join state from `dsregcmd /status` and the device
/// registration event log, and explains the current failure.
#[derive(Debug, Parser)]
#[command(name = "dsreg-agent", version, after_help = help::EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse a dsregcmd /status capture and print the snapshot (JSON or text).
    ///
    /// The snapshot includes the derived join type and current failure. JSON uses the
    /// snapshot paths of the wire schema (device_state.azure_ad_joined, diagnostics.tests.…,
    /// failure.cause, …); fields the capture did not contain are absent.
    #[command(after_help = format!("{}\n\n{}", help::INPUTS, help::EXIT_CODES))]
    Parse(ParseArgs),
    /// Explain what is wrong with this device and what to do next.
    ///
    /// Prints the join type, "healthy" or the failing phase, the error code with its symbol
    /// and sub-code, the cause and its resolution, and the capture lines that show it.
    #[command(after_help = format!("{}\n\n{}", help::INPUTS, help::DIAGNOSE_EXIT_CODES))]
    Diagnose(DiagnoseArgs),
    /// Collect once and deliver to the collector (scheduled tasks, logon tasks, tests).
    ///
    /// The report is written to the on-disk spool first and removed only when the collector
    /// acknowledges it, so nothing is lost when the collector is unreachable: the report stays
    /// queued (exit 3) and the next `send` or `run` delivers the spool first, oldest first.
    /// On Windows without --status-file it runs `dsregcmd /status` itself.
    #[command(after_help = help::send())]
    Send(Request),
    /// The service loop: collect at start, then every --interval (±10% jitter); send only
    /// changed snapshots plus a heartbeat; retry failed deliveries with exponential backoff.
    ///
    /// Runs until SIGINT/SIGTERM (Ctrl-C), or with --service until the Windows service control
    /// manager stops it. On Windows it runs `dsregcmd /status` and reads the
    /// `Microsoft-Windows-User Device Registration/Admin` log through `wevtutil`; elsewhere
    /// (tests, demos) it re-reads --status-file and --events-file each cycle.
    #[command(after_help = help::run())]
    Run(RunArgs),
    /// Drive a real collector with a synthetic fleet built from the fixture corpus.
    ///
    /// Devices have stable identities (machine id from --seed and index, PC-000421, an AD
    /// domain) and a realistic mix of healthy hybrid joined, pre-join failures (no SCP, proxy,
    /// ADAL timeout, DSREG_E_DIRECTORY_FAILURE, TPM), PRT problems and stale devices. Scenarios:
    /// steady, sync-lag (a device_not_synced burst that heals), tenant-not-found (a burst that
    /// does not), outage (silence, then every device reconnects at once). Prints progress on
    /// stderr and a summary (acknowledged, duplicates, rejected, rate, p50/p99 per call).
    #[command(
        after_help = "Exit codes:\n  0  done\n  2  bad flags\n  3  the collector could not be reached"
    )]
    Simulate(crate::simulate::SimulateArgs),
}

/// `run`: the settings of `send`, plus the Windows service switch.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The flags and settings shared with `send`.
    #[command(flatten)]
    pub common: Request,
    /// Run as the Windows service `dsreg-agent` under the service control manager (the
    /// installer's command line; Windows only). Without it `run` is a console program.
    #[arg(long)]
    pub service: bool,
}

/// `parse` flags.
#[derive(Debug, Args)]
pub struct ParseArgs {
    /// The capture and its companions.
    #[command(flatten)]
    pub input: InputArgs,
    /// Output format: `json` (the snapshot document) or `text` (`section.key: value` lines,
    /// then unmapped lines and warnings).
    #[arg(long, value_enum, default_value_t = FormatArg::Json)]
    pub format: FormatArg,
}

/// The inputs of `parse` and `diagnose`.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// The dsregcmd /status capture; `-` or nothing reads standard input.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// An event-log export (wevtutil XML or Get-WinEvent JSON) to use as a failure source.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Who ran dsregcmd. A SYSTEM run never has a user PRT, so `system` suppresses the
    /// "no PRT" finding. Not given: judged as a user run.
    #[arg(long, value_enum)]
    pub context: Option<ContextArg>,
    /// Join configuration captures (registry, scheduled task, computer SID).
    #[command(flatten)]
    pub join: crate::joinconfig::Files,
}

/// `diagnose` flags.
#[derive(Debug, Args)]
pub struct DiagnoseArgs {
    /// The capture and its companions.
    #[command(flatten)]
    pub input: InputArgs,
    /// Output format: `text` (the report) or `json` (the failure document of the collector's
    /// device API, with attempts, not_targeted and join_config).
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    pub format: FormatArg,
    /// Exit 1 when the device is failing or not joined although targeted, 0 when healthy or
    /// not targeted: an Intune Remediations detection script.
    #[arg(long)]
    pub detect: bool,
    /// Read this device's join configuration (registry, join task, computer SID; Windows
    /// only) when no --registry-file / --task-file is given.
    #[arg(long)]
    pub this_device: bool,
}

/// `--format`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// JSON.
    Json,
    /// Text.
    Text,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Json => Format::Json,
            FormatArg::Text => Format::Text,
        }
    }
}

/// `--context`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ContextArg {
    /// Run as SYSTEM.
    System,
    /// Run as the signed-in user.
    User,
}

impl InputArgs {
    fn into_input(self) -> Input {
        Input {
            capture: self.file,
            events: self.events,
            context: match self.context {
                Some(ContextArg::System) => ExecutionContext::System,
                Some(ContextArg::User) => ExecutionContext::User,
                None => ExecutionContext::Unspecified,
            },
            join: self.join,
            this_device: false,
        }
    }
}

impl CliError {
    /// This error's row of the exit-code table.
    pub fn exit(&self) -> Exit {
        match self {
            CliError::Json(_) => Exit::Fault,
            _ => Exit::BadInput,
        }
    }
}

/// Runs the parsed command line to its exit code. `env` is the process environment
/// (`DSREG_*` settings, the default spool directory's base).
pub fn main(cli: Cli) -> ExitCode {
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let exit = match cli.command {
        Command::Parse(args) => offline(
            cli::parse_command(&args.input.into_input(), args.format.into()).map(|o| (o, Exit::Ok)),
        ),
        Command::Diagnose(args) => {
            let mut input = args.input.into_input();
            input.this_device = args.this_device;
            offline(
                cli::diagnose_command(&input, args.format.into()).map(|(out, verdict)| {
                    let exit = if args.detect && verdict.needs_remediation() {
                        Exit::NeedsRemediation
                    } else {
                        Exit::Ok
                    };
                    (out, exit)
                }),
            )
        }
        Command::Send(request) => service::send(request, &env),
        Command::Run(args) => service::run(args, &env),
        Command::Simulate(args) => crate::simulate::main(args),
    };
    exit.into()
}

/// Prints an offline subcommand's output (or its error) and returns its exit.
fn offline(result: Result<(String, Exit), CliError>) -> Exit {
    match result {
        Ok((out, exit)) => print(&out, exit),
        Err(e) => fail(&e, e.exit()),
    }
}

/// Writes `out` to standard output; a closed pipe still exits `exit`, another write error is
/// a fault.
fn print(out: &str, exit: Exit) -> Exit {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => exit,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit,
        Err(e) => fail(&format!("cannot write output: {e}"), Exit::Fault),
    }
}

/// Prints `error` as one line on standard error and returns `exit`.
fn fail(error: &dyn std::fmt::Display, exit: Exit) -> Exit {
    eprintln!("dsreg-agent: {error}");
    exit
}
