//! `POST /launch`, `POST /down` and the request table (`GET /api/status`): what a control plane
//! needs to start clusters, take them down, and follow requests without blocking on them.

use serde::{Deserialize, Serialize};

use super::{RequestName, RequestStatus};

/// Path of the launch endpoint (request [`RequestName::Launch`]).
pub const LAUNCH_PATH: &str = "/launch";

/// Body of `POST /launch` (`LaunchBody`). The result is a long request: follow it with
/// [`crate::Client::request_status`], fetch its outcome with [`crate::Client::finished`].
#[derive(Debug, Clone, Serialize)]
pub struct LaunchBody<'a> {
    /// The task YAML.
    pub task: &'a str,
    /// The cluster to create (or reuse).
    pub cluster_name: &'a str,
    /// Keep retrying regions and zones until capacity appears. False: a quota or capacity
    /// error comes back as the request's failure, which the control plane reports.
    pub retry_until_up: bool,
    /// Validate only.
    pub dryrun: bool,
}

/// Body of `POST /down` (`StopOrDownBody`).
#[derive(Debug, Clone, Serialize)]
pub struct DownBody<'a> {
    /// The cluster.
    pub cluster_name: &'a str,
    /// Remove the cluster from SkyPilot's table even if the cloud teardown fails.
    pub purge: bool,
}

/// One row of `GET /api/status` (the request table, readable form).
#[derive(Debug, Clone, Deserialize)]
pub struct RequestSummary {
    /// Full request id.
    pub request_id: String,
    /// `sky.launch`, `sky.down`, …
    pub name: RequestName,
    /// Where the request is in its life.
    pub status: RequestStatus,
    /// The cluster the request operates on.
    #[serde(default)]
    pub cluster_name: Option<String>,
    /// Epoch seconds.
    #[serde(default)]
    pub created_at: Option<f64>,
    /// Epoch seconds.
    #[serde(default)]
    pub finished_at: Option<f64>,
    /// A short status message.
    #[serde(default)]
    pub status_msg: Option<String>,
}

impl RequestSummary {
    /// Whether the request has finished one way or another.
    pub fn is_finished(&self) -> bool {
        self.status.is_finished()
    }
}

/// The result of `sky.launch` (`encode_launch`): the cluster job id and a pickled handle.
#[derive(Debug, Clone, Deserialize)]
pub struct LaunchResult {
    /// The job the task runs as on the cluster.
    #[serde(default)]
    pub job_id: Option<i64>,
}
