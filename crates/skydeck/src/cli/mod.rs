//! The command line: `skydeck <command>`.

mod catalog;
mod collect;
mod datadog;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// SkyPilot fleet metrics for Datadog and Prometheus, collected under hard deadlines.
#[derive(Debug, Parser)]
#[command(name = "skydeck", version, about, max_term_width = 100)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug). SKYDECK_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// skydeck's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Collect fleet metrics once from every enabled collector and print or deliver them.
    Collect(collect::CollectArgs),
    /// Print the metric catalog (every metric skydeck emits, with units and help).
    Catalog(catalog::CatalogArgs),
    /// Datadog helpers: validate the API key, publish metric metadata.
    Datadog(datadog::DatadogArgs),
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Collect(args) => collect::run(args).await,
        Command::Catalog(args) => catalog::run(args),
        Command::Datadog(args) => datadog::run(args).await,
    }
}
