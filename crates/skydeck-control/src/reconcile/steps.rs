//! One node's step: what the reconciler does with a node in `requested`, `launching`,
//! `initializing` or `draining`, given what SkyPilot says about its requests.
//!
//! Every SkyPilot call that creates something is preceded by a claim in the store (only one
//! replica wins it) and followed by storing the request id, so a crash in between is repaired
//! by finding the request in SkyPilot's request table, not by sending it again. Whether a
//! failed submit may have created a request is the SkyPilot client's call
//! ([`skydeck_skypilot::Error::is_definite_rejection`]); only a certain rejection releases a claim.

use std::time::Duration;

use skydeck_skypilot::Error as SkyError;
use skydeck_skypilot::api::{DownBody, LaunchBody, RequestName, RequestStatus, StopBody};

use super::{ReconcilerConfig, SkyApi, StepError};
use crate::status::NodeStatus;
use crate::store::{Node, Store};
use crate::task::{TaskContext, render};
use crate::token;

/// First backoff after a failed step; it doubles per consecutive failure.
const BACKOFF_BASE_MS: i64 = 1000;
/// Doublings before the backoff stops growing.
const BACKOFF_MAX_DOUBLINGS: i64 = 6;
/// The longest backoff.
const BACKOFF_CAP_MS: i64 = 60_000;
/// A teardown request created this long before the claim (clock skew between this replica and
/// the SkyPilot server) still counts as the claimed one.
const DOWN_CLOCK_SLACK_SECS: f64 = 5.0;

/// The delay after the `attempts`-th consecutive failure: 1 s, 2 s, 4 s … up to a minute.
pub(super) fn backoff_ms(attempts: i64) -> i64 {
    (BACKOFF_BASE_MS << attempts.clamp(0, BACKOFF_MAX_DOUBLINGS)).min(BACKOFF_CAP_MS)
}

/// What one node's step needs.
pub(super) struct Step<S> {
    pub(super) db: Store,
    pub(super) sky: S,
    pub(super) cfg: ReconcilerConfig,
}

impl<S: SkyApi> Step<S> {
    /// Steps `node` as read at the start of the tick; a failure backs the node off.
    pub(super) async fn run(&self, node: Node) -> Result<(), StepError> {
        let result = match node.status {
            NodeStatus::Requested => self.requested(&node).await,
            NodeStatus::Launching => self.launching(&node).await,
            NodeStatus::Initializing => self.initializing(&node).await,
            NodeStatus::Draining => self.draining(&node).await,
            // Heartbeats and drift are checked in bulk; final nodes are never touched.
            NodeStatus::Active
            | NodeStatus::Unhealthy
            | NodeStatus::Stopped
            | NodeStatus::Terminated
            | NodeStatus::Failed => Ok(()),
        };
        if let Err(e) = &result {
            let reason = format!("retrying after an error: {e}");
            self.db
                .back_off(&node.id, backoff_ms(node.attempts), &reason)
                .await?;
        }
        result
    }

    /// Moves `node` from the status it was read in to `to`, if nothing moved it meanwhile.
    async fn move_to(&self, node: &Node, to: NodeStatus, reason: &str) -> Result<bool, StepError> {
        Ok(self
            .db
            .transition(&node.id, &[node.status], to, Some(reason))
            .await?)
    }

    async fn later(&self, node: &Node, after: Duration) -> Result<(), StepError> {
        self.db
            .wait_until(&node.id, self.db.now_ms() + after.as_millis() as i64)
            .await?;
        Ok(())
    }

    fn abandoned(&self, since_ms: i64) -> bool {
        self.db.now_ms() - since_ms >= self.cfg.abandoned_after.as_millis() as i64
    }

    async fn requested(&self, node: &Node) -> Result<(), StepError> {
        if let Some(intent) = node.launch_intent_at {
            // Claimed earlier but no request id stored: the claimer died or its submit failed
            // in an unknown way. Adopt SkyPilot's launch of this cluster if there is one.
            let requests = self.sky.requests_for_cluster(&node.cluster_name).await?;
            if let Some(r) = requests.iter().find(|r| r.name == RequestName::Launch) {
                tracing::info!(cluster = %node.cluster_name, request_id = %r.request_id, "adopting the launch a previous replica submitted");
                self.db.launch_submitted(&node.id, &r.request_id).await?;
                return Ok(());
            }
            if !self.abandoned(intent) {
                // The claimer may still be sending it; look again once it would have timed out.
                return self.later(node, self.cfg.abandoned_after / 4).await;
            }
        }
        let Some(spec) = node.spec() else {
            self.move_to(
                node,
                NodeStatus::Failed,
                "the stored node does not validate",
            )
            .await?;
            return Ok(());
        };
        // A fresh token for the agent: only its hash is stored.
        let token = token::generate();
        if !self
            .db
            .claim_launch(&node.id, node.launch_intent_at, &token::hash(&token))
            .await?
        {
            return Ok(()); // someone else claimed it
        }
        let yaml = render(
            &spec,
            &TaskContext {
                cluster_name: &node.cluster_name,
                control_plane_url: &self.cfg.public_url,
                agent_sha256: &self.cfg.agent_sha256,
                agent_token: &token,
            },
        );
        let body = LaunchBody {
            task: &yaml,
            cluster_name: &node.cluster_name,
            retry_until_up: false,
            dryrun: false,
        };
        tracing::info!(cluster = %node.cluster_name, provider = %spec.provider, region = %spec.region, gpu = %spec.gpu, model = %spec.model, "launching node with SkyPilot");
        match self.sky.submit_launch(&body).await {
            Ok(request_id) => {
                self.db.launch_submitted(&node.id, &request_id).await?;
                tracing::info!(cluster = %node.cluster_name, %request_id, "launch submitted");
                Ok(())
            }
            Err(e) if e.is_definite_rejection() => {
                // The server refused before creating a request: nothing to adopt later.
                self.db.release_launch(&node.id).await?;
                Err(e.into())
            }
            // Unknown outcome (timeout, connection reset): keep the claim; the next attempt
            // looks for the request before launching again.
            Err(e) => Err(e.into()),
        }
    }

    async fn launching(&self, node: &Node) -> Result<(), StepError> {
        let Some(request_id) = node.launch_request_id.as_deref() else {
            return Ok(());
        };
        let Some(req) = self.sky.request_status(request_id).await? else {
            self.move_to(
                node,
                NodeStatus::Failed,
                &format!("SkyPilot has no record of launch request {request_id}"),
            )
            .await?;
            return Ok(());
        };
        match req.status {
            RequestStatus::Succeeded => {
                self.sky.launch_result(request_id).await?;
                if self
                    .db
                    .transition(
                        &node.id,
                        &[NodeStatus::Launching],
                        NodeStatus::Initializing,
                        None,
                    )
                    .await?
                {
                    tracing::info!(cluster = %node.cluster_name, "GPU node launched; waiting for its agent");
                }
                Ok(())
            }
            RequestStatus::Failed | RequestStatus::Cancelled => {
                let reason = match self.sky.launch_result(request_id).await {
                    Err(SkyError::RequestFailed {
                        error_type,
                        message,
                        ..
                    }) => format!("{}{error_type}: {message}", crate::status::LAUNCH_FAILED),
                    Err(e) if e.is_cancelled() => {
                        "the launch request was cancelled in SkyPilot".to_string()
                    }
                    Err(e) => return Err(e.into()),
                    Ok(_) => format!("the launch request ended {}", req.status),
                };
                tracing::error!(cluster = %node.cluster_name, %reason, "SkyPilot launch failed");
                self.move_to(node, NodeStatus::Failed, &reason).await?;
                Ok(())
            }
            // Still queued or running, or a status a newer server added: look again later.
            RequestStatus::Pending
            | RequestStatus::Waiting
            | RequestStatus::Running
            | RequestStatus::Other(_) => self.later(node, self.cfg.poll_interval).await,
        }
    }

    async fn initializing(&self, node: &Node) -> Result<(), StepError> {
        let since = node.initializing_at.unwrap_or(node.updated_at);
        if self.db.now_ms() - since > self.cfg.register_timeout.as_millis() as i64 {
            let reason = format!(
                "the node agent did not register within {} s of the cluster coming up",
                self.cfg.register_timeout.as_secs()
            );
            self.move_to(node, NodeStatus::Unhealthy, &reason).await?;
            return Ok(());
        }
        self.later(node, self.cfg.poll_interval).await
    }

    async fn draining(&self, node: &Node) -> Result<(), StepError> {
        if let Some(request_id) = node.down_request_id.as_deref() {
            return self.follow_down(node, request_id).await;
        }
        // The launch is still running in SkyPilot: take the cluster down once it has settled.
        if let Some(launch) = node.launch_request_id.as_deref()
            && node.initializing_at.is_none()
            && let Some(r) = self.sky.request_status(launch).await?
            && !r.is_finished()
        {
            return self.later(node, self.cfg.poll_interval).await;
        }
        let never_launched = match (&node.launch_request_id, node.launch_intent_at) {
            (Some(_), _) => false,
            (None, None) => true,
            (None, Some(intent)) => {
                // Claimed but never confirmed: find the launch before deciding.
                let requests = self.sky.requests_for_cluster(&node.cluster_name).await?;
                if requests.iter().any(|r| r.name == RequestName::Launch) {
                    false
                } else if self.abandoned(intent) {
                    true
                } else {
                    return self.later(node, self.cfg.abandoned_after / 4).await;
                }
            }
        };
        if never_launched {
            let reason = "terminated before it was launched";
            self.move_to(node, NodeStatus::Terminated, reason).await?;
            return Ok(());
        }
        // A pool's warm node is stopped, not taken down; the same claim and request id
        // columns record either.
        let ending = if node.stop_on_drain {
            RequestName::Stop
        } else {
            RequestName::Down
        };
        if let Some(intent) = node.down_intent_at {
            // Claimed but no request id stored: adopt the teardown if SkyPilot has it.
            let requests = self.sky.requests_for_cluster(&node.cluster_name).await?;
            let since = intent as f64 / 1000.0 - DOWN_CLOCK_SLACK_SECS;
            if let Some(r) = requests
                .iter()
                .find(|r| r.name == ending && r.created_at.unwrap_or(0.0) >= since)
            {
                self.db.down_submitted(&node.id, &r.request_id).await?;
                return Ok(());
            }
            if !self.abandoned(intent) {
                return self.later(node, self.cfg.abandoned_after / 4).await;
            }
            self.db.reset_down(&node.id).await?;
            return Ok(());
        }
        let graceful_until =
            node.draining_at.unwrap_or(node.updated_at) + self.cfg.drain_timeout.as_millis() as i64;
        let agent_alive = node.active_at.is_some();
        if !node.drain_force && agent_alive && self.db.now_ms() < graceful_until {
            // The agent learns of the drain from its heartbeat reply and reports `drained`
            // when in-flight requests are done (which sets drain_force).
            return self.later(node, self.cfg.poll_interval).await;
        }
        if !self.db.claim_down(&node.id).await? {
            return Ok(());
        }
        let request_id = if node.stop_on_drain {
            self.sky
                .submit_stop(&StopBody {
                    cluster_name: &node.cluster_name,
                    purge: false,
                })
                .await
        } else {
            self.sky
                .submit_down(&DownBody {
                    cluster_name: &node.cluster_name,
                    purge: false,
                })
                .await
        };
        match request_id {
            Ok(id) => {
                self.db.down_submitted(&node.id, &id).await?;
                tracing::info!(cluster = %node.cluster_name, request_id = %id, "teardown submitted");
                Ok(())
            }
            Err(e) => {
                if e.is_definite_rejection() {
                    self.db.reset_down(&node.id).await?;
                }
                Err(e.into())
            }
        }
    }

    async fn follow_down(&self, node: &Node, request_id: &str) -> Result<(), StepError> {
        let Some(req) = self.sky.request_status(request_id).await? else {
            // SkyPilot lost the request (a server reset): send the teardown again.
            tracing::warn!(cluster = %node.cluster_name, %request_id, "SkyPilot has no record of the teardown; retrying it");
            self.db.reset_down(&node.id).await?;
            return Ok(());
        };
        if !req.is_finished() {
            return self.later(node, self.cfg.poll_interval).await;
        }
        let result = if node.stop_on_drain {
            self.sky.stop_result(request_id).await
        } else {
            self.sky.down_result(request_id).await
        };
        match result {
            Ok(()) if node.stop_on_drain => {
                self.move_to(
                    node,
                    NodeStatus::Stopped,
                    "stopped (a warm node of its pool)",
                )
                .await?;
                tracing::info!(cluster = %node.cluster_name, "node stopped");
                Ok(())
            }
            Ok(()) => {
                self.move_to(node, NodeStatus::Terminated, "terminated")
                    .await?;
                tracing::info!(cluster = %node.cluster_name, "node terminated");
                Ok(())
            }
            Err(e) if e.is_cluster_missing() => {
                self.move_to(
                    node,
                    NodeStatus::Terminated,
                    "the cluster was already gone from SkyPilot",
                )
                .await?;
                Ok(())
            }
            Err(e) => {
                self.db.reset_down(&node.id).await?;
                Err(e.into())
            }
        }
    }
}
