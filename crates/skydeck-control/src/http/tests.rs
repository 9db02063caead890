//! The router through `tower::ServiceExt::oneshot` on a SQLite store in a temp dir: every
//! route's success and error shapes, the router's own 404 and 405, paths and queries that do
//! not decode, auth on every admin route, the agent protocol with bad inputs. Every answer is
//! checked against the OpenAPI document: its route and status must be documented, and every
//! error is the contract's `ErrorBody`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use skydeck_contract::{
    AgentReply, ErrorBody, Heartbeat, LaunchResponse, NodePage, NodeStatus, NodeView, Order,
    TerminateResponse, UnmanagedClusters, paths,
};
use tower::ServiceExt;

use super::{AgentBinary, AppState, router};
use crate::node_config::Rules;
use crate::reconcile::Observed;
use crate::store::Store;
use crate::token::{self, AdminKeys};

const KEY: &str = "test-admin-key";

struct Fx {
    app: Router,
    db: Store,
    doc: Value,
    _dir: tempfile::TempDir,
}

/// An answer: status, and the body as JSON (`Value::String` when it is not JSON).
struct Answer {
    status: StatusCode,
    body: Value,
}

impl Answer {
    fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_value(self.body.clone()).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    fn error(&self) -> ErrorBody {
        self.json()
    }
    fn field(&self) -> Option<String> {
        self.error().error.field
    }
}

async fn fx() -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let db = Store::connect(dir.path().join("t.db").to_str().unwrap(), 4)
        .await
        .unwrap();
    let bin = dir.path().join("agent");
    std::fs::write(&bin, b"agent").unwrap();
    let state = AppState {
        db: db.clone(),
        admin_keys: Arc::new(AdminKeys::parse(KEY)),
        rules: Arc::new(Rules::default()),
        cluster_prefix: "skydeck".into(),
        agent: Arc::new(AgentBinary {
            path: bin,
            sha256: token::sha256_hex(b"agent"),
        }),
        observed: Arc::new(Mutex::new(Observed::default())),
        heartbeat_interval: Duration::from_secs(30),
        wake: Arc::new(tokio::sync::Notify::new()),
    };
    Fx {
        app: router(state),
        db,
        doc: super::openapi::document(&Rules::default()),
        _dir: dir,
    }
}

/// The document's template for a concrete path (literal segments win, as in the router).
fn template<'a>(doc: &'a Value, path: &str) -> Option<&'a str> {
    let segs: Vec<&str> = path.split('/').collect();
    let mut best: Option<(&str, usize)> = None;
    for t in doc["paths"].as_object().unwrap().keys() {
        let ts: Vec<&str> = t.split('/').collect();
        if ts.len() != segs.len() {
            continue;
        }
        let mut literal = 0;
        let ok = ts.iter().zip(&segs).all(|(a, b)| {
            if a.starts_with('{') {
                true
            } else {
                literal += 1;
                a == b
            }
        });
        if ok && best.is_none_or(|(_, l)| literal > l) {
            best = Some((t, literal));
        }
    }
    best.map(|(t, _)| t)
}

impl Fx {
    async fn call(
        &self,
        method: Method,
        uri: &str,
        auth: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Answer {
        let mut req = Request::builder().method(method.clone()).uri(uri);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, format!("Bearer {a}"));
        }
        let req = match body {
            Some((ct, bytes)) => req
                .header(header::CONTENT_TYPE, ct)
                .body(Body::from(bytes))
                .unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = if ct.starts_with("application/json") {
            serde_json::from_slice(&bytes).unwrap()
        } else {
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        };
        let answer = Answer { status, body };
        if !status.is_success() {
            // Every error is the contract's shape.
            let _ = answer.error();
        }
        self.check_documented(&method, uri, status);
        answer
    }

    /// The route and status of an answer are in the document (the router's own 404 and 405
    /// are answers to routes or methods the document does not have).
    fn check_documented(&self, method: &Method, uri: &str, status: StatusCode) {
        let path = uri.split('?').next().unwrap();
        let Some(t) = template(&self.doc, path) else {
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}");
            return;
        };
        let op = &self.doc["paths"][t][method.as_str().to_lowercase()];
        if op.is_null() {
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
            return;
        }
        assert!(
            !op["responses"][status.as_str()].is_null(),
            "{method} {t} answered {status}, which its document does not list"
        );
    }

    async fn get(&self, uri: &str, auth: Option<&str>) -> Answer {
        self.call(Method::GET, uri, auth, None).await
    }

    async fn post_json(&self, uri: &str, auth: Option<&str>, body: &Value) -> Answer {
        self.call(
            Method::POST,
            uri,
            auth,
            Some(("application/json", serde_json::to_vec(body).unwrap())),
        )
        .await
    }

    async fn launch(&self, body: Value) -> LaunchResponse {
        let a = self.post_json(paths::LAUNCH, Some(KEY), &body).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.json()
    }

    /// A launched node with an agent token: (cluster name, node id, token).
    async fn launched(&self) -> (String, String, String) {
        let r = self.launch(basic()).await;
        let tok = token::generate();
        assert!(
            self.db
                .claim_launch(&r.node_id, None, &token::hash(&tok))
                .await
                .unwrap()
        );
        assert!(self.db.launch_submitted(&r.node_id, "req-1").await.unwrap());
        (r.cluster_name, r.node_id, tok)
    }
}

fn basic() -> Value {
    json!({"provider": "aws", "region": "us-west-2", "gpu": "A10G", "model": "meta-llama/Llama-2-7b-chat-hf"})
}

fn hb(node_id: &str) -> Value {
    json!({
        "node_id": node_id,
        "state": "serving",
        "engine": {"health": "ok", "requests_running": 3.0, "requests_waiting": 1.0, "generation_tokens_total": 1234.0},
        "served_models": ["meta-llama/Llama-2-7b-chat-hf"],
        "gpus": [{"index": 0, "utilization_percent": 50.0, "memory_used_bytes": 1.0e9}, {"index": 1, "utilization_percent": 70.0, "memory_used_bytes": 2.0e9}],
        "uptime_seconds": 12.0
    })
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_of_the_router() {
    let f = fx().await;
    let documented: BTreeSet<&str> = f.doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let routed: BTreeSet<&str> = [
        paths::NODES,
        paths::LAUNCH,
        paths::NODE,
        paths::NODE_STATUS,
        paths::TERMINATE,
        paths::UNMANAGED,
        paths::POOLS,
        paths::POOL,
        paths::POOL_EVENTS,
        paths::AGENT_REGISTER,
        paths::AGENT_HEARTBEAT,
        paths::AGENT_DOWNLOAD,
        paths::AGENT_SHA256,
        paths::OPENAPI,
        paths::METRICS,
        paths::HEALTHZ,
        paths::READYZ,
    ]
    .into();
    assert_eq!(documented, routed);
    // Every documented operation is routed: none answers the router's own 404 or 405.
    for (path, ops) in f.doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let uri = path
                .replace("{cluster_name}", "skydeck-x")
                .replace("{name}", "chat");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let a = f.call(m, &uri, None, None).await;
            if a.status == StatusCode::NOT_FOUND || a.status == StatusCode::METHOD_NOT_ALLOWED {
                let code = a.error().error.code;
                assert!(
                    code != "not_found" && code != "method_not_allowed",
                    "{method} {path} is documented and not routed"
                );
            }
        }
    }
    assert_eq!(f.doc["openapi"], "3.1.0");
    let schemes = &f.doc["components"]["securitySchemes"];
    assert_eq!(schemes["adminKey"]["scheme"], "bearer");
    assert_eq!(schemes["nodeToken"]["scheme"], "bearer");
}

#[tokio::test]
async fn every_admin_route_needs_the_admin_key() {
    let f = fx().await;
    let routes = [
        (Method::GET, paths::NODES.to_string()),
        (Method::POST, paths::LAUNCH.to_string()),
        (Method::GET, paths::for_cluster(paths::NODE, "skydeck-x")),
        (
            Method::GET,
            paths::for_cluster(paths::NODE_STATUS, "skydeck-x"),
        ),
        (
            Method::POST,
            paths::for_cluster(paths::TERMINATE, "skydeck-x"),
        ),
        (Method::GET, paths::UNMANAGED.to_string()),
        (Method::GET, paths::POOLS.to_string()),
        (Method::POST, paths::POOLS.to_string()),
        (Method::GET, paths::for_pool(paths::POOL, "chat")),
        (Method::PATCH, paths::for_pool(paths::POOL, "chat")),
        (Method::DELETE, paths::for_pool(paths::POOL, "chat")),
        (Method::GET, paths::for_pool(paths::POOL_EVENTS, "chat")),
    ];
    for (m, uri) in routes {
        for auth in [None, Some("wrong")] {
            let a = f.call(m.clone(), &uri, auth, None).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{m} {uri}");
            assert_eq!(a.error().error.code, "unauthorized");
        }
    }
}

#[tokio::test]
async fn router_errors_have_the_json_shape() {
    let f = fx().await;
    let a = f.get("/nope", Some(KEY)).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.error().error.code, "not_found");
    let a = f.call(Method::DELETE, paths::NODES, Some(KEY), None).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.error().error.code, "method_not_allowed");
    let a = f.get(paths::LAUNCH, Some(KEY)).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    let a = f.get("/admin/nodes/skydeck-%ff%fe/status", Some(KEY)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.field().as_deref(), Some("cluster_name"));
    let a = f
        .get(
            &paths::for_cluster(paths::NODE, "skydeck-\u{7}x"),
            Some(KEY),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(!a.error().error.message.contains('\u{7}'), "escaped");
}

#[tokio::test]
async fn list_queries_are_checked_and_name_their_parameter() {
    let f = fx().await;
    for (q, field) in [
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=-1", "limit"),
        ("provider=null", "provider"),
        ("status=active,bogus", "status"),
        ("status=", "status"),
        ("cursor=xyz", "cursor"),
        ("limit=1&limit=2", "limit"),
        ("status=%ff", "status"),
    ] {
        let a = f.get(&format!("{}?{q}", paths::NODES), Some(KEY)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{q}: {}", a.body);
        assert_eq!(a.field().as_deref(), Some(field), "{q}");
    }
    let a = f
        .get(
            &format!(
                "{}?status=requested,active&provider=aws&limit=5",
                paths::NODES
            ),
            Some(KEY),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let page: NodePage = a.json();
    assert!(page.nodes.is_empty() && page.next_cursor.is_none());
}

#[tokio::test]
async fn launch_list_show_and_terminate() {
    let f = fx().await;
    let r = f.launch(basic()).await;
    assert_eq!(r.status, NodeStatus::Requested);
    assert_eq!(r.cluster_name, format!("skydeck-{}", r.node_id));
    let second = f.launch(basic()).await;
    // Pages of one, followed by their cursors.
    let a = f.get(&format!("{}?limit=1", paths::NODES), Some(KEY)).await;
    let p1: NodePage = a.json();
    assert_eq!(p1.nodes.len(), 1);
    assert_eq!(p1.nodes[0].node_id, r.node_id);
    let a = f
        .get(
            &format!(
                "{}?limit=1&cursor={}",
                paths::NODES,
                p1.next_cursor.unwrap()
            ),
            Some(KEY),
        )
        .await;
    let p2: NodePage = a.json();
    assert_eq!(p2.nodes[0].node_id, second.node_id);
    let a = f
        .get(&paths::for_cluster(paths::NODE, &r.cluster_name), Some(KEY))
        .await;
    let v: NodeView = a.json();
    assert_eq!((v.gpu.as_str(), v.disk_size), ("A10G", 256));
    let a = f
        .get(
            &paths::for_cluster(paths::NODE_STATUS, &r.cluster_name),
            Some(KEY),
        )
        .await;
    assert_eq!(a.json::<NodeView>().status, NodeStatus::Requested);
    // Same node_id again: 409.
    let mut again = basic();
    again["node_id"] = json!(r.node_id);
    let a = f.post_json(paths::LAUNCH, Some(KEY), &again).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    // Terminate: draining, idempotent, then force.
    let t = paths::for_cluster(paths::TERMINATE, &r.cluster_name);
    let a = f.call(Method::POST, &t, Some(KEY), None).await;
    let tr: TerminateResponse = a.json();
    assert_eq!((tr.status, tr.force), (NodeStatus::Draining, false));
    let a = f.call(Method::POST, &t, Some(KEY), None).await;
    assert_eq!(a.json::<TerminateResponse>().status, NodeStatus::Draining);
    let a = f
        .call(Method::POST, &format!("{t}?force=true"), Some(KEY), None)
        .await;
    assert!(a.json::<TerminateResponse>().force);
    let a = f
        .call(Method::POST, &format!("{t}?force=maybe"), Some(KEY), None)
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.field().as_deref(), Some("force"));
    let a = f
        .call(
            Method::POST,
            &paths::for_cluster(paths::TERMINATE, "skydeck-none"),
            Some(KEY),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = f.get(paths::UNMANAGED, Some(KEY)).await;
    let u: UnmanagedClusters = a.json();
    assert!(u.clusters.is_empty() && u.checked_at.is_none());
}

#[tokio::test]
async fn launch_bodies_are_refused_with_the_field_named() {
    let f = fx().await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"provider": "aws"}), "region"),
        (
            json!({"provider": "aws", "region": "us-west-2", "gpu": "A10G", "model": ""}),
            "model",
        ),
        (
            json!({"provider": "aws", "region": "us-west-2", "gpu": "A10G", "model": "a/b", "disk_size": "big"}),
            "disk_size",
        ),
        (
            json!({"provider": "aws", "region": "us-west-2", "gpu": "A10G", "model": "a/b", "colour": 1}),
            "colour",
        ),
        (json!([1, 2]), "body"),
    ];
    for (body, field) in cases {
        let a = f.post_json(paths::LAUNCH, Some(KEY), &body).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(a.field().as_deref(), Some(field), "{body}: {}", a.body);
    }
    let a = f
        .call(
            Method::POST,
            paths::LAUNCH,
            Some(KEY),
            Some(("application/json", b"{\"provider\":".to_vec())),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.error().error.code, "malformed_json");
    let a = f
        .call(
            Method::POST,
            paths::LAUNCH,
            Some(KEY),
            Some(("text/plain", serde_json::to_vec(&basic()).unwrap())),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let a = f.call(Method::POST, paths::LAUNCH, Some(KEY), None).await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let big = format!("{{\"model\": \"{}\"}}", "a".repeat(super::MAX_BODY));
    let a = f
        .call(
            Method::POST,
            paths::LAUNCH,
            Some(KEY),
            Some(("application/json", big.into_bytes())),
        )
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn the_agent_registers_heartbeats_drains_and_exits() {
    let f = fx().await;
    let (name, id, tok) = f.launched().await;
    let (_, other_id, other_tok) = f.launched().await;

    let reg =
        json!({"node_id": id, "agent_version": "1", "engine": "vllm", "served_models": ["m/x"]});
    let a = f.post_json(paths::AGENT_REGISTER, Some(&tok), &reg).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let r: AgentReply = a.json();
    assert_eq!((r.status, r.order), (NodeStatus::Active, Order::Serve));
    assert_eq!(r.heartbeat_interval_seconds, 30);

    let a = f
        .post_json(paths::AGENT_HEARTBEAT, Some(&tok), &hb(&id))
        .await;
    assert_eq!(a.json::<AgentReply>().order, Order::Serve);
    let shown: NodeView = f
        .get(&paths::for_cluster(paths::NODE, &name), Some(KEY))
        .await
        .json();
    let stored: Heartbeat = serde_json::from_value(hb(&id)).unwrap();
    assert_eq!(shown.heartbeat.as_ref(), Some(&stored));
    // Lists leave the report out.
    let page: NodePage = f.get(paths::NODES, Some(KEY)).await.json();
    assert!(page.nodes.iter().all(|n| n.heartbeat.is_none()));

    // The engine gauges of the report, labelled by cluster name and engine.
    let m = f.get(paths::METRICS, None).await;
    let text = m.body.as_str().unwrap();
    let label = format!("cluster_name=\"{name}\",engine=\"vllm\"");
    for line in [
        format!("skydeck_control_engine_up{{{label}}} 1"),
        format!("skydeck_control_engine_requests_running{{{label}}} 3"),
        format!("skydeck_control_engine_generation_tokens_total{{{label}}} 1234"),
        format!("skydeck_control_node_gpu_utilization_ratio{{{label}}} 0.6"),
        format!("skydeck_control_node_gpu_memory_used_bytes{{{label}}} 3000000000"),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
    }

    // Bad inputs: refused, and the stored report is untouched.
    let a = f
        .post_json(paths::AGENT_HEARTBEAT, Some("wrong"), &hb(&id))
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = f.post_json(paths::AGENT_HEARTBEAT, None, &hb(&id)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = f
        .post_json(paths::AGENT_HEARTBEAT, Some(&tok), &hb(&other_id))
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.field().as_deref(), Some("node_id"));
    let a = f
        .post_json(paths::AGENT_HEARTBEAT, Some(&other_tok), &hb(&id))
        .await;
    assert_eq!(a.field().as_deref(), Some("node_id"));
    let mut bad = hb(&id);
    bad["gpus"][1]["utilization_percent"] = json!(140.0);
    let a = f.post_json(paths::AGENT_HEARTBEAT, Some(&tok), &bad).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.field().as_deref(), Some("gpus[1].utilization_percent"));
    let mut bad = hb(&id);
    bad["engine"]["requests_running"] = json!("many");
    let a = f.post_json(paths::AGENT_HEARTBEAT, Some(&tok), &bad).await;
    assert_eq!(a.field().as_deref(), Some("engine.requests_running"));
    let a = f
        .call(
            Method::POST,
            paths::AGENT_HEARTBEAT,
            Some(&tok),
            Some(("application/json", b"{\"node_id\": ".to_vec())),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let big = json!({"node_id": id, "gpu_error": "x".repeat(super::MAX_BODY)});
    let a = f.post_json(paths::AGENT_HEARTBEAT, Some(&tok), &big).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    let a = f
        .post_json(
            paths::AGENT_REGISTER,
            Some(&tok),
            &json!({"node_id": other_id}),
        )
        .await;
    assert_eq!(a.field().as_deref(), Some("node_id"));
    let shown: NodeView = f
        .get(&paths::for_cluster(paths::NODE, &name), Some(KEY))
        .await
        .json();
    assert_eq!(shown.heartbeat.as_ref(), Some(&stored), "state kept");
    assert_eq!(shown.status, NodeStatus::Active);

    // Terminate: the agent is told to drain; `drained` makes the teardown immediate.
    f.call(
        Method::POST,
        &paths::for_cluster(paths::TERMINATE, &name),
        Some(KEY),
        None,
    )
    .await;
    let a = f
        .post_json(paths::AGENT_HEARTBEAT, Some(&tok), &hb(&id))
        .await;
    assert_eq!(a.json::<AgentReply>().order, Order::Drain);
    let mut drained = hb(&id);
    drained["state"] = json!("drained");
    let a = f
        .post_json(paths::AGENT_HEARTBEAT, Some(&tok), &drained)
        .await;
    assert_eq!(a.json::<AgentReply>().order, Order::Exit);
    let node = f.db.get(&name).await.unwrap().unwrap();
    assert!(node.drain_force);

    // A final node is told to exit with 200, and nothing is stored.
    f.db.transition(&id, &[NodeStatus::Draining], NodeStatus::Terminated, None)
        .await
        .unwrap();
    let before = f.db.get(&name).await.unwrap().unwrap();
    let a = f
        .post_json(paths::AGENT_HEARTBEAT, Some(&tok), &hb(&id))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let r: AgentReply = a.json();
    assert_eq!((r.status, r.order), (NodeStatus::Terminated, Order::Exit));
    let after = f.db.get(&name).await.unwrap().unwrap();
    assert_eq!(before.last_heartbeat_at, after.last_heartbeat_at);
}

#[tokio::test]
async fn downloads_probes_and_the_document() {
    let f = fx().await;
    let a = f.get(paths::AGENT_DOWNLOAD, None).await;
    assert_eq!(a.status, StatusCode::OK);
    let a = f.get(paths::AGENT_SHA256, None).await;
    assert!(
        a.body
            .as_str()
            .unwrap()
            .ends_with("  skydeck-linux-amd64\n")
    );
    assert_eq!(f.get(paths::HEALTHZ, None).await.status, StatusCode::OK);
    assert_eq!(f.get(paths::READYZ, None).await.status, StatusCode::OK);
    let a = f.get(paths::OPENAPI, None).await;
    assert_eq!(a.body, f.doc);
}

/// Schemathesis found `?provider=` valid by the document (a plain string) and refused by the
/// server: the document now lists the providers, and each one it lists is taken.
#[tokio::test]
async fn the_provider_filter_is_documented_as_the_server_takes_it() {
    let f = fx().await;
    let params = f.doc["paths"][paths::NODES]["get"]["parameters"]
        .as_array()
        .unwrap();
    let provider = params.iter().find(|p| p["name"] == "provider").unwrap();
    let listed: Vec<&str> = provider["schema"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        crate::offerings::PROVIDERS.map(crate::offerings::Provider::as_str)
    );
    for p in listed {
        let a = f
            .get(&format!("{}?provider={p}", paths::NODES), Some(KEY))
            .await;
        assert_eq!(a.status, StatusCode::OK, "{p}: {}", a.body);
    }
    for q in ["provider=", "provider=AWS", "provider=null"] {
        let a = f.get(&format!("{}?{q}", paths::NODES), Some(KEY)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(a.field().as_deref(), Some("provider"), "{q}");
    }
}

/// Schemathesis found `engine_args` documented as any string and refused unless every flag is
/// on the allow-list: the document now carries the allow-list as a pattern. Strings it matches
/// launch; strings it does not are refused naming the field, under both names.
#[tokio::test]
async fn engine_args_that_fit_the_document_launch() {
    let f = fx().await;
    // vLLM's flags are in the `else` of the engine condition (no engine, or vllm).
    let props = &f.doc["components"]["schemas"]["NodeConfig"]["else"]["properties"];
    for name in ["engine_args", "vllm_args"] {
        let re = regex::Regex::new(props[name]["pattern"].as_str().unwrap()).unwrap();
        for ok in [
            "",
            "--tensor-parallel-size 2 --max-model-len 4096",
            "--gpu-memory-utilization=0.9 --enforce-eager # tuned",
            "  --dtype bfloat16\t--served-model-name my-model  ",
        ] {
            assert!(re.is_match(ok), "{name}: {ok:?}");
            let mut body = basic();
            body[name] = json!(ok);
            let a = f.post_json(paths::LAUNCH, Some(KEY), &body).await;
            assert_eq!(a.status, StatusCode::OK, "{name}: {ok:?}: {}", a.body);
        }
        for bad in ["0000", "--seed -1", "--port 1", "--enforce-eager 1"] {
            assert!(!re.is_match(bad), "{name}: {bad:?}");
            let mut body = basic();
            body[name] = json!(bad);
            let a = f.post_json(paths::LAUNCH, Some(KEY), &body).await;
            assert_eq!(
                a.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{name}: {bad:?}"
            );
            assert_eq!(a.field().as_deref(), Some("engine_args"), "{name}: {bad:?}");
        }
    }
}

/// Schemathesis found `"disk_size": 576.0` refused, an integer by JSON Schema's definition:
/// a number without a fraction is taken; one with a fraction, or a string, names the field.
#[tokio::test]
async fn integral_disk_sizes_launch_whatever_their_spelling() {
    let f = fx().await;
    for (raw, want) in [("576.0", 576), ("100", 100), ("5.12e2", 512)] {
        let mut body = serde_json::to_string(&basic()).unwrap();
        body.insert_str(body.len() - 1, &format!(",\"disk_size\":{raw}"));
        let a = f
            .call(
                Method::POST,
                paths::LAUNCH,
                Some(KEY),
                Some(("application/json", body.into_bytes())),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{raw}: {}", a.body);
        let r: LaunchResponse = a.json();
        let node = f.db.get(&r.cluster_name).await.unwrap().unwrap();
        assert_eq!(node.disk_size, want, "{raw}");
    }
    for bad in [json!(576.5), json!("576"), json!(1e300), json!(-0.5)] {
        let mut body = basic();
        body["disk_size"] = bad.clone();
        let a = f.post_json(paths::LAUNCH, Some(KEY), &body).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(a.field().as_deref(), Some("disk_size"), "{bad}");
    }
}

/// The launch schema's patterns agree with validation on the offerings table.
#[test]
fn gpu_patterns_follow_the_offerings() {
    use crate::offerings::{OFFERINGS, gpu_counts};
    for o in &OFFERINGS {
        let re = regex::Regex::new(&super::openapi::gpu_pattern(o.provider)).unwrap();
        for g in o.gpus {
            // A bare name is a count of 1: valid only where one is offered (not GCP's H200).
            let single = gpu_counts(o.provider, g).contains(&1);
            assert_eq!(re.is_match(g), single, "{g}");
            assert_eq!(re.is_match(&g.to_lowercase()), single, "{g}");
            if !single {
                let rules = Rules::default();
                let cfg = crate::node_config::NodeConfig {
                    provider: o.provider.as_str().into(),
                    region: o.regions.first().copied().unwrap_or("ctx").into(),
                    gpu: g.to_string(),
                    model: "a/b".into(),
                    ..Default::default()
                };
                assert_eq!(cfg.validate(&rules).unwrap_err().field, "gpu", "{g}");
            }
            for c in 1..=16u32 {
                let allowed = gpu_counts(o.provider, g).contains(&c);
                assert_eq!(re.is_match(&format!("{g}:{c}")), allowed, "{g}:{c}");
            }
        }
        assert!(!re.is_match("TPU"));
    }
}

fn pool_spec() -> Value {
    json!({
        "name": "chat",
        "template": {"placements": [{"provider": "aws", "region": "us-east-1"},
                                    {"provider": "gcp", "region": "us-central1"}],
                     "gpu": "L4", "model": "org/model"},
        "min_nodes": 1, "max_nodes": 3
    })
}

#[tokio::test]
async fn pools_are_created_shown_changed_and_deleted() {
    let f = fx().await;
    let a = f.post_json(paths::POOLS, Some(KEY), &pool_spec()).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let v: skydeck_contract::PoolView = a.json();
    assert_eq!((v.desired, v.size, v.spec.min_nodes), (1, 0, 1));
    assert_eq!(v.spec.scale_up_delay_seconds, 300);
    // The same name again.
    let a = f.post_json(paths::POOLS, Some(KEY), &pool_spec()).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert_eq!(a.error().error.code, "pool_exists");

    let a = f.get(paths::POOLS, Some(KEY)).await;
    let list: skydeck_contract::PoolList = a.json();
    assert_eq!(list.pools.len(), 1);

    let patch = |body: Value| {
        f.call(
            Method::PATCH,
            "/admin/pools/chat",
            Some(KEY),
            Some(("application/json", serde_json::to_vec(&body).unwrap())),
        )
    };
    let a = patch(json!({"min_nodes": 2, "max_nodes": 5})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let v: skydeck_contract::PoolView = a.json();
    assert_eq!((v.desired, v.spec.min_nodes, v.spec.max_nodes), (2, 2, 5));
    // Refused patches name the field and change nothing.
    for (body, field) in [
        (json!({"min_nodes": 9}), "min_nodes"),
        (
            json!({"scale_up_delay_seconds": 0}),
            "scale_up_delay_seconds",
        ),
        (
            json!({"scale_up_delay_seconds": -5}),
            "scale_up_delay_seconds",
        ),
        (json!({"max_nodes": "many"}), "max_nodes"),
        (json!({"name": "other"}), "name"),
        (
            json!({"template": {"placements": [], "gpu": "L4", "model": "org/m"}}),
            "template.placements",
        ),
        (
            json!({"spot": {"fallback_after": 0}}),
            "spot.fallback_after",
        ),
    ] {
        let a = patch(body.clone()).await;
        assert_eq!(
            a.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            a.body
        );
        assert_eq!(a.field().as_deref(), Some(field), "{body}: {}", a.body);
    }
    let v: skydeck_contract::PoolView = f.get("/admin/pools/chat", Some(KEY)).await.json();
    assert_eq!((v.spec.min_nodes, v.spec.max_nodes), (2, 5));

    // Bad creates name the field.
    for (change, field) in [
        (json!({"min_nodes": 4}), "min_nodes"),
        (json!({"name": "<b>x</b>"}), "name"),
        (
            json!({"scale_down_delay_seconds": 0}),
            "scale_down_delay_seconds",
        ),
        (json!({"max_nodes": -1}), "max_nodes"),
        (json!({"warm": true}), "warm"),
    ] {
        let mut body = pool_spec();
        body["name"] = json!("other");
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let a = f.post_json(paths::POOLS, Some(KEY), &body).await;
        assert_eq!(
            a.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{change}: {}",
            a.body
        );
        assert_eq!(a.field().as_deref(), Some(field), "{change}: {}", a.body);
    }
    let mut body = pool_spec();
    body["template"]["placements"][1]["provider"] = json!("digitalocean");
    body["name"] = json!("other");
    let a = f.post_json(paths::POOLS, Some(KEY), &body).await;
    assert_eq!(
        a.field().as_deref(),
        Some("template.placements[1].provider")
    );

    // Events, newest first, paged.
    let a = f.get("/admin/pools/chat/events?limit=1", Some(KEY)).await;
    let page: skydeck_contract::PoolEventPage = a.json();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].kind, skydeck_contract::DecisionKind::Updated);
    let cursor = page.next_cursor.unwrap();
    let a = f
        .get(
            &format!("/admin/pools/chat/events?limit=10&cursor={cursor}"),
            Some(KEY),
        )
        .await;
    let older: skydeck_contract::PoolEventPage = a.json();
    assert_eq!(older.events.len(), 1);
    assert_eq!(
        older.events[0].kind,
        skydeck_contract::DecisionKind::Created
    );
    assert!(older.next_cursor.is_none());
    for q in ["limit=0", "limit=x", "cursor=nope"] {
        let a = f
            .get(&format!("/admin/pools/chat/events?{q}"), Some(KEY))
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{q}");
    }

    // Unknown and hostile names are 404s naming the path parameter.
    for name in ["nope", "%3Cscript%3E"] {
        let a = f.get(&format!("/admin/pools/{name}"), Some(KEY)).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        assert_eq!(a.error().error.code, "pool_not_found");
        assert_eq!(a.field().as_deref(), Some("name"));
    }

    let a = f
        .call(Method::DELETE, "/admin/pools/chat", Some(KEY), None)
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let v: skydeck_contract::PoolView = a.json();
    assert!(v.deleting);
    let a = patch(json!({"max_nodes": 4})).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert_eq!(a.error().error.code, "pool_deleting");
    // Idempotent.
    let a = f
        .call(Method::DELETE, "/admin/pools/chat", Some(KEY), None)
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
}
