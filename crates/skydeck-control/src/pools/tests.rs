//! The pool controller against the in-process SkyPilot fake, on a store whose clock only moves
//! when a test moves it: simulated agents heartbeat the load a test sets, SkyPilot preempts
//! spot clusters and runs regions out of capacity, and the tests assert the node count over
//! time, the fallback to on-demand and back, the failover, and (a property test over random
//! load and fault sequences) that no decision leaves the bounds or launches twice for one need.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use skydeck_contract::{
    AgentState, CapacityMode, DecisionKind, EngineHealth, EngineReport, Heartbeat, NodeStatus,
    Placement, PoolPatch, PoolSpec, PoolTemplate, SpotPolicy,
};
use skydeck_skypilot::api::ClusterStatus;

use super::controller::PoolController;
use super::decide::Timing;
use crate::node_config::Rules;
use crate::nodes::{self, AgentTiming, OpError};
use crate::reconcile::Reconciler;
use crate::reconcile::fake::FakeSky;
use crate::reconcile::tests::World;
use crate::store::Node;

/// Seconds between simulated ticks.
const TICK_S: i64 = 5;

fn timing() -> Timing {
    Timing {
        replace_unhealthy_after_ms: 60_000,
        capacity_backoff_ms: 600_000,
        launch_backoff_ms: 10_000,
        launch_backoff_cap_ms: 60_000,
    }
}

fn agent_timing() -> AgentTiming {
    AgentTiming {
        heartbeat_interval: Duration::from_secs(30),
        drain_grace: Duration::from_secs(60),
    }
}

fn spec(name: &str) -> PoolSpec {
    PoolSpec {
        name: name.into(),
        template: PoolTemplate {
            placements: vec![
                Placement {
                    provider: "aws".into(),
                    region: "us-east-1".into(),
                },
                Placement {
                    provider: "aws".into(),
                    region: "us-west-2".into(),
                },
            ],
            gpu: "A100".into(),
            model: "org/model".into(),
            engine: None,
            engine_args: None,
            disk_size: None,
            image: None,
        },
        min_nodes: 1,
        max_nodes: 4,
        target_waiting_per_node: 4.0,
        scale_up_delay_seconds: 60,
        scale_down_delay_seconds: 120,
        idle_timeout_seconds: None,
        warm_nodes: 0,
        spot: SpotPolicy {
            enabled: true,
            on_demand_base: 0,
            fallback_after: 3,
            window_seconds: 900,
            cooldown_seconds: 1800,
        },
    }
}

/// A world with a reconciler that runs the pools, and agents whose load the test sets.
struct Sim {
    w: World,
    r: Reconciler<FakeSky>,
    /// Requests waiting across the pool, shared by its serving nodes.
    load: f64,
    /// Tokens each busy node has generated.
    tokens: f64,
    /// Clusters whose agents are silent (their heartbeats stopped).
    silent: Vec<String>,
}

impl Sim {
    async fn new(w: World) -> Sim {
        let (r, _) = w.reconciler("replica-a");
        let r = r.with_pools(PoolController::new(
            w.db.clone(),
            Arc::new(Rules::default()),
            "skydeck".into(),
            timing(),
        ));
        Sim {
            w,
            r,
            load: 0.0,
            tokens: 0.0,
            silent: Vec::new(),
        }
    }

    /// Every node of the pool, oldest first.
    async fn nodes(&self) -> Vec<Node> {
        self.w.db.pool_nodes(0).await.unwrap()
    }

    /// Nodes counting toward the size.
    async fn size(&self) -> usize {
        self.nodes()
            .await
            .iter()
            .filter(|n| super::counts(n))
            .count()
    }

    /// Runs `secs` of simulated time: a reconciler tick, then every agent's heartbeat, each
    /// [`TICK_S`].
    async fn run(&mut self, secs: i64) {
        for _ in 0..(secs / TICK_S).max(1) {
            self.w.clock.advance(TICK_S * 1000);
            self.r.tick().await;
            self.heartbeats().await;
        }
    }

    async fn heartbeats(&mut self) {
        let clusters = self.w.sky.clusters();
        let nodes = self.nodes().await;
        let serving: Vec<&Node> = nodes
            .iter()
            .filter(|n| {
                matches!(
                    n.status,
                    NodeStatus::Initializing | NodeStatus::Active | NodeStatus::Unhealthy
                ) && clusters.get(&n.cluster_name) == Some(&ClusterStatus::Up)
                    && !self.silent.contains(&n.cluster_name)
            })
            .collect();
        let per = if serving.is_empty() {
            0.0
        } else {
            self.load / serving.len() as f64
        };
        if self.load > 0.0 {
            self.tokens += 100.0;
        }
        for n in &serving {
            let hb = Heartbeat {
                node_id: n.id.clone(),
                state: AgentState::Serving,
                engine: EngineReport {
                    health: EngineHealth::Ok,
                    requests_waiting: Some(per),
                    requests_running: Some(if per > 0.0 { 1.0 } else { 0.0 }),
                    generation_tokens_total: Some(self.tokens),
                    ..EngineReport::default()
                },
                ..Heartbeat::default()
            };
            nodes::heartbeat(&self.w.db, (*n).clone(), &hb, agent_timing())
                .await
                .unwrap();
        }
        // Draining agents finish their in-flight requests at once.
        for n in nodes.iter().filter(|n| n.status == NodeStatus::Draining) {
            if clusters.get(&n.cluster_name) == Some(&ClusterStatus::Up) {
                let hb = Heartbeat {
                    node_id: n.id.clone(),
                    state: AgentState::Drained,
                    ..Heartbeat::default()
                };
                nodes::heartbeat(&self.w.db, n.clone(), &hb, agent_timing())
                    .await
                    .unwrap();
            }
        }
    }

    /// Applies `patch` to the pool `chat`, as `PATCH /admin/pools/chat` does.
    async fn patch(&self, patch: PoolPatch) {
        super::change(&self.w.db, &Rules::default(), "chat", &patch)
            .await
            .unwrap();
    }

    async fn pool(&self, name: &str) -> super::Pool {
        super::get(&self.w.db, name).await.unwrap()
    }

    async fn kinds(&self, name: &str) -> Vec<DecisionKind> {
        let page = super::events(&self.w.db, name, None, 1000).await.unwrap();
        page.events.iter().rev().map(|e| e.kind).collect()
    }

    async fn reasons(&self, name: &str) -> Vec<String> {
        let page = super::events(&self.w.db, name, None, 1000).await.unwrap();
        page.events.iter().rev().map(|e| e.reason.clone()).collect()
    }
}

#[tokio::test]
async fn a_new_pool_launches_its_minimum_and_keeps_it() {
    let mut s = Sim::new(World::new().await).await;
    let mut sp = spec("chat");
    sp.min_nodes = 2;
    super::create(&s.w.db, &Rules::default(), &sp)
        .await
        .unwrap();
    s.run(60).await;
    let nodes = s.nodes().await;
    assert_eq!(nodes.len(), 2, "{nodes:#?}");
    assert!(nodes.iter().all(|n| n.status == NodeStatus::Active));
    assert!(nodes.iter().all(|n| n.use_spot && n.region == "us-east-1"));
    assert_eq!(s.w.sky.launches().len(), 2);
    // Steady: nothing more is launched.
    s.run(600).await;
    assert_eq!(s.w.sky.launches().len(), 2);
    let kinds = s.kinds("chat").await;
    assert_eq!(
        kinds,
        [
            DecisionKind::Created,
            DecisionKind::Launch,
            DecisionKind::Launch
        ]
    );
}

#[tokio::test]
async fn load_scales_the_pool_up_after_the_delay_and_down_when_it_stops() {
    let mut s = Sim::new(World::new().await).await;
    super::create(&s.w.db, &Rules::default(), &spec("chat"))
        .await
        .unwrap();
    s.run(30).await;
    assert_eq!(s.size().await, 1);

    // 14 waiting on one node: 14 > 4 per node. Nothing before the 60 s delay.
    s.load = 14.0;
    s.run(60).await;
    assert_eq!(s.pool("chat").await.state.desired, 1);
    // The agents report it after the next tick; the one after sees it, and 60 s later the
    // pool scales.
    s.run(10).await;
    // ceil(14 / 4) = 4 nodes, the maximum.
    assert_eq!(s.pool("chat").await.state.desired, 4);
    s.run(30).await;
    let nodes = s.nodes().await;
    assert_eq!(nodes.iter().filter(|n| super::counts(n)).count(), 4);
    assert_eq!(s.w.sky.launches().len(), 4, "one launch per node asked for");
    let up = s
        .reasons("chat")
        .await
        .into_iter()
        .find(|r| r.starts_with("scale up"))
        .unwrap();
    assert_eq!(up, "scale up 1 → 4: waiting/node 14.0 > 4 for 60 s");

    // 14 over 4 nodes is 3.5: inside [2, 4], nothing moves however long.
    s.run(600).await;
    assert_eq!(s.size().await, 4);

    // The load stops: down to the minimum once the 120 s delay has passed.
    s.load = 0.0;
    s.run(100).await;
    assert_eq!(s.pool("chat").await.state.desired, 4);
    s.run(30).await;
    assert_eq!(
        s.pool("chat").await.state.desired,
        1,
        "{:#?}",
        s.reasons("chat").await
    );
    s.run(60).await;
    let live: Vec<Node> = s
        .nodes()
        .await
        .into_iter()
        .filter(|n| !n.status.is_final())
        .collect();
    assert_eq!(live.len(), 1, "{live:#?}");
    assert_eq!(s.w.sky.downs().len(), 3);
    let pool = s.pool("chat").await;
    assert_eq!(pool.state.scale_up_seconds.count, 3);
    assert_eq!(s.w.sky.launches().len(), 4);
}

#[tokio::test]
async fn launching_nodes_count_so_a_slow_launch_is_not_launched_twice() {
    let mut s = Sim::new(World::new().await).await;
    super::create(&s.w.db, &Rules::default(), &spec("chat"))
        .await
        .unwrap();
    s.run(20).await;
    s.load = 30.0;
    // Every launch from now on hangs in SkyPilot.
    for _ in 0..10 {
        s.w.sky
            .push_launch(crate::reconcile::fake::LaunchOutcome::Hang);
    }
    s.run(600).await;
    assert_eq!(s.pool("chat").await.state.desired, 4);
    assert_eq!(s.w.sky.launches().len(), 4, "1 + 3 hanging, never more");
}

#[tokio::test]
async fn spot_preemptions_in_a_burst_fall_back_to_on_demand_and_return_after_the_cooldown() {
    let mut s = Sim::new(World::new().await).await;
    let mut sp = spec("chat");
    sp.min_nodes = 3;
    sp.max_nodes = 3;
    super::create(&s.w.db, &Rules::default(), &sp)
        .await
        .unwrap();
    s.run(60).await;
    assert_eq!(s.size().await, 3);
    // SkyPilot loses all three spot clusters at once.
    for n in s.nodes().await {
        s.w.sky.remove_cluster(&n.cluster_name);
    }
    s.run(120).await;
    let pool = s.pool("chat").await;
    assert_eq!(pool.state.mode, CapacityMode::OnDemand);
    assert_eq!(pool.state.preemptions, 3);
    let live: Vec<Node> = s
        .nodes()
        .await
        .into_iter()
        .filter(|n| !n.status.is_final())
        .collect();
    assert_eq!(live.len(), 3, "three replacements");
    assert!(
        live.iter().all(|n| !n.use_spot),
        "replacements are on-demand"
    );
    let reasons = s.reasons("chat").await;
    assert!(
        reasons
            .iter()
            .any(|r| r == "fallback to on-demand: 3 spot failures or preemptions in 15 min"),
        "{reasons:#?}"
    );
    assert_eq!(pool.state.replace_seconds.count, 3);
    // After the 30 min cool-down new nodes are spot again.
    s.run(1800).await;
    assert_eq!(s.pool("chat").await.state.mode, CapacityMode::Spot);
    let od = s
        .nodes()
        .await
        .into_iter()
        .find(|n| n.status == NodeStatus::Active && !n.use_spot)
        .unwrap();
    s.w.sky.remove_cluster(&od.cluster_name);
    s.run(120).await;
    let newest = s
        .nodes()
        .await
        .into_iter()
        .max_by_key(|n| n.created_at)
        .unwrap();
    assert!(newest.use_spot, "{newest:#?}");
    assert!(s.kinds("chat").await.contains(&DecisionKind::ReturnToSpot));
}

#[tokio::test]
async fn a_region_out_of_capacity_fails_over_to_the_next_placement() {
    let mut s = Sim::new(World::new().await).await;
    s.w.sky.set_unavailable("aws/us-east-1", None);
    let mut sp = spec("chat");
    sp.spot.enabled = false;
    super::create(&s.w.db, &Rules::default(), &sp)
        .await
        .unwrap();
    s.run(60).await;
    let nodes = s.nodes().await;
    let live: Vec<&Node> = nodes.iter().filter(|n| !n.status.is_final()).collect();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].region, "us-west-2");
    assert_eq!(live[0].status, NodeStatus::Active);
    let failed: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.status == NodeStatus::Failed)
        .collect();
    assert_eq!(failed.len(), 1);
    let reason = s
        .reasons("chat")
        .await
        .into_iter()
        .find(|r| r.contains("out of capacity"))
        .unwrap();
    assert!(
        reason.starts_with(
            "aws/us-east-1 (on-demand) out of capacity (SkyPilot: ResourcesUnavailableError: Failed to provision"
        ) && reason.ends_with("→ trying aws/us-west-2 (on-demand)"),
        "{reason}"
    );
    // Both out: the pool waits, says so once, and launches again when capacity returns.
    s.w.sky.set_unavailable("aws/us-west-2", None);
    s.w.sky.remove_cluster(&live[0].cluster_name);
    s.run(120).await;
    let blocked = s
        .kinds("chat")
        .await
        .iter()
        .filter(|k| **k == DecisionKind::Blocked)
        .count();
    assert_eq!(blocked, 1);
    let launches = s.w.sky.launches().len();
    s.run(120).await;
    assert_eq!(
        s.w.sky.launches().len(),
        launches,
        "no launch while blocked"
    );
    s.w.sky.restore();
    s.run(600).await;
    assert_eq!(s.size().await, 1);
    assert!(
        s.nodes()
            .await
            .iter()
            .any(|n| n.status == NodeStatus::Active)
    );
}

#[tokio::test]
async fn other_launch_failures_back_off() {
    let mut s = Sim::new(World::new().await).await;
    for _ in 0..3 {
        s.w.sky
            .push_launch(crate::reconcile::fake::LaunchOutcome::Fail {
                error_type: "InvalidSkyPilotConfigError".into(),
                message: "bad config".into(),
            });
    }
    super::create(&s.w.db, &Rules::default(), &spec("chat"))
        .await
        .unwrap();
    // 10 s, 20 s, 40 s between the attempts: four launches within 2 min, not 24.
    s.run(120).await;
    assert_eq!(s.w.sky.launches().len(), 4);
    assert_eq!(s.size().await, 1);
    assert_eq!(s.pool("chat").await.state.launch_failures, 0);
}

#[tokio::test]
async fn silent_and_idle_nodes_are_replaced_and_stopped() {
    let mut s = Sim::new(World::new().await).await;
    let mut sp = spec("chat");
    sp.min_nodes = 1;
    sp.idle_timeout_seconds = Some(300);
    // No scale-down on load within the test: the idle timeout acts alone.
    sp.scale_down_delay_seconds = 3600;
    super::create(&s.w.db, &Rules::default(), &sp)
        .await
        .unwrap();
    s.run(30).await;
    // Two nodes by bounds.
    s.patch(PoolPatch {
        min_nodes: Some(2),
        ..Default::default()
    })
    .await;
    s.run(30).await;
    assert_eq!(s.size().await, 2);
    // The first node's agent goes silent: unhealthy after 90 s, replaced 60 s later.
    let first = s.nodes().await[0].cluster_name.clone();
    s.silent.push(first.clone());
    s.run(180).await;
    let nodes = s.nodes().await;
    let old = nodes.iter().find(|n| n.cluster_name == first).unwrap();
    assert!(
        matches!(old.status, NodeStatus::Draining | NodeStatus::Terminated),
        "{old:#?}"
    );
    assert_eq!(s.size().await, 2);
    assert!(
        s.reasons("chat")
            .await
            .iter()
            .any(|r| r.starts_with(&format!("replace {first}: unhealthy for")))
    );
    // Idle timeout: with min back at 1, one idle node goes after 300 s without requests.
    s.patch(PoolPatch {
        min_nodes: Some(1),
        ..Default::default()
    })
    .await;
    s.run(330).await;
    assert_eq!(s.size().await, 1);
    assert!(s.kinds("chat").await.contains(&DecisionKind::IdleStop));
    s.run(600).await;
    assert_eq!(s.size().await, 1, "never below min_nodes");
}

#[tokio::test]
async fn on_demand_base_nodes_stay_on_demand() {
    let mut s = Sim::new(World::new().await).await;
    let mut sp = spec("chat");
    sp.min_nodes = 3;
    sp.spot.on_demand_base = 1;
    super::create(&s.w.db, &Rules::default(), &sp)
        .await
        .unwrap();
    s.run(30).await;
    let nodes = s.nodes().await;
    assert_eq!(nodes.iter().filter(|n| !n.use_spot).count(), 1);
    assert_eq!(nodes.iter().filter(|n| n.use_spot).count(), 2);
}

#[tokio::test]
async fn deleting_a_pool_drains_its_nodes_then_removes_it() {
    let mut s = Sim::new(World::new().await).await;
    let mut sp = spec("chat");
    sp.min_nodes = 2;
    super::create(&s.w.db, &Rules::default(), &sp)
        .await
        .unwrap();
    s.run(30).await;
    let v = super::delete(&s.w.db, "chat").await.unwrap();
    assert!(v.deleting);
    // A change while it drains is refused.
    let e = super::change(&s.w.db, &Rules::default(), "chat", &PoolPatch::default())
        .await
        .unwrap_err();
    assert!(matches!(e, OpError::PoolDeleting { .. }), "{e}");
    s.run(60).await;
    assert!(matches!(
        super::get(&s.w.db, "chat").await,
        Err(OpError::PoolNotFound { .. })
    ));
    assert!(s.nodes().await.iter().all(|n| n.status.is_final()));
    assert_eq!(s.w.sky.downs().len(), 2);
    // The name is free again.
    super::create(&s.w.db, &Rules::default(), &sp)
        .await
        .unwrap();
}

/// A change that breaks a spec.
type SpecChange = Box<dyn Fn(&mut PoolSpec)>;

/// Each bad spec, the field its 422 names.
#[tokio::test]
async fn bad_specs_name_their_field_and_store_nothing() {
    let w = World::new().await;
    let rules = Rules::default();
    let cases: Vec<(&str, SpecChange)> = vec![
        ("min_nodes", Box::new(|s| s.min_nodes = 5)),
        ("max_nodes", Box::new(|s| s.max_nodes = 0)),
        ("max_nodes", Box::new(|s| s.max_nodes = 1000)),
        (
            "scale_up_delay_seconds",
            Box::new(|s| s.scale_up_delay_seconds = 0),
        ),
        (
            "scale_down_delay_seconds",
            Box::new(|s| s.scale_down_delay_seconds = 0),
        ),
        (
            "idle_timeout_seconds",
            Box::new(|s| s.idle_timeout_seconds = Some(0)),
        ),
        (
            "target_waiting_per_node",
            Box::new(|s| s.target_waiting_per_node = -1.0),
        ),
        (
            "target_waiting_per_node",
            Box::new(|s| s.target_waiting_per_node = f64::NAN),
        ),
        (
            "spot.fallback_after",
            Box::new(|s| s.spot.fallback_after = 0),
        ),
        (
            "spot.window_seconds",
            Box::new(|s| s.spot.window_seconds = 0),
        ),
        (
            "spot.on_demand_base",
            Box::new(|s| s.spot.on_demand_base = 9),
        ),
        (
            "template.placements",
            Box::new(|s| s.template.placements.clear()),
        ),
        (
            "template.placements[1].provider",
            Box::new(|s| s.template.placements[1].provider = "digitalocean".into()),
        ),
        (
            "template.placements[0].region",
            Box::new(|s| s.template.placements[0].region = "mars-1".into()),
        ),
        (
            "template.placements[1]",
            Box::new(|s| s.template.placements[1] = s.template.placements[0].clone()),
        ),
        (
            "template.gpu",
            Box::new(|s| s.template.gpu = "Z9000".into()),
        ),
        (
            "template.model",
            Box::new(|s| s.template.model = "<script>".into()),
        ),
        (
            "template.engine_args",
            Box::new(|s| s.template.engine_args = Some("--trust-remote-code".into())),
        ),
        ("name", Box::new(|s| s.name = "Chat".into())),
        (
            "name",
            Box::new(|s| s.name = "<img src=x onerror=alert(1)>".into()),
        ),
        ("name", Box::new(|s| s.name = "a".repeat(41))),
        ("name", Box::new(|s| s.name = "chat-".into())),
        ("name", Box::new(|s| s.name = "../etc".into())),
    ];
    for (field, change) in &cases {
        let mut sp = spec("chat");
        change(&mut sp);
        match super::create(&w.db, &rules, &sp).await {
            Err(OpError::Invalid { field: f, rule }) => {
                assert_eq!(&f, field, "{rule}");
            }
            other => panic!("{field}: {other:?}"),
        }
    }
    assert!(w.db.pools().await.unwrap().is_empty());

    // A name taken.
    super::create(&w.db, &rules, &spec("chat")).await.unwrap();
    assert!(matches!(
        super::create(&w.db, &rules, &spec("chat")).await,
        Err(OpError::PoolExists { .. })
    ));
    // A PATCH that makes the pool invalid changes nothing.
    let before = w.db.get_pool("chat").await.unwrap().unwrap();
    for (field, patch) in [
        (
            "min_nodes",
            PoolPatch {
                min_nodes: Some(9),
                ..Default::default()
            },
        ),
        (
            "max_nodes",
            PoolPatch {
                max_nodes: Some(0),
                min_nodes: Some(1),
                ..Default::default()
            },
        ),
        (
            "scale_down_delay_seconds",
            PoolPatch {
                scale_down_delay_seconds: Some(0),
                ..Default::default()
            },
        ),
    ] {
        match super::change(&w.db, &rules, "chat", &patch).await {
            Err(OpError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let after = w.db.get_pool("chat").await.unwrap().unwrap();
    assert_eq!(
        (before.version, before.spec, before.state),
        (after.version, after.spec, after.state)
    );
}

/// One simulated fault or load change.
#[derive(Debug, Clone)]
enum Ev {
    Load(u8),
    Preempt(u8),
    Outage(bool),
    Bounds(u8, u8),
    Wait(u16),
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        (0u8..40).prop_map(Ev::Load),
        (0u8..4).prop_map(Ev::Preempt),
        any::<bool>().prop_map(Ev::Outage),
        (0u8..4, 1u8..6).prop_map(|(a, b)| Ev::Bounds(a.min(b), b)),
        (5u16..400).prop_map(Ev::Wait),
    ]
}

/// Runs `events`, checking after every tick that the desired size is within the bounds, that
/// no more nodes count than desired once launches are done (no second launch for one need),
/// and that every recorded launch is one node.
async fn check_invariants(events: Vec<Ev>) {
    let mut s = Sim::new(World::new().await).await;
    let mut sp = spec("chat");
    sp.scale_up_delay_seconds = 20;
    sp.scale_down_delay_seconds = 40;
    sp.idle_timeout_seconds = Some(200);
    super::create(&s.w.db, &Rules::default(), &sp)
        .await
        .unwrap();
    let (mut min, mut max) = (sp.min_nodes, sp.max_nodes);
    for e in events {
        match e {
            Ev::Load(l) => s.load = f64::from(l),
            Ev::Preempt(k) => {
                for n in s
                    .nodes()
                    .await
                    .iter()
                    .filter(|n| n.status == NodeStatus::Active)
                    .take(k as usize)
                {
                    s.w.sky.remove_cluster(&n.cluster_name);
                }
            }
            Ev::Outage(true) => s.w.sky.set_unavailable("aws/us-east-1", None),
            Ev::Outage(false) => s.w.sky.restore(),
            Ev::Bounds(a, b) => {
                super::change(
                    &s.w.db,
                    &Rules::default(),
                    "chat",
                    &PoolPatch {
                        min_nodes: Some(a.into()),
                        max_nodes: Some(b.into()),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
                (min, max) = (a.into(), b.into());
            }
            Ev::Wait(secs) => {
                for _ in 0..(i64::from(secs) / TICK_S).max(1) {
                    s.run(TICK_S).await;
                    let pool = s.pool("chat").await;
                    let d = pool.state.desired;
                    assert!(
                        (min..=max).contains(&d),
                        "desired {d} outside {min}..={max}"
                    );
                    let size = s.size().await as u32;
                    assert!(size <= d.max(min), "{size} nodes count, desired {d}");
                }
            }
        }
    }
    // Every node the pool has was launched once, and is named by exactly one launch decision.
    let page = super::events(&s.w.db, "chat", None, 1000).await.unwrap();
    let launched: Vec<String> = page
        .events
        .iter()
        .filter(|e| e.kind == DecisionKind::Launch)
        .filter_map(|e| e.cluster_name.clone())
        .collect();
    let nodes = s.nodes().await;
    let mut names: Vec<String> = nodes.iter().map(|n| n.cluster_name.clone()).collect();
    names.sort();
    let mut sorted = launched.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), launched.len(), "a cluster launched twice");
    assert_eq!(sorted, names);
    let mut sky = s.w.sky.launches();
    let n = sky.len();
    sky.sort();
    sky.dedup();
    assert_eq!(sky.len(), n, "SkyPilot got a cluster's launch twice");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn no_decision_leaves_the_bounds_or_launches_twice(events in proptest::collection::vec(ev(), 1..24)) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(check_invariants(events));
    }
}

/// Two replicas on one database: the leader decides a scale-up and dies before its nodes are
/// launched (its lease simply lapses); the survivor finishes the scale without a duplicate.
async fn survivor_finishes_a_scale(w: World) {
    let label = format!("{:?}", w.db.kind());
    let mut a = Sim::new(w).await;
    super::create(&a.w.db, &Rules::default(), &spec("chat"))
        .await
        .unwrap();
    a.run(30).await;
    a.load = 14.0;
    // The leader stored a scale-up to 4 and launched one of the three new nodes, then died.
    let pool = a.pool("chat").await;
    let mut st = pool.state.clone();
    st.desired = 4;
    assert!(
        a.w.db
            .update_pool(
                "chat",
                pool.version,
                None,
                &serde_json::to_string(&st).unwrap(),
                false,
                &[]
            )
            .await
            .unwrap()
    );
    let mut cfg = super::node_config(&pool.spec, 0, true);
    cfg.node_id = Some(uuid::Uuid::new_v4().to_string());
    nodes::launch_in(&a.w.db, &Rules::default(), "skydeck", &cfg, Some("chat"))
        .await
        .unwrap();
    // B takes over once A's lease lapses.
    let (b, _) = a.w.reconciler("replica-b");
    let b = b.with_pools(PoolController::new(
        a.w.db.clone(),
        Arc::new(Rules::default()),
        "skydeck".into(),
        timing(),
    ));
    a.r = b;
    a.run(120).await;
    assert_eq!(a.size().await, 4, "{label}");
    let mut sky = a.w.sky.launches();
    let n = sky.len();
    sky.sort();
    sky.dedup();
    assert_eq!((n, sky.len()), (4, 4), "{label}");
}

#[tokio::test]
async fn a_survivor_finishes_a_scale_without_duplicates() {
    survivor_finishes_a_scale(World::new().await).await;
    if let Some(w) = World::postgres().await {
        survivor_finishes_a_scale(w).await;
    }
}

#[tokio::test]
async fn a_warm_pool_stops_instead_of_terminating_and_starts_those_first() {
    let mut s = Sim::new(World::new().await).await;
    let mut sp = spec("chat");
    sp.max_nodes = 3;
    sp.warm_nodes = 1;
    super::create(&s.w.db, &Rules::default(), &sp)
        .await
        .unwrap();
    s.run(30).await;
    s.load = 14.0;
    s.run(120).await;
    assert_eq!(s.size().await, 3);
    // Down to one: one node is stopped (warm), the other terminated.
    s.load = 0.0;
    s.run(240).await;
    assert_eq!(s.size().await, 1);
    let stopped: Vec<Node> = s
        .nodes()
        .await
        .into_iter()
        .filter(|n| n.status == NodeStatus::Stopped)
        .collect();
    assert_eq!(stopped.len(), 1, "{:#?}", s.reasons("chat").await);
    assert_eq!(s.w.sky.stops(), [stopped[0].cluster_name.clone()]);
    assert_eq!(s.w.sky.downs().len(), 1);
    assert_eq!(
        s.w.sky.clusters().get(&stopped[0].cluster_name),
        Some(&ClusterStatus::Stopped)
    );
    let v = super::show(&s.w.db, "chat").await.unwrap();
    assert_eq!((v.size, v.stopped, v.stopped_disk_gb), (1, 1, 256));
    assert!(s.kinds("chat").await.contains(&DecisionKind::WarmStop));

    // Up again: the stopped node is started (launched anew under its name) before a new one.
    s.load = 14.0;
    s.run(120).await;
    assert_eq!(s.size().await, 3);
    let warm = s.w.db.get(&stopped[0].cluster_name).await.unwrap().unwrap();
    assert_eq!(warm.status, NodeStatus::Active, "{warm:#?}");
    let launches = s.w.sky.launches();
    assert_eq!(
        launches.iter().filter(|c| **c == warm.cluster_name).count(),
        2,
        "{launches:?}"
    );
    assert_eq!(launches.len(), 5, "3, then the warm one again and one new");
    let reasons = s.reasons("chat").await;
    assert!(
        reasons.iter().any(|r| r.starts_with(&format!(
            "start {} (warm): 1 nodes < desired 3",
            warm.cluster_name
        ))),
        "{reasons:#?}"
    );

    // Fewer warm nodes asked for: the stopped ones beyond it are terminated.
    s.load = 0.0;
    s.run(240).await;
    assert_eq!(s.w.sky.stops().len(), 2);
    s.patch(PoolPatch {
        warm_nodes: Some(0),
        ..Default::default()
    })
    .await;
    s.run(30).await;
    assert!(
        s.nodes()
            .await
            .iter()
            .all(|n| n.status != NodeStatus::Stopped)
    );
    let e = super::create(
        &s.w.db,
        &Rules::default(),
        &PoolSpec {
            name: "other".into(),
            warm_nodes: 9,
            ..sp.clone()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, OpError::Invalid { ref field, .. } if field == "warm_nodes"),
        "{e}"
    );
}
