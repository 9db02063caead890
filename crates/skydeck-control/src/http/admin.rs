//! The admin routes (seed 003's shapes), answered with the contract's types. Each handler
//! parses, calls a [`crate::nodes`] operation or the store, and maps the result.

use std::sync::LazyLock;

use axum::Json;
use axum::extract::State;
use regex::Regex;
use skydeck_contract::{
    ErrorBody, LaunchResponse, NodePage, NodeStatus, NodeView, TerminateResponse, UnmanagedClusters,
};

use super::extract::{ApiJson, ClusterName, QueryPairs, bad};
use super::{ApiError, AppState, MAX_PAGE};
use crate::node_config::NodeConfig;
use crate::nodes;
use crate::offerings::{PROVIDERS, Provider};
use crate::store::{ListQuery, Node};
use crate::vllm_args::printable;

/// The pattern of `cursor`: `{created_at ms}.{node id}`, as [`NodePage::next_cursor`] has it.
pub const CURSOR_PATTERN: &str =
    r"^[0-9]{1,15}\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";
static CURSOR: LazyLock<Regex> = LazyLock::new(|| Regex::new(CURSOR_PATTERN).expect("regex"));

/// The pattern of `status`: statuses separated by commas.
pub fn status_pattern() -> String {
    let one = NodeStatus::ALL.map(NodeStatus::as_str).join("|");
    format!("^({one})(,({one}))*$")
}

/// Longest `gpu` or `model` filter.
pub const MAX_FILTER: usize = 256;

fn ts(ms: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// The contract's view of a stored node; `with_heartbeat` adds its latest report.
pub fn view(n: &Node, with_heartbeat: bool) -> NodeView {
    NodeView {
        node_id: n.id.clone(),
        cluster_name: n.cluster_name.clone(),
        status: n.status,
        status_reason: n.status_reason.clone(),
        provider: n.provider.clone(),
        region: n.region.clone(),
        gpu: if n.gpu_count == 1 {
            n.gpu_type.clone()
        } else {
            format!("{}:{}", n.gpu_type, n.gpu_count)
        },
        model: n.model_name.clone(),
        engine: n.engine,
        pool: n.pool.clone(),
        image: n.image.clone(),
        use_spot: n.use_spot,
        disk_size: n.disk_size,
        engine_args: n.engine_args.clone(),
        launch_request_id: n.launch_request_id.clone(),
        teardown_request_id: n.down_request_id.clone(),
        hourly_price_usd: n.hourly_price,
        created_at: ts(n.created_at),
        updated_at: ts(n.updated_at),
        launching_at: n.launching_at.map(ts),
        initializing_at: n.initializing_at.map(ts),
        active_at: n.active_at.map(ts),
        unhealthy_at: n.unhealthy_at.map(ts),
        draining_at: n.draining_at.map(ts),
        terminated_at: n.terminated_at.map(ts),
        failed_at: n.failed_at.map(ts),
        last_heartbeat_at: n.last_heartbeat_at.map(ts),
        heartbeat: if with_heartbeat {
            n.heartbeat.clone()
        } else {
            None
        },
    }
}

/// Launch a node: answered at once, the launch goes on in the background.
#[utoipa::path(post, path = "/admin/nodes/launch", tag = "admin",
    security(("adminKey" = [])),
    request_body(content = NodeConfig, content_type = "application/json"),
    responses(
        (status = 200, description = "Stored as requested; this replica's reconciler launches it", body = LaunchResponse),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin key", body = ErrorBody),
        (status = 409, description = "A node with this node_id exists", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody),
        (status = 415, description = "The body is not application/json", body = ErrorBody),
        (status = 422, description = "A field broke a rule (error.field names it)", body = ErrorBody),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    ))]
pub async fn launch(
    State(s): State<AppState>,
    body: Result<ApiJson<NodeConfig>, ApiError>,
) -> Result<Json<LaunchResponse>, ApiError> {
    let ApiJson(cfg) = body?;
    let r = nodes::launch(&s.db, &s.rules, &s.cluster_prefix, &cfg).await?;
    s.wake.notify_one();
    Ok(Json(r))
}

fn flag(q: &QueryPairs, name: &str) -> Result<bool, ApiError> {
    match q.one(name)? {
        None => Ok(false),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(v) => Err(bad(
            name,
            format!("{name} is {}, expected true or false", printable(v)),
        )),
    }
}

/// Terminate a node: a graceful drain by default, immediate with `force=true`; idempotent.
#[utoipa::path(post, path = "/admin/nodes/{cluster_name}/terminate", tag = "admin",
    security(("adminKey" = [])),
    params(
        ("cluster_name" = String, Path, description = "The node's SkyPilot cluster name"),
        ("force" = Option<bool>, Query, description = "Cut in-flight requests off"),
    ),
    responses(
        (status = 200, description = "Termination under way or done", body = TerminateResponse),
        (status = 400, description = "A path or query parameter does not decode", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin key", body = ErrorBody),
        (status = 404, description = "No such node", body = ErrorBody),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    ))]
pub async fn terminate(
    State(s): State<AppState>,
    name: Result<ClusterName, ApiError>,
    q: Result<QueryPairs, ApiError>,
) -> Result<Json<TerminateResponse>, ApiError> {
    let ClusterName(name) = name?;
    let force = flag(&q?, "force")?;
    let (r, wake) = nodes::terminate(&s.db, &name, force).await?;
    if wake {
        s.wake.notify_one();
    }
    Ok(Json(r))
}

/// One node, with the latest report of its agent.
#[utoipa::path(get, path = "/admin/nodes/{cluster_name}", tag = "admin",
    security(("adminKey" = [])),
    params(("cluster_name" = String, Path, description = "The node's SkyPilot cluster name")),
    responses(
        (status = 200, description = "The node and its latest heartbeat", body = NodeView),
        (status = 400, description = "The path parameter does not decode", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin key", body = ErrorBody),
        (status = 404, description = "No such node", body = ErrorBody),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    ))]
pub async fn node(
    State(s): State<AppState>,
    name: Result<ClusterName, ApiError>,
) -> Result<Json<NodeView>, ApiError> {
    let ClusterName(name) = name?;
    let n = nodes::find(&s.db, &name).await?;
    Ok(Json(view(&n, true)))
}

/// A node's lifecycle status and history (seed 003's route).
#[utoipa::path(get, path = "/admin/nodes/{cluster_name}/status", tag = "admin",
    security(("adminKey" = [])),
    params(("cluster_name" = String, Path, description = "The node's SkyPilot cluster name")),
    responses(
        (status = 200, description = "The node", body = NodeView),
        (status = 400, description = "The path parameter does not decode", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin key", body = ErrorBody),
        (status = 404, description = "No such node", body = ErrorBody),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    ))]
pub async fn node_status(
    State(s): State<AppState>,
    name: Result<ClusterName, ApiError>,
) -> Result<Json<NodeView>, ApiError> {
    let ClusterName(name) = name?;
    let n = nodes::find(&s.db, &name).await?;
    Ok(Json(view(&n, false)))
}

/// The filters of `GET /admin/nodes`, checked.
pub fn list_query(q: &QueryPairs) -> Result<ListQuery, ApiError> {
    let mut status = Vec::new();
    if let Some(words) = q.one("status")? {
        for word in words.split(',') {
            status.push(NodeStatus::parse(word).ok_or_else(|| {
                bad(
                    "status",
                    format!(
                        "status {} is not one of {} (separate several with commas)",
                        printable(word),
                        NodeStatus::ALL.map(NodeStatus::as_str).join(", ")
                    ),
                )
            })?);
        }
    }
    let provider = match q.one("provider")? {
        None => None,
        Some(p) => Some(Provider::parse(p).map(|_| p.to_string()).ok_or_else(|| {
            bad(
                "provider",
                format!(
                    "provider {} is not one of {}",
                    printable(p),
                    PROVIDERS.map(Provider::as_str).join(", ")
                ),
            )
        })?),
    };
    let text = |name: &str| -> Result<Option<String>, ApiError> {
        match q.one(name)? {
            Some(v) if v.chars().count() > MAX_FILTER => Err(bad(
                name,
                format!("{name} is longer than {MAX_FILTER} characters"),
            )),
            v => Ok(v.map(str::to_string)),
        }
    };
    let (gpu, model) = (text("gpu")?, text("model")?);
    let limit = match q.one("limit")? {
        None => 100,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l) && v.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                bad(
                    "limit",
                    format!("limit {} is not an integer in 1..={MAX_PAGE}", printable(v)),
                )
            })?,
    };
    let after = match q.one("cursor")? {
        None => None,
        Some(c) => Some(
            CURSOR
                .is_match(c)
                .then(|| c.split_once('.'))
                .flatten()
                .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_string())))
                .ok_or_else(|| bad("cursor", "cursor is not one this API returned".into()))?,
        ),
    };
    Ok(ListQuery {
        status,
        provider,
        gpu,
        model,
        after,
        limit,
    })
}

/// List nodes, oldest first, with filters and cursor pagination.
#[utoipa::path(get, path = "/admin/nodes", tag = "admin",
    security(("adminKey" = [])),
    params(
        ("status" = Option<String>, Query, description = "Statuses, separated by commas", pattern = r"^(requested|launching|initializing|active|unhealthy|draining|stopped|terminated|failed)(,(requested|launching|initializing|active|unhealthy|draining|stopped|terminated|failed))*$"),
        ("provider" = Option<String>, Query, description = "aws, gcp, azure, lambda, oci or kubernetes"),
        ("gpu" = Option<String>, Query, description = "GPU name as stored (`A100`)", max_length = 256),
        ("model" = Option<String>, Query, description = "Model id", max_length = 256),
        ("limit" = Option<i64>, Query, description = "Page size", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page", pattern = r"^[0-9]{1,15}\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
    ),
    responses(
        (status = 200, description = "A page", body = NodePage),
        (status = 400, description = "A query parameter broke its rule (error.field names it)", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin key", body = ErrorBody),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    ))]
pub async fn list_nodes(
    State(s): State<AppState>,
    q: Result<QueryPairs, ApiError>,
) -> Result<Json<NodePage>, ApiError> {
    let query = list_query(&q?)?;
    let nodes = s.db.list(&query).await?;
    let next_cursor = (nodes.len() as i64 == query.limit)
        .then(|| nodes.last().map(|n| format!("{}.{}", n.created_at, n.id)))
        .flatten();
    Ok(Json(NodePage {
        nodes: nodes.iter().map(|n| view(n, false)).collect(),
        next_cursor,
    }))
}

/// Clusters with skydeck's prefix that SkyPilot has and the table does not (reported, never
/// adopted).
#[utoipa::path(get, path = "/admin/unmanaged-clusters", tag = "admin",
    security(("adminKey" = [])),
    responses(
        (status = 200, description = "The clusters", body = UnmanagedClusters),
        (status = 401, description = "Missing or wrong admin key", body = ErrorBody),
    ))]
pub async fn unmanaged(State(s): State<AppState>) -> Json<UnmanagedClusters> {
    let obs = s.observed.lock().unwrap_or_else(|p| p.into_inner());
    Json(UnmanagedClusters {
        clusters: obs.unmanaged.iter().cloned().collect(),
        checked_at: obs
            .last_drift_check
            .and_then(|m| jiff::Timestamp::from_millisecond(m).ok()),
    })
}
