//! `skydeck nodes`: a client of the control plane's admin API.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use secrecy::ExposeSecret;

use crate::config::AwsSection;
use crate::{credentials, duration};

/// Options of `skydeck nodes`.
#[derive(Debug, Args)]
pub struct NodesArgs {
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
    /// Show a node.
    Status {
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
    /// Extra vLLM flags (allow-listed).
    #[arg(long, allow_hyphen_values = true)]
    pub vllm_args: Option<String>,
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

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the control plane at {}", self.base))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = body["error"]["message"].as_str().unwrap_or("no details");
            let code = body["error"]["code"].as_str().unwrap_or("error");
            bail!("{path}: HTTP {status} {code}: {msg}");
        }
        Ok(body)
    }
}

/// Runs a `nodes` command.
pub async fn run(args: NodesArgs) -> anyhow::Result<ExitCode> {
    let creds = credentials::reader(&AwsSection::default());
    let spec = credentials::admin_api_key(args.admin_key_file.as_deref(), None)?;
    let key = creds
        .get(&spec)
        .await?
        .map(|r| r.value.expose_secret().to_string())
        .unwrap_or_default();
    // The first key of a rotation list.
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
    let api = Api {
        http,
        base: args.url.trim_end_matches('/').to_string(),
        key,
    };
    let json_out = args.json;
    match args.command {
        NodesCommand::Launch(l) => {
            let mut body = json!({
                "provider": l.provider, "region": l.region, "gpu": l.gpu, "model": l.model,
            });
            if l.spot || l.no_spot {
                body["use_spot"] = json!(l.spot && !l.no_spot);
            }
            if let Some(d) = l.disk_size {
                body["disk_size"] = json!(d);
            }
            if let Some(v) = &l.vllm_args {
                body["vllm_args"] = json!(v);
            }
            if let Some(n) = &l.node_id {
                body["node_id"] = json!(n);
            }
            let resp = api
                .call(reqwest::Method::POST, "/admin/nodes/launch", Some(body))
                .await?;
            let name = resp["cluster_name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if json_out && !l.wait {
                println!("{resp}");
            } else {
                println!("{name}");
            }
            if l.wait {
                return wait_active(&api, &name, l.timeout, json_out).await;
            }
            Ok(ExitCode::SUCCESS)
        }
        NodesCommand::Terminate {
            cluster_name,
            force,
        } => {
            let path = format!(
                "/admin/nodes/{}/terminate{}",
                enc(&cluster_name),
                if force { "?force=true" } else { "" }
            );
            let resp = api.call(reqwest::Method::POST, &path, None).await?;
            if json_out {
                println!("{resp}");
            } else {
                println!(
                    "{} {}",
                    cluster_name,
                    resp["status"].as_str().unwrap_or("?")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        NodesCommand::Status { cluster_name } => {
            let resp = api
                .call(
                    reqwest::Method::GET,
                    &format!("/admin/nodes/{}/status", enc(&cluster_name)),
                    None,
                )
                .await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&resp)?);
            } else {
                for (k, v) in resp.as_object().into_iter().flatten() {
                    if !v.is_null() {
                        println!(
                            "{k:<20} {}",
                            v.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string())
                        );
                    }
                }
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
                let resp = api
                    .call(reqwest::Method::GET, &format!("/admin/nodes?{q}"), None)
                    .await?;
                nodes.extend(resp["nodes"].as_array().cloned().unwrap_or_default());
                cursor = resp["next_cursor"].as_str().map(str::to_string);
                if !all || cursor.is_none() {
                    break;
                }
            }
            if json_out {
                println!("{}", Value::Array(nodes));
            } else {
                println!(
                    "{:<48} {:<13} {:<10} {:<16} {:<10} MODEL",
                    "CLUSTER", "STATUS", "PROVIDER", "REGION", "GPU"
                );
                for n in &nodes {
                    let s = |k: &str| n[k].as_str().unwrap_or("-").to_string();
                    println!(
                        "{:<48} {:<13} {:<10} {:<16} {:<10} {}",
                        s("cluster_name"),
                        s("status"),
                        s("provider"),
                        s("region"),
                        s("gpu"),
                        s("model")
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
    let mut last = String::new();
    loop {
        let node = match api
            .call(
                reqwest::Method::GET,
                &format!("/admin/nodes/{}/status", enc(name)),
                None,
            )
            .await
        {
            Ok(n) => n,
            Err(e) if start.elapsed() < timeout => {
                eprintln!("  (control plane unavailable: {e}; retrying)");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let status = node["status"].as_str().unwrap_or("?").to_string();
        let secs = start.elapsed().as_secs();
        if status != last {
            if tty {
                eprint!("\r\x1b[K");
            }
            let detail = match status.as_str() {
                "launching" => node["launch_request_id"]
                    .as_str()
                    .map(|r| format!(" (SkyPilot request {r})"))
                    .unwrap_or_default(),
                "requested" => " (waiting for the reconciler)".into(),
                "initializing" => " (cluster up; vLLM and the agent starting)".into(),
                _ => node["status_reason"]
                    .as_str()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default(),
            };
            eprintln!("[{:>4}s] {name}: {status}{detail}", secs);
            last = status.clone();
        } else if tty {
            eprint!("\r\x1b[K  … {status} for {}s", secs);
            let _ = std::io::stderr().flush();
        }
        match status.as_str() {
            "active" => {
                if tty {
                    eprint!("\r\x1b[K");
                }
                if json_out {
                    println!("{node}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            "failed" | "terminated" | "draining" | "unhealthy" => {
                if json_out {
                    println!("{node}");
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
