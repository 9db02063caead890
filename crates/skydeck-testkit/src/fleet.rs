//! [`FakeFleet`]: a stateful fake of the SkyPilot API server for what no offline server can do
//! (a launch that succeeds, a slow launch, a quota failure, a cluster that disappears, a spot
//! preemption, an idle stop). It speaks the real protocol: `POST /launch`, `/down`, `/stop`,
//! `/autostop`, `/status`, `/cost_report` return a request id in `X-Skypilot-Request-ID` and
//! `null` (or the HTTP refusal a cluster was set up with); `GET /api/status`
//! lists requests in the readable form; `GET /api/get` long-polls and answers 200 with a
//! `RequestPayload` or 500 with `{"detail": RequestPayload}`, with `return_value` and `error`
//! as JSON text, as in `tests/fixtures/skypilot/`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::http::{Recorded, read_request};

/// How the next launches end.
#[derive(Debug, Clone)]
pub enum LaunchOutcome {
    /// The cluster comes up.
    Succeed,
    /// The request fails with this exception type and message (e.g. a quota error).
    Fail {
        /// Python exception class.
        error_type: String,
        /// Its message.
        message: String,
    },
}

#[derive(Debug, Clone)]
struct FakeRequest {
    name: &'static str,
    cluster: Option<String>,
    created_at: f64,
    ready_at: f64,
    finished_at: Option<f64>,
    status: &'static str,
    return_value: String,
    error: String,
    action: Action,
}

#[derive(Debug, Clone)]
enum Action {
    Launch(LaunchOutcome),
    Down,
    Stop,
    Autostop { idle_minutes: i64, down: bool },
    Value(String),
}

#[derive(Debug, Clone)]
struct Cluster {
    status: &'static str,
    launched_at: f64,
    autostop: i64,
    to_down: bool,
    /// Fields that replace the default record's (labels, user, is_managed, ...).
    fields: serde_json::Map<String, Value>,
}

impl Cluster {
    fn new(status: &'static str, launched_at: f64) -> Self {
        Cluster {
            status,
            launched_at,
            autostop: -1,
            to_down: false,
            fields: serde_json::Map::new(),
        }
    }
}

/// One `/autostop` the fleet received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutostopCall {
    /// The cluster.
    pub cluster: String,
    /// `idle_minutes` as sent.
    pub idle_minutes: i64,
    /// `wait_for` as sent (`None` when absent or null).
    pub wait_for: Option<String>,
    /// `down` as sent (false when absent, the server's default).
    pub down: bool,
}

/// A submission refused before any request is created, as the real server refuses a cluster
/// the caller may not write (403) with `{"detail": ...}`.
#[derive(Debug, Clone)]
struct Refusal {
    status: u16,
    detail: String,
}

#[derive(Debug, Default)]
struct State {
    clusters: BTreeMap<String, Cluster>,
    requests: HashMap<String, FakeRequest>,
    order: Vec<String>,
    launches: Vec<(String, String)>,
    downs: Vec<String>,
    stops: Vec<String>,
    autostops: Vec<AutostopCall>,
    refusals: HashMap<String, Refusal>,
    launch_delay: Duration,
    submit_delay: Duration,
    outcome: Option<LaunchOutcome>,
    next_id: u64,
    hourly_price: f64,
}

/// A stateful fake SkyPilot API server on 127.0.0.1, stopped when dropped.
pub struct FakeFleet {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    runtime: Option<tokio::runtime::Runtime>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

impl FakeFleet {
    /// Starts an empty fleet where launches succeed after `launch_delay`.
    pub fn start(launch_delay: Duration) -> Self {
        Self::start_on(launch_delay, "127.0.0.1:0")
    }

    /// Like [`FakeFleet::start`] on a given address (to restart on the same port).
    pub fn start_on(launch_delay: Duration, addr: &str) -> Self {
        let std_listener = std::net::TcpListener::bind(addr).expect("bind 127.0.0.1");
        let addr = std_listener.local_addr().expect("local addr");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let state = Arc::new(Mutex::new(State {
            launch_delay,
            hourly_price: 1.006,
            ..State::default()
        }));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let st = Arc::clone(&state);
        runtime.spawn(async move {
            let listener = TcpListener::from_std(std_listener).expect("listener");
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let st = Arc::clone(&st);
                tokio::spawn(async move {
                    let _ = serve(sock, st).await;
                });
            }
        });
        FakeFleet {
            addr,
            state,
            runtime: Some(runtime),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Launches submitted from now on take `d`.
    pub fn set_launch_delay(&self, d: Duration) {
        self.state.lock().unwrap().launch_delay = d;
    }

    /// `/launch` answers only after `d` (the request is recorded at once): a control plane
    /// killed meanwhile never learns the request id SkyPilot already created.
    pub fn set_submit_delay(&self, d: Duration) {
        self.state.lock().unwrap().submit_delay = d;
    }

    /// Launches submitted from now on end this way (`None`: succeed).
    pub fn set_launch_outcome(&self, outcome: Option<LaunchOutcome>) {
        self.state.lock().unwrap().outcome = outcome;
    }

    /// Every `/launch` received: (cluster name, task YAML).
    pub fn launches(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().launches.clone()
    }

    /// Every `/down` received (cluster names).
    pub fn downs(&self) -> Vec<String> {
        self.state.lock().unwrap().downs.clone()
    }

    /// Every `/stop` received (cluster names), refused ones included.
    pub fn stops(&self) -> Vec<String> {
        self.state.lock().unwrap().stops.clone()
    }

    /// Every `/autostop` received, refused ones included.
    pub fn autostops(&self) -> Vec<AutostopCall> {
        self.state.lock().unwrap().autostops.clone()
    }

    /// Every cluster-changing request created, in order: (`sky.launch`/`sky.down`/`sky.stop`/
    /// `sky.autostop`, cluster). A refused submission creates none.
    pub fn cluster_requests(&self) -> Vec<(String, String)> {
        let st = self.state.lock().unwrap();
        st.order
            .iter()
            .map(|id| &st.requests[id])
            .filter(|r| r.name != "sky.status" && r.name != "sky.cost_report")
            .map(|r| (r.name.to_string(), r.cluster.clone().unwrap_or_default()))
            .collect()
    }

    /// The clusters and their statuses.
    pub fn clusters(&self) -> BTreeMap<String, String> {
        let mut st = self.state.lock().unwrap();
        settle(&mut st, now());
        st.clusters
            .iter()
            .map(|(k, v)| (k.clone(), v.status.to_string()))
            .collect()
    }

    /// Adds a cluster nobody launched through this fake (as another tool would).
    pub fn add_cluster(&self, name: &str) {
        self.add_cluster_with(name, json!({}));
    }

    /// Adds an UP cluster whose `/status` record has `fields` (a JSON object) in place of the
    /// defaults: e.g. `{"labels": {...}}`, `{"user_name": "bob", "workspace": "ml"}`,
    /// `{"accelerators": "{'H100': 8}", "nodes": 2}`, or `{"is_managed": true,
    /// "last_creation_yaml": "service: ..."}` for a SkyServe replica. A jobs or serve controller
    /// is a cluster named `sky-jobs-controller-<hash>` / `sky-serve-controller-<hash>`.
    pub fn add_cluster_with(&self, name: &str, fields: Value) {
        let mut c = Cluster::new("UP", now());
        if let Value::Object(m) = fields {
            c.fields = m;
        }
        self.state
            .lock()
            .unwrap()
            .clusters
            .insert(name.to_string(), c);
    }

    /// Autostop as the cluster's record shows it: (`autostop` minutes, `to_down`).
    pub fn autostop_of(&self, name: &str) -> Option<(i64, bool)> {
        let mut st = self.state.lock().unwrap();
        settle(&mut st, now());
        st.clusters.get(name).map(|c| (c.autostop, c.to_down))
    }

    /// `/launch`, `/down`, `/stop` and `/autostop` of `cluster` are refused with HTTP `status`
    /// and `{"detail": detail}`, before any request is created (`None`: accepted again).
    pub fn refuse_cluster(&self, cluster: &str, refusal: Option<(u16, &str)>) {
        let mut st = self.state.lock().unwrap();
        match refusal {
            Some((status, detail)) => st.refusals.insert(
                cluster.to_string(),
                Refusal {
                    status,
                    detail: detail.to_string(),
                },
            ),
            None => st.refusals.remove(cluster),
        };
    }

    /// Removes a cluster, as when it is taken down outside skydeck.
    pub fn remove_cluster(&self, name: &str) {
        self.state.lock().unwrap().clusters.remove(name);
    }

    /// Sets a cluster's status (a preempted spot cluster shows `STOPPED` or `INIT`).
    pub fn set_cluster_status(&self, name: &str, status: &'static str) {
        if let Some(c) = self.state.lock().unwrap().clusters.get_mut(name) {
            c.status = status;
        }
    }
}

impl Drop for FakeFleet {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Finishes every request whose time has come.
fn settle(st: &mut State, t: f64) {
    let due: Vec<String> = st
        .order
        .iter()
        .filter(|id| {
            let r = &st.requests[*id];
            r.finished_at.is_none() && r.ready_at <= t
        })
        .cloned()
        .collect();
    for id in due {
        let mut r = st.requests[&id].clone();
        let cluster = r.cluster.clone().unwrap_or_default();
        match &r.action {
            Action::Launch(LaunchOutcome::Succeed) => {
                if let Some(c) = st.clusters.get_mut(&cluster) {
                    c.status = "UP";
                }
                r.status = "SUCCEEDED";
                r.return_value = json!({"job_id": 1, "handle": "gAROLg=="}).to_string();
            }
            Action::Launch(LaunchOutcome::Fail {
                error_type,
                message,
            }) => {
                st.clusters.remove(&cluster);
                r.status = "FAILED";
                r.error = error_json(error_type, message);
            }
            Action::Down => {
                if st.clusters.remove(&cluster).is_some() {
                    r.status = "SUCCEEDED";
                } else {
                    r.status = "FAILED";
                    r.error = does_not_exist(&cluster);
                }
            }
            Action::Stop => match st.clusters.get_mut(&cluster) {
                Some(c) => {
                    c.status = "STOPPED";
                    r.status = "SUCCEEDED";
                }
                None => {
                    r.status = "FAILED";
                    r.error = does_not_exist(&cluster);
                }
            },
            Action::Autostop { idle_minutes, down } => match st.clusters.get_mut(&cluster) {
                Some(c) => {
                    c.autostop = *idle_minutes;
                    c.to_down = *down && *idle_minutes >= 0;
                    r.status = "SUCCEEDED";
                }
                None => {
                    r.status = "FAILED";
                    r.error = does_not_exist(&cluster);
                }
            },
            Action::Value(v) => {
                r.status = "SUCCEEDED";
                r.return_value = v.clone();
            }
        }
        r.finished_at = Some(t);
        st.requests.insert(id, r);
    }
}

/// What SkyPilot's `check_cluster_available` raises for a cluster it does not know.
fn does_not_exist(cluster: &str) -> String {
    error_json(
        "ClusterDoesNotExist",
        &format!("Cluster '{cluster}' does not exist."),
    )
}

fn error_json(error_type: &str, message: &str) -> String {
    // `object` is a pickle on a real server; clients read only type and message.
    json!({"object": "gAROLg==", "type": error_type, "message": message}).to_string()
}

fn cluster_record(name: &str, c: &Cluster) -> Value {
    let mut record = json!({
        "name": name, "launched_at": c.launched_at as i64, "handle": "gAROLg==",
        "last_use": format!("sky launch -c {name}"), "status": c.status, "autostop": c.autostop,
        "to_down": c.to_down, "owner": null, "metadata": {}, "cluster_hash": format!("{:x}", name.len() * 7919),
        "cluster_ever_up": true, "status_updated_at": c.launched_at as i64, "user_hash": "fcd1e5cf",
        "user_name": "root", "workspace": "default", "is_managed": false, "nodes": 1,
        "cloud": "AWS", "region": "us-west-2", "zone": "us-west-2a", "cpus": "4", "memory": "16",
        "accelerators": "{'A10G': 1}", "resources_str": "1x AWS(g5.xlarge, {'A10G': 1})",
        "resources_str_full": "1x AWS(g5.xlarge, cpus=4, mem=16, {'A10G': 1})",
        "infra": "AWS (us-west-2)", "credentials": null, "last_event": "Cluster launched successfully."
    });
    for (k, v) in &c.fields {
        record[k] = v.clone();
    }
    record
}

fn payload(id: &str, r: &FakeRequest) -> Value {
    json!({
        "request_id": id, "name": r.name, "entrypoint": "gASVFwAAAAAAAACMCHNreS5jb3JllIwGc3RhdHVzlJOULg==",
        "request_body": "gAROLg==", "status": r.status, "created_at": r.created_at,
        "user_id": "fcd1e5cf", "return_value": r.return_value, "error": r.error, "pid": 4242,
        "schedule_type": if r.name == "sky.launch" { "long" } else { "short" }, "user_name": null,
        "cluster_name": r.cluster, "status_msg": null, "should_retry": false,
        "finished_at": r.finished_at, "file_mounts_blob_id": null
    })
}

fn query_param<'a>(path: &'a str, key: &str) -> Vec<&'a str> {
    path.split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .collect()
}

/// FastAPI's 422 for a missing required body field.
fn missing_field(field: &str) -> Reply {
    reply(
        422,
        json!({"detail": [{"type": "missing", "loc": ["body", field], "msg": "Field required"}]})
            .to_string(),
    )
}

struct Reply {
    status: u16,
    body: String,
    request_id: Option<String>,
}

fn reply(status: u16, body: impl Into<String>) -> Reply {
    Reply {
        status,
        body: body.into(),
        request_id: None,
    }
}

async fn serve(mut sock: TcpStream, st: Arc<Mutex<State>>) -> std::io::Result<()> {
    loop {
        let Some(req) = read_request(&mut sock).await? else {
            return Ok(());
        };
        let r = route(&req, &st).await;
        let mut out = format!(
            "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             x-skypilot-api-version: 62\r\nx-skypilot-version: 0.14.1\r\n",
            r.status,
            r.body.len()
        );
        if let Some(id) = &r.request_id {
            out.push_str(&format!("x-skypilot-request-id: {id}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&r.body);
        sock.write_all(out.as_bytes()).await?;
    }
}

fn submit(path: &str, body: &Value, st: &Arc<Mutex<State>>, t: f64) -> Reply {
    let mut s = st.lock().unwrap();
    settle(&mut s, t);
    s.next_id += 1;
    let id = format!("0000fa4e-0000-4000-8000-{:012}", s.next_id);
    let cluster = body["cluster_name"].as_str().map(str::to_string);
    if matches!(path, "/launch" | "/down" | "/stop" | "/autostop") {
        // The real server validates the body (422) before its permission check (403).
        if cluster.is_none() {
            return missing_field("cluster_name");
        }
        if path == "/autostop" && !body["idle_minutes"].is_i64() {
            return missing_field("idle_minutes");
        }
        let c = cluster.clone().unwrap_or_default();
        match path {
            "/stop" => s.stops.push(c.clone()),
            "/autostop" => s.autostops.push(AutostopCall {
                cluster: c.clone(),
                idle_minutes: body["idle_minutes"].as_i64().unwrap_or_default(),
                wait_for: body["wait_for"].as_str().map(str::to_string),
                down: body["down"].as_bool().unwrap_or(false),
            }),
            _ => {}
        }
        if let Some(r) = s.refusals.get(&c) {
            return reply(r.status, json!({ "detail": r.detail }).to_string());
        }
    }
    let (name, action, delay) = match path {
        "/launch" => {
            let c = cluster.clone().unwrap_or_default();
            let task = body["task"].as_str().unwrap_or_default().to_string();
            s.launches.push((c.clone(), task));
            s.clusters.entry(c).or_insert(Cluster::new("INIT", t));
            let outcome = s.outcome.clone().unwrap_or(LaunchOutcome::Succeed);
            ("sky.launch", Action::Launch(outcome), s.launch_delay)
        }
        "/down" => {
            s.downs.push(cluster.clone().unwrap_or_default());
            ("sky.down", Action::Down, Duration::from_millis(200))
        }
        "/stop" => ("sky.stop", Action::Stop, Duration::from_millis(200)),
        "/autostop" => (
            "sky.autostop",
            Action::Autostop {
                idle_minutes: body["idle_minutes"].as_i64().unwrap_or_default(),
                down: body["down"].as_bool().unwrap_or(false),
            },
            Duration::from_millis(50),
        ),
        "/status" => {
            let list: Vec<Value> = s
                .clusters
                .iter()
                .map(|(n, c)| cluster_record(n, c))
                .collect();
            (
                "sky.status",
                Action::Value(Value::Array(list).to_string()),
                Duration::ZERO,
            )
        }
        _ => {
            let wanted: Option<Vec<String>> = body["cluster_names"].as_array().map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            });
            let price = s.hourly_price;
            let list: Vec<Value> = s
                        .clusters
                        .iter()
                        .filter(|(n, _)| wanted.as_ref().is_none_or(|w| w.contains(n)))
                        .map(|(n, c)| {
                            let duration = (t - c.launched_at).max(0.0);
                            json!({"name": n, "launched_at": c.launched_at as i64, "duration": duration as i64,
                                   "num_nodes": 1, "total_cost": price * duration / 3600.0, "status": c.status,
                                   "cloud": "AWS", "region": "us-west-2", "accelerators": "{'A10G': 1}",
                                   "resources_str": "1x AWS(g5.xlarge, {'A10G': 1})", "user_name": "root",
                                   "workspace": "default", "usage_intervals": [[c.launched_at, null]]})
                        })
                        .collect();
            (
                "sky.cost_report",
                Action::Value(Value::Array(list).to_string()),
                Duration::ZERO,
            )
        }
    };
    let r = FakeRequest {
        name,
        cluster,
        created_at: t,
        ready_at: t + delay.as_secs_f64(),
        finished_at: None,
        status: "RUNNING",
        return_value: "null".into(),
        error: "null".into(),
        action,
    };
    s.requests.insert(id.clone(), r);
    s.order.push(id.clone());
    Reply {
        status: 200,
        body: "null".into(),
        request_id: Some(id),
    }
}

async fn route(req: &Recorded, st: &Arc<Mutex<State>>) -> Reply {
    let path = req.path.split('?').next().unwrap_or_default();
    let t = now();
    match (req.method.as_str(), path) {
        ("GET", "/api/health") => reply(200, crate::fixture("api_health.json")),
        ("POST", "/launch" | "/down" | "/stop" | "/autostop" | "/status" | "/cost_report") => {
            let body: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
            let reply = submit(path, &body, st, t);
            let delay = st.lock().unwrap().submit_delay;
            if path == "/launch" && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            reply
        }
        ("GET", "/api/status") => {
            let mut s = st.lock().unwrap();
            settle(&mut s, t);
            let ids = query_param(&req.path, "request_ids");
            let cluster = query_param(&req.path, "cluster_name");
            let rows: Vec<Value> = s
                .order
                .iter()
                .filter(|id| ids.is_empty() || ids.iter().any(|p| id.starts_with(p)))
                .filter(|id| {
                    cluster.is_empty()
                        || s.requests[*id].cluster.as_deref() == cluster.first().copied()
                })
                .map(|id| {
                    let r = &s.requests[id];
                    let mut p = payload(id, r);
                    // The readable form: results are not included.
                    p["return_value"] = "null".into();
                    p["error"] = "null".into();
                    p["entrypoint"] = r.name.trim_start_matches("sky.").into();
                    p["user_name"] = "root".into();
                    p
                })
                .collect();
            reply(200, Value::Array(rows).to_string())
        }
        ("GET", "/api/get") => {
            let id = query_param(&req.path, "request_id")
                .first()
                .copied()
                .unwrap_or_default()
                .to_string();
            loop {
                let wait = {
                    let mut s = st.lock().unwrap();
                    settle(&mut s, now());
                    let Some(r) = s.requests.get(&id) else {
                        return reply(404, format!("{{\"detail\":\"Request '{id}' not found\"}}"));
                    };
                    if r.finished_at.is_some() {
                        let p = payload(&id, r);
                        return if r.status == "FAILED" {
                            reply(500, json!({ "detail": p }).to_string())
                        } else {
                            reply(200, p.to_string())
                        };
                    }
                    (r.ready_at - now()).clamp(0.01, 0.5)
                };
                tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            }
        }
        _ => reply(404, r#"{"detail":"Not Found"}"#),
    }
}
