//! The reconciler: drives every node through its lifecycle by comparing the `nodes` table with
//! SkyPilot, and repairs drift.
//!
//! Exactly one replica reconciles at a time: it holds the `reconciler` lease row, renewed every
//! tick and taken over by another replica when it lapses (a killed leader is replaced within
//! one lease period). Within a tick each due node is handled by one task, at most
//! `max_parallel` at once, so a node never has two steps in flight.
//!
//! Launches are exactly-once across crashes: the node is claimed (`launch_intent_at`) before
//! `/launch` is sent and the request id is stored the moment SkyPilot returns it. A replica that
//! finds a claim without a request id (its predecessor died in between) asks SkyPilot's request
//! table for a launch of that cluster and adopts it instead of launching again.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skydeck_skypilot::api::{ClusterStatus, CostReportQuery, DownBody, LaunchBody, StatusQuery};
use skydeck_skypilot::{Client, Error as SkyError};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::status::NodeStatus;
use crate::store::{Node, Store};
use crate::task::{TaskContext, render};
use crate::token;

/// The lease that makes one replica the reconciler.
pub const LEASE: &str = "reconciler";

/// How the reconciler runs.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// Time between ticks.
    pub tick: Duration,
    /// Lease period: a dead leader is replaced after at most this long.
    pub lease_ttl: Duration,
    /// Agents heartbeat this often; three missed make a node unhealthy.
    pub heartbeat_interval: Duration,
    /// How often a launching or draining node's SkyPilot request is looked at.
    pub poll_interval: Duration,
    /// How often `/status` is compared with the table.
    pub drift_interval: Duration,
    /// Graceful termination waits at most this long for the agent to report it drained.
    pub drain_timeout: Duration,
    /// A node whose agent has not registered this long after the cluster came up is unhealthy.
    pub register_timeout: Duration,
    /// A claim without a request id older than this was abandoned by a dead replica.
    pub abandoned_after: Duration,
    /// Nodes handled at once.
    pub max_parallel: usize,
    /// Cluster names skydeck creates start with this and a dash.
    pub cluster_prefix: String,
    /// The URL nodes reach the control plane at.
    pub public_url: String,
    /// sha256 of the agent binary.
    pub agent_sha256: String,
}

/// What the reconciler knows that the table does not, shared with the API and metrics.
#[derive(Debug, Default)]
pub struct Observed {
    /// Clusters with skydeck's prefix that SkyPilot has and the table does not.
    pub unmanaged: BTreeSet<String>,
    /// Whether this replica holds the lease.
    pub leader: bool,
    /// When `/status` was last read successfully (ms).
    pub last_drift_check: Option<i64>,
}

/// The reconciler of one replica.
pub struct Reconciler {
    db: Store,
    sky: Client,
    cfg: ReconcilerConfig,
    holder: String,
    observed: Arc<Mutex<Observed>>,
    wake: Arc<tokio::sync::Notify>,
    last_drift: Option<tokio::time::Instant>,
}

impl Reconciler {
    /// A reconciler identified by `holder` in the lease.
    pub fn new(
        db: Store,
        sky: Client,
        cfg: ReconcilerConfig,
        holder: String,
        observed: Arc<Mutex<Observed>>,
        wake: Arc<tokio::sync::Notify>,
    ) -> Self {
        Reconciler {
            db,
            sky,
            cfg,
            holder,
            observed,
            wake,
            last_drift: None,
        }
    }

    /// Runs until `shutdown` resolves, then gives the lease up.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let ttl = self.cfg.lease_ttl.as_millis() as i64;
        loop {
            let leader = match self.db.acquire_lease(LEASE, &self.holder, ttl).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew the reconciler lease");
                    false
                }
            };
            let was = std::mem::replace(&mut self.observed.lock().unwrap().leader, leader);
            if leader != was {
                tracing::info!(holder = %self.holder, leader, "reconciler leadership changed");
            }
            if leader {
                // A tick longer than the lease would let another replica start a second
                // reconciler: bound it well inside the lease.
                let budget = self.cfg.lease_ttl / 2;
                if tokio::time::timeout(budget, self.tick()).await.is_err() {
                    tracing::warn!(?budget, "reconciler tick cut off at its budget");
                }
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(self.cfg.tick) => {}
                // A launch or terminate on this replica: act now rather than at the next tick.
                _ = self.wake.notified() => {}
            }
        }
        if self.observed.lock().unwrap().leader {
            let _ = self.db.release_lease(LEASE, &self.holder).await;
        }
    }

    async fn tick(&mut self) {
        let silent = self.db.now_ms() - 3 * self.cfg.heartbeat_interval.as_millis() as i64;
        match self.db.mark_silent_unhealthy(silent).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(nodes = n, "nodes without heartbeats marked unhealthy"),
            Err(e) => tracing::warn!(error = %e, "cannot check heartbeats"),
        }
        let drift_due = self
            .last_drift
            .is_none_or(|t| t.elapsed() >= self.cfg.drift_interval);
        if drift_due {
            self.last_drift = Some(tokio::time::Instant::now());
            if let Err(e) = self.check_drift().await {
                tracing::warn!(error = %e, "cannot compare the table with SkyPilot's /status");
            }
        }
        let due = match self.db.due(self.db.now_ms(), 1000).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read due nodes");
                return;
            }
        };
        let limit = Arc::new(Semaphore::new(self.cfg.max_parallel.max(1)));
        let mut set = JoinSet::new();
        for node in due {
            let step = Step {
                db: self.db.clone(),
                sky: self.sky.clone(),
                cfg: self.cfg.clone(),
            };
            let limit = Arc::clone(&limit);
            set.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let name = node.cluster_name.clone();
                if let Err(e) = step.run(node).await {
                    tracing::warn!(cluster = %name, error = %e, "reconcile step failed");
                }
            });
        }
        while set.join_next().await.is_some() {}
    }

    /// Compares SkyPilot's clusters with the table: gone clusters end their nodes, stopped
    /// ones make them unhealthy, unknown ones with our prefix are reported.
    async fn check_drift(&mut self) -> Result<(), StepError> {
        let clusters = self.sky.status(&StatusQuery::default()).await?;
        let live = self.db.live().await?;
        let by_name: HashMap<&str, ClusterStatus> = clusters
            .iter()
            .map(|c| (c.name.as_str(), c.status))
            .collect();
        for node in &live {
            let cluster = by_name.get(node.cluster_name.as_str()).copied();
            let change = match (node.status, cluster) {
                (NodeStatus::Initializing | NodeStatus::Active | NodeStatus::Unhealthy, None) => {
                    Some((
                        NodeStatus::Terminated,
                        "the cluster is gone from SkyPilot (preempted, or taken down outside skydeck)"
                            .to_string(),
                    ))
                }
                // Draining, never sent to /down, and the cluster (which did come up) is gone.
                (NodeStatus::Draining, None)
                    if node.down_request_id.is_none() && node.initializing_at.is_some() =>
                {
                    Some((
                        NodeStatus::Terminated,
                        "the cluster was already gone from SkyPilot".to_string(),
                    ))
                }
                (NodeStatus::Active | NodeStatus::Initializing, Some(s))
                    if s != ClusterStatus::Up =>
                {
                    Some((
                        NodeStatus::Unhealthy,
                        format!("SkyPilot reports the cluster {}", s.as_str()),
                    ))
                }
                _ => None,
            };
            let Some((to, reason)) = change else {
                continue;
            };
            if self
                .db
                .transition(&node.id, &[node.status], to, Some(&reason))
                .await?
            {
                tracing::warn!(cluster = %node.cluster_name, status = %to, %reason, "drift repaired");
            }
        }
        // Clusters with our prefix the table does not hold at all: reported, never adopted (a
        // second control plane, or a launch from before the database was reset, may own them).
        let prefix = format!("{}-", self.cfg.cluster_prefix);
        let mut unmanaged = BTreeSet::new();
        for c in &clusters {
            if c.name.starts_with(&prefix) && self.db.get(&c.name).await?.is_none() {
                unmanaged.insert(c.name.clone());
            }
        }
        self.refresh_prices(&live).await;
        let mut obs = self.observed.lock().unwrap();
        for name in unmanaged.difference(&obs.unmanaged) {
            tracing::warn!(cluster = %name, "SkyPilot has a cluster with skydeck's prefix that the table does not; not adopting it");
        }
        obs.unmanaged = unmanaged;
        obs.last_drift_check = Some(self.db.now_ms());
        Ok(())
    }

    /// Hourly prices of running nodes from SkyPilot's cost report (its catalogs know the
    /// prices; skydeck hard-codes none). A report needs some runtime to divide by.
    async fn refresh_prices(&self, live: &[Node]) {
        let names: Vec<String> = live
            .iter()
            .filter(|n| {
                n.hourly_price.is_none()
                    && matches!(
                        n.status,
                        NodeStatus::Initializing | NodeStatus::Active | NodeStatus::Unhealthy
                    )
            })
            .map(|n| n.cluster_name.clone())
            .collect();
        if names.is_empty() {
            return;
        }
        let query = CostReportQuery {
            days: 1,
            cluster_names: Some(names),
        };
        let records = match self.sky.cost_report(&query).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "no cost report for prices");
                return;
            }
        };
        for r in records {
            let (Some(cost), Some(secs)) = (r.total_cost, r.duration) else {
                continue;
            };
            if secs < 60.0 {
                continue;
            }
            if let Some(node) = live.iter().find(|n| n.cluster_name == r.name) {
                let _ = self.db.set_price(&node.id, cost * 3600.0 / secs).await;
            }
        }
    }
}

/// Why a step did not finish (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The database.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// SkyPilot.
    #[error(transparent)]
    Sky(#[from] SkyError),
}

struct Step {
    db: Store,
    sky: Client,
    cfg: ReconcilerConfig,
}

impl Step {
    async fn run(&self, node: Node) -> Result<(), StepError> {
        let result = match node.status {
            NodeStatus::Requested => self.requested(&node).await,
            NodeStatus::Launching => self.launching(&node).await,
            NodeStatus::Initializing => self.initializing(&node).await,
            NodeStatus::Draining => self.draining(&node).await,
            // Heartbeats and drift are checked in bulk; final nodes are never touched.
            NodeStatus::Active
            | NodeStatus::Unhealthy
            | NodeStatus::Terminated
            | NodeStatus::Failed => Ok(()),
        };
        if let Err(e) = &result {
            // Exponential backoff: 1 s, 2 s, 4 s … up to a minute.
            let delay = 1000i64 << node.attempts.clamp(0, 6);
            let reason = format!("retrying after an error: {e}");
            self.db
                .back_off(&node.id, delay.min(60_000), &reason)
                .await?;
        }
        result
    }

    /// Moves `node` from the status it was read in to `to`, if nothing moved it meanwhile.
    async fn move_to(&self, node: &Node, to: NodeStatus, reason: &str) -> Result<bool, StepError> {
        Ok(self
            .db
            .transition(&node.id, &[node.status], to, Some(reason))
            .await?)
    }

    async fn later(&self, node: &Node, after: Duration) -> Result<(), StepError> {
        self.db
            .wait_until(&node.id, self.db.now_ms() + after.as_millis() as i64)
            .await?;
        Ok(())
    }

    async fn requested(&self, node: &Node) -> Result<(), StepError> {
        if node.launch_intent_at.is_some() {
            // Claimed earlier but no request id stored: the claimer died or its submit failed
            // in an unknown way. Adopt SkyPilot's launch of this cluster if there is one.
            let requests = self.sky.requests_for_cluster(&node.cluster_name).await?;
            if let Some(r) = requests.iter().find(|r| r.name == "sky.launch") {
                tracing::info!(cluster = %node.cluster_name, request_id = %r.request_id, "adopting the launch a previous replica submitted");
                self.db.launch_submitted(&node.id, &r.request_id).await?;
                return Ok(());
            }
            let age = self.db.now_ms() - node.launch_intent_at.unwrap_or(0);
            if age < self.cfg.abandoned_after.as_millis() as i64 {
                // The claimer may still be sending it; look again once it would have timed out.
                return self.later(node, self.cfg.abandoned_after / 4).await;
            }
        }
        let Some(spec) = node.spec() else {
            self.move_to(
                node,
                NodeStatus::Failed,
                "the stored node does not validate",
            )
            .await?;
            return Ok(());
        };
        // A fresh token for the agent: only its hash is stored.
        let token = token::generate();
        if !self
            .db
            .claim_launch(&node.id, node.launch_intent_at, &token::hash(&token))
            .await?
        {
            return Ok(()); // someone else claimed it
        }
        let yaml = render(
            &spec,
            &TaskContext {
                cluster_name: &node.cluster_name,
                control_plane_url: &self.cfg.public_url,
                agent_sha256: &self.cfg.agent_sha256,
                agent_token: &token,
            },
        );
        let body = LaunchBody {
            task: &yaml,
            cluster_name: &node.cluster_name,
            retry_until_up: false,
            dryrun: false,
        };
        tracing::info!(cluster = %node.cluster_name, provider = %spec.provider, region = %spec.region, gpu = %spec.gpu, model = %spec.model, "launching node with SkyPilot");
        match self.sky.submit_launch(&body).await {
            Ok(request_id) => {
                self.db.launch_submitted(&node.id, &request_id).await?;
                tracing::info!(cluster = %node.cluster_name, %request_id, "launch submitted");
                Ok(())
            }
            Err(e) if is_definite_rejection(&e) => {
                // The server refused before creating a request: nothing to adopt later.
                self.db.release_launch(&node.id).await?;
                Err(e.into())
            }
            // Unknown outcome (timeout, connection reset): keep the claim; the next attempt
            // looks for the request before launching again.
            Err(e) => Err(e.into()),
        }
    }

    async fn launching(&self, node: &Node) -> Result<(), StepError> {
        let Some(request_id) = node.launch_request_id.as_deref() else {
            return Ok(());
        };
        let Some(req) = self.sky.request_status(request_id).await? else {
            self.move_to(
                node,
                NodeStatus::Failed,
                &format!("SkyPilot has no record of launch request {request_id}"),
            )
            .await?;
            return Ok(());
        };
        match req.status.as_str() {
            "SUCCEEDED" => {
                self.sky.launch_result(request_id).await?;
                if self
                    .db
                    .transition(
                        &node.id,
                        &[NodeStatus::Launching],
                        NodeStatus::Initializing,
                        None,
                    )
                    .await?
                {
                    tracing::info!(cluster = %node.cluster_name, "GPU node launched; waiting for its agent");
                }
                Ok(())
            }
            "FAILED" | "CANCELLED" => {
                let reason = match self.sky.launch_result(request_id).await {
                    Err(SkyError::RequestFailed {
                        error_type,
                        message,
                        ..
                    }) => format!("SkyPilot launch failed: {error_type}: {message}"),
                    Err(SkyError::Cancelled { .. }) => {
                        "the launch request was cancelled in SkyPilot".to_string()
                    }
                    Err(e) => return Err(e.into()),
                    Ok(_) => format!("the launch request ended {}", req.status),
                };
                tracing::error!(cluster = %node.cluster_name, %reason, "SkyPilot launch failed");
                self.move_to(node, NodeStatus::Failed, &reason).await?;
                Ok(())
            }
            _ => self.later(node, self.cfg.poll_interval).await,
        }
    }

    async fn initializing(&self, node: &Node) -> Result<(), StepError> {
        let since = node.initializing_at.unwrap_or(node.updated_at);
        if self.db.now_ms() - since > self.cfg.register_timeout.as_millis() as i64 {
            let reason = format!(
                "the node agent did not register within {} s of the cluster coming up",
                self.cfg.register_timeout.as_secs()
            );
            self.move_to(node, NodeStatus::Unhealthy, &reason).await?;
            return Ok(());
        }
        self.later(node, self.cfg.poll_interval).await
    }

    async fn draining(&self, node: &Node) -> Result<(), StepError> {
        if let Some(request_id) = node.down_request_id.as_deref() {
            return self.follow_down(node, request_id).await;
        }
        // The launch is still running in SkyPilot: take the cluster down once it has settled.
        if let Some(launch) = node.launch_request_id.as_deref()
            && node.initializing_at.is_none()
            && let Some(r) = self.sky.request_status(launch).await?
            && !r.is_finished()
        {
            return self.later(node, self.cfg.poll_interval).await;
        }
        let never_launched = match (&node.launch_request_id, node.launch_intent_at) {
            (Some(_), _) => false,
            (None, None) => true,
            (None, Some(intent)) => {
                // Claimed but never confirmed: find the launch before deciding.
                let requests = self.sky.requests_for_cluster(&node.cluster_name).await?;
                if requests.iter().any(|r| r.name == "sky.launch") {
                    false
                } else if self.db.now_ms() - intent >= self.cfg.abandoned_after.as_millis() as i64 {
                    true
                } else {
                    return self.later(node, self.cfg.abandoned_after / 4).await;
                }
            }
        };
        if never_launched {
            let reason = "terminated before it was launched";
            self.move_to(node, NodeStatus::Terminated, reason).await?;
            return Ok(());
        }
        if let Some(intent) = node.down_intent_at {
            let requests = self.sky.requests_for_cluster(&node.cluster_name).await?;
            let since = intent as f64 / 1000.0 - 5.0;
            if let Some(r) = requests
                .iter()
                .find(|r| r.name == "sky.down" && r.created_at.unwrap_or(0.0) >= since)
            {
                self.db.down_submitted(&node.id, &r.request_id).await?;
                return Ok(());
            }
            if self.db.now_ms() - intent < self.cfg.abandoned_after.as_millis() as i64 {
                return self.later(node, self.cfg.abandoned_after / 4).await;
            }
            self.db.reset_down(&node.id).await?;
            return Ok(());
        }
        let graceful_until =
            node.draining_at.unwrap_or(node.updated_at) + self.cfg.drain_timeout.as_millis() as i64;
        let agent_alive = node.active_at.is_some();
        if !node.drain_force && agent_alive && self.db.now_ms() < graceful_until {
            // The agent learns of the drain from its heartbeat reply and reports `drained`
            // when in-flight requests are done (which sets drain_force).
            return self.later(node, self.cfg.poll_interval).await;
        }
        if !self.db.claim_down(&node.id).await? {
            return Ok(());
        }
        let request_id = self
            .sky
            .submit_down(&DownBody {
                cluster_name: &node.cluster_name,
                purge: false,
            })
            .await;
        match request_id {
            Ok(id) => {
                self.db.down_submitted(&node.id, &id).await?;
                tracing::info!(cluster = %node.cluster_name, request_id = %id, "teardown submitted");
                Ok(())
            }
            Err(e) => {
                if is_definite_rejection(&e) {
                    self.db.reset_down(&node.id).await?;
                }
                Err(e.into())
            }
        }
    }

    async fn follow_down(&self, node: &Node, request_id: &str) -> Result<(), StepError> {
        let Some(req) = self.sky.request_status(request_id).await? else {
            self.db.reset_down(&node.id).await?;
            return Ok(());
        };
        if !req.is_finished() {
            return self.later(node, self.cfg.poll_interval).await;
        }
        match self.sky.down_result(request_id).await {
            Ok(()) => {
                self.move_to(node, NodeStatus::Terminated, "terminated")
                    .await?;
                tracing::info!(cluster = %node.cluster_name, "node terminated");
                Ok(())
            }
            Err(SkyError::RequestFailed {
                error_type,
                message,
                ..
            }) if error_type == "ClusterDoesNotExist" || message.contains("does not exist") => {
                self.move_to(
                    node,
                    NodeStatus::Terminated,
                    "the cluster was already gone from SkyPilot",
                )
                .await?;
                Ok(())
            }
            Err(e) => {
                self.db.reset_down(&node.id).await?;
                Err(e.into())
            }
        }
    }
}

/// Errors where the server certainly did not create a request (so no launch can exist).
fn is_definite_rejection(e: &SkyError) -> bool {
    matches!(
        e,
        SkyError::Status { .. } | SkyError::Unauthorized { .. } | SkyError::VersionMismatch { .. }
    ) || matches!(e, SkyError::Unreachable { reason, .. } if reason.contains("refused"))
}
