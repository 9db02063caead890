//! Node operations: what launching, terminating, registering and heartbeating a node MEANS,
//! apart from how it was asked for. The HTTP handlers call these, and so will the pool
//! controller; the decisions (the cluster name, whether a terminate moves the node or makes a
//! running drain immediate, the order an agent gets) live here, the rows in [`crate::store`].

use skydeck_contract::{
    AgentReply, AgentState, Heartbeat, LaunchResponse, NodeStatus, Order, Register,
    TerminateResponse,
};

use crate::node_config::{NodeConfig, Rules};
use crate::store::{NewNode, Node, Store, StoreError};
use crate::token;
use crate::vllm_args::printable;

/// Why an operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// A field broke a rule.
    #[error("{field}: {rule}")]
    Invalid {
        /// The field, as a JSON path.
        field: String,
        /// What is expected.
        rule: String,
    },
    /// No node has this cluster name (printable).
    #[error("no node with cluster name {name}")]
    NotFound {
        /// The name asked for, escaped.
        name: String,
    },
    /// A node with this id exists.
    #[error("a node with node_id {node_id} already exists")]
    Exists {
        /// The id.
        node_id: String,
    },
    /// No pool has this name (printable).
    #[error("no pool named {name}")]
    PoolNotFound {
        /// The name asked for, escaped.
        name: String,
    },
    /// A pool with this name exists.
    #[error("a pool named {name} already exists")]
    PoolExists {
        /// The name.
        name: String,
    },
    /// The pool is being deleted; it cannot be changed.
    #[error("pool {name} is being deleted")]
    PoolDeleting {
        /// The name, escaped.
        name: String,
    },
    /// The change lost every race with concurrent changes.
    #[error("{what}")]
    Busy {
        /// What happened.
        what: &'static str,
    },
    /// An agent's body names another node than its token's.
    #[error("node_id does not match the node of this token")]
    OtherNode,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the agent routes need to answer: the intervals told to every agent.
#[derive(Debug, Clone, Copy)]
pub struct AgentTiming {
    /// Heartbeat this often.
    pub heartbeat_interval: std::time::Duration,
    /// How long a drain may wait for in-flight requests.
    pub drain_grace: std::time::Duration,
}

/// The SkyPilot cluster name of a node: the deployment's prefix and the node's UUID, so two
/// control planes with different prefixes never touch each other's clusters.
pub fn cluster_name(prefix: &str, node_id: &uuid::Uuid) -> String {
    format!("{prefix}-{node_id}")
}

/// Validates `cfg` and stores the node as `requested`; the reconciler launches it.
pub async fn launch(
    store: &Store,
    rules: &Rules,
    prefix: &str,
    cfg: &NodeConfig,
) -> Result<LaunchResponse, OpError> {
    launch_in(store, rules, prefix, cfg, None).await
}

/// [`launch`] of a node that belongs to `pool` (the pool controller's launches take the same
/// path as the admin API's).
pub async fn launch_in(
    store: &Store,
    rules: &Rules,
    prefix: &str,
    cfg: &NodeConfig,
    pool: Option<&str>,
) -> Result<LaunchResponse, OpError> {
    let spec = cfg.validate(rules).map_err(|e| OpError::Invalid {
        field: e.field.to_string(),
        rule: e.rule,
    })?;
    let id = spec.node_id.to_string();
    let cluster_name = cluster_name(prefix, &spec.node_id);
    // The real token is made when the launch is sent; until then the column holds a value no
    // token hashes to.
    let placeholder = format!("unlaunched:{id}");
    let new = NewNode {
        id: &id,
        cluster_name: &cluster_name,
        provider: spec.provider.as_str(),
        region: &spec.region,
        gpu_type: &spec.gpu,
        gpu_count: i64::from(spec.gpu_count),
        model_name: &spec.model,
        use_spot: spec.use_spot,
        disk_size: i64::from(spec.disk_size),
        engine: spec.engine,
        image: spec.image.as_deref(),
        engine_args: &spec.engine_args,
        pool,
        agent_token_hash: &placeholder,
    };
    match store.insert(&new).await {
        Ok(n) => {
            tracing::info!(cluster = %cluster_name, provider = %spec.provider, region = %spec.region, gpu = %spec.gpu, model = %spec.model, pool = pool.unwrap_or(""), "launch requested");
            Ok(LaunchResponse {
                cluster_name,
                node_id: id,
                status: n.status,
            })
        }
        Err(e) if e.is_unique_violation() => Err(OpError::Exists { node_id: id }),
        Err(e) => Err(e.into()),
    }
}

/// The node called `cluster_name`.
pub async fn find(store: &Store, cluster_name: &str) -> Result<Node, OpError> {
    store
        .get(cluster_name)
        .await?
        .ok_or_else(|| OpError::NotFound {
            name: printable(cluster_name),
        })
}

/// Asks for `cluster_name` to be taken down; idempotent. A live node starts draining (at
/// once with `force`); a draining one asked again with `force` stops waiting; a final one
/// stays as it is. Returns the answer and whether the reconciler has work.
pub async fn terminate(
    store: &Store,
    cluster_name: &str,
    force: bool,
) -> Result<(TerminateResponse, bool), OpError> {
    let node = find(store, cluster_name).await?;
    let wake = match node.status {
        s if s.is_final() => false,
        NodeStatus::Draining => {
            if force {
                store.force_drain(&node.id).await?;
            }
            force
        }
        _ => {
            store.request_terminate(&node.id, force).await?;
            true
        }
    };
    let node = find(store, cluster_name).await?;
    Ok((
        TerminateResponse {
            cluster_name: node.cluster_name,
            node_id: node.id,
            status: node.status,
            force,
        },
        wake,
    ))
}

/// Asks for `cluster_name` to be stopped after it drains (a pool's warm node). Returns whether
/// it moved (a node that is not running stays as it is).
pub async fn stop(store: &Store, cluster_name: &str) -> Result<bool, OpError> {
    let node = find(store, cluster_name).await?;
    Ok(store.request_stop(&node.id).await?)
}

/// Starts the stopped `cluster_name` again: it is launched anew under the same cluster name.
/// Returns whether it moved.
pub async fn restart(store: &Store, cluster_name: &str) -> Result<bool, OpError> {
    let node = find(store, cluster_name).await?;
    Ok(store.restart(&node.id).await?)
}

/// The node whose agent token is `token`; `None` for a token no node holds.
pub async fn by_token(store: &Store, token: &str) -> Result<Option<Node>, OpError> {
    Ok(store.by_token_hash(&token::hash(token)).await?)
}

fn reply(n: &Node, timing: AgentTiming) -> AgentReply {
    AgentReply {
        node_id: n.id.clone(),
        cluster_name: n.cluster_name.clone(),
        status: n.status,
        order: AgentReply::order_for(n.status, n.drain_force),
        heartbeat_interval_seconds: timing.heartbeat_interval.as_secs().max(1),
        drain_grace_seconds: timing.drain_grace.as_secs(),
    }
}

fn same_node(node: &Node, claimed: &str) -> Result<(), OpError> {
    // A UUID compares in any of its spellings.
    let same = match (
        uuid::Uuid::try_parse(claimed),
        uuid::Uuid::try_parse(&node.id),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => claimed == node.id,
    };
    if same {
        Ok(())
    } else {
        Err(OpError::OtherNode)
    }
}

fn invalid(e: skydeck_contract::agent::Invalid) -> OpError {
    OpError::Invalid {
        field: e.field,
        rule: e.rule,
    }
}

/// The agent of `node` registers: checked, recorded as its first heartbeat (an empty report
/// with its served models), answered with its order. A final node is told to exit and nothing
/// is stored.
pub async fn register(
    store: &Store,
    node: Node,
    body: &Register,
    timing: AgentTiming,
) -> Result<AgentReply, OpError> {
    same_node(&node, &body.node_id)?;
    body.validate().map_err(invalid)?;
    if node.status.is_final() {
        return Ok(reply(&node, timing));
    }
    let report = Heartbeat {
        node_id: node.id.clone(),
        served_models: body.served_models.clone(),
        ..Heartbeat::default()
    };
    let after = store.heartbeat(&node.id, Some(&report)).await?;
    let node = after.unwrap_or(node);
    tracing::info!(cluster = %node.cluster_name, engine = %body.engine, "node agent registered");
    Ok(reply(&node, timing))
}

/// A heartbeat of `node`'s agent: checked, stored as the node's latest report, answered with
/// its order. `drained` on a draining node makes its teardown immediate; the returned flag
/// says the reconciler has work.
pub async fn heartbeat(
    store: &Store,
    node: Node,
    body: &Heartbeat,
    timing: AgentTiming,
) -> Result<(AgentReply, bool), OpError> {
    same_node(&node, &body.node_id)?;
    body.validate().map_err(invalid)?;
    if node.status.is_final() {
        return Ok((reply(&node, timing), false));
    }
    let mut node = store.heartbeat(&node.id, Some(body)).await?.unwrap_or(node);
    let mut wake = false;
    if body.state == AgentState::Drained && node.status == NodeStatus::Draining {
        store.force_drain(&node.id).await?;
        node.drain_force = true;
        wake = true;
    }
    let r = reply(&node, timing);
    debug_assert!(node.status != NodeStatus::Draining || r.order != Order::Serve);
    Ok((r, wake))
}
