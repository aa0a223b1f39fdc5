//! The `adpulse` binary: parses arguments and calls the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "adpulse",
    version,
    about = "Is our ad spend making or losing money, right now?"
)]
struct Cli {
    /// Config file (TOML). Without it, the embedded demo configuration is used.
    #[arg(long, short, global = true, env = "ADPULSE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Collect, store and serve metrics (the default).
    Run,
    /// Validate the configuration without touching the network; lists every problem with its key.
    CheckConfig,
    /// Print the embedded default configuration.
    DefaultConfig,
    /// Exit 0 if URL answers 2xx (the container health check; no curl in the image).
    Probe {
        /// e.g. http://127.0.0.1:9464/healthz
        url: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,questdb=warn".into()),
        )
        .with_target(false)
        .init();
    match cli.command.unwrap_or(Command::Run) {
        Command::DefaultConfig => {
            print!("{}", adpulse::config::DEFAULT_CONFIG);
            Ok(())
        }
        Command::Probe { url } => {
            adpulse::init_tls();
            let status = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?
                .block_on(async {
                    reqwest::Client::builder()
                        .timeout(std::time::Duration::from_secs(3))
                        .build()?
                        .get(&url)
                        .send()
                        .await
                        .map(|r| r.status())
                })
                .with_context(|| format!("{url} did not answer"))?;
            anyhow::ensure!(status.is_success(), "{url} answered {status}");
            Ok(())
        }
        Command::CheckConfig => {
            let cfg = adpulse::config::Config::load(cli.config.as_deref())?;
            let problems = cfg.problems();
            if problems.is_empty() {
                println!("config OK: {} source(s)", cfg.sources.len());
                Ok(())
            } else {
                for p in &problems {
                    eprintln!("{p}");
                }
                anyhow::bail!("{} problem(s) in the configuration", problems.len())
            }
        }
        Command::Run => {
            let cfg = adpulse::config::Config::load(cli.config.as_deref())?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?
                .block_on(adpulse::app::run(cfg))?;
            Ok(())
        }
    }
}
