//! `skydeck serve`: the collectors on a schedule, the last good snapshot behind `/metrics`,
//! health and readiness, service discovery, and a push to the sinks after each collection.
//!
//! The SkyPilot requests differ a lot in what they cost the API server (`/jobs/queue/v2`
//! spawns a Python subprocess there, `/cost_report` is the slowest at scale), so each is
//! refreshed on its own interval and the fleet metrics are recomputed from the latest good
//! answer of each. Every loop is sequential, so one collector never runs twice at once, and
//! every interval carries jitter so replicas and restarts do not synchronise. The SkyPilot
//! server is asked on this schedule only, never once per scrape.

mod delivery;
mod fleet;
pub mod http;
pub mod snapshot;

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use skydeck_collect::collectors::skypilot::{Part, SkypilotCollector};
use skydeck_collect::{Collector, Context};
use skydeck_discovery::Discovery;
use skydeck_sinks::Sink;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use snapshot::{RunResult, Snapshot};

/// How often each source is refreshed.
#[derive(Debug, Clone)]
pub struct Intervals {
    /// `POST /status`.
    pub status: Duration,
    /// `POST /jobs/queue/v2`.
    pub jobs: Duration,
    /// `POST /cost_report`.
    pub cost: Duration,
    /// `POST /queue` per UP cluster (only with `cluster_queues`).
    pub queues: Duration,
    /// External collectors.
    pub collectors: Duration,
    /// GPU utilization (when a GPU source is configured).
    pub gpu: Duration,
}

impl Default for Intervals {
    fn default() -> Self {
        Intervals {
            status: Duration::from_secs(30),
            jobs: Duration::from_secs(60),
            cost: Duration::from_secs(600),
            queues: Duration::from_secs(300),
            collectors: Duration::from_secs(60),
            gpu: Duration::from_secs(60),
        }
    }
}

impl Intervals {
    /// The interval of a SkyPilot request.
    pub fn of(&self, part: Part) -> Duration {
        match part {
            Part::Status => self.status,
            Part::Jobs => self.jobs,
            Part::Cost => self.cost,
            Part::Queues => self.queues,
        }
    }
}

/// Options of `serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Refresh intervals.
    pub intervals: Intervals,
    /// Each interval varies by up to this fraction either way (0.1 = ±10 %).
    pub jitter: f64,
    /// Limit of one push to a sink.
    pub push_timeout: Duration,
    /// Bearer token every route but the probes requires, when set.
    pub auth_token: Option<SecretString>,
    /// The idle stop, run after every GPU read (default: report only).
    pub idle: skydeck_gpu::idle::IdlePolicy,
    /// GPU utilization from the DCGM exporters discovery finds, scraped through each
    /// context's API server (instead of a Prometheus): how to scrape and how to judge.
    pub gpu_scrape: Option<(
        skydeck_gpu::scrape::ScrapeOptions,
        skydeck_gpu::UtilizationOptions,
    )>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            intervals: Intervals::default(),
            jitter: 0.1,
            push_timeout: Duration::from_secs(30),
            auth_token: None,
            idle: Default::default(),
            gpu_scrape: None,
        }
    }
}

/// What serve runs.
pub struct Sources {
    /// The built-in SkyPilot collector, refreshed request by request.
    pub skypilot: Option<Arc<SkypilotCollector>>,
    /// Other collectors (external commands), each run whole on its interval.
    pub collectors: Vec<(Arc<dyn Collector>, Duration)>,
    /// Where each collection is pushed (Datadog).
    pub sinks: Vec<Arc<dyn Sink>>,
    /// DCGM exporter discovery, when enabled.
    pub discovery: Option<Discovery>,
}

/// A running serve.
pub struct Serve {
    snapshot: Snapshot,
    discovery: Option<Discovery>,
    auth: Option<Arc<http::Auth>>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// `interval` ± `jitter` (a fraction), at least 1 ms.
pub(crate) fn jittered(interval: Duration, jitter: f64) -> Duration {
    let j = jitter.clamp(0.0, 0.5);
    let f = 1.0 + (fastrand::f64() * 2.0 - 1.0) * j;
    interval.mul_f64(f).max(Duration::from_millis(1))
}

/// Sleeps for `d` unless `stop` turns true first; returns false when stopping.
pub(crate) async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => !*stop.borrow(),
        _ = stop.changed() => false,
    }
}

impl Serve {
    /// Starts every loop (needs a tokio runtime). The first run of every source starts at
    /// once.
    pub fn start(opts: ServeOptions, sources: Sources) -> Serve {
        let snapshot = Snapshot::default();
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let delivery = delivery::Delivery::start(
            sources.sinks,
            snapshot.clone(),
            opts.push_timeout,
            &mut tasks,
            stop_rx.clone(),
        );

        if let Some(sk) = sources.skypilot {
            let scrape = match (&opts.gpu_scrape, &sources.discovery) {
                (Some((so, uo)), Some(d)) => Some((
                    skydeck_gpu::scrape::Scraper::new(d.clone(), so.clone()),
                    uo.clone(),
                )),
                _ => None,
            };
            fleet::start(
                sk,
                &opts,
                scrape,
                snapshot.clone(),
                delivery.clone(),
                &mut tasks,
                &stop_rx,
            );
        }
        for (c, interval) in sources.collectors {
            snapshot.register(c.name(), interval);
            let (snapshot, delivery, mut stop) =
                (snapshot.clone(), delivery.clone(), stop_rx.clone());
            let jitter = opts.jitter;
            tasks.spawn(async move {
                loop {
                    run_collector(&*c, &snapshot, &delivery).await;
                    if !sleep_or_stop(jittered(interval, jitter), &mut stop).await {
                        break;
                    }
                }
            });
        }
        let auth = opts.auth_token.map(|t| Arc::new(http::Auth::new(t)));
        Serve {
            snapshot,
            discovery: sources.discovery,
            auth,
            stop,
            tasks,
        }
    }

    /// The snapshot the loops write.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The HTTP routes: `/metrics`, `/healthz`, `/readyz`, and discovery's when enabled.
    pub fn router(&self) -> axum::Router {
        http::router(http::State {
            snapshot: self.snapshot.clone(),
            discovery: self.discovery.clone(),
            auth: self.auth.clone(),
        })
    }

    /// Stops every loop: no new run starts; runs in flight are abandoned.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(d) = &self.discovery {
            d.shutdown();
        }
        // Give loops a moment to notice; whatever still runs (a request in flight) is dropped.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
    }
}

/// One run of a whole collector under its own limit.
async fn run_collector(c: &dyn Collector, snapshot: &Snapshot, delivery: &delivery::Delivery) {
    let started_at = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .unwrap_or_else(|_| jiff::Timestamp::now());
    let cx = Context {
        started_at,
        deadline: tokio::time::Instant::now() + c.hard_limit(),
    };
    let t0 = tokio::time::Instant::now();
    let result = match tokio::time::timeout(c.hard_limit(), c.collect(&cx)).await {
        Ok(Ok(samples)) => RunResult::Ok(samples),
        Ok(Err(e)) => RunResult::Failed(e.to_string()),
        Err(_) => RunResult::Failed(format!(
            "timed out after {:.0} s",
            c.timeout().as_secs_f64()
        )),
    };
    let elapsed = t0.elapsed();
    match &result {
        RunResult::Ok(s) => tracing::info!(
            collector = c.name(),
            samples = s.len(),
            elapsed_s = elapsed.as_secs_f64(),
            "collected"
        ),
        RunResult::Failed(e) => tracing::warn!(collector = c.name(), "collection failed: {e}"),
    }
    snapshot.record(c.name(), elapsed, result);
    delivery.push(c.name(), snapshot);
}
