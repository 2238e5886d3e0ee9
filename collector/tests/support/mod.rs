//! Shared test support for the collector's integration tests.

pub mod graph_standin;
