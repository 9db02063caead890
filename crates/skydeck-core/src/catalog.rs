//! The metric catalog: the one list of every metric skydeck emits.
//!
//! Each entry carries both names (the Datadog name from the seed design, which existing
//! dashboards and monitors query, and a Prometheus name in base units), the kind, the unit, a
//! one-line help text and the tag keys the metric may carry. Sinks take HELP/TYPE/units from
//! here and dashboards are generated from here, so no other place restates these facts.

use crate::sample::MetricKind;

/// How a metric family behaves, as Prometheus types it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// A value that goes up and down.
    Gauge,
    /// A monotonically increasing total (Prometheus name ends in `_total`).
    Counter,
    /// A distribution (`_bucket`, `_sum`, `_count` series), rendered from a
    /// [`crate::exposition::Histogram`].
    Histogram,
}

impl MetricType {
    /// The word on the exposition's `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Gauge => "gauge",
            MetricType::Counter => "counter",
            MetricType::Histogram => "histogram",
        }
    }

    /// The kind a scalar sample of this family carries.
    pub fn sample_kind(self) -> MetricKind {
        match self {
            MetricType::Counter => MetricKind::Counter,
            MetricType::Gauge | MetricType::Histogram => MetricKind::Gauge,
        }
    }
}

/// A metric's unit. Values are stored in the Datadog unit; `prometheus_scale` converts to the
/// Prometheus base unit (seconds, dollars, ratios 0–1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Managed jobs.
    Job,
    /// SkyPilot clusters.
    Cluster,
    /// Nodes of clusters.
    Node,
    /// Cloud instances (VMs or pods).
    Instance,
    /// GPUs.
    Gpu,
    /// A percentage 0–100.
    Percent,
    /// Minutes.
    Minute,
    /// Hours.
    Hour,
    /// Seconds.
    Second,
    /// US dollars.
    Dollar,
    /// US dollars per hour.
    DollarPerHour,
    /// A 0/1 flag.
    Boolean,
    /// Samples (data points).
    Sample,
    /// Countable occurrences (runs, requests, deliveries).
    Event,
    /// A Unix timestamp in seconds.
    Timestamp,
    /// Bytes.
    Byte,
    /// Watts.
    Watt,
    /// Degrees Celsius.
    Celsius,
}

impl Unit {
    /// The unit's name in Datadog's unit vocabulary (docs.datadoghq.com/metrics/units).
    pub fn datadog_name(self) -> &'static str {
        match self {
            Unit::Job => "job",
            // Datadog has no "cluster" unit; "resource" is its general-purpose equivalent.
            Unit::Cluster => "resource",
            Unit::Node => "node",
            Unit::Instance => "instance",
            Unit::Gpu => "device",
            Unit::Percent => "percent",
            Unit::Minute => "minute",
            Unit::Hour => "hour",
            Unit::Second => "second",
            Unit::Dollar | Unit::DollarPerHour => "dollar",
            Unit::Boolean => "unit",
            Unit::Sample => "sample",
            Unit::Event => "event",
            Unit::Timestamp => "second",
            Unit::Byte => "byte",
            Unit::Watt => "watt",
            Unit::Celsius => "degree celsius",
        }
    }

    /// Datadog's per-unit ("dollar per hour"), when the unit is a rate.
    pub fn datadog_per_unit(self) -> Option<&'static str> {
        match self {
            Unit::DollarPerHour => Some("hour"),
            _ => None,
        }
    }

    /// Factor from the stored value to the Prometheus base unit.
    pub fn prometheus_scale(self) -> f64 {
        match self {
            Unit::Percent => 0.01,
            Unit::Minute => 60.0,
            Unit::Hour => 3600.0,
            _ => 1.0,
        }
    }
}

/// One metric of the catalog.
#[derive(Debug)]
pub struct MetricDef {
    /// Dotted Datadog name, e.g. `skypilot.jobs.running`.
    pub name: &'static str,
    /// Prometheus name in base units, e.g. `skypilot_jobs_avg_duration_seconds`.
    pub prometheus: &'static str,
    /// Gauge, counter or histogram.
    pub kind: MetricType,
    /// Unit of the stored value.
    pub unit: Unit,
    /// One-line help text.
    pub help: &'static str,
    /// Tag keys the metric always carries (breakdown tags may be added on top).
    pub tags: &'static [&'static str],
}

macro_rules! catalog {
    ($($id:ident = $name:literal, $prom:literal, $kind:ident, $unit:ident, $tags:expr, $help:literal;)*) => {
        $(
            #[doc = $help]
            pub static $id: MetricDef = MetricDef {
                name: $name,
                prometheus: $prom,
                kind: MetricType::$kind,
                unit: Unit::$unit,
                help: $help,
                tags: $tags,
            };
        )*
        /// Every metric of the catalog, in display order.
        pub static ALL: &[&MetricDef] = &[$(&$id),*];
    };
}

const NONE: &[&str] = &[];
const STATUS: &[&str] = &["status"];
const COLLECTOR: &[&str] = &["collector"];
const COLLECTOR_RESULT: &[&str] = &["collector", "result"];
const CONTEXT: &[&str] = &["context"];
const CONTEXT_RESULT: &[&str] = &["context", "result"];
const REQUEST: &[&str] = &["request"];
const REQUEST_RESULT: &[&str] = &["request", "result"];
const SINK_RESULT: &[&str] = &["sink", "result"];
const RESULT: &[&str] = &["result"];
const NODE_GROUP: &[&str] = &["status", "provider", "gpu"];
const NODE_UPTIME: &[&str] = &["cluster_name", "provider", "gpu"];
const NODE_NAME: &[&str] = &["cluster_name"];
const NODE_ENGINE: &[&str] = &["cluster_name", "engine"];
const PROVIDER_GPU: &[&str] = &["provider", "gpu"];
const CLOUD: &[&str] = &["cloud"];
const GPU_SERIES: &[&str] = &[
    "cluster",
    "gpu",
    "modelName",
    "Hostname",
    "kubernetes_namespace",
    "pod",
];
const SOURCE: &[&str] = &["source"];
const IDLE_DECISION: &[&str] = &["action", "outcome"];
const AGENT_ENGINE: &[&str] = &["engine"];
const POOL: &[&str] = &["pool"];
const POOL_CAPACITY: &[&str] = &["pool", "capacity"];
const POOL_KIND: &[&str] = &["pool", "kind"];
const AGENT_GPU: &[&str] = &["gpu", "uuid"];

catalog! {
    JOBS_RUNNING = "skypilot.jobs.running", "skypilot_jobs_running", Gauge, Job, NONE,
        "Managed jobs whose status is RUNNING.";
    JOBS_QUEUED = "skypilot.jobs.queued", "skypilot_jobs_queued", Gauge, Job, NONE,
        "Managed jobs waiting to start (PENDING, SUBMITTED or STARTING).";
    JOBS_RECOVERING = "skypilot.jobs.recovering", "skypilot_jobs_recovering", Gauge, Job, NONE,
        "Managed jobs being recovered after a preemption or failure (RECOVERING).";
    JOBS_COUNT = "skypilot.jobs.count", "skypilot_jobs", Gauge, Job, STATUS,
        "Managed jobs per status.";
    JOBS_COMPLETED_7D = "skypilot.jobs.completed_7d", "skypilot_jobs_completed_7d", Gauge, Job, NONE,
        "Managed jobs that reached a terminal status in the last 7 days.";
    JOBS_SUCCEEDED_7D = "skypilot.jobs.succeeded_7d", "skypilot_jobs_succeeded_7d", Gauge, Job, NONE,
        "Managed jobs that succeeded in the last 7 days.";
    JOBS_FAILED_7D = "skypilot.jobs.failed_7d", "skypilot_jobs_failed_7d", Gauge, Job, NONE,
        "Managed jobs that failed (any FAILED status) in the last 7 days.";
    JOBS_CANCELLED_7D = "skypilot.jobs.cancelled_7d", "skypilot_jobs_cancelled_7d", Gauge, Job, NONE,
        "Managed jobs cancelled in the last 7 days.";
    JOBS_SUCCESS_RATE_7D = "skypilot.jobs.success_rate_7d", "skypilot_jobs_success_ratio_7d",
        Gauge, Percent, NONE,
        "Share of the last 7 days' succeeded and failed jobs that succeeded.";
    JOBS_AVG_DURATION = "skypilot.jobs.avg_duration_minutes", "skypilot_jobs_avg_duration_seconds",
        Gauge, Minute, NONE,
        "Mean running time of the jobs completed in the last 7 days that started.";
    JOBS_AVG_QUEUE_TIME = "skypilot.jobs.avg_queue_time_minutes",
        "skypilot_jobs_avg_queue_time_seconds", Gauge, Minute, NONE,
        "Mean time from submission to start of the jobs that started in the last 7 days.";
    JOBS_LONGEST_RUNNING = "skypilot.jobs.longest_running_hours",
        "skypilot_jobs_longest_running_seconds", Gauge, Hour, NONE,
        "Running time of the longest-running RUNNING job (0 when none runs).";
    CLUSTERS_ACTIVE = "skypilot.clusters.active", "skypilot_clusters_active", Gauge, Cluster, NONE,
        "Clusters (all users) whose status is UP.";
    CLUSTERS_COUNT = "skypilot.clusters.count", "skypilot_clusters", Gauge, Cluster, STATUS,
        "Clusters (all users) per status.";
    CLUSTERS_TOTAL_NODES = "skypilot.clusters.total_nodes", "skypilot_clusters_nodes", Gauge, Node, NONE,
        "Nodes of every cluster SkyPilot lists, whatever its status.";
    CLUSTERS_IDLE = "skypilot.clusters.idle", "skypilot_clusters_idle", Gauge, Cluster, NONE,
        "UP clusters whose job queue has no PENDING, SETTING_UP or RUNNING job.";
    CLUSTERS_QUEUE_UNREACHABLE = "skypilot.clusters.queue_unreachable",
        "skypilot_clusters_queue_unreachable", Gauge, Cluster, NONE,
        "UP clusters whose job queue could not be read, so idleness is unknown.";
    INSTANCES_RUNNING = "skypilot.instances.running", "skypilot_instances_running", Gauge, Instance, NONE,
        "Nodes of UP/AUTOSTOPPING clusters plus nodes of RUNNING managed jobs.";
    INSTANCES_SPOT = "skypilot.instances.spot", "skypilot_instances_spot", Gauge, Instance, NONE,
        "Running instances that are spot instances.";
    INSTANCES_ON_DEMAND = "skypilot.instances.on_demand", "skypilot_instances_on_demand",
        Gauge, Instance, NONE,
        "Running instances that are on-demand instances.";
    INSTANCES_PREEMPTED_7D = "skypilot.instances.preempted_7d", "skypilot_instances_preempted_7d",
        Gauge, Instance, NONE,
        "Recoveries (preemptions or failures) of the jobs submitted in the last 7 days.";
    GPUS_RUNNING = "skypilot.gpus.running", "skypilot_gpus_running", Gauge, Gpu, NONE,
        "Accelerators on the running instances.";
    COST_24H = "skypilot.compute.cost_24h", "skypilot_compute_cost_24h_dollars", Gauge, Dollar, NONE,
        "Compute cost accrued in the last 24 hours.";
    COST_7D = "skypilot.compute.cost_7d", "skypilot_compute_cost_7d_dollars", Gauge, Dollar, NONE,
        "Compute cost accrued in the last 7 days.";
    BURN_RATE = "skypilot.compute.burn_rate_hourly",
        "skypilot_compute_burn_rate_dollars_per_hour", Gauge, DollarPerHour, NONE,
        "Current spend per hour of the clusters that are running now.";
    ESTIMATED_MONTHLY = "skypilot.compute.estimated_monthly_cost",
        "skypilot_compute_estimated_monthly_cost_dollars", Gauge, Dollar, NONE,
        "30-day cost projected from the last 7 days.";
    COST_PER_JOB = "skypilot.compute.cost_per_job_avg", "skypilot_compute_cost_per_job_avg_dollars",
        Gauge, Dollar, NONE,
        "Mean cluster cost of the managed jobs completed in the last 7 days.";
    TRAINING_ACTIVE = "skypilot.training.runs_active", "skypilot_training_runs_active", Gauge, Job, NONE,
        "Training runs (jobs whose name matches the training pattern) that are RUNNING.";
    TRAINING_COMPLETED_7D = "skypilot.training.runs_completed_7d",
        "skypilot_training_runs_completed_7d", Gauge, Job, NONE,
        "Training runs that reached a terminal status in the last 7 days.";
    TRAINING_AVG_COST = "skypilot.training.avg_cost_per_run",
        "skypilot_training_avg_cost_per_run_dollars", Gauge, Dollar, NONE,
        "Mean cluster cost of the training runs completed in the last 7 days.";
    CLUSTERS_AVG_UTILIZATION = "skypilot.clusters.avg_utilization_percent",
        "skypilot_clusters_avg_utilization_ratio", Gauge, Percent, NONE,
        "Mean GPU utilization over the window of the GPUs matched to UP clusters (DCGM).";
    CLUSTERS_GPU_IDLE = "skypilot.clusters.gpu_idle", "skypilot_clusters_gpu_idle", Gauge,
        Cluster, NONE,
        "UP clusters whose every GPU stayed under the idle threshold for the whole window.";
    GPUS_IDLE = "skypilot.gpus.idle", "skypilot_gpus_idle", Gauge, Gpu, NONE,
        "GPUs of UP clusters that stayed under the idle threshold for the whole window.";
    IDLE_BURN_RATE = "skypilot.compute.idle_burn_rate_hourly",
        "skypilot_compute_idle_burn_rate_dollars_per_hour", Gauge, DollarPerHour, NONE,
        "Spend per hour of the GPU-idle clusters (from the cost report).";
    CLUSTERS_GPU_UNKNOWN = "skypilot.clusters.gpu_unknown", "skypilot_clusters_gpu_unknown",
        Gauge, Cluster, NONE,
        "UP clusters with GPUs whose utilization data is missing, stale or partial.";
    GPUS_UNMATCHED = "skypilot.gpus.unmatched", "skypilot_gpus_unmatched", Gauge, Gpu, NONE,
        "GPUs reporting utilization that match no SkyPilot cluster (counted, never guessed).";
    CLUSTERS_UNPRICED = "skypilot.clusters.unpriced", "skypilot_clusters_unpriced", Gauge,
        Cluster, CLOUD,
        "Running clusters the cost report gives no price (Kubernetes without kubernetes.pricing).";
    GPU_UTILIZATION = "skypilot.gpu.utilization", "skypilot_gpu_utilization_ratio", Gauge,
        Percent, GPU_SERIES,
        "One GPU's utilization (DCGM engine activity, else GPU util), forwarded per GPU.";
    GPU_MEMORY_USED = "skypilot.gpu.memory_used", "skypilot_gpu_memory_used_bytes", Gauge, Byte,
        GPU_SERIES,
        "One GPU's framebuffer memory in use (DCGM_FI_DEV_FB_USED), forwarded per GPU.";
    GPU_POWER = "skypilot.gpu.power", "skypilot_gpu_power_watts", Gauge, Watt, GPU_SERIES,
        "One GPU's power draw (DCGM_FI_DEV_POWER_USAGE), forwarded per GPU.";
    GPU_TEMPERATURE = "skypilot.gpu.temperature", "skypilot_gpu_temperature_celsius", Gauge,
        Celsius, GPU_SERIES,
        "One GPU's temperature (DCGM_FI_DEV_GPU_TEMP), forwarded per GPU.";
    GPU_XID = "skypilot.gpu.last_xid_error", "skypilot_gpu_last_xid_error", Gauge, Event,
        GPU_SERIES,
        "The last XID error code one GPU reported (DCGM_FI_DEV_XID_ERRORS; 0 for none).";
    GPU_SOURCE_UP = "skydeck.gpu.source_up", "skydeck_gpu_source_up", Gauge, Boolean, SOURCE,
        "1 when the last read of GPU utilization from this source (prometheus, scrape) worked.";
    GPU_SAMPLES_REJECTED = "skydeck.gpu.samples_rejected", "skydeck_gpu_samples_rejected",
        Gauge, Sample, SOURCE,
        "Utilization samples of the last read refused as NaN, infinite or out of range.";
    IDLE_DECISIONS = "skydeck.idle.decisions", "skydeck_idle_decisions_total", Counter, Event,
        IDLE_DECISION,
        "Idle-stop decisions by action (report, autostop, stop, down) and outcome.";
    COLLECTOR_UP = "skydeck.collector.up", "skydeck_collector_up", Gauge, Boolean, COLLECTOR,
        "1 when the collector's last run succeeded, 0 when it failed or timed out.";
    COLLECTOR_DURATION = "skydeck.collector.duration_seconds", "skydeck_collector_duration_seconds",
        Gauge, Second, COLLECTOR,
        "Wall time of the collector's last run.";
    COLLECTOR_SAMPLES = "skydeck.collector.samples", "skydeck_collector_samples", Gauge, Sample, COLLECTOR,
        "Samples the collector produced in its last run.";
    COLLECTOR_LAST_SUCCESS = "skydeck.collector.last_success_timestamp",
        "skydeck_collector_last_success_timestamp_seconds", Gauge, Timestamp, COLLECTOR,
        "Unix time of the collector's last successful run (serve).";
    COLLECTOR_RUNS = "skydeck.collector.runs", "skydeck_collector_runs_total", Counter, Event,
        COLLECTOR_RESULT,
        "Runs of the collector since serve started, by result (ok, failed).";
    SKYPILOT_REQUEST_UP = "skydeck.skypilot.request_up", "skydeck_skypilot_request_up", Gauge,
        Boolean, REQUEST,
        "1 when the last refresh of this SkyPilot request (status, jobs, cost) succeeded (serve).";
    SKYPILOT_REQUEST_LAST_SUCCESS = "skydeck.skypilot.request_last_success_timestamp",
        "skydeck_skypilot_request_last_success_timestamp_seconds", Gauge, Timestamp, REQUEST,
        "Unix time of the last good answer to this SkyPilot request, the one the metrics use.";
    SKYPILOT_REQUESTS = "skydeck.skypilot.requests", "skydeck_skypilot_requests_total", Counter,
        Event, REQUEST_RESULT,
        "Refreshes of this SkyPilot request sent by serve, by result (ok, failed).";
    DISCOVERY_CONTEXT_UP = "skydeck.discovery.context_up", "skydeck_discovery_context_up", Gauge,
        Boolean, CONTEXT,
        "1 when the Kubernetes context's last discovery refresh succeeded.";
    DISCOVERY_CONTEXT_STALE = "skydeck.discovery.context_stale", "skydeck_discovery_context_stale",
        Gauge, Boolean, CONTEXT,
        "1 while the context's targets are its last good list (its refreshes are failing).";
    DISCOVERY_TARGETS = "skydeck.discovery.targets", "skydeck_discovery_targets", Gauge,
        Instance, CONTEXT,
        "DCGM exporter endpoints the context currently lists in service discovery.";
    DISCOVERY_LAST_SUCCESS = "skydeck.discovery.last_success_timestamp",
        "skydeck_discovery_last_success_timestamp_seconds", Gauge, Timestamp, CONTEXT,
        "Unix time of the context's last successful discovery refresh.";
    DISCOVERY_REFRESH_DURATION = "skydeck.discovery.refresh_duration_seconds",
        "skydeck_discovery_refresh_duration_seconds", Gauge, Second, CONTEXT,
        "Wall time of the context's last discovery refresh.";
    PROXY_REQUESTS = "skydeck.proxy.requests", "skydeck_proxy_requests_total", Counter, Event,
        CONTEXT_RESULT,
        "Scrapes forwarded through a context's API server, by result.";
    SINK_POINTS = "skydeck.sink.points", "skydeck_sink_points_total", Counter, Sample,
        SINK_RESULT,
        "Points serve handed to a sink, by result (accepted, dropped).";
    SINK_DELIVERIES = "skydeck.sink.deliveries", "skydeck_sink_deliveries_total", Counter, Event,
        SINK_RESULT,
        "Deliveries serve made to a sink after a collection, by result (ok, partial, failed).";
    CONTROL_LAUNCHES = "skydeck.control.launches", "skydeck_control_launches_total", Counter,
        Event, RESULT,
        "Launches that finished, by result (succeeded: the cluster came up).";
    CONTROL_LAUNCH_DURATION = "skydeck.control.launch_duration_seconds",
        "skydeck_control_launch_duration_seconds", Histogram, Second, NONE,
        "Time from submitting the SkyPilot launch to the cluster being up.";
    CONTROL_NODES = "skydeck.control.nodes", "skydeck_control_nodes", Gauge, Node, NODE_GROUP,
        "Nodes by lifecycle status, provider and GPU.";
    CONTROL_NODE_UPTIME = "skydeck.control.node_uptime_seconds",
        "skydeck_control_node_uptime_seconds", Gauge, Second, NODE_UPTIME,
        "Seconds since the node's agent first registered, for active and unhealthy nodes.";
    CONTROL_HEARTBEAT_AGE = "skydeck.control.heartbeat_age_seconds",
        "skydeck_control_heartbeat_age_seconds", Gauge, Second, NODE_NAME,
        "Seconds since the node's last heartbeat, for active and unhealthy nodes.";
    CONTROL_ACTIVE_SPEND = "skydeck.control.active_spend_hourly",
        "skydeck_control_active_spend_usd_per_hour", Gauge, DollarPerHour, PROVIDER_GPU,
        "Summed hourly price of active nodes (from SkyPilot's cost report), by provider and GPU.";
    CONTROL_UNMANAGED = "skydeck.control.unmanaged_clusters", "skydeck_control_unmanaged_clusters",
        Gauge, Cluster, NONE,
        "Clusters with skydeck's name prefix that SkyPilot has and the node table does not.";
    CONTROL_LEADER = "skydeck.control.reconciler_leader", "skydeck_control_reconciler_leader",
        Gauge, Boolean, NONE,
        "1 on the replica that holds the reconciler lease.";
    CONTROL_ENGINE_UP = "skydeck.control.engine_up", "skydeck_control_engine_up", Gauge, Boolean,
        NODE_ENGINE,
        "1 when the node's latest heartbeat reports its engine healthy, for live nodes.";
    CONTROL_ENGINE_REQUESTS_RUNNING = "skydeck.control.engine_requests_running",
        "skydeck_control_engine_requests_running", Gauge, Event, NODE_ENGINE,
        "Requests the node's engine was serving at its latest heartbeat.";
    CONTROL_ENGINE_REQUESTS_WAITING = "skydeck.control.engine_requests_waiting",
        "skydeck_control_engine_requests_waiting", Gauge, Event, NODE_ENGINE,
        "Requests queued in the node's engine at its latest heartbeat.";
    CONTROL_ENGINE_GENERATION_TOKENS = "skydeck.control.engine_generation_tokens",
        "skydeck_control_engine_generation_tokens_total", Counter, Event, NODE_ENGINE,
        "Tokens the node's engine generated since it started, at its latest heartbeat.";
    CONTROL_NODE_GPU_UTILIZATION = "skydeck.control.node_gpu_utilization",
        "skydeck_control_node_gpu_utilization_ratio", Gauge, Percent, NODE_ENGINE,
        "Mean GPU utilization of the node's GPUs at its latest heartbeat.";
    CONTROL_NODE_GPU_MEMORY_USED = "skydeck.control.node_gpu_memory_used",
        "skydeck_control_node_gpu_memory_used_bytes", Gauge, Byte, NODE_ENGINE,
        "GPU memory in use on the node, summed over its GPUs, at its latest heartbeat.";
    CONTROL_POOL_NODES = "skydeck.control.pool_nodes", "skydeck_control_pool_nodes", Gauge, Node,
        POOL_CAPACITY,
        "Nodes counting toward the pool's size (not draining or ended), by capacity (spot, on_demand).";
    CONTROL_POOL_STOPPED = "skydeck.control.pool_stopped_nodes", "skydeck_control_pool_stopped_nodes",
        Gauge, Node, POOL,
        "The pool's warm nodes: stopped in SkyPilot, started again before any new launch.";
    CONTROL_POOL_STOPPED_DISK = "skydeck.control.pool_stopped_disk", "skydeck_control_pool_stopped_disk_bytes",
        Gauge, Byte, POOL,
        "Disk the pool's stopped nodes keep (billed while stopped; no price is known to skydeck).";
    CONTROL_POOL_DESIRED = "skydeck.control.pool_desired", "skydeck_control_pool_desired_nodes",
        Gauge, Node, POOL,
        "The size the pool controller aims at.";
    CONTROL_POOL_MIN = "skydeck.control.pool_min", "skydeck_control_pool_min_nodes", Gauge, Node,
        POOL,
        "The pool's lower bound (min_nodes).";
    CONTROL_POOL_MAX = "skydeck.control.pool_max", "skydeck_control_pool_max_nodes", Gauge, Node,
        POOL,
        "The pool's upper bound (max_nodes).";
    CONTROL_POOL_WAITING = "skydeck.control.pool_waiting_per_node",
        "skydeck_control_pool_waiting_requests_per_node", Gauge, Event, POOL,
        "Mean requests waiting per active node of the pool at its last decision.";
    CONTROL_POOL_ON_DEMAND = "skydeck.control.pool_on_demand_mode",
        "skydeck_control_pool_on_demand_mode", Gauge, Boolean, POOL,
        "1 while the pool launches on-demand capacity after too many spot losses.";
    CONTROL_POOL_DECISIONS = "skydeck.control.pool_decisions", "skydeck_control_pool_decisions_total",
        Counter, Event, POOL_KIND,
        "The pool controller's recorded decisions, by kind (scale_up, replace, failover, …).";
    CONTROL_POOL_PREEMPTIONS = "skydeck.control.pool_preemptions",
        "skydeck_control_pool_preemptions_total", Counter, Event, POOL,
        "Spot nodes of the pool lost to preemption (gone, or reported not UP, without being asked).";
    CONTROL_POOL_REPLACE_DURATION = "skydeck.control.pool_replace_seconds",
        "skydeck_control_pool_replace_seconds", Histogram, Second, POOL,
        "Time from finding a pool's node lost to a replacement being active.";
    CONTROL_POOL_SCALE_UP_DURATION = "skydeck.control.pool_scale_up_seconds",
        "skydeck_control_pool_scale_up_seconds", Histogram, Second, POOL,
        "Time from a scale-up decision to the node it asked for being active.";
    AGENT_ENGINE_UP = "skydeck.agent.engine_up", "skydeck_agent_engine_up", Gauge, Boolean,
        AGENT_ENGINE,
        "1 when the node's inference engine answered its health check at the last look (agent).";
    AGENT_REQUESTS_RUNNING = "skydeck.agent.requests_running", "skydeck_agent_requests_running",
        Gauge, Event, AGENT_ENGINE,
        "Requests the engine is serving now, as the last heartbeat reported (agent).";
    AGENT_REQUESTS_WAITING = "skydeck.agent.requests_waiting", "skydeck_agent_requests_waiting",
        Gauge, Event, AGENT_ENGINE,
        "Requests queued in the engine, as the last heartbeat reported (agent).";
    AGENT_GENERATION_TOKENS = "skydeck.agent.generation_tokens",
        "skydeck_agent_generation_tokens_total", Counter, Event, AGENT_ENGINE,
        "Tokens the engine generated since it started (agent).";
    AGENT_PROMPT_TOKENS = "skydeck.agent.prompt_tokens", "skydeck_agent_prompt_tokens_total",
        Counter, Event, AGENT_ENGINE,
        "Prompt tokens the engine processed since it started (agent).";
    AGENT_GPU_UTILIZATION = "skydeck.agent.gpu_utilization", "skydeck_agent_gpu_utilization_ratio",
        Gauge, Percent, AGENT_GPU,
        "One GPU's utilization from NVML on the node (agent).";
    AGENT_GPU_MEMORY_USED = "skydeck.agent.gpu_memory_used", "skydeck_agent_gpu_memory_used_bytes",
        Gauge, Byte, AGENT_GPU,
        "One GPU's memory in use from NVML on the node (agent).";
    AGENT_GPU_MEMORY_TOTAL = "skydeck.agent.gpu_memory_total",
        "skydeck_agent_gpu_memory_total_bytes", Gauge, Byte, AGENT_GPU,
        "One GPU's total memory from NVML on the node (agent).";
    AGENT_GPU_TEMPERATURE = "skydeck.agent.gpu_temperature",
        "skydeck_agent_gpu_temperature_celsius", Gauge, Celsius, AGENT_GPU,
        "One GPU's temperature from NVML on the node (agent).";
    AGENT_GPU_POWER = "skydeck.agent.gpu_power", "skydeck_agent_gpu_power_watts", Gauge, Watt,
        AGENT_GPU,
        "One GPU's power draw from NVML on the node (agent).";
    AGENT_REPORTS = "skydeck.agent.reports", "skydeck_agent_reports_total", Counter, Event,
        RESULT,
        "Registrations and heartbeats the agent sent, by result (ok, failed).";
    AGENT_LAST_REPORT = "skydeck.agent.last_report_timestamp",
        "skydeck_agent_last_report_timestamp_seconds", Gauge, Timestamp, NONE,
        "Unix time of the agent's last report the control plane accepted.";
    AGENT_DRAINING = "skydeck.agent.draining", "skydeck_agent_draining", Gauge, Boolean, NONE,
        "1 while the agent drains its node (told to, or SIGTERM), until it exits.";
}

/// The catalog entry with this Prometheus name.
pub fn find_prometheus(name: &str) -> Option<&'static MetricDef> {
    ALL.iter().copied().find(|d| d.prometheus == name)
}

/// The catalog entry with this Datadog name.
pub fn find(name: &str) -> Option<&'static MetricDef> {
    ALL.iter().copied().find(|d| d.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_well_formed() {
        let mut dd = HashSet::new();
        let mut prom = HashSet::new();
        for d in ALL {
            assert!(dd.insert(d.name), "duplicate Datadog name {}", d.name);
            assert!(
                prom.insert(d.prometheus),
                "duplicate Prometheus name {}",
                d.prometheus
            );
            assert!(
                d.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._".contains(c)),
                "{}",
                d.name
            );
            assert!(
                d.prometheus
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                d.prometheus
            );
            // Prometheus conventions: `_total` exactly on counters, no `_count` suffix (it
            // belongs to histograms' own series), base units only.
            assert!(!d.prometheus.ends_with("_count"));
            assert_eq!(
                d.prometheus.ends_with("_total"),
                d.kind == MetricType::Counter,
                "{}",
                d.prometheus
            );
            if d.unit == Unit::Timestamp {
                assert!(
                    d.prometheus.ends_with("_timestamp_seconds"),
                    "{}",
                    d.prometheus
                );
            }
            for bad in ["_minutes", "_hours", "_percent", "_ms"] {
                assert!(
                    !d.prometheus.contains(bad),
                    "{} is not in base units",
                    d.prometheus
                );
            }
            assert!(d.help.ends_with('.'));
        }
    }

    #[test]
    fn seed_names_are_kept() {
        // Seed 001 dashboards and monitors query these names: they must never change.
        for name in [
            "skypilot.jobs.running",
            "skypilot.jobs.queued",
            "skypilot.jobs.completed_7d",
            "skypilot.jobs.failed_7d",
            "skypilot.jobs.success_rate_7d",
            "skypilot.jobs.avg_duration_minutes",
            "skypilot.jobs.avg_queue_time_minutes",
            "skypilot.jobs.longest_running_hours",
            "skypilot.clusters.active",
            "skypilot.clusters.idle",
            "skypilot.clusters.total_nodes",
            "skypilot.compute.cost_7d",
            "skypilot.compute.cost_24h",
            "skypilot.compute.cost_per_job_avg",
            "skypilot.compute.estimated_monthly_cost",
            "skypilot.instances.running",
            "skypilot.instances.spot",
            "skypilot.instances.on_demand",
            "skypilot.instances.preempted_7d",
            "skypilot.training.runs_active",
            "skypilot.training.runs_completed_7d",
            "skypilot.training.avg_cost_per_run",
        ] {
            assert!(find(name).is_some(), "{name} missing from the catalog");
        }
    }
}
