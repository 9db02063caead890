//! The inference engine as the agent sees it through its HTTP port: health, served models and
//! the four numbers of a heartbeat, for vLLM and llama.cpp alike.
//!
//! The two engines say "loading" differently: vLLM keeps its port closed until the model is
//! loaded and then answers `/health` 200 with an empty body; llama.cpp's `llama-server` opens
//! the port first and answers 503 `{"error":{"message":"Loading model",…}}` until it is ready,
//! then 200 `{"status":"ok"}`. A closed port is therefore "loading" until the engine has been
//! up once, and "down" after that (the process died). Their metric names differ too
//! ([`MetricNames`]); the heartbeat carries the same fields for both.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use skydeck_contract::agent::limits;
use skydeck_contract::{Engine, EngineHealth, EngineReport};

use crate::prom::Page;

/// The engine metric each heartbeat field is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricNames {
    /// Requests being served now.
    pub running: &'static str,
    /// Requests queued.
    pub waiting: &'static str,
    /// Generated tokens since start (a counter).
    pub generation_tokens: &'static str,
    /// Prompt tokens since start (a counter).
    pub prompt_tokens: &'static str,
}

/// The names `engine` exposes on its `/metrics` (vLLM 0.33; llama.cpp with `--metrics`).
pub fn metric_names(engine: Engine) -> MetricNames {
    match engine {
        Engine::Vllm => MetricNames {
            running: "vllm:num_requests_running",
            waiting: "vllm:num_requests_waiting",
            generation_tokens: "vllm:generation_tokens_total",
            prompt_tokens: "vllm:prompt_tokens_total",
        },
        Engine::Llamacpp => MetricNames {
            running: "llamacpp:requests_processing",
            waiting: "llamacpp:requests_deferred",
            generation_tokens: "llamacpp:tokens_predicted_total",
            prompt_tokens: "llamacpp:prompt_tokens_total",
        },
    }
}

/// Reads one engine's health, models and metrics.
#[derive(Debug)]
pub struct Probe {
    http: reqwest::Client,
    base: String,
    engine: Engine,
    /// Whether `/health` has answered 200 once: a closed port after that means the engine died.
    was_up: AtomicBool,
}

/// Cuts `s` to the contract's limit on free text.
pub(crate) fn bounded(s: &str) -> String {
    if s.chars().count() <= limits::TEXT {
        return s.to_string();
    }
    let mut out: String = s.chars().take(limits::TEXT - 1).collect();
    out.push('…');
    out
}

impl Probe {
    /// A probe of `engine` serving at `base` (`http://127.0.0.1:8000`).
    pub fn new(engine: Engine, base: &str, timeout: Duration) -> anyhow::Result<Probe> {
        // The engine is plain HTTP on loopback, but reqwest needs a TLS provider to build.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            // A fresh connection per probe: a pooled connection to a process that died could
            // otherwise hide the closed port for one more round.
            .pool_max_idle_per_host(0)
            .build()?;
        Ok(Probe {
            http,
            base: base.trim_end_matches('/').to_string(),
            engine,
            was_up: AtomicBool::new(false),
        })
    }

    /// The engine this probe reads.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// `/health`: the engine's health and, when it is not `ok`, why.
    pub async fn health(&self) -> (EngineHealth, Option<String>) {
        let url = format!("{}/health", self.base);
        let resp = match self.http.get(&url).send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                return if self.was_up.load(Ordering::Relaxed) {
                    (
                        EngineHealth::Down,
                        Some(format!("{} does not accept connections", self.base)),
                    )
                } else {
                    (
                        EngineHealth::Loading,
                        Some(format!(
                            "{} is not listening yet (loading the model)",
                            self.base
                        )),
                    )
                };
            }
            Err(e) if e.is_timeout() => {
                return (
                    EngineHealth::Error,
                    Some(format!("{url} did not answer in time")),
                );
            }
            Err(e) => return (EngineHealth::Down, Some(bounded(&format!("{url}: {e}")))),
        };
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if status.is_success() {
            self.was_up.store(true, Ordering::Relaxed);
            return (EngineHealth::Ok, None);
        }
        // llama.cpp: 503 {"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string));
        let loading = status.as_u16() == 503
            && message
                .as_deref()
                .is_some_and(|m| m.to_ascii_lowercase().contains("loading"));
        let text = message.unwrap_or_else(|| body.trim().to_string());
        let detail = bounded(&format!("/health answered {}: {text}", status.as_u16()));
        if loading {
            (EngineHealth::Loading, Some(detail))
        } else {
            (EngineHealth::Error, Some(detail))
        }
    }

    /// The model ids of `/v1/models` (`data[].id`), bounded as the contract requires.
    pub async fn models(&self) -> Result<Vec<String>, String> {
        let url = format!("{}/v1/models", self.base);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{url} answered {}", resp.status().as_u16()));
        }
        let v: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| format!("{url} is not JSON: {e}"))?;
        let data = v["data"]
            .as_array()
            .ok_or_else(|| format!("{url} has no data list"))?;
        Ok(data
            .iter()
            .filter_map(|m| m["id"].as_str())
            .take(limits::MODELS)
            .map(bounded)
            .collect())
    }

    /// The engine's version when it tells one (vLLM's `/version`; llama.cpp's `/props`
    /// `build_info`); `None` otherwise.
    pub async fn version(&self) -> Option<String> {
        let (path, field) = match self.engine {
            Engine::Vllm => ("/version", "version"),
            Engine::Llamacpp => ("/props", "build_info"),
        };
        let v: serde_json::Value = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v[field].as_str().map(bounded)
    }

    /// Health, and the metrics when the engine is up. A field the page does not give is
    /// `null`, and `detail` says why.
    pub async fn report(&self) -> EngineReport {
        let (health, detail) = self.health().await;
        let mut report = EngineReport {
            health,
            detail,
            ..EngineReport::default()
        };
        if health != EngineHealth::Ok {
            return report;
        }
        let url = format!("{}/metrics", self.base);
        let page = match self.http.get(&url).send().await {
            Ok(r) if r.status().is_success() => match r.text().await {
                Ok(t) => Page::parse(&t),
                Err(e) => {
                    report.detail = Some(bounded(&format!("{url}: {e}")));
                    return report;
                }
            },
            Ok(r) => {
                report.detail = Some(format!("{url} answered {}", r.status().as_u16()));
                return report;
            }
            Err(e) => {
                report.detail = Some(bounded(&format!("{url}: {e}")));
                return report;
            }
        };
        let names = metric_names(self.engine);
        let mut problems = Vec::new();
        let mut field = |name: &str| match page.sum(name) {
            Ok(v) if v >= 0.0 => Some(v),
            Ok(v) => {
                problems.push(format!("{name} is negative ({v})"));
                None
            }
            Err(why) => {
                problems.push(why);
                None
            }
        };
        report.requests_running = field(names.running);
        report.requests_waiting = field(names.waiting);
        report.generation_tokens_total = field(names.generation_tokens);
        report.prompt_tokens_total = field(names.prompt_tokens);
        if !problems.is_empty() {
            report.detail = Some(bounded(&format!("metrics: {}", problems.join("; "))));
        }
        report
    }
}
