//! The control plane's routes, spelled once for the server's router, its clients and the tests.
//! Paths with `{cluster_name}` take the SkyPilot cluster name of a node.

/// `GET`: one page of nodes.
pub const NODES: &str = "/admin/nodes";
/// `POST`: launch a node.
pub const LAUNCH: &str = "/admin/nodes/launch";
/// `GET`: one node, with its latest heartbeat.
pub const NODE: &str = "/admin/nodes/{cluster_name}";
/// `GET`: one node's status (the seed's route; the same view as [`NODE`]).
pub const NODE_STATUS: &str = "/admin/nodes/{cluster_name}/status";
/// `POST`: terminate a node.
pub const TERMINATE: &str = "/admin/nodes/{cluster_name}/terminate";
/// `GET`: clusters with skydeck's prefix the table does not hold.
pub const UNMANAGED: &str = "/admin/unmanaged-clusters";
/// `GET`: every pool; `POST`: create one.
pub const POOLS: &str = "/admin/pools";
/// `GET`, `PATCH`, `DELETE`: one pool.
pub const POOL: &str = "/admin/pools/{name}";
/// `GET`: one pool's decisions, newest first.
pub const POOL_EVENTS: &str = "/admin/pools/{name}/events";
/// `POST`: the agent registers (its node token authenticates it).
pub const AGENT_REGISTER: &str = "/v1/agent/register";
/// `POST`: the agent's heartbeat.
pub const AGENT_HEARTBEAT: &str = "/v1/agent/heartbeat";
/// `GET`: the agent binary the task downloads and checks.
pub const AGENT_DOWNLOAD: &str = "/downloads/skydeck-linux-amd64";
/// `GET`: the agent binary's sha256 in `sha256sum` format.
pub const AGENT_SHA256: &str = "/downloads/skydeck-linux-amd64.sha256";
/// `GET`: the OpenAPI document.
pub const OPENAPI: &str = "/openapi.json";
/// `GET`: Prometheus metrics.
pub const METRICS: &str = "/metrics";
/// `GET`: liveness.
pub const HEALTHZ: &str = "/healthz";
/// `GET`: readiness (the database answers).
pub const READYZ: &str = "/readyz";

/// `path` with its `{name}` replaced by the pool name `name`, percent-encoded.
pub fn for_pool(path: &str, name: &str) -> String {
    path.replace("{name}", &encode(name))
}

/// `path` with its `{cluster_name}` replaced by `name`, percent-encoded.
pub fn for_cluster(path: &str, name: &str) -> String {
    path.replace("{cluster_name}", &encode(name))
}

fn encode(name: &str) -> String {
    let mut enc = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    enc
}
