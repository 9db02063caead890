//! `skydeck pools`: create, list, show, change, delete pools and read their decision log,
//! through the control plane's admin API. Bodies and answers are the contract's types
//! (`skydeck_contract::PoolSpec`, `PoolView`, `PoolEventPage`), so the client cannot send a
//! field the server does not know or misread an answer.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use skydeck_contract::{PoolEvent, PoolEventPage, PoolList, PoolPatch, PoolSpec, PoolView, paths};

use super::nodes::{Api, ControlPlane, connect, print_json};
use crate::duration;

/// Options of `skydeck pools`.
#[derive(Debug, Args)]
pub struct PoolsArgs {
    /// The control plane.
    #[command(flatten)]
    pub plane: ControlPlane,
    /// Print the API's JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: PoolsCommand,
}

/// `skydeck pools` commands.
#[derive(Debug, Subcommand)]
pub enum PoolsCommand {
    /// Create a pool from a JSON spec (the body of POST /admin/pools; `-` reads stdin).
    Create {
        /// The spec file.
        file: PathBuf,
    },
    /// List the pools with their sizes.
    List,
    /// Show one pool.
    Show {
        /// The pool's name.
        name: String,
    },
    /// Change a pool's bounds, target or delays.
    Set(SetArgs),
    /// A pool's decisions with their reasons, newest first.
    Events {
        /// The pool's name.
        name: String,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Keep printing new decisions as they are made (oldest first) until interrupted.
        #[arg(long)]
        follow: bool,
        /// With --follow: look this often.
        #[arg(long, value_parser = duration::parse, default_value = "2s")]
        every: Duration,
    },
    /// Delete a pool: its nodes drain, then it goes.
    Delete {
        /// The pool's name.
        name: String,
    },
}

/// Options of `skydeck pools set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The pool's name.
    pub name: String,
    /// New min_nodes.
    #[arg(long)]
    pub min: Option<u32>,
    /// New max_nodes.
    #[arg(long)]
    pub max: Option<u32>,
    /// New target_waiting_per_node.
    #[arg(long)]
    pub target: Option<f64>,
    /// New scale-up delay.
    #[arg(long, value_parser = duration::parse)]
    pub up_delay: Option<Duration>,
    /// New scale-down delay.
    #[arg(long, value_parser = duration::parse)]
    pub down_delay: Option<Duration>,
    /// New idle timeout (0s turns it off).
    #[arg(long, value_parser = duration::parse)]
    pub idle_timeout: Option<Duration>,
}

fn print_pool(v: &PoolView) {
    let s = &v.spec;
    println!("{:<18} {}", "name", s.name);
    println!("{:<18} {}", "size", v.size);
    println!("{:<18} {}", "desired", v.desired);
    println!("{:<18} {}..={}", "bounds", s.min_nodes, s.max_nodes);
    println!("{:<18} {}", "active", v.active);
    println!("{:<18} {}", "draining", v.draining);
    println!(
        "{:<18} {} spot, {} on-demand (new nodes: {})",
        "capacity",
        v.spot_nodes,
        v.on_demand_nodes,
        serde_json::to_value(v.capacity_mode)
            .ok()
            .and_then(|m| m.as_str().map(str::to_string))
            .unwrap_or_default()
    );
    println!(
        "{:<18} {}",
        "waiting/node",
        v.waiting_per_node
            .map_or_else(|| "-".into(), |w| format!("{w:.1}"))
    );
    println!(
        "{:<18} {} (up {} s, down {} s)",
        "target", s.target_waiting_per_node, s.scale_up_delay_seconds, s.scale_down_delay_seconds
    );
    let places: Vec<String> = s
        .template
        .placements
        .iter()
        .map(|p| format!("{}/{}", p.provider, p.region))
        .collect();
    println!("{:<18} {}", "placements", places.join(", "));
    println!("{:<18} {}", "model", s.template.model);
    println!("{:<18} {:.2}", "cost usd/hour", v.hourly_cost_usd);
    if v.deleting {
        println!("{:<18} yes", "deleting");
    }
    if let Some(d) = &v.last_decision {
        println!("{:<18} {d}", "last decision");
    }
}

fn print_event(e: &PoolEvent) {
    let at = e.at.strftime("%Y-%m-%dT%H:%M:%SZ");
    println!("{at}  {:<18} {}", e.kind.as_str(), e.reason);
}

async fn events(api: &Api, name: &str, limit: u32) -> anyhow::Result<PoolEventPage> {
    api.get(&format!(
        "{}?limit={limit}",
        paths::for_pool(paths::POOL_EVENTS, name)
    ))
    .await
}

/// Runs a `pools` command.
pub async fn run(args: PoolsArgs) -> anyhow::Result<ExitCode> {
    let api = connect(&args.plane).await?;
    let json_out = args.json;
    match args.command {
        PoolsCommand::Create { file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading the spec from stdin")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading the pool spec {}", file.display()))?
            };
            let spec: PoolSpec = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a pool spec (JSON)", file.display()))?;
            let v: PoolView = api
                .call(reqwest::Method::POST, paths::POOLS, Some(&spec))
                .await?;
            if json_out {
                print_json(&v, false)?;
            } else {
                print_pool(&v);
            }
        }
        PoolsCommand::List => {
            let list: PoolList = api.get(paths::POOLS).await?;
            if json_out {
                print_json(&list, false)?;
            } else {
                println!(
                    "{:<24} {:>5} {:>7} {:>9} {:>7} {:>12}  LAST DECISION",
                    "NAME", "SIZE", "DESIRED", "BOUNDS", "ACTIVE", "WAITING/NODE"
                );
                for v in &list.pools {
                    println!(
                        "{:<24} {:>5} {:>7} {:>9} {:>7} {:>12}  {}",
                        v.spec.name,
                        v.size,
                        v.desired,
                        format!("{}..={}", v.spec.min_nodes, v.spec.max_nodes),
                        v.active,
                        v.waiting_per_node
                            .map_or_else(|| "-".into(), |w| format!("{w:.1}")),
                        v.last_decision.as_deref().unwrap_or("")
                    );
                }
            }
        }
        PoolsCommand::Show { name } => {
            let v: PoolView = api.get(&paths::for_pool(paths::POOL, &name)).await?;
            if json_out {
                print_json(&v, true)?;
            } else {
                print_pool(&v);
            }
        }
        PoolsCommand::Set(s) => {
            let patch = PoolPatch {
                min_nodes: s.min,
                max_nodes: s.max,
                target_waiting_per_node: s.target,
                scale_up_delay_seconds: s.up_delay.map(|d| d.as_secs()),
                scale_down_delay_seconds: s.down_delay.map(|d| d.as_secs()),
                idle_timeout_seconds: s.idle_timeout.map(|d| d.as_secs()),
                ..PoolPatch::default()
            };
            let v: PoolView = api
                .call(
                    reqwest::Method::PATCH,
                    &paths::for_pool(paths::POOL, &s.name),
                    Some(&patch),
                )
                .await?;
            if json_out {
                print_json(&v, false)?;
            } else {
                print_pool(&v);
            }
        }
        PoolsCommand::Events {
            name,
            limit,
            follow,
            every,
        } => {
            let page = events(&api, &name, limit.clamp(1, 1000)).await?;
            if json_out && !follow {
                print_json(&page, false)?;
                return Ok(ExitCode::SUCCESS);
            }
            let show = |e: &PoolEvent| {
                if json_out {
                    print_json(e, false)
                } else {
                    print_event(e);
                    Ok(())
                }
            };
            if !follow {
                for e in &page.events {
                    show(e)?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            // Oldest first, then whatever is newer than the last one printed.
            let mut last = page.events.first().map(|e| e.id.clone());
            for e in page.events.iter().rev() {
                show(e)?;
            }
            loop {
                tokio::time::sleep(every).await;
                let page = events(&api, &name, 1000).await?;
                let new: Vec<&PoolEvent> = page
                    .events
                    .iter()
                    .take_while(|e| Some(&e.id) != last.as_ref())
                    .collect();
                for e in new.iter().rev() {
                    show(e)?;
                }
                if let Some(e) = new.first() {
                    last = Some(e.id.clone());
                }
            }
        }
        PoolsCommand::Delete { name } => {
            let v: PoolView = api
                .call(
                    reqwest::Method::DELETE,
                    &paths::for_pool(paths::POOL, &name),
                    None::<&()>,
                )
                .await?;
            if json_out {
                print_json(&v, false)?;
            } else {
                println!("{} deleting ({} nodes draining)", v.spec.name, v.size);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
