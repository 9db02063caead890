//! The agent's own `/metrics`: the latest heartbeat's fields (engine health, requests, tokens,
//! GPUs) and the agent's own health (reports accepted and failed, the last accepted report's
//! time, draining), written by `skydeck_core::exposition` under the catalog's `skydeck_agent_*`
//! names. A node's Prometheus (or the DCGM-style scrape of `skydeck serve`) reads it on the
//! port the task opens, so the node is observable even while the control plane is not.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use jiff::Timestamp;
use skydeck_contract::{Engine, EngineHealth, Heartbeat};
use skydeck_core::catalog;
use skydeck_core::exposition::{self, Format};
use skydeck_core::sample::Sample;

/// What `/metrics` shows; the agent loop updates it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The engine the node runs.
    pub engine: Engine,
    /// The latest heartbeat built (sent or not).
    pub latest: Heartbeat,
    /// Reports (register and heartbeats) the control plane accepted.
    pub reports_ok: u64,
    /// Reports that failed (unreachable, refused, an error answer).
    pub reports_failed: u64,
    /// When the control plane last accepted a report.
    pub last_success: Option<Timestamp>,
    /// Whether the agent is draining.
    pub draining: bool,
}

/// The snapshot shared between the loop and the server.
pub type Shared = Arc<Mutex<Snapshot>>;

impl Snapshot {
    /// The samples of this snapshot.
    pub fn samples(&self, at: Timestamp) -> Vec<Sample> {
        let engine = self.engine.as_str();
        let e = &self.latest.engine;
        let up = if e.health == EngineHealth::Ok {
            1.0
        } else {
            0.0
        };
        let mut out = vec![Sample::of(&catalog::AGENT_ENGINE_UP, up, at).tag("engine", engine)];
        for (def, v) in [
            (&catalog::AGENT_REQUESTS_RUNNING, e.requests_running),
            (&catalog::AGENT_REQUESTS_WAITING, e.requests_waiting),
            (&catalog::AGENT_GENERATION_TOKENS, e.generation_tokens_total),
            (&catalog::AGENT_PROMPT_TOKENS, e.prompt_tokens_total),
        ] {
            // An unknown value is left out, not written as 0: absent series are what
            // Prometheus alerting expects for "no data".
            if let Some(v) = v {
                out.push(Sample::of(def, v, at).tag("engine", engine));
            }
        }
        for g in &self.latest.gpus {
            let tags = [
                ("gpu", g.index.to_string()),
                ("uuid", g.uuid.clone().unwrap_or_default()),
            ];
            for (def, v) in [
                (&catalog::AGENT_GPU_UTILIZATION, g.utilization_percent),
                (&catalog::AGENT_GPU_MEMORY_USED, g.memory_used_bytes),
                (&catalog::AGENT_GPU_MEMORY_TOTAL, g.memory_total_bytes),
                (&catalog::AGENT_GPU_TEMPERATURE, g.temperature_celsius),
                (&catalog::AGENT_GPU_POWER, g.power_watts),
            ] {
                if let Some(v) = v {
                    out.push(Sample::of(def, v, at).tags(tags.clone()));
                }
            }
        }
        out.push(
            Sample::of(&catalog::AGENT_REPORTS, self.reports_ok as f64, at).tag("result", "ok"),
        );
        out.push(
            Sample::of(&catalog::AGENT_REPORTS, self.reports_failed as f64, at)
                .tag("result", "failed"),
        );
        if let Some(t) = self.last_success {
            out.push(Sample::of(
                &catalog::AGENT_LAST_REPORT,
                t.as_millisecond() as f64 / 1000.0,
                at,
            ));
        }
        out.push(Sample::of(
            &catalog::AGENT_DRAINING,
            if self.draining { 1.0 } else { 0.0 },
            at,
        ));
        out
    }
}

/// Serves `/metrics` from `shared` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, shared: Shared) {
    let app = axum::Router::new().route(
        skydeck_contract::paths::METRICS,
        axum::routing::get(move |headers: HeaderMap| {
            let shared = Arc::clone(&shared);
            async move {
                let format =
                    Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
                let samples = shared
                    .lock()
                    .expect("snapshot lock")
                    .samples(Timestamp::now());
                (
                    [(header::CONTENT_TYPE, format.content_type())],
                    exposition::render(&samples, &[], format),
                )
                    .into_response()
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!("the agent's /metrics server stopped: {e}");
    }
}

/// Binds the metrics port.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}
