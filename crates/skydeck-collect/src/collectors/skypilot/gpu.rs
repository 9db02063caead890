//! GPU utilization of the fleet (issue 11): DCGM data from a Prometheus, matched to the UP
//! clusters of `/status` and priced with `/cost_report`, turned into the catalog's GPU
//! metrics.
//!
//! A Prometheus that is down, slow or answers badly never fails the fleet metrics: the
//! collection keeps them, emits no utilization metric (bad data must not become one),
//! reports the problem on the collector's summary line and sets `skydeck.gpu.source_up` to 0.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use skydeck_core::{Sample, catalog as c};
use skydeck_gpu::{
    GpuWindows, PrometheusClient, UtilizationOptions, UtilizationQuery, UtilizationReport,
};
use skydeck_skypilot::api::{ClusterRecord, CostRecord};

/// Where GPU utilization comes from, and how it is judged.
#[derive(Clone)]
pub struct GpuOptions {
    /// The Prometheus that scrapes the DCGM exporters.
    pub prometheus: PrometheusClient,
    /// Resolution of the range query (also the staleness unit: 2 steps without a sample).
    pub step: Duration,
    /// Extra label matchers for the DCGM selectors (`job="dcgm"`), without braces.
    pub matchers: Option<String>,
    /// Window, threshold and matching rules.
    pub utilization: UtilizationOptions,
    /// How far back to read: at least the window, longer when the idle stop's `min_idle` is,
    /// so "idle since" can be seen past the window.
    pub lookback: Duration,
}

impl std::fmt::Debug for GpuOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client's URL only: never its credentials.
        f.debug_struct("GpuOptions")
            .field("prometheus", &self.prometheus.base().as_str())
            .field("step", &self.step)
            .field("matchers", &self.matchers)
            .field("utilization", &self.utilization)
            .field("lookback", &self.lookback)
            .finish()
    }
}

/// Each running cluster's spend per hour, as the burn rate counts it: total cost over the
/// duration of a cluster whose usage interval is still open.
pub fn hourly_costs(costs: &[CostRecord]) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for r in costs.iter().filter(|r| r.is_running()) {
        if let Some(h) = r.hourly_cost() {
            *out.entry(r.name.clone()).or_default() += h;
        }
    }
    out
}

/// One read of GPU utilization.
#[derive(Debug)]
pub struct GpuRead {
    /// The verdicts, when the source answered.
    pub report: Option<UtilizationReport>,
    /// The fleet's GPU metrics (none when the source failed) and the source's health.
    pub samples: Vec<Sample>,
    /// What went wrong, for the summary line.
    pub problem: Option<String>,
}

/// GPU windows as Prometheus had them at `end`.
#[derive(Debug)]
pub struct Fetched {
    /// The per-GPU samples.
    pub windows: GpuWindows,
    /// The end of the queried window: the "now" they are judged at, so the time the SkyPilot
    /// requests take afterwards cannot make fresh data look stale.
    pub end: Timestamp,
}

/// Asks Prometheus for the window ending now, under `deadline`.
pub async fn fetch(opts: &GpuOptions, deadline: tokio::time::Instant) -> Result<Fetched, String> {
    let end = Timestamp::now();
    let mut q = UtilizationQuery::new(end);
    q.window = opts.lookback.max(opts.utilization.window);
    q.step = opts.step;
    q.matchers = opts.matchers.clone();
    q.keep_labels = opts.utilization.matching.kept_labels();
    match opts.prometheus.fetch_utilization(&q, deadline).await {
        Ok(f) => {
            for w in &f.warnings {
                tracing::warn!(prometheus = %opts.prometheus.base(), "Prometheus warning: {w}");
            }
            Ok(Fetched {
                windows: f.windows,
                end,
            })
        }
        Err(e) => Err(error_chain(&e)),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The verdicts and metrics from `windows` (or the failure `fetched`) for `clusters`.
pub fn judge(
    utilization: &UtilizationOptions,
    source: &'static str,
    fetched: Result<Fetched, String>,
    clusters: &[ClusterRecord],
    costs: &[CostRecord],
    at: Timestamp,
) -> GpuRead {
    match fetched {
        Ok(Fetched { windows, end }) => {
            let report =
                skydeck_gpu::compute(clusters, &hourly_costs(costs), &windows, end, utilization);
            let mut samples = report.samples(at);
            samples.push(Sample::of(&c::GPU_SOURCE_UP, 1.0, at).tag("source", source));
            samples.push(
                Sample::of(
                    &c::GPU_SAMPLES_REJECTED,
                    windows.rejected_samples() as f64,
                    at,
                )
                .tag("source", source),
            );
            GpuRead {
                report: Some(report),
                samples,
                problem: None,
            }
        }
        Err(e) => GpuRead {
            report: None,
            samples: vec![Sample::of(&c::GPU_SOURCE_UP, 0.0, at).tag("source", source)],
            problem: Some(format!("gpu utilization: {e}")),
        },
    }
}
