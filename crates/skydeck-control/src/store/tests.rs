//! The store's behaviour, every conditional change, on SQLite (a temp file) and, when
//! `SKYDECK_TEST_DATABASE_URL` names a PostgreSQL server, on PostgreSQL too: each test gets a
//! database of its own there (created and dropped by [`TestDb`]), so tests run in parallel.
//! Times come from a [`SimClock`], so every stamped time is checked exactly.

use std::sync::Arc;

use skydeck_contract::{Engine, Heartbeat};

use super::*;
use crate::clock::{Clock, SimClock};
use crate::status::NodeStatus;

/// The simulated clock's start.
const T0: i64 = 1_700_000_000_000;

/// One database for one test: the store, its clock, and what to remove afterwards.
struct TestDb {
    store: Store,
    clock: Arc<SimClock>,
    label: &'static str,
    _dir: Option<tempfile::TempDir>,
    /// PostgreSQL: the server's URL and the database this test created on it.
    pg: Option<(String, String)>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg.take() else {
            return;
        };
        // Drop runs inside the test's runtime: the cleanup gets a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut c)
                        .await;
                }
            });
        })
        .join();
    }
}

/// The databases a test runs on, opened but not migrated.
async fn unmigrated(test: &str) -> Vec<TestDb> {
    let mut out = Vec::new();
    let clock = SimClock::new(T0);
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("store.db");
    let store = Store::open(path.to_str().expect("a UTF-8 temp path"), 4, clock.clone())
        .await
        .expect("SQLite opens");
    out.push(TestDb {
        store,
        clock,
        label: "sqlite",
        _dir: Some(dir),
        pg: None,
    });
    if let Ok(admin) = std::env::var("SKYDECK_TEST_DATABASE_URL")
        && !admin.is_empty()
    {
        use sqlx::Connection;
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("skydeck_store_{}_{}", test, &suffix[..8]);
        let mut c = sqlx::PgConnection::connect(&admin)
            .await
            .expect("SKYDECK_TEST_DATABASE_URL answers");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await
            .expect("CREATE DATABASE");
        let mut url = url::Url::parse(&admin).expect("SKYDECK_TEST_DATABASE_URL is a URL");
        url.set_path(&format!("/{name}"));
        let clock = SimClock::new(T0);
        let db = TestDb {
            store: Store::open(url.as_str(), 4, clock.clone())
                .await
                .expect("PostgreSQL opens"),
            clock,
            label: "postgres",
            _dir: None,
            pg: Some((admin, name)),
        };
        out.push(db);
    }
    out
}

/// The databases a test runs on, migrated.
async fn dbs(test: &str) -> Vec<TestDb> {
    let out = unmigrated(test).await;
    for db in &out {
        db.store.migrate().await.expect("migrations run");
    }
    out
}

/// A test body run once per database (`$db`: the [`TestDb`]).
macro_rules! each_db {
    ($(#[$m:meta])* $name:ident, |$db:ident| $body:block) => {
        $(#[$m])*
        #[tokio::test]
        async fn $name() {
            for $db in dbs(stringify!($name)).await {
                $body
            }
        }
    };
}

/// Inserts a node named `name` (id and token hash derived from it).
async fn add(s: &Store, name: &str) -> Node {
    add_with(s, name, "aws", "H100", "m").await
}

async fn add_with(s: &Store, name: &str, provider: &str, gpu: &str, model: &str) -> Node {
    let id = uuid::Uuid::new_v4().to_string();
    let args = vec!["--max-model-len".to_string(), "4096".to_string()];
    let hash = format!("hash-{name}");
    s.insert(&NewNode {
        id: &id,
        cluster_name: name,
        provider,
        region: "us-east-1",
        gpu_type: gpu,
        gpu_count: 2,
        model_name: model,
        use_spot: true,
        disk_size: 256,
        engine: Engine::Llamacpp,
        image: Some("docker:vllm/vllm-openai:v0.1"),
        engine_args: &args,
        pool: None,
        agent_token_hash: &hash,
    })
    .await
    .expect("insert")
}

/// Inserts a node and walks it, through the store's own operations, to `status`.
async fn node_in(s: &Store, name: &str, status: NodeStatus) -> Node {
    use NodeStatus::*;
    let n = add(s, name).await;
    let id = n.id.clone();
    let t = |from: NodeStatus, to: NodeStatus| {
        let id = id.clone();
        async move {
            assert!(
                s.transition(&id, &[from], to, None).await.unwrap(),
                "{from} → {to}"
            );
        }
    };
    match status {
        Requested => {}
        Failed => t(Requested, Failed).await,
        _ => {
            assert!(
                s.claim_launch(&id, None, &format!("hash-{name}"))
                    .await
                    .unwrap()
            );
            assert!(s.launch_submitted(&id, "req-launch").await.unwrap());
            match status {
                Launching => {}
                Initializing => t(Launching, Initializing).await,
                Active => t(Launching, Active).await,
                Unhealthy => {
                    t(Launching, Active).await;
                    t(Active, Unhealthy).await;
                }
                Draining => assert!(s.request_terminate(&id, false).await.unwrap()),
                Stopped => {
                    t(Launching, Active).await;
                    assert!(s.request_stop(&id).await.unwrap());
                    t(Draining, Stopped).await;
                }
                Terminated => {
                    t(Launching, Active).await;
                    t(Active, Terminated).await;
                }
                Requested | Failed => unreachable!(),
            }
        }
    }
    let n = s.get(name).await.unwrap().expect("the node");
    assert_eq!(n.status, status);
    n
}

fn report(id: &str, uptime: f64) -> Heartbeat {
    Heartbeat {
        node_id: id.to_string(),
        served_models: vec!["m".to_string()],
        uptime_seconds: uptime,
        ..Default::default()
    }
}

/// The time column a status stamps, read from a node.
fn stamped(n: &Node, s: NodeStatus) -> Option<i64> {
    use NodeStatus::*;
    match s {
        Requested => Some(n.created_at),
        Launching => n.launching_at,
        Initializing => n.initializing_at,
        Active => n.active_at,
        Unhealthy => n.unhealthy_at,
        Draining => n.draining_at,
        Stopped => n.stopped_at,
        Terminated => n.terminated_at,
        Failed => n.failed_at,
    }
}

each_db!(insert_reads_back_and_refuses_duplicates, |db| {
    let s = &db.store;
    let n = add(s, "a").await;
    assert_eq!(n.status, NodeStatus::Requested, "{}", db.label);
    assert_eq!((n.created_at, n.updated_at), (T0, T0));
    assert_eq!(n.engine, Engine::Llamacpp);
    assert_eq!(n.image.as_deref(), Some("docker:vllm/vllm-openai:v0.1"));
    assert_eq!(n.engine_args, ["--max-model-len", "4096"]);
    assert!(n.use_spot && !n.drain_force);
    assert_eq!((n.gpu_count, n.disk_size, n.attempts), (2, 256, 0));
    assert!(n.heartbeat.is_none() && n.launch_intent_at.is_none());
    let got = s.get("a").await.unwrap().expect("by name");
    assert_eq!(got.id, n.id);
    assert_eq!(s.by_token_hash("hash-a").await.unwrap().unwrap().id, n.id);
    assert!(s.get("nope").await.unwrap().is_none());
    assert!(s.by_token_hash("nope").await.unwrap().is_none());

    // The same cluster name again (another id, another token).
    let id = uuid::Uuid::new_v4().to_string();
    let dup = NewNode {
        id: &id,
        cluster_name: "a",
        provider: "aws",
        region: "r",
        gpu_type: "g",
        gpu_count: 1,
        model_name: "m",
        use_spot: false,
        disk_size: 1,
        engine: Engine::Vllm,
        image: None,
        engine_args: &[],
        pool: Some("chat"),
        agent_token_hash: "other",
    };
    let e = s.insert(&dup).await.expect_err("a duplicate name");
    assert!(e.is_unique_violation(), "{}: {e}", db.label);
    // The same id under another name.
    let e = s
        .insert(&NewNode {
            id: &n.id,
            cluster_name: "b",
            ..dup.clone()
        })
        .await
        .expect_err("a duplicate id");
    assert!(e.is_unique_violation(), "{}: {e}", db.label);
    // A fresh one is fine, and nothing else is a unique violation.
    s.insert(&NewNode {
        cluster_name: "b",
        ..dup
    })
    .await
    .expect("a new node");
    s.ping().await.unwrap();
    assert_eq!(
        s.kind(),
        if db.label == "sqlite" {
            Kind::Sqlite
        } else {
            Kind::Postgres
        }
    );
});

each_db!(transition_agrees_with_the_contract, |db| {
    let s = &db.store;
    for (i, from) in NodeStatus::ALL.into_iter().enumerate() {
        for (j, to) in NodeStatus::ALL.into_iter().enumerate() {
            let name = format!("n{i}-{j}");
            let n = node_in(s, &name, from).await;
            db.clock.advance(1000);
            let now = db.clock.now_ms();
            let moved = s.transition(&n.id, &[from], to, Some("why")).await.unwrap();
            assert_eq!(moved, from.can_move_to(to), "{}: {from} → {to}", db.label);
            let after = s.get(&name).await.unwrap().unwrap();
            if moved {
                assert_eq!(after.status, to);
                assert_eq!(stamped(&after, to), Some(now), "{from} → {to}");
                assert_eq!(after.updated_at, now);
                assert_eq!(after.status_reason.as_deref(), Some("why"));
                assert_eq!((after.attempts, after.next_attempt_at), (0, 0));
            } else {
                assert_eq!(after.status, from, "{from} → {to} changed the node");
                assert_eq!(after.updated_at, n.updated_at);
            }
        }
    }
    // A node no longer in the expected state does not move.
    let n = node_in(s, "moved-meanwhile", NodeStatus::Active).await;
    let stale = [NodeStatus::Launching, NodeStatus::Initializing];
    assert!(
        !s.transition(&n.id, &stale, NodeStatus::Active, None)
            .await
            .unwrap()
    );
    // One of several expected states is enough.
    let both = [NodeStatus::Initializing, NodeStatus::Active];
    assert!(
        s.transition(&n.id, &both, NodeStatus::Unhealthy, None)
            .await
            .unwrap()
    );
    assert!(
        !s.transition(
            "no-such-id",
            &[NodeStatus::Requested],
            NodeStatus::Failed,
            None
        )
        .await
        .unwrap()
    );
});

each_db!(claim_launch_has_one_winner, |db| {
    let s = &db.store;
    let n = add(s, "a").await;
    assert!(s.claim_launch(&n.id, None, "h1").await.unwrap());
    let claimed = s.get("a").await.unwrap().unwrap();
    assert_eq!(claimed.launch_intent_at, Some(T0));
    assert_eq!(s.by_token_hash("h1").await.unwrap().unwrap().id, n.id);
    // A second first claim loses; a takeover names the claim it replaces.
    assert!(!s.claim_launch(&n.id, None, "h2").await.unwrap());
    assert!(!s.claim_launch(&n.id, Some(T0 - 1), "h2").await.unwrap());
    db.clock.advance(60_000);
    assert!(s.claim_launch(&n.id, Some(T0), "h2").await.unwrap());
    assert!(s.by_token_hash("h1").await.unwrap().is_none());
    let again = s.get("a").await.unwrap().unwrap();
    assert_eq!(again.launch_intent_at, Some(T0 + 60_000));
    // Released: a first claim is possible again.
    s.release_launch(&n.id).await.unwrap();
    assert_eq!(s.get("a").await.unwrap().unwrap().launch_intent_at, None);

    // Two claimers at once: exactly one wins.
    let (a, b) = tokio::join!(
        s.claim_launch(&n.id, None, "race-a"),
        s.claim_launch(&n.id, None, "race-b")
    );
    assert!(
        a.unwrap() ^ b.unwrap(),
        "{}: exactly one claimer wins",
        db.label
    );
    let winner = s.get("a").await.unwrap().unwrap();
    assert!(winner.launch_intent_at.is_some());

    // Once submitted, no claim and no release touches it.
    assert!(s.launch_submitted(&n.id, "req-1").await.unwrap());
    assert!(!s.claim_launch(&n.id, None, "late").await.unwrap());
    let before = s.get("a").await.unwrap().unwrap();
    s.release_launch(&n.id).await.unwrap();
    assert_eq!(
        s.get("a").await.unwrap().unwrap().launch_intent_at,
        before.launch_intent_at
    );
    // Not requested: no claim.
    let d = node_in(s, "d", NodeStatus::Draining).await;
    assert!(!s.claim_launch(&d.id, None, "x").await.unwrap());
});

each_db!(launch_submitted_moves_requested_and_keeps_draining, |db| {
    let s = &db.store;
    let n = add(s, "a").await;
    s.back_off(&n.id, 5000, "try again").await.unwrap();
    db.clock.advance(10);
    assert!(s.launch_submitted(&n.id, "req-1").await.unwrap());
    let l = s.get("a").await.unwrap().unwrap();
    assert_eq!(l.status, NodeStatus::Launching);
    assert_eq!(l.launching_at, Some(T0 + 10));
    assert_eq!(l.launch_request_id.as_deref(), Some("req-1"));
    assert_eq!((l.attempts, l.next_attempt_at), (0, 0));
    // Only once.
    assert!(!s.launch_submitted(&n.id, "req-2").await.unwrap());
    assert_eq!(
        s.get("a")
            .await
            .unwrap()
            .unwrap()
            .launch_request_id
            .as_deref(),
        Some("req-1")
    );

    // Terminated while the launch was being sent: the id is kept, the node stays draining.
    let d = add(s, "d").await;
    assert!(s.request_terminate(&d.id, false).await.unwrap());
    assert!(s.launch_submitted(&d.id, "req-d").await.unwrap());
    let d = s.get("d").await.unwrap().unwrap();
    assert_eq!(d.status, NodeStatus::Draining, "{}", db.label);
    assert_eq!(d.launch_request_id.as_deref(), Some("req-d"));
    assert_eq!(d.launching_at, None);
    // Final nodes take no launch.
    let f = node_in(s, "f", NodeStatus::Failed).await;
    assert!(!s.launch_submitted(&f.id, "req-f").await.unwrap());
});

each_db!(teardown_claim_submit_and_reset, |db| {
    let s = &db.store;
    let a = node_in(s, "a", NodeStatus::Active).await;
    assert!(
        !s.claim_down(&a.id).await.unwrap(),
        "only draining nodes go down"
    );
    assert!(!s.down_submitted(&a.id, "r").await.unwrap());
    let d = node_in(s, "d", NodeStatus::Draining).await;
    db.clock.advance(5);
    assert!(s.claim_down(&d.id).await.unwrap());
    assert!(
        !s.claim_down(&d.id).await.unwrap(),
        "{}: one claim",
        db.label
    );
    assert!(s.down_submitted(&d.id, "down-1").await.unwrap());
    assert!(!s.down_submitted(&d.id, "down-2").await.unwrap());
    let got = s.get("d").await.unwrap().unwrap();
    assert_eq!(got.down_intent_at, Some(T0 + 5));
    assert_eq!(got.down_request_id.as_deref(), Some("down-1"));
    s.reset_down(&d.id).await.unwrap();
    let got = s.get("d").await.unwrap().unwrap();
    assert_eq!((got.down_intent_at, got.down_request_id), (None, None));
    assert!(
        s.claim_down(&d.id).await.unwrap(),
        "claimable again after a reset"
    );
    // A reset of a node that is not draining changes nothing.
    let t = node_in(s, "t", NodeStatus::Terminated).await;
    s.reset_down(&t.id).await.unwrap();
    assert_eq!(s.get("t").await.unwrap().unwrap().updated_at, t.updated_at);
});

each_db!(request_terminate_from_every_state, |db| {
    let s = &db.store;
    for (i, from) in NodeStatus::ALL.into_iter().enumerate() {
        for force in [false, true] {
            let name = format!("n{i}-{force}");
            let n = node_in(s, &name, from).await;
            db.clock.advance(100);
            let moved = s.request_terminate(&n.id, force).await.unwrap();
            let expected = NodeStatus::LIVE.contains(&from) && from != NodeStatus::Draining;
            assert_eq!(moved, expected, "{}: terminate from {from}", db.label);
            assert_eq!(moved, from.can_move_to(NodeStatus::Draining));
            let after = s.get(&name).await.unwrap().unwrap();
            if moved {
                assert_eq!(after.status, NodeStatus::Draining);
                assert_eq!(after.draining_at, Some(db.clock.now_ms()));
                // A stopped node has no agent to wait for: its teardown is immediate.
                assert_eq!(after.drain_force, force || from == NodeStatus::Stopped);
                let reason = if force {
                    "terminate requested (force)"
                } else {
                    "terminate requested"
                };
                assert_eq!(after.status_reason.as_deref(), Some(reason));
            } else {
                assert_eq!(after.status, from);
                assert!(!after.drain_force);
            }
        }
    }
});

each_db!(force_drain_only_while_draining, |db| {
    let s = &db.store;
    let a = node_in(s, "a", NodeStatus::Active).await;
    s.force_drain(&a.id).await.unwrap();
    assert!(!s.get("a").await.unwrap().unwrap().drain_force);
    let d = node_in(s, "d", NodeStatus::Draining).await;
    s.wait_until(&d.id, T0 + 99_000).await.unwrap();
    s.force_drain(&d.id).await.unwrap();
    let d = s.get("d").await.unwrap().unwrap();
    assert!(d.drain_force, "{}", db.label);
    assert_eq!(d.next_attempt_at, 0, "a forced drain is due at once");
});

each_db!(back_off_wait_until_and_due, |db| {
    let s = &db.store;
    let r = add(s, "r").await;
    db.clock.advance(1);
    let l = node_in(s, "l", NodeStatus::Launching).await;
    db.clock.advance(1);
    let _a = node_in(s, "a", NodeStatus::Active).await;
    let _t = node_in(s, "t", NodeStatus::Terminated).await;
    let due = |v: Vec<Node>| v.into_iter().map(|n| n.cluster_name).collect::<Vec<_>>();
    let now = db.clock.now_ms();
    assert_eq!(
        due(s.due(now, 10).await.unwrap()),
        ["r", "l"],
        "{}",
        db.label
    );
    assert_eq!(due(s.due(now, 1).await.unwrap()), ["r"]);

    s.back_off(&r.id, 30_000, "SkyPilot is down").await.unwrap();
    s.back_off(&r.id, 60_000, "still down").await.unwrap();
    let got = s.get("r").await.unwrap().unwrap();
    assert_eq!(got.attempts, 2);
    assert_eq!(got.next_attempt_at, now + 60_000);
    assert_eq!(got.status_reason.as_deref(), Some("still down"));
    assert_eq!(due(s.due(now, 10).await.unwrap()), ["l"]);
    assert_eq!(due(s.due(now + 60_000, 10).await.unwrap()), ["l", "r"]);

    s.wait_until(&l.id, now + 70_000).await.unwrap();
    assert_eq!(
        s.get("l").await.unwrap().unwrap().next_attempt_at,
        now + 70_000
    );
    assert!(due(s.due(now + 60_000, 10).await.unwrap()) == ["r"]);
    // A state change starts the backoff over.
    assert!(
        s.transition(&r.id, &[NodeStatus::Requested], NodeStatus::Failed, None)
            .await
            .unwrap()
    );
    let got = s.get("r").await.unwrap().unwrap();
    assert_eq!((got.attempts, got.next_attempt_at), (0, 0));
});

each_db!(heartbeat_from_each_state, |db| {
    use NodeStatus::*;
    let s = &db.store;
    for (i, from) in NodeStatus::ALL.into_iter().enumerate() {
        let name = format!("n{i}");
        let n = node_in(s, &name, from).await;
        db.clock.advance(1000);
        let now = db.clock.now_ms();
        let rep = report(&n.id, 1.5);
        let got = s
            .heartbeat(&n.id, Some(&rep))
            .await
            .unwrap()
            .expect("the node");
        let counts = matches!(
            from,
            Launching | Initializing | Active | Unhealthy | Draining
        );
        let expected = match from {
            Launching | Initializing | Unhealthy => Active,
            other => other,
        };
        assert_eq!(got.status, expected, "{}: heartbeat in {from}", db.label);
        if counts {
            assert_eq!(got.last_heartbeat_at, Some(now), "{from}");
            assert_eq!(got.updated_at, now);
            assert_eq!(
                got.heartbeat.as_ref(),
                Some(&rep),
                "{from}: the report is stored"
            );
        } else {
            assert_eq!(got.last_heartbeat_at, None, "{from}");
            assert_eq!(got.heartbeat, None);
            assert_eq!(got.updated_at, n.updated_at);
        }
        match from {
            Launching | Initializing => {
                assert_eq!(got.active_at, Some(now));
                assert_eq!(got.status_reason, None);
            }
            // Back from unhealthy: the first activation time is kept, the reason cleared.
            Unhealthy => {
                assert_eq!(got.active_at, n.active_at);
                assert_eq!(got.status_reason, None);
            }
            _ => assert_eq!(got.active_at, n.active_at, "{from}"),
        }
        if counts {
            // A beat without a report keeps the last report.
            db.clock.advance(1000);
            let again = s.heartbeat(&n.id, None).await.unwrap().unwrap();
            assert_eq!(
                again.heartbeat.as_ref(),
                Some(&rep),
                "{from}: the report is kept"
            );
            assert_eq!(again.last_heartbeat_at, Some(now + 1000));
            // A new report replaces it.
            let newer = report(&n.id, 99.0);
            let again = s.heartbeat(&n.id, Some(&newer)).await.unwrap().unwrap();
            assert_eq!(again.heartbeat.as_ref(), Some(&newer));
            assert_eq!(
                s.get(&name).await.unwrap().unwrap().heartbeat.as_ref(),
                Some(&newer)
            );
        }
    }
    assert!(s.heartbeat("no-such-id", None).await.unwrap().is_none());
});

each_db!(silent_active_nodes_become_unhealthy, |db| {
    let s = &db.store;
    let old = node_in(s, "old", NodeStatus::Active).await; // active_at T0, never a beat
    let beat = node_in(s, "beat", NodeStatus::Active).await;
    let unh = node_in(s, "unh", NodeStatus::Unhealthy).await;
    db.clock.advance(60_000);
    s.heartbeat(&beat.id, None).await.unwrap();
    db.clock.advance(30_000);
    let now = db.clock.now_ms();
    // Silent since before now − 60 s: only `old` (its activation counts as its last sign).
    assert_eq!(
        s.mark_silent_unhealthy(now - 60_000).await.unwrap(),
        1,
        "{}",
        db.label
    );
    let o = s.get("old").await.unwrap().unwrap();
    assert_eq!(o.status, NodeStatus::Unhealthy);
    assert_eq!(o.unhealthy_at, Some(now));
    assert_eq!(
        o.status_reason.as_deref(),
        Some("no heartbeat for three intervals")
    );
    assert_eq!(
        s.get("beat").await.unwrap().unwrap().status,
        NodeStatus::Active
    );
    assert_eq!(
        s.get("unh").await.unwrap().unwrap().updated_at,
        unh.updated_at
    );
    assert_eq!(s.mark_silent_unhealthy(now - 60_000).await.unwrap(), 0);
    let _ = old;
});

each_db!(leases_take_renew_steal_release, |db| {
    let s = &db.store;
    assert!(s.acquire_lease("reconciler", "a", 10_000).await.unwrap());
    assert!(
        !s.acquire_lease("reconciler", "b", 10_000).await.unwrap(),
        "{}",
        db.label
    );
    assert!(
        s.acquire_lease("other", "b", 10_000).await.unwrap(),
        "leases are by name"
    );
    db.clock.advance(9_000);
    assert!(
        s.acquire_lease("reconciler", "a", 10_000).await.unwrap(),
        "renewed"
    );
    db.clock.advance(9_000);
    assert!(
        !s.acquire_lease("reconciler", "b", 10_000).await.unwrap(),
        "the renewal holds"
    );
    db.clock.advance(1_001);
    assert!(
        s.acquire_lease("reconciler", "b", 10_000).await.unwrap(),
        "stolen after expiry"
    );
    assert!(!s.acquire_lease("reconciler", "a", 10_000).await.unwrap());
    // Only the holder releases.
    s.release_lease("reconciler", "a").await.unwrap();
    assert!(!s.acquire_lease("reconciler", "a", 10_000).await.unwrap());
    s.release_lease("reconciler", "b").await.unwrap();
    assert!(
        s.acquire_lease("reconciler", "a", 10_000).await.unwrap(),
        "free after release"
    );
});

each_db!(list_filters_and_pages, |db| {
    let s = &db.store;
    let mut names = Vec::new();
    for i in 0..25 {
        let (p, g, m) = match i % 3 {
            0 => ("aws", "H100", "llama"),
            1 => ("gcp", "A100", "qwen"),
            _ => ("aws", "L4", "qwen"),
        };
        let name = format!("n{i:02}");
        add_with(s, &name, p, g, m).await;
        names.push(name);
        // Pairs share a creation time, so the page boundary falls inside equal times.
        if i % 2 == 1 {
            db.clock.advance(1);
        }
    }
    let first = s.get("n00").await.unwrap().unwrap();
    assert!(
        s.transition(
            &first.id,
            &[NodeStatus::Requested],
            NodeStatus::Failed,
            None
        )
        .await
        .unwrap()
    );

    // Oldest first, ties by id: the order the pages must reproduce.
    let all = s
        .list(&ListQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 25, "{}", db.label);
    let key = |n: &Node| (n.created_at, n.id.clone());
    assert!(all.windows(2).all(|w| key(&w[0]) < key(&w[1])));
    assert!(
        all.iter().all(|n| n.heartbeat.is_none()),
        "lists carry no report"
    );
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .list(&ListQuery {
                after: after.clone(),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        after = page.last().map(key);
        let len = page.len();
        paged.extend(page);
        if len < 10 {
            break;
        }
    }
    assert_eq!(
        paged.iter().map(|n| &n.id).collect::<Vec<_>>(),
        all.iter().map(|n| &n.id).collect::<Vec<_>>(),
        "{}: pages cover every row once, in order",
        db.label
    );

    let count = |q: ListQuery| async move { s.list(&q).await.unwrap() };
    let aws = count(ListQuery {
        provider: Some("aws".into()),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(aws.len(), 17);
    assert!(aws.iter().all(|n| n.provider == "aws"));
    let l4_qwen = count(ListQuery {
        gpu: Some("L4".into()),
        model: Some("qwen".into()),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(l4_qwen.len(), 8);
    let failed_or_requested_gcp = count(ListQuery {
        status: vec![NodeStatus::Failed, NodeStatus::Requested],
        provider: Some("gcp".into()),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(failed_or_requested_gcp.len(), 8);
    let failed = count(ListQuery {
        status: vec![NodeStatus::Failed],
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(
        failed
            .iter()
            .map(|n| n.cluster_name.as_str())
            .collect::<Vec<_>>(),
        ["n00"]
    );
    // Filters and a cursor together.
    let later_aws = count(ListQuery {
        provider: Some("aws".into()),
        after: Some(key(&aws[15])),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(
        later_aws.iter().map(|n| &n.id).collect::<Vec<_>>(),
        [&aws[16].id]
    );
    let none = count(ListQuery {
        model: Some("nope".into()),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert!(none.is_empty());
});

each_db!(live_metric_rows_and_price, |db| {
    let s = &db.store;
    for (i, st) in NodeStatus::ALL.into_iter().enumerate() {
        let n = node_in(s, &format!("n{i}"), st).await;
        // A report from every node; only those that take heartbeats store it.
        s.heartbeat(&n.id, Some(&report(&n.id, i as f64)))
            .await
            .unwrap();
    }
    let live: Vec<NodeStatus> = s.live().await.unwrap().iter().map(|n| n.status).collect();
    assert_eq!(live.len(), NodeStatus::LIVE.len(), "{}", db.label);
    assert!(live.iter().all(|s| !s.is_final()));

    let a = s.get("n3").await.unwrap().unwrap(); // active
    s.set_price(&a.id, 2.75).await.unwrap();
    assert_eq!(s.get("n3").await.unwrap().unwrap().hourly_price, Some(2.75));

    let rows = s.metric_rows().await.unwrap();
    assert_eq!(rows.len(), NodeStatus::ALL.len());
    for r in &rows {
        let serving = matches!(r.status.as_str(), "active" | "unhealthy" | "draining");
        assert_eq!(r.heartbeat.is_some(), serving, "{}: {}", db.label, r.status);
        assert_eq!(
            (r.provider.as_str(), r.gpu.as_str(), r.engine.as_str()),
            ("aws", "H100", "llamacpp")
        );
        let node = s.get(&r.cluster_name).await.unwrap().unwrap();
        assert_eq!(r.status, node.status.as_str());
        assert_eq!(
            (
                r.launching_at,
                r.initializing_at,
                r.active_at,
                r.last_heartbeat_at,
                r.hourly_price
            ),
            (
                node.launching_at,
                node.initializing_at,
                node.active_at,
                node.last_heartbeat_at,
                node.hourly_price
            )
        );
    }
    // The report shown is the one that node sent.
    let active = rows.iter().find(|r| r.cluster_name == "n3").unwrap();
    assert_eq!(active.heartbeat.as_ref().unwrap().uptime_seconds, 3.0);
});

/// A database as version 1 left it (a node with `vllm_args`) migrates to the latest version
/// with its rows intact (no pool), and migrating again does nothing.
#[tokio::test]
async fn a_version_1_database_migrates() {
    for db in unmigrated("v1").await {
        let s = &db.store;
        s.migrate_to(1).await.expect("version 1");
        on_db!(s, write, |pool| sqlx::query(
            "INSERT INTO nodes (id, cluster_name, provider, region, gpu_type, gpu_count, \
             model_name, use_spot, disk_size, vllm_args, status, created_at, updated_at, \
             agent_token_hash) VALUES ('id-1', 'old', 'aws', 'r', 'A100', 1, 'm', 0, 100, \
             '[\"--enforce-eager\"]', 'active', 5, 6, 'hash-old')"
        )
        .execute(pool)
        .await
        .map(drop))
        .expect("a version-1 row");
        s.migrate().await.expect("version 2");
        s.migrate().await.expect("a second run is a no-op");
        let n = s.get("old").await.unwrap().expect("the old node");
        assert_eq!(n.engine, Engine::Vllm, "{}: the default engine", db.label);
        assert_eq!(
            n.engine_args,
            ["--enforce-eager"],
            "{}: vllm_args kept",
            db.label
        );
        assert_eq!((n.image, n.heartbeat, n.pool), (None, None, None));
        assert_eq!(n.status, NodeStatus::Active);
        let versions: Vec<i64> = on_db!(s, read, |pool| sqlx::query_scalar(
            "SELECT version FROM skydeck_migrations ORDER BY version"
        )
        .fetch_all(pool)
        .await)
        .unwrap();
        assert_eq!(versions, [1, 2, 3]);
        // The migrated table takes new rows with the new columns.
        add(s, "new").await;
    }
}

each_db!(
    /// A listed node is the node read alone (less its report), every column included: SQLite
    /// builds list pages as JSON, so quotes, backslashes, non-ASCII text, NULLs, prices and
    /// large times must come back exactly.
    a_listed_node_equals_the_node_read_alone,
    |db| {
        let s = &db.store;
        use NodeStatus::*;
        for (i, status) in NodeStatus::ALL.into_iter().enumerate() {
            let name = format!("n{i}-\"q\"\\é✓");
            let n = node_in(s, &name, status).await;
            s.set_price(&n.id, 12.345_678_901_234_5 * (i as f64 + 1.0))
                .await
                .unwrap();
            if status == Active {
                s.heartbeat(&n.id, Some(&report(&n.id, 3.5))).await.unwrap();
            }
            if status == Unhealthy {
                s.back_off(&n.id, 60_000, "reason with \"quotes\", <b>html</b> and\nnewline")
                    .await
                    .unwrap();
            }
            db.clock.advance(1);
        }
        let page = s
            .list(&ListQuery {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(page.len(), NodeStatus::ALL.len(), "{}", db.label);
        for listed in page {
            let mut alone = s.get(&listed.cluster_name).await.unwrap().expect("the node");
            alone.heartbeat = None;
            assert_eq!(
                serde_json::to_value(&listed).unwrap(),
                serde_json::to_value(&alone).unwrap(),
                "{}: {}",
                db.label,
                listed.cluster_name
            );
        }
        // The pool controller's read (a JSON page on SQLite too) returns the same nodes, with
        // their reports.
        on_db!(s, write, |pool| sqlx::query("UPDATE nodes SET pool = 'chat-\"é'")
            .execute(pool)
            .await
            .map(drop))
        .unwrap();
        let pooled = s.pool_nodes(0).await.unwrap();
        assert_eq!(pooled.len(), NodeStatus::ALL.len(), "{}", db.label);
        for listed in pooled {
            let alone = s.get(&listed.cluster_name).await.unwrap().expect("the node");
            assert_eq!(alone.pool.as_deref(), Some("chat-\"é"));
            assert_eq!(
                serde_json::to_value(&listed).unwrap(),
                serde_json::to_value(&alone).unwrap(),
                "{}: {}",
                db.label,
                listed.cluster_name
            );
        }
        let empty = s
            .list(&ListQuery {
                provider: Some("nobody".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(empty.is_empty());
    }
);
