//! The client's error type: one variant per thing an operator must act on differently.

use std::time::Duration;

use reqwest::StatusCode;

use crate::target::CredentialSource;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors returned by the SkyPilot API-server client. None of them carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Endpoint or credential configuration is unusable (bad URL, unreadable token file).
    #[error("{message}")]
    Config {
        /// What is wrong and what was expected.
        message: String,
    },
    /// The server could not be reached, or the connection broke mid-request.
    #[error("cannot reach the SkyPilot API server at {endpoint} ({path}): {reason}")]
    Unreachable {
        /// The endpoint (no user info).
        endpoint: String,
        /// The API path being called.
        path: &'static str,
        /// The transport error, flattened to text (reqwest errors may embed the URL).
        reason: String,
        /// Whether the request can have reached the server.
        kind: UnreachableKind,
    },
    /// The call did not finish within its deadline.
    #[error("SkyPilot API server at {endpoint} did not finish {path} within {after:?}")]
    Timeout {
        /// The endpoint.
        endpoint: String,
        /// The API path being called.
        path: &'static str,
        /// The deadline that passed.
        after: Duration,
    },
    /// The server rejected the credential (401/403).
    #[error(
        "SkyPilot API server at {endpoint} rejected the request to {path} with {status} \
         (credential: {credential}): {message}"
    )]
    Unauthorized {
        /// The endpoint.
        endpoint: String,
        /// The API path being called.
        path: &'static str,
        /// 401 or 403.
        status: StatusCode,
        /// Which credential was sent.
        credential: CredentialSource,
        /// The server's explanation.
        message: String,
    },
    /// Client and server API versions are incompatible.
    #[error("SkyPilot API server at {endpoint} is incompatible with this client: {message}")]
    VersionMismatch {
        /// The endpoint.
        endpoint: String,
        /// Server's explanation, or the versions seen.
        message: String,
    },
    /// The server answered with an unexpected HTTP status.
    #[error("SkyPilot API server returned {status} for {path}: {body}")]
    Status {
        /// The API path.
        path: &'static str,
        /// The HTTP status.
        status: StatusCode,
        /// The body, truncated.
        body: String,
    },
    /// The request was accepted but failed inside the server.
    #[error("SkyPilot request {request_id} ({path}) failed with {error_type}: {message}")]
    RequestFailed {
        /// The API path.
        path: &'static str,
        /// The SkyPilot request id.
        request_id: String,
        /// The Python exception class, e.g. `ClusterNotUpError`.
        error_type: String,
        /// The exception message.
        message: String,
    },
    /// The request was cancelled on the server.
    #[error("SkyPilot request {request_id} ({path}) was cancelled on the server")]
    Cancelled {
        /// The API path.
        path: &'static str,
        /// The SkyPilot request id.
        request_id: String,
    },
    /// The submit response had no request id header.
    #[error("SkyPilot API server answered {path} without an X-Skypilot-Request-ID header")]
    NoRequestId {
        /// The API path.
        path: &'static str,
    },
    /// The response body exceeded the configured limit.
    #[error("response to {path} is larger than the {} MiB limit", limit >> 20)]
    TooLarge {
        /// The API path.
        path: &'static str,
        /// The limit in bytes.
        limit: usize,
    },
    /// The response did not have the expected shape.
    #[error("cannot decode the response to {path}: at `{field}`: {message}")]
    Decode {
        /// The API path.
        path: &'static str,
        /// Where in the document decoding failed (`[3].status`, `.` for the root).
        field: String,
        /// serde's explanation.
        message: String,
    },
}

/// How far a call got before the transport failed: what decides whether the server may have
/// acted on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnreachableKind {
    /// No connection was made (refused, no route, DNS, TLS handshake): nothing was sent.
    Connect,
    /// The connection broke after the request may have been sent (reset, closed mid-body):
    /// the server may have acted on it.
    Broken,
}

/// SkyPilot's exception class for an operation on a cluster its table does not hold
/// (`sky.exceptions.ClusterDoesNotExist`, raised by `down`, `stop`, `start`, `autostop`, …).
pub const CLUSTER_DOES_NOT_EXIST: &str = "ClusterDoesNotExist";

/// SkyPilot's exception class for a launch no region or zone of the request could place
/// (`sky.exceptions.ResourcesUnavailableError`: out of capacity, or over quota, after its own
/// failover within the request's resources).
pub const RESOURCES_UNAVAILABLE: &str = "ResourcesUnavailableError";

/// Whether a failed launch, as SkyPilot's exception class and message (or text carrying both,
/// such as a node's stored failure reason), ran out of capacity or quota rather than failing
/// for a reason another region would share: a `ResourcesUnavailableError`, or a provider's
/// capacity or quota error passed through in the message.
pub fn is_capacity_failure(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    text.contains(RESOURCES_UNAVAILABLE)
        || [
            "insufficientinstancecapacity",
            "quota",
            "out of capacity",
            "stockout",
        ]
        .iter()
        .any(|w| lower.contains(w))
}

/// The class SkyPilot raised for a missing cluster before `ClusterDoesNotExist` (which still
/// subclasses it "for compatibility reasons", `sky/exceptions.py`).
const LEGACY_CLUSTER_MISSING: &str = "ValueError";

impl Error {
    /// True when a finished request failed because SkyPilot has no such cluster: a
    /// `ClusterDoesNotExist` (message `Cluster 'x' does not exist.`), or the `ValueError` with
    /// that message older servers raised. For a teardown this means "already gone".
    pub fn is_cluster_missing(&self) -> bool {
        match self {
            Error::RequestFailed {
                error_type,
                message,
                ..
            } => {
                error_type == CLUSTER_DOES_NOT_EXIST
                    || (error_type == LEGACY_CLUSTER_MISSING
                        && message.starts_with("Cluster ")
                        && message.contains("does not exist"))
            }
            _ => false,
        }
    }

    /// True when the server certainly created no request for this call, so a submit that
    /// returned it left nothing to adopt later: the server answered with an error status
    /// (including 401/403 and a version mismatch, but not a gateway's 502/504) before queueing
    /// anything, the client could not be built, or no connection was made. A timeout, a connection broken mid-call or an
    /// answer without a request id is an unknown outcome: the request may exist.
    pub fn is_definite_rejection(&self) -> bool {
        match self {
            // A gateway's 502/504 may come after it passed the request on to the server.
            Error::Status { status, .. } => {
                *status != StatusCode::BAD_GATEWAY && *status != StatusCode::GATEWAY_TIMEOUT
            }
            Error::Config { .. } | Error::Unauthorized { .. } | Error::VersionMismatch { .. } => {
                true
            }
            Error::Unreachable { kind, .. } => *kind == UnreachableKind::Connect,
            Error::Timeout { .. }
            | Error::RequestFailed { .. }
            | Error::Cancelled { .. }
            | Error::NoRequestId { .. }
            | Error::TooLarge { .. }
            | Error::Decode { .. } => false,
        }
    }

    /// True when the request was cancelled on the server.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Cancelled { .. })
    }

    /// True for errors worth retrying with backoff (transport, timeouts, 408, 429, 503, 5xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::Timeout { .. } => true,
            Error::Status { status, .. } => {
                *status == StatusCode::REQUEST_TIMEOUT
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || status.is_server_error()
            }
            _ => false,
        }
    }

    /// True when the server could not be used at all with the configured credential or address,
    /// the cases where `--fallback-local` may try the local server instead.
    pub fn is_unreachable_or_unauthorized(&self) -> bool {
        matches!(self, Error::Unreachable { .. } | Error::Unauthorized { .. })
    }
}
