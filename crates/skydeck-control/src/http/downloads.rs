//! The agent binary the task downloads, and its checksum line. The binary is checked against
//! the sha256 taken at start on every download: one replaced on disk since would fail every
//! node's checksum, so it is refused with a 503 instead.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use skydeck_contract::ErrorBody;

use super::{ApiError, AppState};
use crate::token;

/// The node agent binary.
#[utoipa::path(get, path = "/downloads/skydeck-linux-amd64", tag = "downloads",
    responses(
        (status = 200, description = "The binary; X-Checksum-Sha256 carries its sha256", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 503, description = "The binary cannot be read or changed since start", body = ErrorBody),
    ))]
pub async fn agent(State(s): State<AppState>) -> Result<Response, ApiError> {
    let bytes = tokio::fs::read(&s.agent.path).await.map_err(|e| {
        tracing::error!(path = %s.agent.path.display(), error = %e, "cannot read the agent binary");
        ApiError::Unavailable {
            code: "agent_unavailable",
            message: "the agent binary cannot be read",
        }
    })?;
    if token::sha256_hex(&bytes) != s.agent.sha256 {
        return Err(ApiError::Unavailable {
            code: "agent_changed",
            message: "the agent binary changed since the control plane started; restart it",
        });
    }
    let sum = HeaderValue::from_str(&s.agent.sha256).map_err(|_| ApiError::Unavailable {
        code: "agent_unavailable",
        message: "the agent binary's checksum is not printable",
    })?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::HeaderName::from_static("x-checksum-sha256"), sum),
        ],
        bytes,
    )
        .into_response())
}

/// The `sha256sum` line of the agent binary.
#[utoipa::path(get, path = "/downloads/skydeck-linux-amd64.sha256", tag = "downloads",
    responses((status = 200, description = "`<sha256>  skydeck-linux-amd64`", body = String, content_type = "text/plain")))]
pub async fn sha256(State(s): State<AppState>) -> String {
    format!("{}  skydeck-linux-amd64\n", s.agent.sha256)
}
