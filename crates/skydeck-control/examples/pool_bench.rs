//! The pool controller's benchmark (`scripts/bench/pools.sh` runs it):
//!
//! ```sh
//! cargo run --release -p skydeck-control --example pool_bench -- \
//!     --database-url sqlite:///tmp/p.db [--pools 100] [--nodes 2000] [--ticks 30]
//! ```
//!
//! 1. **Decision loop.** `--pools` pools of `--nodes / --pools` active nodes each, every node
//!    with a heartbeat report, then `--ticks` controller ticks ([`PoolController::tick`]: read
//!    every pool and its nodes, decide, store what changed), timed one after the other, in two
//!    phases: steady (the load does not move: nothing to store) and moving (every node's
//!    waiting count changes before each tick, so every pool's state is stored every tick).
//!    Printed: p50, p90 and max wall time per tick, and this process's CPU per tick.
//! 2. **Load step to decision.** One pool on a simulated clock, ticks every `--tick-ms`
//!    (the decision interval), agents heartbeating every `--heartbeat-ms`; the load steps
//!    from below the target to 3× the target at a random phase of the tick and heartbeat
//!    cycles, `--steps` times; printed: the simulated time from the step to the scale-up
//!    decision, minus the up-delay (the target: at most one decision interval plus one
//!    heartbeat interval, the time the step takes to reach the controller).

use std::sync::Arc;
use std::time::Instant;

use skydeck_contract::{
    EngineHealth, EngineReport, Heartbeat, NodeStatus, Placement, PoolSpec, PoolTemplate,
    SpotPolicy,
};
use skydeck_control::clock::SimClock;
use skydeck_control::node_config::Rules;
use skydeck_control::nodes;
use skydeck_control::pools::controller::PoolController;
use skydeck_control::pools::decide::Timing;
use skydeck_control::store::Store;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn spec(name: &str, nodes: u32) -> PoolSpec {
    PoolSpec {
        name: name.into(),
        template: PoolTemplate {
            placements: vec![
                Placement {
                    provider: "aws".into(),
                    region: "us-east-1".into(),
                },
                Placement {
                    provider: "gcp".into(),
                    region: "us-central1".into(),
                },
            ],
            gpu: "L4".into(),
            model: "org/model".into(),
            engine: None,
            engine_args: None,
            disk_size: None,
            image: None,
        },
        min_nodes: nodes,
        max_nodes: nodes.max(1) * 2,
        target_waiting_per_node: 4.0,
        scale_up_delay_seconds: 300,
        scale_down_delay_seconds: 600,
        idle_timeout_seconds: None,
        warm_nodes: 0,
        spot: SpotPolicy::default(),
    }
}

fn report(id: &str, waiting: f64) -> Heartbeat {
    Heartbeat {
        node_id: id.into(),
        engine: EngineReport {
            health: EngineHealth::Ok,
            requests_waiting: Some(waiting),
            requests_running: Some(1.0),
            generation_tokens_total: Some(1000.0),
            ..EngineReport::default()
        },
        ..Heartbeat::default()
    }
}

/// Walks every `requested` node of the store to `active` with a report.
async fn activate(db: &Store, waiting: f64) -> Result<usize, Error> {
    let mut n = 0;
    for node in db.pool_nodes(0).await? {
        if node.status != NodeStatus::Requested {
            continue;
        }
        db.claim_launch(&node.id, None, &format!("hash-{}", node.id))
            .await?;
        db.launch_submitted(&node.id, &format!("req-{}", node.id))
            .await?;
        db.transition(
            &node.id,
            &[NodeStatus::Launching],
            NodeStatus::Initializing,
            None,
        )
        .await?;
        db.heartbeat(&node.id, Some(&report(&node.id, waiting)))
            .await?;
        n += 1;
    }
    Ok(n)
}

fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks * 10.0 // USER_HZ = 100
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn decision_loop(url: &str, pools: u32, nodes: u32, ticks: usize) -> Result<(), Error> {
    let clock = SimClock::new(1_796_083_200_000);
    let db = Store::connect_with_clock(url, 8, clock.clone()).await?;
    let per = nodes / pools;
    let rules = Rules::default();
    for p in 0..pools {
        skydeck_control::pools::create(&db, &rules, &spec(&format!("pool-{p:03}"), per)).await?;
    }
    let ctl = PoolController::new(
        db.clone(),
        Arc::new(rules),
        "bench".into(),
        Timing::default(),
    );
    // The first tick launches every pool's minimum; the nodes are then walked to active.
    let s = ctl.tick().await?;
    let active = activate(&db, 2.0).await?;
    eprintln!(
        "{} pools, {} nodes launched, {active} active",
        s.pools, s.launched
    );
    ctl.tick().await?;
    let ids: Vec<String> = db.pool_nodes(0).await?.into_iter().map(|n| n.id).collect();
    println!("| phase | ticks | p50 ms | p90 ms | max ms | CPU ms/tick |");
    println!("|---|---|---|---|---|---|");
    for phase in ["steady", "moving"] {
        let mut wall = Vec::with_capacity(ticks);
        let mut cpu = 0.0;
        for t in 0..ticks {
            clock.advance(2_000);
            if phase == "moving" {
                // Every node's queue moves (within [target/2, target]: no scaling).
                for id in &ids {
                    let w = 2.0 + ((t as f64) * 0.37).sin().abs();
                    db.heartbeat(id, Some(&report(id, w))).await?;
                }
            }
            let cpu0 = cpu_ms();
            let t0 = Instant::now();
            ctl.tick().await?;
            wall.push(t0.elapsed().as_secs_f64() * 1000.0);
            cpu += cpu_ms() - cpu0;
        }
        let cpu = cpu / ticks as f64;
        wall.sort_by(f64::total_cmp);
        println!(
            "| {phase} ({pools} pools, {} nodes) | {ticks} | {:.1} | {:.1} | {:.1} | {:.1} |",
            ids.len(),
            pct(&wall, 0.5),
            pct(&wall, 0.9),
            wall.last().copied().unwrap_or(0.0),
            cpu,
        );
    }
    db.close().await;
    Ok(())
}

async fn load_step(url: &str, steps: usize, tick_ms: i64, heartbeat_ms: i64) -> Result<(), Error> {
    let up_delay_s: i64 = 60;
    let mut lags = Vec::new();
    let mut seen_lags = Vec::new();
    for step in 0..steps {
        let clock = SimClock::new(1_796_083_200_000);
        let path = format!("{url}.step{step}");
        let db = Store::connect_with_clock(&path, 4, clock.clone()).await?;
        let rules = Rules::default();
        let mut sp = spec("step", 2);
        sp.name = "step".into();
        sp.scale_up_delay_seconds = up_delay_s as u64;
        skydeck_control::pools::create(&db, &rules, &sp).await?;
        let ctl = PoolController::new(
            db.clone(),
            Arc::new(rules),
            "bench".into(),
            Timing::default(),
        );
        ctl.tick().await?;
        activate(&db, 1.0).await?;
        // A random phase of the step between ticks and between heartbeats.
        let start = clock.now_ms_value();
        let step_at = start + 10_000 + fastrand::i64(0..tick_ms.max(1));
        let hb_phase = fastrand::i64(0..heartbeat_ms.max(1));
        let mut next_tick = start;
        let mut next_hb = start + hb_phase;
        let mut decided = None;
        let mut reported = None;
        let end = step_at + (up_delay_s * 1000) * 3;
        while clock.now_ms_value() < end && decided.is_none() {
            let now = next_tick.min(next_hb);
            clock.set(now);
            if now == next_hb {
                let waiting = if now >= step_at { 12.0 } else { 1.0 };
                if now >= step_at && reported.is_none() {
                    reported = Some(now);
                }
                for n in db.pool_nodes(0).await? {
                    if n.status == NodeStatus::Active {
                        nodes::heartbeat(
                            &db,
                            n.clone(),
                            &report(&n.id, waiting),
                            nodes::AgentTiming {
                                heartbeat_interval: std::time::Duration::from_millis(
                                    heartbeat_ms as u64,
                                ),
                                drain_grace: std::time::Duration::from_secs(60),
                            },
                        )
                        .await?;
                    }
                }
                next_hb += heartbeat_ms;
            }
            if now == next_tick {
                ctl.tick().await?;
                let page = skydeck_control::pools::events(&db, "step", None, 10).await?;
                if page
                    .events
                    .iter()
                    .any(|e| e.kind == skydeck_contract::DecisionKind::ScaleUp)
                {
                    decided = Some(now);
                }
                next_tick += tick_ms;
            }
        }
        let at = decided.ok_or("no scale-up decision")?;
        lags.push((at - step_at - up_delay_s * 1000) as f64 / 1000.0);
        let seen = reported.ok_or("the step was never reported")?;
        seen_lags.push((at - seen - up_delay_s * 1000) as f64 / 1000.0);
        db.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!(
                "{}{suffix}",
                path.strip_prefix("sqlite://").unwrap_or(&path)
            ));
        }
    }
    lags.sort_by(f64::total_cmp);
    seen_lags.sort_by(f64::total_cmp);
    println!();
    println!(
        "| from … to the scale-up decision, minus the {up_delay_s} s up-delay (tick {} s, heartbeat {} s) | steps | min s | p50 s | max s | bound s |",
        tick_ms as f64 / 1000.0,
        heartbeat_ms as f64 / 1000.0
    );
    println!("|---|---|---|---|---|---|");
    for (what, v, bound) in [
        (
            "the first heartbeat reporting the step",
            &seen_lags,
            tick_ms,
        ),
        ("the load step itself", &lags, tick_ms + heartbeat_ms),
    ] {
        println!(
            "| {what} | {steps} | {:.1} | {:.1} | {:.1} | {:.1} |",
            v[0],
            pct(v, 0.5),
            v[v.len() - 1],
            bound as f64 / 1000.0
        );
    }
    Ok(())
}

/// The clock's reading (the trait method, named so the example needs no trait import).
trait Now {
    fn now_ms_value(&self) -> i64;
}

impl Now for Arc<SimClock> {
    fn now_ms_value(&self) -> i64 {
        use skydeck_control::clock::Clock;
        self.now_ms()
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let url = arg("--database-url", "sqlite:///tmp/skydeck-pool-bench.db");
    let pools: u32 = arg("--pools", "100").parse()?;
    let nodes: u32 = arg("--nodes", "2000").parse()?;
    let ticks: usize = arg("--ticks", "30").parse()?;
    let steps: usize = arg("--steps", "20").parse()?;
    let tick_ms: i64 = arg("--tick-ms", "2000").parse()?;
    let heartbeat_ms: i64 = arg("--heartbeat-ms", "30000").parse()?;
    decision_loop(&url, pools, nodes, ticks).await?;
    let step_url = arg("--step-database-url", "sqlite:///tmp/skydeck-pool-step.db");
    load_step(&step_url, steps, tick_ms, heartbeat_ms).await?;
    Ok(())
}
