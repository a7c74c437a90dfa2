//! The `fanout` daemon: parses flags, loads settings, starts logging, and
//! runs the server until SIGTERM or SIGINT (a second one exits at once;
//! SIGHUP reloads the configuration).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fanout::broker::{Broker, Credentials};
use fanout::config::Config;
use fanout::reload::Reloader;

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
    // The key files and certificates the settings name, read before anything starts.
    let credentials = Credentials::load(&config).context("invalid configuration")?;
    if let Some(Command::CheckConfig) = cli.command {
        print!("{}", config.to_toml());
        eprintln!("configuration is valid");
        return Ok(());
    }
    fanout::logging::init(config.log.format);
    let reloader = Reloader {
        path: cli.config.clone(),
        listen: cli.listen.clone(),
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?
        .block_on(async {
            let listener = fanout::server::bind(&config).await?;
            let broker = Broker::start(Arc::new(config), credentials, prometheus::Registry::new())?;
            let signals = fanout::signals::Signals::new().context("cannot handle signals")?;
            let stop = fanout::signals::watch(signals, Arc::clone(&broker), reloader);
            fanout::server::serve(listener, broker, stop).await?;
            Ok(())
        })
}
