//! Pools end to end: the real `skydeck control` against the protocol-faithful fake SkyPilot
//! fleet, with real `skydeck agent`s beside real `llama-server`s (SmolLM2-135M): a pool made
//! with `skydeck pools create` scales up under a load of real completions and back down when
//! it stops, and `skydeck pools events` tells why; and two replicas on PostgreSQL where the
//! leader is killed with SIGKILL mid-scale and the survivor finishes it without a duplicate.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use skydeck_testkit::fleet::FakeFleet;

use crate::control::{
    ADMIN_KEY, LLAMACPP_MODEL, Plane, TestDb, agent_exit, llama_server, llamacpp_agent, metric,
    promtool_check, wait_until,
};

/// The node of `pool` whose cluster is not in `known`, once one is `initializing`.
fn new_node(plane: &Plane, known: &[String]) -> Value {
    let mut found = Value::Null;
    wait_until(Duration::from_secs(60), "a new pool node", || {
        let (_, page) = plane.admin("GET", "/admin/nodes?status=initializing", None);
        if let Some(n) = page["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| !known.iter().any(|k| n["cluster_name"] == k.as_str()))
        {
            found = n.clone();
            true
        } else {
            false
        }
    });
    found
}

/// `skydeck pools ARGS` against `plane`, with a HOME of its own.
fn pools_cli(plane: &Plane, args: &[&str]) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(assert_cmd::cargo::cargo_bin!("skydeck"))
        .args(["pools", "--url", &plane.url])
        .args(args)
        .env("SKYDECK_ADMIN_API_KEY", ADMIN_KEY)
        .env("HOME", home.path())
        .output()
        .unwrap()
}

fn pool(plane: &Plane) -> Value {
    let (code, v) = plane.admin("GET", "/admin/pools/chat", None);
    assert_eq!(code, 200, "{v}");
    v
}

#[test]
fn a_pool_scales_up_under_real_completions_and_back_down() {
    // One slot each: a second concurrent request waits, which is the load the pool scales on.
    let slot = ["-c", "2048", "-np", "1", "-t", "1"];
    let (_llama_a, port_a) = llama_server(&slot);
    let (_llama_b, port_b) = llama_server(&slot);
    let db = TestDb::sqlite();
    let fleet = FakeFleet::start(Duration::from_millis(300));
    let plane = Plane::start(&db, &fleet.url(), &["--heartbeat-interval", "1s"]);
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("chat.json");
    std::fs::write(
        &spec,
        json!({
            "name": "chat",
            "template": {
                "placements": [{"provider": "gcp", "region": "us-central1"}],
                "gpu": "L4", "engine": "llamacpp", "model": LLAMACPP_MODEL
            },
            "min_nodes": 1, "max_nodes": 2,
            "target_waiting_per_node": 1,
            "scale_up_delay_seconds": 3, "scale_down_delay_seconds": 5
        })
        .to_string(),
    )
    .unwrap();
    let out = pools_cli(&plane, &["create", spec.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("bounds             1..=2"));

    let first = new_node(&plane, &[]);
    assert_eq!(first["pool"], "chat", "{first}");
    let first_name = first["cluster_name"].as_str().unwrap().to_string();
    let mut agent_a = llamacpp_agent(&plane, &fleet, &first, port_a);
    plane.wait_status(&first_name, "active", Duration::from_secs(120));

    // Four clients keep the one slot busy: about three requests wait at every heartbeat.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(120))
                    .build()
                    .unwrap();
                let mut done = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let r = http
                        .post(format!("http://127.0.0.1:{port_a}/completion"))
                        .json(&json!({"prompt": "Once upon a time", "n_predict": 32, "ignore_eos": true}))
                        .send();
                    if r.is_ok_and(|r| r.status().is_success()) {
                        done += 1;
                    }
                }
                done
            })
        })
        .collect();
    let second = new_node(&plane, std::slice::from_ref(&first_name));
    let second_name = second["cluster_name"].as_str().unwrap().to_string();
    let v = pool(&plane);
    assert_eq!(v["desired"], 2, "{v:#}");
    let _agent_b = llamacpp_agent(&plane, &fleet, &second, port_b);
    plane.wait_status(&second_name, "active", Duration::from_secs(120));

    // The load stops: back to one node after the down-delay; the idle one drains.
    stop.store(true, Ordering::Relaxed);
    let served: u32 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(served > 0);
    wait_until(Duration::from_secs(60), "the pool back at one node", || {
        let v = pool(&plane);
        v["desired"] == 1 && v["size"] == 1
    });
    let drained = plane.wait_status(&second_name, "terminated", Duration::from_secs(60));
    assert!(drained["draining_at"].is_string(), "{drained:#}");
    assert_eq!(plane.status(&first_name)["status"], "active");

    let out = pools_cli(&plane, &["events", "chat", "--limit", "50"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("scale_up           scale up 1 → 2: waiting/node "),
        "{text}"
    );
    assert!(
        text.contains("scale_down         scale down 2 → 1: waiting/node 0.0 < 0.5 for "),
        "{text}"
    );
    assert!(
        text.contains(&format!("drain {second_name}: 2 nodes > desired 1")),
        "{text}"
    );

    let metrics = plane.metrics();
    promtool_check(&metrics);
    assert_eq!(
        metric(
            &metrics,
            "skydeck_control_pool_desired_nodes{pool=\"chat\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "skydeck_control_pool_decisions_total{kind=\"scale_up\",pool=\"chat\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "skydeck_control_pool_scale_up_seconds_count{pool=\"chat\"}"
        ),
        Some(1.0),
        "{metrics}"
    );

    // Deleting the pool drains its last node; the agent exits and the pool goes.
    let out = pools_cli(&plane, &["delete", "chat"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    plane.wait_status(&first_name, "terminated", Duration::from_secs(60));
    wait_until(Duration::from_secs(30), "the pool removed", || {
        plane.admin("GET", "/admin/pools/chat", None).0 == 404
    });
    let (status, err) = agent_exit(&mut agent_a.0, Duration::from_secs(30));
    assert!(status.success(), "{err}");
    eprintln!("pool e2e: {served} real completions served while the pool scaled 1 → 2 → 1");
}

/// Two replicas on PostgreSQL; the leader is killed with SIGKILL while the pool's launches are
/// reaching SkyPilot (each /launch answer takes a second); the survivor finishes the scale:
/// exactly `min_nodes` clusters, each launched once.
#[test]
fn the_survivor_finishes_a_pools_scale_after_kill_9() {
    let db = TestDb::postgres();
    let fleet = FakeFleet::start(Duration::from_secs(1));
    fleet.set_submit_delay(Duration::from_secs(1));
    let mut a = Plane::start(&db, &fleet.url(), &["--replica-id", "replica-a"]);
    wait_until(Duration::from_secs(20), "replica a leads", || {
        metric(&a.metrics(), "skydeck_control_reconciler_leader") == Some(1.0)
    });
    let b = Plane::start(&db, &fleet.url(), &["--replica-id", "replica-b"]);
    let (code, v) = b.admin(
        "POST",
        "/admin/pools",
        Some(json!({
            "name": "batch",
            "template": {"placements": [{"provider": "aws", "region": "us-west-2"}],
                         "gpu": "A10G", "model": "meta-llama/Llama-2-7b-chat-hf"},
            "min_nodes": 6, "max_nodes": 6
        })),
    );
    assert_eq!(code, 201, "{v}");
    wait_until(
        Duration::from_secs(30),
        "the first launches in flight",
        || fleet.launches().len() >= 2,
    );
    a.kill9();
    let at_kill = fleet.launches().len();
    wait_until(Duration::from_secs(90), "six pool nodes up", || {
        let (_, page) = b.admin("GET", "/admin/nodes?status=initializing&limit=100", None);
        page["nodes"].as_array().map_or(0, Vec::len) == 6
    });
    // Settled: nothing more launches.
    std::thread::sleep(Duration::from_secs(3));
    let launches = fleet.launches();
    let mut names: Vec<&String> = launches.iter().map(|(c, _)| c).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), launches.len(), "a cluster launched twice");
    assert_eq!(launches.len(), 6, "{launches:?}");
    let (_, v) = b.admin("GET", "/admin/pools/batch", None);
    assert_eq!(
        (v["size"].clone(), v["desired"].clone()),
        (json!(6), json!(6)),
        "{v:#}"
    );
    eprintln!(
        "pool failover: {at_kill} of 6 launches had reached SkyPilot when the leader was killed"
    );
}
