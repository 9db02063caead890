//! skydeck's control plane: launches, watches and terminates inference nodes (vLLM or
//! llama.cpp) through SkyPilot's REST API.
//!
//! The folders follow the data flow: the admin and agent API ([`http`]) calls the node
//! operations ([`nodes`]), which change the [`store`]; the [`reconcile`] loop compares the store with
//! SkyPilot and drives each node through [`skydeck_contract::NodeStatus`].
//!
//! * [`node_config`] validates launch requests; [`offerings`] and [`vllm_args`] hold the rules.
//! * [`task`] builds the SkyPilot task from typed structures (no shell templates).
//! * [`store`] keeps nodes in SQLite or PostgreSQL with conditional state changes.
//! * [`reconcile`] drives each node with SkyPilot, one replica at a time under a lease.
//! * [`pools`] keeps groups of nodes sized to their load, with spot fallback and failover.
//! * [`clock`] is the time every room reads, simulated in tests.

pub mod clock;
pub mod http;
pub mod node_config;
pub mod nodes;
pub mod offerings;
pub mod pools;
pub mod reconcile;
pub mod status;
pub mod store;
pub mod task;
pub mod token;
pub mod vllm_args;
