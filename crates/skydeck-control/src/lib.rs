//! skydeck's control plane: launches, watches and terminates vLLM inference nodes through
//! SkyPilot's REST API.
//!
//! * [`node_config`] validates launch requests; [`offerings`] and [`vllm_args`] hold the rules.
//! * [`task`] builds the SkyPilot task from typed structures (no shell templates).
//! * [`db`] stores nodes in SQLite or PostgreSQL with conditional state changes.
//! * [`reconciler`] drives each node through [`status::NodeStatus`] with SkyPilot, one replica
//!   at a time under a lease.
//! * [`api`] serves the admin API, the agent API, the agent binary, `/openapi.json` and
//!   `/metrics` ([`metrics`]).

pub mod api;
pub mod db;
pub mod metrics;
pub mod node_config;
pub mod offerings;
pub mod openapi;
pub mod reconciler;
pub mod status;
pub mod task;
pub mod token;
pub mod vllm_args;
