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
        NodeStatus::Terminated => "terminated_at",
        NodeStatus::Failed => "failed_at",
    }
}
