//! The node agent (`skydeck agent`), started by a node's SkyPilot task next to its inference
//! engine. It:
//!
//! 1. waits for the engine's health ([`engine`]: vLLM keeps its port closed while loading,
//!    llama.cpp answers 503 "Loading model"), up to [`Config::ready_timeout`];
//! 2. registers with the control plane with the node's own token and the served models;
//! 3. heartbeats every interval (the control plane's reply sets it) with the engine's health,
//!    requests running and waiting, token counters and the GPUs ([`gpu`], NVML on its own
//!    thread), retrying with backoff and jitter while the control plane is unreachable and
//!    reporting `down` when the engine dies (the control plane decides what follows);
//! 4. drains on a drain order or on the signal the caller passes (SIGTERM): reports
//!    `draining`, waits until no request is running or waiting (or the grace period ends),
//!    reports `drained` and returns [`Exit::Drained`]; an exit order returns at once;
//! 5. serves its own `/metrics` ([`metrics`]).
//!
//! The protocol types are `skydeck_contract`'s; nothing here spells a route or an environment
//! variable of its own.

pub mod control;
pub mod engine;
pub mod gpu;
pub mod metrics;
pub mod prom;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use skydeck_contract::{
    AgentReply, AgentState, Engine, EngineHealth, EngineReport, Heartbeat, Order, Register,
};
use tokio::time::Instant;

use crate::control::{ControlPlane, PostError};
use crate::engine::Probe;
use crate::gpu::{GpuReader, GpuSource};
use crate::metrics::{Shared, Snapshot};

/// The longest the agent may be told to wait for the engine (the bound).
pub const MAX_READY_TIMEOUT: Duration = Duration::from_secs(600);

/// Everything the agent needs; the CLI fills it from flags and the task's environment.
#[derive(Clone)]
pub struct Config {
    /// The control plane's URL.
    pub control_plane_url: String,
    /// This node's id.
    pub node_id: String,
    /// The node's token (from the environment only; never printed).
    pub token: String,
    /// Which engine runs next to the agent.
    pub engine: Engine,
    /// The engine's base URL (`http://127.0.0.1:8000`).
    pub engine_url: String,
    /// How long to wait for the engine's health before giving up (at most
    /// [`MAX_READY_TIMEOUT`]).
    pub ready_timeout: Duration,
    /// How often to look at the engine while it loads and while a drain waits.
    pub poll_interval: Duration,
    /// Heartbeat this often instead of what the control plane says (tests).
    pub heartbeat_interval: Option<Duration>,
    /// Drain at most this long instead of what the control plane says.
    pub drain_grace: Option<Duration>,
    /// First retry delay after a failed report (doubles up to the heartbeat interval, 30 s
    /// at most, with jitter).
    pub retry_base: Duration,
    /// Where to serve `/metrics`; `None` serves nothing.
    pub metrics_addr: Option<SocketAddr>,
    /// Where GPU state comes from.
    pub gpu: GpuSource,
    /// How long one NVML read may take before the heartbeat goes without it.
    pub gpu_timeout: Duration,
    /// Timeout of one HTTP call to the engine or the control plane.
    pub http_timeout: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("control_plane_url", &self.control_plane_url)
            .field("node_id", &self.node_id)
            .field("token", &"<redacted>")
            .field("engine", &self.engine)
            .field("engine_url", &self.engine_url)
            .field("ready_timeout", &self.ready_timeout)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("drain_grace", &self.drain_grace)
            .field("metrics_addr", &self.metrics_addr)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A config with the production defaults for everything but the identity.
    pub fn new(control_plane_url: &str, node_id: &str, token: &str, engine: Engine) -> Config {
        Config {
            control_plane_url: control_plane_url.to_string(),
            node_id: node_id.to_string(),
            token: token.to_string(),
            engine,
            engine_url: "http://127.0.0.1:8000".into(),
            ready_timeout: MAX_READY_TIMEOUT,
            poll_interval: Duration::from_secs(1),
            heartbeat_interval: None,
            drain_grace: None,
            retry_base: Duration::from_secs(1),
            metrics_addr: None,
            gpu: GpuSource::Nvml,
            gpu_timeout: Duration::from_secs(5),
            http_timeout: Duration::from_secs(10),
        }
    }
}

/// How the agent ended; each is a clean exit (status 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Drained (in-flight requests done, or the grace period ended) and reported it.
    Drained,
    /// The control plane ordered an exit.
    Ordered,
    /// The control plane no longer has the node (terminated).
    NodeGone,
    /// The stop signal came before the agent had registered: nothing was in flight.
    Stopped,
}

/// Why the agent stopped with an error (a non-zero exit).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// The control plane refused the token: retrying cannot help.
    #[error(
        "{0}; check that SKYDECK_AGENT_TOKEN is this node's token (the task passes it in secrets:)"
    )]
    TokenRefused(PostError),
    /// The engine never became healthy.
    #[error("the engine at {url} was not healthy after {waited:?}: {last}")]
    EngineNeverReady {
        /// The engine's URL.
        url: String,
        /// How long the agent waited.
        waited: Duration,
        /// The last health answer.
        last: String,
    },
    /// The metrics port could not be bound.
    #[error("cannot serve /metrics on {addr}: {source}")]
    MetricsBind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Exponential backoff with jitter.
#[derive(Debug)]
struct Backoff {
    base: Duration,
    cap: Duration,
    next: Duration,
}

impl Backoff {
    fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            next: base,
        }
    }

    /// The next delay: between half and all of the current step (so a fleet that lost the
    /// control plane together does not come back in one burst), then double the step.
    fn delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.cap);
        d.mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    fn reset(&mut self) {
        self.next = self.base;
    }

    fn set_cap(&mut self, cap: Duration) {
        self.cap = cap.max(self.base);
        self.next = self.next.min(self.cap);
    }
}

/// The agent, with its metrics port bound.
pub struct Agent {
    cfg: Config,
    probe: Probe,
    control: ControlPlane,
    gpu: GpuReader,
    shared: Shared,
    metrics_listener: Option<tokio::net::TcpListener>,
    metrics_addr: Option<SocketAddr>,
    started: Instant,
}

/// Where a drain stands.
struct Drain {
    deadline: Instant,
}

impl Agent {
    /// Checks `cfg`, binds the metrics port and prepares the clients.
    pub async fn new(cfg: Config) -> Result<Agent, AgentError> {
        Self::with_gpu(cfg.clone(), GpuReader::new(cfg.gpu, cfg.gpu_timeout)).await
    }

    /// As [`Agent::new`], with a GPU reader of the caller's (tests script GPUs with it).
    pub async fn with_gpu(cfg: Config, gpu: GpuReader) -> Result<Agent, AgentError> {
        if cfg.ready_timeout > MAX_READY_TIMEOUT {
            return Err(AgentError::Config(format!(
                "the engine ready timeout is {:?}; at most {:?} is allowed",
                cfg.ready_timeout, MAX_READY_TIMEOUT
            )));
        }
        if cfg.token.trim().is_empty() {
            return Err(AgentError::Config(
                "the node token is empty: set SKYDECK_AGENT_TOKEN (the task passes it in secrets:)"
                    .into(),
            ));
        }
        if uuid::Uuid::try_parse(&cfg.node_id).is_err() {
            return Err(AgentError::Config(format!(
                "node id {:?} is not a UUID (the task sets SKYDECK_NODE_ID)",
                cfg.node_id
            )));
        }
        let probe = Probe::new(cfg.engine, &cfg.engine_url, cfg.http_timeout)
            .map_err(|e| AgentError::Config(format!("engine client: {e}")))?;
        let control =
            ControlPlane::new(&cfg.control_plane_url, cfg.token.clone(), cfg.http_timeout)
                .map_err(|e| AgentError::Config(format!("control plane client: {e}")))?;
        let (metrics_listener, metrics_addr) = match cfg.metrics_addr {
            None => (None, None),
            Some(addr) => {
                let l = metrics::bind(addr)
                    .await
                    .map_err(|source| AgentError::MetricsBind { addr, source })?;
                let bound = l.local_addr().ok();
                (Some(l), bound)
            }
        };
        let shared = Arc::new(Mutex::new(Snapshot {
            engine: cfg.engine,
            latest: Heartbeat {
                node_id: cfg.node_id.clone(),
                engine: EngineReport::default(),
                ..Heartbeat::default()
            },
            ..Snapshot::default()
        }));
        Ok(Agent {
            cfg,
            probe,
            control,
            gpu,
            shared,
            metrics_listener,
            metrics_addr,
            started: Instant::now(),
        })
    }

    /// The address `/metrics` is served on, once bound.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Runs until the node drains, is ordered out or is gone. `stop` resolving (SIGTERM) starts
    /// a drain (or ends the agent at once if it has not registered yet).
    pub async fn run(mut self, stop: impl Future<Output = ()>) -> Result<Exit, AgentError> {
        if let Some(l) = self.metrics_listener.take() {
            tokio::spawn(metrics::serve(l, Arc::clone(&self.shared)));
        }
        let stop = std::pin::pin!(stop);
        let mut stop = Some(stop);

        // 1. The engine's health.
        let deadline = Instant::now() + self.cfg.ready_timeout;
        loop {
            let (health, detail) = self.probe.health().await;
            self.update(|s| {
                s.latest.engine.health = health;
                s.latest.engine.detail = detail.clone();
            });
            if health == EngineHealth::Ok {
                break;
            }
            if Instant::now() >= deadline {
                return Err(AgentError::EngineNeverReady {
                    url: self.cfg.engine_url.clone(),
                    waited: self.cfg.ready_timeout,
                    last: detail.unwrap_or_else(|| format!("{health:?}")),
                });
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.poll_interval) => {}
                _ = async { stop.as_mut().expect("guarded").as_mut().await }, if stop.is_some() => {
                    tracing::info!("stop signal while the engine loads; exiting");
                    return Ok(Exit::Stopped);
                }
            }
        }
        tracing::info!("the engine at {} is healthy", self.cfg.engine_url);

        // 2. Register, retrying while the control plane is unreachable.
        let served_models = match self.probe.models().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("cannot list the served models: {e}");
                Vec::new()
            }
        };
        let register = Register {
            node_id: self.cfg.node_id.clone(),
            agent_version: Some(env!("CARGO_PKG_VERSION").to_string()),
            engine: self.cfg.engine,
            engine_version: self.probe.version().await,
            served_models: served_models.clone(),
        };
        let cap = self
            .cfg
            .heartbeat_interval
            .unwrap_or(Duration::from_secs(30));
        let mut backoff = Backoff::new(self.cfg.retry_base, cap.min(Duration::from_secs(30)));
        let mut reply = loop {
            match self.control.register(&register).await {
                Ok(r) => {
                    self.accepted();
                    break r;
                }
                Err(e) => {
                    self.failed();
                    match e {
                        PostError::Refused { .. } => return Err(AgentError::TokenRefused(e)),
                        PostError::Gone { .. } => {
                            tracing::info!("{e}; exiting");
                            return Ok(Exit::NodeGone);
                        }
                        PostError::Transient(_) => tracing::warn!("register: {e}"),
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff.delay()) => {}
                _ = async { stop.as_mut().expect("guarded").as_mut().await }, if stop.is_some() => {
                    tracing::info!("stop signal before registering; exiting");
                    return Ok(Exit::Stopped);
                }
            }
        };
        backoff.reset();
        tracing::info!(
            "registered node {} ({}, status {:?})",
            reply.node_id,
            reply.cluster_name,
            reply.status
        );

        // 3. Heartbeats, and the drain.
        let mut drain: Option<Drain> = None;
        if reply.order == Order::Drain {
            drain = Some(self.start_drain(&reply));
        }
        if reply.order == Order::Exit {
            return Ok(Exit::Ordered);
        }
        let mut next_beat = if drain.is_some() {
            Instant::now()
        } else {
            Instant::now() + self.interval(&reply)
        };
        loop {
            let wake = match &drain {
                None => next_beat,
                Some(_) => next_beat.min(Instant::now() + self.cfg.poll_interval),
            };
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = async { stop.as_mut().expect("guarded").as_mut().await }, if stop.is_some() => {
                    stop = None;
                    if drain.is_none() {
                        tracing::info!("stop signal: draining");
                        drain = Some(self.start_drain(&reply));
                        next_beat = Instant::now();
                    }
                    continue;
                }
            }
            let engine = self.probe.report().await;
            if let Some(d) = &drain {
                let idle = engine.health == EngineHealth::Down
                    || (engine.requests_running == Some(0.0)
                        && engine.requests_waiting == Some(0.0));
                let out_of_time = Instant::now() >= d.deadline;
                if idle || out_of_time {
                    if out_of_time && !idle {
                        tracing::warn!("the drain grace period ended with requests in flight");
                    }
                    let hb = self
                        .heartbeat(AgentState::Drained, engine, &served_models)
                        .await;
                    self.report_drained(&hb).await;
                    return Ok(Exit::Drained);
                }
            }
            if Instant::now() < next_beat {
                continue;
            }
            let state = if drain.is_some() {
                AgentState::Draining
            } else {
                AgentState::Serving
            };
            let hb = self.heartbeat(state, engine, &served_models).await;
            match self.control.heartbeat(&hb).await {
                Ok(r) => {
                    self.accepted();
                    backoff.reset();
                    reply = r;
                    backoff.set_cap(self.interval(&reply).min(Duration::from_secs(30)));
                    next_beat = Instant::now() + self.interval(&reply);
                    match reply.order {
                        Order::Serve => {}
                        Order::Drain => {
                            if drain.is_none() {
                                tracing::info!("the control plane ordered a drain");
                                drain = Some(self.start_drain(&reply));
                                next_beat = Instant::now();
                            }
                        }
                        Order::Exit => {
                            tracing::info!("the control plane ordered an exit");
                            return Ok(Exit::Ordered);
                        }
                    }
                }
                Err(e) => {
                    self.failed();
                    match e {
                        PostError::Refused { .. } => return Err(AgentError::TokenRefused(e)),
                        PostError::Gone { .. } => {
                            tracing::info!("{e}; exiting");
                            return Ok(Exit::NodeGone);
                        }
                        PostError::Transient(_) => {
                            // Keep the state and try again soon; the next attempt carries
                            // fresh numbers.
                            tracing::warn!("heartbeat: {e}");
                            next_beat = Instant::now() + backoff.delay();
                        }
                    }
                }
            }
        }
    }

    /// The heartbeat interval: the flag, else the control plane's.
    fn interval(&self, reply: &AgentReply) -> Duration {
        self.cfg
            .heartbeat_interval
            .unwrap_or(Duration::from_secs(reply.heartbeat_interval_seconds.max(1)))
    }

    fn start_drain(&self, reply: &AgentReply) -> Drain {
        let grace = self
            .cfg
            .drain_grace
            .unwrap_or(Duration::from_secs(reply.drain_grace_seconds));
        self.update(|s| s.draining = true);
        tracing::info!("draining: waiting up to {grace:?} for in-flight requests");
        Drain {
            deadline: Instant::now() + grace,
        }
    }

    /// Builds a heartbeat (reading the GPUs) and shows it on `/metrics`.
    async fn heartbeat(
        &mut self,
        state: AgentState,
        engine: EngineReport,
        served_models: &[String],
    ) -> Heartbeat {
        let gpu = self.gpu.read().await;
        let hb = Heartbeat {
            node_id: self.cfg.node_id.clone(),
            state,
            engine,
            served_models: served_models.to_vec(),
            gpus: gpu.gpus,
            gpu_error: gpu.error,
            uptime_seconds: self.started.elapsed().as_secs_f64(),
        };
        self.update(|s| s.latest = hb.clone());
        hb
    }

    /// Sends the `drained` report, retrying a few times: the agent exits either way (the
    /// control plane also sees the node drained when its heartbeats stop and it terminates
    /// the cluster), but a delivered report lets it terminate at once.
    async fn report_drained(&mut self, hb: &Heartbeat) {
        let mut backoff = Backoff::new(self.cfg.retry_base, Duration::from_secs(5));
        for _ in 0..5 {
            match self.control.heartbeat(hb).await {
                Ok(_) => {
                    self.accepted();
                    tracing::info!("drained; exiting");
                    return;
                }
                Err(e) => {
                    self.failed();
                    tracing::warn!("drained report: {e}");
                    if !matches!(e, PostError::Transient(_)) {
                        return;
                    }
                }
            }
            tokio::time::sleep(backoff.delay()).await;
        }
    }

    fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        f(&mut self.shared.lock().expect("snapshot lock"));
    }

    fn accepted(&self) {
        self.update(|s| {
            s.reports_ok += 1;
            s.last_success = Some(Timestamp::now());
        });
    }

    fn failed(&self) {
        self.update(|s| s.reports_failed += 1);
    }
}

/// Runs the agent with `cfg` until it exits; `stop` is the drain signal (SIGTERM).
pub async fn run(cfg: Config, stop: impl Future<Output = ()>) -> Result<Exit, AgentError> {
    Agent::new(cfg).await?.run(stop).await
}
