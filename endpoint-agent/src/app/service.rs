//! `send` and `run` from the command line: resolve the settings, start the runtime, print the
//! outcome, pick the exit (the work itself is [`crate::service`]).
//!
//! `run` logs to `--log-file` (or standard error) and, with `--service`, hands over to the
//! Windows service control manager ([`crate::scm`]); a setting that does not resolve is
//! still logged there, so a service that cannot start says why in its log.

use std::collections::HashMap;
use std::path::Path;

use super::{RunArgs, fail};
use crate::exit::Exit;
use crate::service::{self, Request, SendOutcome, ServiceError};

fn runtime() -> Result<tokio::runtime::Runtime, ServiceError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServiceError::Runtime)
}

fn failed(e: &ServiceError) -> Exit {
    fail(e, e.exit())
}

/// `send`: one collection and delivery; queued reports exit [`Exit::Unreachable`].
pub(super) fn send(request: Request, env: &HashMap<String, String>) -> Exit {
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => return failed(&e),
    };
    let resolved = match request.resolve(env) {
        Ok(r) => r,
        Err(e) => return failed(&e),
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
            Exit::Ok
        }
        Ok(SendOutcome::HandedOff { path }) => {
            println!(
                "handed to the device agent: {} (the SYSTEM agent delivers it at its next cycle)",
                path.display()
            );
            Exit::Ok
        }
        Ok(SendOutcome::Queued {
            depth,
            spool_dir,
            reason,
        }) => fail(
            &format!(
                "queued: {depth} report(s) wait in {}; they will be delivered by the next send or run ({reason})",
                spool_dir.display()
            ),
            Exit::Unreachable,
        ),
        Err(e) => failed(&e),
    }
}

/// `run`: the service loop until SIGINT/SIGTERM, or the Windows service with `--service`.
pub(super) fn run(args: RunArgs, env: &HashMap<String, String>) -> Exit {
    if args.service && !cfg!(windows) {
        return fail(
            &"--service runs dsreg-agent under the Windows service control manager and exists \
              only on Windows; run `dsreg-agent run` without --service (Ctrl-C or SIGTERM stops it)",
            Exit::BadInput,
        );
    }
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => return failed(&e),
    };
    let request = args.common;
    let setup = request.resolve(env);
    // Settings that do not resolve still say where to log when the flag names it.
    let log_file = match &setup {
        Ok(r) => r.log_file.clone(),
        Err(_) => request.log_file.clone(),
    };
    if let Err(e) = init_tracing(log_file.as_deref()) {
        return fail(
            &format!(
                "cannot open --log-file {}: {e}",
                log_file.unwrap_or_default().display()
            ),
            Exit::Fault,
        );
    }
    if args.service {
        if let Err(e) = &setup {
            tracing::error!(error = %e, "the service cannot start");
        }
        return windows_service(setup);
    }
    // Standard error always gets the message; a log file gets it too.
    let stopped = |e: &ServiceError| {
        if log_file.is_some() {
            tracing::error!(error = %e, "dsreg-agent run stopped on an error");
        }
        failed(e)
    };
    let resolved = match setup {
        Ok(r) => r,
        Err(e) => return stopped(&e),
    };
    match runtime.block_on(service::run(&resolved, crate::signal::shutdown())) {
        Ok(()) => Exit::Ok,
        Err(e) => stopped(&e),
    }
}

/// Logs to `log_file` (appended, no colours) or standard error; on Windows warnings and
/// errors also go to the Application event log (source `dsreg-agent`).
fn init_tracing(log_file: Option<&Path>) -> std::io::Result<()> {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_env("DSREG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(crate::winlog::system_layer());
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
fn windows_service(setup: Result<service::Resolved, ServiceError>) -> Exit {
    match crate::scm::windows::dispatch(setup) {
        Ok(0) => Exit::Ok,
        Ok(1) => Exit::Fault,
        Ok(_) => Exit::BadInput,
        Err(e) => {
            tracing::error!(error = %e, "not started by the service control manager");
            fail(&e, Exit::BadInput)
        }
    }
}

#[cfg(not(windows))]
fn windows_service(_setup: Result<service::Resolved, ServiceError>) -> Exit {
    // Refused before this point; kept for the type checker.
    Exit::BadInput
}
