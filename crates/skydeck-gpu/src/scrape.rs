//! GPU utilization without any Prometheus: serve scrapes the dcgm-exporters its own discovery
//! finds (through each context's API server pod proxy) and keeps a window of samples per GPU.
//!
//! [`Scraper::run_cycle`] takes the exporters an [`ExporterSource`] lists now, scrapes them with
//! bounded concurrency, a per-target timeout and a size limit, parses the DCGM text
//! ([`parse_page`]) and
//!
//! * pushes each GPU's utilization into its [`GpuWindows`] (`DCGM_FI_PROF_GR_ENGINE_ACTIVE`,
//!   else `DCGM_FI_DEV_GPU_UTIL`), keyed by a [`GpuId`] whose `cluster` is the context name,
//!   as HTTP SD labels it, so matching works as it does for the Prometheus source;
//! * keeps the latest reading of each GPU for the per-GPU Datadog series
//!   ([`Scraper::samples`]: utilization, memory, power, temperature, last XID, tagged with the
//!   catalog's `GPU_SERIES` keys), capped at [`ScrapeOptions::max_series_gpus`].
//!
//! A slow, failing or garbage target costs only its own timeout and is counted in the cycle's
//! [`CycleStats`]; so are values refused as NaN, infinite or out of range. A cycle takes
//! `&mut self`, so two never overlap; the caller loops (`interval` apart).
//!
//! The trait lives here and is implemented for [`skydeck_discovery::Discovery`] here: this
//! crate depends on discovery (the lower layer: it finds and fetches exporters and knows
//! nothing of GPUs), never the other way, so discovery gains no dependency and no cycle can
//! form. The DCGM parser is this module's own rather than `skydeck_collect::exposition`'s: the
//! collect crate is where GPU sources get wired (a dependency on it would be a cycle), and a
//! page is filtered by metric name before any label is parsed, a malformed line costs only
//! itself, and non-finite values are counted instead of silently skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use jiff::Timestamp;
use skydeck_core::{Sample, catalog as c};
pub use skydeck_discovery::ExporterRef;
use skydeck_discovery::{Discovery, ScrapeErrorKind};
use tokio::time::Instant;

use crate::matching::MatchOptions;
use crate::window::{GpuId, GpuWindows, UtilSource, WindowLimits};

/// The `source` tag of this source's health samples.
pub const SOURCE: &str = "scrape";
/// Scrapes in flight at once, by default.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// Time one target has, request to last byte, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest page read, by default (a node's page is some 10–100 KiB).
pub const DEFAULT_MAX_BYTES: u64 = 8 << 20;
/// GPUs that get per-GPU Datadog series, by default.
pub const DEFAULT_MAX_SERIES_GPUS: usize = 2_000;
/// Distinct GPU series read from one page; more is not a node (8–16 GPUs, 56 MIG instances at
/// most) but a broken or hostile exporter, and must not grow memory.
pub const MAX_GPUS_PER_PAGE: usize = 512;
/// Target errors kept per cycle for logs (the rest are only counted).
const MAX_ERRORS_KEPT: usize = 32;
/// MiB → bytes (`DCGM_FI_DEV_FB_USED` is in MiB).
const MIB: f64 = 1_048_576.0;
/// The value of a catalog tag whose label the exporter did not send (as the fleet collector
/// writes absent dimensions).
const NONE: &str = "none";

/// Why one target's scrape failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// The answer did not complete within the timeout.
    Timeout(String),
    /// Anything else (refused, unreachable, too large, not listed any more); the message names
    /// the target.
    Failed(String),
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::Timeout(m) | TargetError::Failed(m) => f.write_str(m),
        }
    }
}

/// Where the exporters come from and how one is fetched: [`Discovery`] in serve, a fake in
/// tests.
pub trait ExporterSource: Send + Sync {
    /// The exporters to scrape now.
    fn exporters(&self) -> Vec<ExporterRef>;
    /// The page of `target`, within `timeout` and `max_bytes`.
    fn scrape<'a>(
        &'a self,
        target: &'a ExporterRef,
        timeout: Duration,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<Bytes, TargetError>>;
}

impl ExporterSource for Discovery {
    fn exporters(&self) -> Vec<ExporterRef> {
        Discovery::exporters(self)
    }

    fn scrape<'a>(
        &'a self,
        target: &'a ExporterRef,
        timeout: Duration,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<Bytes, TargetError>> {
        let fetch = Discovery::scrape(self, target, timeout, max_bytes);
        Box::pin(async move {
            fetch.await.map_err(|e| match e.kind {
                ScrapeErrorKind::Timeout => TargetError::Timeout(e.message),
                _ => TargetError::Failed(e.message),
            })
        })
    }
}

impl<T: ExporterSource + ?Sized> ExporterSource for Arc<T> {
    fn exporters(&self) -> Vec<ExporterRef> {
        (**self).exporters()
    }

    fn scrape<'a>(
        &'a self,
        target: &'a ExporterRef,
        timeout: Duration,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<Bytes, TargetError>> {
        (**self).scrape(target, timeout, max_bytes)
    }
}

/// Options of a [`Scraper`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeOptions {
    /// Scrapes in flight at once (at least 1).
    pub concurrency: usize,
    /// Time one target has, request to last byte.
    pub timeout: Duration,
    /// Largest page read.
    pub max_bytes: u64,
    /// GPUs that get per-GPU Datadog series; the others are counted in
    /// [`CycleStats::series_dropped`].
    pub max_series_gpus: usize,
    /// The caller's time between cycles: the windows' expected interval (data older than two
    /// intervals is stale).
    pub interval: Duration,
    /// How long samples are kept in the windows (at least the utilization window).
    pub retention: Duration,
    /// Bounds of the windows.
    pub limits: WindowLimits,
    /// Labels a [`GpuId`] keeps for matching ([`MatchOptions::kept_labels`]).
    pub keep_labels: Vec<String>,
}

impl Default for ScrapeOptions {
    /// 16 at once, 5 s and 8 MiB per target, 2,000 GPUs of series, a 30 s interval
    /// (dcgm-exporter's own collection interval: scraping faster reads the same values), one
    /// hour kept, default window limits and matching labels.
    fn default() -> Self {
        ScrapeOptions {
            concurrency: DEFAULT_CONCURRENCY,
            timeout: DEFAULT_TIMEOUT,
            max_bytes: DEFAULT_MAX_BYTES,
            max_series_gpus: DEFAULT_MAX_SERIES_GPUS,
            interval: Duration::from_secs(30),
            retention: Duration::from_secs(3600),
            limits: WindowLimits::default(),
            keep_labels: MatchOptions::default().kept_labels(),
        }
    }
}

/// The DCGM fields read from a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    EngineActive,
    GpuUtil,
    FbUsed,
    Power,
    Temp,
    Xid,
}

impl Field {
    fn of(name: &str) -> Option<Field> {
        Some(match name {
            "DCGM_FI_PROF_GR_ENGINE_ACTIVE" => Field::EngineActive,
            "DCGM_FI_DEV_GPU_UTIL" => Field::GpuUtil,
            "DCGM_FI_DEV_FB_USED" => Field::FbUsed,
            "DCGM_FI_DEV_POWER_USAGE" => Field::Power,
            "DCGM_FI_DEV_GPU_TEMP" => Field::Temp,
            "DCGM_FI_DEV_XID_ERRORS" => Field::Xid,
            _ => return None,
        })
    }

    /// Whether `v` is a value this field can have; anything else is refused and counted.
    fn accepts(self, v: f64) -> bool {
        v.is_finite()
            && match self {
                Field::EngineActive => (0.0..=1.0).contains(&v),
                Field::GpuUtil => (0.0..=100.0).contains(&v),
                // Below absolute zero is a broken sensor, not a cold GPU.
                Field::Temp => v > -273.15,
                Field::FbUsed | Field::Power | Field::Xid => v >= 0.0,
            }
    }
}

/// What one page says about one GPU series (one label set).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuReading {
    /// The series' labels as the exporter wrote them (`gpu`, `UUID`, `device`, `modelName`,
    /// `Hostname`, `pod`, `namespace`, `container`, …).
    pub labels: BTreeMap<String, String>,
    /// `DCGM_FI_PROF_GR_ENGINE_ACTIVE`, a ratio 0–1.
    pub engine_active: Option<f64>,
    /// `DCGM_FI_DEV_GPU_UTIL`, a percent 0–100.
    pub gpu_util: Option<f64>,
    /// `DCGM_FI_DEV_FB_USED`, in MiB.
    pub fb_used_mib: Option<f64>,
    /// `DCGM_FI_DEV_POWER_USAGE`, in watts.
    pub power_watts: Option<f64>,
    /// `DCGM_FI_DEV_GPU_TEMP`, in °C.
    pub temperature_c: Option<f64>,
    /// `DCGM_FI_DEV_XID_ERRORS`, the last XID (0 for none).
    pub last_xid: Option<f64>,
}

impl GpuReading {
    /// Utilization as a ratio and where it comes from: engine activity, else GPU util.
    pub fn utilization(&self) -> Option<(UtilSource, f64)> {
        self.engine_active
            .map(|r| (UtilSource::EngineActive, r))
            .or_else(|| {
                self.gpu_util
                    .map(|p| (UtilSource::GpuUtil, p * UtilSource::GpuUtil.to_ratio()))
            })
    }

    fn set(&mut self, field: Field, v: f64) {
        let slot = match field {
            Field::EngineActive => &mut self.engine_active,
            Field::GpuUtil => &mut self.gpu_util,
            Field::FbUsed => &mut self.fb_used_mib,
            Field::Power => &mut self.power_watts,
            Field::Temp => &mut self.temperature_c,
            Field::Xid => &mut self.last_xid,
        };
        *slot = Some(v);
    }
}

/// What [`parse_page`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedPage {
    /// One reading per GPU series, in label order.
    pub gpus: Vec<GpuReading>,
    /// Lines of the wanted metrics that are not in the text format (left out).
    pub malformed_lines: u64,
    /// Values refused as NaN, infinite or out of range for their field.
    pub rejected: u64,
    /// GPU series beyond [`MAX_GPUS_PER_PAGE`] (left out).
    pub dropped_gpus: u64,
}

/// Reads the six DCGM fields from a dcgm-exporter page (text format 0.0.4; OpenMetrics text
/// reads the same). Other metrics are skipped before their labels are parsed; a series without
/// a `gpu` or `UUID`/`uuid` label (NVSwitch, for one) is not a GPU and is skipped too. Each
/// distinct label set is one GPU series, as Prometheus would store it; a sample timestamp is
/// ignored (the cycle's time is used).
pub fn parse_page(text: &str) -> ParsedPage {
    let mut page = ParsedPage::default();
    let mut gpus: BTreeMap<BTreeMap<String, String>, GpuReading> = BTreeMap::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let end = line
            .find(|ch: char| ch == '{' || ch.is_whitespace())
            .unwrap_or(line.len());
        let Some(field) = Field::of(&line[..end]) else {
            continue;
        };
        let Some((labels, value)) = sample_of(&line[end..]) else {
            page.malformed_lines += 1;
            continue;
        };
        if !(labels.contains_key("gpu")
            || labels.contains_key("UUID")
            || labels.contains_key("uuid"))
        {
            continue;
        }
        if !field.accepts(value) {
            page.rejected += 1;
            continue;
        }
        if !gpus.contains_key(&labels) {
            if gpus.len() >= MAX_GPUS_PER_PAGE {
                page.dropped_gpus += 1;
                continue;
            }
            let reading = GpuReading {
                labels: labels.clone(),
                ..GpuReading::default()
            };
            gpus.insert(labels.clone(), reading);
        }
        if let Some(g) = gpus.get_mut(&labels) {
            g.set(field, value);
        }
    }
    page.gpus = gpus.into_values().collect();
    page
}

/// `{labels} value [timestamp]` (what follows a metric name) as labels and value.
fn sample_of(rest: &str) -> Option<(BTreeMap<String, String>, f64)> {
    let (labels, rest) = match rest.strip_prefix('{') {
        Some(inner) => labels_of(inner)?,
        None => (BTreeMap::new(), rest),
    };
    let mut parts = rest.split_whitespace();
    let value = match parts.next()? {
        "NaN" => f64::NAN,
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    // An optional timestamp, then nothing but an OpenMetrics exemplar (`# {…} v`).
    let mut next = parts.next();
    if next.is_some_and(|t| t != "#") {
        next.and_then(|t| t.parse::<f64>().ok())?;
        next = parts.next();
    }
    match next {
        None | Some("#") => Some((labels, value)),
        Some(_) => None,
    }
}

/// `k="v",…}` and what follows the brace.
fn labels_of(mut s: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim();
        let valid = key
            .chars()
            .next()
            .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
            && key
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
        if !valid {
            return None;
        }
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    ch => value.push(ch),
                },
                (_, ch) => value.push(ch),
            }
        };
        labels.insert(key.to_string(), value);
        s = s[end + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return None;
        }
    }
}

/// How one cycle went. Counts are of this cycle only.
#[derive(Debug, Clone, PartialEq)]
pub struct CycleStats {
    /// When the cycle started (its samples carry this second).
    pub at: Timestamp,
    /// Wall time of the cycle.
    pub duration: Duration,
    /// Exporters listed.
    pub targets: usize,
    /// Of those, from a context whose discovery refreshes fail (its last good list).
    pub stale_targets: usize,
    /// Targets whose page was read and had GPU series.
    pub ok: usize,
    /// Targets that failed: refused, unreachable, too large, not UTF-8, or no DCGM GPU series.
    pub failed: usize,
    /// Targets that did not answer within the timeout.
    pub timed_out: usize,
    /// GPU series read.
    pub gpus: usize,
    /// Utilization samples stored in the windows.
    pub samples: u64,
    /// Values refused as NaN, infinite or out of range.
    pub rejected: u64,
    /// Lines of the wanted metrics that did not parse.
    pub malformed_lines: u64,
    /// GPU series left out because a page had more than [`MAX_GPUS_PER_PAGE`].
    pub page_gpus_dropped: u64,
    /// GPUs without Datadog series because [`ScrapeOptions::max_series_gpus`] was reached.
    pub series_dropped: u64,
    /// GPUs without Datadog series because another GPU already has the same tags (MIG
    /// instances of one GPU used by one pod, or one exporter listed twice).
    pub series_duplicates: u64,
    /// The first failures, `(target, message)`, for logs.
    pub errors: Vec<(String, String)>,
}

impl CycleStats {
    fn new(at: Timestamp) -> CycleStats {
        CycleStats {
            at,
            duration: Duration::ZERO,
            targets: 0,
            stale_targets: 0,
            ok: 0,
            failed: 0,
            timed_out: 0,
            gpus: 0,
            samples: 0,
            rejected: 0,
            malformed_lines: 0,
            page_gpus_dropped: 0,
            series_dropped: 0,
            series_duplicates: 0,
            errors: Vec::new(),
        }
    }

    fn error(&mut self, target: &ExporterRef, message: String) {
        if self.errors.len() < MAX_ERRORS_KEPT {
            self.errors.push((target.to_string(), message));
        }
    }
}

/// The latest reading of one GPU that gets Datadog series.
#[derive(Debug, Clone, PartialEq)]
struct Latest {
    /// Values of the catalog's `GPU_SERIES` tags, in [`SERIES_TAGS`] order.
    tags: [String; 6],
    utilization_percent: Option<f64>,
    memory_bytes: Option<f64>,
    power_watts: Option<f64>,
    temperature_c: Option<f64>,
    last_xid: Option<f64>,
}

/// The tag keys of the per-GPU series, as the catalog lists them.
const SERIES_TAGS: &[&str] = skydeck_core::catalog::GPU_UTILIZATION.tags;

enum Outcome {
    Page(ParsedPage),
    Failed(String),
    TimedOut(String),
}

/// Scrapes the exporters of an [`ExporterSource`] cycle by cycle and keeps the windows and the
/// latest per-GPU readings.
pub struct Scraper<S> {
    source: S,
    opts: ScrapeOptions,
    windows: GpuWindows,
    latest: Vec<Latest>,
    last: Option<CycleStats>,
}

impl<S: fmt::Debug> fmt::Debug for Scraper<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scraper")
            .field("source", &self.source)
            .field("opts", &self.opts)
            .field("gpus", &self.windows.len())
            .finish()
    }
}

impl<S: ExporterSource> Scraper<S> {
    /// A scraper with empty windows.
    pub fn new(source: S, opts: ScrapeOptions) -> Scraper<S> {
        let windows = GpuWindows::new(opts.limits, opts.interval);
        Scraper {
            source,
            opts,
            windows,
            latest: Vec::new(),
            last: None,
        }
    }

    /// The source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The options.
    pub fn options(&self) -> &ScrapeOptions {
        &self.opts
    }

    /// The utilization windows, for [`crate::compute`].
    pub fn windows(&self) -> &GpuWindows {
        &self.windows
    }

    /// How the last cycle went; `None` before the first.
    pub fn last_cycle(&self) -> Option<&CycleStats> {
        self.last.as_ref()
    }

    /// Runs one cycle at `now`: scrapes every listed exporter (at most
    /// [`ScrapeOptions::concurrency`] at once, each within the timeout), stores utilization
    /// samples at `now`'s second, replaces the latest per-GPU readings and forgets samples
    /// older than the retention. Ends within about `ceil(targets / concurrency)` timeouts even
    /// if every target hangs.
    pub async fn run_cycle(&mut self, now: Timestamp) -> &CycleStats {
        let started = Instant::now();
        let mut stats = CycleStats::new(now);
        let targets = self.source.exporters();
        stats.targets = targets.len();
        stats.stale_targets = targets.iter().filter(|t| t.stale).count();

        let (source, opts) = (&self.source, &self.opts);
        // The futures are made up front (nothing runs until polled) rather than by a `map`
        // closure over references, which would make the cycle's future not `Send` (a
        // higher-ranked lifetime the compiler cannot prove), and serve spawns it.
        let scrapes: Vec<_> = targets
            .iter()
            .enumerate()
            .map(|(i, t)| async move { (i, scrape_one(source, opts, t).await) })
            .collect();
        let mut outcomes: Vec<(usize, Outcome)> = futures::stream::iter(scrapes)
            .buffer_unordered(opts.concurrency.max(1))
            .collect()
            .await;
        // Merged in target order, so which GPUs fall over the series cap does not depend on
        // which answer came first.
        outcomes.sort_by_key(|(i, _)| *i);

        let at = now.as_second();
        let rejected_before = self.windows.rejected_samples();
        let keep: Vec<&str> = self.opts.keep_labels.iter().map(String::as_str).collect();
        let mut latest = Vec::new();
        let mut seen: BTreeSet<[String; 6]> = BTreeSet::new();
        for (i, outcome) in outcomes {
            let target = &targets[i];
            let page = match outcome {
                Outcome::Page(p) => p,
                Outcome::Failed(m) => {
                    stats.failed += 1;
                    stats.error(target, m);
                    continue;
                }
                Outcome::TimedOut(m) => {
                    stats.timed_out += 1;
                    stats.error(target, m);
                    continue;
                }
            };
            stats.ok += 1;
            stats.rejected += page.rejected;
            stats.malformed_lines += page.malformed_lines;
            stats.page_gpus_dropped += page.dropped_gpus;
            for g in page.gpus {
                stats.gpus += 1;
                let mut labels = g.labels.clone();
                // The context is the `cluster`, as HTTP SD labels it for Prometheus.
                labels.insert(crate::window::CONTEXT_LABEL.into(), target.context.clone());
                let id = GpuId::from_labels(&labels, keep.iter().copied());
                let util = g.utilization();
                if let Some((source, ratio)) = util
                    && self.windows.push(&id, source, at, ratio) == crate::window::Pushed::Stored
                {
                    stats.samples += 1;
                }
                let tags = series_tags(&target.context, &g, &id);
                if seen.contains(&tags) {
                    stats.series_duplicates += 1;
                    continue;
                }
                if latest.len() >= self.opts.max_series_gpus {
                    stats.series_dropped += 1;
                    continue;
                }
                seen.insert(tags.clone());
                latest.push(Latest {
                    tags,
                    utilization_percent: util.map(|(_, r)| r * 100.0),
                    memory_bytes: g.fb_used_mib.map(|m| m * MIB),
                    power_watts: g.power_watts,
                    temperature_c: g.temperature_c,
                    last_xid: g.last_xid,
                });
            }
        }
        stats.rejected += self.windows.rejected_samples() - rejected_before;
        let keep_for = i64::try_from(self.opts.retention.as_secs()).unwrap_or(i64::MAX);
        self.windows.expire_before(at.saturating_sub(keep_for));
        self.latest = latest;
        stats.duration = started.elapsed();
        self.last.insert(stats)
    }

    /// The per-GPU Datadog series of the last cycle (catalog `GPU_UTILIZATION` in percent,
    /// `GPU_MEMORY_USED` in bytes, `GPU_POWER`, `GPU_TEMPERATURE`, `GPU_XID`), each tagged with
    /// every `GPU_SERIES` key (`none` for a label the exporter did not send), and the health
    /// samples `GPU_SOURCE_UP{source="scrape"}` (1 when a target was read) and
    /// `GPU_SAMPLES_REJECTED{source="scrape"}`, at `at`. Nothing before the first cycle: no
    /// reading is not a zero.
    pub fn samples(&self, at: Timestamp) -> Vec<Sample> {
        let Some(last) = &self.last else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(2 + self.latest.len() * 5);
        out.push(
            Sample::of(&c::GPU_SOURCE_UP, f64::from(u8::from(last.ok > 0)), at)
                .tag("source", SOURCE),
        );
        out.push(
            Sample::of(&c::GPU_SAMPLES_REJECTED, last.rejected as f64, at).tag("source", SOURCE),
        );
        for l in &self.latest {
            let fields = [
                (&c::GPU_UTILIZATION, l.utilization_percent),
                (&c::GPU_MEMORY_USED, l.memory_bytes),
                (&c::GPU_POWER, l.power_watts),
                (&c::GPU_TEMPERATURE, l.temperature_c),
                (&c::GPU_XID, l.last_xid),
            ];
            for (def, value) in fields {
                if let Some(v) = value {
                    out.push(
                        Sample::of(def, v, at)
                            .tags(SERIES_TAGS.iter().copied().zip(l.tags.iter().cloned())),
                    );
                }
            }
        }
        out
    }
}

/// The `GPU_SERIES` tag values of `g` read from a target of `context`.
fn series_tags(context: &str, g: &GpuReading, id: &GpuId) -> [String; 6] {
    let label = |k: &str| {
        g.labels
            .get(k)
            .filter(|v| !v.is_empty())
            .cloned()
            .unwrap_or_else(|| NONE.to_string())
    };
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| NONE.to_string());
    [
        context.to_string(),
        label("gpu"),
        label("modelName"),
        or_none(&id.hostname),
        // The workload's namespace and pod (dcgm-exporter's Kubernetes mapping), not the
        // exporter's: the direct scrape adds no labels of its own.
        or_none(&id.namespace),
        or_none(&id.pod),
    ]
}

/// Scrapes and parses one target. The timeout is enforced here too, so a source that does not
/// honour it still costs only its own timeout.
async fn scrape_one<S: ExporterSource + ?Sized>(
    source: &S,
    opts: &ScrapeOptions,
    t: &ExporterRef,
) -> Outcome {
    let fetched =
        tokio::time::timeout(opts.timeout, source.scrape(t, opts.timeout, opts.max_bytes)).await;
    let body = match fetched {
        Err(_) => {
            return Outcome::TimedOut(format!("{t}: no complete answer within {:?}", opts.timeout));
        }
        Ok(Err(TargetError::Timeout(m))) => return Outcome::TimedOut(m),
        Ok(Err(TargetError::Failed(m))) => return Outcome::Failed(m),
        Ok(Ok(body)) => body,
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return Outcome::Failed(format!(
            "{t}: the answer is not UTF-8 text; expected dcgm-exporter's Prometheus text format"
        ));
    };
    let page = parse_page(text);
    if page.gpus.is_empty() {
        return Outcome::Failed(format!(
            "{t}: no DCGM GPU series in the answer ({} bytes, {} malformed lines, {} refused \
             values); expected dcgm-exporter's text format with DCGM_FI_DEV_GPU_UTIL or \
             DCGM_FI_PROF_GR_ENGINE_ACTIVE per GPU",
            body.len(),
            page.malformed_lines,
            page.rejected
        ));
    }
    Outcome::Page(page)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use skydeck_discovery::TargetMode;

    use super::*;

    fn at() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    /// A dcgm-exporter 3.x/4.x page of `gpus` GPUs on `host` (Kubernetes mapping on), with
    /// fields it always writes that are not read here.
    fn page(host: &str, gpus: usize, engine: bool) -> String {
        let mut out = String::new();
        let fields: &[(&str, &str)] = &[
            ("DCGM_FI_DEV_SM_CLOCK", "1980"),
            ("DCGM_FI_DEV_GPU_UTIL", "87"),
            ("DCGM_FI_DEV_FB_USED", "61234"),
            ("DCGM_FI_DEV_POWER_USAGE", "612.5"),
            ("DCGM_FI_DEV_GPU_TEMP", "64"),
            ("DCGM_FI_DEV_XID_ERRORS", "0"),
            ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "0.25"),
        ];
        for (name, value) in fields {
            if *name == "DCGM_FI_PROF_GR_ENGINE_ACTIVE" && !engine {
                continue;
            }
            out.push_str(&format!("# HELP {name} A field.\n# TYPE {name} gauge\n"));
            for g in 0..gpus {
                out.push_str(&format!(
                    "{name}{{gpu=\"{g}\",UUID=\"GPU-{host}-{g}\",device=\"nvidia{g}\",\
                     modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"{host}\",\
                     DCGM_FI_DRIVER_VERSION=\"550.54.15\",pod=\"train-2ea4-head\",\
                     namespace=\"team-a\",container=\"trainer\"}} {value}\n"
                ));
            }
        }
        out
    }

    fn target(context: &str, pod: &str) -> ExporterRef {
        ExporterRef {
            context: context.into(),
            mode: TargetMode::Proxy,
            namespace: "gpu-operator".into(),
            service: "nvidia-dcgm-exporter".into(),
            pod: pod.into(),
            node: Some(format!("node-of-{pod}")),
            port: 9400,
            path: "/metrics".into(),
            scheme: "http".into(),
            stale: false,
        }
    }

    #[derive(Clone)]
    enum Answer {
        Page(String),
        Hang,
        Fail(TargetError),
    }

    /// Answers by pod name; tracks how many scrapes are in flight at once.
    #[derive(Default)]
    struct Fake {
        targets: Vec<(ExporterRef, Answer)>,
        in_flight: Arc<AtomicUsize>,
        max_in_flight: Arc<AtomicUsize>,
    }

    impl Fake {
        fn with(mut self, pod: &str, answer: Answer) -> Fake {
            self.targets.push((target("ctx-a", pod), answer));
            self
        }
    }

    struct InFlight(Arc<AtomicUsize>);

    impl Drop for InFlight {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    impl ExporterSource for Fake {
        fn exporters(&self) -> Vec<ExporterRef> {
            self.targets.iter().map(|(t, _)| t.clone()).collect()
        }

        fn scrape<'a>(
            &'a self,
            target: &'a ExporterRef,
            _timeout: Duration,
            _max_bytes: u64,
        ) -> BoxFuture<'a, Result<Bytes, TargetError>> {
            Box::pin(async move {
                let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                let _guard = InFlight(Arc::clone(&self.in_flight));
                self.max_in_flight.fetch_max(n, Ordering::SeqCst);
                // Every scrape waits a little, so scrapes overlap when they may.
                tokio::time::sleep(Duration::from_millis(5)).await;
                let answer = self
                    .targets
                    .iter()
                    .find(|(t, _)| t == target)
                    .map(|(_, a)| a.clone())
                    .expect("listed");
                match answer {
                    Answer::Page(p) => Ok(Bytes::from(p)),
                    Answer::Hang => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        Ok(Bytes::new())
                    }
                    Answer::Fail(e) => Err(e),
                }
            })
        }
    }

    fn opts(timeout: Duration) -> ScrapeOptions {
        ScrapeOptions {
            timeout,
            ..ScrapeOptions::default()
        }
    }

    /// Compiles only while a cycle over [`Discovery`] can be spawned (serve runs it in a task).
    #[allow(dead_code)]
    fn cycle_over_discovery_is_send(
        s: &mut Scraper<Discovery>,
    ) -> impl std::future::Future<Output = &CycleStats> + Send + '_ {
        s.run_cycle(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn page_fields_map_to_readings() {
        let text = "# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).\n\
            # TYPE DCGM_FI_DEV_GPU_UTIL gauge\n\
            DCGM_FI_DEV_GPU_UTIL{gpu=\"0\",UUID=\"GPU-a\",device=\"nvidia0\",modelName=\"NVIDIA A100-SXM4-80GB\",Hostname=\"n1\",pod=\"p\",namespace=\"ns\",container=\"c\"} 42\n\
            DCGM_FI_DEV_GPU_UTIL{gpu=\"1\",UUID=\"GPU-b\",modelName=\"say \\\"hi\\\"\",Hostname=\"n1\"} 7 1800000000000\n\
            DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu=\"0\",UUID=\"GPU-a\",device=\"nvidia0\",modelName=\"NVIDIA A100-SXM4-80GB\",Hostname=\"n1\",pod=\"p\",namespace=\"ns\",container=\"c\"} 0.375\n\
            DCGM_FI_DEV_FB_USED{gpu=\"0\",UUID=\"GPU-a\",device=\"nvidia0\",modelName=\"NVIDIA A100-SXM4-80GB\",Hostname=\"n1\",pod=\"p\",namespace=\"ns\",container=\"c\"} 1024\n\
            DCGM_FI_DEV_POWER_USAGE{gpu=\"0\",UUID=\"GPU-a\",device=\"nvidia0\",modelName=\"NVIDIA A100-SXM4-80GB\",Hostname=\"n1\",pod=\"p\",namespace=\"ns\",container=\"c\"} 301.25\n\
            DCGM_FI_DEV_GPU_TEMP{gpu=\"0\",UUID=\"GPU-a\",device=\"nvidia0\",modelName=\"NVIDIA A100-SXM4-80GB\",Hostname=\"n1\",pod=\"p\",namespace=\"ns\",container=\"c\"} 55\n\
            DCGM_FI_DEV_XID_ERRORS{gpu=\"0\",UUID=\"GPU-a\",device=\"nvidia0\",modelName=\"NVIDIA A100-SXM4-80GB\",Hostname=\"n1\",pod=\"p\",namespace=\"ns\",container=\"c\"} 79\n\
            DCGM_FI_DEV_SM_CLOCK{gpu=\"0\",this is not parsed at all\n\
            DCGM_FI_DEV_NVSWITCH_TEMPERATURE_CURRENT{nvswitch=\"0\"} 40\n\
            DCGM_FI_DEV_GPU_TEMP{nvswitch=\"0\"} 40\n\
            DCGM_FI_DEV_GPU_UTIL{gpu=\"2\",UUID=\"GPU-c\"} NaN\n\
            DCGM_FI_DEV_GPU_UTIL{gpu=\"3\",UUID=\"GPU-d\"} 150\n\
            DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu=\"3\",UUID=\"GPU-d\"} +Inf\n\
            DCGM_FI_DEV_POWER_USAGE{gpu=\"3\",UUID=\"GPU-d\"} -5\n\
            DCGM_FI_DEV_GPU_UTIL{gpu=\"4\",UUID=\"GPU-e\" 12\n\
            DCGM_FI_DEV_GPU_UTIL{gpu=\"4\",UUID=\"GPU-e\"} twelve\n\
            DCGM_FI_DEV_GPU_UTIL{gpu=\"4\",UUID=\"GPU-e\"} 12 13 14\n";
        let p = parse_page(text);
        assert_eq!(p.gpus.len(), 2, "{:#?}", p.gpus);
        assert_eq!((p.rejected, p.malformed_lines), (4, 3));
        let a = &p.gpus[0];
        assert_eq!(a.labels["UUID"], "GPU-a");
        assert_eq!(a.labels["container"], "c");
        assert_eq!(a.gpu_util, Some(42.0));
        assert_eq!(a.engine_active, Some(0.375));
        assert_eq!(a.fb_used_mib, Some(1024.0));
        assert_eq!(a.power_watts, Some(301.25));
        assert_eq!(a.temperature_c, Some(55.0));
        assert_eq!(a.last_xid, Some(79.0));
        // Engine activity wins over GPU util, as in the Prometheus source.
        assert_eq!(a.utilization(), Some((UtilSource::EngineActive, 0.375)));
        let b = &p.gpus[1];
        assert_eq!(b.labels["modelName"], "say \"hi\"");
        assert_eq!(b.utilization(), Some((UtilSource::GpuUtil, 0.07)));
        assert_eq!(b.fb_used_mib, None);
    }

    #[test]
    fn garbage_and_other_exporters_give_no_gpus() {
        for text in [
            "",
            "<html><body>502 Bad Gateway</body></html>",
            "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 1.5\n",
            "\u{0}\u{1}binary\u{7f}",
        ] {
            assert!(parse_page(text).gpus.is_empty(), "{text:?}");
        }
    }

    #[test]
    fn a_page_holds_at_most_max_gpus_per_page() {
        let text: String = (0..MAX_GPUS_PER_PAGE + 88)
            .map(|g| format!("DCGM_FI_DEV_GPU_UTIL{{gpu=\"{g}\",Hostname=\"n\"}} 1\n"))
            .collect();
        let p = parse_page(&text);
        assert_eq!(p.gpus.len(), MAX_GPUS_PER_PAGE);
        assert_eq!(p.dropped_gpus, 88);
    }

    #[tokio::test]
    async fn a_cycle_reads_the_good_target_and_counts_the_slow_and_the_garbage() {
        let fake = Fake::default()
            .with("dcgm-slow", Answer::Hang)
            .with(
                "dcgm-garbage",
                Answer::Page("<html>\u{1}not metrics</html>".into()),
            )
            .with("dcgm-good", Answer::Page(page("node-good", 8, false)))
            .with(
                "dcgm-refused",
                Answer::Fail(TargetError::Failed("ctx-a: pod gone".into())),
            )
            .with(
                "dcgm-own-timeout",
                Answer::Fail(TargetError::Timeout("ctx-a: too slow".into())),
            );
        let timeout = Duration::from_millis(400);
        let mut s = Scraper::new(fake, opts(timeout));
        assert!(s.samples(at()).is_empty(), "no cycle yet, no samples");
        let started = std::time::Instant::now();
        let st = s.run_cycle(at()).await.clone();
        let took = started.elapsed();
        // The hung target costs its own timeout, not the cycle's (generous bound).
        assert!(took < timeout + Duration::from_secs(3), "{took:?}");
        assert_eq!(
            (st.targets, st.ok, st.failed, st.timed_out),
            (5, 1, 2, 2),
            "{st:#?}"
        );
        assert_eq!((st.gpus, st.samples, st.rejected), (8, 8, 0));
        assert_eq!(st.errors.len(), 4);
        assert!(
            st.errors
                .iter()
                .any(|(t, m)| t.contains("dcgm-garbage") && m.contains("no DCGM GPU series")),
            "{:?}",
            st.errors
        );
        assert!(st.errors.iter().any(|(_, m)| m.contains("within 400ms")));

        let w = s.windows();
        assert_eq!(w.len(), 8);
        for (id, series) in w.iter() {
            assert_eq!(id.context.as_deref(), Some("ctx-a"));
            assert_eq!(id.hostname.as_deref(), Some("node-good"));
            assert_eq!(id.pod.as_deref(), Some("train-2ea4-head"));
            assert_eq!(series.source(), UtilSource::GpuUtil);
            assert_eq!(series.last(), Some((at().as_second(), 0.87)));
        }

        let samples = s.samples(at());
        let by =
            |name: &str| -> Vec<&Sample> { samples.iter().filter(|x| x.name == name).collect() };
        assert_eq!(by(c::GPU_SOURCE_UP.name)[0].value, 1.0);
        assert_eq!(by(c::GPU_SOURCE_UP.name)[0].tags["source"], "scrape");
        assert_eq!(by(c::GPU_SAMPLES_REJECTED.name)[0].value, 0.0);
        let util = by(c::GPU_UTILIZATION.name);
        assert_eq!(util.len(), 8);
        assert!((util[0].value - 87.0).abs() < 1e-9, "percent, not ratio");
        let keys: Vec<&str> = util[0].tags.keys().map(String::as_str).collect();
        let mut want = c::GPU_UTILIZATION.tags.to_vec();
        want.sort_unstable();
        assert_eq!(keys, want, "exactly the catalog's tag keys");
        assert_eq!(util[0].tags["cluster"], "ctx-a");
        assert_eq!(util[0].tags["kubernetes_namespace"], "team-a");
        assert_eq!(util[0].tags["pod"], "train-2ea4-head");
        assert_eq!(util[0].tags["modelName"], "NVIDIA H100 80GB HBM3");
        assert_eq!(by(c::GPU_MEMORY_USED.name)[0].value, 61234.0 * 1_048_576.0);
        assert_eq!(by(c::GPU_POWER.name)[0].value, 612.5);
        assert_eq!(by(c::GPU_TEMPERATURE.name)[0].value, 64.0);
        assert_eq!(by(c::GPU_XID.name)[0].value, 0.0);
        assert!(
            samples.iter().all(|x| x.def().is_some()),
            "only catalog metrics"
        );
        let gpus: BTreeSet<&str> = util.iter().map(|x| x.tags["gpu"].as_str()).collect();
        assert_eq!(gpus.len(), 8, "one series per GPU");
    }

    #[tokio::test]
    async fn concurrency_is_bounded() {
        let mut fake = Fake::default();
        for i in 0..40 {
            fake = fake.with(
                &format!("dcgm-{i:02}"),
                Answer::Page(page(&format!("n{i}"), 1, true)),
            );
        }
        let max = Arc::clone(&fake.max_in_flight);
        let mut s = Scraper::new(
            fake,
            ScrapeOptions {
                concurrency: 4,
                ..opts(Duration::from_secs(5))
            },
        );
        let st = s.run_cycle(at()).await;
        assert_eq!((st.ok, st.gpus), (40, 40));
        let m = max.load(Ordering::SeqCst);
        assert!((2..=4).contains(&m), "{m} scrapes were in flight at once");
        assert!(
            s.windows()
                .iter()
                .all(|(_, w)| w.source() == UtilSource::EngineActive)
        );
        let util: Vec<f64> = s
            .samples(at())
            .iter()
            .filter(|x| x.name == c::GPU_UTILIZATION.name)
            .map(|x| x.value)
            .collect();
        assert!(util.iter().all(|v| (v - 25.0).abs() < 1e-9), "{util:?}");
    }

    #[tokio::test]
    async fn series_are_capped_and_only_of_the_last_cycle() {
        let fake = Fake::default()
            .with("dcgm-a", Answer::Page(page("node-a", 8, false)))
            .with("dcgm-b", Answer::Page(page("node-b", 8, false)));
        let mut s = Scraper::new(
            fake,
            ScrapeOptions {
                max_series_gpus: 10,
                ..opts(Duration::from_secs(5))
            },
        );
        let st = s.run_cycle(at()).await;
        assert_eq!((st.gpus, st.series_dropped), (16, 6));
        assert_eq!(
            s.windows().len(),
            16,
            "the cap is on series, not on the windows"
        );
        let hosts = |s: &Scraper<Fake>| -> BTreeMap<String, usize> {
            let mut m = BTreeMap::new();
            for x in s.samples(at()) {
                if x.name == c::GPU_UTILIZATION.name {
                    *m.entry(x.tags["Hostname"].clone()).or_default() += 1;
                }
            }
            m
        };
        // Target order decides who is kept: all of node-a, then the first two of node-b.
        assert_eq!(
            hosts(&s),
            BTreeMap::from([("node-a".to_string(), 8), ("node-b".to_string(), 2)])
        );

        // node-b stops answering: its series go, its window samples stay until they expire.
        s.source.targets[1].1 = Answer::Fail(TargetError::Failed("gone".into()));
        let later = Timestamp::from_second(at().as_second() + 30).unwrap();
        let st = s.run_cycle(later).await;
        assert_eq!((st.ok, st.failed, st.series_dropped), (1, 1, 0));
        assert_eq!(hosts(&s), BTreeMap::from([("node-a".to_string(), 8)]));
        assert_eq!(s.windows().len(), 16);
        let much_later = Timestamp::from_second(at().as_second() + 7200).unwrap();
        s.run_cycle(much_later).await;
        assert_eq!(s.windows().len(), 8, "node-b's samples expired");
    }

    #[tokio::test]
    async fn same_tags_collapse_and_missing_labels_are_none_and_bad_values_counted() {
        // Two MIG instances of GPU 0 used by one pod: the same Datadog tags.
        let text = "DCGM_FI_DEV_GPU_UTIL{gpu=\"0\",UUID=\"GPU-x\",GPU_I_ID=\"1\",Hostname=\"n\"} 10\n\
                    DCGM_FI_DEV_GPU_UTIL{gpu=\"0\",UUID=\"GPU-x\",GPU_I_ID=\"2\",Hostname=\"n\"} 20\n\
                    DCGM_FI_DEV_GPU_UTIL{gpu=\"1\",UUID=\"GPU-y\",Hostname=\"n\"} NaN\n\
                    DCGM_FI_DEV_FB_USED{gpu=\"1\",UUID=\"GPU-y\",Hostname=\"n\"} 5\n";
        let fake = Fake::default().with("dcgm-mig", Answer::Page(text.into()));
        let mut s = Scraper::new(fake, opts(Duration::from_secs(5)));
        let st = s.run_cycle(at()).await;
        assert_eq!(
            (st.gpus, st.samples, st.rejected, st.series_duplicates),
            (3, 2, 1, 1)
        );
        let samples = s.samples(at());
        let util: Vec<&Sample> = samples
            .iter()
            .filter(|x| x.name == c::GPU_UTILIZATION.name)
            .collect();
        assert_eq!(util.len(), 1);
        assert_eq!(util[0].tags["pod"], "none");
        assert_eq!(util[0].tags["modelName"], "none");
        let rejected = samples
            .iter()
            .find(|x| x.name == c::GPU_SAMPLES_REJECTED.name)
            .unwrap();
        assert_eq!(rejected.value, 1.0);
        // GPU 1 has memory but no utilization: a memory series, no utilization series.
        let mem: Vec<&Sample> = samples
            .iter()
            .filter(|x| x.name == c::GPU_MEMORY_USED.name)
            .collect();
        assert_eq!(mem.len(), 1);
        assert_eq!(mem[0].tags["gpu"], "1");
    }

    #[tokio::test]
    async fn nothing_answering_is_source_down() {
        let fake = Fake::default().with("dcgm-x", Answer::Page("garbage".into()));
        let mut s = Scraper::new(fake, opts(Duration::from_secs(5)));
        s.run_cycle(at()).await;
        let up = s
            .samples(at())
            .into_iter()
            .find(|x| x.name == c::GPU_SOURCE_UP.name)
            .unwrap();
        assert_eq!(up.value, 0.0);
        let mut empty = Scraper::new(Fake::default(), opts(Duration::from_secs(5)));
        assert_eq!(empty.run_cycle(at()).await.targets, 0);
        assert_eq!(empty.samples(at()).len(), 2, "health only");
    }
}
