//! The one typed contract between skydeck's control plane and everything that talks to it:
//! the admin clients (`skydeck nodes`, the web console, scripts), and the node agents.
//!
//! * [`node`]: a node's [`node::NodeStatus`] with its allowed transitions, the engine a node
//!   runs, the node view, pages, launch and terminate answers.
//! * [`agent`]: the agent protocol: register and heartbeat bodies, the typed reply with the
//!   control plane's order, the environment the SkyPilot task sets, the download paths.
//! * [`error`]: the `{"error": {"code", "message", "field"}}` shape of every error answer.
//! * [`pool`]: pools: the spec, the patch, the view and the decision log.
//! * [`paths`]: every route's path, so servers, clients and tests spell them once.
//!
//! The server serializes these types and the clients deserialize the same ones; the OpenAPI
//! document is derived from them (`utoipa::ToSchema`), so the three cannot drift apart.

pub mod agent;
pub mod error;
pub mod node;
mod num;
pub mod paths;
pub mod pool;

pub use agent::{
    AgentReply, AgentState, EngineHealth, EngineReport, GpuReport, Heartbeat, Order, Register,
};
pub use error::{ErrorBody, ErrorDetail};
pub use node::{
    Engine, LaunchResponse, NodePage, NodeStatus, NodeView, TerminateResponse, UnmanagedClusters,
};
pub use pool::{
    CapacityMode, DecisionKind, Placement, PoolEvent, PoolEventPage, PoolList, PoolPatch, PoolSpec,
    PoolTemplate, PoolView, SpotPolicy,
};
