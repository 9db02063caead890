//! The lifecycle of a node, as stored in the `nodes.status` column.
//!
//! ```text
//! requested → launching → initializing → active ⇄ unhealthy
//!                  │            │           │         │
//!                  └→ failed    └───────────┴→ draining → terminated
//! ```
//! `requested`: stored, no SkyPilot request yet. `launching`: SkyPilot's `/launch` request is
//! running (its id is in the row). `initializing`: the cluster is up, vLLM and the agent are
//! starting. `active`: the agent registered and heartbeats. `unhealthy`: no heartbeat for three
//! intervals, or SkyPilot reports the cluster not UP. `draining`: terminate was asked; the
//! cluster is being taken down. `terminated` and `failed` are final.

use serde::{Deserialize, Serialize};

/// A node's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Stored; the launch has not been sent to SkyPilot yet.
    Requested,
    /// SkyPilot is provisioning the cluster.
    Launching,
    /// The cluster is up; vLLM and the agent are starting.
    Initializing,
    /// The agent registered and sends heartbeats.
    Active,
    /// Heartbeats stopped, or the cluster is not UP in SkyPilot.
    Unhealthy,
    /// Being taken down.
    Draining,
    /// Gone (final).
    Terminated,
    /// The launch failed (final); the reason is stored.
    Failed,
}

impl NodeStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [NodeStatus; 8] = [
        NodeStatus::Requested,
        NodeStatus::Launching,
        NodeStatus::Initializing,
        NodeStatus::Active,
        NodeStatus::Unhealthy,
        NodeStatus::Draining,
        NodeStatus::Terminated,
        NodeStatus::Failed,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Requested => "requested",
            NodeStatus::Launching => "launching",
            NodeStatus::Initializing => "initializing",
            NodeStatus::Active => "active",
            NodeStatus::Unhealthy => "unhealthy",
            NodeStatus::Draining => "draining",
            NodeStatus::Terminated => "terminated",
            NodeStatus::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<NodeStatus> {
        NodeStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Final states: the reconciler never touches them again.
    pub fn is_final(self) -> bool {
        matches!(self, NodeStatus::Terminated | NodeStatus::Failed)
    }

    /// The column holding the time the node entered this state.
    pub fn timestamp_column(self) -> &'static str {
        match self {
            NodeStatus::Requested => "created_at",
            NodeStatus::Launching => "launching_at",
            NodeStatus::Initializing => "initializing_at",
            NodeStatus::Active => "active_at",
            NodeStatus::Unhealthy => "unhealthy_at",
            NodeStatus::Draining => "draining_at",
            NodeStatus::Terminated => "terminated_at",
            NodeStatus::Failed => "failed_at",
        }
    }
}

impl std::fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
