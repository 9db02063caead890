//! The one error type of the HTTP API. Every refusal, the router's own 404 and 405 included, is
//! an [`ApiError`] and is answered as the contract's [`ErrorBody`]; the status, the stable
//! `code` and the field at fault are decided in one `match` each below, so the document, the
//! handlers and the clients agree on them.

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use skydeck_contract::{ErrorBody, ErrorDetail};

use crate::nodes::OpError;
use crate::store::StoreError;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// No route has this path.
    NoRoute,
    /// The route exists, the method does not.
    MethodNotAllowed,
    /// No `what` is called `name` (already escaped for printing).
    NotFound {
        /// What was looked for (`node`).
        what: &'static str,
        /// The name asked for, printable.
        name: String,
    },
    /// No credentials, or wrong ones; the message says which are needed.
    Unauthorized {
        /// What is needed.
        message: &'static str,
    },
    /// A path segment does not decode (not UTF-8, not percent-encoded right).
    BadPath {
        /// The path parameter.
        param: &'static str,
    },
    /// A query parameter does not decode or breaks its rule.
    BadQuery {
        /// The parameter (`None` when the query string as a whole does not decode).
        param: Option<String>,
        /// What is expected.
        message: String,
    },
    /// The body is not JSON.
    MalformedJson {
        /// The parser's words (line and column).
        message: String,
    },
    /// A body field breaks a rule.
    Invalid {
        /// The field, as a JSON path.
        field: String,
        /// What is expected.
        message: String,
    },
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// The body is larger than [`super::MAX_BODY`].
    PayloadTooLarge,
    /// The request conflicts with the stored state (`code` says how).
    Conflict {
        /// A stable word.
        code: &'static str,
        /// What happened.
        message: String,
    },
    /// A dependency (the database, the agent binary) does not answer; try again.
    Unavailable {
        /// A stable word.
        code: &'static str,
        /// What to do.
        message: &'static str,
    },
    /// The request took longer than [`super::REQUEST_TIMEOUT`].
    Timeout,
}

impl ApiError {
    /// The HTTP status of this error: the one place it is decided.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NoRoute | ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::BadPath { .. }
            | ApiError::BadQuery { .. }
            | ApiError::MalformedJson { .. } => StatusCode::BAD_REQUEST,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unavailable { .. } | ApiError::Timeout => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The contract's body of this error.
    pub fn body(&self) -> ErrorBody {
        let (code, message, field): (&str, String, Option<String>) = match self {
            ApiError::NoRoute => ("not_found", "no such route".into(), None),
            ApiError::MethodNotAllowed => (
                "method_not_allowed",
                "this route does not take this method (the Allow header lists those it takes)"
                    .into(),
                None,
            ),
            ApiError::NotFound { what: "pool", name } => (
                "pool_not_found",
                format!("no pool named {name}"),
                Some("name".into()),
            ),
            ApiError::NotFound { what, name } => (
                "node_not_found",
                format!("no {what} with cluster name {name}"),
                Some("cluster_name".into()),
            ),
            ApiError::Unauthorized { message } => ("unauthorized", (*message).into(), None),
            ApiError::BadPath { param } => (
                "bad_path",
                format!("the path parameter {param} is not valid percent-encoded UTF-8"),
                Some((*param).into()),
            ),
            ApiError::BadQuery { param, message } => ("bad_query", message.clone(), param.clone()),
            ApiError::MalformedJson { message } => (
                "malformed_json",
                format!("the body is not valid JSON: {message}"),
                None,
            ),
            ApiError::Invalid { field, message } => {
                ("invalid_request", message.clone(), Some(field.clone()))
            }
            ApiError::UnsupportedMediaType => (
                "unsupported_media_type",
                "send the body as Content-Type: application/json".into(),
                None,
            ),
            ApiError::PayloadTooLarge => (
                "body_too_large",
                format!("request bodies are limited to {} bytes", super::MAX_BODY),
                None,
            ),
            ApiError::Conflict { code, message } => (code, message.clone(), None),
            ApiError::Unavailable { code, message } => (code, (*message).into(), None),
            ApiError::Timeout => (
                "timeout",
                format!(
                    "the request took longer than {} s",
                    super::REQUEST_TIMEOUT.as_secs()
                ),
                None,
            ),
        };
        ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message,
                field,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut resp = (status, Json(self.body())).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        // The cause goes to the log only: it may carry the database URL's host or SQL.
        tracing::error!(error = %e, "database error");
        ApiError::Unavailable {
            code: "database_unavailable",
            message: "the database did not answer; try again",
        }
    }
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Invalid { field, rule } => ApiError::Invalid {
                field,
                message: rule,
            },
            OpError::NotFound { name } => ApiError::NotFound { what: "node", name },
            OpError::Exists { node_id } => ApiError::Conflict {
                code: "node_exists",
                message: format!("a node with node_id {node_id} already exists"),
            },
            OpError::PoolNotFound { name } => ApiError::NotFound { what: "pool", name },
            e @ OpError::PoolExists { .. } => ApiError::Conflict {
                code: "pool_exists",
                message: e.to_string(),
            },
            e @ OpError::PoolDeleting { .. } => ApiError::Conflict {
                code: "pool_deleting",
                message: e.to_string(),
            },
            e @ OpError::Busy { .. } => ApiError::Conflict {
                code: "pool_busy",
                message: e.to_string(),
            },
            OpError::OtherNode => ApiError::Invalid {
                field: "node_id".into(),
                message: "node_id does not match the node of this token".into(),
            },
            OpError::Store(e) => e.into(),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        ApiError::BadPath {
            param: "cluster_name",
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::MalformedJson {
                message: "the body could not be read".into(),
            }
        }
    }
}
