//! The built-in SkyPilot collector: three concurrent API requests, one pure computation.

mod fleet;
mod names;

use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use skydeck_core::Sample;
use skydeck_skypilot::api::{
    ClusterJobStatus, ClusterQueueQuery, ClusterStatus, CostReportQuery, JobsQueueQuery,
    StatusQuery,
};
use skydeck_skypilot::{Client, ClientOptions, Endpoint, EndpointSource, Target};

pub use fleet::{BreakdownKey, DEFAULT_TRAINING_PATTERN, FleetOptions, QueueProbe, compute};
pub use names::managed_job_cluster_name;

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
}

impl Default for SkypilotOptions {
    fn default() -> Self {
        SkypilotOptions {
            timeout: Duration::from_secs(120),
            fleet: FleetOptions::default(),
            cluster_queues: None,
            fallback_local: false,
            client: ClientOptions::default(),
        }
    }
}

/// Collects fleet metrics from one SkyPilot API server.
pub struct SkypilotCollector {
    target: Target,
    opts: SkypilotOptions,
}

/// Days of cost history requested: the longest metric window is 7 days.
const COST_DAYS: u32 = 7;

impl SkypilotCollector {
    /// A collector for `target`.
    pub fn new(target: Target, opts: SkypilotOptions) -> Self {
        SkypilotCollector { target, opts }
    }

    fn client_options(&self) -> ClientOptions {
        ClientOptions {
            call_timeout: self.opts.client.call_timeout.min(self.opts.timeout),
            ..self.opts.client.clone()
        }
    }

    /// A client for the configured server, or for the local one when the configured one cannot
    /// be used and `fallback_local` is on. Never starts a server.
    async fn connect(&self) -> Result<Client, CollectError> {
        let client = Client::new(self.target.clone(), self.client_options())?;
        let err = match client.health().await {
            Ok(_) => return Ok(client),
            Err(e) => e,
        };
        if !self.opts.fallback_local || !err.is_unreachable_or_unauthorized() {
            return Err(err.into());
        }
        let local = Endpoint::parse(skydeck_skypilot::DEFAULT_ENDPOINT, EndpointSource::Fallback)?;
        if local.url == self.target.endpoint.url && self.target.credential.is_none() {
            return Err(err.into());
        }
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
                    skydeck_skypilot::DEFAULT_ENDPOINT
                );
                Ok(local_client)
            }
            Err(local_err) => Err(CollectError::Fallback {
                primary: err,
                local: local_err,
            }),
        }
    }

    async fn collect_once(&self, cx: &Context) -> Result<Vec<Sample>, CollectError> {
        let client = self.connect().await?;
        // The three requests run concurrently: the run takes as long as the slowest one
        // (the jobs queue, where the server spawns a Python subprocess per request).
        let (status_q, jobs_q) = (StatusQuery::default(), JobsQueueQuery::default());
        let cost_q = CostReportQuery { days: COST_DAYS };
        let (clusters, jobs, costs) = tokio::try_join!(
            client.status(&status_q),
            client.jobs_queue(&jobs_q),
            client.cost_report(&cost_q),
        )?;
        let queues = match &self.opts.cluster_queues {
            Some(q) => Some(probe_queues(&client, &clusters, q).await),
            None => None,
        };
        Ok(compute(
            &clusters,
            &jobs.jobs,
            &costs,
            queues,
            cx.started_at,
            &self.opts.fleet,
        ))
    }
}

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

    fn collect<'a>(&'a self, cx: &'a Context) -> BoxFuture<'a, Result<Vec<Sample>, CollectError>> {
        self.collect_once(cx).boxed()
    }
}
