//! `POST /cost_report`: cluster cost history.

use serde::{Deserialize, Serialize};

/// Body of `POST /cost_report`.
#[derive(Debug, Clone, Serialize)]
pub struct CostReportQuery {
    /// Terminated clusters active within this many days are included (live ones always are).
    pub days: u32,
    /// Only these clusters (`None`: all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_names: Option<Vec<String>>,
}

/// One record of `/cost_report`, the fields skydeck reads. `resources` (a pickle) is skipped.
#[derive(Debug, Clone, Deserialize)]
pub struct CostRecord {
    /// Cluster name.
    pub name: String,
    /// Cluster hash.
    #[serde(default)]
    pub cluster_hash: Option<String>,
    /// Seconds of use: the sum of the intervals, an open one counted to the server's now.
    #[serde(default)]
    pub duration: Option<f64>,
    /// Nodes.
    #[serde(default)]
    pub num_nodes: Option<u32>,
    /// `[[start, end or null], …]`, epoch seconds.
    #[serde(default)]
    pub usage_intervals: Option<Vec<(f64, Option<f64>)>>,
    /// USD for the whole record, computed by the server from its catalog.
    #[serde(default)]
    pub total_cost: Option<f64>,
    /// Current status, `null` once terminated.
    #[serde(default)]
    pub status: Option<String>,
    /// Cloud.
    #[serde(default)]
    pub cloud: Option<String>,
    /// Region.
    #[serde(default)]
    pub region: Option<String>,
    /// Python dict repr of the accelerators, or the string `"None"`.
    #[serde(default)]
    pub accelerators: Option<String>,
    /// `3x[spot](…)`.
    #[serde(default)]
    pub resources_str: Option<String>,
    /// Owner's name.
    #[serde(default)]
    pub user_name: Option<String>,
    /// Workspace.
    #[serde(default)]
    pub workspace: Option<String>,
}

impl CostRecord {
    /// Whether the cluster still runs: its last usage interval has no end.
    pub fn is_running(&self) -> bool {
        self.usage_intervals
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .any(|(_, end)| end.is_none())
    }

    /// Its spend per hour, total cost over duration (`None` without a cost or a duration).
    pub fn hourly_cost(&self) -> Option<f64> {
        match (self.total_cost, self.duration) {
            (Some(total), Some(d)) if d > 0.0 => Some(total / d * 3600.0),
            _ => None,
        }
    }
}
