//! Drift: what SkyPilot's `/status` says against what the table says. Gone clusters end their
//! nodes, clusters that are not UP make them unhealthy, unknown clusters with skydeck's prefix
//! are reported (never adopted), and running nodes get their hourly price from SkyPilot's cost
//! report.

use std::collections::{BTreeSet, HashMap};

use skydeck_skypilot::api::{ClusterStatus, CostReportQuery, StatusQuery};

use super::{Reconciler, SkyApi, StepError};
use crate::status::NodeStatus;
use crate::store::Node;

/// A cost report needs this much runtime before its total is worth dividing into an hourly
/// price (a few seconds of billing rounding would swamp it).
const MIN_PRICED_RUNTIME_SECS: f64 = 60.0;

/// What drift does to a node in `status` whose cluster SkyPilot reports as `cluster` (`None`:
/// not in `/status` at all). `None` leaves the node alone.
pub(super) fn drift_change(
    node: &Node,
    cluster: Option<ClusterStatus>,
) -> Option<(NodeStatus, String)> {
    match (node.status, cluster) {
        (NodeStatus::Initializing | NodeStatus::Active | NodeStatus::Unhealthy, None) => Some((
            NodeStatus::Terminated,
            "the cluster is gone from SkyPilot (preempted, or taken down outside skydeck)"
                .to_string(),
        )),
        // Draining, never sent to /down, and the cluster (which did come up) is gone.
        (NodeStatus::Draining, None)
            if node.down_request_id.is_none() && node.initializing_at.is_some() =>
        {
            Some((
                NodeStatus::Terminated,
                "the cluster was already gone from SkyPilot".to_string(),
            ))
        }
        (NodeStatus::Stopped, None) => Some((
            NodeStatus::Terminated,
            "the stopped cluster is gone from SkyPilot (taken down outside skydeck)".to_string(),
        )),
        (NodeStatus::Active | NodeStatus::Initializing, Some(s)) if s != ClusterStatus::Up => {
            Some((
                NodeStatus::Unhealthy,
                format!("{}{}", crate::status::CLUSTER_NOT_UP, s.as_str()),
            ))
        }
        _ => None,
    }
}

impl<S: SkyApi> Reconciler<S> {
    /// Compares SkyPilot's clusters with the table and repairs what differs.
    pub(super) async fn check_drift(&mut self) -> Result<(), StepError> {
        let clusters = self.sky.status(&StatusQuery::default()).await?;
        let live = self.db.live().await?;
        let by_name: HashMap<&str, ClusterStatus> = clusters
            .iter()
            .map(|c| (c.name.as_str(), c.status))
            .collect();
        for node in &live {
            let cluster = by_name.get(node.cluster_name.as_str()).copied();
            let Some((to, reason)) = drift_change(node, cluster) else {
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
            if secs < MIN_PRICED_RUNTIME_SECS {
                continue;
            }
            if let Some(node) = live.iter().find(|n| n.cluster_name == r.name) {
                let _ = self.db.set_price(&node.id, cost * 3600.0 / secs).await;
            }
        }
    }
}
