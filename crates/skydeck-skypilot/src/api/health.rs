//! `GET /api/health`.

use serde::Deserialize;

/// The body of `/api/health` (`schemas/api/responses.py:APIHealthResponse`).
#[derive(Debug, Clone, Deserialize)]
pub struct Health {
    /// `healthy`, `unhealthy`, `needs_auth` or `version_mismatch`.
    pub status: String,
    /// The server's API version, sent as a string (`"62"`); absent in probe mode.
    #[serde(default)]
    pub api_version: Option<String>,
    /// The server's SkyPilot version.
    #[serde(default)]
    pub version: Option<String>,
    /// Whether the server has basic auth enabled.
    #[serde(default)]
    pub basic_auth_enabled: Option<bool>,
    /// Whether the server accepts service-account tokens.
    #[serde(default)]
    pub service_account_token_enabled: Option<bool>,
}

impl Health {
    /// The API version as a number, if the server sent one.
    pub fn api_version(&self) -> Option<u32> {
        self.api_version
            .as_deref()
            .and_then(|v| v.trim().parse().ok())
    }
}
