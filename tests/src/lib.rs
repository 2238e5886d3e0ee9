//! Helpers for the end-to-end tests (process spawning, readiness waits).
//!
//! - [`collector`]: the real `dsreg-collector` on ephemeral loopback ports (`127.0.0.1:0`,
//!   addresses read back from `--ready-file`), restartable on the same database, killable
//!   with SIGKILL or stopped with SIGTERM.
//! - [`prom`]: the Prometheus tier (promtool, a real Prometheus).

/// The real collector process (start, restart on the same database, kill -9, SIGTERM).
pub mod collector;

/// The Prometheus tier: promtool, a real Prometheus, the collector process (see module docs).
pub mod prom;

/// Hostile-input, fault and soak helpers (raw HTTP, metric parsing, /proc samples).
pub mod abuse;

/// Test PKI (rcgen, at test time) and an https GET trusting one CA.
pub mod tls;

/// Running the real `dsreg-agent`: output for messages, spool counts.
pub mod agent;
