//! `dsreg-settings`: the settings model both binaries share.
//!
//! Module map:
//! - [`parse`]: the one value grammar (durations, counts, booleans, addresses, paths); a
//!   parser is a `fn(&str) -> Result<T, String>` whose error is the lower-case reason only, so
//!   every layer can name itself around it.
//! - [`layer`]: the three layers (file, environment, flag), how each names a setting in an
//!   error ([`layer::setting_name`]), and [`InvalidValue`], the error they share.
//! - [`declare`]: the [`declare_settings!`] macro. Each setting is written once — name, type,
//!   parser, environment variable, file key, flag attributes and doc — and the macro derives
//!   the clap flags, the TOML file struct, the environment reader, the merge and the key table.
//!
//! Precedence, everywhere: defaults ← file ← `DSREG_*` environment ← flags. Loaders take the
//! environment as a map, so tests never mutate the process's.
//!
//! Why a crate and not a module of `dsreg-proto`: the proto crate is the wire schema and the
//! catalog (no I/O, no process concerns); settings are a process concern of both binaries.

pub mod declare;
pub mod layer;
pub mod parse;

pub use layer::{Assign, InvalidValue, Layer, Raw, Spec};

/// A setting's `--help` text: its doc comment lines joined, then `Env: NAME.`.
pub fn help_text(doc: &[&str], env: &str) -> String {
    let mut text = doc
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if !text.is_empty() {
        text.push(' ');
    }
    text.push_str(&format!("Env: {env}."));
    text
}
