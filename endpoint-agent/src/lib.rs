//! `dsreg-agent` library: turns `dsregcmd /status` output and registration events into a
//! typed [`dsreg_proto::Snapshot`], classifies the failure, and reports it.
//!
//! Module map:
//! - [`dsregcmd`]: the `/status` parser — any bytes in, a snapshot plus warnings out, never a
//!   panic (encodings, both layouts, copy-paste damage, wrapped lines, `/debug` traces).
//! - [`events`]: `wevtutil` XML and `Get-WinEvent` JSON exports of the registration log.
//! - [`cli`]: `parse` and `diagnose`, the technician's view of one capture.
//! - [`diagnose`]: `diagnose --format json` (the API's failure document) and the `--detect`
//!   verdict; the join configuration and attempts sections of the report.
//! - [`joinconfig`]: the join task, the client-side SCP, the join policy, product type, OS
//!   build and computer SID → `snapshot.join_config` (`reg query` / `schtasks` captures, or
//!   the machine itself on Windows).
//! - [`identity`]: machine id, host name, domain and build behind a platform seam.
//! - [`report`]: one collection → a report envelope (diagnosed locally).
//! - [`spool`]: the durable, bounded on-disk queue; a report leaves it only on ack.
//! - [`inbox`]: the user-context handoff — user runs drop reports there, the SYSTEM agent
//!   checks them and spools them, so users never hold the collector's credentials.
//! - [`deliver`]: draining the spool to the collector; backoff with full jitter.
//! - [`credentials`]: TLS trust, client certificate and bearer token for delivery.
//! - [`enroll`]: `--enroll-secret-file` — a device token of its own, kept in the state dir.
//! - [`pseudonym`]: `--pseudonymize-key-file` — user names and UPNs as keyed hashes.
//! - [`tlsprobe`]: after a failed https delivery without a client certificate, one diagnostic
//!   handshake to learn whether the collector requires one (TLS 1.3 hides it).
//! - [`runner`]: one cycle (collect → spool if changed → drain) and the `run` loop.
//! - [`source`]: the `Source` seam — `dsregcmd` / `wevtutil` with a timeout, or capture files.
//! - [`schedule`]: when the loop wakes (collections, delivery retries, jitter), clock-free.
//! - [`settings`]: every setting of `send` and `run` written once (flag, `DSREG_*` variable,
//!   file key), layered file ← environment ← flags.
//! - [`service`]: `send` and `run` resolved from flags and settings.
//! - [`scm`]: `run --service`, the Windows service lifecycle (control → graceful stop, status
//!   sequence) kept platform-neutral and tested here; only its SCM glue is `cfg(windows)`.
//! - [`simulate`]: a synthetic fleet for demos and load tests.
//! - [`winlog`]: the agent's own warnings and errors in the Windows Application event log
//!   (source `dsreg-agent`); formatting tested everywhere, the sink is `cfg(windows)`.
//!
//! - [`app`]: the command line ([`app::Cli`]), dispatch and printing; `main.rs` only parses
//!   and calls [`app::main`].
//! - [`exit`]: the one table of exit codes.
//! - [`signal`]: SIGINT/SIGTERM as a shutdown future for `run`.

pub mod app;
pub mod cli;
pub mod credentials;
pub mod deliver;
pub mod diagnose;
pub mod dsregcmd;
pub mod enroll;
pub mod events;
pub mod exit;
pub mod identity;
pub mod inbox;
pub mod joinconfig;
pub mod pseudonym;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod scm;
pub mod service;
pub mod settings;
pub mod signal;
pub mod simulate;
pub mod source;
pub mod spool;
pub mod tlsprobe;
pub mod winlog;
