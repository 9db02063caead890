//! `POST /stop` and `POST /autostop` (and the wire names of `/down`): what an idle stop submits.
//!
//! Each is an asynchronous request of the `short` pool whose result is `null`; SkyPilot records
//! it in its request table under the cluster's name, with the request names below
//! (`REQUEST_NAME_PREFIX` `sky.` + `RequestName.CLUSTER_*`, `sky/server/server.py` and
//! `sky/server/requests/request_names.py` of skypilot 0.14.1).

use serde::Serialize;

/// Path of the stop endpoint.
pub const STOP_PATH: &str = "/stop";
/// Path of the autostop endpoint.
pub const AUTOSTOP_PATH: &str = "/autostop";
/// Path of the teardown endpoint.
pub const DOWN_PATH: &str = "/down";
/// Request name of `/stop` in the request table (`RequestName.CLUSTER_STOP`).
pub const STOP_REQUEST_NAME: &str = "sky.stop";
/// Request name of `/autostop` in the request table (`RequestName.CLUSTER_AUTOSTOP`).
pub const AUTOSTOP_REQUEST_NAME: &str = "sky.autostop";
/// Request name of `/down` in the request table (`RequestName.CLUSTER_DOWN`).
pub const DOWN_REQUEST_NAME: &str = "sky.down";

/// Body of `POST /stop` (`StopOrDownBody`, the same model as `/down`'s [`super::DownBody`]).
/// `graceful`/`graceful_timeout` are left to the server's defaults (not graceful).
#[derive(Debug, Clone, Serialize)]
pub struct StopBody<'a> {
    /// The cluster.
    pub cluster_name: &'a str,
    /// Mark the cluster stopped in SkyPilot's table even if the cloud call fails. An idle
    /// stop sends false: a failure must stay visible, not be papered over.
    pub purge: bool,
}

/// What autostop waits for before it counts a cluster as idle (`AutostopWaitFor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AutostopWaitFor {
    /// No running jobs and no SSH session (SkyPilot's default).
    JobsAndSsh,
    /// No running jobs.
    Jobs,
    /// Only the idle time.
    None,
}

/// Body of `POST /autostop` (`AutostopBody`).
#[derive(Debug, Clone, Serialize)]
pub struct AutostopBody<'a> {
    /// The cluster.
    pub cluster_name: &'a str,
    /// Minutes of SkyPilot-side idleness before it stops the cluster; `-1` cancels autostop.
    pub idle_minutes: i64,
    /// `None` (not sent) keeps the server's default (`autostop.wait_for` of its config, else
    /// `jobs_and_ssh`), so SkyPilot's own job and SSH checks still apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_for: Option<AutostopWaitFor>,
    /// Tear the cluster down instead of stopping it.
    pub down: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_match_the_server_models() {
        assert_eq!(
            serde_json::to_value(StopBody {
                cluster_name: "c",
                purge: false
            })
            .unwrap(),
            json!({"cluster_name": "c", "purge": false})
        );
        assert_eq!(
            serde_json::to_value(AutostopBody {
                cluster_name: "c",
                idle_minutes: 5,
                wait_for: None,
                down: false
            })
            .unwrap(),
            json!({"cluster_name": "c", "idle_minutes": 5, "down": false})
        );
        assert_eq!(
            serde_json::to_value(AutostopBody {
                cluster_name: "c",
                idle_minutes: 5,
                wait_for: Some(AutostopWaitFor::JobsAndSsh),
                down: true
            })
            .unwrap()["wait_for"],
            "jobs_and_ssh"
        );
    }
}
