//! The metric definitions of the SkyPilot collector, as pure functions of the three server
//! responses and the run's start T. No IO here, so every definition is unit-testable.
//!
//! A managed job is all task rows with the same `job_id`. Its status is that of its lowest
//! `task_id` not SUCCEEDED (SUCCEEDED when all are); `submitted_at` is the minimum, `start_at`
//! the earliest non-null, `end_at` the latest (only for terminal jobs), `job_duration` and
//! `recovery_count` sum over its tasks.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::Timestamp;
use regex::Regex;
use skydeck_core::{MetricDef, Sample, Tags, catalog as c};
use skydeck_skypilot::api::{
    ClusterRecord, ClusterStatus, CostRecord, ManagedJobRecord, ManagedJobStatus, is_spot,
    leading_node_count, parse_accelerators,
};

use super::names::managed_job_cluster_name;

/// Seconds in 7 days.
const DAYS_7: f64 = 7.0 * 86400.0;
/// Seconds in 24 hours.
const HOURS_24: f64 = 86400.0;

/// A tag that can split counts and costs (`--breakdown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BreakdownKey {
    /// Cloud (`AWS`, `GCP`, `Kubernetes`, …).
    Cloud,
    /// Region (Kubernetes: context).
    Region,
    /// SkyPilot workspace.
    Workspace,
    /// Owner's user name.
    User,
    /// Accelerator name (`H100`; `none` for CPU-only).
    Accelerator,
}

impl BreakdownKey {
    /// Every key.
    pub const ALL: [BreakdownKey; 5] = [
        BreakdownKey::Cloud,
        BreakdownKey::Region,
        BreakdownKey::Workspace,
        BreakdownKey::User,
        BreakdownKey::Accelerator,
    ];

    /// The tag name.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakdownKey::Cloud => "cloud",
            BreakdownKey::Region => "region",
            BreakdownKey::Workspace => "workspace",
            BreakdownKey::User => "user",
            BreakdownKey::Accelerator => "accelerator",
        }
    }

    /// Parses a tag name; the error lists the valid ones.
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s.trim())
            .ok_or_else(|| {
                format!(
                    "unknown breakdown tag {s:?}; expected one of cloud, region, workspace, user, \
                     accelerator"
                )
            })
    }
}

/// Options of the computation.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Tags that split counts and costs.
    pub breakdown: Vec<BreakdownKey>,
    /// Values kept per breakdown tag; the rest become `other`.
    pub breakdown_top: usize,
    /// Job names matching this are training runs.
    pub training_pattern: Regex,
}

/// The default training-run pattern.
pub const DEFAULT_TRAINING_PATTERN: &str =
    r"(?i)train|finetune|fine-tune|sft|pretrain|grpo|dpo|ppo|rlhf|-ft";

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            breakdown: Vec::new(),
            breakdown_top: 10,
            training_pattern: Regex::new(DEFAULT_TRAINING_PATTERN).expect("valid pattern"),
        }
    }
}

/// Results of the opt-in per-cluster queue probe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueProbe {
    /// UP clusters with no PENDING, SETTING_UP or RUNNING job.
    pub idle: usize,
    /// UP clusters whose queue could not be read.
    pub unreachable: usize,
}

/// Breakdown tag values of one entity, before top-N capping.
#[derive(Debug, Clone, Default)]
struct Dims([String; 5]);

impl Dims {
    fn new(
        cloud: Option<&str>,
        region: Option<&str>,
        workspace: Option<&str>,
        user: Option<&str>,
        accelerator: Option<&str>,
    ) -> Self {
        Dims([cloud, region, workspace, user, accelerator].map(norm))
    }

    fn get(&self, k: BreakdownKey) -> &str {
        &self.0[k as usize]
    }
}

/// Missing, `-` (never launched) and `None` (CPU-only) all become `none`.
fn norm(v: Option<&str>) -> String {
    match v.map(str::trim) {
        None | Some("") | Some("-") | Some("None") | Some("null") => "none".to_string(),
        Some(v) => v.to_string(),
    }
}

/// A managed job: its task rows folded together.
#[derive(Debug)]
struct Job<'a> {
    id: i64,
    name: &'a str,
    status: ManagedJobStatus,
    submitted_at: Option<f64>,
    start_at: Option<f64>,
    end_at: Option<f64>,
    duration: f64,
    recovery_count: u64,
    tasks: Vec<&'a ManagedJobRecord>,
    dims: Dims,
}

fn fold_jobs(rows: &[ManagedJobRecord]) -> Vec<Job<'_>> {
    let mut by_id: BTreeMap<i64, Vec<&ManagedJobRecord>> = BTreeMap::new();
    for r in rows {
        by_id.entry(r.job_id).or_default().push(r);
    }
    by_id
        .into_iter()
        .map(|(id, mut tasks)| {
            tasks.sort_by_key(|t| t.task_id.unwrap_or(0));
            let status = tasks
                .iter()
                .find(|t| t.status != ManagedJobStatus::Succeeded)
                .map_or(ManagedJobStatus::Succeeded, |t| t.status);
            let min = |it: &mut dyn Iterator<Item = f64>| it.reduce(f64::min);
            let submitted_at = min(&mut tasks.iter().filter_map(|t| t.submitted_at));
            let start_at = min(&mut tasks.iter().filter_map(|t| t.start_at));
            let end_at = if status.is_terminal() {
                tasks.iter().filter_map(|t| t.end_at).reduce(f64::max)
            } else {
                None
            };
            let first = tasks[0];
            let name = first
                .job_name
                .as_deref()
                .or(first.task_name.as_deref())
                .unwrap_or("");
            // Where the job runs: the task that is running, else the first one that launched.
            let placed = tasks
                .iter()
                .find(|t| t.status == ManagedJobStatus::Running)
                .or_else(|| tasks.iter().find(|t| norm(t.cloud.as_deref()) != "none"))
                .copied()
                .unwrap_or(first);
            let accelerator = placed
                .accelerators
                .as_ref()
                .and_then(|a| a.keys().next().cloned());
            let dims = Dims::new(
                placed.cloud.as_deref(),
                placed.region.as_deref(),
                first.workspace.as_deref(),
                first.user_name.as_deref(),
                accelerator.as_deref(),
            );
            Job {
                id,
                name,
                status,
                submitted_at,
                start_at,
                end_at,
                duration: tasks.iter().filter_map(|t| t.job_duration).sum(),
                recovery_count: tasks
                    .iter()
                    .filter_map(|t| t.recovery_count)
                    .map(u64::from)
                    .sum(),
                tasks,
                dims,
            }
        })
        .collect()
}

/// Breakdown dimensions of a `/status` or `/cost_report` record, which name them alike (the
/// accelerators as a Python dict repr).
fn record_dims(
    cloud: Option<&str>,
    region: Option<&str>,
    workspace: Option<&str>,
    user: Option<&str>,
    accelerators: Option<&str>,
) -> Dims {
    let acc = accelerators
        .map(parse_accelerators)
        .and_then(|a| a.into_iter().next().map(|(n, _)| n));
    Dims::new(cloud, region, workspace, user, acc.as_deref())
}

fn cluster_dims(r: &ClusterRecord) -> Dims {
    record_dims(
        r.cloud.as_deref(),
        r.region.as_deref(),
        r.workspace.as_deref(),
        r.user_name.as_deref(),
        r.accelerators.as_deref(),
    )
}

fn cost_dims(r: &CostRecord) -> Dims {
    record_dims(
        r.cloud.as_deref(),
        r.region.as_deref(),
        r.workspace.as_deref(),
        r.user_name.as_deref(),
        r.accelerators.as_deref(),
    )
}

/// Maps entity dimensions to capped tag sets.
struct Breakdown {
    keys: Vec<BreakdownKey>,
    top: HashMap<BreakdownKey, BTreeSet<String>>,
}

impl Breakdown {
    /// Keeps, per key, the `n` most frequent values over every entity of the run, so one value
    /// is named (or `other`) consistently across all metrics.
    fn new(keys: &[BreakdownKey], n: usize, all: &[&Dims]) -> Self {
        let mut top = HashMap::new();
        for &k in keys {
            let mut freq: HashMap<&str, usize> = HashMap::new();
            for d in all {
                *freq.entry(d.get(k)).or_default() += 1;
            }
            let mut ranked: Vec<(&str, usize)> = freq.into_iter().collect();
            // Most frequent first; ties by name, so the choice is stable run to run.
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            top.insert(
                k,
                ranked
                    .into_iter()
                    .take(n)
                    .map(|(v, _)| v.to_string())
                    .collect(),
            );
        }
        let mut keys = keys.to_vec();
        keys.sort();
        keys.dedup();
        Breakdown { keys, top }
    }

    fn tags(&self, d: &Dims) -> Tags {
        self.keys
            .iter()
            .map(|&k| {
                let v = d.get(k);
                let v = if self.top[&k].contains(v) { v } else { "other" };
                (k.as_str().to_string(), v.to_string())
            })
            .collect()
    }
}

/// Per-tag-set accumulator of one metric. Every tag set of the entity family starts at 0, so
/// a series that drops to zero is reported as 0, not as missing.
struct Series {
    def: &'static MetricDef,
    values: BTreeMap<Tags, f64>,
}

impl Series {
    fn new(def: &'static MetricDef, tag_sets: &BTreeSet<Tags>) -> Self {
        Series {
            def,
            values: tag_sets.iter().map(|t| (t.clone(), 0.0)).collect(),
        }
    }

    fn add(&mut self, tags: &Tags, v: f64) {
        *self.values.entry(tags.clone()).or_insert(0.0) += v;
    }

    fn emit(self, at: Timestamp, out: &mut Vec<Sample>) {
        for (tags, v) in self.values {
            out.push(Sample::of(self.def, v, at).tags(tags));
        }
    }
}

/// Computes every SkyPilot metric at `t` (the run's start).
pub fn compute(
    clusters: &[ClusterRecord],
    job_rows: &[ManagedJobRecord],
    costs: &[CostRecord],
    queues: Option<QueueProbe>,
    at: Timestamp,
    opts: &FleetOptions,
) -> Vec<Sample> {
    let t = at.as_second() as f64;
    let w7 = t - DAYS_7;
    let w1 = t - HOURS_24;
    let jobs = fold_jobs(job_rows);
    let cdims: Vec<Dims> = clusters.iter().map(cluster_dims).collect();
    let kdims: Vec<Dims> = costs.iter().map(cost_dims).collect();

    let all: Vec<&Dims> = jobs
        .iter()
        .map(|j| &j.dims)
        .chain(cdims.iter())
        .chain(kdims.iter())
        .collect();
    let bd = Breakdown::new(&opts.breakdown, opts.breakdown_top, &all);
    let family = |dims: &mut dyn Iterator<Item = &Dims>| -> BTreeSet<Tags> {
        let mut s: BTreeSet<Tags> = dims.map(|d| bd.tags(d)).collect();
        if s.is_empty() {
            s.insert(bd.tags(&Dims::default().with_none()));
        }
        s
    };
    let job_sets = family(&mut jobs.iter().map(|j| &j.dims));
    let cluster_sets = family(&mut cdims.iter());
    let cost_sets = family(&mut kdims.iter());
    let running_jobs: Vec<&Job> = jobs
        .iter()
        .filter(|j| j.status == ManagedJobStatus::Running)
        .collect();
    let instance_sets = family(
        &mut cdims
            .iter()
            .zip(clusters)
            .filter(|(_, c)| is_running_cluster(c))
            .map(|(d, _)| d)
            .chain(running_jobs.iter().map(|j| &j.dims)),
    );

    let mut out = Vec::new();

    // --- jobs -------------------------------------------------------------------------------
    let mut running = Series::new(&c::JOBS_RUNNING, &job_sets);
    let mut queued = Series::new(&c::JOBS_QUEUED, &job_sets);
    let mut recovering = Series::new(&c::JOBS_RECOVERING, &job_sets);
    let mut completed = Series::new(&c::JOBS_COMPLETED_7D, &job_sets);
    let mut succeeded = Series::new(&c::JOBS_SUCCEEDED_7D, &job_sets);
    let mut failed = Series::new(&c::JOBS_FAILED_7D, &job_sets);
    let mut cancelled = Series::new(&c::JOBS_CANCELLED_7D, &job_sets);
    let mut preempted = Series::new(&c::INSTANCES_PREEMPTED_7D, &job_sets);
    let mut t_active = Series::new(&c::TRAINING_ACTIVE, &job_sets);
    let mut t_completed = Series::new(&c::TRAINING_COMPLETED_7D, &job_sets);
    let status_sets: BTreeSet<Tags> = ManagedJobStatus::ALL
        .iter()
        .chain(
            jobs.iter()
                .map(|j| &j.status)
                .filter(|s| **s == ManagedJobStatus::Other),
        )
        .flat_map(|s| {
            job_sets.iter().map(move |tags| {
                let mut tags = tags.clone();
                tags.insert("status".into(), s.as_str().into());
                tags
            })
        })
        .collect();
    let mut count = Series::new(&c::JOBS_COUNT, &status_sets);

    let (mut n_succ, mut n_fail) = (0.0, 0.0);
    let mut durations = Vec::new();
    let mut queue_times = Vec::new();
    let mut longest: f64 = 0.0;
    let is_training = |j: &Job| opts.training_pattern.is_match(j.name);
    for j in &jobs {
        let tags = bd.tags(&j.dims);
        let training = is_training(j);
        let mut with_status = tags.clone();
        with_status.insert("status".into(), j.status.as_str().into());
        count.add(&with_status, 1.0);
        match j.status {
            ManagedJobStatus::Running => {
                running.add(&tags, 1.0);
                longest = longest.max(j.duration / 3600.0);
                if training {
                    t_active.add(&tags, 1.0);
                }
            }
            ManagedJobStatus::Pending
            | ManagedJobStatus::Submitted
            | ManagedJobStatus::Starting => queued.add(&tags, 1.0),
            ManagedJobStatus::Recovering => recovering.add(&tags, 1.0),
            _ => {}
        }
        if is_completed_7d(j, w7) {
            completed.add(&tags, 1.0);
            if training {
                t_completed.add(&tags, 1.0);
            }
            match j.status {
                ManagedJobStatus::Succeeded => {
                    succeeded.add(&tags, 1.0);
                    n_succ += 1.0;
                }
                ManagedJobStatus::Cancelled => cancelled.add(&tags, 1.0),
                s if s.is_failed() => {
                    failed.add(&tags, 1.0);
                    n_fail += 1.0;
                }
                _ => {}
            }
            if j.start_at.is_some() {
                durations.push(j.duration / 60.0);
            }
        }
        if let (Some(start), Some(sub)) = (j.start_at, j.submitted_at)
            && start >= w7
        {
            queue_times.push((start - sub) / 60.0);
        }
        if j.submitted_at.is_some_and(|s| s >= w7) {
            preempted.add(&tags, j.recovery_count as f64);
        }
    }
    for s in [running, queued, recovering] {
        s.emit(at, &mut out);
    }
    count.emit(at, &mut out);
    for s in [completed, succeeded, failed, cancelled] {
        s.emit(at, &mut out);
    }
    if n_succ + n_fail > 0.0 {
        out.push(Sample::of(
            &c::JOBS_SUCCESS_RATE_7D,
            100.0 * n_succ / (n_succ + n_fail),
            at,
        ));
    }
    if let Some(m) = mean(&durations) {
        out.push(Sample::of(&c::JOBS_AVG_DURATION, m, at));
    }
    if let Some(m) = mean(&queue_times) {
        out.push(Sample::of(&c::JOBS_AVG_QUEUE_TIME, m, at));
    }
    out.push(Sample::of(&c::JOBS_LONGEST_RUNNING, longest, at));

    // --- clusters ---------------------------------------------------------------------------
    let mut active = Series::new(&c::CLUSTERS_ACTIVE, &cluster_sets);
    let mut nodes = Series::new(&c::CLUSTERS_TOTAL_NODES, &cluster_sets);
    let cstatus_sets: BTreeSet<Tags> = ClusterStatus::ALL
        .iter()
        .chain(
            clusters
                .iter()
                .map(|c| &c.status)
                .filter(|s| **s == ClusterStatus::Other),
        )
        .flat_map(|s| {
            cluster_sets.iter().map(move |tags| {
                let mut tags = tags.clone();
                tags.insert("status".into(), s.as_str().into());
                tags
            })
        })
        .collect();
    let mut ccount = Series::new(&c::CLUSTERS_COUNT, &cstatus_sets);
    let mut inst = Series::new(&c::INSTANCES_RUNNING, &instance_sets);
    let mut spot = Series::new(&c::INSTANCES_SPOT, &instance_sets);
    let mut on_demand = Series::new(&c::INSTANCES_ON_DEMAND, &instance_sets);
    let mut gpus = Series::new(&c::GPUS_RUNNING, &instance_sets);
    for (cl, d) in clusters.iter().zip(&cdims) {
        let tags = bd.tags(d);
        let mut with_status = tags.clone();
        with_status.insert("status".into(), cl.status.as_str().into());
        ccount.add(&with_status, 1.0);
        if cl.status == ClusterStatus::Up {
            active.add(&tags, 1.0);
        }
        nodes.add(&tags, cl.nodes.unwrap_or(0) as f64);
        if is_running_cluster(cl) {
            let resources = cl.resources_str.as_deref().unwrap_or("");
            let n = cl
                .nodes
                .or_else(|| leading_node_count(resources))
                .unwrap_or(1) as f64;
            inst.add(&tags, n);
            if is_spot(resources) {
                spot.add(&tags, n);
            } else {
                on_demand.add(&tags, n);
            }
            gpus.add(&tags, cl.gpus_per_node() * n);
        }
    }
    for j in &running_jobs {
        let tags = bd.tags(&j.dims);
        // A job's clusters are not in /status: count its running task rows' clusters.
        for task in j
            .tasks
            .iter()
            .filter(|t| t.status == ManagedJobStatus::Running)
        {
            let cr = task.cluster_resources.as_deref().unwrap_or("-");
            let req = task.resources.as_deref().unwrap_or("");
            let n = leading_node_count(cr)
                .or_else(|| leading_node_count(req))
                .unwrap_or(1) as f64;
            inst.add(&tags, n);
            if is_spot(cr) || (leading_node_count(cr).is_none() && is_spot(req)) {
                spot.add(&tags, n);
            } else {
                on_demand.add(&tags, n);
            }
            let per_node: f64 = task.accelerators.iter().flat_map(|a| a.values()).sum();
            gpus.add(&tags, per_node * n);
        }
    }
    active.emit(at, &mut out);
    ccount.emit(at, &mut out);
    nodes.emit(at, &mut out);
    if let Some(q) = queues {
        out.push(Sample::of(&c::CLUSTERS_IDLE, q.idle as f64, at));
        out.push(Sample::of(
            &c::CLUSTERS_QUEUE_UNREACHABLE,
            q.unreachable as f64,
            at,
        ));
    }
    for s in [inst, spot, on_demand, gpus] {
        s.emit(at, &mut out);
    }
    preempted.emit(at, &mut out);

    // --- cost -------------------------------------------------------------------------------
    let mut cost24 = Series::new(&c::COST_24H, &cost_sets);
    let mut cost7 = Series::new(&c::COST_7D, &cost_sets);
    let mut burn = Series::new(&c::BURN_RATE, &cost_sets);
    let mut monthly = Series::new(&c::ESTIMATED_MONTHLY, &cost_sets);
    let mut cost_by_name: HashMap<&str, f64> = HashMap::new();
    for (r, d) in costs.iter().zip(&kdims) {
        let tags = bd.tags(d);
        let total = r.total_cost.unwrap_or(0.0);
        *cost_by_name.entry(r.name.as_str()).or_default() += total;
        let duration = r.duration.unwrap_or(0.0);
        if duration <= 0.0 {
            continue;
        }
        let intervals = r.usage_intervals.as_deref().unwrap_or(&[]);
        let c7 = total * overlap(intervals, w7, t) / duration;
        cost7.add(&tags, c7);
        monthly.add(&tags, c7 / 7.0 * 30.0);
        cost24.add(&tags, total * overlap(intervals, w1, t) / duration);
        if r.is_running() {
            burn.add(&tags, r.hourly_cost().unwrap_or(0.0));
        }
    }
    for s in [cost24, cost7, burn, monthly] {
        s.emit(at, &mut out);
    }
    let job_cost = |j: &Job| -> Option<f64> {
        let names: BTreeSet<String> = j
            .tasks
            .iter()
            .map(|t| {
                let task = t
                    .task_name
                    .as_deref()
                    .or(t.job_name.as_deref())
                    .unwrap_or("");
                managed_job_cluster_name(task, j.id)
            })
            .collect();
        let found: Vec<f64> = names
            .iter()
            .filter_map(|n| cost_by_name.get(n.as_str()).copied())
            .collect();
        (!found.is_empty()).then(|| found.iter().sum())
    };
    let completed_costs: Vec<(bool, f64)> = jobs
        .iter()
        .filter(|j| is_completed_7d(j, w7))
        .filter_map(|j| job_cost(j).map(|c| (is_training(j), c)))
        .collect();
    let all_costs: Vec<f64> = completed_costs.iter().map(|(_, c)| *c).collect();
    if let Some(m) = mean(&all_costs) {
        out.push(Sample::of(&c::COST_PER_JOB, m, at));
    }

    unpriced(clusters, &cdims, costs, &kdims, &bd, opts).emit(at, &mut out);

    // --- training ---------------------------------------------------------------------------
    t_active.emit(at, &mut out);
    t_completed.emit(at, &mut out);
    let training_costs: Vec<f64> = completed_costs
        .iter()
        .filter(|(tr, _)| *tr)
        .map(|(_, c)| *c)
        .collect();
    if let Some(m) = mean(&training_costs) {
        out.push(Sample::of(&c::TRAINING_AVG_COST, m, at));
    }
    out
}

impl Dims {
    fn with_none(mut self) -> Self {
        for v in &mut self.0 {
            *v = "none".into();
        }
        self
    }
}

/// `skypilot.clusters.unpriced`: the running clusters whose cost SkyPilot does not know, by
/// cloud.
///
/// Running means incurring cost by SkyPilot's own account: UP or AUTOSTOPPING in `/status`
/// (the clusters `instances.running` counts), or a cost-report row with an open usage interval
/// (which adds the managed-job clusters `/status` hides and clusters still provisioning in
/// INIT: exactly the rows `burn_rate_hourly` sums). Such a cluster is unpriced when the cost
/// report has no row for it, or its row has no positive `total_cost` although it has run
/// (`duration` > 0 or missing): SkyPilot 0.14.1 prices a Kubernetes or Slurm cluster from
/// `kubernetes.pricing` / `slurm.pricing` in its config and reports `0.0` without it (also for
/// an accelerator the pricing does not list); the cost metrics then silently sum zeros, and
/// this count says how many clusters those zeros stand for. A row with `duration` 0 (just
/// launched) cannot be judged and is not counted.
///
/// One series per cloud that has any cluster in `/status` or the cost report, running or not,
/// so a cloud whose unpriced clusters stop reads 0 rather than going silent (`cloud="none"` 0
/// for an empty fleet). The tag is the record's cloud, capped to the breakdown's top values
/// (or `other`) when `--breakdown` includes `cloud`, like every other metric; the other
/// breakdown tags are not applied.
fn unpriced(
    clusters: &[ClusterRecord],
    cdims: &[Dims],
    costs: &[CostRecord],
    kdims: &[Dims],
    bd: &Breakdown,
    opts: &FleetOptions,
) -> Series {
    let capped = opts.breakdown.contains(&BreakdownKey::Cloud);
    let cloud = |d: &Dims| -> Tags {
        let v = if capped {
            bd.tags(d)["cloud"].clone()
        } else {
            d.get(BreakdownKey::Cloud).to_string()
        };
        Tags::from([("cloud".to_string(), v)])
    };
    let mut sets: BTreeSet<Tags> = cdims.iter().chain(kdims).map(cloud).collect();
    if sets.is_empty() {
        sets.insert(cloud(&Dims::default().with_none()));
    }
    let mut series = Series::new(&c::CLUSTERS_UNPRICED, &sets);
    let no_price = |r: &CostRecord| {
        !r.total_cost.is_some_and(|c| c > 0.0) && r.duration.is_none_or(|d| d > 0.0)
    };
    // The cost row of a live cluster: same hash, else the same name on a row that is live.
    let by_hash: HashMap<&str, usize> = costs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.cluster_hash.as_deref().map(|h| (h, i)))
        .collect();
    let live_by_name: HashMap<&str, usize> = costs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status.is_some() || is_open(r))
        .map(|(i, r)| (r.name.as_str(), i))
        .collect();
    let mut seen: BTreeSet<usize> = BTreeSet::new();
    for (cl, d) in clusters.iter().zip(cdims) {
        if !is_running_cluster(cl) {
            continue;
        }
        let row = cl
            .cluster_hash
            .as_deref()
            .and_then(|h| by_hash.get(h))
            .or_else(|| live_by_name.get(cl.name.as_str()))
            .copied();
        match row {
            Some(i) => {
                seen.insert(i);
                if no_price(&costs[i]) {
                    series.add(&cloud(&kdims[i]), 1.0);
                }
            }
            None => series.add(&cloud(d), 1.0),
        }
    }
    for (i, (r, d)) in costs.iter().zip(kdims).enumerate() {
        if is_open(r) && !seen.contains(&i) && no_price(r) {
            series.add(&cloud(d), 1.0);
        }
    }
    series
}

/// A cost-report row still accruing: one of its usage intervals is open.
fn is_open(r: &CostRecord) -> bool {
    r.usage_intervals
        .as_deref()
        .is_some_and(|iv| iv.iter().any(|(_, end)| end.is_none()))
}

fn is_running_cluster(c: &ClusterRecord) -> bool {
    matches!(c.status, ClusterStatus::Up | ClusterStatus::Autostopping)
}

fn is_completed_7d(j: &Job, w7: f64) -> bool {
    j.status.is_terminal() && j.end_at.is_some_and(|e| e >= w7)
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Seconds of `intervals` inside `[from, to]`; an open interval ends at `to`.
fn overlap(intervals: &[(f64, Option<f64>)], from: f64, to: f64) -> f64 {
    intervals
        .iter()
        .map(|&(start, end)| {
            let end = end.unwrap_or(to).min(to);
            (end - start.max(from)).max(0.0)
        })
        .sum()
}

#[cfg(test)]
mod tests;
