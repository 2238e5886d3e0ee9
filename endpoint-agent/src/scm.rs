//! `dsreg-agent run --service`: the Windows service lifecycle, platform-neutral so that it is
//! compiled and tested on Linux; only the thin glue to the service control manager (SCM), the
//! [`windows`] module, is `cfg(windows)`.
//!
//! The SCM starts `dsreg-agent.exe run --service …` (the service `dsreg-agent` that
//! `deploy/windows/Install-DsregAgent.ps1` registers). The process connects to the SCM, which
//! calls the service main on its own thread. The service main registers a control handler and
//! calls [`serve`], which reports `StartPending`, builds the runtime, reports `Running` and
//! runs the same loop as `run` in a console ([`crate::service::run`]). That loop's shutdown
//! future — Ctrl-C/SIGTERM in a console — here completes when the SCM sends Stop, Shutdown or
//! Preshutdown ([`handle_control`]); the loop stops at once, also in the middle of a cycle (the
//! spool is durable after every push and a report cut off mid-delivery is resent and answered
//! `DUPLICATE`). `serve` then reports `StopPending` with a wait hint and `Stopped`: exit code 0,
//! or the `run` exit code (1 local fault, 2 bad input) as a service-specific code, so
//! `sc.exe query dsreg-agent` and the System event log say why it stopped.

use std::time::Duration;

use tokio::sync::watch;

use crate::service::{Resolved, ServiceError};

/// The service name the installer registers and the dispatcher connects as.
pub const SERVICE_NAME: &str = "dsreg-agent";

/// How long the SCM should wait for a start step.
pub const START_WAIT_HINT: Duration = Duration::from_secs(10);

/// How long the SCM should wait between a stop request and `Stopped`: the loop stops at its
/// next await point, so this is generous.
pub const STOP_WAIT_HINT: Duration = Duration::from_secs(15);

/// A control request from the SCM, reduced to what the agent distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// `sc stop`, `Stop-Service`, the Services console.
    Stop,
    /// The system is shutting down (sent when Preshutdown is not used).
    Shutdown,
    /// The system is about to shut down (sent first, with more time than Shutdown).
    Preshutdown,
    /// "Report your status" (always answered).
    Interrogate,
    /// Anything else (pause, parameter change, device events …): not implemented.
    Other,
}

/// The control handler's answer to the SCM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Done (`NO_ERROR`).
    Handled,
    /// `ERROR_CALL_NOT_IMPLEMENTED`.
    NotImplemented,
}

/// The sending half of a stop request: held by the control handler (another thread).
#[derive(Debug, Clone)]
pub struct StopHandle(std::sync::Arc<watch::Sender<bool>>);

/// The receiving half: a future for the loop's shutdown.
#[derive(Debug)]
pub struct StopWaiter(watch::Receiver<bool>);

/// A new stop request channel.
pub fn stop_channel() -> (StopHandle, StopWaiter) {
    let (tx, rx) = watch::channel(false);
    (StopHandle(std::sync::Arc::new(tx)), StopWaiter(rx))
}

impl StopHandle {
    /// Asks the loop to stop (idempotent; works before the loop waits, too).
    pub fn request(&self) {
        self.0.send_replace(true);
    }
}

impl StopWaiter {
    /// Completes once a stop was requested (or the handle is gone, which also means stop).
    pub async fn stopped(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// What the control handler does with `control`: Stop, Shutdown and Preshutdown request the
/// graceful stop; Interrogate is answered; the rest is not implemented.
pub fn handle_control(control: Control, stop: &StopHandle) -> Reply {
    match control {
        Control::Stop | Control::Shutdown | Control::Preshutdown => {
            stop.request();
            Reply::Handled
        }
        Control::Interrogate => Reply::Handled,
        Control::Other => Reply::NotImplemented,
    }
}

/// The service states the agent reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Starting (runtime not built yet).
    StartPending,
    /// The loop runs.
    Running,
    /// Stopping: the loop was asked to stop or ended.
    StopPending,
    /// Stopped; the process exits after this.
    Stopped,
}

/// One status report to the SCM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The state.
    pub state: State,
    /// Whether Stop, Shutdown and Preshutdown are accepted (only while running).
    pub accepts_stop: bool,
    /// Progress counter of a pending state (0 otherwise).
    pub checkpoint: u32,
    /// How long the SCM should wait for the next report of a pending state.
    pub wait_hint: Duration,
    /// `None`: success; `Some(n)`: service-specific exit code `n` (only with `Stopped`).
    pub exit_code: Option<u32>,
}

/// Where status reports go: the SCM on Windows, a list in tests.
pub trait StatusSink {
    /// Reports `status` (errors are the sink's to log: the service goes on regardless).
    fn report(&mut self, status: &Status);
}

/// The status sequence of one service run: `StartPending` → `Running` → `StopPending` →
/// `Stopped`, with a growing checkpoint through each pending state.
struct Lifecycle<'a> {
    sink: &'a mut dyn StatusSink,
    state: State,
    checkpoint: u32,
}

impl<'a> Lifecycle<'a> {
    fn start(sink: &'a mut dyn StatusSink) -> Self {
        let mut me = Lifecycle {
            sink,
            state: State::StartPending,
            checkpoint: 0,
        };
        me.report(State::StartPending, START_WAIT_HINT, None);
        me
    }

    fn report(&mut self, state: State, wait_hint: Duration, exit_code: Option<u32>) {
        let pending = matches!(state, State::StartPending | State::StopPending);
        self.checkpoint = if pending && state == self.state {
            self.checkpoint + 1
        } else if pending {
            1
        } else {
            0
        };
        self.state = state;
        self.sink.report(&Status {
            state,
            accepts_stop: state == State::Running,
            checkpoint: self.checkpoint,
            wait_hint: if pending { wait_hint } else { Duration::ZERO },
            exit_code,
        });
    }

    fn running(&mut self) {
        self.report(State::Running, Duration::ZERO, None);
    }

    fn stopping(&mut self) {
        if self.state != State::StopPending {
            self.report(State::StopPending, STOP_WAIT_HINT, None);
        }
    }

    fn stopped(mut self, exit_code: Option<u32>) {
        self.report(State::Stopped, Duration::ZERO, exit_code);
    }
}

/// Runs the service: reports `StartPending`, then (when `setup` resolved) `Running` and the
/// `run` loop until `stop`, then `StopPending` and `Stopped` with the exit code. A `setup`
/// error (bad settings) goes straight to `Stopped` with its exit code. Returns the loop's
/// result for the caller to log.
pub fn serve(
    setup: Result<Resolved, ServiceError>,
    sink: &mut dyn StatusSink,
    stop: StopWaiter,
) -> Result<(), ServiceError> {
    let mut life = Lifecycle::start(sink);
    let resolved = match setup {
        Ok(r) => r,
        Err(e) => {
            life.stopped(Some(u32::from(e.exit_code())));
            return Err(e);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let e = ServiceError::Runtime(e);
            life.stopped(Some(u32::from(e.exit_code())));
            return Err(e);
        }
    };
    life.running();
    let shutdown = async {
        stop.stopped().await;
        tracing::info!("stop requested by the service control manager");
        life.stopping();
    };
    let result = runtime.block_on(crate::service::run(&resolved, shutdown));
    life.stopping();
    life.stopped(result.as_ref().err().map(|e| u32::from(e.exit_code())));
    result
}

/// The SCM glue: dispatcher, control handler and status reports (`windows-service`).
#[cfg(windows)]
pub mod windows {
    use std::ffi::OsString;
    use std::sync::{Mutex, MutexGuard};

    use windows_service::service::{
        ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus,
        ServiceType,
    };
    use windows_service::service_control_handler::{
        self, ServiceControlHandlerResult, ServiceStatusHandle,
    };
    use windows_service::{define_windows_service, service_dispatcher};

    use super::{
        Control, Reply, SERVICE_NAME, State, Status, StatusSink, handle_control, serve,
        stop_channel,
    };
    use crate::service::{Resolved, ServiceError};

    /// What the service main runs: set by [`dispatch`] before the SCM calls it (the SCM's
    /// entry point takes no context).
    static SETUP: Mutex<Option<Result<Resolved, ServiceError>>> = Mutex::new(None);
    /// The exit code the service main ended with.
    static EXIT: Mutex<Option<u8>> = Mutex::new(None);

    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `dispatch` could not connect to the SCM: the process was not started as a service.
    #[derive(Debug, thiserror::Error)]
    #[error(
        "--service: cannot connect to the Windows service control manager ({0}); --service is \
         for the `dsreg-agent` service the installer registers — in a console run \
         `dsreg-agent run` without --service"
    )]
    pub struct DispatchError(windows_service::Error);

    define_windows_service!(ffi_service_main, service_main);

    /// Connects to the SCM as the service `dsreg-agent` and blocks until the service stopped;
    /// returns its exit code. `setup` is the resolved settings, or why they could not be
    /// resolved (the service then reports `Stopped` with that exit code).
    pub fn dispatch(setup: Result<Resolved, ServiceError>) -> Result<u8, DispatchError> {
        *lock(&SETUP) = Some(setup);
        service_dispatcher::start(SERVICE_NAME, ffi_service_main).map_err(DispatchError)?;
        Ok(lock(&EXIT).take().unwrap_or(1))
    }

    fn service_main(_arguments: Vec<OsString>) {
        let code = match lock(&SETUP).take() {
            Some(setup) => run(setup),
            None => 1,
        };
        *lock(&EXIT) = Some(code);
    }

    fn run(setup: Result<Resolved, ServiceError>) -> u8 {
        let (stop, waiter) = stop_channel();
        let handler = move |control: ServiceControl| {
            let control = match control {
                ServiceControl::Stop => Control::Stop,
                ServiceControl::Shutdown => Control::Shutdown,
                ServiceControl::Preshutdown => Control::Preshutdown,
                ServiceControl::Interrogate => Control::Interrogate,
                _ => Control::Other,
            };
            match handle_control(control, &stop) {
                Reply::Handled => ServiceControlHandlerResult::NoError,
                Reply::NotImplemented => ServiceControlHandlerResult::NotImplemented,
            }
        };
        let handle = match service_control_handler::register(SERVICE_NAME, handler) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "cannot register the service control handler");
                return 1;
            }
        };
        let mut sink = ScmSink(handle);
        match serve(setup, &mut sink, waiter) {
            Ok(()) => {
                tracing::info!("dsreg-agent service stopped");
                0
            }
            Err(e) => {
                tracing::error!(error = %e, "dsreg-agent service stopped on an error");
                e.exit_code()
            }
        }
    }

    /// Status reports to the SCM.
    struct ScmSink(ServiceStatusHandle);

    impl StatusSink for ScmSink {
        fn report(&mut self, s: &Status) {
            let status = ServiceStatus {
                service_type: ServiceType::OWN_PROCESS,
                current_state: match s.state {
                    State::StartPending => ServiceState::StartPending,
                    State::Running => ServiceState::Running,
                    State::StopPending => ServiceState::StopPending,
                    State::Stopped => ServiceState::Stopped,
                },
                controls_accepted: if s.accepts_stop {
                    ServiceControlAccept::STOP
                        | ServiceControlAccept::SHUTDOWN
                        | ServiceControlAccept::PRESHUTDOWN
                } else {
                    ServiceControlAccept::empty()
                },
                exit_code: match s.exit_code {
                    None => ServiceExitCode::NO_ERROR,
                    Some(n) => ServiceExitCode::ServiceSpecific(n),
                },
                checkpoint: s.checkpoint,
                wait_hint: s.wait_hint,
                process_id: None,
            };
            if let Err(e) = self.0.set_service_status(status) {
                tracing::warn!(state = ?s.state, error = %e, "cannot report the service status");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::service::Request;

    /// Records every status; asks for a stop when it sees `Running` (as an operator would).
    struct Recorder {
        seen: Vec<Status>,
        stop_when_running: Option<StopHandle>,
    }

    impl StatusSink for Recorder {
        fn report(&mut self, status: &Status) {
            if let (State::Running, Some(stop)) = (status.state, &self.stop_when_running) {
                assert_eq!(handle_control(Control::Stop, stop), Reply::Handled);
            }
            self.seen.push(status.clone());
        }
    }

    fn states(r: &Recorder) -> Vec<(State, Option<u32>)> {
        r.seen.iter().map(|s| (s.state, s.exit_code)).collect()
    }

    fn request(dir: &std::path::Path) -> Request {
        let status = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/dsregcmd/domain-joined-discover-0x801c001d-elevated-ws2022.txt");
        Request {
            status_file: Some(status),
            spool_dir: Some(dir.join("spool")),
            // Nothing listens on port 1: no test ever reaches a real collector.
            collector: Some("http://127.0.0.1:1".into()),
            machine_id: Some("scm-test".into()),
            hostname: Some("SCM-TEST".into()),
            ..Request::default()
        }
    }

    #[test]
    fn controls_map_to_the_graceful_stop() {
        for (control, reply, stops) in [
            (Control::Stop, Reply::Handled, true),
            (Control::Shutdown, Reply::Handled, true),
            (Control::Preshutdown, Reply::Handled, true),
            (Control::Interrogate, Reply::Handled, false),
            (Control::Other, Reply::NotImplemented, false),
        ] {
            let (handle, waiter) = stop_channel();
            assert_eq!(handle_control(control, &handle), reply, "{control:?}");
            assert_eq!(*waiter.0.borrow(), stops, "{control:?}");
        }
    }

    #[test]
    fn a_stop_while_running_reports_stop_pending_then_stopped_ok() {
        let dir = tempfile::tempdir().unwrap();
        let setup = request(dir.path()).resolve(&HashMap::new());
        let (handle, waiter) = stop_channel();
        let mut rec = Recorder {
            seen: Vec::new(),
            stop_when_running: Some(handle),
        };
        serve(setup, &mut rec, waiter).unwrap();
        assert_eq!(
            states(&rec),
            [
                (State::StartPending, None),
                (State::Running, None),
                (State::StopPending, None),
                (State::Stopped, None),
            ]
        );
        let accepts: Vec<bool> = rec.seen.iter().map(|s| s.accepts_stop).collect();
        assert_eq!(accepts, [false, true, false, false]);
        let stop_pending = &rec.seen[2];
        assert_eq!(
            (stop_pending.checkpoint, stop_pending.wait_hint),
            (1, STOP_WAIT_HINT)
        );
        assert!(dir.path().join("spool").is_dir(), "the loop ran");
    }

    #[test]
    fn a_failing_loop_stops_with_its_service_specific_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        // The spool directory is a file: a local fault, exit code 1.
        std::fs::write(dir.path().join("spool"), b"not a directory").unwrap();
        let setup = request(dir.path()).resolve(&HashMap::new());
        let (_handle, waiter) = stop_channel();
        let mut rec = Recorder {
            seen: Vec::new(),
            stop_when_running: None,
        };
        let err = serve(setup, &mut rec, waiter).unwrap_err();
        assert_eq!(err.exit_code(), 1, "{err}");
        assert_eq!(
            states(&rec),
            [
                (State::StartPending, None),
                (State::Running, None),
                (State::StopPending, None),
                (State::Stopped, Some(1)),
            ]
        );
    }

    #[test]
    fn bad_settings_stop_at_once_with_exit_code_2() {
        let dir = tempfile::tempdir().unwrap();
        let mut req = request(dir.path());
        req.collector = Some("ftp://nowhere".into());
        let setup = req.resolve(&HashMap::new());
        let (_handle, waiter) = stop_channel();
        let mut rec = Recorder {
            seen: Vec::new(),
            stop_when_running: None,
        };
        let err = serve(setup, &mut rec, waiter).unwrap_err();
        assert!(err.to_string().contains("ftp://nowhere"), "{err}");
        assert_eq!(
            states(&rec),
            [(State::StartPending, None), (State::Stopped, Some(2))]
        );
    }
}
