//! `dsreg-agent`: thin binary over the `dsreg_agent` library.
//!
//! Parses flags with clap, calls the library, prints its output and maps errors to exit codes.
//! Subcommands are variants of [`Command`]; each one's logic lives in the library (`cli` for
//! `parse` / `diagnose`), so new ones (`send`, `run`, `simulate`) add a variant and a call.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use dsreg_agent::cli::{self, CliError, Format, Input};
use dsreg_proto::ExecutionContext;

/// Exit codes, shown in every `--help`.
const EXIT_CODES: &str = "\
Exit codes:
  0  the capture was parsed (also with parse warnings, also when the device is failing)
  1  internal error (for example, standard output closed)
  2  an input could not be read (missing file, a directory, no permission) or the events
     file is neither wevtutil XML nor Get-WinEvent JSON";

/// Input formats, shown in `parse` and `diagnose` help.
const INPUTS: &str = "\
Inputs:
  FILE         output of `dsregcmd /status` (also `/status /debug`): UTF-8, or UTF-16 with a
               BOM as a PowerShell `>` redirect writes it; `-` or no FILE reads standard input
  --events     the registration event log, either
                 wevtutil qe \"Microsoft-Windows-User Device Registration/Admin\" /f:xml
                 (or /f:RenderedXml), or
                 Get-WinEvent -LogName 'Microsoft-Windows-User Device Registration/Admin' |
                 ConvertTo-Json -Depth 4   (PowerShell 5.1 or 7)";

/// Collects Microsoft Entra hybrid join state from `dsregcmd /status` and the device
/// registration event log, and explains the current failure.
#[derive(Debug, Parser)]
#[command(name = "dsreg-agent", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse a dsregcmd /status capture and print the snapshot (JSON or text).
    ///
    /// The snapshot includes the derived join type and current failure. JSON uses the
    /// snapshot paths of the wire schema (device_state.azure_ad_joined, diagnostics.tests.…,
    /// failure.cause, …); fields the capture did not contain are absent.
    #[command(after_help = format!("{INPUTS}\n\n{EXIT_CODES}"))]
    Parse(ParseArgs),
    /// Explain what is wrong with this device and what to do next.
    ///
    /// Prints the join type, "healthy" or the failing phase, the error code with its symbol
    /// and sub-code, the cause and its resolution, and the capture lines that show it.
    #[command(after_help = format!("{INPUTS}\n\n{EXIT_CODES}"))]
    Diagnose(InputArgs),
}

#[derive(Debug, Args)]
struct ParseArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Output format: `json` (the snapshot document) or `text` (`section.key: value` lines,
    /// then unmapped lines and warnings).
    #[arg(long, value_enum, default_value_t = FormatArg::Json)]
    format: FormatArg,
}

#[derive(Debug, Args)]
struct InputArgs {
    /// The dsregcmd /status capture; `-` or nothing reads standard input.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// An event-log export (wevtutil XML or Get-WinEvent JSON) to use as a failure source.
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
    /// Who ran dsregcmd. A SYSTEM run never has a user PRT, so `system` suppresses the
    /// "no PRT" finding. Not given: judged as a user run.
    #[arg(long, value_enum)]
    context: Option<ContextArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Json,
    Text,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ContextArg {
    System,
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
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<String> {
    let out = match cli.command {
        Command::Parse(args) => {
            let format = match args.format {
                FormatArg::Json => Format::Json,
                FormatArg::Text => Format::Text,
            };
            cli::parse_command(&args.input.into_input(), format)?
        }
        Command::Diagnose(args) => cli::diagnose_command(&args.into_input())?,
    };
    Ok(out)
}

fn main() -> ExitCode {
    let parsed = Cli::parse();
    match run(parsed) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(out.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("dsreg-agent: cannot write output: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Err(e) => {
            // A CliError already names the file and the OS error in one line.
            match e.downcast_ref::<CliError>() {
                Some(CliError::Json(_)) | None => {
                    eprintln!("dsreg-agent: {e:#}");
                    ExitCode::from(1)
                }
                Some(cli_error) => {
                    eprintln!("dsreg-agent: {cli_error}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
