//! The built-in SkyPilot collector: three concurrent API requests, one pure computation.

mod fleet;
pub mod gpu;
pub mod idle_stop;
mod names;
mod scope;

use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use skydeck_core::Sample;
use skydeck_skypilot::api::ClusterRecord;
use skydeck_skypilot::api::{
    ClusterJobStatus, ClusterQueueQuery, ClusterStatus, CostReportQuery, JobsQueueQuery,
    StatusQuery,
};
use skydeck_skypilot::{Client, ClientOptions, Endpoint, EndpointSource, Target};

pub use fleet::{BreakdownKey, DEFAULT_TRAINING_PATTERN, FleetOptions, QueueProbe, compute};
pub use gpu::GpuOptions;
pub use names::managed_job_cluster_name;
pub use scope::{LabelMatch, Scope};

use crate::{CollectError, Collector, Context};

/// Options of the opt-in per-cluster queue probe (`--cluster-queues`).
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// Queue requests in flight at once.
    pub concurrency: usize,
    /// Limit of one cluster's queue request.
    pub timeout: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            concurrency: 8,
            timeout: Duration::from_secs(20),
        }
    }
}

/// Options of the SkyPilot collector.
#[derive(Debug, Clone)]
pub struct SkypilotOptions {
    /// Limit of one collection.
    pub timeout: Duration,
    /// What the metrics are split by, and the training pattern.
    pub fleet: FleetOptions,
    /// Probe each UP cluster's job queue for `skypilot.clusters.idle`.
    pub cluster_queues: Option<QueueOptions>,
    /// When the configured server is unreachable or rejects the credential, use a local API
    /// server on 127.0.0.1:46580 if one answers.
    pub fallback_local: bool,
    /// HTTP limits.
    pub client: ClientOptions,
    /// The part of the fleet the metrics cover (everything by default).
    pub scope: Scope,
    /// GPU utilization from a Prometheus with DCGM data, when configured.
    pub gpu: Option<GpuOptions>,
}

impl Default for SkypilotOptions {
    fn default() -> Self {
        SkypilotOptions {
            timeout: Duration::from_secs(120),
            fleet: FleetOptions::default(),
            cluster_queues: None,
            fallback_local: false,
            client: ClientOptions::default(),
            scope: Scope::default(),
            gpu: None,
        }
    }
}

/// Collects fleet metrics from one SkyPilot API server.
pub struct SkypilotCollector {
    target: Target,
    opts: SkypilotOptions,
    /// What went wrong with the GPU source in the last collection (its summary line).
    gpu_problem: std::sync::Mutex<Option<String>>,
    /// The GPU verdicts of the last collection and the clusters (in scope) they judge, for
    /// the idle stop.
    gpu_report: std::sync::Mutex<Option<(skydeck_gpu::UtilizationReport, Vec<ClusterRecord>)>>,
}

/// Where `--fallback-local` looks: SkyPilot's own local endpoint, whose port
/// `SKYPILOT_API_SERVER_LOCAL_PORT` overrides as it does for SkyPilot's client.
fn local_endpoint() -> String {
    match std::env::var("SKYPILOT_API_SERVER_LOCAL_PORT") {
        Ok(port) if !port.trim().is_empty() => format!("http://127.0.0.1:{}", port.trim()),
        _ => skydeck_skypilot::DEFAULT_ENDPOINT.to_string(),
    }
}

/// The API paths a collection is waiting on, for the timeout message.
#[derive(Default)]
struct Pending(std::sync::Mutex<Vec<&'static str>>);

impl Pending {
    async fn track<T>(&self, path: &'static str, fut: impl Future<Output = T>) -> T {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(path);
        let out = fut.await;
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = v.iter().position(|p| *p == path) {
            v.remove(i);
        }
        out
    }

    fn paths(&self) -> Vec<&'static str> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Days of cost history requested: the longest metric window is 7 days.
const COST_DAYS: u32 = 7;

impl SkypilotCollector {
    /// A collector for `target`.
    pub fn new(target: Target, opts: SkypilotOptions) -> Self {
        SkypilotCollector {
            target,
            opts,
            gpu_problem: std::sync::Mutex::new(None),
            gpu_report: std::sync::Mutex::new(None),
        }
    }

    fn client_options(&self) -> ClientOptions {
        ClientOptions {
            call_timeout: self.opts.client.call_timeout.min(self.opts.timeout),
            ..self.opts.client.clone()
        }
    }

    /// A client for the configured server after a health check (reachable, compatible API
    /// version, credential not refused).
    async fn connect(&self) -> Result<Client, skydeck_skypilot::Error> {
        let client = Client::new(self.target.clone(), self.client_options())?;
        client.health().await?;
        Ok(client)
    }

    /// With `fallback_local`, when the configured server cannot be used (`err`), a client for
    /// the local API server if one answers. Never starts a server.
    async fn fallback(&self, err: skydeck_skypilot::Error) -> Result<Client, CollectError> {
        if !self.opts.fallback_local || !err.is_unreachable_or_unauthorized() {
            return Err(err.into());
        }
        let local = Endpoint::parse(&local_endpoint(), EndpointSource::Fallback)?;
        let local_client = Client::new(
            Target {
                endpoint: local,
                credential: None,
            },
            self.client_options(),
        )?;
        match local_client.health().await {
            Ok(_) => {
                tracing::warn!(
                    configured = %self.target.endpoint,
                    reason = %err,
                    "using the local SkyPilot API server at {} (--fallback-local)",
                    local_client.target().endpoint
                );
                Ok(local_client)
            }
            Err(local_err) => Err(CollectError::Fallback {
                primary: err,
                local: local_err,
            }),
        }
    }

    /// The three responses the metrics need, requested concurrently: the run takes as long as
    /// the slowest one (the jobs queue, where the server spawns a Python subprocess).
    async fn fetch(
        &self,
        client: &Client,
        pending: &Pending,
    ) -> Result<Fleet, skydeck_skypilot::Error> {
        let (status_q, jobs_q) = (StatusQuery::default(), JobsQueueQuery::default());
        let cost_q = CostReportQuery {
            days: COST_DAYS,
            cluster_names: None,
        };
        let (clusters, jobs, costs) = tokio::try_join!(
            pending.track("/status", client.status(&status_q)),
            pending.track("/jobs/queue/v2", client.jobs_queue(&jobs_q)),
            pending.track("/cost_report", client.cost_report(&cost_q)),
        )?;
        Ok((clusters, jobs.jobs, costs))
    }

    async fn collect_once(
        &self,
        cx: &Context,
        pending: &Pending,
    ) -> Result<Vec<Sample>, CollectError> {
        // The Prometheus query runs beside the SkyPilot requests, under the same limit.
        let limit = tokio::time::Instant::now() + self.opts.timeout.min(cx.remaining());
        let gpu = async {
            match &self.opts.gpu {
                Some(g) => Some(gpu::fetch(g, limit).await),
                None => None,
            }
        };
        let (fleet, gpu) = tokio::join!(self.fleet(pending), gpu);
        let (clusters, jobs, costs, queues) = fleet?;
        let mut samples = self.compute_from(&clusters, &jobs, &costs, queues, cx.started_at);
        if let (Some(fetched), Some(g)) = (gpu, &self.opts.gpu) {
            let (scoped, costs) = if self.opts.scope.is_empty() {
                (clusters, costs)
            } else {
                let (c, _, k) = self.opts.scope.apply(&clusters, &[], &costs);
                (c, k)
            };
            let read = gpu::judge(
                &g.utilization,
                "prometheus",
                fetched,
                &scoped,
                &costs,
                cx.started_at,
            );
            samples.extend(read.samples);
            *lock(&self.gpu_problem) = read.problem;
            *lock(&self.gpu_report) = read.report.map(|r| (r, scoped));
        }
        Ok(samples)
    }

    /// The SkyPilot answers of one collection (and the queue probe when enabled).
    async fn fleet(&self, pending: &Pending) -> Result<FleetAndQueues, CollectError> {
        let (client, (clusters, jobs, costs)) =
            match pending.track("/api/health", self.connect()).await {
                Ok(client) => match self.fetch(&client, pending).await {
                    Ok(fleet) => (client, fleet),
                    // A server may accept /api/health and refuse the credential afterwards.
                    Err(e) => {
                        let local = self.fallback(e).await?;
                        let fleet = self.fetch(&local, pending).await?;
                        (local, fleet)
                    }
                },
                Err(e) => {
                    let local = pending.track("/api/health", self.fallback(e)).await?;
                    let fleet = self.fetch(&local, pending).await?;
                    (local, fleet)
                }
            };
        let queues = match &self.opts.cluster_queues {
            Some(q) => Some(
                pending
                    .track("/queue", probe_queues(&client, &clusters, q))
                    .await,
            ),
            None => None,
        };
        Ok((clusters, jobs, costs, queues))
    }

    /// The GPU verdicts of the last collection and the clusters they judge, when a GPU source
    /// is configured and answered.
    pub fn gpu_report(&self) -> Option<(skydeck_gpu::UtilizationReport, Vec<ClusterRecord>)> {
        lock(&self.gpu_report).clone()
    }

    /// The options this collector runs with.
    pub fn options(&self) -> &SkypilotOptions {
        &self.opts
    }

    /// A client for the configured server (health-checked), else, with `fallback_local`, for
    /// the local one. `serve` connects once and again after a failure.
    pub async fn connect_with_fallback(&self) -> Result<Client, CollectError> {
        match self.connect().await {
            Ok(c) => Ok(c),
            Err(e) => self.fallback(e).await,
        }
    }

    /// One of the requests the metrics come from, on its own (`serve` refreshes each on its
    /// own interval). `Queues` probes the UP clusters of `clusters`.
    pub async fn fetch_part(
        &self,
        client: &Client,
        part: Part,
        clusters: &[skydeck_skypilot::api::ClusterRecord],
    ) -> Result<PartAnswer, CollectError> {
        Ok(match part {
            Part::Status => PartAnswer::Status(client.status(&StatusQuery::default()).await?),
            Part::Jobs => {
                PartAnswer::Jobs(client.jobs_queue(&JobsQueueQuery::default()).await?.jobs)
            }
            Part::Cost => PartAnswer::Cost(
                client
                    .cost_report(&CostReportQuery {
                        days: COST_DAYS,
                        cluster_names: None,
                    })
                    .await?,
            ),
            Part::Queues => {
                let q = self.opts.cluster_queues.clone().unwrap_or_default();
                let in_scope: Vec<_> = clusters
                    .iter()
                    .filter(|c| self.opts.scope.cluster(c))
                    .cloned()
                    .collect();
                PartAnswer::Queues(probe_queues(client, &in_scope, &q).await)
            }
        })
    }

    /// Every fleet metric from the three answers (and the queue probe), restricted to the
    /// scope, stamped `at`.
    pub fn compute_from(
        &self,
        clusters: &[skydeck_skypilot::api::ClusterRecord],
        jobs: &[skydeck_skypilot::api::ManagedJobRecord],
        costs: &[skydeck_skypilot::api::CostRecord],
        queues: Option<QueueProbe>,
        at: jiff::Timestamp,
    ) -> Vec<Sample> {
        if self.opts.scope.is_empty() {
            return compute(clusters, jobs, costs, queues, at, &self.opts.fleet);
        }
        let (clusters, jobs, costs) = self.opts.scope.apply(clusters, jobs, costs);
        compute(&clusters, &jobs, &costs, queues, at, &self.opts.fleet)
    }
}

/// One of the SkyPilot requests the fleet metrics are computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// `POST /status`: clusters (cheap for the server).
    Status,
    /// `POST /jobs/queue/v2`: managed jobs (the server spawns a Python subprocess for each).
    Jobs,
    /// `POST /cost_report`: 7 days of cost (the slowest at scale).
    Cost,
    /// `POST /queue` per UP cluster (`cluster_queues`), for `skypilot.clusters.idle`.
    Queues,
}

impl Part {
    /// The name in logs and in the `request` tag.
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Status => "status",
            Part::Jobs => "jobs",
            Part::Cost => "cost",
            Part::Queues => "queues",
        }
    }
}

/// The answer to one [`Part`].
#[derive(Debug, Clone)]
pub enum PartAnswer {
    /// Clusters.
    Status(Vec<skydeck_skypilot::api::ClusterRecord>),
    /// Managed-job task rows.
    Jobs(Vec<skydeck_skypilot::api::ManagedJobRecord>),
    /// Cost-report rows.
    Cost(Vec<skydeck_skypilot::api::CostRecord>),
    /// Idle and unreachable cluster counts.
    Queues(QueueProbe),
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The three answers and the queue probe.
type FleetAndQueues = (
    Vec<skydeck_skypilot::api::ClusterRecord>,
    Vec<skydeck_skypilot::api::ManagedJobRecord>,
    Vec<skydeck_skypilot::api::CostRecord>,
    Option<QueueProbe>,
);

/// What `/status`, `/jobs/queue/v2` and `/cost_report` returned.
type Fleet = (
    Vec<skydeck_skypilot::api::ClusterRecord>,
    Vec<skydeck_skypilot::api::ManagedJobRecord>,
    Vec<skydeck_skypilot::api::CostRecord>,
);

/// Reads the job queue of every UP cluster, a bounded number at a time, each under its own
/// limit. A queue that cannot be read counts as unreachable, not as idle or busy.
async fn probe_queues(
    client: &Client,
    clusters: &[skydeck_skypilot::api::ClusterRecord],
    opts: &QueueOptions,
) -> QueueProbe {
    // Owned names: a stream of borrowed items trips the compiler's higher-ranked lifetime
    // inference once the future is boxed.
    let up: Vec<String> = clusters
        .iter()
        .filter(|c| c.status == ClusterStatus::Up)
        .map(|c| c.name.clone())
        .collect();
    let results: Vec<Option<bool>> = futures::stream::iter(up)
        .map(|name: String| async move {
            let q = ClusterQueueQuery {
                cluster_name: name.clone(),
                skip_finished: true,
                all_users: true,
            };
            match tokio::time::timeout(opts.timeout, client.cluster_queue(&q)).await {
                Ok(Ok(jobs)) => Some(!jobs.iter().any(|j| {
                    matches!(
                        j.status,
                        ClusterJobStatus::Pending
                            | ClusterJobStatus::SettingUp
                            | ClusterJobStatus::Running
                    )
                })),
                Ok(Err(e)) => {
                    tracing::debug!(cluster = %name, "queue unreadable: {e}");
                    None
                }
                Err(_) => {
                    tracing::debug!(cluster = %name, "queue request timed out");
                    None
                }
            }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    QueueProbe {
        idle: results.iter().filter(|r| **r == Some(true)).count(),
        unreachable: results.iter().filter(|r| r.is_none()).count(),
    }
}

impl Collector for SkypilotCollector {
    fn name(&self) -> &str {
        "skypilot"
    }

    fn timeout(&self) -> Duration {
        self.opts.timeout
    }

    fn problem(&self) -> Option<String> {
        lock(&self.gpu_problem).clone()
    }

    fn note(&self) -> Option<String> {
        (!self.opts.scope.is_empty()).then(|| format!("filter on: {}", self.opts.scope.describe()))
    }

    fn hard_limit(&self) -> Duration {
        // The collector enforces its own timeout so the error can name the requests that were
        // still outstanding; the runner's backstop comes a moment later.
        self.opts.timeout + Duration::from_secs(1)
    }

    fn collect<'a>(&'a self, cx: &'a Context) -> BoxFuture<'a, Result<Vec<Sample>, CollectError>> {
        async move {
            let pending = Pending::default();
            let limit = self.opts.timeout.min(cx.remaining());
            match tokio::time::timeout(limit, self.collect_once(cx, &pending)).await {
                Ok(r) => r,
                Err(_) => Err(CollectError::TimedOut {
                    after: limit,
                    killed: None,
                    waiting_for: pending.paths(),
                }),
            }
        }
        .boxed()
    }
}
