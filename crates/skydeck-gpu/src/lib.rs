//! GPU utilization of SkyPilot clusters (issue 11's building blocks): where utilization comes
//! from, which cluster a GPU belongs to, and when a cluster is GPU-idle.
//!
//! * [`window`]: [`GpuWindows`], bounded per-GPU windows of `(unix seconds, ratio)` samples
//!   keyed by [`GpuId`]; what every GPU data source fills.
//! * [`prometheus`]: [`PrometheusClient`] for `/api/v1/query` and `/api/v1/query_range`, and
//!   [`PrometheusClient::fetch_utilization`] (DCGM engine activity, else GPU util).
//! * [`matching`]: GPUs to clusters by pod name, SkyPilot pod label or a configured label;
//!   unmatched GPUs are counted, never guessed.
//! * [`utilization`]: [`compute`], the pure verdict per UP cluster (idle, active, unknown) and
//!   the fleet metrics of the catalog. No data source means no report, so no metrics.
//! * [`idle`]: the opt-in idle stop: [`decide`] (pure: which idle clusters to autostop, stop or
//!   take down under an [`IdlePolicy`], never one with unknown data) and [`execute`] (submits
//!   the SkyPilot requests).
//! * [`scrape`]: [`Scraper`], the source without Prometheus: serve scrapes the dcgm-exporters
//!   its discovery finds through the API server proxy, fills the windows and produces the
//!   per-GPU Datadog series.

pub mod idle;
pub mod matching;
pub mod prometheus;
pub mod scrape;
pub mod utilization;
pub mod window;

pub use idle::{
    Action, DEFAULT_EXCLUDE_LABEL, Decision, Executed, IdleMark, IdleMarks, IdlePolicy, Outcome,
    PolicyError, SkipReason, decide, execute, idle_marks,
};
pub use matching::{DEFAULT_VM_LABEL, MatchOptions, match_gpus};
pub use prometheus::{
    Error, FetchedUtilization, PrometheusAuth, PrometheusClient, PrometheusOptions,
    UtilizationQuery,
};
pub use scrape::{
    CycleStats, ExporterRef, ExporterSource, GpuReading, ParsedPage, ScrapeOptions, Scraper,
    TargetError, parse_page,
};
pub use utilization::{
    Activity, ClusterUtilization, DEFAULT_THRESHOLD, DEFAULT_WINDOW, UtilizationOptions,
    UtilizationReport, compute, fleet_samples,
};
pub use window::{GpuId, GpuWindows, UtilSource, WindowLimits};
