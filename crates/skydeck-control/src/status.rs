//! A node's lifecycle states live in the contract ([`skydeck_contract::NodeStatus`]), shared with
//! clients and agents; the column each state's entry time is stored in belongs to the store.

pub use skydeck_contract::NodeStatus;

/// The `nodes` column holding the time a node entered `status`.
pub fn timestamp_column(status: NodeStatus) -> &'static str {
    match status {
        NodeStatus::Requested => "created_at",
        NodeStatus::Launching => "launching_at",
        NodeStatus::Initializing => "initializing_at",
        NodeStatus::Active => "active_at",
        NodeStatus::Unhealthy => "unhealthy_at",
        NodeStatus::Draining => "draining_at",
        NodeStatus::Stopped => "stopped_at",
        NodeStatus::Terminated => "terminated_at",
        NodeStatus::Failed => "failed_at",
    }
}

/// How a node's stored reason starts when SkyPilot's launch request failed; the exception
/// class and message follow (`SkyPilot launch failed: ResourcesUnavailableError: …`). The pool
/// controller reads failures back by it.
pub const LAUNCH_FAILED: &str = "SkyPilot launch failed: ";

/// How a node's stored reason starts when drift found its cluster in SkyPilot but not UP (a
/// spot cluster preempted to STOPPED or INIT); the status follows.
pub const CLUSTER_NOT_UP: &str = "SkyPilot reports the cluster ";
