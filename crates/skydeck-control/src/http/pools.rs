//! The pool routes: create, list, show, change, delete, and the decision log. Each handler
//! parses, calls a [`crate::pools`] operation and maps the result.

use std::sync::LazyLock;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use regex::Regex;
use skydeck_contract::{ErrorBody, PoolEventPage, PoolList, PoolPatch, PoolSpec, PoolView};

use super::extract::{ApiJson, QueryPairs, bad};
use super::{ApiError, AppState};
use crate::pools::{self, EVENT_CURSOR_PATTERN, MAX_EVENTS_PAGE};
use crate::vllm_args::printable;

static EVENT_CURSOR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(EVENT_CURSOR_PATTERN).expect("regex"));

/// The `{name}` path segment of a pool, percent-decoded.
#[derive(Debug)]
pub struct PoolName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PoolName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(name) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::BadPath { param: "name" })?;
        Ok(PoolName(name))
    }
}

/// Create a pool; its controller launches `min_nodes` nodes.
#[utoipa::path(post, path = "/admin/pools", tag = "pools",
    security(("adminKey" = [])),
    request_body(content = PoolSpec, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = PoolView),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin key", body = ErrorBody),
        (status = 409, description = "A pool with this name exists", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody),
        (status = 415, description = "The body is not application/json", body = ErrorBody),
        (status = 422, description = "A field broke a rule (error.field names it)", body = ErrorBody),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    ))]
pub async fn create(
    State(s): State<AppState>,
    body: Result<ApiJson<PoolSpec>, ApiError>,
) -> Result<(StatusCode, Json<PoolView>), ApiError> {
    let ApiJson(spec) = body?;
    let v = pools::create(&s.db, &s.rules, &spec).await?;
    s.wake.notify_one();
    Ok((StatusCode::CREATED, Json(v)))
}

/// Every pool, by name.
#[utoipa::path(get, path = "/admin/pools", tag = "pools",
    security(("adminKey" = [])),
    responses(
        (status = 200, description = "The pools", body = PoolList),
        (status = 401, description = "Missing or wrong admin key", body = ErrorBody),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    ))]
pub async fn list(State(s): State<AppState>) -> Result<Json<PoolList>, ApiError> {
    Ok(Json(PoolList {
        pools: pools::list(&s.db).await?,
    }))
}

/// One pool: its spec, desired and current size, capacity mode and last decision.
#[utoipa::path(get, path = "/admin/pools/{name}", tag = "pools",
    security(("adminKey" = [])),
    params(("name" = String, Path, description = "The pool's name")),
    responses(
        (status = 200, description = "The pool", body = PoolView),
        (status = 400, description = "The path parameter does not decode", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin key", body = ErrorBody),
        (status = 404, description = "No such pool", body = ErrorBody),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    ))]
pub async fn show(
    State(s): State<AppState>,
    name: Result<PoolName, ApiError>,
) -> Result<Json<PoolView>, ApiError> {
    let PoolName(name) = name?;
    Ok(Json(pools::show(&s.db, &name).await?))
}

/// Change a pool's bounds, delays, template or spot policy; the merged spec is validated
/// whole and nothing is stored when a field is refused.
#[utoipa::path(patch, path = "/admin/pools/{name}", tag = "pools",
    security(("adminKey" = [])),
    params(("name" = String, Path, description = "The pool's name")),
    request_body(content = PoolPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "Changed", body = PoolView),
        (status = 400, description = "The body is not JSON, or the path does not decode", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin key", body = ErrorBody),
        (status = 404, description = "No such pool", body = ErrorBody),
        (status = 409, description = "The pool is being deleted", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody),
        (status = 415, description = "The body is not application/json", body = ErrorBody),
        (status = 422, description = "A field broke a rule (error.field names it)", body = ErrorBody),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    ))]
pub async fn change(
    State(s): State<AppState>,
    name: Result<PoolName, ApiError>,
    body: Result<ApiJson<PoolPatch>, ApiError>,
) -> Result<Json<PoolView>, ApiError> {
    let PoolName(name) = name?;
    let ApiJson(patch) = body?;
    let v = pools::change(&s.db, &s.rules, &name, &patch).await?;
    s.wake.notify_one();
    Ok(Json(v))
}

/// Delete a pool: its nodes drain, then it is removed. Idempotent.
#[utoipa::path(delete, path = "/admin/pools/{name}", tag = "pools",
    security(("adminKey" = [])),
    params(("name" = String, Path, description = "The pool's name")),
    responses(
        (status = 202, description = "Deletion under way", body = PoolView),
        (status = 400, description = "The path parameter does not decode", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin key", body = ErrorBody),
        (status = 404, description = "No such pool", body = ErrorBody),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    ))]
pub async fn delete(
    State(s): State<AppState>,
    name: Result<PoolName, ApiError>,
) -> Result<(StatusCode, Json<PoolView>), ApiError> {
    let PoolName(name) = name?;
    let v = pools::delete(&s.db, &name).await?;
    s.wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(v)))
}

/// A pool's decisions with their reasons and inputs, newest first.
#[utoipa::path(get, path = "/admin/pools/{name}/events", tag = "pools",
    security(("adminKey" = [])),
    params(
        ("name" = String, Path, description = "The pool's name"),
        ("limit" = Option<i64>, Query, description = "Page size", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page", pattern = r"^[0-9]{15}-[0-9]{10}-[0-9a-f]{8}$"),
    ),
    responses(
        (status = 200, description = "A page", body = PoolEventPage),
        (status = 400, description = "A path or query parameter broke its rule (error.field names it)", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin key", body = ErrorBody),
        (status = 404, description = "No such pool", body = ErrorBody),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    ))]
pub async fn events(
    State(s): State<AppState>,
    name: Result<PoolName, ApiError>,
    q: Result<QueryPairs, ApiError>,
) -> Result<Json<PoolEventPage>, ApiError> {
    let PoolName(name) = name?;
    let q = q?;
    let limit = match q.one("limit")? {
        None => 100,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=MAX_EVENTS_PAGE).contains(l) && v.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                bad(
                    "limit",
                    format!(
                        "limit {} is not an integer in 1..={MAX_EVENTS_PAGE}",
                        printable(v)
                    ),
                )
            })?,
    };
    let cursor = match q.one("cursor")? {
        None => None,
        Some(c) if EVENT_CURSOR.is_match(c) => Some(c.to_string()),
        Some(_) => return Err(bad("cursor", "cursor is not one this API returned".into())),
    };
    Ok(Json(
        pools::events(&s.db, &name, cursor.as_deref(), limit).await?,
    ))
}
