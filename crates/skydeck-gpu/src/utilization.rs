//! GPU utilization and idleness of the UP SkyPilot clusters, as a pure function of the cluster
//! table, each cluster's hourly cost, the GPU windows and "now".
//!
//! The rules, per GPU over the window `[now - window, now]` (interval `I` = the windows'
//! expected time between samples):
//!
//! * no sample in the window: **missing**; newest sample older than `2·I`: **stale**;
//! * any sample at or above the threshold: **busy**;
//! * first sample later than `window start + 2·I`, or a gap over `2·I`: **partial**;
//! * otherwise **idle**: under the threshold for the whole window, with data all along.
//!
//! A cluster is *active* when one of its GPUs is busy, *idle* only when every GPU it has is
//! matched and idle, and *unknown* otherwise (no GPU matched, fewer GPUs matched than it has,
//! or missing, stale or partial data). Unknown is never idle: an idle stop acts only on fresh,
//! complete data.
//!
//! No GPU data source means no [`UtilizationReport`] at all ([`fleet_samples`] takes an
//! `Option`), so the metrics are absent rather than zero.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use skydeck_core::{Sample, catalog as c};
use skydeck_skypilot::api::{ClusterRecord, ClusterStatus};

use crate::matching::{MatchOptions, match_gpus};
use crate::window::{GpuId, GpuSeries, GpuWindows};

/// The default window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30 * 60);
/// The default idle threshold, as a ratio (5 %).
pub const DEFAULT_THRESHOLD: f64 = 0.05;

/// Options of [`compute`].
#[derive(Debug, Clone, PartialEq)]
pub struct UtilizationOptions {
    /// How far back every GPU must have stayed under the threshold.
    pub window: Duration,
    /// Idle threshold as a ratio 0–1: a GPU is idle while strictly under it.
    pub threshold: f64,
    /// How GPUs are matched to clusters.
    pub matching: MatchOptions,
}

impl Default for UtilizationOptions {
    fn default() -> Self {
        UtilizationOptions {
            window: DEFAULT_WINDOW,
            threshold: DEFAULT_THRESHOLD,
            matching: MatchOptions::default(),
        }
    }
}

/// A cluster's GPU verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Activity {
    /// Every GPU stayed under the threshold for the whole window, with fresh data.
    Idle,
    /// A GPU reached the threshold within the window.
    Active,
    /// Not enough fresh data to tell (never treated as idle).
    Unknown,
}

impl Activity {
    /// `idle`, `active` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Activity::Idle => "idle",
            Activity::Active => "active",
            Activity::Unknown => "unknown",
        }
    }
}

/// The verdict of one GPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GpuState {
    /// No sample in the window.
    Missing,
    /// The newest sample is older than two intervals.
    Stale {
        /// Unix second of the newest sample.
        last: i64,
    },
    /// Reached the threshold within the window.
    Busy {
        /// Highest ratio seen.
        peak: f64,
    },
    /// Under the threshold, but data does not cover the window.
    Partial {
        /// Unix second from which the data is continuous up to now (the end of the last gap,
        /// or the first sample).
        covered_from: i64,
    },
    /// Under the threshold for the whole window.
    Idle {
        /// Unix second since which the stored samples have all been under the threshold.
        since: i64,
    },
}

/// One GPU of a cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuUtilization {
    /// Which GPU.
    pub gpu: GpuId,
    /// Its verdict.
    pub state: GpuState,
    /// Mean ratio over the window's samples (`None` without samples).
    pub utilization: Option<f64>,
}

/// The verdict on one UP cluster with GPUs: what `/api/idle` and the idle stop read.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterUtilization {
    /// Cluster name.
    pub cluster: String,
    /// Owner's name.
    pub user: Option<String>,
    /// GPUs the cluster has according to SkyPilot (nodes × accelerators per node, rounded up).
    pub expected_gpus: u32,
    /// Its GPUs that matched, with their verdicts.
    pub gpus: Vec<GpuUtilization>,
    /// Mean over its GPUs with samples of their mean ratio (`None` without any).
    pub utilization: Option<f64>,
    /// For an idle cluster, since when every GPU has been under the threshold.
    pub idle_since: Option<Timestamp>,
    /// Hourly cost from the cost report, when known.
    pub cost_per_hour: Option<f64>,
    /// Idle, active or unknown.
    pub status: Activity,
    /// Why, in a sentence for operators.
    pub reason: String,
}

/// The result of [`compute`]: per-cluster verdicts and the fleet totals.
#[derive(Debug, Clone, PartialEq)]
pub struct UtilizationReport {
    /// When it was computed.
    pub at: Timestamp,
    /// UP clusters that have GPUs (or matched GPUs), in the order of the cluster table.
    pub clusters: Vec<ClusterUtilization>,
    /// Mean ratio over the matched GPUs (with samples) of UP clusters.
    pub avg_utilization: Option<f64>,
    /// UP clusters whose every GPU is idle.
    pub idle_clusters: usize,
    /// GPUs of UP clusters that are idle.
    pub idle_gpus: usize,
    /// UP clusters with GPUs whose verdict is unknown.
    pub unknown_clusters: usize,
    /// Summed hourly cost of the idle clusters.
    pub idle_burn_rate_hourly: f64,
    /// GPUs with samples in the window that matched no cluster, or several.
    pub unmatched_gpus: usize,
}

impl UtilizationReport {
    /// The fleet metrics (catalog `CLUSTERS_AVG_UTILIZATION`, `CLUSTERS_GPU_IDLE`, `GPUS_IDLE`,
    /// `IDLE_BURN_RATE`, `CLUSTERS_GPU_UNKNOWN`, `GPUS_UNMATCHED`) at `at`. The average is
    /// left out when no matched GPU has data: no data is not 0 %.
    pub fn samples(&self, at: Timestamp) -> Vec<Sample> {
        let mut out = Vec::with_capacity(6);
        if let Some(u) = self.avg_utilization {
            out.push(Sample::of(&c::CLUSTERS_AVG_UTILIZATION, u * 100.0, at));
        }
        out.push(Sample::of(
            &c::CLUSTERS_GPU_IDLE,
            self.idle_clusters as f64,
            at,
        ));
        out.push(Sample::of(&c::GPUS_IDLE, self.idle_gpus as f64, at));
        out.push(Sample::of(
            &c::IDLE_BURN_RATE,
            self.idle_burn_rate_hourly,
            at,
        ));
        out.push(Sample::of(
            &c::CLUSTERS_GPU_UNKNOWN,
            self.unknown_clusters as f64,
            at,
        ));
        out.push(Sample::of(
            &c::GPUS_UNMATCHED,
            self.unmatched_gpus as f64,
            at,
        ));
        out
    }

    /// The verdict on one cluster.
    pub fn cluster(&self, name: &str) -> Option<&ClusterUtilization> {
        self.clusters.iter().find(|c| c.cluster == name)
    }
}

/// The fleet metrics of `report`, none when there is no GPU data source (`None`).
pub fn fleet_samples(report: Option<&UtilizationReport>, at: Timestamp) -> Vec<Sample> {
    report.map(|r| r.samples(at)).unwrap_or_default()
}

/// GPUs a cluster has per SkyPilot: nodes × the accelerators per node, fractions rounded up.
pub fn expected_gpus(cluster: &ClusterRecord) -> u32 {
    let per_node = cluster.gpus_per_node();
    let total = (per_node * f64::from(cluster.nodes.unwrap_or(1))).ceil();
    if total.is_finite() && total > 0.0 {
        total.min(f64::from(u32::MAX)) as u32
    } else {
        0
    }
}

/// Computes every UP cluster's verdict and the fleet totals.
///
/// `clusters` is the whole table (GPUs of non-UP clusters are matched, so they are not
/// counted as unmatched, but get no verdict); `hourly_cost` maps a cluster name to its $/h.
pub fn compute(
    clusters: &[ClusterRecord],
    hourly_cost: &HashMap<String, f64>,
    windows: &GpuWindows,
    now: Timestamp,
    opts: &UtilizationOptions,
) -> UtilizationReport {
    let now_s = now.as_second();
    let window_s = i64::try_from(opts.window.as_secs()).unwrap_or(i64::MAX);
    let from = now_s.saturating_sub(window_s);
    // At least 1 s, so a zero interval does not make every sample stale.
    let tolerance = 2 * i64::try_from(windows.interval().as_secs().max(1)).unwrap_or(i64::MAX / 4);

    let in_window = |s: &GpuSeries| s.between(from, now_s).next().is_some();
    let matches = match_gpus(
        windows
            .iter()
            .filter(|(_, s)| in_window(s))
            .map(|(id, _)| id),
        clusters,
        &opts.matching,
    );
    let mut report = UtilizationReport {
        at: now,
        clusters: Vec::new(),
        avg_utilization: None,
        idle_clusters: 0,
        idle_gpus: 0,
        unknown_clusters: 0,
        idle_burn_rate_hourly: 0.0,
        unmatched_gpus: matches.unmatched.len() + matches.ambiguous.len(),
    };
    let mut fleet_means: Vec<f64> = Vec::new();
    for (i, cl) in clusters.iter().enumerate() {
        if cl.status != ClusterStatus::Up {
            continue;
        }
        let matched = matches.by_cluster.get(&i).map(Vec::as_slice).unwrap_or(&[]);
        let expected = expected_gpus(cl);
        if expected == 0 && matched.is_empty() {
            continue; // a CPU-only cluster
        }
        let gpus: Vec<GpuUtilization> = matched
            .iter()
            .map(|id| {
                let series = windows.get(id).expect("matched ids come from the windows");
                judge(id, series, from, now_s, tolerance, opts.threshold)
            })
            .collect();
        let means: Vec<f64> = gpus.iter().filter_map(|g| g.utilization).collect();
        fleet_means.extend(&means);
        report.idle_gpus += gpus
            .iter()
            .filter(|g| matches!(g.state, GpuState::Idle { .. }))
            .count();
        let (status, reason, idle_since) = verdict(&gpus, expected, now_s, opts);
        // A bad cost (NaN, negative) would poison the burn-rate sum: treat it as unknown.
        let cost_per_hour = hourly_cost
            .get(&cl.name)
            .copied()
            .filter(|c| c.is_finite() && *c >= 0.0);
        match status {
            Activity::Idle => {
                report.idle_clusters += 1;
                report.idle_burn_rate_hourly += cost_per_hour.unwrap_or(0.0);
            }
            Activity::Unknown => report.unknown_clusters += 1,
            Activity::Active => {}
        }
        report.clusters.push(ClusterUtilization {
            cluster: cl.name.clone(),
            user: cl.user_name.clone(),
            expected_gpus: expected,
            utilization: mean(&means),
            idle_since: idle_since.and_then(|s| Timestamp::from_second(s).ok()),
            cost_per_hour,
            status,
            reason,
            gpus,
        });
    }
    report.avg_utilization = mean(&fleet_means);
    report
}

/// The verdict on one GPU over `[from, now]`.
fn judge(
    id: &GpuId,
    series: &GpuSeries,
    from: i64,
    now: i64,
    tolerance: i64,
    threshold: f64,
) -> GpuUtilization {
    let window: Vec<(i64, f64)> = series.between(from, now).collect();
    let utilization = mean(&window.iter().map(|&(_, v)| v).collect::<Vec<_>>());
    let state = match (window.first(), window.last()) {
        (Some(&(first, _)), Some(&(last, _))) => {
            let peak = window.iter().map(|&(_, v)| v).fold(0.0, f64::max);
            let gap_end = window
                .windows(2)
                .rev()
                .find(|w| w[1].0 - w[0].0 > tolerance)
                .map(|w| w[1].0);
            if last < now - tolerance {
                GpuState::Stale { last }
            } else if peak >= threshold {
                GpuState::Busy { peak }
            } else if let Some(end) = gap_end {
                GpuState::Partial { covered_from: end }
            } else if first > from + tolerance {
                GpuState::Partial {
                    covered_from: first,
                }
            } else {
                GpuState::Idle {
                    since: idle_since(series, now, tolerance, threshold),
                }
            }
        }
        _ => GpuState::Missing,
    };
    GpuUtilization {
        gpu: id.clone(),
        state,
        utilization,
    }
}

/// The oldest stored sample from which every later one is under the threshold with no gap,
/// looking past the window where the windows keep more.
fn idle_since(series: &GpuSeries, now: i64, tolerance: i64, threshold: f64) -> i64 {
    let mut since = now;
    let mut next: Option<i64> = None;
    for (t, v) in series.samples().rev().filter(|&(t, _)| t <= now) {
        if v >= threshold || next.is_some_and(|n| n - t > tolerance) {
            break;
        }
        since = t;
        next = Some(t);
    }
    since
}

/// A cluster's status, reason and idle-since from its GPUs' verdicts.
fn verdict(
    gpus: &[GpuUtilization],
    expected: u32,
    now: i64,
    opts: &UtilizationOptions,
) -> (Activity, String, Option<i64>) {
    let pct = |r: f64| format!("{:.1} %", r * 100.0);
    if let Some((g, peak)) = gpus.iter().find_map(|g| match g.state {
        GpuState::Busy { peak } => Some((g, peak)),
        _ => None,
    }) {
        return (
            Activity::Active,
            format!(
                "GPU {} reached {} (threshold {})",
                g.gpu,
                pct(peak),
                pct(opts.threshold)
            ),
            None,
        );
    }
    if gpus.is_empty() {
        return (
            Activity::Unknown,
            format!("no GPU series matched (the cluster has {expected} GPUs)"),
            None,
        );
    }
    for g in gpus {
        let why = match g.state {
            GpuState::Missing => format!("GPU {} has no sample in the window", g.gpu),
            GpuState::Stale { last } => format!(
                "GPU {}'s newest sample is {} s old (stale)",
                g.gpu,
                now - last
            ),
            GpuState::Partial { covered_from } => format!(
                "GPU {}'s data covers the window only from {}",
                g.gpu,
                Timestamp::from_second(covered_from)
                    .map(|t| t.to_string())
                    .unwrap_or_else(|_| covered_from.to_string())
            ),
            GpuState::Busy { .. } | GpuState::Idle { .. } => continue,
        };
        return (Activity::Unknown, why, None);
    }
    if (gpus.len() as u64) < u64::from(expected) {
        return (
            Activity::Unknown,
            format!(
                "only {} of the cluster's {expected} GPUs report utilization",
                gpus.len()
            ),
            None,
        );
    }
    let since = gpus
        .iter()
        .filter_map(|g| match g.state {
            GpuState::Idle { since } => Some(since),
            _ => None,
        })
        .max();
    (
        Activity::Idle,
        format!(
            "all {} GPUs stayed under {} for the last {} min",
            gpus.len(),
            pct(opts.threshold),
            opts.window.as_secs() / 60
        ),
        since,
    )
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::tests::cluster;
    use crate::window::{UtilSource, WindowLimits};

    const NOW: i64 = 1_800_000_000;
    const STEP: i64 = 60;

    fn now() -> Timestamp {
        Timestamp::from_second(NOW).unwrap()
    }

    fn gpu(pod: &str, index: &str) -> GpuId {
        GpuId {
            pod: Some(pod.into()),
            gpu: Some(index.into()),
            hostname: Some("node-1".into()),
            ..GpuId::default()
        }
    }

    fn windows() -> GpuWindows {
        GpuWindows::new(WindowLimits::default(), Duration::from_secs(STEP as u64))
    }

    /// Fills `[NOW - minutes·60, NOW]` at one-step spacing with `value(t)`.
    fn fill(w: &mut GpuWindows, id: &GpuId, minutes: i64, value: impl Fn(i64) -> f64) {
        let mut t = NOW - minutes * 60;
        while t <= NOW {
            w.push(id, UtilSource::EngineActive, t, value(t));
            t += STEP;
        }
    }

    /// One Kubernetes cluster "train" (2 nodes × 1 H100) and its cost.
    fn setup() -> (Vec<ClusterRecord>, HashMap<String, f64>) {
        let clusters = vec![cluster("train", "Kubernetes", Some("train-2ea4"))];
        let cost = HashMap::from([("train".to_string(), 7.5)]);
        (clusters, cost)
    }

    fn run(w: &GpuWindows) -> UtilizationReport {
        let (clusters, cost) = setup();
        compute(&clusters, &cost, w, now(), &UtilizationOptions::default())
    }

    #[test]
    fn idle_cluster_is_idle_and_costs_its_burn_rate() {
        let mut w = windows();
        fill(&mut w, &gpu("train-2ea4-head", "0"), 40, |_| 0.01);
        fill(&mut w, &gpu("train-2ea4-worker1", "0"), 40, |_| 0.0);
        let r = run(&w);
        let c = r.cluster("train").unwrap();
        assert_eq!(c.status, Activity::Idle, "{}", c.reason);
        assert_eq!(c.gpus.len(), 2);
        assert_eq!(c.idle_since, Timestamp::from_second(NOW - 40 * 60).ok());
        assert_eq!(c.cost_per_hour, Some(7.5));
        assert_eq!(c.user.as_deref(), Some("alice"));
        assert_eq!(
            (r.idle_clusters, r.idle_gpus, r.unknown_clusters),
            (1, 2, 0)
        );
        assert_eq!(r.idle_burn_rate_hourly, 7.5);
        assert!((r.avg_utilization.unwrap() - 0.005).abs() < 1e-9);
    }

    #[test]
    fn a_bad_cost_never_reaches_the_burn_rate() {
        let mut w = windows();
        fill(&mut w, &gpu("train-2ea4-head", "0"), 30, |_| 0.0);
        fill(&mut w, &gpu("train-2ea4-worker1", "0"), 30, |_| 0.0);
        let (clusters, _) = setup();
        let cost = HashMap::from([("train".to_string(), f64::NAN)]);
        let r = compute(&clusters, &cost, &w, now(), &UtilizationOptions::default());
        assert_eq!(r.idle_clusters, 1);
        assert_eq!(r.idle_burn_rate_hourly, 0.0);
        assert_eq!(r.cluster("train").unwrap().cost_per_hour, None);
    }

    #[test]
    fn busy_cluster_is_active() {
        let mut w = windows();
        fill(&mut w, &gpu("train-2ea4-head", "0"), 30, |_| 0.0);
        fill(&mut w, &gpu("train-2ea4-worker1", "0"), 30, |_| 0.9);
        let r = run(&w);
        let c = r.cluster("train").unwrap();
        assert_eq!(c.status, Activity::Active);
        assert!(c.reason.contains("90.0 %"), "{}", c.reason);
        assert_eq!(
            (r.idle_clusters, r.idle_gpus, r.unknown_clusters),
            (0, 1, 0)
        );
        assert_eq!(r.idle_burn_rate_hourly, 0.0);
        assert!((r.avg_utilization.unwrap() - 0.45).abs() < 1e-9);
    }

    #[test]
    fn flapping_gpu_is_active() {
        let mut w = windows();
        fill(&mut w, &gpu("train-2ea4-head", "0"), 30, |_| 0.0);
        // Idle most of the time, one burst 10 minutes ago.
        fill(&mut w, &gpu("train-2ea4-worker1", "0"), 30, |t| {
            if t == NOW - 600 { 0.5 } else { 0.0 }
        });
        assert_eq!(run(&w).cluster("train").unwrap().status, Activity::Active);
    }

    #[test]
    fn a_burst_before_the_window_does_not_count_but_sets_idle_since() {
        let mut w = windows();
        for id in [gpu("train-2ea4-head", "0"), gpu("train-2ea4-worker1", "0")] {
            fill(
                &mut w,
                &id,
                60,
                |t| if t < NOW - 45 * 60 { 0.8 } else { 0.0 },
            );
        }
        let c = run(&w).cluster("train").cloned().unwrap();
        assert_eq!(c.status, Activity::Idle);
        assert_eq!(c.idle_since, Timestamp::from_second(NOW - 45 * 60).ok());
    }

    #[test]
    fn data_missing_for_part_of_the_window_is_unknown() {
        // Started reporting 10 minutes ago.
        let mut w = windows();
        fill(&mut w, &gpu("train-2ea4-head", "0"), 30, |_| 0.0);
        fill(&mut w, &gpu("train-2ea4-worker1", "0"), 10, |_| 0.0);
        let r = run(&w);
        let c = r.cluster("train").unwrap();
        assert_eq!(c.status, Activity::Unknown);
        assert!(c.reason.contains("covers the window only"), "{}", c.reason);
        assert_eq!(
            (r.idle_clusters, r.idle_gpus, r.unknown_clusters),
            (0, 1, 1)
        );

        // A hole in the middle: 10 minutes without samples.
        let mut w = windows();
        fill(&mut w, &gpu("train-2ea4-head", "0"), 30, |_| 0.0);
        let hole = gpu("train-2ea4-worker1", "0");
        let mut t = NOW - 30 * 60;
        while t <= NOW {
            if !(NOW - 900..NOW - 300).contains(&t) {
                w.push(&hole, UtilSource::EngineActive, t, 0.0);
            }
            t += STEP;
        }
        let c = run(&w).cluster("train").cloned().unwrap();
        assert_eq!(c.status, Activity::Unknown);
        assert!(c.reason.contains("covers the window only"), "{}", c.reason);
    }

    #[test]
    fn stale_data_is_unknown_even_when_it_was_busy() {
        let mut w = windows();
        fill(&mut w, &gpu("train-2ea4-head", "0"), 30, |_| 0.0);
        // Stopped reporting 5 minutes ago (more than two steps).
        let stale = gpu("train-2ea4-worker1", "0");
        let mut t = NOW - 30 * 60;
        while t <= NOW - 300 {
            w.push(&stale, UtilSource::EngineActive, t, 0.9);
            t += STEP;
        }
        let r = run(&w);
        let c = r.cluster("train").unwrap();
        assert_eq!(c.status, Activity::Unknown);
        assert!(c.reason.contains("stale"), "{}", c.reason);
        assert_eq!(r.unknown_clusters, 1);
    }

    #[test]
    fn fewer_gpus_than_the_cluster_has_is_unknown() {
        let mut w = windows();
        fill(&mut w, &gpu("train-2ea4-head", "0"), 30, |_| 0.0);
        let c = run(&w).cluster("train").cloned().unwrap();
        assert_eq!(c.status, Activity::Unknown);
        assert!(
            c.reason.contains("only 1 of the cluster's 2"),
            "{}",
            c.reason
        );
    }

    #[test]
    fn no_matched_gpu_is_unknown_and_strangers_are_unmatched() {
        let mut w = windows();
        fill(&mut w, &gpu("someone-else", "0"), 30, |_| 0.0);
        let r = run(&w);
        assert_eq!(r.cluster("train").unwrap().status, Activity::Unknown);
        assert_eq!(r.unmatched_gpus, 1);
        assert_eq!(r.avg_utilization, None);
        // The average is left out, the counts are there.
        let names: Vec<_> = r
            .samples(now())
            .iter()
            .map(|s| s.name.to_string())
            .collect();
        assert!(!names.contains(&c::CLUSTERS_AVG_UTILIZATION.name.to_string()));
        assert!(names.contains(&c::GPUS_UNMATCHED.name.to_string()));
    }

    #[test]
    fn bad_samples_never_become_utilization() {
        let mut w = windows();
        for id in [gpu("train-2ea4-head", "0"), gpu("train-2ea4-worker1", "0")] {
            fill(&mut w, &id, 30, |_| 0.0);
            // NaN/Inf arrive between the good ones and are refused.
            for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                w.push(&id, UtilSource::EngineActive, NOW - 30, v);
            }
        }
        assert_eq!(w.rejected_samples(), 6);
        let r = run(&w);
        assert_eq!(r.cluster("train").unwrap().status, Activity::Idle);
        assert_eq!(r.avg_utilization, Some(0.0));

        // Only bad samples: no data, so unknown, and no average at all.
        let mut only_bad = windows();
        only_bad.push(
            &gpu("train-2ea4-head", "0"),
            UtilSource::EngineActive,
            NOW,
            f64::NAN,
        );
        let r = run(&only_bad);
        assert_eq!(r.cluster("train").unwrap().status, Activity::Unknown);
        assert_eq!(r.avg_utilization, None);
    }

    #[test]
    fn non_up_and_cpu_clusters_get_no_verdict() {
        let mut stopped = cluster("old", "Kubernetes", Some("old-1"));
        stopped.status = ClusterStatus::Init;
        let mut cpu = cluster("cpu", "AWS", Some("cpu-1"));
        cpu.accelerators = None;
        let clusters = vec![stopped, cpu];
        let mut w = windows();
        fill(&mut w, &gpu("old-1-head", "0"), 30, |_| 0.0);
        let r = compute(
            &clusters,
            &HashMap::new(),
            &w,
            now(),
            &UtilizationOptions::default(),
        );
        assert!(r.clusters.is_empty());
        // The INIT cluster's GPU matched, so it is not a stranger; it is not counted either.
        assert_eq!((r.unmatched_gpus, r.idle_gpus), (0, 0));
        assert_eq!(r.avg_utilization, None);
    }

    #[test]
    fn without_a_source_nothing_is_emitted() {
        assert!(fleet_samples(None, now()).is_empty());
        let r = run(&windows());
        let s = fleet_samples(Some(&r), now());
        assert_eq!(s.len(), 5);
        for sample in &s {
            assert!(
                sample.def().is_some(),
                "{} is not in the catalog",
                sample.name
            );
        }
    }

    #[test]
    fn percent_metric_is_stored_in_percent() {
        let mut w = windows();
        fill(&mut w, &gpu("train-2ea4-head", "0"), 30, |_| 0.25);
        fill(&mut w, &gpu("train-2ea4-worker1", "0"), 30, |_| 0.25);
        let s = run(&w).samples(now());
        let avg = s
            .iter()
            .find(|s| s.name == c::CLUSTERS_AVG_UTILIZATION.name)
            .unwrap();
        assert!((avg.value - 25.0).abs() < 1e-9);
    }

    #[test]
    fn expected_gpus_counts_nodes_and_rounds_fractions_up() {
        let mut c = cluster("x", "AWS", None);
        assert_eq!(expected_gpus(&c), 2);
        c.accelerators = Some("{'L4': 0.5}".into());
        c.nodes = Some(1);
        assert_eq!(expected_gpus(&c), 1);
        c.accelerators = Some("None".into());
        assert_eq!(expected_gpus(&c), 0);
    }
}
