//! The reconciler's decisions, one tick at a time, against the in-process SkyPilot fake on a
//! SQLite temp-file store whose clock only moves when a test moves it. The scenarios that lean
//! on the store's conditional updates (claims, leases, teardown resets) run on PostgreSQL too,
//! in a database of their own, when `SKYDECK_TEST_DATABASE_URL` names a server (CI sets it).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use skydeck_contract::Engine;
use skydeck_skypilot::api::{ClusterStatus, LaunchBody, RequestName, RequestStatus};

use super::fake::{DownOutcome, FakeSky, Fault, LaunchOutcome};
use super::steps::backoff_ms;
use super::{Observed, Reconciler, ReconcilerConfig, SkyApi};
use crate::clock::SimClock;
use crate::status::NodeStatus;
use crate::store::{NewNode, Node, Store};

/// 2026-12-01T00:00:00Z: a start far from zero, so "no time" is never mistaken for a time.
pub(crate) const START_MS: i64 = 1_796_083_200_000;

pub(crate) fn cfg() -> ReconcilerConfig {
    ReconcilerConfig {
        tick: Duration::from_secs(1),
        lease_ttl: Duration::from_secs(30),
        heartbeat_interval: Duration::from_secs(30),
        poll_interval: Duration::from_secs(5),
        drift_interval: Duration::from_secs(60),
        drain_timeout: Duration::from_secs(300),
        register_timeout: Duration::from_secs(600),
        abandoned_after: Duration::from_secs(240),
        max_parallel: 4,
        cluster_prefix: "skydeck".into(),
        public_url: "http://127.0.0.1:9".into(),
        agent_sha256: "0".repeat(64),
    }
}

/// Where a world's table lives; a PostgreSQL database is dropped with it.
pub(crate) enum Backing {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin: String, name: String },
}

impl Drop for Backing {
    fn drop(&mut self) {
        if let Backing::Postgres { admin, name } = self {
            let (admin, name) = (admin.clone(), name.clone());
            // Drop runs inside the test's runtime, which cannot be blocked on: use a thread
            // with a runtime of its own.
            let _ = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async move {
                        use sqlx::Connection;
                        if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                            let _ = sqlx::query(&sql).execute(&mut c).await;
                        }
                    })
            })
            .join();
        }
    }
}

/// A store, a fake SkyPilot and a clock they share.
pub(crate) struct World {
    pub(crate) clock: Arc<SimClock>,
    pub(crate) db: Store,
    pub(crate) sky: FakeSky,
    _backing: Backing,
}

impl World {
    /// A world on a SQLite file in a temporary directory.
    pub(crate) async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("control.db").display());
        World::on(&url, Backing::Sqlite(dir)).await
    }

    /// A world on a fresh database of the PostgreSQL server `SKYDECK_TEST_DATABASE_URL`
    /// names; `None` when it is unset.
    pub(crate) async fn postgres() -> Option<World> {
        use sqlx::Connection;
        let admin = std::env::var("SKYDECK_TEST_DATABASE_URL").ok()?;
        let name = format!("skydeck_r_{}", uuid::Uuid::new_v4().simple());
        let mut c = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to SKYDECK_TEST_DATABASE_URL: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await
            .expect("create a test database");
        let base = admin.rsplit_once('/').expect("a URL with a database").0;
        let url = format!("{base}/{name}");
        Some(World::on(&url, Backing::Postgres { admin, name }).await)
    }

    async fn on(url: &str, backing: Backing) -> World {
        let clock = SimClock::new(START_MS);
        let db = Store::connect_with_clock(url, 4, clock.clone())
            .await
            .unwrap();
        let sky = FakeSky::new(clock.clone());
        World {
            clock,
            db,
            sky,
            _backing: backing,
        }
    }

    pub(crate) fn reconciler(&self, holder: &str) -> (Reconciler<FakeSky>, Arc<Mutex<Observed>>) {
        let observed = Arc::new(Mutex::new(Observed::default()));
        let r = Reconciler::new(
            self.db.clone(),
            self.sky.clone(),
            cfg(),
            holder.into(),
            Arc::clone(&observed),
            Arc::default(),
        );
        (r, observed)
    }

    /// A `requested` node, as the API stores it.
    async fn node(&self, cluster: &str) -> Node {
        let id = uuid::Uuid::new_v4().to_string();
        self.db
            .insert(&NewNode {
                id: &id,
                cluster_name: cluster,
                provider: "aws",
                region: "us-east-1",
                gpu_type: "L4",
                gpu_count: 1,
                model_name: "Qwen/Qwen2.5-0.5B-Instruct",
                use_spot: false,
                disk_size: 100,
                engine: Engine::Vllm,
                image: None,
                engine_args: &[],
                pool: None,
                agent_token_hash: &"0".repeat(64),
            })
            .await
            .unwrap()
    }

    async fn get(&self, cluster: &str) -> Node {
        self.db.get(cluster).await.unwrap().unwrap()
    }

    fn advance(&self, d: Duration) {
        self.clock.advance(d.as_millis() as i64);
    }

    /// Moves the clock by `d`, then runs one tick.
    async fn after(&self, d: Duration, r: &mut Reconciler<FakeSky>) {
        self.advance(d);
        assert!(r.tick().await, "the only replica holds the lease");
    }

    /// A node whose cluster came up and whose agent registered (`active`).
    async fn active(&self, r: &mut Reconciler<FakeSky>, cluster: &str) -> Node {
        let n = self.node(cluster).await;
        assert!(r.tick().await);
        self.after(poll(), r).await;
        assert_eq!(self.get(cluster).await.status, NodeStatus::Initializing);
        let n = self.db.heartbeat(&n.id, None).await.unwrap().unwrap();
        assert_eq!(n.status, NodeStatus::Active);
        n
    }
}

fn poll() -> Duration {
    cfg().poll_interval
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn launch_of(cluster: &str) -> LaunchBody<'_> {
    LaunchBody {
        task: "name: t\n",
        cluster_name: cluster,
        retry_until_up: false,
        dryrun: false,
    }
}

// ---- Launch, exactly once -------------------------------------------------------------

async fn a_requested_node_is_claimed_then_launched_once(w: World) {
    let (mut r, _) = w.reconciler("a");
    w.node("skydeck-one").await;
    assert!(r.tick().await);
    let n = w.get("skydeck-one").await;
    assert_eq!(n.status, NodeStatus::Launching);
    assert!(n.launch_intent_at.is_some());
    let id = n.launch_request_id.clone().unwrap();
    assert_eq!(w.sky.launches(), ["skydeck-one"]);
    // Further ticks follow the same request; none sends another.
    w.after(poll(), &mut r).await;
    w.after(poll(), &mut r).await;
    assert_eq!(w.sky.launches(), ["skydeck-one"]);
    let n = w.get("skydeck-one").await;
    assert_eq!(n.status, NodeStatus::Initializing);
    assert_eq!(n.launch_request_id.as_deref(), Some(id.as_str()));
}

async fn a_crash_between_claim_and_storing_the_id_adopts_skypilots_launch(w: World) {
    let n = w.node("skydeck-crash").await;
    // Replica A claims and submits, then dies before storing the request id.
    assert!(
        w.db.claim_launch(&n.id, None, &"1".repeat(64))
            .await
            .unwrap()
    );
    w.sky.push_launch(LaunchOutcome::Hang);
    let submitted = w
        .sky
        .submit_launch(&launch_of("skydeck-crash"))
        .await
        .unwrap();
    // Replica B finds the claim, looks in SkyPilot's request table and adopts the launch.
    let (mut b, _) = w.reconciler("b");
    assert!(b.tick().await);
    let n = w.get("skydeck-crash").await;
    assert_eq!(n.status, NodeStatus::Launching);
    assert_eq!(n.launch_request_id.as_deref(), Some(submitted.as_str()));
    assert_eq!(w.sky.launches().len(), 1, "no second launch");
}

async fn a_claim_abandoned_before_the_submit_is_relaunched_after_abandoned_after(w: World) {
    let n = w.node("skydeck-abandon").await;
    // Replica A claims and dies before sending anything.
    assert!(
        w.db.claim_launch(&n.id, None, &"1".repeat(64))
            .await
            .unwrap()
    );
    let (mut b, _) = w.reconciler("b");
    assert!(b.tick().await);
    // The claimer may still be sending it: B waits.
    assert!(w.sky.launches().is_empty());
    assert_eq!(w.get("skydeck-abandon").await.status, NodeStatus::Requested);
    w.after(cfg().abandoned_after / 4, &mut b).await;
    assert!(w.sky.launches().is_empty());
    // Once the claim is older than `abandoned_after`, B claims it anew and launches.
    w.after(cfg().abandoned_after, &mut b).await;
    assert_eq!(w.sky.launches(), ["skydeck-abandon"]);
    let after = w.get("skydeck-abandon").await;
    assert_eq!(after.status, NodeStatus::Launching);
    assert!(after.launch_intent_at > n.launch_intent_at);
}

#[tokio::test]
async fn a_definite_rejection_releases_the_claim() {
    for fault in [Fault::Refused, Fault::Status(400), Fault::Status(503)] {
        let w = World::new().await;
        let (mut r, _) = w.reconciler("a");
        w.node("skydeck-refused").await;
        w.sky.push_launch_fault(fault);
        assert!(r.tick().await);
        let n = w.get("skydeck-refused").await;
        assert_eq!(n.status, NodeStatus::Requested, "{fault:?}");
        assert_eq!(n.launch_intent_at, None, "{fault:?}: the claim is released");
        assert_eq!(n.attempts, 1);
        assert!(
            n.status_reason
                .as_deref()
                .unwrap()
                .contains("retrying after an error"),
            "{:?}",
            n.status_reason
        );
        // After the backoff the next attempt launches straight away (no wait for a claim).
        w.after(Duration::from_millis(backoff_ms(0) as u64), &mut r)
            .await;
        assert_eq!(w.sky.launches(), ["skydeck-refused"], "{fault:?}");
    }
}

async fn an_unknown_outcome_keeps_the_claim_and_adopts_what_skypilot_created(w: World) {
    let (mut r, _) = w.reconciler("a");
    w.node("skydeck-lost-reply").await;
    // The server created the request; the reply never arrived.
    w.sky.push_launch_fault(Fault::ReplyLost);
    assert!(r.tick().await);
    let n = w.get("skydeck-lost-reply").await;
    assert_eq!(n.status, NodeStatus::Requested);
    assert!(n.launch_intent_at.is_some(), "the claim is kept");
    assert_eq!(n.attempts, 1);
    w.after(Duration::from_millis(backoff_ms(0) as u64), &mut r)
        .await;
    let n = w.get("skydeck-lost-reply").await;
    assert_eq!(n.status, NodeStatus::Launching);
    assert_eq!(w.sky.launches().len(), 1, "adopted, not launched again");
    assert_eq!(n.launch_request_id.unwrap(), w.sky.requests()[0].request_id);
}

#[tokio::test]
async fn only_a_launch_record_is_adopted() {
    let w = World::new().await;
    let n = w.node("skydeck-other-records").await;
    assert!(
        w.db.claim_launch(&n.id, None, &"1".repeat(64))
            .await
            .unwrap()
    );
    // Other requests on the cluster (a status refresh, a teardown) are not its launch.
    w.sky.add_request(
        RequestName::Status,
        "skydeck-other-records",
        RequestStatus::Succeeded,
    );
    w.sky.add_request(
        RequestName::Down,
        "skydeck-other-records",
        RequestStatus::Failed,
    );
    let (mut r, _) = w.reconciler("a");
    assert!(r.tick().await);
    let got = w.get("skydeck-other-records").await;
    assert_eq!(got.status, NodeStatus::Requested);
    assert_eq!(got.launch_request_id, None);
    w.after(cfg().abandoned_after, &mut r).await;
    assert_eq!(w.sky.launches(), ["skydeck-other-records"]);
}

#[tokio::test]
async fn a_request_status_a_newer_server_added_is_waited_on() {
    let w = World::new().await;
    let (mut r, _) = w.reconciler("a");
    w.node("skydeck-newer").await;
    w.sky.push_launch(LaunchOutcome::Hang);
    assert!(r.tick().await);
    let id = w.get("skydeck-newer").await.launch_request_id.unwrap();
    w.sky
        .set_request_status(&id, RequestStatus::Other("PAUSED".into()));
    w.after(poll(), &mut r).await;
    w.after(poll(), &mut r).await;
    let n = w.get("skydeck-newer").await;
    assert_eq!(n.status, NodeStatus::Launching, "neither failed nor up");
    assert_eq!(n.attempts, 0, "not an error either");
}

#[tokio::test]
async fn a_timed_out_submit_that_created_nothing_is_relaunched_only_once_abandoned() {
    let w = World::new().await;
    let (mut r, _) = w.reconciler("a");
    w.node("skydeck-timeout").await;
    w.sky.push_launch_fault(Fault::Timeout);
    assert!(r.tick().await);
    assert!(w.get("skydeck-timeout").await.launch_intent_at.is_some());
    w.after(Duration::from_millis(backoff_ms(0) as u64), &mut r)
        .await;
    assert!(w.sky.launches().is_empty(), "SkyPilot may still create it");
    w.after(cfg().abandoned_after, &mut r).await;
    assert_eq!(w.sky.launches(), ["skydeck-timeout"]);
}

async fn failures_back_off_exponentially_up_to_a_minute(w: World) {
    let (mut r, _) = w.reconciler("a");
    w.node("skydeck-backoff").await;
    for _ in 0..4 {
        w.sky.push_launch_fault(Fault::Refused);
    }
    assert!(r.tick().await);
    for attempt in 1..=4 {
        let n = w.get("skydeck-backoff").await;
        assert_eq!(n.attempts, attempt);
        let wait = n.next_attempt_at - w.db.now_ms();
        assert_eq!(wait, backoff_ms(attempt - 1), "attempt {attempt}");
        // Not due a moment before the backoff ends …
        w.after(Duration::from_millis(wait as u64 - 1), &mut r)
            .await;
        assert_eq!(w.get("skydeck-backoff").await.attempts, attempt);
        // … and retried when it does.
        w.after(Duration::from_millis(1), &mut r).await;
    }
    let n = w.get("skydeck-backoff").await;
    assert_eq!(n.status, NodeStatus::Launching);
    assert_eq!(n.attempts, 0, "a success resets the count");
}

// ---- Launch outcomes -------------------------------------------------------------------

#[tokio::test]
async fn a_launched_node_whose_agent_never_registers_becomes_unhealthy() {
    let w = World::new().await;
    let (mut r, _) = w.reconciler("a");
    w.node("skydeck-silent").await;
    assert!(r.tick().await);
    w.after(poll(), &mut r).await;
    let n = w.get("skydeck-silent").await;
    assert_eq!(n.status, NodeStatus::Initializing);
    assert!(w.sky.calls().contains(&"launch_result".to_string()));
    // Within the register timeout it waits.
    w.after(cfg().register_timeout - secs(10), &mut r).await;
    assert_eq!(
        w.get("skydeck-silent").await.status,
        NodeStatus::Initializing
    );
    w.after(secs(20), &mut r).await;
    let n = w.get("skydeck-silent").await;
    assert_eq!(n.status, NodeStatus::Unhealthy);
    assert!(
        n.status_reason
            .unwrap()
            .contains("did not register within 600 s"),
        "the reason names the timeout"
    );
}

#[tokio::test]
async fn a_failed_launch_fails_the_node_with_skypilots_reason() {
    let w = World::new().await;
    let (mut r, _) = w.reconciler("a");
    w.node("skydeck-quota").await;
    w.sky.push_launch(LaunchOutcome::Fail {
        error_type: "ResourcesUnavailableError".into(),
        message: "Failed to provision all possible launchable resources.".into(),
    });
    assert!(r.tick().await);
    w.after(poll(), &mut r).await;
    let n = w.get("skydeck-quota").await;
    assert_eq!(n.status, NodeStatus::Failed);
    assert_eq!(
        n.status_reason.as_deref(),
        Some(
            "SkyPilot launch failed: ResourcesUnavailableError: Failed to provision all possible \
             launchable resources."
        )
    );
    // Final: nothing more happens.
    w.after(poll(), &mut r).await;
    assert_eq!(w.sky.launches().len(), 1);
}

#[tokio::test]
async fn a_cancelled_launch_fails_the_node() {
    let w = World::new().await;
    let (mut r, _) = w.reconciler("a");
    w.node("skydeck-cancel").await;
    w.sky.push_launch(LaunchOutcome::Cancel);
    assert!(r.tick().await);
    w.after(poll(), &mut r).await;
    let n = w.get("skydeck-cancel").await;
    assert_eq!(n.status, NodeStatus::Failed);
    assert_eq!(
        n.status_reason.as_deref(),
        Some("the launch request was cancelled in SkyPilot")
    );
}

#[tokio::test]
async fn a_hanging_launch_is_polled_until_it_settles() {
    let w = World::new().await;
    let (mut r, _) = w.reconciler("a");
    w.node("skydeck-slow").await;
    w.sky.push_launch(LaunchOutcome::Hang);
    assert!(r.tick().await);
    for _ in 0..3 {
        w.after(poll(), &mut r).await;
        assert_eq!(w.get("skydeck-slow").await.status, NodeStatus::Launching);
    }
    let id = w.get("skydeck-slow").await.launch_request_id.unwrap();
    w.sky.settle(&id, LaunchOutcome::Succeed);
    w.after(poll(), &mut r).await;
    assert_eq!(w.get("skydeck-slow").await.status, NodeStatus::Initializing);
}

// ---- Drain and teardown ----------------------------------------------------------------

async fn a_drain_waits_for_the_agents_drained_report(w: World) {
    let (mut r, _) = w.reconciler("a");
    let n = w.active(&mut r, "skydeck-drain").await;
    assert!(w.db.request_terminate(&n.id, false).await.unwrap());
    w.after(poll(), &mut r).await;
    w.after(poll(), &mut r).await;
    assert!(w.sky.downs().is_empty(), "in-flight requests may still run");
    // The agent reports `drained` (the heartbeat handler forces the drain).
    w.db.force_drain(&n.id).await.unwrap();
    assert!(r.tick().await);
    assert_eq!(w.sky.downs(), ["skydeck-drain"]);
    w.after(poll(), &mut r).await;
    let n = w.get("skydeck-drain").await;
    assert_eq!(n.status, NodeStatus::Terminated);
    assert_eq!(n.status_reason.as_deref(), Some("terminated"));
    assert!(!w.sky.clusters().contains_key("skydeck-drain"));
}

#[tokio::test]
async fn a_drain_ends_at_the_drain_timeout() {
    let w = World::new().await;
    let (mut r, _) = w.reconciler("a");
    let n = w.active(&mut r, "skydeck-slowdrain").await;
    assert!(w.db.request_terminate(&n.id, false).await.unwrap());
    w.after(cfg().drain_timeout - secs(1), &mut r).await;
    assert!(w.sky.downs().is_empty());
    w.after(secs(5), &mut r).await;
    assert_eq!(w.sky.downs(), ["skydeck-slowdrain"]);
}

#[tokio::test]
async fn a_forced_terminate_skips_the_wait_and_tears_down_once() {
    let w = World::new().await;
    let (mut r, _) = w.reconciler("a");
    let n = w.active(&mut r, "skydeck-force").await;
    w.sky.push_down(DownOutcome::Hang);
    assert!(w.db.request_terminate(&n.id, true).await.unwrap());
    assert!(r.tick().await);
    assert_eq!(w.sky.downs(), ["skydeck-force"]);
    for _ in 0..4 {
        w.after(poll(), &mut r).await;
    }
    assert_eq!(w.sky.downs().len(), 1, "the teardown is submitted once");
    assert_eq!(w.get("skydeck-force").await.status, NodeStatus::Draining);
    let id = w.get("skydeck-force").await.down_request_id.unwrap();
    w.sky.settle_down(&id, DownOutcome::Succeed);
    w.after(poll(), &mut r).await;
    assert_eq!(w.get("skydeck-force").await.status, NodeStatus::Terminated);
}

#[tokio::test]
async fn a_cluster_already_gone_at_teardown_is_terminated() {
    let w = World::new().await;
    let (mut r, _) = w.reconciler("a");
    let n = w.active(&mut r, "skydeck-gone").await;
    // Gone between two drift checks: `/down` fails with ClusterDoesNotExist.
    w.sky.remove_cluster("skydeck-gone");
    assert!(w.db.request_terminate(&n.id, true).await.unwrap());
    assert!(r.tick().await);
    assert_eq!(w.sky.downs(), ["skydeck-gone"]);
    w.after(poll(), &mut r).await;
    let n = w.get("skydeck-gone").await;
    assert_eq!(n.status, NodeStatus::Terminated);
    assert_eq!(
        n.status_reason.as_deref(),
        Some("the cluster was already gone from SkyPilot")
    );
}

#[tokio::test]
async fn a_failed_teardown_is_retried() {
    let w = World::new().await;
    let (mut r, _) = w.reconciler("a");
    let n = w.active(&mut r, "skydeck-downfail").await;
    w.sky.push_down(DownOutcome::Fail {
        error_type: "CloudError".into(),
        message: "the cloud said no".into(),
    });
    assert!(w.db.request_terminate(&n.id, true).await.unwrap());
    assert!(r.tick().await);
    w.after(poll(), &mut r).await;
    let n = w.get("skydeck-downfail").await;
    assert_eq!(n.status, NodeStatus::Draining);
    assert!(n.status_reason.unwrap().contains("the cloud said no"));
    assert_eq!(n.down_request_id, None, "the teardown is reset");
    w.after(Duration::from_millis(backoff_ms(0) as u64), &mut r)
        .await;
    assert_eq!(w.sky.downs().len(), 2);
    w.after(poll(), &mut r).await;
    assert_eq!(
        w.get("skydeck-downfail").await.status,
        NodeStatus::Terminated
    );
}

async fn a_teardown_skypilot_lost_is_sent_again(w: World) {
    let (mut r, _) = w.reconciler("a");
    let n = w.active(&mut r, "skydeck-lostdown").await;
    w.sky.push_down(DownOutcome::Lose);
    assert!(w.db.request_terminate(&n.id, true).await.unwrap());
    assert!(r.tick().await);
    assert_eq!(w.sky.downs().len(), 1);
    // The request is unknown now: the teardown is reset, then sent again.
    w.after(poll(), &mut r).await;
    assert_eq!(w.get("skydeck-lostdown").await.down_request_id, None);
    assert!(r.tick().await);
    assert_eq!(w.sky.downs().len(), 2);
    w.after(poll(), &mut r).await;
    assert_eq!(
        w.get("skydeck-lostdown").await.status,
        NodeStatus::Terminated
    );
}

#[tokio::test]
async fn a_teardown_whose_reply_was_lost_is_adopted_not_resent() {
    let w = World::new().await;
    let (mut r, _) = w.reconciler("a");
    let n = w.active(&mut r, "skydeck-downreply").await;
    w.sky.push_down_fault(Fault::ReplyLost);
    assert!(w.db.request_terminate(&n.id, true).await.unwrap());
    assert!(r.tick().await);
    let n = w.get("skydeck-downreply").await;
    assert!(n.down_intent_at.is_some() && n.down_request_id.is_none());
    w.after(Duration::from_millis(backoff_ms(0) as u64), &mut r)
        .await;
    let n = w.get("skydeck-downreply").await;
    assert_eq!(
        n.down_request_id.unwrap(),
        w.sky.requests().last().unwrap().request_id
    );
    assert_eq!(w.sky.downs().len(), 1);
    w.after(poll(), &mut r).await;
    assert_eq!(
        w.get("skydeck-downreply").await.status,
        NodeStatus::Terminated
    );
}

#[tokio::test]
async fn a_refused_teardown_is_reset_and_retried() {
    let w = World::new().await;
    let (mut r, _) = w.reconciler("a");
    let n = w.active(&mut r, "skydeck-downrefused").await;
    w.sky.push_down_fault(Fault::Refused);
    assert!(w.db.request_terminate(&n.id, true).await.unwrap());
    assert!(r.tick().await);
    let n = w.get("skydeck-downrefused").await;
    assert_eq!(n.down_intent_at, None, "a refused teardown leaves no claim");
    w.after(Duration::from_millis(backoff_ms(0) as u64), &mut r)
        .await;
    assert_eq!(w.sky.downs().len(), 1);
}

async fn a_terminate_during_a_running_launch_waits_for_it_to_settle(w: World) {
    let (mut r, _) = w.reconciler("a");
    let n = w.node("skydeck-midlaunch").await;
    w.sky.push_launch(LaunchOutcome::Hang);
    assert!(r.tick().await);
    assert!(w.db.request_terminate(&n.id, true).await.unwrap());
    for _ in 0..3 {
        w.after(poll(), &mut r).await;
    }
    assert!(w.sky.downs().is_empty(), "no /down while /launch runs");
    let id = w.get("skydeck-midlaunch").await.launch_request_id.unwrap();
    w.sky.settle(&id, LaunchOutcome::Succeed);
    w.after(poll(), &mut r).await;
    assert_eq!(w.sky.downs(), ["skydeck-midlaunch"]);
    w.after(poll(), &mut r).await;
    assert_eq!(
        w.get("skydeck-midlaunch").await.status,
        NodeStatus::Terminated
    );
}

#[tokio::test]
async fn a_terminate_before_the_launch_ends_the_node_without_skypilot() {
    let w = World::new().await;
    let (mut r, _) = w.reconciler("a");
    let n = w.node("skydeck-early").await;
    assert!(w.db.request_terminate(&n.id, false).await.unwrap());
    assert!(r.tick().await);
    let n = w.get("skydeck-early").await;
    assert_eq!(n.status, NodeStatus::Terminated);
    assert_eq!(
        n.status_reason.as_deref(),
        Some("terminated before it was launched")
    );
    assert!(w.sky.launches().is_empty() && w.sky.downs().is_empty());
}

// ---- Drift -----------------------------------------------------------------------------

async fn a_vanished_cluster_terminates_its_node(w: World) {
    let (mut r, _) = w.reconciler("a");
    w.active(&mut r, "skydeck-preempted").await;
    w.sky.remove_cluster("skydeck-preempted");
    // Not before the next drift check …
    w.after(secs(1), &mut r).await;
    assert_eq!(w.get("skydeck-preempted").await.status, NodeStatus::Active);
    w.after(cfg().drift_interval, &mut r).await;
    let n = w.get("skydeck-preempted").await;
    assert_eq!(n.status, NodeStatus::Terminated);
    assert!(n.status_reason.unwrap().contains("gone from SkyPilot"));
}

#[tokio::test]
async fn a_cluster_that_is_not_up_makes_its_node_unhealthy() {
    let w = World::new().await;
    let (mut r, _) = w.reconciler("a");
    let n = w.active(&mut r, "skydeck-stopped").await;
    w.sky.set_cluster("skydeck-stopped", ClusterStatus::Stopped);
    w.after(cfg().drift_interval, &mut r).await;
    let got = w.get("skydeck-stopped").await;
    assert_eq!(got.status, NodeStatus::Unhealthy);
    assert_eq!(
        got.status_reason.as_deref(),
        Some("SkyPilot reports the cluster STOPPED")
    );
    // A heartbeat brings it back (the agent is alive after all).
    w.db.heartbeat(&n.id, None).await.unwrap();
    assert_eq!(w.get("skydeck-stopped").await.status, NodeStatus::Active);
}

#[tokio::test]
async fn unmanaged_clusters_with_the_prefix_are_reported_not_adopted() {
    let w = World::new().await;
    let (mut r, observed) = w.reconciler("a");
    w.sky.set_cluster("skydeck-stray", ClusterStatus::Up);
    w.sky.set_cluster("someone-elses", ClusterStatus::Up);
    w.sky.set_cluster("skydeckish", ClusterStatus::Up);
    assert!(r.tick().await);
    {
        let obs = observed.lock().unwrap();
        assert_eq!(obs.unmanaged.iter().collect::<Vec<_>>(), ["skydeck-stray"]);
        assert_eq!(obs.last_drift_check, Some(START_MS));
        assert!(obs.leader);
    }
    assert!(
        w.db.get("skydeck-stray").await.unwrap().is_none(),
        "not adopted"
    );
    assert!(w.sky.downs().is_empty(), "not taken down either");
    // Once it is gone, it is no longer reported.
    w.sky.remove_cluster("skydeck-stray");
    w.after(cfg().drift_interval, &mut r).await;
    assert!(observed.lock().unwrap().unmanaged.is_empty());
}

#[tokio::test]
async fn a_status_failure_changes_nothing() {
    let w = World::new().await;
    let (mut r, observed) = w.reconciler("a");
    w.active(&mut r, "skydeck-blind").await;
    w.sky.remove_cluster("skydeck-blind");
    w.sky.set_status_fault(Some(Fault::Refused));
    let before = observed.lock().unwrap().last_drift_check;
    w.after(cfg().drift_interval, &mut r).await;
    assert_eq!(w.get("skydeck-blind").await.status, NodeStatus::Active);
    assert_eq!(observed.lock().unwrap().last_drift_check, before);
}

async fn silent_nodes_become_unhealthy(w: World) {
    let (mut r, _) = w.reconciler("a");
    let n = w.active(&mut r, "skydeck-quiet").await;
    let three = cfg().heartbeat_interval * 3;
    w.after(three - secs(1), &mut r).await;
    assert_eq!(w.get("skydeck-quiet").await.status, NodeStatus::Active);
    w.db.heartbeat(&n.id, None).await.unwrap();
    w.after(three + secs(1), &mut r).await;
    let got = w.get("skydeck-quiet").await;
    assert_eq!(got.status, NodeStatus::Unhealthy);
    assert_eq!(
        got.status_reason.as_deref(),
        Some("no heartbeat for three intervals")
    );
}

async fn prices_come_from_the_cost_report(w: World) {
    let (mut r, _) = w.reconciler("a");
    w.active(&mut r, "skydeck-priced").await;
    w.active(&mut r, "skydeck-young").await;
    // $3 over two hours is $1.50 an hour; under a minute of runtime is not priced.
    w.sky.set_cost("skydeck-priced", 3.0, 7200.0);
    w.sky.set_cost("skydeck-young", 0.01, 30.0);
    w.after(cfg().drift_interval, &mut r).await;
    assert_eq!(w.get("skydeck-priced").await.hourly_price, Some(1.5));
    assert_eq!(w.get("skydeck-young").await.hourly_price, None);
}

// ---- Replicas and the lease ------------------------------------------------------------

async fn only_the_lease_holder_reconciles_and_a_lapsed_lease_is_taken_over(w: World) {
    let (mut a, obs_a) = w.reconciler("a");
    let (mut b, obs_b) = w.reconciler("b");
    assert!(a.tick().await);
    w.node("skydeck-leased").await;
    assert!(!b.tick().await, "b does not hold the lease");
    assert!(!obs_b.lock().unwrap().leader);
    assert!(w.sky.launches().is_empty(), "b did nothing");
    assert!(w.sky.calls().iter().filter(|c| *c == "status").count() == 1);
    assert!(a.tick().await);
    assert_eq!(w.sky.launches(), ["skydeck-leased"]);
    // Renewed by a's ticks: b still cannot take it within the lease.
    w.advance(cfg().lease_ttl - secs(1));
    assert!(a.tick().await);
    w.advance(cfg().lease_ttl - secs(1));
    assert!(!b.tick().await);
    // a dies; once its lease lapses b takes over and carries on with the node.
    w.advance(cfg().lease_ttl + secs(1));
    assert!(b.tick().await);
    assert!(obs_b.lock().unwrap().leader);
    assert_eq!(
        w.get("skydeck-leased").await.status,
        NodeStatus::Initializing
    );
    // a comes back and finds itself a follower.
    assert!(!a.tick().await);
    assert!(!obs_a.lock().unwrap().leader);
    assert_eq!(w.sky.launches().len(), 1);
}

#[tokio::test]
async fn run_gives_the_lease_up_on_shutdown() {
    let w = World::new().await;
    let (a, obs_a) = w.reconciler("a");
    let (mut b, _) = w.reconciler("b");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(a.run(async move {
        let _ = rx.await;
    }));
    // Wait for a's first tick to take the lease (no time assertion: a bounded loop of yields).
    for _ in 0..10_000 {
        if obs_a.lock().unwrap().leader {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(obs_a.lock().unwrap().leader);
    tx.send(()).unwrap();
    task.await.unwrap();
    // Released, so b takes over without waiting out the lease.
    assert!(b.tick().await);
}

#[tokio::test]
async fn the_fake_speaks_skypilots_request_vocabulary() {
    let w = World::new().await;
    w.sky.push_launch(LaunchOutcome::Hang);
    let id = w.sky.submit_launch(&launch_of("skydeck-v")).await.unwrap();
    let row = w.sky.request_status(&id).await.unwrap().unwrap();
    assert_eq!(row.name, RequestName::Launch);
    assert_eq!(row.status, RequestStatus::Running);
    assert!(!row.is_finished());
    assert_eq!(row.created_at, Some(START_MS as f64 / 1000.0));
    assert_eq!(w.sky.clusters()["skydeck-v"], ClusterStatus::Init);
}

// ---- The scenarios above, on each database -----------------------------------------------

/// A `#[tokio::test]` per database for each scenario: `sqlite` always, `postgres` when
/// `SKYDECK_TEST_DATABASE_URL` is set (skipped, and said so, when it is not).
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::World::new().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(w) = super::World::postgres().await else {
                        eprintln!("skipped: SKYDECK_TEST_DATABASE_URL is not set");
                        return;
                    };
                    super::$name(w).await
                }
            )*
        }
    };
}

on_both!(
    a_requested_node_is_claimed_then_launched_once,
    a_crash_between_claim_and_storing_the_id_adopts_skypilots_launch,
    a_claim_abandoned_before_the_submit_is_relaunched_after_abandoned_after,
    an_unknown_outcome_keeps_the_claim_and_adopts_what_skypilot_created,
    a_drain_waits_for_the_agents_drained_report,
    a_terminate_during_a_running_launch_waits_for_it_to_settle,
    a_vanished_cluster_terminates_its_node,
    silent_nodes_become_unhealthy,
    only_the_lease_holder_reconciles_and_a_lapsed_lease_is_taken_over,
    prices_come_from_the_cost_report,
    a_teardown_skypilot_lost_is_sent_again,
    failures_back_off_exponentially_up_to_a_minute,
);
