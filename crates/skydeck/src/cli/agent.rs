//! `skydeck agent`: the node agent the SkyPilot task starts once vLLM is healthy. It registers
//! with the control plane using the node's own token (from the task's `secrets:`), then
//! heartbeats while vLLM answers `/health`. When the control plane asks for a drain it reports
//! `drained` once vLLM has no request running, and it exits when its node is terminated.
//!
//! This is the minimal agent the control plane needs to mark nodes active and drain them; the
//! richer agent (metrics relay, self-healing) builds on it.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::{Value, json};

/// Options of `skydeck agent` (the task sets them in the environment).
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The control plane's URL.
    #[arg(long, env = "SKYDECK_CONTROL_PLANE_URL")]
    pub control_plane_url: String,
    /// This node's id.
    #[arg(long, env = "SKYDECK_NODE_ID")]
    pub node_id: String,
    /// vLLM's health endpoint.
    #[arg(
        long,
        env = "SKYDECK_VLLM_HEALTH_URL",
        default_value = "http://127.0.0.1:8000/health"
    )]
    pub vllm_health_url: String,
    /// vLLM's Prometheus endpoint (requests running, for drains).
    #[arg(
        long,
        env = "SKYDECK_VLLM_METRICS_URL",
        default_value = "http://127.0.0.1:8000/metrics"
    )]
    pub vllm_metrics_url: String,
}

/// Runs the agent until its node is terminated.
pub async fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    // The token is a secret: only from the environment (SkyPilot's `secrets:`), never a flag
    // that would show in `ps`.
    let token = std::env::var("SKYDECK_AGENT_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .context("SKYDECK_AGENT_TOKEN is not set (the task passes it in secrets:)")?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .build()?;
    let base = args.control_plane_url.trim_end_matches('/').to_string();
    let post = |path: &'static str, body: Value| {
        let req = http
            .post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body);
        async move {
            let resp = req
                .send()
                .await
                .with_context(|| format!("{path}: cannot reach the control plane"))?;
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            Ok::<_, anyhow::Error>((status.as_u16(), body))
        }
    };

    // Register, retrying while the control plane is unreachable.
    let mut backoff = Duration::from_secs(1);
    let mut reply = loop {
        match post(
            "/v1/agent/register",
            json!({"node_id": args.node_id, "agent_version": env!("CARGO_PKG_VERSION")}),
        )
        .await
        {
            Ok((200, r)) => break r,
            Ok((409, _)) => {
                eprintln!("skydeck agent: the node is already terminated; exiting");
                return Ok(ExitCode::SUCCESS);
            }
            Ok((401, _)) => bail!("the control plane rejected this node's token"),
            Ok((code, r)) => eprintln!("skydeck agent: register answered {code}: {r}"),
            Err(e) => eprintln!("skydeck agent: {e:#}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    };
    eprintln!("skydeck agent: registered node {}", args.node_id);
    loop {
        let interval = Duration::from_secs(
            reply["heartbeat_interval_seconds"]
                .as_u64()
                .unwrap_or(30)
                .max(1),
        );
        tokio::time::sleep(interval).await;
        // No heartbeat while vLLM is down: three missed make the node unhealthy.
        let healthy = http
            .get(&args.vllm_health_url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if !healthy {
            eprintln!("skydeck agent: vLLM is not healthy; skipping the heartbeat");
            continue;
        }
        let running = requests_running(&http, &args.vllm_metrics_url).await;
        let drained = reply["drain"] == true && running == Some(0);
        match post(
            "/v1/agent/heartbeat",
            json!({"in_flight": running, "drained": drained}),
        )
        .await
        {
            Ok((200, r)) => reply = r,
            Ok((409, _)) => {
                eprintln!("skydeck agent: the node is terminated; exiting");
                return Ok(ExitCode::SUCCESS);
            }
            Ok((code, r)) => eprintln!("skydeck agent: heartbeat answered {code}: {r}"),
            Err(e) => eprintln!("skydeck agent: {e:#}"),
        }
    }
}

/// `vllm:num_requests_running` summed over its series; `Some(0)` when vLLM exports none.
async fn requests_running(http: &reqwest::Client, url: &str) -> Option<u64> {
    let text = http
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let mut total = 0.0;
    for line in text
        .lines()
        .filter(|l| l.starts_with("vllm:num_requests_running"))
    {
        total += line.rsplit(' ').next()?.parse::<f64>().ok()?;
    }
    Some(total as u64)
}
