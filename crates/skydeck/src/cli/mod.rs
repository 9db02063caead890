//! The command line: `skydeck <command>`.

mod agent;
mod catalog;
mod collect;
mod control;
mod datadog;
mod nodes;
mod pools;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// SkyPilot fleet metrics for Datadog and Prometheus, collected under hard deadlines.
#[derive(Debug, Parser)]
#[command(
    name = "skydeck",
    version,
    about,
    max_term_width = 100,
    args_override_self = true
)]
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
    Collect(Box<collect::CollectArgs>),
    /// Serve the fleet metrics to Prometheus (collected on a schedule) and discovery of every
    /// DCGM exporter in the Kubernetes contexts SkyPilot may use; push to Datadog if set.
    Serve(Box<serve::ServeArgs>),
    /// Print the metric catalog (every metric skydeck emits, with units and help).
    Catalog(catalog::CatalogArgs),
    /// Datadog helpers: validate the API key, publish metric metadata.
    Datadog(datadog::DatadogArgs),
    /// Run the control plane: admin API, node agent API and the reconciler that launches and
    /// terminates vLLM nodes through SkyPilot.
    Control(Box<control::ControlArgs>),
    /// Launch, terminate, show and list nodes through a control plane.
    Nodes(nodes::NodesArgs),
    /// Create, change, show and delete autoscaled pools of nodes, and read their decisions.
    Pools(pools::PoolsArgs),
    /// The node agent (started on each node by its SkyPilot task).
    Agent(agent::AgentArgs),
}

impl Command {
    /// Whether the command serves many requests at once (and wants a thread per core).
    pub fn is_server(&self) -> bool {
        matches!(self, Command::Control(_) | Command::Serve(_))
    }
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Collect(args) => collect::run(*args).await,
        Command::Serve(args) => serve::run(*args).await,
        Command::Catalog(args) => catalog::run(args),
        Command::Datadog(args) => datadog::run(args).await,
        Command::Control(args) => control::run(*args).await,
        Command::Nodes(args) => nodes::run(args).await,
        Command::Pools(args) => pools::run(args).await,
        Command::Agent(args) => agent::run(args).await,
    }
}
