//! Nodes as the admin API shows them: the lifecycle, the engine, the view, pages and the
//! answers of launch and terminate.
//!
//! ```text
//! requested → launching → initializing → active ⇄ unhealthy
//!     │            │   └──────────────────↗ │         │
//!     │            └→ failed                │         │
//!     └──────────────┴────────────┴─────────┴→ draining → terminated
//!                                                 │   ↑
//!                          requested ← stopped ←──┘   │ (a pool's warm node)
//!                                         └───────────┘
//! ```
//! `requested`: stored, no SkyPilot request yet. `launching`: SkyPilot's launch request is
//! running. `initializing`: the cluster is up, the engine and the agent are starting. `active`:
//! the agent registered and heartbeats. `unhealthy`: no heartbeat for three intervals, or
//! SkyPilot reports the cluster not UP. `draining`: terminate was asked; in-flight requests
//! finish, then the cluster is taken down (or, for a pool's warm node, stopped).
//! `stopped`: the cluster is stopped in SkyPilot (its disk kept); a pool starts it again by
//! launching it anew (back to `requested`), or terminates it. `terminated` and `failed` are final. A cluster that
//! vanishes from SkyPilot ends its node `terminated` from any state after launching.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::agent::Heartbeat;

/// A node's lifecycle state.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Stored; the launch has not been sent to SkyPilot yet.
    Requested,
    /// SkyPilot is provisioning the cluster.
    Launching,
    /// The cluster is up; the engine and the agent are starting.
    Initializing,
    /// The agent registered and sends heartbeats.
    Active,
    /// Heartbeats stopped, or the cluster is not UP in SkyPilot.
    Unhealthy,
    /// Being taken down (or stopped).
    Draining,
    /// Stopped in SkyPilot, its disk kept: a pool's warm node.
    Stopped,
    /// Gone (final).
    Terminated,
    /// The launch failed (final); the reason is stored.
    Failed,
}

impl NodeStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [NodeStatus; 9] = [
        NodeStatus::Requested,
        NodeStatus::Launching,
        NodeStatus::Initializing,
        NodeStatus::Active,
        NodeStatus::Unhealthy,
        NodeStatus::Draining,
        NodeStatus::Stopped,
        NodeStatus::Terminated,
        NodeStatus::Failed,
    ];

    /// The states a node that is not final can be in.
    pub const LIVE: [NodeStatus; 7] = [
        NodeStatus::Requested,
        NodeStatus::Launching,
        NodeStatus::Initializing,
        NodeStatus::Active,
        NodeStatus::Unhealthy,
        NodeStatus::Draining,
        NodeStatus::Stopped,
    ];

    /// The wire and stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Requested => "requested",
            NodeStatus::Launching => "launching",
            NodeStatus::Initializing => "initializing",
            NodeStatus::Active => "active",
            NodeStatus::Unhealthy => "unhealthy",
            NodeStatus::Draining => "draining",
            NodeStatus::Stopped => "stopped",
            NodeStatus::Terminated => "terminated",
            NodeStatus::Failed => "failed",
        }
    }

    /// Parses a wire or stored name.
    pub fn parse(s: &str) -> Option<NodeStatus> {
        NodeStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Final states: nothing moves a node out of them.
    pub fn is_final(self) -> bool {
        matches!(self, NodeStatus::Terminated | NodeStatus::Failed)
    }

    /// The states a node may move to from this one (the diagram above).
    pub fn next(self) -> &'static [NodeStatus] {
        use NodeStatus::*;
        match self {
            Requested => &[Launching, Draining, Failed],
            Launching => &[Initializing, Active, Draining, Failed],
            Initializing => &[Active, Unhealthy, Draining, Terminated],
            Active => &[Unhealthy, Draining, Terminated],
            Unhealthy => &[Active, Draining, Terminated],
            Draining => &[Terminated, Stopped],
            Stopped => &[Requested, Draining, Terminated],
            Terminated | Failed => &[],
        }
    }

    /// Whether a node in this state may move to `to`.
    pub fn can_move_to(self, to: NodeStatus) -> bool {
        self.next().contains(&to)
    }

    /// The states from which a node may move to `to`.
    pub fn sources(to: NodeStatus) -> Vec<NodeStatus> {
        NodeStatus::ALL
            .into_iter()
            .filter(|s| s.can_move_to(to))
            .collect()
    }
}

impl std::fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for NodeStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeStatus::parse(s).ok_or_else(|| {
            format!(
                "{s:?} is not one of {}",
                NodeStatus::ALL.map(NodeStatus::as_str).join(", ")
            )
        })
    }
}

/// The inference server a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// vLLM's OpenAI-compatible server (GPU nodes).
    #[default]
    Vllm,
    /// llama.cpp's `llama-server` (small models, CPU-only or cheap GPU nodes).
    Llamacpp,
}

impl Engine {
    /// Every engine.
    pub const ALL: [Engine; 2] = [Engine::Vllm, Engine::Llamacpp];

    /// The wire and stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Vllm => "vllm",
            Engine::Llamacpp => "llamacpp",
        }
    }

    /// Parses a wire or stored name.
    pub fn parse(s: &str) -> Option<Engine> {
        Engine::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Engine::parse(s).ok_or_else(|| format!("{s:?} is not one of vllm, llamacpp"))
    }
}

/// A node as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    /// The node's UUID.
    #[schema(format = Uuid)]
    pub node_id: String,
    /// Its SkyPilot cluster name.
    pub cluster_name: String,
    /// Lifecycle state.
    pub status: NodeStatus,
    /// Why it is in that state (SkyPilot's error for `failed`).
    pub status_reason: Option<String>,
    /// aws, gcp, azure, lambda, oci or kubernetes.
    pub provider: String,
    /// Region, or kubeconfig context for Kubernetes.
    pub region: String,
    /// `A100` or `A100:2`, as the request had it.
    pub gpu: String,
    /// The model served.
    pub model: String,
    /// The inference server.
    pub engine: Engine,
    /// The pool the node belongs to; absent for a node launched on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The container image the engine runs in (`docker:…`), when the node names one.
    pub image: Option<String>,
    /// Spot capacity.
    pub use_spot: bool,
    /// Disk in GB.
    pub disk_size: i64,
    /// The engine's extra arguments, one per element.
    pub engine_args: Vec<String>,
    /// SkyPilot's request id of the launch.
    pub launch_request_id: Option<String>,
    /// SkyPilot's request id of the teardown.
    pub teardown_request_id: Option<String>,
    /// USD per hour, from SkyPilot's cost report.
    pub hourly_price_usd: Option<f64>,
    /// When the node was requested.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: jiff::Timestamp,
    /// Last change of its row.
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: jiff::Timestamp,
    /// Entered `launching`.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub launching_at: Option<jiff::Timestamp>,
    /// Entered `initializing`.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub initializing_at: Option<jiff::Timestamp>,
    /// Entered `active` (the first time).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub active_at: Option<jiff::Timestamp>,
    /// Entered `unhealthy` (the last time).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub unhealthy_at: Option<jiff::Timestamp>,
    /// Entered `draining`.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub draining_at: Option<jiff::Timestamp>,
    /// Entered `terminated`.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub terminated_at: Option<jiff::Timestamp>,
    /// Entered `failed`.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub failed_at: Option<jiff::Timestamp>,
    /// The agent's last heartbeat.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_heartbeat_at: Option<jiff::Timestamp>,
    /// What the agent reported in that heartbeat (engine, requests, tokens, GPUs). Present on
    /// `GET /admin/nodes/{cluster_name}`; lists leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<Heartbeat>,
}

/// One page of `GET /admin/nodes`, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodePage {
    /// The nodes.
    pub nodes: Vec<NodeView>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// Answer of `POST /admin/nodes/launch`: the launch goes on in the background.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LaunchResponse {
    /// The SkyPilot cluster name.
    pub cluster_name: String,
    /// The node's UUID.
    #[schema(format = Uuid)]
    pub node_id: String,
    /// `requested`: stored, and this replica's reconciler was woken to launch it.
    pub status: NodeStatus,
}

/// Answer of `POST /admin/nodes/{cluster_name}/terminate` (idempotent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TerminateResponse {
    /// The SkyPilot cluster name.
    pub cluster_name: String,
    /// The node's UUID.
    #[schema(format = Uuid)]
    pub node_id: String,
    /// `draining` while it is taken down, then `terminated` (or `failed` if it never launched).
    pub status: NodeStatus,
    /// Whether in-flight requests are cut off.
    pub force: bool,
}

/// Answer of `GET /admin/unmanaged-clusters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UnmanagedClusters {
    /// Clusters with skydeck's prefix that SkyPilot has and the table does not.
    pub clusters: Vec<String>,
    /// When SkyPilot's status was last read; absent before the first read.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub checked_at: Option<jiff::Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in NodeStatus::ALL {
            assert_eq!(NodeStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for e in Engine::ALL {
            assert_eq!(Engine::parse(e.as_str()), Some(e));
            assert_eq!(serde_json::to_value(e).unwrap(), e.as_str());
        }
    }

    #[test]
    fn final_states_go_nowhere_and_live_ones_can_be_drained() {
        for s in NodeStatus::ALL {
            assert_eq!(s.is_final(), s.next().is_empty(), "{s}");
            assert_eq!(NodeStatus::LIVE.contains(&s), !s.is_final(), "{s}");
            if !s.is_final() && s != NodeStatus::Draining {
                assert!(s.can_move_to(NodeStatus::Draining), "{s}");
            }
            assert!(!s.can_move_to(s), "{s} moves to itself");
        }
        assert_eq!(
            NodeStatus::sources(NodeStatus::Failed),
            [NodeStatus::Requested, NodeStatus::Launching]
        );
    }
}
