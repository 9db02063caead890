//! The pool controller's decisions: one pure function, [`decide`], from a pool's spec, its
//! remembered state, its nodes (as the store holds them) and the time, to the new state, the
//! actions to take and the decisions to record with their reasons. Nothing here reads a clock
//! or a database, so every rule is tested by feeding it nodes.
//!
//! The rules, in the order they run each tick:
//! 1. ended nodes not yet accounted for: a launch that failed for capacity or quota marks its
//!    placement exhausted (the next is tried); another failure backs launches off; a node whose
//!    cluster vanished without being asked to (preempted, or taken down outside skydeck) is
//!    lost and replaced; spot failures and preemptions are counted for the fallback;
//! 2. an unhealthy node past `replace_unhealthy_after` is terminated and replaced;
//! 3. spot falls back to on-demand after `fallback_after` spot losses within the window, and
//!    returns after the cool-down;
//! 4. the load (mean waiting requests per active node) above the target for the up-delay
//!    raises the desired size to `ceil(active × mean / target)` (Kubernetes' HPA rule); under
//!    half the target for the down-delay lowers it the same way; always within the bounds;
//! 5. an active node with no requests for the idle timeout is terminated while the pool is
//!    above its minimum;
//! 6. the size (every node not draining or ended: launching ones count, so a slow launch is
//!    never launched twice) is brought to the desired size: extra nodes drain, least loaded
//!    first; missing ones launch on the first placement that is not exhausted.

use skydeck_contract::{CapacityMode, DecisionKind, NodeStatus, PoolSpec};
use skydeck_skypilot::is_capacity_failure;

use super::{Draft, Exhausted, Idle, PoolState, counts, placement_has_spot};
use crate::status::{CLUSTER_NOT_UP, LAUNCH_FAILED};
use crate::store::Node;

/// How long a loss or a scale-up waits for the node that answers it, at most (ms).
const PENDING_HORIZON_MS: i64 = 3_600_000;

/// The controller's own timings (the spec holds the pool's).
#[derive(Debug, Clone)]
pub struct Timing {
    /// An unhealthy node is replaced after this long (ms).
    pub replace_unhealthy_after_ms: i64,
    /// A placement out of capacity is skipped this long (ms).
    pub capacity_backoff_ms: i64,
    /// First delay after a failed launch (ms); it doubles per consecutive failure.
    pub launch_backoff_ms: i64,
    /// The longest launch backoff (ms).
    pub launch_backoff_cap_ms: i64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            replace_unhealthy_after_ms: 120_000,
            capacity_backoff_ms: 600_000,
            launch_backoff_ms: 30_000,
            launch_backoff_cap_ms: 900_000,
        }
    }
}

/// What the controller does after a decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Launch a node of the template on this placement.
    Launch {
        /// Index into the template's placements.
        placement: usize,
        /// On spot capacity.
        spot: bool,
        /// Why (recorded with the launch).
        reason: String,
    },
    /// Terminate a node.
    Drain {
        /// Its cluster name.
        cluster_name: String,
        /// Cut in-flight requests off.
        force: bool,
    },
    /// Stop a node to keep it warm (it drains first).
    Stop {
        /// Its cluster name.
        cluster_name: String,
    },
    /// Start a warm node again.
    Start {
        /// Its cluster name.
        cluster_name: String,
    },
    /// Every node is gone and deletion was asked: remove the pool.
    Remove,
}

/// The outcome of one decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The state to store.
    pub state: PoolState,
    /// What to do once it is stored.
    pub actions: Vec<Action>,
    /// What to record.
    pub events: Vec<Draft>,
}

fn secs(ms: i64) -> i64 {
    ms.max(0) / 1000
}

fn where_(spec: &PoolSpec, i: usize, spot: bool) -> String {
    let p = &spec.template.placements[i];
    format!(
        "{}/{} ({})",
        p.provider,
        p.region,
        if spot { "spot" } else { "on-demand" }
    )
}

/// The node's placement index in the template, if it still lists it.
fn placement_of(spec: &PoolSpec, n: &Node) -> Option<usize> {
    spec.template
        .placements
        .iter()
        .position(|p| p.provider == n.provider && p.region == n.region)
}

/// The first placement that can take a launch of this capacity now.
fn pick(spec: &PoolSpec, st: &PoolState, spot: bool, now: i64) -> Option<usize> {
    (0..spec.template.placements.len()).find(|&i| {
        (!spot || placement_has_spot(spec, i))
            && !st
                .exhausted
                .iter()
                .any(|e| e.placement == i && e.spot == spot && e.until > now)
    })
}

/// Requests waiting, running, and tokens generated, from a node's latest heartbeat.
fn load(n: &Node) -> (f64, f64, Option<f64>) {
    match &n.heartbeat {
        Some(h) => (
            h.engine.requests_waiting.unwrap_or(0.0),
            h.engine.requests_running.unwrap_or(0.0),
            h.engine.generation_tokens_total,
        ),
        None => (0.0, 0.0, None),
    }
}

/// Drain order for a scale-down: nodes not launched yet first (newest first), then launching,
/// then unhealthy, then active ones least loaded first (newest first among equals).
fn drain_rank(n: &Node) -> (u8, i64, i64) {
    let (waiting, running, _) = load(n);
    let class = match n.status {
        NodeStatus::Requested => 0,
        NodeStatus::Launching | NodeStatus::Initializing => 1,
        NodeStatus::Unhealthy => 2,
        _ => 3,
    };
    let busy = ((waiting + running) * 1000.0) as i64;
    (class, if class == 3 { busy } else { 0 }, -n.created_at)
}

/// The action that takes `n` out of the pool's size: a stop while warm slots are free (for a
/// node that runs: one not launched yet, or unhealthy, is terminated), else a drain.
fn shrink(n: &Node, warm_free: &mut u32) -> Action {
    if *warm_free > 0 && matches!(n.status, NodeStatus::Active | NodeStatus::Initializing) {
        *warm_free -= 1;
        Action::Stop {
            cluster_name: n.cluster_name.clone(),
        }
    } else {
        Action::Drain {
            cluster_name: n.cluster_name.clone(),
            force: false,
        }
    }
}

/// Decides one tick of the pool `spec` with its `state` and `nodes` (the pool's live nodes
/// and those ended recently) at `now`, with deletion asked when `deleting`.
pub fn decide(
    spec: &PoolSpec,
    state: &PoolState,
    deleting: bool,
    nodes: &[Node],
    now: i64,
    t: &Timing,
) -> Plan {
    let mut st = state.clone();
    let mut events = Vec::new();
    let mut actions = Vec::new();
    let mut ev = |kind, reason: String, inputs: serde_json::Value, node: Option<&Node>| {
        events.push(Draft {
            kind,
            reason,
            inputs,
            cluster_name: node.map(|n| n.cluster_name.clone()),
        });
    };

    if deleting {
        st.desired = 0;
        let live: Vec<&Node> = nodes.iter().filter(|n| !n.status.is_final()).collect();
        for n in live.iter().filter(|n| n.status != NodeStatus::Draining) {
            actions.push(Action::Drain {
                cluster_name: n.cluster_name.clone(),
                force: false,
            });
            ev(
                DecisionKind::Drain,
                format!("drain {}: the pool is being deleted", n.cluster_name),
                serde_json::json!({"status": n.status}),
                Some(n),
            );
        }
        if live.is_empty() {
            actions.push(Action::Remove);
        }
        return Plan {
            state: st,
            actions,
            events,
        };
    }

    // 1. Ended nodes, each accounted for once.
    for n in nodes.iter().filter(|n| n.status.is_final()) {
        if !st.accounted.insert(n.id.clone()) {
            continue;
        }
        let reason = n.status_reason.clone().unwrap_or_default();
        match n.status {
            NodeStatus::Failed if is_capacity_failure(&reason) => {
                if let Some(i) = placement_of(spec, n) {
                    st.exhausted
                        .retain(|e| !(e.placement == i && e.spot == n.use_spot));
                    st.exhausted.push(Exhausted {
                        placement: i,
                        spot: n.use_spot,
                        until: now + t.capacity_backoff_ms,
                    });
                    let next = pick(spec, &st, n.use_spot, now)
                        .map(|j| where_(spec, j, n.use_spot))
                        .or_else(|| {
                            (n.use_spot)
                                .then(|| {
                                    pick(spec, &st, false, now).map(|j| where_(spec, j, false))
                                })
                                .flatten()
                        })
                        .unwrap_or_else(|| "no placement left; waiting".into());
                    ev(
                        DecisionKind::Failover,
                        format!(
                            "{} out of capacity ({}) → trying {next}",
                            where_(spec, i, n.use_spot),
                            reason
                                .strip_prefix(LAUNCH_FAILED)
                                .map_or(reason.clone(), |r| format!("SkyPilot: {r}"))
                        ),
                        serde_json::json!({"placement": i, "spot": n.use_spot, "skypilot": reason,
                            "skipped_for_seconds": secs(t.capacity_backoff_ms)}),
                        Some(n),
                    );
                }
                if n.use_spot {
                    st.spot_losses.push(now);
                }
            }
            NodeStatus::Failed => {
                st.launch_failures = st.launch_failures.saturating_add(1);
                let delay = (t.launch_backoff_ms << (st.launch_failures - 1).min(10))
                    .min(t.launch_backoff_cap_ms);
                st.next_launch_at = now + delay;
                if n.use_spot {
                    st.spot_losses.push(now);
                }
                ev(
                    DecisionKind::LaunchFailed,
                    format!(
                        "launch of {} failed ({reason}); next launch in {} s",
                        n.cluster_name,
                        secs(delay)
                    ),
                    serde_json::json!({"consecutive_failures": st.launch_failures, "skypilot": reason}),
                    Some(n),
                );
            }
            // Ended without being asked to (drift found the cluster gone).
            NodeStatus::Terminated if n.draining_at.is_none() => {
                st.lost.push_back(now);
                if n.use_spot {
                    st.spot_losses.push(now);
                    st.preemptions += 1;
                }
                ev(
                    DecisionKind::Replace,
                    format!("replace {}: {reason}", n.cluster_name),
                    serde_json::json!({"spot": n.use_spot, "reason": reason}),
                    Some(n),
                );
            }
            _ => {}
        }
    }
    // Forget ids that fell out of the window the store reads ended nodes from.
    st.accounted.retain(|id| nodes.iter().any(|n| &n.id == id));

    // A node that comes up more than an hour after the loss or the scale-up it would answer
    // is not its answer: drop what is older (and never keep more than the pool can hold).
    let horizon = now - PENDING_HORIZON_MS;
    st.lost.retain(|at| *at >= horizon);
    st.scale_ups.retain(|at| *at >= horizon);
    st.lost.truncate(spec.max_nodes as usize);
    st.scale_ups.truncate(spec.max_nodes as usize);

    // Nodes that came up: a launch worked, and a lost node or a scale-up is served.
    for n in nodes.iter().filter(|n| n.status == NodeStatus::Active) {
        if st.seen_active.insert(n.id.clone()) {
            st.launch_failures = 0;
            let up = n.active_at.unwrap_or(now);
            if let Some(lost) = st.lost.pop_front() {
                st.replace_seconds.observe(secs(up - lost) as f64);
            } else if let Some(decided) = st.scale_ups.pop_front() {
                st.scale_up_seconds.observe(secs(up - decided) as f64);
            }
        }
    }
    st.seen_active
        .retain(|id| nodes.iter().any(|n| &n.id == id && !n.status.is_final()));

    // 2. Unhealthy nodes past the grace are replaced.
    let mut draining_now: Vec<String> = Vec::new();
    for n in nodes.iter().filter(|n| n.status == NodeStatus::Unhealthy) {
        let since = n.unhealthy_at.unwrap_or(n.updated_at);
        if now - since < t.replace_unhealthy_after_ms {
            continue;
        }
        let reason = n.status_reason.clone().unwrap_or_default();
        st.lost.push_back(now);
        // A spot cluster SkyPilot reports not UP was preempted.
        if n.use_spot && reason.starts_with(CLUSTER_NOT_UP) {
            st.spot_losses.push(now);
            st.preemptions += 1;
        }
        draining_now.push(n.id.clone());
        actions.push(Action::Drain {
            cluster_name: n.cluster_name.clone(),
            force: true,
        });
        ev(
            DecisionKind::Replace,
            format!(
                "replace {}: unhealthy for {} s ({reason})",
                n.cluster_name,
                secs(now - since)
            ),
            serde_json::json!({"unhealthy_seconds": secs(now - since), "reason": reason, "spot": n.use_spot}),
            Some(n),
        );
    }

    // 3. Spot fallback and return.
    let window = spec.spot.window_seconds as i64 * 1000;
    st.spot_losses.retain(|at| now - at < window);
    st.exhausted.retain(|e| e.until > now);
    if spec.spot.enabled {
        if st.mode == CapacityMode::Spot && st.spot_losses.len() as u32 >= spec.spot.fallback_after
        {
            st.mode = CapacityMode::OnDemand;
            st.on_demand_since = Some(now);
            ev(
                DecisionKind::FallbackOnDemand,
                format!(
                    "fallback to on-demand: {} spot failures or preemptions in {} min",
                    st.spot_losses.len(),
                    spec.spot.window_seconds / 60
                ),
                serde_json::json!({"spot_losses": st.spot_losses.len(), "window_seconds": spec.spot.window_seconds,
                    "fallback_after": spec.spot.fallback_after}),
                None,
            );
        } else if st.mode == CapacityMode::OnDemand
            && st
                .on_demand_since
                .is_none_or(|s| now - s >= spec.spot.cooldown_seconds as i64 * 1000)
        {
            st.mode = CapacityMode::Spot;
            st.on_demand_since = None;
            st.spot_losses.clear();
            ev(
                DecisionKind::ReturnToSpot,
                format!(
                    "back to spot after {} min on on-demand",
                    spec.spot.cooldown_seconds / 60
                ),
                serde_json::json!({"cooldown_seconds": spec.spot.cooldown_seconds}),
                None,
            );
        }
    }

    // 4. Load.
    let active: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.status == NodeStatus::Active && !draining_now.contains(&n.id))
        .collect();
    let target = spec.target_waiting_per_node;
    if active.is_empty() {
        st.waiting_per_node = None;
        st.over_since = None;
        st.under_since = None;
    } else {
        let total: f64 = active.iter().map(|n| load(n).0).sum();
        let mean = total / active.len() as f64;
        st.waiting_per_node = Some(mean);
        let wanted = ((active.len() as f64 * mean / target).ceil() as u32)
            .clamp(spec.min_nodes, spec.max_nodes);
        let inputs = serde_json::json!({"active": active.len(), "waiting_total": total,
            "waiting_per_node": mean, "target": target});
        if mean > target {
            st.under_since = None;
            let since = *st.over_since.get_or_insert(now);
            if now - since >= spec.scale_up_delay_seconds as i64 * 1000 && wanted > st.desired {
                ev(
                    DecisionKind::ScaleUp,
                    format!(
                        "scale up {} → {wanted}: waiting/node {mean:.1} > {target} for {} s",
                        st.desired,
                        secs(now - since)
                    ),
                    inputs,
                    None,
                );
                for _ in st.desired..wanted {
                    st.scale_ups.push_back(now);
                }
                st.desired = wanted;
            }
        } else if mean < target / 2.0 {
            st.over_since = None;
            let since = *st.under_since.get_or_insert(now);
            if now - since >= spec.scale_down_delay_seconds as i64 * 1000 && wanted < st.desired {
                ev(
                    DecisionKind::ScaleDown,
                    format!(
                        "scale down {} → {wanted}: waiting/node {mean:.1} < {} for {} s",
                        st.desired,
                        target / 2.0,
                        secs(now - since)
                    ),
                    inputs,
                    None,
                );
                st.desired = wanted;
                st.scale_ups.clear();
                // Another step down waits a whole delay again.
                st.under_since = Some(now);
            }
        } else {
            st.over_since = None;
            st.under_since = None;
        }
    }

    // 5. Idle nodes.
    let mut counted: Vec<&Node> = nodes
        .iter()
        .filter(|n| counts(n) && !draining_now.contains(&n.id))
        .collect();
    // Warm nodes: those stopped, and those draining toward a stop.
    let stopped: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.status == NodeStatus::Stopped)
        .collect();
    let stopping = nodes
        .iter()
        .filter(|n| n.status == NodeStatus::Draining && n.stop_on_drain)
        .count() as u32;
    let mut warm_free = spec
        .warm_nodes
        .saturating_sub(stopped.len() as u32 + stopping);
    // More warm nodes than the spec keeps (it was lowered): the extra ones go, oldest first.
    let extra = (stopped.len() as u32 + stopping).saturating_sub(spec.warm_nodes);
    for n in stopped.iter().take(extra as usize) {
        actions.push(Action::Drain {
            cluster_name: n.cluster_name.clone(),
            force: true,
        });
        ev(
            DecisionKind::Drain,
            format!(
                "drain {}: {} warm nodes > warm_nodes {}",
                n.cluster_name,
                stopped.len() as u32 + stopping,
                spec.warm_nodes
            ),
            serde_json::json!({"stopped": stopped.len(), "warm_nodes": spec.warm_nodes}),
            Some(n),
        );
    }
    let stopped: Vec<&Node> = stopped.into_iter().skip(extra as usize).collect();
    match spec.idle_timeout_seconds {
        None => st.idle.clear(),
        Some(timeout) => {
            for n in &active {
                let (waiting, running, tokens) = load(n);
                let busy = waiting > 0.0
                    || running > 0.0
                    || st
                        .idle
                        .get(&n.id)
                        .is_some_and(|i| i.tokens.is_some() && i.tokens != tokens);
                if busy || n.heartbeat.is_none() {
                    st.idle.remove(&n.id);
                } else {
                    st.idle
                        .entry(n.id.clone())
                        .or_insert(Idle { since: now, tokens });
                }
            }
            st.idle.retain(|id, _| active.iter().any(|n| &n.id == id));
            let mut idle: Vec<(&String, i64)> = st
                .idle
                .iter()
                .filter(|(_, i)| now - i.since >= timeout as i64 * 1000)
                .map(|(id, i)| (id, i.since))
                .collect();
            idle.sort_by_key(|(_, since)| *since);
            let mut stopped = Vec::new();
            for (id, since) in idle {
                if counted.len() as u32 <= spec.min_nodes {
                    break;
                }
                let Some(pos) = counted.iter().position(|n| &n.id == id) else {
                    continue;
                };
                let n = counted.remove(pos);
                let before = st.desired;
                st.desired = st.desired.saturating_sub(1).max(spec.min_nodes);
                actions.push(shrink(n, &mut warm_free));
                ev(
                    DecisionKind::IdleStop,
                    format!(
                        "idle stop {}: no requests for {} s (desired {before} → {}, min {})",
                        n.cluster_name,
                        secs(now - since),
                        st.desired,
                        spec.min_nodes
                    ),
                    serde_json::json!({"idle_seconds": secs(now - since), "idle_timeout_seconds": timeout}),
                    Some(n),
                );
                stopped.push(id.clone());
            }
            for id in stopped {
                st.idle.remove(&id);
            }
        }
    }

    // 6. Bounds, then the size to the desired size.
    let bounded = st.desired.clamp(spec.min_nodes, spec.max_nodes);
    if bounded != st.desired {
        ev(
            DecisionKind::Bounds,
            format!(
                "desired {} → {bounded} to fit {}..={}",
                st.desired, spec.min_nodes, spec.max_nodes
            ),
            serde_json::json!({"min_nodes": spec.min_nodes, "max_nodes": spec.max_nodes}),
            None,
        );
        st.desired = bounded;
    }
    let size = counted.len() as u32;
    if size > st.desired {
        counted.sort_by_key(|n| drain_rank(n));
        for n in counted.iter().take((size - st.desired) as usize) {
            let (waiting, running, _) = load(n);
            let action = shrink(n, &mut warm_free);
            let (kind, verb) = match action {
                Action::Stop { .. } => (DecisionKind::WarmStop, "stop (warm)"),
                _ => (DecisionKind::Drain, "drain"),
            };
            actions.push(action);
            ev(
                kind,
                format!(
                    "{verb} {}: {size} nodes > desired {} (it is {}, {running} running, {waiting} waiting)",
                    n.cluster_name, st.desired, n.status
                ),
                serde_json::json!({"size": size, "desired": st.desired, "status": n.status,
                    "running": running, "waiting": waiting}),
                Some(n),
            );
        }
    } else if size < st.desired && now >= st.next_launch_at {
        let mut on_demand = counted.iter().filter(|n| !n.use_spot).count() as u32;
        let mut blocked = false;
        // Warm nodes first: starting a stopped cluster skips provisioning and the install.
        let mut started = 0;
        for n in stopped.iter().take((st.desired - size) as usize) {
            actions.push(Action::Start {
                cluster_name: n.cluster_name.clone(),
            });
            ev(
                DecisionKind::WarmStart,
                format!(
                    "start {} (warm): {} nodes < desired {}",
                    n.cluster_name,
                    size + started,
                    st.desired
                ),
                serde_json::json!({"size": size + started, "desired": st.desired,
                    "stopped_for_seconds": secs(now - n.stopped_at.unwrap_or(now))}),
                Some(n),
            );
            started += 1;
        }
        for k in started..(st.desired - size) {
            let want_spot = spec.spot.enabled
                && st.mode == CapacityMode::Spot
                && on_demand >= spec.spot.on_demand_base;
            // Spot where a placement has it, else on-demand.
            let choice = if want_spot {
                pick(spec, &st, true, now)
                    .map(|i| (i, true))
                    .or_else(|| pick(spec, &st, false, now).map(|i| (i, false)))
            } else {
                pick(spec, &st, false, now).map(|i| (i, false))
            };
            let Some((placement, spot)) = choice else {
                blocked = true;
                break;
            };
            if !spot {
                on_demand += 1;
            }
            actions.push(Action::Launch {
                placement,
                spot,
                reason: format!(
                    "launch on {}: {} nodes < desired {}",
                    where_(spec, placement, spot),
                    size + k,
                    st.desired
                ),
            });
        }
        if blocked && !st.blocked {
            let until = st.exhausted.iter().map(|e| e.until).min().unwrap_or(now);
            ev(
                DecisionKind::Blocked,
                format!(
                    "no placement can take a launch: all out of capacity; next try in {} s",
                    secs(until - now)
                ),
                serde_json::json!({"size": size, "desired": st.desired}),
                None,
            );
        }
        st.blocked = blocked;
    } else if size >= st.desired {
        st.blocked = false;
    }
    Plan {
        state: st,
        actions,
        events,
    }
}
