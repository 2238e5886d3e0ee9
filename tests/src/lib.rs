//! Helpers for the end-to-end tests (process spawning, readiness waits). Filled in with the collector.
