//! The SkyPilot collector in serve: each request refreshed on its own loop, the fleet
//! metrics recomputed from the latest good answer of each.
//!
//! A failed refresh keeps the previous answer (and so the previous values), marks its request
//! and the `skypilot` collector down, and drops the client when the server was unreachable or
//! refused the credential, so the next refresh connects again (with `--fallback-local` if
//! set). Metrics appear once status, jobs and cost have each answered once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::collections::BTreeMap;

use skydeck_collect::collectors::skypilot::idle_stop::{IdleRun, decision_samples};
use skydeck_collect::collectors::skypilot::{Part, PartAnswer, QueueProbe, SkypilotCollector, gpu};
use skydeck_collect::{CollectError, Collector};
use skydeck_core::catalog as c;
use skydeck_discovery::Discovery;
use skydeck_gpu::UtilizationOptions;
use skydeck_gpu::idle::{Action, IdleMarks, IdlePolicy};
use skydeck_gpu::scrape::Scraper;

/// The per-GPU series the direct scrape forwards to the sinks.
const GPU_SERIES: [&str; 5] = [
    c::GPU_UTILIZATION.name,
    c::GPU_MEMORY_USED.name,
    c::GPU_POWER.name,
    c::GPU_TEMPERATURE.name,
    c::GPU_XID.name,
];
use skydeck_skypilot::Client;
use skydeck_skypilot::api::{ClusterRecord, CostRecord, ManagedJobRecord};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::delivery::Delivery;
use crate::{RunResult, ServeOptions, Snapshot, jittered, sleep_or_stop};

/// The name of the built-in collector.
const NAME: &str = "skypilot";
/// The name of the GPU utilization loop in the snapshot.
const GPU: &str = "gpu";

#[derive(Default)]
struct Answers {
    clusters: Option<Arc<Vec<ClusterRecord>>>,
    jobs: Option<Arc<Vec<ManagedJobRecord>>>,
    costs: Option<Arc<Vec<CostRecord>>>,
    queues: Option<QueueProbe>,
}

/// The idle stop's marks from the last read, its decisions counted since start, and when it
/// last submitted a request for each cluster.
type IdleState = (
    IdleMarks,
    BTreeMap<(Action, &'static str), u64>,
    std::collections::HashMap<String, Instant>,
);

/// A cluster just acted on stays UP while SkyPilot stops it: it is left alone this long, so
/// serve does not resubmit on every read.
const ACTED_COOLDOWN: Duration = Duration::from_secs(15 * 60);

struct Fleet {
    collector: Arc<SkypilotCollector>,
    client: tokio::sync::Mutex<Option<Client>>,
    answers: Mutex<Answers>,
    snapshot: Snapshot,
    delivery: Delivery,
    queues: bool,
    /// The idle stop's policy, its marks from the last read and its cumulative counts.
    idle: IdlePolicy,
    idle_state: tokio::sync::Mutex<IdleState>,
    /// The direct-scrape GPU source, when serve reads the exporters itself.
    scrape: Option<(tokio::sync::Mutex<Scraper<Discovery>>, UtilizationOptions)>,
}

/// Starts one loop per request.
pub(crate) fn start(
    collector: Arc<SkypilotCollector>,
    opts: &ServeOptions,
    scrape: Option<(Scraper<Discovery>, UtilizationOptions)>,
    snapshot: Snapshot,
    delivery: Delivery,
    tasks: &mut JoinSet<()>,
    stop: &watch::Receiver<bool>,
) {
    let queues = collector.options().cluster_queues.is_some();
    let mut parts = vec![Part::Status, Part::Jobs, Part::Cost];
    if queues {
        parts.push(Part::Queues);
    }
    // Ready means every request answered within two of its intervals; the collector as a
    // whole within two of the shortest.
    let shortest = parts
        .iter()
        .map(|p| opts.intervals.of(*p))
        .min()
        .unwrap_or_default();
    snapshot.register(NAME, shortest);
    for p in &parts {
        snapshot.register_request(p.as_str(), opts.intervals.of(*p));
    }
    let fleet = Arc::new(Fleet {
        collector,
        client: tokio::sync::Mutex::new(None),
        answers: Mutex::new(Answers::default()),
        snapshot,
        delivery,
        queues,
        idle: opts.idle.clone(),
        idle_state: tokio::sync::Mutex::new(Default::default()),
        scrape: scrape.map(|(s, u)| (tokio::sync::Mutex::new(s), u)),
    });
    if fleet.collector.options().gpu.is_some() || fleet.scrape.is_some() {
        let interval = opts.intervals.gpu;
        fleet.snapshot.register(GPU, interval);
        let (fleet, mut stop, jitter) = (Arc::clone(&fleet), stop.clone(), opts.jitter);
        tasks.spawn(async move {
            // Utilization is judged against the clusters and their prices: wait for both.
            while {
                let g = fleet.lock();
                g.clusters.is_none() || g.costs.is_none()
            } {
                if !sleep_or_stop(Duration::from_millis(200), &mut stop).await {
                    return;
                }
            }
            loop {
                fleet.read_gpus().await;
                if !sleep_or_stop(jittered(interval, jitter), &mut stop).await {
                    break;
                }
            }
        });
    }
    for part in parts {
        let (fleet, mut stop) = (Arc::clone(&fleet), stop.clone());
        let interval = opts.intervals.of(part);
        let jitter = opts.jitter;
        tasks.spawn(async move {
            if part == Part::Queues {
                // The probe reads the UP clusters of a status answer: wait for the first.
                while fleet.lock().clusters.is_none() {
                    if !sleep_or_stop(Duration::from_millis(200), &mut stop).await {
                        return;
                    }
                }
            }
            loop {
                fleet.refresh(part).await;
                if !sleep_or_stop(jittered(interval, jitter), &mut stop).await {
                    break;
                }
            }
        });
    }
}

impl Fleet {
    fn lock(&self) -> std::sync::MutexGuard<'_, Answers> {
        self.answers.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn client(&self) -> Result<Client, CollectError> {
        let mut g = self.client.lock().await;
        if let Some(c) = &*g {
            return Ok(c.clone());
        }
        let c = self.collector.connect_with_fallback().await?;
        *g = Some(c.clone());
        Ok(c)
    }

    async fn refresh(&self, part: Part) {
        let t0 = Instant::now();
        let clusters = self.lock().clusters.clone().unwrap_or_default();
        let limit = self.collector.timeout();
        let result = tokio::time::timeout(limit, async {
            let client = self.client().await?;
            self.collector.fetch_part(&client, part, &clusters).await
        })
        .await;
        let elapsed = t0.elapsed();
        let answer = match result {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                if let CollectError::Skypilot(se) = &e
                    && se.is_unreachable_or_unauthorized()
                {
                    *self.client.lock().await = None;
                }
                if matches!(e, CollectError::Fallback { .. }) {
                    *self.client.lock().await = None;
                }
                return self.failed(part, e.to_string(), elapsed);
            }
            Err(_) => {
                // A hung request may mean a stuck connection: connect afresh next time.
                *self.client.lock().await = None;
                return self.failed(
                    part,
                    format!("timed out after {:.0} s", limit.as_secs_f64()),
                    elapsed,
                );
            }
        };
        tracing::info!(
            request = part.as_str(),
            elapsed_s = elapsed.as_secs_f64(),
            "SkyPilot refresh"
        );
        {
            let mut g = self.lock();
            match answer {
                PartAnswer::Status(c) => g.clusters = Some(Arc::new(c)),
                PartAnswer::Jobs(j) => g.jobs = Some(Arc::new(j)),
                PartAnswer::Cost(c) => g.costs = Some(Arc::new(c)),
                PartAnswer::Queues(q) => g.queues = Some(q),
            }
        }
        self.snapshot.record_request(part.as_str(), Ok(()));
        self.recompute(elapsed);
    }

    /// One read of GPU utilization, judged against the latest clusters and costs (in scope).
    async fn read_gpus(&self) {
        let t0 = Instant::now();
        let at = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
            .unwrap_or_else(|_| jiff::Timestamp::now());
        let (fetched, source, utilization) = if let Some((scraper, u)) = &self.scrape {
            let mut s = scraper.lock().await;
            let end = jiff::Timestamp::now();
            let stats = s.run_cycle(end).await.clone();
            // The per-GPU series go to the sinks only; /metrics keeps the fleet view.
            let series: Vec<_> = s
                .samples(at)
                .into_iter()
                .filter(|x| x.def().is_some_and(|d| GPU_SERIES.contains(&d.name)))
                .collect();
            self.delivery.push_extra("gpu_series", Arc::new(series));
            let fetched = if stats.ok == 0 && stats.targets > 0 {
                Err(format!(
                    "no DCGM exporter could be scraped ({} failed, {} timed out)",
                    stats.failed, stats.timed_out
                ))
            } else {
                Ok(gpu::Fetched {
                    windows: s.windows().clone(),
                    end,
                })
            };
            (fetched, "scrape", u.clone())
        } else if let Some(g) = self.collector.options().gpu.as_ref() {
            let fetched = gpu::fetch(g, t0 + self.collector.timeout()).await;
            (fetched, "prometheus", g.utilization.clone())
        } else {
            return;
        };
        let (clusters, costs) = {
            let a = self.lock();
            (
                a.clusters.clone().unwrap_or_default(),
                a.costs.clone().unwrap_or_default(),
            )
        };
        let scope = &self.collector.options().scope;
        let (clusters, _, costs) = scope.apply(&clusters, &[], &costs);
        let read = gpu::judge(&utilization, source, fetched, &clusters, &costs, at);
        let elapsed = t0.elapsed();
        match (read.problem, read.report) {
            (None, Some(report)) => {
                let mut samples = read.samples;
                // One pass at a time (the lock), marks carried from read to read.
                let mut st = self.idle_state.lock().await;
                st.2.retain(|_, t| t.elapsed() < ACTED_COOLDOWN);
                let mut policy = self.idle.clone();
                // Recently acted clusters show as excluded until the cooldown passes.
                policy.exclude_patterns.extend(st.2.keys().cloned());
                let run = self
                    .collector
                    .idle_stop(&policy, &report, &clusters, &st.0)
                    .await;
                for (d, o) in run.decisions.iter().zip(&run.outcomes) {
                    if *o == "acted" {
                        st.2.insert(d.cluster.clone(), Instant::now());
                    }
                }
                for line in run.summary(&self.idle) {
                    tracing::info!("{line}");
                }
                for (k, n) in run.counts() {
                    *st.1.entry(k).or_default() += n;
                }
                samples.extend(decision_samples(&st.1, at));
                st.0 = run.marks.clone();
                self.snapshot.set_idle(idle_json(&self.idle, &report, &run));
                drop(st);
                self.snapshot
                    .record(GPU, t0.elapsed(), RunResult::Ok(samples));
            }
            (problem, _) => {
                let p = problem.unwrap_or_else(|| "gpu utilization: no report".into());
                tracing::warn!("{p}");
                // Keep the last good verdicts' metrics; the source's health says it failed.
                self.snapshot.record(GPU, elapsed, RunResult::Failed(p));
            }
        }
        self.delivery.push(GPU, &self.snapshot);
    }

    fn failed(&self, part: Part, reason: String, elapsed: Duration) {
        tracing::warn!(request = part.as_str(), "SkyPilot refresh failed: {reason}");
        self.snapshot
            .record_request(part.as_str(), Err(reason.clone()));
        self.snapshot.record(
            NAME,
            elapsed,
            RunResult::Failed(format!("{}: {reason}", part.as_str())),
        );
    }

    fn recompute(&self, elapsed: Duration) {
        let (clusters, jobs, costs, queues) = {
            let g = self.lock();
            match (&g.clusters, &g.jobs, &g.costs) {
                (Some(c), Some(j), Some(k)) => {
                    (Arc::clone(c), Arc::clone(j), Arc::clone(k), g.queues)
                }
                _ => return, // not every request has answered yet
            }
        };
        let at = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
            .unwrap_or_else(|_| jiff::Timestamp::now());
        let queues = if self.queues { queues } else { None };
        let samples = self
            .collector
            .compute_from(&clusters, &jobs, &costs, queues, at);
        self.snapshot.record(NAME, elapsed, RunResult::Ok(samples));
        if !self.snapshot.requests_up() {
            self.snapshot
                .mark_down(NAME, "a SkyPilot request's last refresh failed".into());
        }
        self.delivery.push(NAME, &self.snapshot);
    }
}

/// `GET /api/idle`: every UP GPU cluster with its utilization, idle since, cost per hour, the
/// decision and its reason, and what was submitted.
fn idle_json(
    policy: &IdlePolicy,
    report: &skydeck_gpu::UtilizationReport,
    run: &IdleRun,
) -> serde_json::Value {
    let clusters: Vec<serde_json::Value> = run
        .decisions
        .iter()
        .zip(&run.outcomes)
        .map(|(d, o)| {
            let mut v = serde_json::to_value(d).unwrap_or_default();
            v["outcome"] = (*o).into();
            match run.requests.get(&d.cluster) {
                Some(Ok(id)) => v["request_id"] = id.clone().into(),
                Some(Err(e)) => v["error"] = e.clone().into(),
                None => {}
            }
            v
        })
        .collect();
    serde_json::json!({
        "at": report.at.to_string(),
        "policy": policy,
        "idle_clusters": report.idle_clusters,
        "unknown_clusters": report.unknown_clusters,
        "idle_burn_rate_hourly": report.idle_burn_rate_hourly,
        "clusters": clusters,
    })
}
