//! [`declare_settings!`](crate::declare_settings): each setting written once.
//!
//! One entry per setting gives its name and type, its parser (from [`crate::parse`]), its
//! environment variable, its TOML key and type (with an optional conversion when the file
//! spells it differently, e.g. the agent's `interval_minutes`), the extra clap attributes of
//! its flag, and its doc comment (which becomes the `--help` text, followed by `Env: NAME.`).
//! From the entries the macro generates:
//!
//! - the clap flags struct: the caller's own fields first (verbatim), then one typed
//!   `Option<T>` flag per setting, parsed by the same parser (clap names the flag and the
//!   value in its error);
//! - the TOML file struct (`deny_unknown_fields`, so a misspelt key is refused by name);
//! - the partial struct (every setting `Option<T>`) with `from_flags`, `from_env`,
//!   `from_file`, `or` (merge: `self` wins) and `SPECS` (the key table);
//! - optionally `apply(self, &mut Config)`, when the resolved configuration has one field
//!   per setting with the same name (`T`, or `Option<T>` for settings that default to off).
//!
//! Invariants: a setting's value is parsed by the same function in every layer; errors name
//! the layer and the setting as [`crate::Spec::setting_name`] spells them.

/// Declares a binary's settings; see the [module docs](crate::declare).
///
/// ```
/// use std::collections::HashMap;
/// use dsreg_settings::parse;
///
/// dsreg_settings::declare_settings! {
///     flags: #[derive(Debug, Default, clap::Parser)] pub struct Flags {
///         /// The settings file.
///         #[arg(long)]
///         pub config: Option<std::path::PathBuf>,
///     }
///     partial: pub struct Partial;
///     file: struct File;
///     settings: {
///         /// Most reports in one batch [default: 1000].
///         max_batch: usize {
///             parse: parse::positive::<usize>,
///             env: "DSREG_MAX_BATCH",
///             file: max_batch: u64,
///             flag: [value_name = "N"],
///         }
///     }
/// }
///
/// let env = HashMap::from([("DSREG_MAX_BATCH".to_string(), "0".to_string())]);
/// let err = Partial::from_env(&env).unwrap_err().to_string();
/// assert_eq!(err, "invalid DSREG_MAX_BATCH: \"0\": must be at least 1");
/// let file: File = toml::from_str("max_batch = 7").unwrap();
/// let flags = <Flags as clap::Parser>::parse_from(["x", "--max-batch", "9"]);
/// let merged = Partial::from_flags(&flags).or(Partial::from_file(file).unwrap());
/// assert_eq!(merged.max_batch, Some(9));
/// ```
#[macro_export]
macro_rules! declare_settings {
    (
        flags: $(#[$fmeta:meta])* $fvis:vis struct $Flags:ident { $($extra:tt)* }
        partial: $(#[$pmeta:meta])* $pvis:vis struct $Partial:ident;
        file: $(#[$filemeta:meta])* $filevis:vis struct $File:ident;
        $(apply: $Config:ty;)?
        settings: {
            $(
                $(#[doc = $doc:literal])*
                $key:ident : $ty:ty {
                    parse: $parse:expr,
                    env: $env:literal,
                    file: $fkey:ident : $fty:ty $(=> $fconv:expr)?,
                    flag: [$($arg:tt)*] $(,)?
                }
            )*
        }
    ) => {
        $(#[$fmeta])*
        $fvis struct $Flags {
            $($extra)*
            $(
                $(#[doc = $doc])*
                #[arg(long, value_parser = $parse, help = $crate::help_text(&[$($doc),*], $env), $($arg)*)]
                // Plain `Option`: clap recognises an optional flag by that one path segment.
                pub $key: Option<$ty>,
            )*
        }

        $(#[$filemeta])*
        #[derive(Debug, Default, ::serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        $filevis struct $File {
            $( $fkey: ::std::option::Option<$fty>, )*
        }

        $(#[$pmeta])*
        #[derive(Debug, Clone, Default, PartialEq)]
        $pvis struct $Partial {
            $(
                $(#[doc = $doc])*
                pub $key: ::std::option::Option<$ty>,
            )*
        }

        impl $Partial {
            /// How each setting is spelled in each layer, in declaration order.
            pub const SPECS: &'static [$crate::Spec] = &[
                $( $crate::Spec { key: stringify!($key), env: $env, file_key: stringify!($fkey) }, )*
            ];

            /// The values given as flags.
            pub fn from_flags(flags: &$Flags) -> Self {
                Self { $( $key: ::std::clone::Clone::clone(&flags.$key), )* }
            }

            /// The values of the settings' environment variables in `env`.
            pub fn from_env(
                env: &::std::collections::HashMap<::std::string::String, ::std::string::String>,
            ) -> ::std::result::Result<Self, $crate::InvalidValue> {
                let mut out = Self::default();
                $(
                    if let Some(v) = env.get($env) {
                        let spec = $crate::Spec { key: stringify!($key), env: $env, file_key: stringify!($fkey) };
                        out.$key = Some(($parse)(v).map_err(|reason| {
                            $crate::InvalidValue::new(&spec, $crate::Layer::Env, v, reason)
                        })?);
                    }
                )*
                Ok(out)
            }

            /// The values of a parsed settings file.
            pub fn from_file(file: $File) -> ::std::result::Result<Self, $crate::InvalidValue> {
                let mut out = Self::default();
                $(
                    if let Some(raw) = &file.$fkey {
                        let spec = $crate::Spec { key: stringify!($key), env: $env, file_key: stringify!($fkey) };
                        let conv = $crate::__file_conv!($parse; $fty; $ty; $($fconv)?);
                        out.$key = Some(conv(raw).map_err(|reason| {
                            $crate::InvalidValue::new(&spec, $crate::Layer::File, &$crate::Raw::text(raw), reason)
                        })?);
                    }
                )*
                Ok(out)
            }

            /// Merges: each setting from `self` when set, else from `lower`.
            pub fn or(self, lower: Self) -> Self {
                Self { $( $key: self.$key.or(lower.$key), )* }
            }
        }

        $crate::__apply!([$($Config)?] $Partial; $($key)*);
    };
}

/// The file-value conversion of one setting: its own, or text through its parser.
#[doc(hidden)]
#[macro_export]
macro_rules! __file_conv {
    ($parse:expr; $fty:ty; $ty:ty; ) => {
        |raw: &$fty| -> ::std::result::Result<$ty, ::std::string::String> {
            ($parse)(&$crate::Raw::text(raw))
        }
    };
    ($parse:expr; $fty:ty; $ty:ty; $conv:expr) => {
        $conv
    };
}

/// `apply(self, &mut Config)`, when the declaration names a resolved configuration.
#[doc(hidden)]
#[macro_export]
macro_rules! __apply {
    ([] $Partial:ident; $($key:ident)*) => {};
    ([$Config:ty] $Partial:ident; $($key:ident)*) => {
        impl $Partial {
            /// Puts every setting that is set into `cfg`, leaving the others as they are.
            pub fn apply(self, cfg: &mut $Config) {
                $( if let Some(v) = self.$key { $crate::Assign::assign(&mut cfg.$key, v); } )*
            }
        }
    };
}
