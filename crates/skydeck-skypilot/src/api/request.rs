//! `RequestPayload`, what `GET /api/get` returns for every asynchronous request.

use serde::Deserialize;
use serde_json::value::RawValue;

/// The body of `/api/get` (200) or its `detail` (500). Only the fields skydeck reads; the
/// pickled `entrypoint`/`request_body` are ignored. `return_value` is borrowed from the body
/// as it arrived (JSON text inside a JSON string), so a multi-megabyte result is not copied
/// before it is parsed.
#[derive(Debug, Clone, Deserialize)]
pub struct RequestPayload<'a> {
    /// Full request id.
    pub request_id: String,
    /// `PENDING`, `WAITING`, `RUNNING`, `SUCCEEDED`, `FAILED` or `CANCELLED`.
    pub status: String,
    /// The result: a JSON string holding JSON text (`"null"` on failure).
    #[serde(borrow, default)]
    pub return_value: Option<&'a RawValue>,
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
