//! `RequestPayload`, what `GET /api/get` returns for every asynchronous request.

use serde::Deserialize;

/// The body of `/api/get` (200) or its `detail` (500). Only the fields skydeck reads; the
/// pickled `entrypoint`/`request_body` are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct RequestPayload {
    /// Full request id.
    pub request_id: String,
    /// `sky.status`, `sky.jobs.queue_v2`, ….
    #[serde(default)]
    pub name: Option<String>,
    /// `PENDING`, `WAITING`, `RUNNING`, `SUCCEEDED`, `FAILED` or `CANCELLED`.
    pub status: String,
    /// JSON text of the result (`"null"` on failure).
    #[serde(default)]
    pub return_value: Option<String>,
    /// JSON text: `"null"` or `{"object", "type", "message"}`.
    #[serde(default)]
    pub error: Option<String>,
}

/// The decoded `error` of a failed request. `object` (a pickle) is not read.
#[derive(Debug, Clone, Deserialize)]
pub struct RequestError {
    /// The Python exception class.
    #[serde(rename = "type", default)]
    pub error_type: Option<String>,
    /// `str(exception)`.
    #[serde(default)]
    pub message: Option<String>,
}
