//! The agent routes: register and heartbeat, each authenticated by the node's own token
//! before its body is read, answered with the contract's [`AgentReply`].

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use skydeck_contract::{AgentReply, ErrorBody, Heartbeat, Register};

use super::extract::ApiJson;
use super::{ApiError, AppState, auth};
use crate::nodes;

/// A node's agent registers once its engine is up (the node becomes active).
#[utoipa::path(post, path = "/v1/agent/register", tag = "agent",
    security(("nodeToken" = [])),
    request_body(content = Register, content_type = "application/json"),
    responses(
        (status = 200, description = "Registered (a final node is told to exit)", body = AgentReply),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong node token", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody),
        (status = 415, description = "The body is not application/json", body = ErrorBody),
        (status = 422, description = "A field broke a rule, or node_id is another node's", body = ErrorBody),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    ))]
pub async fn register(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<ApiJson<Register>, ApiError>,
) -> Result<Json<AgentReply>, ApiError> {
    let node = auth::agent_node(&s, &headers).await?;
    let ApiJson(body) = body?;
    Ok(Json(nodes::register(&s.db, node, &body, s.timing()).await?))
}

/// A node's heartbeat, every `heartbeat_interval_seconds`; the reply carries the order.
#[utoipa::path(post, path = "/v1/agent/heartbeat", tag = "agent",
    security(("nodeToken" = [])),
    request_body(content = Heartbeat, content_type = "application/json"),
    responses(
        (status = 200, description = "Stored (a final node is told to exit, nothing stored)", body = AgentReply),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong node token", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody),
        (status = 415, description = "The body is not application/json", body = ErrorBody),
        (status = 422, description = "A field broke a rule, or node_id is another node's", body = ErrorBody),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    ))]
pub async fn heartbeat(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<ApiJson<Heartbeat>, ApiError>,
) -> Result<Json<AgentReply>, ApiError> {
    let node = auth::agent_node(&s, &headers).await?;
    let ApiJson(body) = body?;
    let (reply, wake) = nodes::heartbeat(&s.db, node, &body, s.timing()).await?;
    if wake {
        s.wake.notify_one();
    }
    Ok(Json(reply))
}
