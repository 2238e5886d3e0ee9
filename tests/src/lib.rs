//! The test-support crate of the workspace (`dsreg-e2e`): what the end-to-end tests in
//! `tests/tests/e2e/` share, each helper written once.
//!
//! Module map:
//! - [`process`]: `workspace_bin` (the binaries of the one `cargo test --workspace` build),
//!   `wait_until`, kill-on-drop children, `/proc` samples, the repository root.
//! - [`collector`]: the real `dsreg-collector` process on `127.0.0.1:0` (addresses read back
//!   from `--ready-file`), restartable on the same database, `kill -9`, SIGTERM.
//! - [`inproc`]: the in-process tier, `dsreg_collector::run` on listeners bound in the test.
//! - [`agent`]: running the real `dsreg-agent`.
//! - [`browser`]: a browser-like client (no redirects followed, one cookie, forms).
//! - [`reports`]: the one report builder.
//! - [`rng`]: the one seeded PRNG.
//! - [`http`]: a plain GET and a byte-exact raw HTTP/1.1 GET.
//! - [`metrics`]: Prometheus text parsing for `/metrics` assertions.
//! - [`prom`]: the Prometheus tier (promtool, a real Prometheus, the rules file).
//! - [`tls`]: test PKI (rcgen, at test time) and an https GET trusting one CA.

pub mod agent;
pub mod browser;
pub mod collector;
pub mod http;
pub mod inproc;
pub mod metrics;
pub mod process;
pub mod prom;
pub mod reports;
pub mod rng;
pub mod tls;
