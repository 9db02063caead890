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
//!
//! * [`steps`] holds the per-node decisions (launch, follow, register timeout, drain, teardown);
//! * [`drift`] compares SkyPilot's `/status` and cost report with the table;
//! * [`sky`] is the trait the reconciler talks to SkyPilot through ([`SkyApi`]), implemented by
//!   [`skydeck_skypilot::Client`] and, for tests, by the in-process [`fake`].
//!
//! Every time the reconciler reads comes from the store's clock, so tests move a
//! [`crate::clock::SimClock`] and call [`Reconciler::tick`] one tick at a time.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skydeck_skypilot::{Client, Error as SkyError};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::store::Store;

mod drift;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
mod sky;
mod steps;
#[cfg(test)]
pub(crate) mod tests;

pub use sky::SkyApi;

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

/// The reconciler of one replica, talking to SkyPilot through `S` (the real client unless a
/// test says otherwise).
pub struct Reconciler<S: SkyApi = Client> {
    db: Store,
    sky: S,
    cfg: ReconcilerConfig,
    holder: String,
    observed: Arc<Mutex<Observed>>,
    wake: Arc<tokio::sync::Notify>,
    /// When drift was last checked, by the store's clock (ms).
    last_drift: Option<i64>,
    /// Decides the pools each tick, when set.
    pools: Option<crate::pools::controller::PoolController>,
}

impl<S: SkyApi> Reconciler<S> {
    /// A reconciler identified by `holder` in the lease.
    pub fn new(
        db: Store,
        sky: S,
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
            pools: None,
        }
    }

    /// Runs `pools` on every leader tick, before the due nodes are stepped (so a pool's new
    /// nodes are launched in the tick that decided them).
    pub fn with_pools(mut self, pools: crate::pools::controller::PoolController) -> Self {
        self.pools = Some(pools);
        self
    }

    /// Runs until `shutdown` resolves, then gives the lease up.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            self.tick().await;
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

    /// One tick: takes or renews the lease and, if this replica holds it, steps every due
    /// node. Returns whether this replica is the leader. [`Reconciler::run`] calls it every
    /// `tick`; tests call it directly, moving the store's clock in between.
    pub async fn tick(&mut self) -> bool {
        let ttl = self.cfg.lease_ttl.as_millis() as i64;
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
            if tokio::time::timeout(budget, self.reconcile())
                .await
                .is_err()
            {
                tracing::warn!(?budget, "reconciler tick cut off at its budget");
            }
        }
        leader
    }

    /// The work of a leader's tick: heartbeats, drift when due, the pools, then every due node.
    async fn reconcile(&mut self) {
        let silent = self.db.now_ms() - 3 * self.cfg.heartbeat_interval.as_millis() as i64;
        match self.db.mark_silent_unhealthy(silent).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(nodes = n, "nodes without heartbeats marked unhealthy"),
            Err(e) => tracing::warn!(error = %e, "cannot check heartbeats"),
        }
        let now = self.db.now_ms();
        let drift_due = self
            .last_drift
            .is_none_or(|t| now - t >= self.cfg.drift_interval.as_millis() as i64);
        if drift_due {
            self.last_drift = Some(now);
            if let Err(e) = self.check_drift().await {
                tracing::warn!(error = %e, "cannot compare the table with SkyPilot's /status");
            }
        }
        if let Some(pools) = &self.pools {
            match pools.tick().await {
                Ok(s) if s.launched + s.drained + s.removed > 0 => {
                    tracing::debug!(?s, "pools decided")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot decide the pools"),
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
            let step = steps::Step {
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
