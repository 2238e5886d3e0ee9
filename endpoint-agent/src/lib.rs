//! `dsreg-agent` library: turns `dsregcmd /status` output and registration events into a
//! typed [`dsreg_proto::Snapshot`], classifies the failure, and reports it.
pub mod cli;
pub mod credentials;
pub mod deliver;
pub mod dsregcmd;
pub mod events;
pub mod identity;
pub mod report;
pub mod runner;
pub mod service;
pub mod settings;
pub mod simulate;
pub mod spool;
