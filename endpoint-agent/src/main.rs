//! `dsreg-agent`: thin binary over the `dsreg_agent` library.
//!
//! Parses flags with clap, calls the library, prints its output and maps errors to exit codes.
//! Subcommands are variants of [`Command`]; each one's logic lives in the library (`cli` for
//! `parse` / `diagnose`), so new ones (`send`, `run`, `simulate`) add a variant and a call.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::time::Duration;

use dsreg_agent::cli::{self, CliError, Format, Input};
use dsreg_agent::service::{self, Request, SendOutcome, ServiceError};
use dsreg_agent::settings;
use dsreg_proto::ExecutionContext;

/// Exit codes, shown in every `--help`.
const EXIT_CODES: &str = "\
Exit codes:
  0  the capture was parsed (also with parse warnings, also when the device is failing)
  1  internal error (for example, standard output closed)
  2  an input could not be read (missing file, a directory, no permission) or the events
     file is neither wevtutil XML nor Get-WinEvent JSON";

/// Exit codes of `diagnose` (`--detect` adds 1 for a device that needs remediation).
const DIAGNOSE_EXIT_CODES: &str = "\
Exit codes:
  0  the capture was diagnosed; with --detect: healthy, or not targeted (domain controller,
     hybrid join turned off by policy)
  1  with --detect: failing, or not joined although targeted (an Intune Remediations
     detection script); without --detect: internal error
  2  an input could not be read (missing file, a directory, no permission), the events file
     is neither wevtutil XML nor Get-WinEvent JSON, or --computer-sid is not a SID";

/// Input formats, shown in `parse` and `diagnose` help.
const INPUTS: &str = "\
Inputs:
  FILE         output of `dsregcmd /status` (also `/status /debug`): UTF-8, or UTF-16 with a
               BOM as a PowerShell `>` redirect writes it; `-` or no FILE reads standard input
  --events     the registration event log, either
                 wevtutil qe \"Microsoft-Windows-User Device Registration/Admin\" /f:xml
                 (or /f:RenderedXml), or
                 Get-WinEvent -LogName 'Microsoft-Windows-User Device Registration/Admin' |
                 ConvertTo-Json -Depth 4   (PowerShell 5.1 or 7)
  --registry-file  reg query output of the join configuration keys (see the README)
  --task-file      schtasks /query /tn \"\\Microsoft\\Windows\\Workplace Join\\Automatic-Device-Join\"
                   /xml, or /v /fo list (English or German); may be given twice";

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
    #[command(after_help = format!("{INPUTS}\n\n{DIAGNOSE_EXIT_CODES}"))]
    Diagnose(DiagnoseArgs),
    /// Collect once and deliver to the collector (scheduled tasks, logon tasks, tests).
    ///
    /// The report is written to the on-disk spool first and removed only when the collector
    /// acknowledges it, so nothing is lost when the collector is unreachable: the report stays
    /// queued (exit 3) and the next `send` or `run` delivers the spool first, oldest first.
    /// On Windows without --status-file it runs `dsregcmd /status` itself.
    #[command(after_help = SEND_EXIT_CODES)]
    Send(ServiceArgs),
    /// The service loop: collect at start, then every --interval (±10% jitter); send only
    /// changed snapshots plus a heartbeat; retry failed deliveries with exponential backoff.
    ///
    /// Runs until SIGINT/SIGTERM (Ctrl-C), or with --service until the Windows service control
    /// manager stops it. On Windows it runs `dsregcmd /status` and reads the
    /// `Microsoft-Windows-User Device Registration/Admin` log through `wevtutil`; elsewhere
    /// (tests, demos) it re-reads --status-file and --events-file each cycle.
    #[command(after_help = RUN_HELP)]
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
    Simulate(dsreg_agent::simulate::SimulateArgs),
}

/// Exit codes of `send` and `run`.
const SEND_EXIT_CODES: &str = "\
Exit codes:
  0  delivered (send) / handed to the device agent (send --user-context --user-inbox) /
     stopped cleanly (run)
  1  local fault (the spool directory or the --user-inbox directory cannot be written)
  2  bad input: unreadable capture or settings file, bad collector URL, unknown machine id
  3  the report is queued in the spool: the collector could not be reached or refused it

Settings file (--config, TOML): collector, spool_dir, interval_minutes, heartbeat_hours,
status_timeout_seconds, insecure, spool_max_reports, spool_max_bytes, token_file, ca_file,
client_cert, client_key, log_file, user_inbox, enroll_secret_file, pseudonymize_key_file.
Flags win over it.";

/// `run`'s help epilogue: the exit codes and how it runs as a Windows service.
const RUN_HELP: &str = "\
Exit codes:
  0  stopped cleanly (Ctrl-C, SIGTERM, or the service control manager's Stop/Shutdown)
  1  local fault (the spool directory cannot be written, --log-file cannot be opened)
  2  bad input: unreadable capture or settings file, bad collector URL, unknown machine id,
     --service outside Windows or not started by the service control manager
As a Windows service the same code is the service-specific exit code (sc.exe query dsreg-agent).

Windows service: the installer registers the service `dsreg-agent` with the command line
  dsreg-agent.exe run --service --config C:\\ProgramData\\dsreg-agent\\agent.toml
      --log-file C:\\ProgramData\\dsreg-agent\\agent.log
      --user-inbox C:\\ProgramData\\dsreg-agent\\user-inbox
Stop, Shutdown and Preshutdown stop the loop as Ctrl-C does; it reports StartPending, Running,
StopPending and Stopped.

Settings file (--config, TOML): collector, spool_dir, interval_minutes, heartbeat_hours,
status_timeout_seconds, insecure, spool_max_reports, spool_max_bytes, token_file, ca_file,
client_cert, client_key, log_file, user_inbox, enroll_secret_file, pseudonymize_key_file.
Flags win over it.";

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    common: ServiceArgs,
    /// Run as the Windows service `dsreg-agent` under the service control manager (the
    /// installer's command line; Windows only). Without it `run` is a console program.
    #[arg(long)]
    service: bool,
    /// Append log lines to FILE instead of standard error (a service has no console); renamed
    /// to FILE.old at start when over 10 MiB [settings key log_file].
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServiceArgs {
    /// Settings file (TOML); flags given on the command line win over it.
    #[arg(long, value_name = "FILE", env = "DSREG_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// Collector gRPC URL [default: http://127.0.0.1:50051].
    #[arg(long, value_name = "URL", env = "DSREG_COLLECTOR")]
    collector: Option<String>,
    /// Read the dsregcmd /status capture from FILE instead of running dsregcmd.
    #[arg(long, value_name = "FILE")]
    status_file: Option<PathBuf>,
    /// Read registration events from FILE (wevtutil XML or Get-WinEvent JSON).
    #[arg(long, value_name = "FILE")]
    events_file: Option<PathBuf>,
    /// Device key to report [default: MachineGuid on Windows, /etc/machine-id elsewhere].
    #[arg(long, value_name = "ID")]
    machine_id: Option<String>,
    /// Host name to report [default: this machine's name].
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// Spool directory [default: %ProgramData%\dsreg-agent\spool on Windows,
    /// ~/.local/state/dsreg-agent/spool or /var/lib/dsreg-agent/spool elsewhere].
    #[arg(long, value_name = "DIR", env = "DSREG_SPOOL_DIR")]
    spool_dir: Option<PathBuf>,
    /// Allow plain http:// to a collector that is not on loopback (lab use only).
    #[arg(long)]
    insecure: bool,
    /// File holding the agent token (sent as `authorization: Bearer`; never logged).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// PEM CA certificate(s) that signed an https:// collector's certificate
    /// [default: the platform's trust store].
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// PEM client certificate for a collector that requires mTLS (with --client-key).
    #[arg(long, value_name = "FILE")]
    client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, value_name = "FILE")]
    client_key: Option<PathBuf>,
    /// Collect in the signed-in user's context (adds PRT / WAM state; the logon task uses it).
    #[arg(long)]
    user_context: bool,
    /// The user-context handoff directory [settings key user_inbox]. With --user-context:
    /// write the report there for the device agent instead of delivering it (the user needs no
    /// token or client key; exit 0 once written). Without: the SYSTEM agent takes the user
    /// reports of this device from there before each delivery.
    #[arg(long, value_name = "DIR")]
    user_inbox: Option<PathBuf>,
    /// Time between collections for `run`, e.g. 60m [default: 60m].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    interval: Option<Duration>,
    /// Queue an unchanged snapshot after this long anyway, e.g. 6h [default: 6h].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    heartbeat: Option<Duration>,
    /// Kill dsregcmd / wevtutil after this long, e.g. 30s [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    status_timeout: Option<Duration>,
    /// Join configuration captures instead of the registry and Task Scheduler (off Windows).
    #[command(flatten)]
    join: dsreg_agent::joinconfig::Files,
    /// The fleet's enroll secret: on first contact trade it for a device token bound to this
    /// machine id (kept in the spool directory as `device-token`) and report with that token;
    /// enroll again once when the collector no longer knows it [settings key
    /// enroll_secret_file].
    #[arg(long, value_name = "FILE")]
    enroll_secret_file: Option<PathBuf>,
    /// The fleet's pseudonymization key: every user name and UPN is replaced by
    /// HMAC-SHA-256(key, name) in hex before the report is spooled, so none reaches the
    /// collector; the same user gives the same token on every device [settings key
    /// pseudonymize_key_file].
    #[arg(long, value_name = "FILE")]
    pseudonymize_key_file: Option<PathBuf>,
}

fn duration(s: &str) -> Result<Duration, String> {
    settings::parse_duration(s).map_err(|e| e.to_string())
}

impl ServiceArgs {
    fn into_request(self) -> Request {
        Request {
            config: self.config,
            collector: self.collector,
            status_file: self.status_file,
            events_file: self.events_file,
            machine_id: self.machine_id,
            hostname: self.hostname,
            spool_dir: self.spool_dir,
            insecure: self.insecure,
            user_context: self.user_context,
            interval: self.interval,
            heartbeat: self.heartbeat,
            status_timeout: self.status_timeout,
            token_file: self.token_file,
            ca_file: self.ca_file,
            client_cert: self.client_cert,
            client_key: self.client_key,
            log_file: None,
            user_inbox: self.user_inbox,
            join: self.join,
            enroll_secret_file: self.enroll_secret_file,
            pseudonymize_key_file: self.pseudonymize_key_file,
        }
    }
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
    /// Join configuration captures (registry, scheduled task, computer SID).
    #[command(flatten)]
    join: dsreg_agent::joinconfig::Files,
}

#[derive(Debug, Args)]
struct DiagnoseArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Output format: `text` (the report) or `json` (the failure document of the collector's
    /// device API, with attempts, not_targeted and join_config).
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    format: FormatArg,
    /// Exit 1 when the device is failing or not joined although targeted, 0 when healthy or
    /// not targeted: an Intune Remediations detection script.
    #[arg(long)]
    detect: bool,
    /// Read this device's join configuration (registry, join task, computer SID; Windows
    /// only) when no --registry-file / --task-file is given.
    #[arg(long)]
    this_device: bool,
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
            join: self.join,
            this_device: false,
        }
    }
}

/// What `run` produced: text for standard output (and the exit code after it), or an exit
/// code already decided.
enum Outcome {
    Print(String, ExitCode),
    Exit(ExitCode),
}

fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let out = match cli.command {
        Command::Parse(args) => {
            let format = match args.format {
                FormatArg::Json => Format::Json,
                FormatArg::Text => Format::Text,
            };
            cli::parse_command(&args.input.into_input(), format)?
        }
        Command::Diagnose(args) => {
            let format = match args.format {
                FormatArg::Json => Format::Json,
                FormatArg::Text => Format::Text,
            };
            let mut input = args.input.into_input();
            input.this_device = args.this_device;
            let (out, verdict) = cli::diagnose_command(&input, format)?;
            let code = if args.detect && verdict.needs_remediation() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
            return Ok(Outcome::Print(out, code));
        }
        Command::Send(_) | Command::Run(_) => return Ok(Outcome::Exit(service(cli.command))),
        Command::Simulate(args) => return Ok(Outcome::Exit(dsreg_agent::simulate::main(args))),
    };
    Ok(Outcome::Print(out, ExitCode::SUCCESS))
}

/// `send` and `run`: async, with their own exit codes.
fn service(command: Command) -> ExitCode {
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dsreg-agent: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let fail = |e: ServiceError| {
        eprintln!("dsreg-agent: {e}");
        ExitCode::from(e.exit_code())
    };
    match command {
        Command::Send(args) => {
            let resolved = match args.into_request().resolve(&env) {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
            match runtime.block_on(service::send(&resolved)) {
                Ok(SendOutcome::Delivered {
                    accepted,
                    duplicates,
                    rejected,
                }) => {
                    println!(
                        "delivered to {}: {accepted} accepted, {duplicates} already stored, {rejected} rejected",
                        resolved.delivery.collector
                    );
                    ExitCode::SUCCESS
                }
                Ok(SendOutcome::HandedOff { path }) => {
                    println!(
                        "handed to the device agent: {} (the SYSTEM agent delivers it at its next cycle)",
                        path.display()
                    );
                    ExitCode::SUCCESS
                }
                Ok(SendOutcome::Queued {
                    depth,
                    spool_dir,
                    reason,
                }) => {
                    eprintln!(
                        "dsreg-agent: queued: {depth} report(s) wait in {}; they will be delivered by the next send or run ({reason})",
                        spool_dir.display()
                    );
                    ExitCode::from(3)
                }
                Err(e) => fail(e),
            }
        }
        Command::Run(args) => {
            if args.service && !cfg!(windows) {
                eprintln!(
                    "dsreg-agent: --service runs dsreg-agent under the Windows service control \
                     manager and exists only on Windows; run `dsreg-agent run` without --service \
                     (Ctrl-C or SIGTERM stops it)"
                );
                return ExitCode::from(2);
            }
            let as_service = args.service;
            let mut request = args.common.into_request();
            request.log_file = args.log_file;
            let setup = request.resolve(&env);
            // Settings that do not resolve still say where to log when the flag names it.
            let log_file = match &setup {
                Ok(r) => r.log_file.clone(),
                Err(_) => request.log_file.clone(),
            };
            if let Err(e) = init_tracing(log_file.as_deref()) {
                eprintln!(
                    "dsreg-agent: cannot open --log-file {}: {e}",
                    log_file.unwrap_or_default().display()
                );
                return ExitCode::from(1);
            }
            if as_service {
                if let Err(e) = &setup {
                    tracing::error!(error = %e, "the service cannot start");
                }
                return windows_service(setup);
            }
            // Standard error always gets the message; a log file gets it too.
            let to_log = |e: &ServiceError| {
                if log_file.is_some() {
                    tracing::error!(error = %e, "dsreg-agent run stopped on an error");
                }
            };
            let resolved = match setup {
                Ok(r) => r,
                Err(e) => {
                    to_log(&e);
                    return fail(e);
                }
            };
            match runtime.block_on(service::run(&resolved, shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    to_log(&e);
                    fail(e)
                }
            }
        }
        Command::Parse(_) | Command::Diagnose(_) | Command::Simulate(_) => ExitCode::from(1),
    }
}

/// Logs to `log_file` (appended, no colours) or standard error; on Windows warnings and
/// errors also go to the Application event log (source `dsreg-agent`).
fn init_tracing(log_file: Option<&std::path::Path>) -> std::io::Result<()> {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_env("DSREG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(dsreg_agent::winlog::system_layer());
    match log_file {
        Some(path) => {
            let file = service::open_log_file(path)?;
            let fmt = tracing_subscriber::fmt::layer()
                .with_writer(std::sync::Mutex::new(file))
                .with_ansi(false);
            registry.with(fmt).init();
        }
        None => {
            let fmt = tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
            registry.with(fmt).init();
        }
    }
    Ok(())
}

/// `run --service`: hands the resolved settings to the service control manager's dispatcher
/// and exits with the service's exit code.
#[cfg(windows)]
fn windows_service(setup: Result<service::Resolved, ServiceError>) -> ExitCode {
    match dsreg_agent::scm::windows::dispatch(setup) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracing::error!(error = %e, "not started by the service control manager");
            eprintln!("dsreg-agent: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(not(windows))]
fn windows_service(_setup: Result<service::Resolved, ServiceError>) -> ExitCode {
    // Refused before this point; kept for the type checker.
    ExitCode::from(2)
}

/// Completes on Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn main() -> ExitCode {
    let parsed = Cli::parse();
    match run(parsed) {
        Ok(Outcome::Exit(code)) => code,
        Ok(Outcome::Print(out, code)) => {
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(out.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => code,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => code,
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
