//! The HTTP API: admin routes (`/admin/*`, admin key), agent routes (`/v1/agent/*`, the node's
//! own token), the agent binary (`/downloads/*`), `/openapi.json`, `/metrics` and health probes.
//!
//! Every error is `{"error": {"code", "message"}}` (plus `field` for validation), request bodies
//! are capped at [`MAX_BODY`], and every request is bounded by [`REQUEST_TIMEOUT`], so a slow
//! database answers 503 instead of holding connections.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;

use crate::node_config::{NodeConfig, Rules};
use crate::reconcile::Observed;
use crate::status::NodeStatus;
use crate::store::{ListQuery, NewNode, Node, Store, StoreError};
use crate::token::{self, AdminKeys};

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;
/// Longest a request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest page of `GET /admin/nodes`.
pub const MAX_PAGE: i64 = 1000;

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

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut err = json!({"code": self.code, "message": self.message});
        if let Some(f) = self.field {
            err["field"] = json!(f);
        }
        let mut resp = (self.status, Json(json!({ "error": err }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "database error");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database did not answer; try again",
        )
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonDataError(e) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            format!("the body does not match the schema: {}", e.body_text()),
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {}", e.body_text()),
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as Content-Type: application/json",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request bodies are limited to {MAX_BODY} bytes"),
        ),
        other => ApiError::new(other.status(), "bad_request", other.body_text()),
    }
}

/// The router with every route and layer.
pub fn router(state: AppState) -> Router {
    let admin = Router::new()
        .route("/admin/nodes", get(list_nodes))
        .route("/admin/nodes/launch", post(launch))
        .route("/admin/nodes/{cluster_name}/terminate", post(terminate))
        .route("/admin/nodes/{cluster_name}/status", get(node_status))
        .route("/admin/unmanaged-clusters", get(unmanaged))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin));
    let agent = Router::new()
        .route("/v1/agent/register", post(agent_register))
        .route("/v1/agent/heartbeat", post(agent_heartbeat));
    Router::new()
        .merge(admin)
        .merge(agent)
        .route(crate::task::AGENT_DOWNLOAD_PATH, get(download_agent))
        .route(
            "/downloads/skydeck-linux-amd64.sha256",
            get(download_sha256),
        )
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(bounded))
        .with_state(state)
}

async fn bounded(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than {} s",
                REQUEST_TIMEOUT.as_secs()
            ),
        )
        .into_response(),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn require_admin(State(s): State<AppState>, req: Request, next: Next) -> Response {
    match bearer(req.headers()) {
        Some(key) if s.admin_keys.accepts(key) => next.run(req).await,
        Some(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the admin key is not valid",
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "admin routes need Authorization: Bearer <admin key>",
        )
        .into_response(),
    }
}

/// Answer of `POST /admin/nodes/launch` (the seed's shape).
#[derive(Debug, Serialize, Deserialize)]
pub struct LaunchResponse {
    /// The SkyPilot cluster name.
    pub cluster_name: String,
    /// The node's UUID.
    pub node_id: String,
    /// Always `launching`: the launch goes on in the background.
    pub status: String,
}

async fn launch(
    State(s): State<AppState>,
    body: Result<Json<NodeConfig>, JsonRejection>,
) -> Result<Json<LaunchResponse>, ApiError> {
    let Json(cfg) = body.map_err(json_rejection)?;
    let spec = cfg.validate(&s.rules).map_err(|e| ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "invalid_node_config",
        message: e.to_string(),
        field: Some(e.field),
    })?;
    let id = spec.node_id.to_string();
    let cluster_name = format!("{}-{}", s.cluster_prefix, id);
    // The real token is made when the launch is sent; until then the column holds a value no
    // token hashes to.
    let placeholder = format!("unlaunched:{id}");
    let new = NewNode {
        id: &id,
        cluster_name: &cluster_name,
        provider: spec.provider.as_str(),
        region: &spec.region,
        gpu_type: &spec.gpu,
        gpu_count: i64::from(spec.gpu_count),
        model_name: &spec.model,
        use_spot: spec.use_spot,
        disk_size: i64::from(spec.disk_size),
        engine: spec.engine,
        image: spec.image.as_deref(),
        engine_args: &spec.engine_args,
        agent_token_hash: &placeholder,
    };
    match s.db.insert(&new).await {
        Ok(_) => {}
        Err(e) if e.is_unique_violation() => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "node_exists",
                format!("a node with node_id {id} already exists"),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(cluster = %cluster_name, provider = %spec.provider, region = %spec.region, gpu = %spec.gpu, model = %spec.model, "launch requested");
    s.wake.notify_one();
    Ok(Json(LaunchResponse {
        cluster_name,
        node_id: id,
        status: "launching".into(),
    }))
}

#[derive(Debug, Deserialize)]
struct TerminateQuery {
    #[serde(default)]
    force: bool,
}

async fn terminate(
    State(s): State<AppState>,
    Path(cluster_name): Path<String>,
    q: Result<Query<TerminateQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) =
        q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))?;
    let node = find(&s.db, &cluster_name).await?;
    if !node.status.is_final() {
        if node.status == NodeStatus::Draining {
            if q.force {
                s.db.force_drain(&node.id).await?;
            }
        } else {
            s.db.request_terminate(&node.id, q.force).await?;
        }
        s.wake.notify_one();
    }
    let node = find(&s.db, &cluster_name).await?;
    Ok(Json(json!({
        "cluster_name": node.cluster_name,
        "node_id": node.id,
        "status": node.status,
        "force": q.force,
    })))
}

async fn find(db: &Store, cluster_name: &str) -> Result<Node, ApiError> {
    db.get(cluster_name).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "node_not_found",
            format!(
                "no node with cluster name {}",
                crate::vllm_args::printable(cluster_name)
            ),
        )
    })
}

/// A time in milliseconds, written as RFC 3339 straight into the response (no string per
/// field: a page of 100 nodes has a thousand of them).
#[derive(Debug, Clone, Copy)]
struct Ts(i64);

impl Serialize for Ts {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        match jiff::Timestamp::from_millisecond(self.0) {
            Ok(t) => ser.collect_str(&t),
            Err(_) => ser.serialize_none(),
        }
    }
}

/// The JSON view of a node, borrowed from its row and serialized without an intermediate
/// `serde_json::Value` (the list endpoint's cost is mostly this).
#[derive(Debug, Serialize)]
pub struct NodeView<'a> {
    node_id: &'a str,
    cluster_name: &'a str,
    status: NodeStatus,
    status_reason: Option<&'a str>,
    provider: &'a str,
    region: &'a str,
    gpu: GpuView<'a>,
    model: &'a str,
    use_spot: bool,
    disk_size: i64,
    vllm_args: &'a [String],
    launch_request_id: Option<&'a str>,
    teardown_request_id: Option<&'a str>,
    hourly_price_usd: Option<f64>,
    created_at: Ts,
    updated_at: Ts,
    launching_at: Option<Ts>,
    initializing_at: Option<Ts>,
    active_at: Option<Ts>,
    unhealthy_at: Option<Ts>,
    draining_at: Option<Ts>,
    terminated_at: Option<Ts>,
    failed_at: Option<Ts>,
    last_heartbeat_at: Option<Ts>,
}

/// `A100` or `A100:2`, as the request had it.
#[derive(Debug)]
struct GpuView<'a>(&'a str, i64);

impl Serialize for GpuView<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        if self.1 == 1 {
            ser.serialize_str(self.0)
        } else {
            ser.collect_str(&format_args!("{}:{}", self.0, self.1))
        }
    }
}

/// The JSON view of a node.
pub fn node_view(n: &Node) -> NodeView<'_> {
    NodeView {
        node_id: &n.id,
        cluster_name: &n.cluster_name,
        status: n.status,
        status_reason: n.status_reason.as_deref(),
        provider: &n.provider,
        region: &n.region,
        gpu: GpuView(&n.gpu_type, n.gpu_count),
        model: &n.model_name,
        use_spot: n.use_spot,
        disk_size: n.disk_size,
        vllm_args: &n.engine_args,
        launch_request_id: n.launch_request_id.as_deref(),
        teardown_request_id: n.down_request_id.as_deref(),
        hourly_price_usd: n.hourly_price,
        created_at: Ts(n.created_at),
        updated_at: Ts(n.updated_at),
        launching_at: n.launching_at.map(Ts),
        initializing_at: n.initializing_at.map(Ts),
        active_at: n.active_at.map(Ts),
        unhealthy_at: n.unhealthy_at.map(Ts),
        draining_at: n.draining_at.map(Ts),
        terminated_at: n.terminated_at.map(Ts),
        failed_at: n.failed_at.map(Ts),
        last_heartbeat_at: n.last_heartbeat_at.map(Ts),
    }
}

async fn node_status(
    State(s): State<AppState>,
    Path(cluster_name): Path<String>,
) -> Result<Response, ApiError> {
    let node = find(&s.db, &cluster_name).await?;
    Ok(Json(node_view(&node)).into_response())
}

#[derive(Debug, Deserialize)]
struct ListParams {
    status: Option<String>,
    provider: Option<String>,
    gpu: Option<String>,
    model: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn list_nodes(
    State(s): State<AppState>,
    q: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) =
        q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))?;
    let bad = |field: &'static str, message: String| ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "bad_query",
        message,
        field: Some(field),
    };
    let mut status = Vec::new();
    for word in p
        .status
        .iter()
        .flat_map(|s| s.split(','))
        .filter(|w| !w.is_empty())
    {
        status.push(NodeStatus::parse(word).ok_or_else(|| {
            bad(
                "status",
                format!(
                    "status {} is not one of {}",
                    crate::vllm_args::printable(word),
                    NodeStatus::ALL.map(|s| s.as_str()).join(", ")
                ),
            )
        })?);
    }
    let limit = p.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(bad(
            "limit",
            format!("limit {limit} is outside 1..={MAX_PAGE}"),
        ));
    }
    let after = match p.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(
            c.split_once('.')
                .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_string())))
                .ok_or_else(|| bad("cursor", "cursor is not one this API returned".into()))?,
        ),
    };
    let query = ListQuery {
        status,
        provider: p.provider,
        gpu: p.gpu,
        model: p.model,
        after,
        limit,
    };
    let nodes = s.db.list(&query).await?;
    let next_cursor = (nodes.len() as i64 == limit)
        .then(|| nodes.last().map(|n| format!("{}.{}", n.created_at, n.id)))
        .flatten();
    #[derive(Serialize)]
    struct Page<'a> {
        nodes: Vec<NodeView<'a>>,
        next_cursor: Option<String>,
    }
    Ok(Json(Page {
        nodes: nodes.iter().map(node_view).collect(),
        next_cursor,
    })
    .into_response())
}

async fn unmanaged(State(s): State<AppState>) -> Json<serde_json::Value> {
    let obs = s.observed.lock().unwrap();
    Json(json!({
        "clusters": obs.unmanaged,
        "checked_at": obs.last_drift_check.and_then(|m| jiff::Timestamp::from_millisecond(m).ok()).map(|t| t.to_string()),
    }))
}

async fn agent_node(s: &AppState, headers: &HeaderMap) -> Result<Node, ApiError> {
    let Some(token) = bearer(headers) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "agent routes need Authorization: Bearer <node token>",
        ));
    };
    s.db.by_token_hash(&token::hash(token))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the node token is not valid",
            )
        })
}

/// Body of `POST /v1/agent/register`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// The node id the agent was started with (checked against the token's node).
    #[serde(default)]
    pub node_id: Option<String>,
    /// The vLLM version running.
    #[serde(default)]
    pub vllm_version: Option<String>,
    /// The agent's version.
    #[serde(default)]
    pub agent_version: Option<String>,
}

/// Body of `POST /v1/agent/heartbeat`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBody {
    /// In-flight requests are done after a drain was asked.
    #[serde(default)]
    pub drained: bool,
    /// Requests being served.
    #[serde(default)]
    pub in_flight: Option<u64>,
}

fn agent_reply(s: &AppState, n: &Node) -> Result<Json<serde_json::Value>, ApiError> {
    if n.status.is_final() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "node_final",
            format!("node {} is {}", n.cluster_name, n.status),
        ));
    }
    Ok(Json(json!({
        "node_id": n.id,
        "cluster_name": n.cluster_name,
        "status": n.status,
        "drain": n.status == NodeStatus::Draining,
        "heartbeat_interval_seconds": s.heartbeat_interval.as_secs(),
    })))
}

async fn agent_register(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<RegisterBody>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let node = agent_node(&s, &headers).await?;
    let Json(body) = body.map_err(json_rejection)?;
    if let Some(claimed) = body.node_id.as_deref()
        && claimed != node.id
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "node_mismatch",
            "node_id does not match the node of this token",
        ));
    }
    let node = s.db.heartbeat(&node.id, None).await?.unwrap_or(node);
    tracing::info!(cluster = %node.cluster_name, vllm = body.vllm_version.as_deref().unwrap_or("?"), "node agent registered");
    agent_reply(&s, &node)
}

async fn agent_heartbeat(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<HeartbeatBody>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let node = agent_node(&s, &headers).await?;
    let Json(body) = body.map_err(json_rejection)?;
    let node = s.db.heartbeat(&node.id, None).await?.unwrap_or(node);
    if body.drained && node.status == NodeStatus::Draining {
        s.db.force_drain(&node.id).await?;
        s.wake.notify_one();
    }
    agent_reply(&s, &node)
}

async fn download_agent(State(s): State<AppState>) -> Result<Response, ApiError> {
    let bytes = tokio::fs::read(&s.agent.path).await.map_err(|e| {
        tracing::error!(path = %s.agent.path.display(), error = %e, "cannot read the agent binary");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "agent_unavailable",
            "the agent binary cannot be read",
        )
    })?;
    let actual = token::sha256_hex(&bytes);
    if actual != s.agent.sha256 {
        // Replaced on disk since start: serving it would fail every node's checksum.
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "agent_changed",
            "the agent binary changed since the control plane started; restart it",
        ));
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::HeaderName::from_static("x-checksum-sha256"),
                HeaderValue::from_str(&s.agent.sha256).expect("hex"),
            ),
        ],
        bytes,
    )
        .into_response())
}

async fn download_sha256(State(s): State<AppState>) -> String {
    format!("{}  skydeck-linux-amd64\n", s.agent.sha256)
}

async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}

async fn metrics(State(s): State<AppState>) -> Result<Response, ApiError> {
    let rows = s.db.metric_rows().await?;
    let (unmanaged, leader) = {
        let o = s.observed.lock().unwrap();
        (o.unmanaged.len(), o.leader)
    };
    let text = crate::metrics::render(&rows, unmanaged, leader, s.db.now_ms());
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}

async fn ready(State(s): State<AppState>) -> Result<&'static str, ApiError> {
    s.db.ping().await?;
    Ok("ready")
}
