//! The OpenAPI 3.1 document served at `/openapi.json`. The enums of `NodeConfig` come from
//! [`crate::offerings`] and [`crate::status`], so the document cannot drift from validation;
//! a test checks that every documented route exists and that every admin route refuses a
//! request without the admin key.

use serde_json::{Value, json};

use crate::offerings::{OFFERINGS, PROVIDERS};
use crate::status::NodeStatus;

fn err(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ok(desc: &str, schema: Value) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": schema}}})
}

/// The document.
pub fn document() -> Value {
    let mut gpus: Vec<&str> = OFFERINGS
        .iter()
        .flat_map(|o| o.gpus.iter().copied())
        .collect();
    gpus.sort_unstable();
    gpus.dedup();
    let admin = json!([{"adminKey": []}]);
    let agent = json!([{"agentToken": []}]);
    let cluster = json!({"name": "cluster_name", "in": "path", "required": true, "schema": {"type": "string"}});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "skydeck control plane",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Launches, watches and terminates vLLM inference nodes through SkyPilot."
        },
        "paths": {
            "/admin/nodes/launch": {"post": {
                "summary": "Launch a node (answered at once; the launch goes on in the background)",
                "security": admin,
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NodeConfig"}}}},
                "responses": {
                    "200": ok("Accepted", json!({"$ref": "#/components/schemas/LaunchResponse"})),
                    "400": err("Malformed JSON"), "401": err("Missing or wrong admin key"),
                    "409": err("node_id exists"), "413": err("Body too large"),
                    "422": err("A field broke a rule (error.field names it)"), "503": err("Database unavailable")
                }
            }},
            "/admin/nodes/{cluster_name}/terminate": {"post": {
                "summary": "Terminate a node: graceful drain by default, immediate with force=true; idempotent",
                "security": admin,
                "parameters": [cluster, {"name": "force", "in": "query", "schema": {"type": "boolean", "default": false}}],
                "responses": {"200": ok("Termination under way or done", json!({"type": "object"})), "401": err("Missing or wrong admin key"), "404": err("No such node"), "503": err("Database unavailable")}
            }},
            "/admin/nodes/{cluster_name}/status": {"get": {
                "summary": "A node's lifecycle status and history",
                "security": admin,
                "parameters": [cluster],
                "responses": {"200": ok("The node", json!({"$ref": "#/components/schemas/Node"})), "401": err("Missing or wrong admin key"), "404": err("No such node")}
            }},
            "/admin/nodes": {"get": {
                "summary": "List nodes, oldest first, with filters and cursor pagination",
                "security": admin,
                "parameters": [
                    {"name": "status", "in": "query", "description": "Comma-separated statuses", "schema": {"type": "string"}},
                    {"name": "provider", "in": "query", "schema": {"type": "string", "enum": PROVIDERS.map(|p| p.as_str())}},
                    {"name": "gpu", "in": "query", "schema": {"type": "string"}},
                    {"name": "model", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": crate::api::MAX_PAGE, "default": 100}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}}
                ],
                "responses": {"200": ok("A page", json!({"type": "object", "properties": {"nodes": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}}, "next_cursor": {"type": ["string", "null"]}}})), "400": err("Bad filter"), "401": err("Missing or wrong admin key")}
            }},
            "/admin/unmanaged-clusters": {"get": {
                "summary": "Clusters with skydeck's prefix that SkyPilot has and the table does not (reported, never adopted)",
                "security": admin,
                "responses": {"200": ok("The clusters", json!({"type": "object"})), "401": err("Missing or wrong admin key")}
            }},
            "/v1/agent/register": {"post": {
                "summary": "A node agent registers (the node becomes active)",
                "security": agent,
                "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {"node_id": {"type": "string"}, "vllm_version": {"type": "string"}, "agent_version": {"type": "string"}}, "additionalProperties": false}}}},
                "responses": {"200": ok("Registered", json!({"$ref": "#/components/schemas/AgentReply"})), "401": err("Missing or wrong node token"), "409": err("The node is terminated or failed")}
            }},
            "/v1/agent/heartbeat": {"post": {
                "summary": "A node agent's heartbeat (every heartbeat_interval_seconds)",
                "security": agent,
                "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {"drained": {"type": "boolean"}, "in_flight": {"type": "integer"}}, "additionalProperties": false}}}},
                "responses": {"200": ok("Recorded", json!({"$ref": "#/components/schemas/AgentReply"})), "401": err("Missing or wrong node token"), "409": err("The node is terminated or failed")}
            }},
            "/downloads/skydeck-linux-amd64": {"get": {"summary": "The node agent binary", "security": [], "responses": {"200": {"description": "The binary; X-Checksum-Sha256 carries its sha256"}}}},
            "/downloads/skydeck-linux-amd64.sha256": {"get": {"summary": "sha256sum line of the agent binary", "security": [], "responses": {"200": {"description": "text"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "security": [], "responses": {"200": {"description": "text/plain exposition"}}}},
            "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {"200": {"description": "ok"}}}},
            "/readyz": {"get": {"summary": "Readiness (the database answers)", "security": [], "responses": {"200": {"description": "ready"}, "503": err("Database unavailable")}}},
            "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI 3.1"}}}}
        },
        "components": {
            "securitySchemes": {
                "adminKey": {"type": "http", "scheme": "bearer", "description": "An admin API key"},
                "agentToken": {"type": "http", "scheme": "bearer", "description": "The node's own agent token (from the task's secrets)"}
            },
            "schemas": {
                "NodeConfig": {"type": "object", "additionalProperties": false, "required": ["provider", "region", "gpu", "model"], "properties": {
                    "node_id": {"type": "string", "format": "uuid"},
                    "provider": {"type": "string", "enum": PROVIDERS.map(|p| p.as_str())},
                    "region": {"type": "string", "description": "A known region of the provider; a kubeconfig context for kubernetes"},
                    "gpu": {"type": "string", "description": "GPU name, optionally :count (1, 2, 4, 8, 16)", "examples": gpus},
                    "model": {"type": "string", "description": "Hugging Face model id, org/name"},
                    "use_spot": {"type": "boolean", "description": "Default: true where the provider has spot"},
                    "disk_size": {"type": "integer", "minimum": crate::node_config::DISK_RANGE.start(), "maximum": crate::node_config::DISK_RANGE.end(), "default": crate::node_config::DEFAULT_DISK},
                    "vllm_args": {"type": "string", "maxLength": crate::vllm_args::MAX_LEN, "description": "Extra vLLM flags from an allow-list"}
                }},
                "LaunchResponse": {"type": "object", "properties": {"cluster_name": {"type": "string"}, "node_id": {"type": "string"}, "status": {"type": "string", "const": "launching"}}},
                "Node": {"type": "object", "properties": {"node_id": {"type": "string"}, "cluster_name": {"type": "string"}, "status": {"type": "string", "enum": NodeStatus::ALL.map(|s| s.as_str())}, "status_reason": {"type": ["string", "null"]}}},
                "AgentReply": {"type": "object", "properties": {"node_id": {"type": "string"}, "status": {"type": "string"}, "drain": {"type": "boolean"}, "heartbeat_interval_seconds": {"type": "integer"}}},
                "Error": {"type": "object", "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}}}}
            }
        }
    })
}
