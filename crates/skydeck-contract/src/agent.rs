//! The agent protocol. The SkyPilot task starts `skydeck agent` on the node with the
//! environment in [`env`]; the agent waits for the engine, then `POST`s a [`Register`] to
//! [`crate::paths::AGENT_REGISTER`] and a [`Heartbeat`] to [`crate::paths::AGENT_HEARTBEAT`]
//! every interval, each with `Authorization: Bearer <node token>`. Every answer is an
//! [`AgentReply`] whose [`Order`] tells the agent to keep serving, drain, or exit.
//!
//! Bodies tolerate fields they do not know (an agent one version ahead of its control plane
//! still heartbeats) but every known field is checked by [`Heartbeat::validate`] and
//! [`Register::validate`]: a bad report is refused whole and the stored state is kept.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::node::{Engine, NodeStatus};

/// The environment the SkyPilot task sets for the engine and the agent.
pub mod env {
    /// The URL the node reaches the control plane at.
    pub const CONTROL_PLANE_URL: &str = "SKYDECK_CONTROL_PLANE_URL";
    /// The node's UUID.
    pub const NODE_ID: &str = "SKYDECK_NODE_ID";
    /// The node's SkyPilot cluster name.
    pub const CLUSTER_NAME: &str = "SKYDECK_CLUSTER_NAME";
    /// The node's own token (in the task's `secrets:`, which SkyPilot redacts).
    pub const AGENT_TOKEN: &str = "SKYDECK_AGENT_TOKEN";
    /// sha256 of the agent binary the setup downloads.
    pub const AGENT_SHA256: &str = "SKYDECK_AGENT_SHA256";
    /// The model the engine serves.
    pub const MODEL: &str = "SKYDECK_MODEL";
    /// `vllm` or `llamacpp`.
    pub const ENGINE: &str = "SKYDECK_ENGINE";
    /// The port the engine serves its OpenAI API, `/health` and `/metrics` on.
    pub const ENGINE_PORT: &str = "SKYDECK_ENGINE_PORT";
    /// The port the agent serves its own `/metrics` on.
    pub const AGENT_METRICS_PORT: &str = "SKYDECK_AGENT_METRICS_PORT";
    /// The vLLM release the setup installs.
    pub const VLLM_VERSION: &str = "SKYDECK_VLLM_VERSION";
    /// The llama.cpp release the setup installs.
    pub const LLAMACPP_VERSION: &str = "SKYDECK_LLAMACPP_VERSION";
    /// sha256 of the llama.cpp source the setup builds.
    pub const LLAMACPP_SHA256: &str = "SKYDECK_LLAMACPP_SHA256";
}

/// Largest number of models, GPUs or characters of a free-text field a report may carry.
pub mod limits {
    /// Models in `served_models`.
    pub const MODELS: usize = 64;
    /// GPUs in `gpus`.
    pub const GPUS: usize = 64;
    /// Characters of a model id, version or detail text.
    pub const TEXT: usize = 256;
}

/// Body of `POST /v1/agent/register`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct Register {
    /// The node id the agent was started with (checked against the token's node).
    #[schema(format = Uuid)]
    pub node_id: String,
    /// The agent's version.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub agent_version: Option<String>,
    /// The engine the node runs.
    #[serde(default)]
    pub engine: Engine,
    /// The engine's version, when it says.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub engine_version: Option<String>,
    /// Model ids from the engine's `/v1/models`.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub served_models: Vec<String>,
}

/// What the agent is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgentState {
    /// Serving requests.
    #[default]
    Serving,
    /// Told to drain (or got SIGTERM): waiting for in-flight requests.
    Draining,
    /// In-flight requests are done (or the grace period ran out); it exits next.
    Drained,
}

/// The engine's health as the agent sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EngineHealth {
    /// `/health` answers 200.
    Ok,
    /// Still loading the model (vLLM: port closed; llama.cpp: 503 "Loading model").
    #[default]
    Loading,
    /// Not answering (the process died, or the port closed after it was up).
    Down,
    /// Answering with an error.
    Error,
}

/// The engine's state in one heartbeat. Counts are `null` when the engine's `/metrics` did not
/// answer or did not parse.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct EngineReport {
    /// Health.
    pub health: EngineHealth,
    /// Why it is not `ok`, when known.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub detail: Option<String>,
    /// Requests being served now (`vllm:num_requests_running`,
    /// `llamacpp:requests_processing`).
    #[serde(default)]
    #[schema(minimum = 0)]
    pub requests_running: Option<f64>,
    /// Requests queued (`vllm:num_requests_waiting`, `llamacpp:requests_deferred`).
    #[serde(default)]
    #[schema(minimum = 0)]
    pub requests_waiting: Option<f64>,
    /// Tokens generated since the engine started (`vllm:generation_tokens_total`,
    /// `llamacpp:tokens_predicted_total`).
    #[serde(default)]
    #[schema(minimum = 0)]
    pub generation_tokens_total: Option<f64>,
    /// Prompt tokens processed since the engine started (`vllm:prompt_tokens_total`,
    /// `llamacpp:prompt_tokens_total`).
    #[serde(default)]
    #[schema(minimum = 0)]
    pub prompt_tokens_total: Option<f64>,
}

/// One GPU's state, from NVML.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct GpuReport {
    /// NVML's index.
    #[schema(minimum = 0, maximum = 63)]
    pub index: u32,
    /// NVML's UUID (`GPU-…`).
    #[serde(default)]
    #[schema(max_length = 256)]
    pub uuid: Option<String>,
    /// The GPU's name (`NVIDIA H100 80GB HBM3`).
    #[serde(default)]
    #[schema(max_length = 256)]
    pub name: Option<String>,
    /// Percent of time a kernel ran, 0–100.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    pub utilization_percent: Option<f64>,
    /// Memory in use, bytes.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub memory_used_bytes: Option<f64>,
    /// Memory in all, bytes.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub memory_total_bytes: Option<f64>,
    /// Degrees Celsius.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 200)]
    pub temperature_celsius: Option<f64>,
    /// Watts drawn.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub power_watts: Option<f64>,
}

/// Body of `POST /v1/agent/heartbeat`; the control plane stores the latest one per node.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct Heartbeat {
    /// The node id the agent was started with (checked against the token's node).
    #[schema(format = Uuid)]
    pub node_id: String,
    /// What the agent is doing.
    #[serde(default)]
    pub state: AgentState,
    /// The engine's state.
    #[serde(default)]
    pub engine: EngineReport,
    /// Model ids from the engine's `/v1/models`.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub served_models: Vec<String>,
    /// GPUs, when NVML is present (empty on CPU nodes or when NVML is missing).
    #[serde(default)]
    #[schema(max_items = 64)]
    pub gpus: Vec<GpuReport>,
    /// Why there is no GPU state, when NVML could not be read.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub gpu_error: Option<String>,
    /// Seconds the agent has run.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub uptime_seconds: f64,
}

/// A rule a report broke: the field, and what is expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The field, as a JSON path (`engine.requests_running`, `gpus[1].utilization_percent`).
    pub field: String,
    /// What is expected.
    pub rule: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.rule)
    }
}

fn check_text(field: &str, v: Option<&str>) -> Result<(), Invalid> {
    match v {
        Some(s) if s.chars().count() > limits::TEXT => Err(Invalid {
            field: field.to_string(),
            rule: format!("at most {} characters", limits::TEXT),
        }),
        _ => Ok(()),
    }
}

fn check_number(field: &str, v: Option<f64>, max: Option<f64>) -> Result<(), Invalid> {
    let Some(v) = v else { return Ok(()) };
    let ok = v.is_finite() && v >= 0.0 && max.is_none_or(|m| v <= m);
    if ok {
        return Ok(());
    }
    Err(Invalid {
        field: field.to_string(),
        rule: match max {
            Some(m) => format!("a number from 0 to {m}, got {v}"),
            None => format!("a finite number of at least 0, got {v}"),
        },
    })
}

fn check_models(models: &[String]) -> Result<(), Invalid> {
    if models.len() > limits::MODELS {
        return Err(Invalid {
            field: "served_models".into(),
            rule: format!("at most {} models", limits::MODELS),
        });
    }
    for (i, m) in models.iter().enumerate() {
        check_text(&format!("served_models[{i}]"), Some(m))?;
    }
    Ok(())
}

impl Register {
    /// Checks every field's bounds.
    pub fn validate(&self) -> Result<(), Invalid> {
        check_text("agent_version", self.agent_version.as_deref())?;
        check_text("engine_version", self.engine_version.as_deref())?;
        check_models(&self.served_models)
    }
}

impl Heartbeat {
    /// Checks every field's bounds: counts finite and not negative, utilization a percentage,
    /// lists and texts bounded.
    pub fn validate(&self) -> Result<(), Invalid> {
        let e = &self.engine;
        check_text("engine.detail", e.detail.as_deref())?;
        check_number("engine.requests_running", e.requests_running, None)?;
        check_number("engine.requests_waiting", e.requests_waiting, None)?;
        check_number(
            "engine.generation_tokens_total",
            e.generation_tokens_total,
            None,
        )?;
        check_number("engine.prompt_tokens_total", e.prompt_tokens_total, None)?;
        check_models(&self.served_models)?;
        check_text("gpu_error", self.gpu_error.as_deref())?;
        check_number("uptime_seconds", Some(self.uptime_seconds), None)?;
        if self.gpus.len() > limits::GPUS {
            return Err(Invalid {
                field: "gpus".into(),
                rule: format!("at most {} GPUs", limits::GPUS),
            });
        }
        for (i, g) in self.gpus.iter().enumerate() {
            let f = |name: &str| format!("gpus[{i}].{name}");
            if g.index as usize >= limits::GPUS {
                return Err(Invalid {
                    field: f("index"),
                    rule: format!("an index below {}", limits::GPUS),
                });
            }
            check_text(&f("uuid"), g.uuid.as_deref())?;
            check_text(&f("name"), g.name.as_deref())?;
            check_number(
                &f("utilization_percent"),
                g.utilization_percent,
                Some(100.0),
            )?;
            check_number(&f("memory_used_bytes"), g.memory_used_bytes, None)?;
            check_number(&f("memory_total_bytes"), g.memory_total_bytes, None)?;
            check_number(
                &f("temperature_celsius"),
                g.temperature_celsius,
                Some(200.0),
            )?;
            check_number(&f("power_watts"), g.power_watts, None)?;
        }
        Ok(())
    }
}

/// What the control plane tells the agent to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Keep serving and heartbeating.
    #[default]
    Serve,
    /// Stop taking work, wait for in-flight requests up to the grace period, report
    /// `drained`, exit 0.
    Drain,
    /// Exit now: the node is being taken down at once, or is already gone.
    Exit,
}

/// Every answer to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentReply {
    /// The node's UUID.
    #[schema(format = Uuid)]
    pub node_id: String,
    /// Its cluster name.
    pub cluster_name: String,
    /// Its lifecycle state after this report.
    pub status: NodeStatus,
    /// What to do.
    pub order: Order,
    /// Heartbeat this often.
    #[schema(minimum = 1)]
    pub heartbeat_interval_seconds: u64,
    /// How long a drain may wait for in-flight requests.
    #[schema(minimum = 0)]
    pub drain_grace_seconds: u64,
}

impl AgentReply {
    /// The order for a node in `status` (`force`: a terminate that does not wait).
    pub fn order_for(status: NodeStatus, force: bool) -> Order {
        match status {
            NodeStatus::Draining if force => Order::Exit,
            NodeStatus::Draining => Order::Drain,
            s if s.is_final() || s == NodeStatus::Stopped => Order::Exit,
            _ => Order::Serve,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_out_of_bounds_name_their_field() {
        let mut hb = Heartbeat {
            node_id: "x".into(),
            ..Heartbeat::default()
        };
        assert!(hb.validate().is_ok());
        hb.engine.requests_running = Some(f64::NAN);
        assert_eq!(hb.validate().unwrap_err().field, "engine.requests_running");
        hb.engine.requests_running = Some(1.0);
        hb.gpus.push(GpuReport {
            utilization_percent: Some(140.0),
            ..GpuReport::default()
        });
        assert_eq!(
            hb.validate().unwrap_err().field,
            "gpus[0].utilization_percent"
        );
    }

    #[test]
    fn orders_follow_the_status() {
        assert_eq!(
            AgentReply::order_for(NodeStatus::Active, false),
            Order::Serve
        );
        assert_eq!(
            AgentReply::order_for(NodeStatus::Draining, false),
            Order::Drain
        );
        assert_eq!(
            AgentReply::order_for(NodeStatus::Draining, true),
            Order::Exit
        );
        assert_eq!(
            AgentReply::order_for(NodeStatus::Terminated, false),
            Order::Exit
        );
    }

    #[test]
    fn unknown_fields_are_tolerated() {
        let hb: Heartbeat =
            serde_json::from_str(r#"{"node_id":"n","future_field":1,"engine":{"health":"ok"}}"#)
                .unwrap();
        assert_eq!(hb.engine.health, EngineHealth::Ok);
    }
}
