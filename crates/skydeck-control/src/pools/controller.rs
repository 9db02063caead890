//! The pool controller: each reconciler tick of the lease holder, every pool is read with its
//! nodes, decided ([`super::decide::decide`]), the decision stored (conditional on the pool's
//! version, with its events), and only then acted on through the node operations the admin
//! API uses. A launch's node id is chosen before the decision is stored, so the recorded
//! decision names the cluster it launches.

use std::collections::HashMap;
use std::sync::Arc;

use super::decide::{Action, Timing, decide};
use super::{Draft, Pool, node_config, note};
use crate::node_config::Rules;
use crate::nodes::{self, OpError};
use crate::store::{EventRow, Node, Store};
use skydeck_contract::DecisionKind;

/// How long ended nodes stay in the controller's view at least (ms): failures and losses are
/// accounted for within it.
const ENDED_WINDOW_MS: i64 = 3_600_000;

/// The pool controller of one replica (run only while it holds the reconciler's lease).
#[derive(Debug, Clone)]
pub struct PoolController {
    db: Store,
    rules: Arc<Rules>,
    prefix: String,
    timing: Timing,
}

/// What one tick did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickSummary {
    /// Pools decided.
    pub pools: usize,
    /// Nodes launched.
    pub launched: usize,
    /// Nodes asked to drain.
    pub drained: usize,
    /// Pools removed after their deletion.
    pub removed: usize,
}

impl PoolController {
    /// A controller launching nodes named with `prefix`, validated with `rules`.
    pub fn new(db: Store, rules: Arc<Rules>, prefix: String, timing: Timing) -> PoolController {
        PoolController {
            db,
            rules,
            prefix,
            timing,
        }
    }

    /// Decides and acts on every pool once.
    pub async fn tick(&self) -> Result<TickSummary, OpError> {
        let rows = self.db.pools().await?;
        let mut summary = TickSummary::default();
        if rows.is_empty() {
            return Ok(summary);
        }
        let now = self.db.now_ms();
        let mut by_pool: HashMap<String, Vec<Node>> = HashMap::new();
        for n in self.db.pool_nodes(now - ENDED_WINDOW_MS).await? {
            if let Some(p) = n.pool.clone() {
                by_pool.entry(p).or_default().push(n);
            }
        }
        for row in &rows {
            let pool = match Pool::from_row(row) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(pool = %row.name, error = %e, "skipping a pool");
                    continue;
                }
            };
            let nodes = by_pool.remove(&row.name).unwrap_or_default();
            match self.one(&pool, &nodes, now).await {
                Ok(s) => {
                    summary.pools += 1;
                    summary.launched += s.launched;
                    summary.drained += s.drained;
                    summary.removed += s.removed;
                }
                Err(e) => tracing::warn!(pool = %row.name, error = %e, "pool decision failed"),
            }
        }
        Ok(summary)
    }

    async fn one(&self, pool: &Pool, nodes: &[Node], now: i64) -> Result<TickSummary, OpError> {
        let name = pool.spec.name.as_str();
        let mut plan = decide(
            &pool.spec,
            &pool.state,
            pool.deleting,
            nodes,
            now,
            &self.timing,
        );
        let mut summary = TickSummary::default();
        if plan.actions.contains(&Action::Remove) {
            if self.db.delete_pool(name, pool.version).await? {
                tracing::info!(pool = %name, "pool removed: its nodes are gone");
                summary.removed = 1;
            }
            return Ok(summary);
        }
        // Launches get their node ids now, so the stored decision names their clusters.
        let mut launches = Vec::new();
        for a in &plan.actions {
            if let Action::Launch {
                placement,
                spot,
                reason,
            } = a
            {
                let id = uuid::Uuid::new_v4();
                let cluster = nodes::cluster_name(&self.prefix, &id);
                plan.events.push(Draft {
                    kind: DecisionKind::Launch,
                    reason: reason.clone(),
                    inputs: serde_json::json!({"placement": placement, "spot": spot}),
                    cluster_name: Some(cluster),
                });
                launches.push((id, *placement, *spot));
            }
        }
        if plan.events.is_empty() && plan.state == pool.state {
            return Ok(summary);
        }
        note(&mut plan.state, &plan.events);
        let rows: Vec<EventRow> = plan.events.iter().map(|d| d.row(name, now)).collect();
        for d in &plan.events {
            tracing::info!(pool = %name, kind = %d.kind, cluster = d.cluster_name.as_deref().unwrap_or(""), reason = %d.reason, "pool decision");
        }
        let state = serde_json::to_string(&plan.state).expect("the state serializes");
        if !self
            .db
            .update_pool(name, pool.version, None, &state, pool.deleting, &rows)
            .await?
        {
            // Changed since it was read (a PATCH, a DELETE): decided again next tick.
            return Ok(summary);
        }
        for (id, placement, spot) in launches {
            let mut cfg = node_config(&pool.spec, placement, spot);
            cfg.node_id = Some(id.to_string());
            match nodes::launch_in(&self.db, &self.rules, &self.prefix, &cfg, Some(name)).await {
                Ok(_) => summary.launched += 1,
                Err(e) => tracing::warn!(pool = %name, error = %e, "pool launch refused"),
            }
        }
        for a in &plan.actions {
            let (cluster, done) = match a {
                Action::Drain {
                    cluster_name,
                    force,
                } => (
                    cluster_name,
                    nodes::terminate(&self.db, cluster_name, *force)
                        .await
                        .map(|_| true),
                ),
                Action::Stop { cluster_name } => {
                    (cluster_name, nodes::stop(&self.db, cluster_name).await)
                }
                Action::Start { cluster_name } => {
                    (cluster_name, nodes::restart(&self.db, cluster_name).await)
                }
                Action::Launch { .. } | Action::Remove => continue,
            };
            match done {
                Ok(true) => summary.drained += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(pool = %name, cluster = %cluster, error = %e, "pool action failed")
                }
            }
        }
        Ok(summary)
    }
}
