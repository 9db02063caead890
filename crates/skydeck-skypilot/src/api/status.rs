//! `POST /status`: the cluster table.

use serde::{Deserialize, Serialize};

/// Body of `POST /status`. The server's defaults are wrong for a collector (`include_credentials`
/// defaults to true and embeds SSH keys; `include_handle` ships a pickle that can be megabytes),
/// so every field is sent explicitly.
#[derive(Debug, Clone, Serialize)]
pub struct StatusQuery {
    /// Clusters to list (globs allowed); `None` for all.
    pub cluster_names: Option<Vec<String>>,
    /// `NONE`: answer from the database, never call the clouds.
    pub refresh: &'static str,
    /// All users' clusters, not just the caller's.
    pub all_users: bool,
    /// Never ask for SSH credentials.
    pub include_credentials: bool,
    /// Never ask for the pickled handle.
    pub include_handle: bool,
}

impl Default for StatusQuery {
    fn default() -> Self {
        StatusQuery {
            cluster_names: None,
            refresh: "NONE",
            all_users: true,
            include_credentials: false,
            include_handle: false,
        }
    }
}

/// A cluster status (`ClusterStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClusterStatus {
    /// Launching, or in an abnormal state.
    Init,
    /// Running.
    Up,
    /// Stopped.
    Stopped,
    /// Being stopped by autostop.
    Autostopping,
    /// Display-only pending state.
    Pending,
    /// A status this client does not know.
    #[serde(other)]
    Other,
}

impl ClusterStatus {
    /// Every known status, in SkyPilot's order.
    pub const ALL: [ClusterStatus; 5] = [
        ClusterStatus::Init,
        ClusterStatus::Up,
        ClusterStatus::Stopped,
        ClusterStatus::Autostopping,
        ClusterStatus::Pending,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterStatus::Init => "INIT",
            ClusterStatus::Up => "UP",
            ClusterStatus::Stopped => "STOPPED",
            ClusterStatus::Autostopping => "AUTOSTOPPING",
            ClusterStatus::Pending => "PENDING",
            ClusterStatus::Other => "OTHER",
        }
    }
}

/// One cluster of `/status` (`StatusResponse`), the fields skydeck reads.
#[derive(Debug, Clone, Deserialize)]
pub struct ClusterRecord {
    /// Cluster name.
    pub name: String,
    /// Cluster status.
    pub status: ClusterStatus,
    /// Number of nodes.
    #[serde(default)]
    pub nodes: Option<u32>,
    /// `AWS`, `GCP`, `Kubernetes`, ….
    #[serde(default)]
    pub cloud: Option<String>,
    /// Region (for Kubernetes: the context).
    #[serde(default)]
    pub region: Option<String>,
    /// Python dict repr of the accelerators (`"{'A100': 8}"`); absent for CPU-only clusters.
    #[serde(default)]
    pub accelerators: Option<String>,
    /// `2x[spot](gpus=A100:8, …)`.
    #[serde(default)]
    pub resources_str: Option<String>,
    /// Owner's name.
    #[serde(default)]
    pub user_name: Option<String>,
    /// Owner's hash.
    #[serde(default)]
    pub user_hash: Option<String>,
    /// Workspace.
    #[serde(default)]
    pub workspace: Option<String>,
    /// Cluster hash (joins with cost records).
    #[serde(default)]
    pub cluster_hash: Option<String>,
    /// The name the cloud knows the cluster by (lower-cased name plus `-<user hash>`, truncated
    /// and hashed when long). On Kubernetes its pods are `<this>-head` and `<this>-worker<i>`
    /// with the label `skypilot-cluster-name=<this>`: what GPU metrics are matched by.
    #[serde(default)]
    pub cluster_name_on_cloud: Option<String>,
    /// Launch time, epoch seconds.
    #[serde(default)]
    pub launched_at: Option<i64>,
    /// SkyPilot labels (`resources.labels`), for `[scope] labels`.
    #[serde(default, deserialize_with = "super::lenient_labels")]
    pub labels: super::Labels,
    /// Launched by a managed-jobs or SkyServe controller (a managed job's cluster, a service
    /// replica or a pool worker). `/status` leaves these out unless the server runs with
    /// `SKYPILOT_DEBUG`, so true is rare, but when it is, the cluster is not the user's to stop.
    #[serde(default)]
    pub is_managed: bool,
    /// The task YAML of the last launch. A SkyServe replica or pool worker is launched from the
    /// service's YAML, so its top-level `service:` (or `pool:`) section shows here.
    #[serde(default)]
    pub last_creation_yaml: Option<String>,
}

impl ClusterRecord {
    /// Accelerators on each node (`"{'H100': 8}"` → 8; 0 for a CPU-only cluster).
    pub fn gpus_per_node(&self) -> f64 {
        self.accelerators
            .as_deref()
            .map(super::parse_accelerators)
            .unwrap_or_default()
            .iter()
            .map(|(_, n)| n)
            .sum()
    }
}
