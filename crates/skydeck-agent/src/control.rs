//! The control plane as the agent talks to it: `POST` a [`Register`] or a [`Heartbeat`] with
//! the node's token, get an [`AgentReply`] back. Answers are sorted into what the agent does
//! next ([`PostError`]): retry later, stop because the token or node is refused, or exit
//! because the node is gone.

use std::time::Duration;

use serde::Serialize;
use skydeck_contract::{AgentReply, ErrorBody, Heartbeat, Register, paths};

/// Why a report did not get an [`AgentReply`].
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// 401 or 403: the token is wrong or belongs to another node. Retrying cannot help.
    #[error("the control plane refused this node's token ({status}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The control plane's message.
        message: String,
    },
    /// 404 or 409: the node is terminated or unknown; the agent has nothing left to do.
    #[error("the control plane no longer has this node ({status}): {message}")]
    Gone {
        /// The HTTP status.
        status: u16,
        /// The control plane's message.
        message: String,
    },
    /// Anything else (unreachable, 5xx, a reply that does not parse): retried.
    #[error("{0}")]
    Transient(String),
}

/// A client of one control plane for one node.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl ControlPlane {
    /// A client of the control plane at `base`; `token` is the node's own (never logged).
    pub fn new(base: &str, token: String, timeout: Duration) -> anyhow::Result<ControlPlane> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()?;
        Ok(ControlPlane {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// `POST /v1/agent/register`.
    pub async fn register(&self, body: &Register) -> Result<AgentReply, PostError> {
        self.post(paths::AGENT_REGISTER, body).await
    }

    /// `POST /v1/agent/heartbeat`.
    pub async fn heartbeat(&self, body: &Heartbeat) -> Result<AgentReply, PostError> {
        self.post(paths::AGENT_HEARTBEAT, body).await
    }

    async fn post<B: Serialize>(&self, path: &str, body: &B) -> Result<AgentReply, PostError> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            // reqwest's error names the URL, never the Authorization header.
            .map_err(|e| {
                PostError::Transient(format!("{url}: cannot reach the control plane: {e}"))
            })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if status == 200 {
            return serde_json::from_str(&text).map_err(|e| {
                PostError::Transient(format!("{url} answered a reply that does not parse: {e}"))
            });
        }
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| crate::engine::bounded(text.trim()));
        Err(match status {
            401 | 403 => PostError::Refused { status, message },
            404 | 409 => PostError::Gone { status, message },
            _ => PostError::Transient(format!("{url} answered {status}: {message}")),
        })
    }
}
