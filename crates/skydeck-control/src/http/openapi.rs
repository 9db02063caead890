//! The OpenAPI 3.1 document served at `/openapi.json`, generated from the types and the
//! `#[utoipa::path]` annotations the handlers carry, so it cannot drift from them.
//!
//! One schema is built by hand from the tables validation reads: `NodeConfig`, whose rules
//! cross fields (the regions and GPUs a provider offers, GCP's GPU count limits, spot where a
//! provider has it). It is a `oneOf` with one branch per provider generated from
//! [`crate::offerings::OFFERINGS`], so a body valid by the schema is one the server accepts,
//! and one the server refuses is invalid by it.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::AppState;
use crate::node_config::{DEFAULT_DISK, DISK_RANGE, IMAGE, Rules, runs_images};
use crate::offerings::{OFFERINGS, PROVIDERS, Provider, gpu_counts};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "skydeck control plane",
        description = "Launches, watches and terminates inference nodes (vLLM or llama.cpp) through SkyPilot."
    ),
    paths(
        super::admin::list_nodes,
        super::admin::launch,
        super::admin::node,
        super::admin::node_status,
        super::admin::terminate,
        super::admin::unmanaged,
        super::pools::create,
        super::pools::list,
        super::pools::show,
        super::pools::change,
        super::pools::delete,
        super::pools::events,
        super::agent::register,
        super::agent::heartbeat,
        super::downloads::agent,
        super::downloads::sha256,
        serve,
        super::metrics::serve,
        super::healthz,
        super::readyz,
    ),
    components(schemas(skydeck_contract::ErrorBody, skydeck_contract::NodeStatus)),
    modifiers(&Security)
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        let bearer = |desc: &str| {
            let mut h = Http::new(HttpAuthScheme::Bearer);
            h.description = Some(desc.to_string());
            SecurityScheme::Http(h)
        };
        c.add_security_scheme("adminKey", bearer("An admin API key"));
        c.add_security_scheme(
            "nodeToken",
            bearer("The node's own agent token (from the task's secrets)"),
        );
    }
}

/// `[Aa]100`: a name matched without regard to ASCII case, as validation matches GPU names.
fn caseless(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphabetic() {
                format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
            } else {
                regex::escape(&c.to_string())
            }
        })
        .collect()
}

/// The GPU pattern of `provider`: each GPU it offers with `:count`, a count it offers that
/// GPU in (leading zeros parse as validation parses them). The count may be left out only
/// where one GPU is offered: validation reads a bare name as a count of 1 (GCP has H200 in
/// eights only, so a bare `H200` is refused there).
pub fn gpu_pattern(provider: Provider) -> String {
    let alts: Vec<String> = provider
        .offering()
        .gpus
        .iter()
        .map(|g| {
            let offered = gpu_counts(provider, g);
            let counts: Vec<String> = offered.iter().map(u32::to_string).collect();
            let optional = if offered.contains(&1) { "?" } else { "" };
            format!("{}(:0*({})){optional}", caseless(g), counts.join("|"))
        })
        .collect();
    format!("^({})$", alts.join("|"))
}

/// One part of a Hugging Face model id (validation's `MODEL_PART`).
const MODEL_PART: &str = r"[A-Za-z0-9]([A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?";
/// A llama.cpp quantization suffix (validation's `QUANT`).
const QUANT: &str = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}";
/// A kubeconfig context name (validation's `CONTEXT`).
const CONTEXT: &str = r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,252}$";
/// A UUID in any spelling `uuid::Uuid::try_parse` reads.
const UUID_ANY: &str = r"^(|[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}|\{[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}|urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$";

/// The launch body's schema under `rules`.
pub fn node_config_schema(rules: &Rules) -> Value {
    let branches: Vec<Value> = OFFERINGS
        .iter()
        .map(|o| {
            let p = o.provider;
            let region = if p == Provider::Kubernetes {
                if rules.kubernetes_contexts.is_empty() {
                    json!({"type": "string", "pattern": CONTEXT})
                } else {
                    json!({"type": "string", "pattern": CONTEXT, "enum": rules.kubernetes_contexts})
                }
            } else {
                json!({"type": "string", "enum": o.regions})
            };
            let use_spot = if o.spot {
                json!({"type": ["boolean", "null"], "description": "Default: true"})
            } else {
                json!({"enum": [false, null], "description": format!("{p} has no spot capacity")})
            };
            let image = if runs_images(p) {
                json!({})
            } else {
                json!({"type": "null", "description": format!("SkyPilot runs no container images on {p}")})
            };
            json!({
                "type": "object",
                "title": p.as_str(),
                "properties": {
                    "provider": {"const": p.as_str()},
                    "region": region,
                    "gpu": {"type": "string", "pattern": gpu_pattern(p)},
                    "use_spot": use_spot,
                    "image": image,
                }
            })
        })
        .collect();
    let engine_args = crate::vllm_args::pattern_for(skydeck_contract::Engine::Vllm);
    let llamacpp_args = crate::vllm_args::pattern_for(skydeck_contract::Engine::Llamacpp);
    let uuid_nil = r"^(urn:uuid:|\{)?0{8}-?0{4}-?0{4}-?0{4}-?0{12}\}?$";
    json!({
        "type": "object",
        "description": "A launch request (seed 003's NodeConfig). The branch of `provider` gives its regions, GPUs with their counts, and spot.",
        "additionalProperties": false,
        "required": ["provider", "region", "gpu", "model"],
        "properties": {
            "node_id": {"type": ["string", "null"], "description": "A UUID for the node; generated when absent or empty", "pattern": UUID_ANY, "not": {"type": "string", "pattern": uuid_nil}},
            "provider": {"type": "string", "enum": OFFERINGS.iter().map(|o| o.provider.as_str()).collect::<Vec<_>>()},
            "region": {"type": "string", "description": "A region of the provider; a kubeconfig context for kubernetes"},
            "gpu": {"type": "string", "description": "A GPU the provider offers, optionally :count"},
            "model": {
                "type": "string",
                "description": "Hugging Face model id, org/name; for engine llamacpp a GGUF repository, optionally org/name:QUANT (llama-server -hf)",
                "maxLength": 226,
                "allOf": [
                    {"pattern": format!("^{MODEL_PART}/{MODEL_PART}(:{QUANT})?$")},
                    {"not": {"pattern": r"(--|\.\.)"}}
                ]
            },
            "use_spot": {"type": ["boolean", "null"]},
            "disk_size": {"type": ["integer", "null"], "minimum": DISK_RANGE.start(), "maximum": DISK_RANGE.end(), "default": DEFAULT_DISK},
            "engine": {"enum": ["vllm", "llamacpp", null], "default": "vllm"},
            "image": {"type": ["string", "null"], "description": "A container image with the engine (docker:repository[:tag][@sha256:digest], no registry port); the node then installs no engine", "pattern": IMAGE, "not": {"type": "string", "pattern": r"(\.\.|//)"}},
            "engine_args": {"type": ["string", "null"], "maxLength": crate::vllm_args::MAX_LEN, "description": "Extra engine flags from the engine's allow-list (vLLM's or llama.cpp's, by `engine`), separated by whitespace (shell quoting is read too)"},
            "vllm_args": {"type": ["string", "null"], "maxLength": crate::vllm_args::MAX_LEN, "deprecated": true, "description": "Seed 003's name of engine_args"}
        },
        "not": {"required": ["engine_args", "vllm_args"]},
        // The `:QUANT` suffix is llama.cpp's only, and each engine has its own flags.
        "if": {"required": ["engine"], "properties": {"engine": {"const": "llamacpp"}}},
        "then": {"properties": {
            "engine_args": {"pattern": llamacpp_args},
            "vllm_args": {"pattern": llamacpp_args}
        }},
        "else": {"properties": {
            "model": {"not": {"pattern": ":"}},
            "engine_args": {"pattern": engine_args},
            "vllm_args": {"pattern": engine_args}
        }},
        "oneOf": branches,
    })
}

/// The document under `rules`.
pub fn document(rules: &Rules) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    doc["openapi"] = json!("3.1.0");
    doc["components"]["schemas"]["NodeConfig"] = node_config_schema(rules);
    // utoipa's parameter attributes have no `enum`: the provider filter's values are set here,
    // from the same table the handler checks them against.
    let providers: Vec<&str> = PROVIDERS.iter().map(|p| p.as_str()).collect();
    if let Some(params) = doc["paths"]["/admin/nodes"]["get"]["parameters"].as_array_mut() {
        for p in params.iter_mut().filter(|p| p["name"] == "provider") {
            p["schema"] = json!({"type": "string", "enum": providers});
        }
    }
    doc
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "probes",
    responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
pub async fn serve(State(s): State<AppState>) -> Json<Value> {
    Json(document(&s.rules))
}
