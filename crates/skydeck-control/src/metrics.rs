//! `/metrics` of the control plane, in the Prometheus text format.
//!
//! Everything is computed from the database at scrape time, so every replica reports the same
//! fleet whichever one Prometheus scrapes, and a restart loses no counts. The launch counters
//! and the launch-duration histogram count nodes by the timestamps in their rows, so they only
//! grow (rows are never deleted).

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::db::MetricRow;
use crate::status::NodeStatus;

/// Bucket bounds of the launch duration (seconds): around the seed's targets of P50 45–60 s
/// (warm), P95 3–5 min (cold), P99 8–10 min.
pub const LAUNCH_BUCKETS: [f64; 12] = [
    15.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 480.0, 600.0, 900.0, 1800.0,
];

fn esc(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders the exposition.
pub fn render(rows: &[MetricRow], unmanaged: usize, leader: bool, now_ms: i64) -> String {
    let mut out = String::with_capacity(4096 + rows.len() * 64);

    let succeeded = rows.iter().filter(|r| r.initializing_at.is_some()).count();
    let failed = rows
        .iter()
        .filter(|r| r.status == NodeStatus::Failed.as_str())
        .count();
    header(
        &mut out,
        "skydeck_control_launches_total",
        "counter",
        "Launches that finished, by result (succeeded: the cluster came up).",
    );
    let _ = writeln!(
        out,
        "skydeck_control_launches_total{{result=\"succeeded\"}} {succeeded}"
    );
    let _ = writeln!(
        out,
        "skydeck_control_launches_total{{result=\"failed\"}} {failed}"
    );

    header(
        &mut out,
        "skydeck_control_launch_duration_seconds",
        "histogram",
        "Time from submitting the SkyPilot launch to the cluster being up.",
    );
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
    for (i, le) in LAUNCH_BUCKETS.iter().enumerate() {
        let _ = writeln!(
            out,
            "skydeck_control_launch_duration_seconds_bucket{{le=\"{le}\"}} {}",
            counts[i]
        );
    }
    let _ = writeln!(
        out,
        "skydeck_control_launch_duration_seconds_bucket{{le=\"+Inf\"}} {n}"
    );
    let _ = writeln!(out, "skydeck_control_launch_duration_seconds_sum {sum}");
    let _ = writeln!(out, "skydeck_control_launch_duration_seconds_count {n}");

    header(
        &mut out,
        "skydeck_control_nodes",
        "gauge",
        "Nodes by lifecycle status, provider and GPU.",
    );
    let mut by: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
    for r in rows {
        *by.entry((&r.status, &r.provider, &r.gpu)).or_default() += 1;
    }
    for ((status, provider, gpu), c) in &by {
        let _ = writeln!(
            out,
            "skydeck_control_nodes{{status=\"{}\",provider=\"{}\",gpu=\"{}\"}} {c}",
            esc(status),
            esc(provider),
            esc(gpu)
        );
    }

    let running: Vec<&MetricRow> = rows
        .iter()
        .filter(|r| r.status == "active" || r.status == "unhealthy")
        .collect();
    header(
        &mut out,
        "skydeck_control_node_uptime_seconds",
        "gauge",
        "Seconds since the node's agent first registered, for active and unhealthy nodes.",
    );
    for r in &running {
        if let Some(a) = r.active_at {
            let _ = writeln!(
                out,
                "skydeck_control_node_uptime_seconds{{cluster_name=\"{}\",provider=\"{}\",gpu=\"{}\"}} {}",
                esc(&r.cluster_name),
                esc(&r.provider),
                esc(&r.gpu),
                (now_ms - a).max(0) as f64 / 1000.0
            );
        }
    }
    header(
        &mut out,
        "skydeck_control_heartbeat_age_seconds",
        "gauge",
        "Seconds since the node's last heartbeat, for active and unhealthy nodes.",
    );
    for r in &running {
        if let Some(h) = r.last_heartbeat_at {
            let _ = writeln!(
                out,
                "skydeck_control_heartbeat_age_seconds{{cluster_name=\"{}\"}} {}",
                esc(&r.cluster_name),
                (now_ms - h).max(0) as f64 / 1000.0
            );
        }
    }
    header(
        &mut out,
        "skydeck_control_active_spend_usd_per_hour",
        "gauge",
        "Summed hourly price of active nodes (from SkyPilot's cost report), by provider and GPU.",
    );
    let mut spend: BTreeMap<(&str, &str), f64> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.status == "active") {
        *spend.entry((&r.provider, &r.gpu)).or_default() += r.hourly_price.unwrap_or(0.0);
    }
    for ((provider, gpu), v) in &spend {
        let _ = writeln!(
            out,
            "skydeck_control_active_spend_usd_per_hour{{provider=\"{}\",gpu=\"{}\"}} {v}",
            esc(provider),
            esc(gpu)
        );
    }
    header(
        &mut out,
        "skydeck_control_unmanaged_clusters",
        "gauge",
        "Clusters with skydeck's name prefix that SkyPilot has and the node table does not.",
    );
    let _ = writeln!(out, "skydeck_control_unmanaged_clusters {unmanaged}");
    header(
        &mut out,
        "skydeck_control_reconciler_leader",
        "gauge",
        "1 on the replica that holds the reconciler lease.",
    );
    let _ = writeln!(
        out,
        "skydeck_control_reconciler_leader {}",
        u8::from(leader)
    );
    out
}
