//! The `--help` texts of `dsreg-agent`: inputs, exit codes (the table is [`crate::exit`]) and
//! the settings file keys (generated from [`crate::settings::Settings::SPECS`]).

/// Exit codes, shown in every `--help`.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  the capture was parsed (also with parse warnings, also when the device is failing)
  1  internal error (for example, standard output closed)
  2  an input could not be read (missing file, a directory, no permission) or the events
     file is neither wevtutil XML nor Get-WinEvent JSON";

/// Exit codes of `diagnose` (`--detect` adds 1 for a device that needs remediation).
pub const DIAGNOSE_EXIT_CODES: &str = "\
Exit codes:
  0  the capture was diagnosed; with --detect: healthy, or not targeted (domain controller,
     hybrid join turned off by policy)
  1  with --detect: failing, or not joined although targeted (an Intune Remediations
     detection script); without --detect: internal error
  2  an input could not be read (missing file, a directory, no permission), the events file
     is neither wevtutil XML nor Get-WinEvent JSON, or --computer-sid is not a SID";

/// Input formats, shown in `parse` and `diagnose` help.
pub const INPUTS: &str = "\
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

/// Exit codes of `send` and `run`.
pub const SEND_EXIT_CODES: &str = "\
Exit codes:
  0  delivered (send) / handed to the device agent (send --user-context --user-inbox) /
     stopped cleanly (run)
  1  local fault (the spool directory or the --user-inbox directory cannot be written)
  2  bad input: unreadable capture or settings file, bad collector URL, unknown machine id
  3  the report is queued in the spool: the collector could not be reached or refused it";

/// `run`'s help epilogue: the exit codes and how it runs as a Windows service.
pub const RUN_HELP: &str = "\
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
StopPending and Stopped.";

/// `send`'s help epilogue: exit codes, then the settings file keys and their variables.
pub fn send() -> String {
    format!("{SEND_EXIT_CODES}\n\n{}", crate::settings::file_keys_help())
}

/// `run`'s help epilogue: exit codes, the Windows service, the settings file keys.
pub fn run() -> String {
    format!("{RUN_HELP}\n\n{}", crate::settings::file_keys_help())
}
