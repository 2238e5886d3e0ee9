//! Helpers for the end-to-end tests (process spawning, readiness waits). Filled in with the collector.

/// The Prometheus tier: promtool, a real Prometheus, the collector process (see module docs).
pub mod prom;
