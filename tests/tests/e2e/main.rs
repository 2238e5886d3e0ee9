//! The end-to-end tests, one test binary (one link instead of one per concern), one module per
//! concern as the test files were. Shared helpers live in the `dsreg-e2e` library (`src/`).
//!
//! Two tiers:
//! - in process ([`dsreg_e2e::inproc`]): `dsreg_collector::run` on listeners bound in the
//!   test, for everything that does not need a separate collector process;
//! - process ([`dsreg_e2e::collector`], [`dsreg_e2e::agent`]): the real binaries, for `kill -9`,
//!   signals, exit codes, logs, per-process limits and the CLI.
//!
//! Tests run in parallel threads of this one process: a test never changes process-wide
//! state (environment, working directory, limits); a child gets its own environment instead.

mod agent_joinconfig;
mod agent_spool;
mod alert_waves;
mod api_abuse;
mod api_schemathesis;
mod collector_crash;
mod collector_ingest;
mod conn_flood;
mod deploy_consistency;
mod enroll_agent;
mod faults;
mod faults_disk_full;
mod grpc_abuse;
mod grpc_reflection;
mod prometheus_e2e;
mod pseudonymize;
mod rules;
mod security;
mod soak;
mod two_collectors;
mod ui_browser;
mod ui_login;
mod user_inbox;
