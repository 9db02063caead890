//! `POST /jobs/queue/v2`: the managed-jobs table.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Body of `POST /jobs/queue/v2`. Without `page`/`limit` one request returns every job; each
/// request costs the server a fresh Python subprocess, so one request with only the needed
/// `fields` is the cheapest way to read the table.
#[derive(Debug, Clone, Serialize)]
pub struct JobsQueueQuery {
    /// Never ask the controller to refresh.
    pub refresh: bool,
    /// Include finished jobs (the 7-day metrics need them).
    pub skip_finished: bool,
    /// All users' jobs.
    pub all_users: bool,
    /// Only these record fields (`job_id`, `task_id`, `status` are always returned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<&'static str>>,
}

impl JobsQueueQuery {
    /// The fields [`ManagedJobRecord`] reads.
    pub const FIELDS: &'static [&'static str] = &[
        "job_id",
        "task_id",
        "status",
        "job_name",
        "task_name",
        "submitted_at",
        "start_at",
        "end_at",
        "job_duration",
        "recovery_count",
        "resources",
        "cluster_resources",
        "accelerators",
        "cloud",
        "region",
        "workspace",
        "user_name",
        "labels",
    ];
}

impl Default for JobsQueueQuery {
    fn default() -> Self {
        JobsQueueQuery {
            refresh: false,
            skip_finished: false,
            all_users: true,
            fields: Some(Self::FIELDS.to_vec()),
        }
    }
}

/// The result of `/jobs/queue/v2`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct JobsQueue {
    /// One record per task.
    pub jobs: Vec<ManagedJobRecord>,
    /// Matching jobs (not task rows).
    #[serde(default)]
    pub total: Option<u64>,
}

/// A managed job status (`ManagedJobStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ManagedJobStatus {
    /// Waiting for the controller.
    Pending,
    /// Deprecated: submitted to the controller.
    Submitted,
    /// Launching its cluster.
    Starting,
    /// Running.
    Running,
    /// Finishing (a job group winding down).
    WindingDown,
    /// Recovering after a preemption or failure.
    Recovering,
    /// Being cancelled.
    Cancelling,
    /// Finished successfully.
    Succeeded,
    /// Cancelled.
    Cancelled,
    /// The user program failed.
    Failed,
    /// Setup failed.
    FailedSetup,
    /// Pre-checks failed.
    FailedPrechecks,
    /// No resources could be found.
    FailedNoResource,
    /// The controller failed.
    FailedController,
    /// A status this client does not know.
    #[serde(other)]
    Other,
}

impl ManagedJobStatus {
    /// Every known status, in SkyPilot's order.
    pub const ALL: [ManagedJobStatus; 14] = [
        ManagedJobStatus::Pending,
        ManagedJobStatus::Submitted,
        ManagedJobStatus::Starting,
        ManagedJobStatus::Running,
        ManagedJobStatus::WindingDown,
        ManagedJobStatus::Recovering,
        ManagedJobStatus::Cancelling,
        ManagedJobStatus::Succeeded,
        ManagedJobStatus::Cancelled,
        ManagedJobStatus::Failed,
        ManagedJobStatus::FailedSetup,
        ManagedJobStatus::FailedPrechecks,
        ManagedJobStatus::FailedNoResource,
        ManagedJobStatus::FailedController,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ManagedJobStatus::Pending => "PENDING",
            ManagedJobStatus::Submitted => "SUBMITTED",
            ManagedJobStatus::Starting => "STARTING",
            ManagedJobStatus::Running => "RUNNING",
            ManagedJobStatus::WindingDown => "WINDING_DOWN",
            ManagedJobStatus::Recovering => "RECOVERING",
            ManagedJobStatus::Cancelling => "CANCELLING",
            ManagedJobStatus::Succeeded => "SUCCEEDED",
            ManagedJobStatus::Cancelled => "CANCELLED",
            ManagedJobStatus::Failed => "FAILED",
            ManagedJobStatus::FailedSetup => "FAILED_SETUP",
            ManagedJobStatus::FailedPrechecks => "FAILED_PRECHECKS",
            ManagedJobStatus::FailedNoResource => "FAILED_NO_RESOURCE",
            ManagedJobStatus::FailedController => "FAILED_CONTROLLER",
            ManagedJobStatus::Other => "OTHER",
        }
    }

    /// SUCCEEDED, CANCELLED and every FAILED* status.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ManagedJobStatus::Succeeded | ManagedJobStatus::Cancelled
        ) || self.is_failed()
    }

    /// The FAILED* statuses.
    pub fn is_failed(self) -> bool {
        matches!(
            self,
            ManagedJobStatus::Failed
                | ManagedJobStatus::FailedSetup
                | ManagedJobStatus::FailedPrechecks
                | ManagedJobStatus::FailedNoResource
                | ManagedJobStatus::FailedController
        )
    }
}

/// One task row of `/jobs/queue/v2` (`ManagedJobRecord`), the fields skydeck reads.
#[derive(Debug, Clone, Deserialize)]
pub struct ManagedJobRecord {
    /// The managed job id the user sees.
    pub job_id: i64,
    /// Task index within a pipeline.
    #[serde(default)]
    pub task_id: Option<i64>,
    /// Task status.
    pub status: ManagedJobStatus,
    /// Job name.
    #[serde(default)]
    pub job_name: Option<String>,
    /// Task name.
    #[serde(default)]
    pub task_name: Option<String>,
    /// Submission time, epoch seconds.
    #[serde(default)]
    pub submitted_at: Option<f64>,
    /// Start time, epoch seconds.
    #[serde(default)]
    pub start_at: Option<f64>,
    /// End time, epoch seconds.
    #[serde(default)]
    pub end_at: Option<f64>,
    /// Seconds of actual running time, computed by the server at query time.
    #[serde(default)]
    pub job_duration: Option<f64>,
    /// Number of recoveries.
    #[serde(default)]
    pub recovery_count: Option<u32>,
    /// Requested resources, `1x[A10G:4][Spot]`.
    #[serde(default)]
    pub resources: Option<String>,
    /// Resources of the live cluster, `2x[spot](gpus=H100:8, …)`; `-` when never launched.
    #[serde(default)]
    pub cluster_resources: Option<String>,
    /// Accelerators (a JSON object here, unlike `/status`).
    #[serde(default)]
    pub accelerators: Option<BTreeMap<String, f64>>,
    /// Cloud, `-` when never launched.
    #[serde(default)]
    pub cloud: Option<String>,
    /// Region.
    #[serde(default)]
    pub region: Option<String>,
    /// Workspace.
    #[serde(default)]
    pub workspace: Option<String>,
    /// Owner's name.
    #[serde(default)]
    pub user_name: Option<String>,
    /// SkyPilot labels (`resources.labels`), for `[scope] labels`.
    #[serde(default, deserialize_with = "super::lenient_labels")]
    pub labels: super::Labels,
}
