//! Pools: groups of inference nodes of one template that the control plane keeps sized to
//! their load, replaces when lost, moves off spot when spot fails and across placements when
//! one runs out of capacity, and whose every decision is recorded with its reason.
//!
//! * this module: what a valid pool is ([`validate`]), the controller's persisted
//!   [`PoolState`], and the operations the admin API calls (create, change, delete, views);
//! * [`decide`]: the decisions, as one pure function of the spec, the state, the pool's
//!   nodes and the time;
//! * [`controller`]: the loop the reconciler's lease holder runs: reads, decides, stores the
//!   decision and then acts through the same node operations the admin API uses
//!   ([`crate::nodes::launch_in`], [`crate::nodes::terminate`]), so exactly-once launches and
//!   crash safety are the node lifecycle's.
//!
//! A decision is stored before it is acted on, conditional on the pool's version: two
//! replicas, or the controller and an admin's `PATCH`, cannot both act on one reading. What a
//! crash between storing and acting loses is re-derived from the nodes table on the next tick
//! (the size is always counted from the nodes, never remembered), so nothing launches twice.

pub mod controller;
pub mod decide;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use skydeck_contract::{
    CapacityMode, DecisionKind, NodeStatus, PoolEvent, PoolEventPage, PoolPatch, PoolSpec, PoolView,
};

use crate::node_config::{NodeConfig, Rules};
use crate::nodes::OpError;
use crate::store::{EventRow, Node, PoolRow, Store, event_id};
use crate::vllm_args::printable;

/// The most nodes one pool may have.
pub const MAX_POOL_NODES: u32 = 100;
/// The most placements a template may list.
pub const MAX_PLACEMENTS: usize = 16;
/// The longest delay, window or timeout a spec may set: a week.
pub const MAX_SECONDS: u64 = 7 * 24 * 3600;
/// The pattern of a pool name.
pub const NAME_PATTERN: &str = r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$";
static NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(NAME_PATTERN).expect("regex"));

fn invalid(field: impl Into<String>, rule: impl Into<String>) -> OpError {
    OpError::Invalid {
        field: field.into(),
        rule: rule.into(),
    }
}

/// The node launch of `spec`'s template on placement `i`, spot or not.
pub fn node_config(spec: &PoolSpec, i: usize, spot: bool) -> NodeConfig {
    let t = &spec.template;
    let p = &t.placements[i];
    NodeConfig {
        node_id: None,
        provider: p.provider.clone(),
        region: p.region.clone(),
        gpu: t.gpu.clone(),
        model: t.model.clone(),
        use_spot: Some(spot),
        disk_size: t.disk_size,
        engine: t.engine,
        image: t.image.clone(),
        engine_args: t.engine_args.clone(),
    }
}

/// Whether placement `i` of `spec` can take spot capacity.
pub fn placement_has_spot(spec: &PoolSpec, i: usize) -> bool {
    crate::offerings::Provider::parse(&spec.template.placements[i].provider)
        .is_some_and(|p| p.offering().spot)
}

fn seconds(field: &str, v: u64, min: u64) -> Result<(), OpError> {
    if v < min || v > MAX_SECONDS {
        return Err(invalid(
            field,
            format!("{field} is {v}, expected {min}..={MAX_SECONDS} seconds"),
        ));
    }
    Ok(())
}

/// Checks every field of `spec`; the first broken rule names its field (`min_nodes`,
/// `template.placements[1].region`, `spot.window_seconds`).
pub fn validate(spec: &PoolSpec, rules: &Rules) -> Result<(), OpError> {
    if !NAME.is_match(&spec.name) {
        return Err(invalid(
            "name",
            format!(
                "{} is not a pool name (1 to 40 lower-case letters, digits and -, starting with a letter, not ending with -)",
                printable(&spec.name)
            ),
        ));
    }
    let placements = &spec.template.placements;
    if placements.is_empty() || placements.len() > MAX_PLACEMENTS {
        return Err(invalid(
            "template.placements",
            format!(
                "template.placements has {} entries, expected 1..={MAX_PLACEMENTS}",
                placements.len()
            ),
        ));
    }
    for (i, p) in placements.iter().enumerate() {
        if placements[..i].contains(p) {
            return Err(invalid(
                format!("template.placements[{i}]"),
                format!(
                    "{}/{} is listed twice",
                    printable(&p.provider),
                    printable(&p.region)
                ),
            ));
        }
        // The template on this placement must be a valid node launch (on-demand: spot is
        // decided later, and only where the provider has it).
        if let Err(e) = node_config(spec, i, false).validate(rules) {
            let field = match e.field {
                "provider" | "region" => format!("template.placements[{i}].{}", e.field),
                other => format!("template.{other}"),
            };
            return Err(invalid(field, e.rule));
        }
    }
    if spec.max_nodes == 0 || spec.max_nodes > MAX_POOL_NODES {
        return Err(invalid(
            "max_nodes",
            format!(
                "max_nodes is {}, expected 1..={MAX_POOL_NODES}",
                spec.max_nodes
            ),
        ));
    }
    if spec.min_nodes > spec.max_nodes {
        return Err(invalid(
            "min_nodes",
            format!(
                "min_nodes {} is above max_nodes {}",
                spec.min_nodes, spec.max_nodes
            ),
        ));
    }
    let t = spec.target_waiting_per_node;
    if !(t.is_finite() && t > 0.0 && t <= 10_000.0) {
        return Err(invalid(
            "target_waiting_per_node",
            format!("target_waiting_per_node is {t}, expected a number above 0 and at most 10000"),
        ));
    }
    seconds("scale_up_delay_seconds", spec.scale_up_delay_seconds, 1)?;
    seconds("scale_down_delay_seconds", spec.scale_down_delay_seconds, 1)?;
    if let Some(v) = spec.idle_timeout_seconds {
        seconds("idle_timeout_seconds", v, 1)?;
    }
    let s = &spec.spot;
    if s.fallback_after == 0 || s.fallback_after > 1000 {
        return Err(invalid(
            "spot.fallback_after",
            format!(
                "spot.fallback_after is {}, expected 1..=1000",
                s.fallback_after
            ),
        ));
    }
    seconds("spot.window_seconds", s.window_seconds, 1)?;
    seconds("spot.cooldown_seconds", s.cooldown_seconds, 1)?;
    if spec.warm_nodes > spec.max_nodes {
        return Err(invalid(
            "warm_nodes",
            format!(
                "warm_nodes {} is above max_nodes {}",
                spec.warm_nodes, spec.max_nodes
            ),
        ));
    }
    if s.on_demand_base > spec.max_nodes {
        return Err(invalid(
            "spot.on_demand_base",
            format!(
                "spot.on_demand_base {} is above max_nodes {}",
                s.on_demand_base, spec.max_nodes
            ),
        ));
    }
    Ok(())
}

/// A histogram of seconds, kept in the pool's state so its counts survive restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Seconds {
    /// Counts per bound of [`crate::http::metrics::LAUNCH_BUCKETS`] (cumulative on render).
    pub buckets: Vec<u64>,
    /// Sum of the observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Seconds {
    /// Records one observation.
    pub fn observe(&mut self, secs: f64) {
        let bounds = crate::http::metrics::LAUNCH_BUCKETS;
        self.buckets.resize(bounds.len(), 0);
        if let Some(i) = bounds.iter().position(|le| secs <= *le) {
            self.buckets[i] += 1;
        }
        self.sum += secs;
        self.count += 1;
    }
}

/// A placement that ran out of capacity, skipped until `until`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exhausted {
    /// Index into the template's placements.
    pub placement: usize,
    /// For spot capacity (else on-demand).
    pub spot: bool,
    /// ms since epoch.
    pub until: i64,
}

/// A node seen idle: since when, and its token count then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Idle {
    /// ms since epoch.
    pub since: i64,
    /// `generation_tokens_total` when it was first seen idle.
    pub tokens: Option<f64>,
}

/// What the controller remembers of a pool between ticks (stored as JSON in `pools.state`).
/// The size is never remembered: it is counted from the nodes each tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolState {
    /// The size aimed at.
    pub desired: u32,
    /// Since when the load has been above target (ms).
    pub over_since: Option<i64>,
    /// Since when it has been under half the target (ms).
    pub under_since: Option<i64>,
    /// Spot or on-demand for new nodes.
    pub mode: CapacityMode,
    /// When the pool fell back to on-demand (ms).
    pub on_demand_since: Option<i64>,
    /// Times of spot launch failures and preemptions within the window (ms).
    pub spot_losses: Vec<i64>,
    /// Placements out of capacity.
    pub exhausted: Vec<Exhausted>,
    /// Consecutive launch failures (not capacity): launches back off.
    pub launch_failures: u32,
    /// No launch before this (ms).
    pub next_launch_at: i64,
    /// Active nodes seen idle, by node id.
    pub idle: BTreeMap<String, Idle>,
    /// Ended nodes already accounted for (failures, losses), by node id.
    pub accounted: BTreeSet<String>,
    /// Nodes seen active, by node id.
    pub seen_active: BTreeSet<String>,
    /// When lost nodes were found (ms), oldest first: the next node to come up replaces one.
    pub lost: VecDeque<i64>,
    /// When scale-ups were decided (ms), one per node asked for, oldest first.
    pub scale_ups: VecDeque<i64>,
    /// Mean waiting requests per active node at the last tick.
    pub waiting_per_node: Option<f64>,
    /// No placement could take a launch at the last tick.
    pub blocked: bool,
    /// The newest decision's reason.
    pub last_decision: Option<String>,
    /// Decisions made, by kind name (a counter).
    pub decisions: BTreeMap<String, u64>,
    /// Spot preemptions seen (a counter).
    pub preemptions: u64,
    /// Seconds from finding a node lost to its replacement being active.
    pub replace_seconds: Seconds,
    /// Seconds from a scale-up decision to the node being active.
    pub scale_up_seconds: Seconds,
}

impl Default for PoolState {
    fn default() -> Self {
        PoolState {
            desired: 0,
            over_since: None,
            under_since: None,
            mode: CapacityMode::Spot,
            on_demand_since: None,
            spot_losses: Vec::new(),
            exhausted: Vec::new(),
            launch_failures: 0,
            next_launch_at: 0,
            idle: BTreeMap::new(),
            accounted: BTreeSet::new(),
            seen_active: BTreeSet::new(),
            lost: VecDeque::new(),
            scale_ups: VecDeque::new(),
            waiting_per_node: None,
            blocked: false,
            last_decision: None,
            decisions: BTreeMap::new(),
            preemptions: 0,
            replace_seconds: Seconds::default(),
            scale_up_seconds: Seconds::default(),
        }
    }
}

/// A stored pool, parsed.
#[derive(Debug, Clone)]
pub struct Pool {
    /// The spec.
    pub spec: PoolSpec,
    /// The controller's state.
    pub state: PoolState,
    /// The row's version.
    pub version: i64,
    /// Deletion asked.
    pub deleting: bool,
    /// ms.
    pub created_at: i64,
    /// ms.
    pub updated_at: i64,
}

impl Pool {
    /// Parses a row. A state that no longer parses starts over (the size is counted from the
    /// nodes anyway); a spec that no longer parses is an error.
    pub fn from_row(r: &PoolRow) -> Result<Pool, OpError> {
        let spec: PoolSpec = serde_json::from_str(&r.spec).map_err(|e| {
            invalid(
                "spec",
                format!("the stored spec of pool {} does not parse: {e}", r.name),
            )
        })?;
        Ok(Pool {
            spec,
            state: serde_json::from_str(&r.state).unwrap_or_default(),
            version: r.version,
            deleting: r.deleting,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// A decision to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    /// What.
    pub kind: DecisionKind,
    /// Why, for people.
    pub reason: String,
    /// The inputs read.
    pub inputs: serde_json::Value,
    /// The node acted on.
    pub cluster_name: Option<String>,
}

impl Draft {
    /// The row of this decision of `pool` at `at`.
    pub fn row(&self, pool: &str, at: i64) -> EventRow {
        EventRow {
            id: event_id(at),
            pool: pool.to_string(),
            at,
            kind: self.kind.as_str().to_string(),
            reason: self.reason.clone(),
            inputs: self.inputs.to_string(),
            cluster_name: self.cluster_name.clone(),
        }
    }
}

/// Counts `drafts` into `state`'s decision counter and last reason.
pub fn note(state: &mut PoolState, drafts: &[Draft]) {
    for d in drafts {
        *state
            .decisions
            .entry(d.kind.as_str().to_string())
            .or_default() += 1;
        state.last_decision = Some(d.reason.clone());
    }
}

fn json(state: &PoolState) -> String {
    serde_json::to_string(state).expect("the state serializes")
}

fn not_found(name: &str) -> OpError {
    OpError::PoolNotFound {
        name: printable(name),
    }
}

/// Whether a node counts toward its pool's size.
pub fn counts(n: &Node) -> bool {
    !n.status.is_final() && !matches!(n.status, NodeStatus::Draining | NodeStatus::Stopped)
}

fn ts(ms: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// The admin view of `pool` with its `nodes` (those of the pool; others are ignored).
pub fn view(pool: &Pool, nodes: &[Node]) -> PoolView {
    let mine: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.pool.as_deref() == Some(pool.spec.name.as_str()))
        .collect();
    let counted: Vec<&&Node> = mine.iter().filter(|n| counts(n)).collect();
    let n = |f: &dyn Fn(&Node) -> bool| mine.iter().filter(|x| f(x)).count() as u32;
    PoolView {
        spec: pool.spec.clone(),
        desired: pool.state.desired,
        size: counted.len() as u32,
        active: n(&|x| x.status == NodeStatus::Active),
        draining: n(&|x| x.status == NodeStatus::Draining),
        stopped: n(&|x| x.status == NodeStatus::Stopped),
        stopped_disk_gb: mine
            .iter()
            .filter(|x| x.status == NodeStatus::Stopped)
            .map(|x| x.disk_size)
            .sum(),
        spot_nodes: counted.iter().filter(|x| x.use_spot).count() as u32,
        on_demand_nodes: counted.iter().filter(|x| !x.use_spot).count() as u32,
        capacity_mode: pool.state.mode,
        waiting_per_node: pool.state.waiting_per_node,
        hourly_cost_usd: counted.iter().filter_map(|x| x.hourly_price).sum(),
        deleting: pool.deleting,
        last_decision: pool.state.last_decision.clone(),
        created_at: ts(pool.created_at),
        updated_at: ts(pool.updated_at),
    }
}

/// Creates a pool: validated, stored with `desired = min_nodes`; the controller launches
/// its nodes.
pub async fn create(store: &Store, rules: &Rules, spec: &PoolSpec) -> Result<PoolView, OpError> {
    validate(spec, rules)?;
    let state = PoolState {
        desired: spec.min_nodes,
        ..PoolState::default()
    };
    let created = Draft {
        kind: DecisionKind::Created,
        reason: format!(
            "created with {}..={} nodes; desired {}",
            spec.min_nodes, spec.max_nodes, spec.min_nodes
        ),
        inputs: serde_json::json!({"min_nodes": spec.min_nodes, "max_nodes": spec.max_nodes}),
        cluster_name: None,
    };
    let mut state = state;
    note(&mut state, std::slice::from_ref(&created));
    let spec_json = serde_json::to_string(spec).expect("a spec serializes");
    let now = store.now_ms();
    match store
        .insert_pool(
            &spec.name,
            &spec_json,
            &json(&state),
            &[created.row(&spec.name, now)],
        )
        .await
    {
        Ok(row) => {
            tracing::info!(pool = %spec.name, min = spec.min_nodes, max = spec.max_nodes, "pool created");
            Ok(view(&Pool::from_row(&row)?, &[]))
        }
        Err(e) if e.is_unique_violation() => Err(OpError::PoolExists {
            name: spec.name.clone(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// The pool called `name`.
pub async fn get(store: &Store, name: &str) -> Result<Pool, OpError> {
    let row = store.get_pool(name).await?.ok_or_else(|| not_found(name))?;
    Pool::from_row(&row)
}

/// The view of the pool called `name`.
pub async fn show(store: &Store, name: &str) -> Result<PoolView, OpError> {
    let pool = get(store, name).await?;
    let nodes = store.pool_nodes(store.now_ms()).await?;
    Ok(view(&pool, &nodes))
}

/// Every pool's view, by name.
pub async fn list(store: &Store) -> Result<Vec<PoolView>, OpError> {
    let rows = store.pools().await?;
    let nodes = store.pool_nodes(store.now_ms()).await?;
    rows.iter()
        .map(|r| Ok(view(&Pool::from_row(r)?, &nodes)))
        .collect()
}

/// How often a change of a pool is tried again when the controller changed it meanwhile.
const CHANGE_ATTEMPTS: usize = 5;

/// Applies `patch` to the pool called `name`: the merged spec is validated whole (nothing is
/// stored when a field is refused), the desired size moved into new bounds.
pub async fn change(
    store: &Store,
    rules: &Rules,
    name: &str,
    patch: &PoolPatch,
) -> Result<PoolView, OpError> {
    for _ in 0..CHANGE_ATTEMPTS {
        let pool = get(store, name).await?;
        if pool.deleting {
            return Err(OpError::PoolDeleting {
                name: printable(name),
            });
        }
        let spec = patch.apply(&pool.spec);
        validate(&spec, rules)?;
        let mut state = pool.state.clone();
        if patch.template.is_some() {
            // Exhausted placements are remembered by position in the old list.
            state.exhausted.clear();
        }
        let before = state.desired;
        state.desired = state.desired.clamp(spec.min_nodes, spec.max_nodes);
        let changed = serde_json::to_value(patch).unwrap_or_default();
        let drafts = vec![Draft {
            kind: DecisionKind::Updated,
            reason: if before == state.desired {
                format!("spec changed; desired stays {before}")
            } else {
                format!(
                    "spec changed; desired {before} → {} to fit {}..={}",
                    state.desired, spec.min_nodes, spec.max_nodes
                )
            },
            inputs: serde_json::json!({"changed": changed}),
            cluster_name: None,
        }];
        note(&mut state, &drafts);
        let rows: Vec<EventRow> = drafts.iter().map(|d| d.row(name, store.now_ms())).collect();
        let spec_json = serde_json::to_string(&spec).expect("a spec serializes");
        if store
            .update_pool(
                name,
                pool.version,
                Some(&spec_json),
                &json(&state),
                false,
                &rows,
            )
            .await?
        {
            return show(store, name).await;
        }
    }
    Err(OpError::Busy {
        what: "the pool changed during every attempt; try again",
    })
}

/// Asks for the pool called `name` to go: its nodes drain, then the controller removes it.
/// Idempotent.
pub async fn delete(store: &Store, name: &str) -> Result<PoolView, OpError> {
    for _ in 0..CHANGE_ATTEMPTS {
        let pool = get(store, name).await?;
        if pool.deleting {
            return show(store, name).await;
        }
        let mut state = pool.state.clone();
        let drafts = vec![Draft {
            kind: DecisionKind::Deleting,
            reason: format!(
                "delete asked: draining {} → 0, then removing the pool",
                state.desired
            ),
            inputs: serde_json::json!({"desired": state.desired}),
            cluster_name: None,
        }];
        state.desired = 0;
        note(&mut state, &drafts);
        let rows: Vec<EventRow> = drafts.iter().map(|d| d.row(name, store.now_ms())).collect();
        if store
            .update_pool(name, pool.version, None, &json(&state), true, &rows)
            .await?
        {
            tracing::info!(pool = %name, "pool deletion asked");
            return show(store, name).await;
        }
    }
    Err(OpError::Busy {
        what: "the pool changed during every attempt; try again",
    })
}

/// The largest page of events.
pub const MAX_EVENTS_PAGE: i64 = 1000;

/// One page of the events of `name`, newest first, older than the cursor `before`.
pub async fn events(
    store: &Store,
    name: &str,
    before: Option<&str>,
    limit: i64,
) -> Result<PoolEventPage, OpError> {
    get(store, name).await?;
    let rows = store.pool_events(name, before, limit).await?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id.clone()))
        .flatten();
    Ok(PoolEventPage {
        events: rows
            .into_iter()
            .filter_map(|r| {
                Some(PoolEvent {
                    kind: DecisionKind::parse(&r.kind)?,
                    id: r.id,
                    at: ts(r.at),
                    reason: r.reason,
                    inputs: serde_json::from_str(&r.inputs).unwrap_or_default(),
                    cluster_name: r.cluster_name,
                })
            })
            .collect(),
        next_cursor,
    })
}

/// The pattern of an events cursor (an event id).
pub const EVENT_CURSOR_PATTERN: &str = r"^[0-9]{15}-[0-9]{10}-[0-9a-f]{8}$";
