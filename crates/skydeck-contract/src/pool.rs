//! Pools as the admin API takes and shows them: a named group of inference nodes of one
//! template that the control plane keeps between `min_nodes` and `max_nodes`, scaled on the
//! requests waiting in its engines, spot first with an on-demand fallback, failing over across
//! the template's placements when one runs out of capacity, and explaining every decision in
//! its event log.
//!
//! [`PoolSpec`] is the body of `POST /admin/pools`; [`PoolPatch`] of `PATCH` (every field
//! optional; the merged spec is validated whole); [`PoolView`] the answer; [`PoolEvent`] one
//! recorded decision.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::node::Engine;

/// Where a pool's nodes may run, in the order they are tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// aws, gcp, azure, lambda, oci or kubernetes.
    pub provider: String,
    /// A region of the provider (a kubeconfig context for Kubernetes).
    pub region: String,
}

/// What every node of a pool runs: the fields of a node launch, with an ordered list of
/// placements instead of one provider and region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolTemplate {
    /// Provider and region preferences, most preferred first (1 to 16).
    #[schema(min_items = 1, max_items = 16)]
    pub placements: Vec<Placement>,
    /// A GPU name, optionally with a count: `A100`, `A100:2`.
    pub gpu: String,
    /// The model (as a node launch takes it).
    pub model: String,
    /// The inference server: `vllm` (default) or `llamacpp`.
    #[serde(default)]
    pub engine: Option<Engine>,
    /// Extra engine flags, from the engine's allow-list.
    #[serde(default)]
    pub engine_args: Option<String>,
    /// Disk in GB; default 256.
    #[serde(default, deserialize_with = "crate::num::integer_opt")]
    #[schema(minimum = 50, maximum = 16384)]
    pub disk_size: Option<i64>,
    /// A container image for the engine (`docker:…`).
    #[serde(default)]
    pub image: Option<String>,
}

/// Spot first, with an on-demand fallback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpotPolicy {
    /// Launch spot capacity where the placement's provider has it (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Nodes always kept on-demand, whatever the spot market does (default 0).
    #[serde(default, deserialize_with = "crate::num::integer")]
    #[schema(minimum = 0, maximum = 100)]
    pub on_demand_base: u32,
    /// Spot launch failures plus preemptions within `window_seconds` that switch the pool to
    /// on-demand (default 3).
    #[serde(default = "three", deserialize_with = "crate::num::integer")]
    #[schema(minimum = 1, maximum = 1000)]
    pub fallback_after: u32,
    /// The window those are counted in (default 900 s).
    #[serde(default = "fifteen_minutes", deserialize_with = "crate::num::integer")]
    #[schema(minimum = 1, maximum = 604800)]
    pub window_seconds: u64,
    /// How long the pool stays on-demand before trying spot again (default 1,800 s).
    #[serde(default = "thirty_minutes", deserialize_with = "crate::num::integer")]
    #[schema(minimum = 1, maximum = 604800)]
    pub cooldown_seconds: u64,
}

fn yes() -> bool {
    true
}
fn three() -> u32 {
    3
}
fn fifteen_minutes() -> u64 {
    900
}
fn thirty_minutes() -> u64 {
    1800
}

impl Default for SpotPolicy {
    fn default() -> Self {
        SpotPolicy {
            enabled: true,
            on_demand_base: 0,
            fallback_after: three(),
            window_seconds: fifteen_minutes(),
            cooldown_seconds: thirty_minutes(),
        }
    }
}

/// The default scale-up delay (dstack's and SkyServe's 300 s).
pub const DEFAULT_SCALE_UP_DELAY: u64 = 300;
/// The default scale-down delay (dstack's 600 s; SkyServe waits 1,200 s).
pub const DEFAULT_SCALE_DOWN_DELAY: u64 = 600;
/// The default waiting requests per node the pool scales to.
pub const DEFAULT_TARGET_WAITING: f64 = 4.0;

fn default_up() -> u64 {
    DEFAULT_SCALE_UP_DELAY
}
fn default_down() -> u64 {
    DEFAULT_SCALE_DOWN_DELAY
}
fn default_target() -> f64 {
    DEFAULT_TARGET_WAITING
}

/// Body of `POST /admin/pools`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    /// The pool's name: 1 to 40 lower-case letters, digits and `-`, starting with a letter.
    #[schema(pattern = r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$")]
    pub name: String,
    /// What its nodes run and where.
    pub template: PoolTemplate,
    /// The fewest nodes (default 1; 0 lets an idle pool empty, and it then grows only when
    /// its bounds are raised, since no engine reports load).
    #[serde(default = "one", deserialize_with = "crate::num::integer")]
    #[schema(minimum = 0, maximum = 100)]
    pub min_nodes: u32,
    /// The most nodes (at most 100).
    #[serde(deserialize_with = "crate::num::integer")]
    #[schema(minimum = 1, maximum = 100)]
    pub max_nodes: u32,
    /// Requests waiting per active node the pool scales to (default 4): above it for
    /// `scale_up_delay_seconds` grows the pool, under half of it for
    /// `scale_down_delay_seconds` shrinks it.
    #[serde(default = "default_target")]
    #[schema(exclusive_minimum = 0, maximum = 10000)]
    pub target_waiting_per_node: f64,
    /// Seconds the load must stay high before a scale-up (default 300).
    #[serde(default = "default_up", deserialize_with = "crate::num::integer")]
    #[schema(minimum = 1, maximum = 604800)]
    pub scale_up_delay_seconds: u64,
    /// Seconds the load must stay low before a scale-down (default 600).
    #[serde(default = "default_down", deserialize_with = "crate::num::integer")]
    #[schema(minimum = 1, maximum = 604800)]
    pub scale_down_delay_seconds: u64,
    /// Seconds without any request after which a node is terminated while the pool is above
    /// `min_nodes`; absent: never.
    #[serde(default, deserialize_with = "crate::num::integer_opt")]
    #[schema(minimum = 1, maximum = 604800)]
    pub idle_timeout_seconds: Option<u64>,
    /// Up to this many nodes are stopped (SkyPilot `/stop`, their disks kept) instead of
    /// terminated when the pool shrinks, and started again before any new launch when it
    /// grows (default 0: none).
    #[serde(default, deserialize_with = "crate::num::integer")]
    #[schema(minimum = 0, maximum = 100)]
    pub warm_nodes: u32,
    /// Spot policy.
    #[serde(default)]
    pub spot: SpotPolicy,
}

fn one() -> u32 {
    1
}

/// Body of `PATCH /admin/pools/{name}`: the fields to change; the rest stay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolPatch {
    /// New template (applies to nodes launched from now on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<PoolTemplate>,
    /// New lower bound.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::num::integer_opt"
    )]
    #[schema(minimum = 0, maximum = 100)]
    pub min_nodes: Option<u32>,
    /// New upper bound.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::num::integer_opt"
    )]
    #[schema(minimum = 1, maximum = 100)]
    pub max_nodes: Option<u32>,
    /// New target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0, maximum = 10000)]
    pub target_waiting_per_node: Option<f64>,
    /// New scale-up delay.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::num::integer_opt"
    )]
    #[schema(minimum = 1, maximum = 604800)]
    pub scale_up_delay_seconds: Option<u64>,
    /// New scale-down delay.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::num::integer_opt"
    )]
    #[schema(minimum = 1, maximum = 604800)]
    pub scale_down_delay_seconds: Option<u64>,
    /// New idle timeout (`0` turns it off).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::num::integer_opt"
    )]
    #[schema(minimum = 0, maximum = 604800)]
    pub idle_timeout_seconds: Option<u64>,
    /// New number of warm nodes.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::num::integer_opt"
    )]
    #[schema(minimum = 0, maximum = 100)]
    pub warm_nodes: Option<u32>,
    /// New spot policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot: Option<SpotPolicy>,
}

impl PoolPatch {
    /// `spec` with this patch applied (not validated).
    pub fn apply(&self, spec: &PoolSpec) -> PoolSpec {
        let mut s = spec.clone();
        if let Some(t) = &self.template {
            s.template = t.clone();
        }
        if let Some(v) = self.min_nodes {
            s.min_nodes = v;
        }
        if let Some(v) = self.max_nodes {
            s.max_nodes = v;
        }
        if let Some(v) = self.target_waiting_per_node {
            s.target_waiting_per_node = v;
        }
        if let Some(v) = self.scale_up_delay_seconds {
            s.scale_up_delay_seconds = v;
        }
        if let Some(v) = self.scale_down_delay_seconds {
            s.scale_down_delay_seconds = v;
        }
        if let Some(v) = self.idle_timeout_seconds {
            s.idle_timeout_seconds = (v > 0).then_some(v);
        }
        if let Some(v) = self.warm_nodes {
            s.warm_nodes = v;
        }
        if let Some(v) = &self.spot {
            s.spot = v.clone();
        }
        s
    }
}

/// Which capacity a pool launches now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CapacityMode {
    /// Spot where the placement has it.
    Spot,
    /// On-demand: spot failed or was preempted too often, until the cool-down ends.
    OnDemand,
}

/// A pool as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PoolView {
    /// The pool's spec as stored.
    pub spec: PoolSpec,
    /// The size the controller aims at, within the bounds.
    pub desired: u32,
    /// Nodes that count toward the size: requested, launching, initializing, active,
    /// unhealthy (not yet replaced).
    pub size: u32,
    /// Of those, the active ones.
    pub active: u32,
    /// Nodes being drained (or stopped).
    pub draining: u32,
    /// Warm nodes: stopped in SkyPilot, started again before any new launch.
    pub stopped: u32,
    /// Disk the stopped nodes keep, in GB (billed while stopped; SkyPilot's catalogs have no
    /// disk prices, so no cost is computed).
    pub stopped_disk_gb: i64,
    /// Counted nodes on spot capacity.
    pub spot_nodes: u32,
    /// Counted nodes on on-demand capacity.
    pub on_demand_nodes: u32,
    /// Which capacity new nodes get.
    pub capacity_mode: CapacityMode,
    /// Mean requests waiting per active node at the last decision.
    pub waiting_per_node: Option<f64>,
    /// Summed hourly price of the counted nodes that have one (USD).
    pub hourly_cost_usd: f64,
    /// `DELETE` was asked: the nodes drain, then the pool goes.
    pub deleting: bool,
    /// The newest decision's reason.
    pub last_decision: Option<String>,
    /// When the pool was created.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: jiff::Timestamp,
    /// Last change of its spec or state.
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: jiff::Timestamp,
}

/// `GET /admin/pools`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PoolList {
    /// Every pool, by name.
    pub pools: Vec<PoolView>,
}

/// What a decision did.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    /// The pool was created.
    Created,
    /// Its spec was changed.
    Updated,
    /// Desired size raised on load.
    ScaleUp,
    /// Desired size lowered on low load.
    ScaleDown,
    /// Desired size moved into changed bounds.
    Bounds,
    /// A node was launched to reach the desired size.
    Launch,
    /// A node was drained (scale-down, bounds, deletion).
    Drain,
    /// A lost or unhealthy node is being replaced.
    Replace,
    /// A node idle past the idle timeout was terminated.
    IdleStop,
    /// Switched to on-demand capacity.
    FallbackOnDemand,
    /// Back to spot after the cool-down.
    ReturnToSpot,
    /// A placement ran out of capacity or quota; the next one is tried.
    Failover,
    /// A launch failed for another reason; launches back off.
    LaunchFailed,
    /// No placement can take a launch now.
    Blocked,
    /// A node was stopped to keep it warm instead of being terminated.
    WarmStop,
    /// A warm node was started again instead of a new launch.
    WarmStart,
    /// Deletion was asked.
    Deleting,
}

impl DecisionKind {
    /// Every kind.
    pub const ALL: [DecisionKind; 17] = [
        DecisionKind::Created,
        DecisionKind::Updated,
        DecisionKind::ScaleUp,
        DecisionKind::ScaleDown,
        DecisionKind::Bounds,
        DecisionKind::Launch,
        DecisionKind::Drain,
        DecisionKind::Replace,
        DecisionKind::IdleStop,
        DecisionKind::FallbackOnDemand,
        DecisionKind::ReturnToSpot,
        DecisionKind::Failover,
        DecisionKind::LaunchFailed,
        DecisionKind::Blocked,
        DecisionKind::WarmStop,
        DecisionKind::WarmStart,
        DecisionKind::Deleting,
    ];

    /// The wire and stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Created => "created",
            DecisionKind::Updated => "updated",
            DecisionKind::ScaleUp => "scale_up",
            DecisionKind::ScaleDown => "scale_down",
            DecisionKind::Bounds => "bounds",
            DecisionKind::Launch => "launch",
            DecisionKind::Drain => "drain",
            DecisionKind::Replace => "replace",
            DecisionKind::IdleStop => "idle_stop",
            DecisionKind::FallbackOnDemand => "fallback_on_demand",
            DecisionKind::ReturnToSpot => "return_to_spot",
            DecisionKind::Failover => "failover",
            DecisionKind::LaunchFailed => "launch_failed",
            DecisionKind::Blocked => "blocked",
            DecisionKind::WarmStop => "warm_stop",
            DecisionKind::WarmStart => "warm_start",
            DecisionKind::Deleting => "deleting",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<DecisionKind> {
        DecisionKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for DecisionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One recorded decision of a pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PoolEvent {
    /// The event's id (ordered: a later event has a greater id).
    pub id: String,
    /// When it was decided.
    #[schema(value_type = String, format = DateTime)]
    pub at: jiff::Timestamp,
    /// What was decided.
    pub kind: DecisionKind,
    /// Why, for people: `scale up 2 → 3: waiting/node 7.5 > 4 for 300 s`.
    pub reason: String,
    /// The inputs the decision read (sizes, load, counts, SkyPilot's error).
    #[schema(value_type = Object)]
    pub inputs: serde_json::Value,
    /// The node it acted on, when it acted on one.
    pub cluster_name: Option<String>,
}

/// One page of `GET /admin/pools/{name}/events`, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PoolEventPage {
    /// The events.
    pub events: Vec<PoolEvent>,
    /// Pass as `cursor` for the next (older) page; absent on the last.
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for k in DecisionKind::ALL {
            assert_eq!(DecisionKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }

    #[test]
    fn a_minimal_spec_takes_the_defaults() {
        let s: PoolSpec = serde_json::from_value(serde_json::json!({
            "name": "chat",
            "max_nodes": 4,
            "template": {"placements": [{"provider": "aws", "region": "us-east-1"}],
                         "gpu": "A100", "model": "org/m"}
        }))
        .unwrap();
        assert_eq!(s.min_nodes, 1);
        assert_eq!(s.scale_up_delay_seconds, 300);
        assert_eq!(s.spot, SpotPolicy::default());
        let patched = PoolPatch {
            max_nodes: Some(6),
            idle_timeout_seconds: Some(0),
            ..Default::default()
        }
        .apply(&s);
        assert_eq!(patched.max_nodes, 6);
        assert_eq!(patched.idle_timeout_seconds, None);
    }
}
