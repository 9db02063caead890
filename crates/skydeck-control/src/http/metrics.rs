//! `/metrics` of the control plane, in the Prometheus text format.
//!
//! Everything is computed from the database at scrape time, so every replica reports the same
//! fleet whichever one Prometheus scrapes, and a restart loses no counts. The launch counters
//! and the launch-duration histogram count nodes by the timestamps in their rows, so they only
//! grow (rows are never deleted). Names, HELP and TYPE come from the metric catalog.

use std::collections::BTreeMap;

use jiff::Timestamp;
use skydeck_core::exposition::{self, Format, Histogram};
use skydeck_core::{Sample, catalog as c};

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use skydeck_contract::{EngineHealth, ErrorBody};

use super::{ApiError, AppState};
use crate::status::NodeStatus;
use crate::store::MetricRow;

/// Prometheus metrics of the fleet, computed from the database.
#[utoipa::path(get, path = "/metrics", tag = "probes",
    responses(
        (status = 200, description = "The Prometheus text exposition", body = String, content_type = "text/plain"),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    ))]
pub async fn serve(State(s): State<AppState>) -> Result<Response, ApiError> {
    let rows = s.db.metric_rows().await?;
    let (unmanaged, leader) = {
        let o = s.observed.lock().unwrap_or_else(|p| p.into_inner());
        (o.unmanaged.len(), o.leader)
    };
    let now = s.db.now_ms();
    let pools: Vec<crate::pools::Pool> =
        s.db.pools()
            .await?
            .iter()
            .filter_map(|r| crate::pools::Pool::from_row(r).ok())
            .collect();
    let pool_nodes = if pools.is_empty() {
        Vec::new()
    } else {
        s.db.pool_nodes(now).await?
    };
    let mut text = render(&rows, unmanaged, leader, now);
    text.push_str(&render_pools(&pools, &pool_nodes, now));
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}

/// The per-node engine and GPU gauges of one live node's latest heartbeat, labelled by
/// cluster name and engine only (bounded: one series per node and metric).
fn engine_samples(r: &MetricRow, at: Timestamp, out: &mut Vec<Sample>) {
    let Some(hb) = &r.heartbeat else { return };
    let live = NodeStatus::parse(&r.status).is_some_and(|s| !s.is_final());
    if !live {
        return;
    }
    let mut push = |def: &'static skydeck_core::catalog::MetricDef, v: f64| {
        out.push(
            Sample::of(def, v, at)
                .tag("cluster_name", r.cluster_name.clone())
                .tag("engine", r.engine.clone()),
        );
    };
    let e = &hb.engine;
    push(
        &c::CONTROL_ENGINE_UP,
        f64::from(u8::from(e.health == EngineHealth::Ok)),
    );
    if let Some(v) = e.requests_running {
        push(&c::CONTROL_ENGINE_REQUESTS_RUNNING, v);
    }
    if let Some(v) = e.requests_waiting {
        push(&c::CONTROL_ENGINE_REQUESTS_WAITING, v);
    }
    if let Some(v) = e.generation_tokens_total {
        push(&c::CONTROL_ENGINE_GENERATION_TOKENS, v);
    }
    let util: Vec<f64> = hb
        .gpus
        .iter()
        .filter_map(|g| g.utilization_percent)
        .collect();
    if !util.is_empty() {
        push(
            &c::CONTROL_NODE_GPU_UTILIZATION,
            util.iter().sum::<f64>() / util.len() as f64,
        );
    }
    let mem: Vec<f64> = hb.gpus.iter().filter_map(|g| g.memory_used_bytes).collect();
    if !mem.is_empty() {
        push(&c::CONTROL_NODE_GPU_MEMORY_USED, mem.iter().sum());
    }
}

/// Bucket bounds of the launch duration (seconds): around the seed's targets of P50 45–60 s
/// (warm), P95 3–5 min (cold), P99 8–10 min.
pub const LAUNCH_BUCKETS: [f64; 12] = [
    15.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 480.0, 600.0, 900.0, 1800.0,
];

/// The pools' families: size by capacity, desired, bounds, load, mode, decisions by kind,
/// preemptions, and the replace and scale-up durations (counted in each pool's stored state,
/// so they survive restarts and read the same on every replica).
pub fn render_pools(
    pools: &[crate::pools::Pool],
    nodes: &[crate::store::Node],
    now_ms: i64,
) -> String {
    if pools.is_empty() {
        return String::new();
    }
    let at = Timestamp::from_millisecond(now_ms).unwrap_or_else(|_| Timestamp::now());
    let mut samples = Vec::new();
    let mut histograms = Vec::new();
    for p in pools {
        let name = p.spec.name.as_str();
        let v = crate::pools::view(p, nodes);
        for (capacity, n) in [("spot", v.spot_nodes), ("on_demand", v.on_demand_nodes)] {
            samples.push(
                Sample::of(&c::CONTROL_POOL_NODES, f64::from(n), at)
                    .tag("pool", name)
                    .tag("capacity", capacity),
            );
        }
        for (def, val) in [
            (&c::CONTROL_POOL_STOPPED, v.stopped),
            (&c::CONTROL_POOL_DESIRED, v.desired),
            (&c::CONTROL_POOL_MIN, p.spec.min_nodes),
            (&c::CONTROL_POOL_MAX, p.spec.max_nodes),
        ] {
            samples.push(Sample::of(def, f64::from(val), at).tag("pool", name));
        }
        samples.push(
            Sample::of(
                &c::CONTROL_POOL_STOPPED_DISK,
                v.stopped_disk_gb as f64 * 1e9,
                at,
            )
            .tag("pool", name),
        );
        if let Some(w) = v.waiting_per_node {
            samples.push(Sample::of(&c::CONTROL_POOL_WAITING, w, at).tag("pool", name));
        }
        let od = v.capacity_mode == skydeck_contract::CapacityMode::OnDemand;
        samples.push(
            Sample::of(&c::CONTROL_POOL_ON_DEMAND, f64::from(u8::from(od)), at).tag("pool", name),
        );
        for (kind, n) in &p.state.decisions {
            samples.push(
                Sample::of(&c::CONTROL_POOL_DECISIONS, *n as f64, at)
                    .tag("pool", name)
                    .tag("kind", kind.clone()),
            );
        }
        samples.push(
            Sample::of(&c::CONTROL_POOL_PREEMPTIONS, p.state.preemptions as f64, at)
                .tag("pool", name),
        );
        for (def, h) in [
            (&c::CONTROL_POOL_REPLACE_DURATION, &p.state.replace_seconds),
            (
                &c::CONTROL_POOL_SCALE_UP_DURATION,
                &p.state.scale_up_seconds,
            ),
        ] {
            let mut cumulative = 0;
            let buckets = LAUNCH_BUCKETS
                .iter()
                .enumerate()
                .map(|(i, le)| {
                    cumulative += h.buckets.get(i).copied().unwrap_or(0);
                    (*le, cumulative)
                })
                .collect();
            histograms.push(Histogram {
                def,
                tags: [("pool".to_string(), name.to_string())]
                    .into_iter()
                    .collect(),
                buckets,
                sum: h.sum,
                count: h.count,
            });
        }
    }
    exposition::render(&samples, &histograms, Format::Text)
}

/// Renders the exposition, through the one catalog-driven writer serve uses too.
pub fn render(rows: &[MetricRow], unmanaged: usize, leader: bool, now_ms: i64) -> String {
    let at = Timestamp::from_millisecond(now_ms).unwrap_or_else(|_| Timestamp::now());
    let mut samples = Vec::with_capacity(16 + rows.len() * 2);

    let succeeded = rows.iter().filter(|r| r.initializing_at.is_some()).count();
    let failed = rows
        .iter()
        .filter(|r| r.status == NodeStatus::Failed.as_str())
        .count();
    for (result, n) in [("succeeded", succeeded), ("failed", failed)] {
        samples.push(Sample::of(&c::CONTROL_LAUNCHES, n as f64, at).tag("result", result));
    }

    let mut counts = [0u64; LAUNCH_BUCKETS.len()];
    let (mut n, mut sum) = (0u64, 0.0f64);
    for r in rows {
        if let (Some(a), Some(b)) = (r.launching_at, r.initializing_at) {
            let secs = (b - a).max(0) as f64 / 1000.0;
            n += 1;
            sum += secs;
            for (i, le) in LAUNCH_BUCKETS.iter().enumerate() {
                if secs <= *le {
                    counts[i] += 1;
                }
            }
        }
    }
    let histogram = Histogram {
        def: &c::CONTROL_LAUNCH_DURATION,
        tags: Default::default(),
        buckets: LAUNCH_BUCKETS.iter().copied().zip(counts).collect(),
        sum,
        count: n,
    };

    let mut by: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
    for r in rows {
        *by.entry((&r.status, &r.provider, &r.gpu)).or_default() += 1;
    }
    for ((status, provider, gpu), n) in &by {
        samples.push(
            Sample::of(&c::CONTROL_NODES, *n as f64, at)
                .tag("status", *status)
                .tag("provider", *provider)
                .tag("gpu", *gpu),
        );
    }

    let running = rows
        .iter()
        .filter(|r| r.status == "active" || r.status == "unhealthy");
    for r in running {
        if let Some(a) = r.active_at {
            samples.push(
                Sample::of(
                    &c::CONTROL_NODE_UPTIME,
                    (now_ms - a).max(0) as f64 / 1000.0,
                    at,
                )
                .tag("cluster_name", r.cluster_name.clone())
                .tag("provider", r.provider.clone())
                .tag("gpu", r.gpu.clone()),
            );
        }
        if let Some(h) = r.last_heartbeat_at {
            samples.push(
                Sample::of(
                    &c::CONTROL_HEARTBEAT_AGE,
                    (now_ms - h).max(0) as f64 / 1000.0,
                    at,
                )
                .tag("cluster_name", r.cluster_name.clone()),
            );
        }
    }

    let mut spend: BTreeMap<(&str, &str), f64> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.status == "active") {
        *spend.entry((&r.provider, &r.gpu)).or_default() += r.hourly_price.unwrap_or(0.0);
    }
    for ((provider, gpu), v) in &spend {
        samples.push(
            Sample::of(&c::CONTROL_ACTIVE_SPEND, *v, at)
                .tag("provider", *provider)
                .tag("gpu", *gpu),
        );
    }
    for r in rows {
        engine_samples(r, at, &mut samples);
    }
    samples.push(Sample::of(&c::CONTROL_UNMANAGED, unmanaged as f64, at));
    samples.push(Sample::of(
        &c::CONTROL_LEADER,
        f64::from(u8::from(leader)),
        at,
    ));
    exposition::render(&samples, &[histogram], Format::Text)
}
