//! Peers for the agent's tests: a control plane that records what the agent sends and can go
//! away and come back on the same port, and a local server that speaks vLLM 0.33 exactly as
//! the agent sees it (port closed while the model loads, `/health` 200 with an empty body,
//! `/v1/models`, `/version`, and `vllm:*` metrics with vLLM's names, types and labels).
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use skydeck_agent::Config;
use skydeck_contract::Engine;
use skydeck_contract::{AgentReply, Heartbeat, NodeStatus, Order, Register, paths};
use tokio::sync::oneshot;

/// The node's token in every test (the plane refuses any other).
pub const TOKEN: &str = "node-token-4f1c9a";
/// The node's id.
pub const NODE_ID: &str = "6f1f2a9e-3c4b-4d5e-8f90-123456789abc";

/// Polls `cond` every 20 ms until it holds, or panics after `within` naming `what`.
pub async fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A server on a fixed loopback port that can be stopped (the port refuses connections) and
/// started again.
struct Restartable {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Restartable {
    async fn reserve() -> Restartable {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        Restartable {
            addr,
            shutdown: None,
            task: None,
        }
    }

    async fn start(&mut self, app: Router) {
        if self.shutdown.is_some() {
            return;
        }
        let l = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        self.shutdown = Some(tx);
        self.task = Some(tokio::spawn(async move {
            axum::serve(l, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        }));
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            // Open keep-alive connections end the graceful shutdown late; the listener is
            // closed at once, which is what the agent sees.
            t.abort();
            let _ = t.await;
        }
    }
}

/// How the fake control plane answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaneMode {
    /// Records and answers 200 with the configured order.
    Up,
    /// 503 with the contract's error body.
    Unavailable,
    /// 404: the node is gone.
    Gone,
}

/// What the fake control plane saw and will answer.
#[derive(Debug)]
pub struct PlaneState {
    pub registers: Vec<Register>,
    pub heartbeats: Vec<Heartbeat>,
    pub refused: usize,
    pub mode: PlaneMode,
    pub order: Order,
    pub drain_grace_seconds: u64,
}

/// The control plane's agent routes, recording every accepted report.
pub struct FakePlane {
    server: Restartable,
    pub state: Arc<Mutex<PlaneState>>,
}

fn auth_ok(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {TOKEN}"))
}

fn answer(state: &PlaneState) -> Response {
    match state.mode {
        PlaneMode::Up => axum::Json(AgentReply {
            node_id: NODE_ID.into(),
            cluster_name: "skydeck-agent-test".into(),
            status: NodeStatus::Active,
            order: state.order,
            heartbeat_interval_seconds: 1,
            drain_grace_seconds: state.drain_grace_seconds,
        })
        .into_response(),
        PlaneMode::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"error": {"message": "the database is unavailable"}})),
        )
            .into_response(),
        PlaneMode::Gone => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": {"message": "node is terminated"}})),
        )
            .into_response(),
    }
}

/// Checks the token, keeps the report (`keep`) when the plane is up, and answers.
fn record(
    state: &Mutex<PlaneState>,
    headers: &HeaderMap,
    keep: impl FnOnce(&mut PlaneState),
) -> Response {
    let mut s = state.lock().unwrap();
    if !auth_ok(headers) {
        s.refused += 1;
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({"error": {"message": "invalid node token"}})),
        )
            .into_response();
    }
    if s.mode == PlaneMode::Up {
        keep(&mut s);
    }
    answer(&s)
}

impl FakePlane {
    /// A plane on a reserved port, not yet listening.
    pub async fn reserved() -> FakePlane {
        FakePlane {
            server: Restartable::reserve().await,
            state: Arc::new(Mutex::new(PlaneState {
                registers: Vec::new(),
                heartbeats: Vec::new(),
                refused: 0,
                mode: PlaneMode::Up,
                order: Order::Serve,
                drain_grace_seconds: 30,
            })),
        }
    }

    /// A plane already listening.
    pub async fn start() -> FakePlane {
        let mut p = FakePlane::reserved().await;
        p.up().await;
        p
    }

    /// Starts listening (again).
    pub async fn up(&mut self) {
        let state = Arc::clone(&self.state);
        let app = Router::new()
            .route(
                paths::AGENT_REGISTER,
                post(
                    |State(s): State<Arc<Mutex<PlaneState>>>,
                     headers: HeaderMap,
                     axum::Json(body): axum::Json<Register>| async move {
                        record(&s, &headers, |st| st.registers.push(body))
                    },
                ),
            )
            .route(
                paths::AGENT_HEARTBEAT,
                post(
                    |State(s): State<Arc<Mutex<PlaneState>>>,
                     headers: HeaderMap,
                     axum::Json(body): axum::Json<Heartbeat>| async move {
                        record(&s, &headers, |st| st.heartbeats.push(body))
                    },
                ),
            )
            .with_state(state);
        self.server.start(app).await;
    }

    /// Stops listening: the agent's connections are refused.
    pub async fn down(&mut self) {
        self.server.stop().await;
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    pub fn set(&self, f: impl FnOnce(&mut PlaneState)) {
        f(&mut self.state.lock().unwrap());
    }

    pub fn registers(&self) -> usize {
        self.state.lock().unwrap().registers.len()
    }

    pub fn heartbeats(&self) -> Vec<Heartbeat> {
        self.state.lock().unwrap().heartbeats.clone()
    }

    pub fn last_heartbeat(&self) -> Option<Heartbeat> {
        self.state.lock().unwrap().heartbeats.last().cloned()
    }

    /// Whether any heartbeat so far satisfies `f`.
    pub fn saw(&self, f: impl Fn(&Heartbeat) -> bool) -> bool {
        self.state.lock().unwrap().heartbeats.iter().any(f)
    }
}

/// The numbers the vLLM stand-in exposes.
#[derive(Debug, Clone, Default)]
pub struct VllmNumbers {
    pub running: f64,
    pub waiting: f64,
    pub generation_tokens: f64,
    pub prompt_tokens: f64,
    /// Serve a page whose `vllm:num_requests_running` family does not parse.
    pub broken_running_family: bool,
}

/// The model the stand-in serves.
pub const VLLM_MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";

fn vllm_page(n: &VllmNumbers) -> String {
    // As vLLM 0.33 writes them (prometheus_client): gauges with engine and model_name labels,
    // counters with the _total suffix, created samples beside them.
    let labels = format!("engine=\"0\",model_name=\"{VLLM_MODEL}\"");
    let running = if n.broken_running_family {
        format!("vllm:num_requests_running{{{labels}}} not-a-number\n")
    } else {
        format!("vllm:num_requests_running{{{labels}}} {}\n", n.running)
    };
    format!(
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n\
         # TYPE vllm:num_requests_running gauge\n{running}\
         # HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n\
         # TYPE vllm:num_requests_waiting gauge\n\
         vllm:num_requests_waiting{{{labels}}} {}\n\
         # HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n\
         # TYPE vllm:kv_cache_usage_perc gauge\n\
         vllm:kv_cache_usage_perc{{{labels}}} 0.0\n\
         # HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n\
         # TYPE vllm:prompt_tokens_total counter\n\
         vllm:prompt_tokens_total{{{labels}}} {}\n\
         vllm:prompt_tokens_created{{{labels}}} 1.7330e+09\n\
         # HELP vllm:generation_tokens_total Number of generation tokens processed.\n\
         # TYPE vllm:generation_tokens_total counter\n\
         vllm:generation_tokens_total{{{labels}}} {}\n\
         vllm:generation_tokens_created{{{labels}}} 1.7330e+09\n",
        n.waiting, n.prompt_tokens, n.generation_tokens
    )
}

/// A local server that behaves as vLLM's OpenAI server does, as far as the agent looks.
pub struct VllmStandIn {
    server: Restartable,
    pub numbers: Arc<Mutex<VllmNumbers>>,
}

impl VllmStandIn {
    /// A stand-in still "loading the model": its port is closed.
    pub async fn loading() -> VllmStandIn {
        VllmStandIn {
            server: Restartable::reserve().await,
            numbers: Arc::new(Mutex::new(VllmNumbers::default())),
        }
    }

    /// A stand-in already serving.
    pub async fn serving() -> VllmStandIn {
        let mut v = VllmStandIn::loading().await;
        v.ready().await;
        v
    }

    /// The model is loaded: the port opens and `/health` answers 200 with an empty body.
    pub async fn ready(&mut self) {
        let numbers = Arc::clone(&self.numbers);
        let app = Router::new()
            .route("/health", get(|| async { StatusCode::OK }))
            .route(
                "/version",
                get(|| async { axum::Json(serde_json::json!({"version": "0.33.0"})) }),
            )
            .route(
                "/v1/models",
                get(|| async {
                    axum::Json(serde_json::json!({
                        "object": "list",
                        "data": [{"id": VLLM_MODEL, "object": "model", "owned_by": "vllm",
                                  "root": VLLM_MODEL, "max_model_len": 8192}]
                    }))
                }),
            )
            .route(
                "/metrics",
                get(|State(n): State<Arc<Mutex<VllmNumbers>>>| async move {
                    let page = vllm_page(&n.lock().unwrap());
                    (
                        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                        page,
                    )
                }),
            )
            .with_state(numbers);
        self.server.start(app).await;
    }

    /// The process died: the port refuses connections.
    pub async fn kill(&mut self) {
        self.server.stop().await;
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    pub fn set(&self, f: impl FnOnce(&mut VllmNumbers)) {
        f(&mut self.numbers.lock().unwrap());
    }
}

/// A test config: fast polls and heartbeats, no GPU, `/metrics` on a free port.
pub fn config(plane: &str, engine_url: &str, engine: Engine) -> Config {
    let mut cfg = Config::new(plane, NODE_ID, TOKEN, engine);
    cfg.engine_url = engine_url.to_string();
    cfg.ready_timeout = Duration::from_secs(60);
    cfg.poll_interval = Duration::from_millis(50);
    cfg.heartbeat_interval = Some(Duration::from_millis(100));
    cfg.retry_base = Duration::from_millis(50);
    cfg.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    cfg.gpu = skydeck_agent::gpu::GpuSource::Disabled;
    cfg.http_timeout = Duration::from_secs(5);
    cfg
}

/// A running agent: its task, its stop signal (SIGTERM) and its `/metrics` address.
pub struct Running {
    pub task: tokio::task::JoinHandle<Result<skydeck_agent::Exit, skydeck_agent::AgentError>>,
    stop: Option<oneshot::Sender<()>>,
    pub metrics: Option<SocketAddr>,
}

impl Running {
    /// Starts `agent`.
    pub fn spawn(agent: skydeck_agent::Agent) -> Running {
        let (tx, rx) = oneshot::channel::<()>();
        let metrics = agent.metrics_addr();
        let task = tokio::spawn(agent.run(async {
            let _ = rx.await;
        }));
        Running {
            task,
            stop: Some(tx),
            metrics,
        }
    }

    /// Sends the stop signal (what SIGTERM does in the binary).
    pub fn sigterm(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for the agent to end, at most `within`.
    pub async fn exit(
        self,
        within: Duration,
    ) -> Result<skydeck_agent::Exit, skydeck_agent::AgentError> {
        tokio::time::timeout(within, self.task)
            .await
            .expect("the agent did not exit in time")
            .expect("the agent task panicked")
    }

    /// The agent's own `/metrics` page.
    pub async fn metrics_page(&self) -> String {
        let addr = self.metrics.expect("metrics port");
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// Runs `f` under a whole-test deadline so no test can hang CI.
pub async fn within<F: Future>(limit: Duration, f: F) -> F::Output {
    tokio::time::timeout(limit, f)
        .await
        .expect("the test ran past its deadline")
}
