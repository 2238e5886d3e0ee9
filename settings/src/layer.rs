//! The layers a setting can come from, and how an error names the setting in each.
//!
//! The wording is the one operators already see: `DSREG_QUEUE_DEPTH` for the environment,
//! `--queue-depth` for a flag, `queue_depth (config file)` for the TOML file — so an error
//! says exactly what to edit.

use std::path::PathBuf;

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// The TOML settings file.
    File,
    /// A `DSREG_*` environment variable.
    Env,
    /// A command-line flag.
    Flag,
}

/// How one setting is spelled in each layer (the key table of [`crate::declare_settings!`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// The setting's name (the flag is `--` + this with `-` for `_`).
    pub key: &'static str,
    /// Its environment variable.
    pub env: &'static str,
    /// Its key in the TOML file.
    pub file_key: &'static str,
}

impl Spec {
    /// The flag, e.g. `--queue-depth`.
    pub fn flag(&self) -> String {
        format!("--{}", self.key.replace('_', "-"))
    }

    /// How `layer` names this setting in an error.
    pub fn setting_name(&self, layer: Layer) -> String {
        match layer {
            Layer::Env => self.env.to_string(),
            Layer::Flag => self.flag(),
            Layer::File => format!("{} (config file)", self.file_key),
        }
    }
}

/// A value that does not parse or is out of range, named by layer and setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {setting}: {value:?}: {reason}")]
pub struct InvalidValue {
    /// The setting as its layer spells it (see [`Spec::setting_name`]).
    pub setting: String,
    /// The value given.
    pub value: String,
    /// Why it is wrong (lower-case, from [`crate::parse`]).
    pub reason: String,
}

impl InvalidValue {
    /// The error for `value` of `spec` in `layer`.
    pub fn new(spec: &Spec, layer: Layer, value: &str, reason: String) -> Self {
        InvalidValue {
            setting: spec.setting_name(layer),
            value: value.to_string(),
            reason,
        }
    }
}

/// A TOML file value rendered as the text its parser reads (file values go through the same
/// parser as environment values, so both are checked alike).
pub trait Raw {
    /// The value as text.
    fn text(&self) -> String;
}

macro_rules! raw_display {
    ($($t:ty),*) => {
        $(impl Raw for $t {
            fn text(&self) -> String {
                self.to_string()
            }
        })*
    };
}
raw_display!(u64, u32, usize, i64, bool, String);

impl Raw for PathBuf {
    fn text(&self) -> String {
        self.display().to_string()
    }
}

/// Puts a merged value into a resolved configuration field: `T` into `T`, or into
/// `Option<T>` (a setting whose default is "off").
pub trait Assign<V> {
    /// Overwrites `self` with `v`.
    fn assign(&mut self, v: V);
}

impl<V> Assign<V> for V {
    fn assign(&mut self, v: V) {
        *self = v;
    }
}

impl<V> Assign<V> for Option<V> {
    fn assign(&mut self, v: V) {
        *self = Some(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_name_the_setting_as_an_operator_writes_it() {
        let spec = Spec {
            key: "queue_depth",
            env: "DSREG_QUEUE_DEPTH",
            file_key: "queue_depth",
        };
        assert_eq!(spec.setting_name(Layer::Env), "DSREG_QUEUE_DEPTH");
        assert_eq!(spec.setting_name(Layer::Flag), "--queue-depth");
        assert_eq!(spec.setting_name(Layer::File), "queue_depth (config file)");
        let e = InvalidValue::new(&spec, Layer::Env, "lots", "not a whole number".into());
        assert_eq!(
            e.to_string(),
            "invalid DSREG_QUEUE_DEPTH: \"lots\": not a whole number"
        );
    }

    #[test]
    fn assign_fills_plain_and_optional_fields() {
        let mut plain = 1u32;
        let mut optional: Option<u32> = None;
        plain.assign(2);
        optional.assign(3);
        assert_eq!((plain, optional), (2, Some(3)));
    }
}
