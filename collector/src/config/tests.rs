//! Unit tests of the layered loader: precedence, error wording, file keys, exposure rules.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use clap::Parser;

use super::*;

/// Parses a command line as the binary does (typed flags, clap's errors).
fn flags(argv: &[&str]) -> Result<Args, String> {
    Args::try_parse_from(std::iter::once("dsreg-collector").chain(argv.iter().copied()))
        .map_err(|e| e.to_string())
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_apply_without_anything() {
    let cfg = Config::load(&Args::default(), &HashMap::new()).unwrap();
    assert_eq!(cfg, Config::default());
    assert_eq!(cfg.stale_after, Duration::from_secs(26 * 3600));
}

#[test]
fn precedence_is_file_then_env_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "retention_days = 30\nhistory_per_device = 7\nmax_batch = 10\nstale_after = \"2d\"\n",
    )
    .unwrap();
    let args = Args {
        config: Some(file),
        max_batch: Some(12),
        ..Args::default()
    };
    let e = env(&[("DSREG_HISTORY_PER_DEVICE", "8"), ("DSREG_MAX_BATCH", "11")]);
    let cfg = Config::load(&args, &e).unwrap();
    assert_eq!(cfg.retention_days, 30, "file beats default");
    assert_eq!(cfg.history_per_device, 8, "env beats file");
    assert_eq!(cfg.max_batch, 12, "flag beats env");
    assert_eq!(cfg.stale_after, Duration::from_secs(2 * 86_400));
}

#[test]
fn bad_values_name_the_setting_and_value() {
    let e = env(&[("DSREG_QUEUE_DEPTH", "lots")]);
    let err = Config::load(&Args::default(), &e).unwrap_err().to_string();
    assert!(
        err.contains("DSREG_QUEUE_DEPTH") && err.contains("lots"),
        "{err}"
    );
    let err = flags(&["--stale-after", "5 weeks"]).unwrap_err();
    assert!(
        err.contains("--stale-after") && err.contains("5 weeks"),
        "{err}"
    );
    let err = flags(&["--queue-depth", "0"]).unwrap_err();
    assert!(
        err.contains("--queue-depth") && err.contains("must be at least 1"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "idle_timeout = \"0s\"\n").unwrap();
    let args = Args {
        config: Some(file),
        ..Args::default()
    };
    let err = Config::load(&args, &HashMap::new())
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "invalid idle_timeout (config file): \"0s\": must be greater than zero"
    );
}

#[test]
fn unknown_file_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "grpc_listn = \"127.0.0.1:1\"\n").unwrap();
    let args = Args {
        config: Some(file),
        ..Args::default()
    };
    let err = Config::load(&args, &HashMap::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("grpc_listn"), "{err}");
}

#[test]
fn non_loopback_needs_insecure() {
    let args = Args {
        grpc_listen: Some("0.0.0.0:50051".parse().unwrap()),
        ..Args::default()
    };
    let err = Config::load(&args, &HashMap::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--insecure") && err.contains("0.0.0.0:50051"),
        "{err}"
    );
    let e = env(&[("DSREG_INSECURE", "true")]);
    let cfg = Config::load(&args, &e).unwrap();
    assert!(cfg.insecure && cfg.exposed());
}

#[test]
fn exposure_needs_tls_and_the_listeners_tokens() {
    let base = Args {
        grpc_listen: Some("0.0.0.0:50051".parse().unwrap()),
        tls_cert: Some("c.pem".into()),
        tls_key: Some("k.pem".into()),
        ..Args::default()
    };
    let err = Config::load(&base, &HashMap::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--agent-token-file") && !err.contains("--tls-cert"),
        "{err}"
    );
    let e = env(&[("DSREG_AGENT_TOKEN_FILE", "/etc/dsreg/agents")]);
    let cfg = Config::load(&base, &e).unwrap();
    assert!(cfg.exposed() && cfg.exposure_gaps().is_empty());
    assert_eq!(
        cfg.agent_token_file.as_deref(),
        Some(Path::new("/etc/dsreg/agents"))
    );
    // The HTTP listener needs reader tokens, not agent tokens.
    let args = Args {
        http_listen: Some("[::]:9184".parse().unwrap()),
        ..base.clone()
    };
    let err = Config::load(&args, &e).unwrap_err().to_string();
    assert!(err.contains("--reader-token-file"), "{err}");
    // --insecure lets it start, and the gaps stay visible for the WARN.
    let args = Args {
        insecure: Some(true),
        ..args
    };
    let cfg = Config::load(&args, &e).unwrap();
    assert_eq!(cfg.exposure_gaps().len(), 1);
}

#[test]
fn tls_settings_go_together() {
    let args = Args {
        tls_cert: Some("c.pem".into()),
        ..Args::default()
    };
    let err = Config::load(&args, &HashMap::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("--tls-key"), "{err}");
    let args = Args {
        tls_client_ca: Some("ca.pem".into()),
        ..Args::default()
    };
    let err = Config::load(&args, &HashMap::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("--tls-client-ca"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\ntls_client_ca = \"ca.pem\"\n\
         reader_token_file = \"r\"\nmetrics_token_file = \"m\"\n",
    )
    .unwrap();
    let args = Args {
        config: Some(file),
        ..Args::default()
    };
    let cfg = Config::load(&args, &HashMap::new()).unwrap();
    assert_eq!(cfg.tls_client_ca.as_deref(), Some(Path::new("ca.pem")));
    assert_eq!(cfg.metrics_token_file.as_deref(), Some(Path::new("m")));
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
    assert!(parse_duration("0h").is_err());
    assert!(parse_duration("h").is_err());
}

#[test]
fn flags_parse_typed_and_insecure_takes_an_optional_value() {
    let args = flags(&["--max-batch", "12", "--insecure", "--stale-after", "2d"]).unwrap();
    assert_eq!(args.max_batch, Some(12));
    assert_eq!(args.insecure, Some(true));
    assert_eq!(args.stale_after, Some(Duration::from_secs(2 * 86_400)));
    assert_eq!(
        flags(&[]).unwrap().insecure,
        None,
        "absent: the env or file decides"
    );
    let args = flags(&["--insecure=false"]).unwrap();
    let e = env(&[("DSREG_INSECURE", "true")]);
    assert!(
        !Config::load(&args, &e).unwrap().insecure,
        "the flag beats the env"
    );
}

#[test]
fn every_setting_has_a_flag_an_env_variable_and_a_file_key() {
    let help = <Args as clap::CommandFactory>::command()
        .render_long_help()
        .to_string();
    assert_eq!(Settings::SPECS.len(), 35);
    for spec in Settings::SPECS {
        assert_eq!(spec.env, format!("DSREG_{}", spec.key.to_ascii_uppercase()));
        assert_eq!(spec.file_key, spec.key, "the file key is the flag with `_`");
        assert!(help.contains(&spec.flag()), "{} not in --help", spec.flag());
        assert!(help.contains(spec.env), "{} not in --help", spec.env);
    }
}
