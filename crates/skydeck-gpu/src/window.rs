//! Bounded per-GPU windows of utilization samples: what a GPU data source (a Prometheus range
//! query, later serve's direct scrape of dcgm-exporter) fills and what
//! [`crate::utilization::compute`] reads.
//!
//! [`GpuWindows`] maps a [`GpuId`] (the labels that identify a GPU and the ones matching needs)
//! to a [`GpuSeries`] of `(unix seconds, ratio 0–1)` samples, oldest first. Both dimensions are
//! bounded ([`WindowLimits`]): a full series drops its oldest sample, a full map drops the GPU
//! that reported least recently, and both drops are counted. A sample that is not a finite
//! ratio in `[0, 1]` (NaN, ±Inf, a percent passed as a ratio) is refused and counted, so bad
//! data never becomes a utilization.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

/// The label dcgm-exporter puts the node name in.
pub const HOSTNAME_LABEL: &str = "Hostname";
/// The label the Kubernetes context (or cluster) of a GPU is in: SkyPilot's `/gpu-metrics`
/// federation and skydeck's HTTP SD both set `cluster=<context>`.
pub const CONTEXT_LABEL: &str = "cluster";

/// The identity of one GPU series: where it is, which GPU, and the labels matching uses.
///
/// Two series with the same identity are the same GPU (e.g. the same exporter scraped by two
/// jobs); a GPU that moves to another pod gets a new identity, as it does in Prometheus.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GpuId {
    /// Kubernetes context or cluster (label `cluster`), when the scrape path adds one.
    pub context: Option<String>,
    /// Node name (dcgm-exporter's `Hostname`).
    pub hostname: Option<String>,
    /// GPU index on the node (`gpu`).
    pub gpu: Option<String>,
    /// GPU UUID (`UUID`, or `uuid` in some exporter modes).
    pub uuid: Option<String>,
    /// Pod using the GPU (`exported_pod`, else `pod`), with dcgm-exporter's Kubernetes mapping.
    pub pod: Option<String>,
    /// Namespace of that pod (`exported_namespace`, else `namespace`).
    pub namespace: Option<String>,
    /// Further labels kept for matching (the configured match label, SkyPilot cluster labels).
    pub labels: BTreeMap<String, String>,
}

impl GpuId {
    /// The identity of a series from its labels, keeping `keep` labels for matching.
    ///
    /// `exported_pod`/`exported_namespace` win over `pod`/`namespace`: Prometheus renames the
    /// exporter's labels that way when the target already has them (Kubernetes SD of the
    /// exporter pod), and then `pod` names the exporter, not the workload using the GPU.
    pub fn from_labels<'a>(
        labels: &BTreeMap<String, String>,
        keep: impl IntoIterator<Item = &'a str>,
    ) -> GpuId {
        let get = |k: &str| labels.get(k).filter(|v| !v.is_empty()).cloned();
        GpuId {
            context: get(CONTEXT_LABEL),
            hostname: get(HOSTNAME_LABEL),
            gpu: get("gpu"),
            uuid: get("UUID").or_else(|| get("uuid")),
            pod: get("exported_pod").or_else(|| get("pod")),
            namespace: get("exported_namespace").or_else(|| get("namespace")),
            labels: keep
                .into_iter()
                .filter_map(|k| get(k).map(|v| (k.to_string(), v)))
                .collect(),
        }
    }

    /// A kept label's value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

impl fmt::Display for GpuId {
    /// `context/host/gpu0 (GPU-…)`, leaving out what is unknown: for reasons and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if let Some(c) = &self.context {
            parts.push(c.clone());
        }
        if let Some(h) = &self.hostname {
            parts.push(h.clone());
        }
        if let Some(g) = &self.gpu {
            parts.push(format!("gpu{g}"));
        }
        if parts.is_empty() {
            parts.push("gpu".into());
        }
        f.write_str(&parts.join("/"))?;
        if let Some(u) = &self.uuid {
            write!(f, " ({u})")?;
        }
        Ok(())
    }
}

/// Which DCGM field a series' samples come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UtilSource {
    /// `DCGM_FI_PROF_GR_ENGINE_ACTIVE`, a ratio: the fraction of time the graphics engine was
    /// active, the truer signal (profiling field, not on every GPU or exporter config).
    EngineActive,
    /// `DCGM_FI_DEV_GPU_UTIL`, a percent 0–100 (stored as a ratio): the fallback; it counts a
    /// GPU as busy while any kernel runs, however little of the chip it uses.
    GpuUtil,
}

impl UtilSource {
    /// The DCGM metric name.
    pub fn metric(self) -> &'static str {
        match self {
            UtilSource::EngineActive => "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
            UtilSource::GpuUtil => "DCGM_FI_DEV_GPU_UTIL",
        }
    }

    /// Factor from the exported value to a ratio 0–1.
    pub fn to_ratio(self) -> f64 {
        match self {
            UtilSource::EngineActive => 1.0,
            UtilSource::GpuUtil => 0.01,
        }
    }
}

/// Bounds of a [`GpuWindows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimits {
    /// Samples kept per GPU; older ones are dropped.
    pub max_samples_per_gpu: usize,
    /// GPUs kept; when a new one arrives at the limit, the one that reported least recently
    /// is dropped.
    pub max_gpus: usize,
}

impl Default for WindowLimits {
    /// 240 samples (30 min at a 7.5 s scrape interval; 4 h at 60 s steps) and 10,000 GPUs.
    fn default() -> Self {
        WindowLimits {
            max_samples_per_gpu: 240,
            max_gpus: 10_000,
        }
    }
}

/// What [`GpuWindows::push`] did with a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Stored (or replaced the sample with the same timestamp).
    Stored,
    /// Refused: not a finite ratio in `[0, 1]`; counted in [`GpuWindows::rejected_samples`].
    Rejected,
    /// Ignored: a `DCGM_FI_DEV_GPU_UTIL` sample for a GPU that reports engine activity.
    Ignored,
}

/// The samples of one GPU, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuSeries {
    source: UtilSource,
    samples: VecDeque<(i64, f64)>,
}

impl GpuSeries {
    /// Which DCGM field the samples come from.
    pub fn source(&self) -> UtilSource {
        self.source
    }

    /// Every sample, `(unix seconds, ratio)`, oldest first.
    pub fn samples(&self) -> impl DoubleEndedIterator<Item = (i64, f64)> + ExactSizeIterator + '_ {
        self.samples.iter().copied()
    }

    /// The samples with `from <= t <= to`, oldest first.
    pub fn between(&self, from: i64, to: i64) -> impl DoubleEndedIterator<Item = (i64, f64)> + '_ {
        // Sorted by time, so the range is found by binary search rather than a scan.
        let start = self.samples.partition_point(|&(t, _)| t < from);
        let end = self.samples.partition_point(|&(t, _)| t <= to);
        self.samples.range(start..end.max(start)).copied()
    }

    /// The newest sample.
    pub fn last(&self) -> Option<(i64, f64)> {
        self.samples.back().copied()
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// Bounded utilization windows of many GPUs.
#[derive(Debug, Clone)]
pub struct GpuWindows {
    limits: WindowLimits,
    interval: Duration,
    series: BTreeMap<GpuId, GpuSeries>,
    dropped_samples: u64,
    dropped_gpus: u64,
    rejected_samples: u64,
}

impl GpuWindows {
    /// Empty windows. `interval` is the expected time between samples (the range query's step
    /// or the scrape interval): data older than two intervals counts as stale, and a gap longer
    /// than two intervals as missing data.
    pub fn new(limits: WindowLimits, interval: Duration) -> GpuWindows {
        GpuWindows {
            limits: WindowLimits {
                max_samples_per_gpu: limits.max_samples_per_gpu.max(1),
                max_gpus: limits.max_gpus.max(1),
            },
            interval,
            series: BTreeMap::new(),
            dropped_samples: 0,
            dropped_gpus: 0,
            rejected_samples: 0,
        }
    }

    /// The bounds.
    pub fn limits(&self) -> WindowLimits {
        self.limits
    }

    /// The expected time between samples.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Adds one sample of `id` at unix second `at`, as a ratio 0–1.
    ///
    /// Samples may come out of order (they are kept sorted; one with an existing timestamp
    /// replaces it). An engine-activity sample takes a GPU over from `DCGM_FI_DEV_GPU_UTIL`
    /// (its older samples are discarded, so one series never mixes the two fields), and a
    /// GPU-util sample for a GPU that has engine activity is ignored.
    pub fn push(&mut self, id: &GpuId, source: UtilSource, at: i64, ratio: f64) -> Pushed {
        if !(ratio.is_finite() && (0.0..=1.0).contains(&ratio)) {
            self.rejected_samples += 1;
            return Pushed::Rejected;
        }
        if !self.series.contains_key(id) {
            if self.series.len() >= self.limits.max_gpus {
                self.evict_stalest();
            }
            self.series.insert(
                id.clone(),
                GpuSeries {
                    source,
                    samples: VecDeque::new(),
                },
            );
        }
        let max = self.limits.max_samples_per_gpu;
        let series = self.series.get_mut(id).expect("inserted above");
        match (series.source, source) {
            (UtilSource::GpuUtil, UtilSource::EngineActive) => {
                series.source = UtilSource::EngineActive;
                series.samples.clear();
            }
            (UtilSource::EngineActive, UtilSource::GpuUtil) => return Pushed::Ignored,
            _ => {}
        }
        let s = &mut series.samples;
        match s.back() {
            Some(&(t, _)) if t < at => s.push_back((at, ratio)),
            None => s.push_back((at, ratio)),
            Some(_) => {
                let i = s.partition_point(|&(t, _)| t < at);
                if s.get(i).is_some_and(|&(t, _)| t == at) {
                    s[i].1 = ratio;
                    return Pushed::Stored;
                }
                s.insert(i, (at, ratio));
            }
        }
        while s.len() > max {
            s.pop_front();
            self.dropped_samples += 1;
        }
        Pushed::Stored
    }

    /// Drops the GPU whose newest sample is the oldest (an empty series first).
    fn evict_stalest(&mut self) {
        let victim = self
            .series
            .iter()
            .min_by_key(|(_, s)| s.last().map_or(i64::MIN, |(t, _)| t))
            .map(|(id, _)| id.clone());
        if let Some(id) = victim {
            self.series.remove(&id);
            self.dropped_gpus += 1;
        }
    }

    /// Forgets samples older than unix second `before`, and GPUs left without samples. Expiry
    /// is not counted as a drop.
    pub fn expire_before(&mut self, before: i64) {
        self.series.retain(|_, s| {
            while s.samples.front().is_some_and(|&(t, _)| t < before) {
                s.samples.pop_front();
            }
            !s.samples.is_empty()
        });
    }

    /// The series of one GPU.
    pub fn get(&self, id: &GpuId) -> Option<&GpuSeries> {
        self.series.get(id)
    }

    /// Every GPU and its series, in identity order.
    pub fn iter(&self) -> impl Iterator<Item = (&GpuId, &GpuSeries)> {
        self.series.iter()
    }

    /// Number of GPUs.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// True when no GPU has samples.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Samples dropped because a GPU's window was full.
    pub fn dropped_samples(&self) -> u64 {
        self.dropped_samples
    }

    /// GPUs dropped because the map was full.
    pub fn dropped_gpus(&self) -> u64 {
        self.dropped_gpus
    }

    /// Samples refused as NaN, infinite or outside `[0, 1]`.
    pub fn rejected_samples(&self) -> u64 {
        self.rejected_samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(gpu: &str) -> GpuId {
        GpuId {
            hostname: Some("node-a".into()),
            gpu: Some(gpu.into()),
            ..GpuId::default()
        }
    }

    fn windows(samples: usize, gpus: usize) -> GpuWindows {
        GpuWindows::new(
            WindowLimits {
                max_samples_per_gpu: samples,
                max_gpus: gpus,
            },
            Duration::from_secs(60),
        )
    }

    #[test]
    fn labels_become_an_identity() {
        let labels: BTreeMap<String, String> = [
            ("gpu", "3"),
            ("UUID", "GPU-1"),
            ("Hostname", "n1"),
            ("modelName", "NVIDIA H100"),
            ("pod", "nvidia-dcgm-exporter-abc"),
            ("exported_pod", "mycl-2ea4-head"),
            ("namespace", "gpu-operator"),
            ("exported_namespace", "default"),
            ("cluster", "ctx"),
            ("skypilot_cluster", "mycl"),
            ("instance", "10.0.0.1:9400"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let id = GpuId::from_labels(&labels, ["skypilot_cluster", "absent"]);
        assert_eq!(id.pod.as_deref(), Some("mycl-2ea4-head"));
        assert_eq!(id.namespace.as_deref(), Some("default"));
        assert_eq!(id.context.as_deref(), Some("ctx"));
        assert_eq!(id.uuid.as_deref(), Some("GPU-1"));
        assert_eq!(id.label("skypilot_cluster"), Some("mycl"));
        assert_eq!(id.labels.len(), 1);
        assert_eq!(id.to_string(), "ctx/n1/gpu3 (GPU-1)");
    }

    #[test]
    fn samples_stay_sorted_and_bounded() {
        let mut w = windows(3, 10);
        let a = id("0");
        for (t, v) in [(10, 0.1), (30, 0.3), (20, 0.2), (30, 0.35), (40, 0.4)] {
            assert_eq!(w.push(&a, UtilSource::EngineActive, t, v), Pushed::Stored);
        }
        let got: Vec<_> = w.get(&a).unwrap().samples().collect();
        assert_eq!(got, vec![(20, 0.2), (30, 0.35), (40, 0.4)]);
        assert_eq!(w.dropped_samples(), 1);
        let mid: Vec<_> = w.get(&a).unwrap().between(25, 35).collect();
        assert_eq!(mid, vec![(30, 0.35)]);
        assert_eq!(w.get(&a).unwrap().between(50, 40).count(), 0);
    }

    #[test]
    fn full_map_drops_the_gpu_that_reported_least_recently() {
        let mut w = windows(10, 2);
        w.push(&id("0"), UtilSource::GpuUtil, 100, 0.5);
        w.push(&id("1"), UtilSource::GpuUtil, 50, 0.5);
        w.push(&id("2"), UtilSource::GpuUtil, 120, 0.5);
        assert_eq!(w.len(), 2);
        assert!(w.get(&id("1")).is_none());
        assert_eq!(w.dropped_gpus(), 1);
    }

    #[test]
    fn bad_values_are_refused_and_counted() {
        let mut w = windows(10, 10);
        let a = id("0");
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.01, 1.5, 42.0] {
            assert_eq!(w.push(&a, UtilSource::EngineActive, 1, v), Pushed::Rejected);
        }
        assert_eq!(w.rejected_samples(), 6);
        assert!(w.is_empty(), "a refused sample must not create a GPU");
        assert_eq!(w.push(&a, UtilSource::EngineActive, 1, 1.0), Pushed::Stored);
        assert_eq!(w.push(&a, UtilSource::EngineActive, 2, 0.0), Pushed::Stored);
    }

    #[test]
    fn engine_activity_wins_over_gpu_util() {
        let mut w = windows(10, 10);
        let a = id("0");
        w.push(&a, UtilSource::GpuUtil, 1, 0.9);
        w.push(&a, UtilSource::EngineActive, 2, 0.1);
        assert_eq!(w.push(&a, UtilSource::GpuUtil, 3, 0.9), Pushed::Ignored);
        let s = w.get(&a).unwrap();
        assert_eq!(s.source(), UtilSource::EngineActive);
        assert_eq!(s.samples().collect::<Vec<_>>(), vec![(2, 0.1)]);
    }

    #[test]
    fn expiry_forgets_old_samples_and_empty_gpus() {
        let mut w = windows(10, 10);
        w.push(&id("0"), UtilSource::GpuUtil, 10, 0.1);
        w.push(&id("0"), UtilSource::GpuUtil, 20, 0.1);
        w.push(&id("1"), UtilSource::GpuUtil, 10, 0.1);
        w.expire_before(15);
        assert_eq!(w.len(), 1);
        assert_eq!(w.get(&id("0")).unwrap().len(), 1);
        assert_eq!(w.dropped_samples(), 0);
    }
}
