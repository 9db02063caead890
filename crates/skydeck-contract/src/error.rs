//! The shape of every error answer: `{"error": {"code", "message", "field"}}`. `code` is a
//! stable machine-readable word, `message` says what was wrong and what is expected, `field`
//! names the body field, path or query parameter at fault when there is one.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable word: `invalid_node_config`, `node_not_found`, `unauthorized`, ….
    pub code: String,
    /// For people: what was wrong and what is expected.
    pub message: String,
    /// The field, path or query parameter at fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.error.field {
            Some(field) => write!(f, "{} ({field}): {}", self.error.code, self.error.message),
            None => write!(f, "{}: {}", self.error.code, self.error.message),
        }
    }
}
