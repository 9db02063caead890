//! `skydeck nodes`: a client of the control plane's admin API. Every answer is deserialized
//! into the contract's types (`skydeck_contract`), the routes come from its `paths`, and the
//! launch body is the control plane's own `NodeConfig`, so client and server cannot disagree
//! on a field or a status name.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde::Serialize;
use serde::de::DeserializeOwned;
use skydeck_contract::{
    Engine, ErrorBody, Heartbeat, LaunchResponse, NodePage, NodeStatus, NodeView,
    TerminateResponse, paths,
};
use skydeck_control::node_config::NodeConfig;

use secrecy::ExposeSecret;

use crate::config::AwsSection;
use crate::{credentials, duration};

/// Where the control plane is and how to authenticate (`skydeck nodes`, `skydeck pools`).
#[derive(Debug, Args)]
pub struct ControlPlane {
    /// The control plane's URL.
    #[arg(
        long,
        env = "SKYDECK_CONTROL_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// File holding the admin key, read when SKYDECK_ADMIN_API_KEY is not set (a missing file
    /// counts as not set, as for every credential).
    #[arg(long, value_name = "PATH")]
    pub admin_key_file: Option<PathBuf>,
}

/// Options of `skydeck nodes`.
#[derive(Debug, Args)]
pub struct NodesArgs {
    /// The control plane.
    #[command(flatten)]
    pub plane: ControlPlane,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: NodesCommand,
}

/// `skydeck nodes` commands.
#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// Launch a node.
    Launch(LaunchArgs),
    /// Terminate a node (graceful drain unless --force).
    Terminate {
        /// The node's cluster name.
        cluster_name: String,
        /// Take the cluster down without waiting for in-flight requests.
        #[arg(long)]
        force: bool,
    },
    /// Show a node's status and history.
    Status {
        /// The node's cluster name.
        cluster_name: String,
    },
    /// Show a node with the latest heartbeat of its agent (engine, requests, tokens, GPUs).
    Show {
        /// The node's cluster name.
        cluster_name: String,
    },
    /// List nodes.
    List {
        /// Only these statuses (comma-separated).
        #[arg(long)]
        status: Option<String>,
        /// Only this provider.
        #[arg(long)]
        provider: Option<String>,
        /// Only this GPU.
        #[arg(long)]
        gpu: Option<String>,
        /// Only this model.
        #[arg(long)]
        model: Option<String>,
        /// Page size.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Follow the cursor through every page.
        #[arg(long)]
        all: bool,
    },
}

/// Options of `skydeck nodes launch` (the fields of NodeConfig).
#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// aws, gcp, azure, lambda, oci or kubernetes.
    #[arg(long)]
    pub provider: String,
    /// Region (kubeconfig context for kubernetes).
    #[arg(long)]
    pub region: String,
    /// GPU, optionally with a count: A100, A100:2.
    #[arg(long)]
    pub gpu: String,
    /// Hugging Face model id (org/name).
    #[arg(long)]
    pub model: String,
    /// Spot capacity (default: where the provider has it).
    #[arg(long, overrides_with = "no_spot")]
    pub spot: bool,
    /// On-demand capacity.
    #[arg(long)]
    pub no_spot: bool,
    /// Disk in GB.
    #[arg(long)]
    pub disk_size: Option<i64>,
    /// The inference server.
    #[arg(long)]
    pub engine: Option<Engine>,
    /// A container image for the engine (`docker:…`).
    #[arg(long)]
    pub image: Option<String>,
    /// Extra engine flags (allow-listed).
    #[arg(long, alias = "vllm-args", allow_hyphen_values = true)]
    pub engine_args: Option<String>,
    /// The node's UUID (default: generated).
    #[arg(long)]
    pub node_id: Option<String>,
    /// Follow the node until it is active (or failed), showing its progress.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long.
    #[arg(long, value_parser = duration::parse, default_value = "30m")]
    pub timeout: Duration,
}

/// A client of the admin API with its key.
pub(super) struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    /// Calls `path`; a success is read as `T`, a refusal as the contract's [`ErrorBody`].
    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> anyhow::Result<T> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the control plane at {}", self.base))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .with_context(|| format!("{path}: reading the answer"))?;
        if !status.is_success() {
            match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(e) => bail!("{path}: HTTP {status} {e}"),
                Err(_) => bail!("{path}: HTTP {status} (no error body)"),
            }
        }
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{path}: the answer is not what the contract says"))
    }

    pub(super) async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(reqwest::Method::GET, path, None::<&()>).await
    }
}

pub(super) fn print_json(v: &impl Serialize, pretty: bool) -> anyhow::Result<()> {
    let text = if pretty {
        serde_json::to_string_pretty(v)?
    } else {
        serde_json::to_string(v)?
    };
    println!("{text}");
    Ok(())
}

/// `key value` lines of a node's fields that are set.
fn print_node(n: &NodeView) -> anyhow::Result<()> {
    let v = serde_json::to_value(n)?;
    for (k, v) in v.as_object().into_iter().flatten() {
        if v.is_null() || k == "heartbeat" {
            continue;
        }
        println!(
            "{k:<20} {}",
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        );
    }
    Ok(())
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v}"))
}

/// The latest heartbeat, for people.
fn print_heartbeat(hb: Option<&Heartbeat>) {
    let Some(hb) = hb else {
        println!("{:<20} none yet", "heartbeat");
        return;
    };
    let e = &hb.engine;
    let state = serde_json::to_value(hb.state).unwrap_or_default();
    let health = serde_json::to_value(e.health).unwrap_or_default();
    println!("{:<20} {}", "agent_state", state.as_str().unwrap_or("?"));
    println!("{:<20} {}", "engine_health", health.as_str().unwrap_or("?"));
    if let Some(d) = &e.detail {
        println!("{:<20} {d}", "engine_detail");
    }
    println!("{:<20} {}", "requests_running", num(e.requests_running));
    println!("{:<20} {}", "requests_waiting", num(e.requests_waiting));
    println!(
        "{:<20} {}",
        "generation_tokens",
        num(e.generation_tokens_total)
    );
    println!("{:<20} {}", "prompt_tokens", num(e.prompt_tokens_total));
    println!("{:<20} {}", "served_models", hb.served_models.join(", "));
    println!("{:<20} {}", "uptime_seconds", hb.uptime_seconds);
    if let Some(err) = &hb.gpu_error {
        println!("{:<20} {err}", "gpu_error");
    }
    for g in &hb.gpus {
        println!(
            "gpu {:<16} {} util {}% mem {}/{} B temp {} C power {} W",
            g.index,
            g.name.as_deref().unwrap_or("-"),
            num(g.utilization_percent),
            num(g.memory_used_bytes),
            num(g.memory_total_bytes),
            num(g.temperature_celsius),
            num(g.power_watts)
        );
    }
}

/// A client of the control plane `plane`, with the admin key from SKYDECK_ADMIN_API_KEY or
/// its key file (the first key of a rotation list).
pub(super) async fn connect(plane: &ControlPlane) -> anyhow::Result<Api> {
    let url = plane.url.as_str();
    let creds = credentials::reader(&AwsSection::default());
    let spec = credentials::admin_api_key(plane.admin_key_file.as_deref(), None)?;
    let key = creds
        .get(&spec)
        .await?
        .map(|r| r.value.expose_secret().to_string())
        .unwrap_or_default();
    let key = key
        .split([',', '\n'])
        .map(str::trim)
        .find(|k| !k.is_empty())
        .context("the admin key is empty")?
        .to_string();
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()?;
    Ok(Api {
        http,
        base: url.trim_end_matches('/').to_string(),
        key,
    })
}

/// Runs a `nodes` command.
pub async fn run(args: NodesArgs) -> anyhow::Result<ExitCode> {
    let api = connect(&args.plane).await?;
    let json_out = args.json;
    match args.command {
        NodesCommand::Launch(l) => {
            let body = NodeConfig {
                node_id: l.node_id.clone(),
                provider: l.provider.clone(),
                region: l.region.clone(),
                gpu: l.gpu.clone(),
                model: l.model.clone(),
                use_spot: (l.spot || l.no_spot).then_some(l.spot && !l.no_spot),
                disk_size: l.disk_size,
                engine: l.engine,
                image: l.image.clone(),
                engine_args: l.engine_args.clone(),
            };
            let resp: LaunchResponse = api
                .call(reqwest::Method::POST, paths::LAUNCH, Some(&body))
                .await?;
            if json_out && !l.wait {
                print_json(&resp, false)?;
            } else {
                println!("{}", resp.cluster_name);
            }
            if l.wait {
                return wait_active(&api, &resp.cluster_name, l.timeout, json_out).await;
            }
            Ok(ExitCode::SUCCESS)
        }
        NodesCommand::Terminate {
            cluster_name,
            force,
        } => {
            let path = format!(
                "{}{}",
                paths::for_cluster(paths::TERMINATE, &cluster_name),
                if force { "?force=true" } else { "" }
            );
            let resp: TerminateResponse =
                api.call(reqwest::Method::POST, &path, None::<&()>).await?;
            if json_out {
                print_json(&resp, false)?;
            } else {
                println!("{} {}", resp.cluster_name, resp.status);
            }
            Ok(ExitCode::SUCCESS)
        }
        NodesCommand::Status { cluster_name } => {
            let node: NodeView = api
                .get(&paths::for_cluster(paths::NODE_STATUS, &cluster_name))
                .await?;
            if json_out {
                print_json(&node, true)?;
            } else {
                print_node(&node)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        NodesCommand::Show { cluster_name } => {
            let node: NodeView = api
                .get(&paths::for_cluster(paths::NODE, &cluster_name))
                .await?;
            if json_out {
                print_json(&node, true)?;
            } else {
                print_node(&node)?;
                print_heartbeat(node.heartbeat.as_ref());
            }
            Ok(ExitCode::SUCCESS)
        }
        NodesCommand::List {
            status,
            provider,
            gpu,
            model,
            limit,
            all,
        } => {
            let mut params = vec![("limit".to_string(), limit.to_string())];
            for (k, v) in [
                ("status", status),
                ("provider", provider),
                ("gpu", gpu),
                ("model", model),
            ] {
                if let Some(v) = v {
                    params.push((k.to_string(), v));
                }
            }
            let mut nodes = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut p = params.clone();
                if let Some(c) = &cursor {
                    p.push(("cursor".into(), c.clone()));
                }
                let q: String = p
                    .iter()
                    .map(|(k, v)| format!("{k}={}", enc(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                let page: NodePage = api.get(&format!("{}?{q}", paths::NODES)).await?;
                nodes.extend(page.nodes);
                cursor = page.next_cursor;
                if !all || cursor.is_none() {
                    break;
                }
            }
            if json_out {
                print_json(&nodes, false)?;
            } else {
                println!(
                    "{:<48} {:<13} {:<10} {:<16} {:<10} MODEL",
                    "CLUSTER", "STATUS", "PROVIDER", "REGION", "GPU"
                );
                for n in &nodes {
                    println!(
                        "{:<48} {:<13} {:<10} {:<16} {:<10} {}",
                        n.cluster_name,
                        n.status.as_str(),
                        n.provider,
                        n.region,
                        n.gpu,
                        n.model
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Follows a node to `active`, a line per status change (and a ticking clock on a terminal).
async fn wait_active(
    api: &Api,
    name: &str,
    timeout: Duration,
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let path = paths::for_cluster(paths::NODE_STATUS, name);
    let mut last: Option<NodeStatus> = None;
    loop {
        let node: NodeView = match api.get(&path).await {
            Ok(n) => n,
            Err(e) if start.elapsed() < timeout => {
                eprintln!("  (control plane unavailable: {e}; retrying)");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let status = node.status;
        let secs = start.elapsed().as_secs();
        if last != Some(status) {
            if tty {
                eprint!("\r\x1b[K");
            }
            let detail = match status {
                NodeStatus::Launching => node
                    .launch_request_id
                    .as_deref()
                    .map(|r| format!(" (SkyPilot request {r})"))
                    .unwrap_or_default(),
                NodeStatus::Requested => " (waiting for the reconciler)".into(),
                NodeStatus::Initializing => {
                    format!(" (cluster up; {} and the agent starting)", node.engine)
                }
                _ => node
                    .status_reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default(),
            };
            eprintln!("[{:>4}s] {name}: {status}{detail}", secs);
            last = Some(status);
        } else if tty {
            eprint!("\r\x1b[K  … {status} for {}s", secs);
            let _ = std::io::stderr().flush();
        }
        match status {
            NodeStatus::Active => {
                if tty {
                    eprint!("\r\x1b[K");
                }
                if json_out {
                    print_json(&node, false)?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            NodeStatus::Failed
            | NodeStatus::Terminated
            | NodeStatus::Draining
            | NodeStatus::Unhealthy => {
                if json_out {
                    print_json(&node, false)?;
                }
                return Ok(ExitCode::from(1));
            }
            _ => {}
        }
        if start.elapsed() >= timeout {
            eprintln!("gave up after {}s; the node is {status}", secs);
            return Ok(ExitCode::from(1));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
