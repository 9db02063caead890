//! `POST /queue`: the job queue of one cluster (read from its head node by the server).

use serde::{Deserialize, Serialize};

/// Body of `POST /queue`.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterQueueQuery {
    /// The cluster.
    pub cluster_name: String,
    /// Skip finished jobs: only active ones matter for idleness.
    pub skip_finished: bool,
    /// All users' jobs on the cluster.
    pub all_users: bool,
}

/// A cluster job status (`skylet/job_lib.py:JobStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClusterJobStatus {
    /// Created.
    Init,
    /// Waiting for resources on the cluster.
    Pending,
    /// Running setup.
    SettingUp,
    /// Running.
    Running,
    /// The driver failed.
    FailedDriver,
    /// Succeeded.
    Succeeded,
    /// Failed.
    Failed,
    /// Setup failed.
    FailedSetup,
    /// Cancelled.
    Cancelled,
    /// A status this client does not know.
    #[serde(other)]
    Other,
}

/// One job of a cluster's queue (`ClusterJobRecord`), the fields skydeck reads.
#[derive(Debug, Clone, Deserialize)]
pub struct ClusterJob {
    /// Job id on the cluster.
    pub job_id: i64,
    /// Status.
    pub status: ClusterJobStatus,
}
