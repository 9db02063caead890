//! Who may call what: admin routes need an admin key, agent routes the node's own token, both
//! as `Authorization: Bearer …`. Neither key nor token ever appears in an answer or a log.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::nodes;
use crate::store::Node;

/// The bearer token of `headers`, if there is one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Refuses a request to an admin route without a valid admin key.
pub async fn require_admin(State(s): State<AppState>, req: Request, next: Next) -> Response {
    match bearer(req.headers()) {
        Some(key) if s.admin_keys.accepts(key) => next.run(req).await,
        Some(_) => ApiError::Unauthorized {
            message: "the admin key is not valid",
        }
        .into_response(),
        None => ApiError::Unauthorized {
            message: "admin routes need Authorization: Bearer <admin key>",
        }
        .into_response(),
    }
}

/// The node whose token the request carries.
pub async fn agent_node(s: &AppState, headers: &HeaderMap) -> Result<Node, ApiError> {
    let Some(token) = bearer(headers) else {
        return Err(ApiError::Unauthorized {
            message: "agent routes need Authorization: Bearer <node token>",
        });
    };
    nodes::by_token(&s.db, token)
        .await?
        .ok_or(ApiError::Unauthorized {
            message: "the node token is not valid",
        })
}
