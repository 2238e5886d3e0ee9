//! `dsreg-collector` binary: config → tracing → bind → `dsreg_collector::run`; or
//! `dsreg-collector backup --db PATH --to FILE` ([`dsreg_collector::backup`]).

use std::collections::HashMap;

use anyhow::Context;
use clap::Parser;
use dsreg_collector::config::{Args, Config};
use tokio::net::TcpListener;

/// `dsreg-collector backup`: an online, verified copy of the database.
#[derive(Debug, Parser)]
#[command(
    name = "dsreg-collector backup",
    about = "Copy the database while the collector runs (consistent, verified with \
             integrity_check, written atomically); prints the size and device count"
)]
struct BackupArgs {
    /// The live database (the collector's --db).
    #[arg(long, value_name = "PATH")]
    db: std::path::PathBuf,
    /// Where to write the copy (replaced atomically once verified).
    #[arg(long, value_name = "FILE")]
    to: std::path::PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args_os().nth(1).is_some_and(|a| a == "backup") {
        let b = BackupArgs::parse_from(std::env::args_os().skip(1));
        let s = dsreg_collector::backup::backup(&b.db, &b.to)?;
        println!(
            "backup {} bytes={} devices={} integrity=ok",
            s.path.display(),
            s.bytes,
            s.devices
        );
        return Ok(());
    }
    let args = Args::parse();
    let env: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("DSREG_"))
        .collect();
    let config = Config::load(&args, &env)?;

    let filter = tracing_subscriber::EnvFilter::try_from_env("DSREG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    tracing::info!(?config, "configuration");
    for (setting, addr, missing) in config.exposure_gaps() {
        tracing::warn!(
            %setting,
            %addr,
            %missing,
            "INSECURE (--insecure): listening beyond loopback without {missing}; anyone who \
             can reach this port can write reports or read the fleet"
        );
    }

    let grpc = TcpListener::bind(config.grpc_listen)
        .await
        .with_context(|| format!("cannot bind grpc listener {}", config.grpc_listen))?;
    let http = TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot bind http listener {}", config.http_listen))?;
    let line = format!("grpc={} http={}", grpc.local_addr()?, http.local_addr()?);
    tracing::info!(grpc = %grpc.local_addr()?, http = %http.local_addr()?, "listening");
    println!("listening {line}");
    if let Some(path) = &config.ready_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{line}\n"))
            .and_then(|()| std::fs::rename(&tmp, path))
            .with_context(|| format!("cannot write ready file {}", path.display()))?;
    }

    dsreg_collector::run(config, grpc, http, dsreg_collector::signal::shutdown()).await?;
    Ok(())
}
