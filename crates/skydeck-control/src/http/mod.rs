//! The HTTP API: admin routes (`/admin/*`, admin key), agent routes (`/v1/agent/*`, the node's
//! own token), the agent binary (`/downloads/*`), `/openapi.json`, `/metrics` and health probes.
//!
//! Handlers only parse, call a [`crate::nodes`] operation or the store, and map the result;
//! every refusal is one [`ApiError`] answered as the contract's `{"error": …}` shape, the
//! router's own 404 and 405 included. Request bodies are capped at [`MAX_BODY`] and every
//! request is bounded by [`REQUEST_TIMEOUT`], so a slow database answers 503 instead of holding
//! connections.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use skydeck_contract::paths;
use tokio::sync::Notify;

use crate::node_config::Rules;
use crate::reconcile::Observed;
use crate::store::Store;
use crate::token::AdminKeys;

pub mod admin;
pub mod agent;
pub mod auth;
pub mod downloads;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod pools;

pub use error::ApiError;

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;
/// Longest a request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest page of `GET /admin/nodes`.
pub const MAX_PAGE: i64 = 1000;
/// How long a drain may wait for in-flight requests, told to every agent.
pub const DRAIN_GRACE: Duration = Duration::from_secs(300);

/// The agent binary nodes download.
#[derive(Debug, Clone)]
pub struct AgentBinary {
    /// Where it is read from.
    pub path: std::path::PathBuf,
    /// Its sha256, hex.
    pub sha256: String,
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub db: Store,
    /// Admin keys.
    pub admin_keys: Arc<AdminKeys>,
    /// Validation rules of this deployment.
    pub rules: Arc<Rules>,
    /// Cluster name prefix.
    pub cluster_prefix: Arc<str>,
    /// The agent binary.
    pub agent: Arc<AgentBinary>,
    /// What the reconciler observed.
    pub observed: Arc<Mutex<Observed>>,
    /// The heartbeat interval told to agents.
    pub heartbeat_interval: Duration,
    /// Wakes this replica's reconciler when a node needs it.
    pub wake: Arc<Notify>,
}

impl AppState {
    /// The intervals told to agents.
    pub fn timing(&self) -> crate::nodes::AgentTiming {
        crate::nodes::AgentTiming {
            heartbeat_interval: self.heartbeat_interval,
            drain_grace: DRAIN_GRACE,
        }
    }
}

/// The router with every route and layer.
pub fn router(state: AppState) -> Router {
    let admin = Router::new()
        .route(paths::NODES, get(admin::list_nodes))
        .route(paths::LAUNCH, post(admin::launch))
        .route(paths::NODE, get(admin::node))
        .route(paths::TERMINATE, post(admin::terminate))
        .route(paths::NODE_STATUS, get(admin::node_status))
        .route(paths::UNMANAGED, get(admin::unmanaged))
        .route(paths::POOLS, get(pools::list).post(pools::create))
        .route(
            paths::POOL,
            get(pools::show).patch(pools::change).delete(pools::delete),
        )
        .route(paths::POOL_EVENTS, get(pools::events))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ));
    let agent = Router::new()
        .route(paths::AGENT_REGISTER, post(agent::register))
        .route(paths::AGENT_HEARTBEAT, post(agent::heartbeat));
    Router::new()
        .merge(admin)
        .merge(agent)
        .route(paths::AGENT_DOWNLOAD, get(downloads::agent))
        .route(paths::AGENT_SHA256, get(downloads::sha256))
        .route(paths::OPENAPI, get(openapi::serve))
        .route(paths::METRICS, get(metrics::serve))
        .route(paths::HEALTHZ, get(healthz))
        .route(paths::READYZ, get(readyz))
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(bounded))
        .with_state(state)
}

async fn bounded(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "probes",
    responses((status = 200, description = "The process serves", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "probes",
    responses(
        (status = 200, description = "Ready", body = String, content_type = "text/plain"),
        (status = 503, description = "The database does not answer", body = skydeck_contract::ErrorBody),
    ))]
pub async fn readyz(State(s): State<AppState>) -> Result<&'static str, ApiError> {
    s.db.ping().await?;
    Ok("ready")
}

#[cfg(test)]
mod tests;
