//! A small client for the SkyPilot API server's REST protocol.
//!
//! SkyPilot's Python SDK starts a local API server when it cannot authenticate and spawns
//! subprocesses that a thread timeout cannot kill (seed 002: a collector hung for 81 minutes).
//! This crate speaks the server's protocol directly: `POST /<op>` returns a request id in the
//! `X-Skypilot-Request-ID` header, `GET /api/get` long-polls for the result, whose
//! `return_value` is JSON text inside the JSON. Every call is bounded by a connect timeout and a
//! total deadline, because `/api/get` itself waits on the server with no limit.
//!
//! * [`target`] resolves the endpoint and credentials the way SkyPilot's own client does.
//! * [`Client`] runs the protocol; [`api`] holds the wire types of the endpoints we use.
//! * [`Error`] says what an operator needs: which endpoint, which credential source, which
//!   field did not decode.

pub mod api;
mod client;
mod error;
pub mod sky_config;
pub mod target;
mod unescape;

pub use client::{Client, ClientOptions};
pub use error::{
    CLUSTER_DOES_NOT_EXIST, Error, RESOURCES_UNAVAILABLE, Result, UnreachableKind,
    is_capacity_failure,
};
/// The HTTP status type [`Error::Status`] and [`Error::Unauthorized`] carry.
pub use reqwest::StatusCode;
pub use target::{Credential, CredentialSource, Endpoint, EndpointSource, Target};

/// The SkyPilot API version this client speaks (`sky/server/constants.py` of skypilot 0.14.1).
pub const API_VERSION: u32 = 62;
/// The SkyPilot release whose wire format this client was written against.
pub const SKYPILOT_VERSION: &str = "0.14.1";
/// The oldest server API version this client accepts. `/jobs/queue/v2` with `fields`
/// (`submitted_after`, `infra_match` are newer still but unused) exists from API 24 on, which is
/// also SkyPilot's own `MIN_COMPATIBLE_API_VERSION`.
pub const MIN_SERVER_API_VERSION: u32 = 24;
/// The default endpoint of a local API server.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:46580";
