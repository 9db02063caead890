//! `skydeck agent`: the node agent the SkyPilot task starts next to the engine. The flags and
//! the task's environment fill a [`skydeck_agent::Config`]; everything the agent does (wait for
//! the engine, register, heartbeat, drain, serve its own `/metrics`) lives in the
//! `skydeck-agent` crate.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use skydeck_agent::gpu::GpuSource;
use skydeck_contract::Engine;
use skydeck_contract::agent::env;

use crate::duration;

/// Options of `skydeck agent` (the task sets them in the environment).
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The control plane's URL.
    #[arg(long, env = env::CONTROL_PLANE_URL)]
    pub control_plane_url: String,
    /// This node's id.
    #[arg(long, env = env::NODE_ID)]
    pub node_id: String,
    /// The inference engine next to the agent: vllm or llamacpp.
    #[arg(long, env = env::ENGINE, default_value = "vllm")]
    pub engine: Engine,
    /// The port the engine serves its OpenAI API, /health and /metrics on (on 127.0.0.1).
    #[arg(long, env = env::ENGINE_PORT, default_value_t = 8000)]
    pub engine_port: u16,
    /// How long to wait for the engine's health before giving up (at most 10m).
    #[arg(long, value_parser = duration::parse, default_value = "10m")]
    pub ready_timeout: Duration,
    /// Heartbeat this often instead of what the control plane says.
    #[arg(long, value_parser = duration::parse)]
    pub heartbeat_interval: Option<Duration>,
    /// Drain at most this long instead of what the control plane says.
    #[arg(long, value_parser = duration::parse)]
    pub drain_grace: Option<Duration>,
    /// The port the agent serves its own /metrics on (0: none).
    #[arg(long, env = env::AGENT_METRICS_PORT, default_value_t = 9090)]
    pub metrics_port: u16,
    /// The address the agent's /metrics binds to.
    #[arg(long, default_value = "0.0.0.0")]
    pub metrics_bind: IpAddr,
    /// Do not read GPUs through NVML.
    #[arg(long)]
    pub no_gpu: bool,
}

/// Runs the agent until it drains, is told to exit, or fails.
pub async fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    // The token is a secret: only from the environment (SkyPilot's `secrets:`), never a flag
    // that would show in `ps`.
    let token = std::env::var(env::AGENT_TOKEN)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .with_context(|| {
            format!(
                "{} is not set (the task passes it in secrets:)",
                env::AGENT_TOKEN
            )
        })?;
    if args.ready_timeout > skydeck_agent::MAX_READY_TIMEOUT {
        anyhow::bail!("--ready-timeout may be at most 10m");
    }
    let mut cfg =
        skydeck_agent::Config::new(&args.control_plane_url, &args.node_id, &token, args.engine);
    cfg.engine_url = format!("http://127.0.0.1:{}", args.engine_port);
    cfg.ready_timeout = args.ready_timeout;
    cfg.heartbeat_interval = args.heartbeat_interval;
    cfg.drain_grace = args.drain_grace;
    cfg.metrics_addr =
        (args.metrics_port != 0).then(|| SocketAddr::new(args.metrics_bind, args.metrics_port));
    if args.no_gpu {
        cfg.gpu = GpuSource::Disabled;
    }
    let exit = skydeck_agent::run(cfg, shutdown_signal()).await?;
    eprintln!("skydeck agent: exiting ({exit:?})");
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM (what SkyPilot and Kubernetes send) or Ctrl-C: the agent drains.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
