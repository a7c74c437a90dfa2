//! The `fanout` daemon: parses flags, loads settings, starts logging, and
//! runs the server until SIGTERM or SIGINT.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fanout::config::{Config, LogFormat};

/// A WebSocket pub/sub broker for live feeds.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (default: ./config.toml if it exists, else the built-in defaults).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Address to listen on, overriding server.listen (for example 0.0.0.0:8080).
    #[arg(long, global = true, value_name = "ADDR")]
    listen: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration and print the effective settings.
    CheckConfig,
    /// Print the default configuration file, every key commented.
    DefaultConfig,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::DefaultConfig) = cli.command {
        print!("{}", fanout::config::DEFAULT_CONFIG);
        return Ok(());
    }
    let config = Config::load(cli.config.as_deref(), cli.listen.as_deref()).context("invalid configuration")?;
    if let Some(Command::CheckConfig) = cli.command {
        print!("{}", config.to_toml());
        eprintln!("configuration is valid");
        return Ok(());
    }
    init_logging(config.log.format);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?
        .block_on(async {
            let listener = fanout::server::bind(&config).await?;
            fanout::server::run(listener, config, fanout::shutdown::os_signal()).await?;
            Ok(())
        })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
