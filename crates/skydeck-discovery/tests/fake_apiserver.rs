//! Discovery and the proxy against in-process fake Kubernetes API servers (axum on
//! 127.0.0.1:0, each on its own runtime so "the server disappears" really closes every
//! connection), including the faults a fleet of clusters produces: an API server that hangs,
//! answers 403, answers garbage or vanishes mid-run, a context missing from the kubeconfig, and
//! proxy requests for unknown targets, traversal tricks and oversized answers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use skydeck_discovery::{ContextSet, Discovery, DiscoveryOptions, TargetMode};
use skydeck_testkit::kube::{KubeContext, dcgm_metrics_text, write_kubeconfig};
use tower::ServiceExt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behavior {
    Healthy,
    Hang,
    Forbidden,
    Garbage,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Page {
    Dcgm,
    HugeWithLength,
    HugeChunked,
    Forbidden,
}

struct FakeState {
    behavior: Behavior,
    /// false: an old API server without discovery.k8s.io/v1 (core/v1 Endpoints only).
    slices_v1: bool,
    exporters: usize,
    page: Page,
    authorizations: Vec<String>,
    requests: Vec<String>,
}

type Fake = Arc<Mutex<FakeState>>;

/// One fake API server on its own runtime; dropping it (or `stop`) closes everything.
struct FakeKube {
    url: String,
    state: Fake,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FakeKube {
    fn start(slices_v1: bool, exporters: usize) -> FakeKube {
        let state = Arc::new(Mutex::new(FakeState {
            behavior: Behavior::Healthy,
            slices_v1,
            exporters,
            page: Page::Dcgm,
            authorizations: Vec::new(),
            requests: Vec::new(),
        }));
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", std_listener.local_addr().unwrap());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let app = Router::new()
            .route("/apis/discovery.k8s.io", get(group))
            .route("/api/v1/namespaces/{ns}/services", get(services))
            .route(
                "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
                get(slices),
            )
            .route("/api/v1/namespaces/{ns}/endpoints/{name}", get(endpoints))
            .route(
                "/api/v1/namespaces/{ns}/pods/{podport}/proxy/{*path}",
                get(pod_proxy),
            )
            .fallback(|| async { status(404, "NotFound", "the server could not find it") })
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(&state),
                misbehave,
            ))
            .with_state(Arc::clone(&state));
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
        FakeKube {
            url,
            state,
            runtime: Some(runtime),
        }
    }

    fn set(&self, b: Behavior) {
        self.state.lock().unwrap().behavior = b;
    }

    fn set_page(&self, p: Page) {
        self.state.lock().unwrap().page = p;
    }

    fn stop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.stop();
    }
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(code).unwrap(),
        [("content-type", "application/json")],
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "message": message, "reason": reason, "code": code})
        .to_string(),
    )
        .into_response()
}

async fn misbehave(
    State(s): State<Fake>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    let behavior = {
        let mut st = s.lock().unwrap();
        if let Some(a) = req.headers().get("authorization") {
            st.authorizations
                .push(a.to_str().unwrap_or_default().to_string());
        }
        st.requests.push(req.uri().to_string());
        st.behavior
    };
    match behavior {
        Behavior::Healthy => next.run(req).await,
        Behavior::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
        Behavior::Forbidden => status(
            403,
            "Forbidden",
            "services is forbidden: User \"nobody\" cannot list resource \"services\"",
        ),
        Behavior::Garbage => {
            (StatusCode::OK, "<html>this is not an API server</html>").into_response()
        }
    }
}

async fn group(State(s): State<Fake>) -> Response {
    if !s.lock().unwrap().slices_v1 {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    }
    axum::Json(
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": "discovery.k8s.io",
        "versions": [{"groupVersion": "discovery.k8s.io/v1", "version": "v1"},
                     {"groupVersion": "discovery.k8s.io/v1beta1", "version": "v1beta1"}],
        "preferredVersion": {"groupVersion": "discovery.k8s.io/v1", "version": "v1"}}),
    )
    .into_response()
}

fn list(kind: &str, items: Vec<Value>) -> Response {
    axum::Json(
        json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                      "items": items}),
    )
    .into_response()
}

async fn services(State(_s): State<Fake>, Path(ns): Path<String>) -> Response {
    let items = match ns.as_str() {
        "gpu-operator" => vec![
            json!({"metadata": {"name": "nvidia-dcgm-exporter", "namespace": "gpu-operator",
                "labels": {"app": "nvidia-dcgm-exporter"},
                "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9400"}},
              "spec": {"ports": [{"name": "gpu-metrics", "port": 9400, "targetPort": 9400}]}}),
            json!({"metadata": {"name": "kube-dns", "namespace": "gpu-operator"},
              "spec": {"ports": [{"name": "dns", "port": 53}]}}),
        ],
        "monitoring" => vec![
            json!({"metadata": {"name": "dcgm-dcgm-exporter", "namespace": "monitoring",
                "labels": {"app.kubernetes.io/name": "dcgm-exporter"},
                "annotations": {"prometheus.io/path": "/metrics"}},
              "spec": {"ports": [{"name": "metrics", "port": 9400, "targetPort": "metrics"}]}}),
        ],
        _ => vec![],
    };
    list("ServiceList", items)
}

fn pods(s: &Fake) -> Vec<(String, String, String)> {
    let n = s.lock().unwrap().exporters;
    (0..n)
        .map(|i| {
            (
                format!("nvidia-dcgm-exporter-{i:02}"),
                format!("10.1.0.{}", i + 1),
                format!("gpu-node-{i:02}"),
            )
        })
        .collect()
}

async fn slices(
    State(s): State<Fake>,
    Path(ns): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let selector = q.get("labelSelector").cloned().unwrap_or_default();
    let mut items = Vec::new();
    if ns == "gpu-operator" && selector.contains("nvidia-dcgm-exporter") {
        let eps: Vec<Value> = pods(&s)
            .into_iter()
            .map(|(pod, ip, node)| {
                json!({"addresses": [ip], "nodeName": node, "conditions": {"ready": true},
                       "targetRef": {"kind": "Pod", "name": pod, "namespace": "gpu-operator"}})
            })
            .collect();
        items.push(
            json!({"metadata": {"name": "nvidia-dcgm-exporter-x", "namespace": ns,
            "labels": {"kubernetes.io/service-name": "nvidia-dcgm-exporter"}},
            "addressType": "IPv4", "endpoints": eps,
            "ports": [{"name": "gpu-metrics", "port": 9400, "protocol": "TCP"}]}),
        );
    }
    if ns == "monitoring" && selector.contains("dcgm-dcgm-exporter") {
        items.push(json!({"metadata": {"name": "dcgm-x", "namespace": ns,
            "labels": {"kubernetes.io/service-name": "dcgm-dcgm-exporter"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.2.0.1"], "nodeName": "gpu-node-m",
                "targetRef": {"kind": "Pod", "name": "dcgm-exporter-m", "namespace": ns}},
                {"addresses": ["10.2.0.2"], "conditions": {"ready": false},
                "targetRef": {"kind": "Pod", "name": "dcgm-exporter-n", "namespace": ns}}],
            "ports": [{"name": "metrics", "port": 9400}]}));
    }
    list("EndpointSliceList", items)
}

async fn endpoints(State(s): State<Fake>, Path((ns, name)): Path<(String, String)>) -> Response {
    if ns == "gpu-operator" && name == "nvidia-dcgm-exporter" {
        let addrs: Vec<Value> = pods(&s)
            .into_iter()
            .map(|(pod, ip, node)| {
                json!({"ip": ip, "nodeName": node,
                       "targetRef": {"kind": "Pod", "name": pod, "namespace": ns}})
            })
            .collect();
        return axum::Json(json!({"kind": "Endpoints", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": ns},
            "subsets": [{"addresses": addrs, "ports": [{"name": "gpu-metrics", "port": 9400}]}]}))
        .into_response();
    }
    if ns == "monitoring" && name == "dcgm-dcgm-exporter" {
        return axum::Json(json!({"kind": "Endpoints", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": ns},
            "subsets": [{"addresses": [{"ip": "10.2.0.1", "nodeName": "gpu-node-m",
                "targetRef": {"kind": "Pod", "name": "dcgm-exporter-m", "namespace": ns}}],
                "notReadyAddresses": [{"ip": "10.2.0.2"}],
                "ports": [{"name": "metrics", "port": 9400}]}]}))
        .into_response();
    }
    status(404, "NotFound", &format!("endpoints \"{name}\" not found"))
}

async fn pod_proxy(
    State(s): State<Fake>,
    Path((ns, podport, path)): Path<(String, String, String)>,
    _h: HeaderMap,
) -> Response {
    let page = s.lock().unwrap().page;
    let (pod, _port) = podport.rsplit_once(':').unwrap();
    match page {
        Page::Dcgm => (
            [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
            format!(
                "# path /{path}\n{}",
                dcgm_metrics_text("gpu-node-00", pod, &ns)
            ),
        )
            .into_response(),
        Page::HugeWithLength => {
            ([("content-type", "text/plain")], vec![b'#'; 3 << 20]).into_response()
        }
        Page::HugeChunked => {
            let chunks = futures::stream::iter(
                (0..64).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'#'; 64 << 10]))),
            );
            ([("content-type", "text/plain")], Body::from_stream(chunks)).into_response()
        }
        Page::Forbidden => status(
            403,
            "Forbidden",
            "pods \"x\" is forbidden: cannot get pods/proxy",
        ),
    }
}

// ----------------------------------------------------------------------------------------

const TOKEN: &str = "fake-token-0123456789abcdef";

fn kubeconfig(dir: &std::path::Path, fakes: &[(&str, &FakeKube)]) -> PathBuf {
    let path = dir.join("kubeconfig");
    let ctxs: Vec<KubeContext> = fakes
        .iter()
        .map(|(name, f)| KubeContext::http(name, &f.url, &format!("{TOKEN}-{name}")))
        .collect();
    write_kubeconfig(&path, &ctxs, None);
    path
}

fn opts(mode: TargetMode) -> DiscoveryOptions {
    DiscoveryOptions {
        refresh_interval: Duration::from_secs(300),
        refresh_timeout: Duration::from_millis(1500),
        mode,
        proxy_base: Some("http://skydeck.monitoring.svc:9180".parse().unwrap()),
        proxy_timeout: Duration::from_secs(2),
        proxy_max_bytes: 1 << 20,
        ..Default::default()
    }
}

/// Waits until every named context has completed more than `after[name]` refreshes.
async fn wait_refreshed(d: &Discovery, after: &BTreeMap<String, u64>) {
    // Generous: nextest runs the suite's tests side by side on 2 shared cores.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let st = d.status();
        if after
            .iter()
            .all(|(n, c)| st.iter().any(|s| &s.name == n && s.refreshes > *c))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "contexts did not refresh: {st:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn counts(d: &Discovery, names: &[&str]) -> BTreeMap<String, u64> {
    let st = d.status();
    names
        .iter()
        .map(|n| {
            let s = st.iter().find(|s| s.name == *n).unwrap();
            (n.to_string(), s.refreshes)
        })
        .collect()
}

async fn fetch(router: &Router, uri: &str) -> (StatusCode, HeaderMap, Result<Vec<u8>, String>) {
    let resp = router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .map_err(|e| e.to_string());
    (status, headers, body)
}

fn sd(d: &Discovery) -> Vec<Value> {
    serde_json::from_slice(&d.http_sd_body()).unwrap()
}

fn sample(d: &Discovery, metric: &str, ctx: &str) -> Option<f64> {
    d.samples(jiff::Timestamp::now())
        .into_iter()
        .find(|s| s.name == metric && s.tags.get("context").map(String::as_str) == Some(ctx))
        .map(|s| s.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slices_and_endpoints_fallback_give_labelled_groups() {
    let new = FakeKube::start(true, 2);
    let old = FakeKube::start(false, 2);
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), &[("new-ctx", &new), ("old-ctx", &old)]);
    let wanted = ["new-ctx", "old-ctx", "absent-ctx"].map(String::from);
    let set = ContextSet::load(&[kc], &wanted).unwrap();
    let d = Discovery::start(set, opts(TargetMode::Pod)).unwrap();
    wait_refreshed(&d, &counts(&d, &["new-ctx", "old-ctx"])).await;

    let st = d.status();
    assert_eq!(
        st[0].endpoint_api,
        Some("discovery.k8s.io/v1 EndpointSlices")
    );
    assert_eq!(st[1].endpoint_api, Some("core/v1 Endpoints"));
    assert!(st[0].up && st[1].up && !st[2].up);
    assert!(
        st[2]
            .last_error
            .as_deref()
            .unwrap()
            .contains("context absent-ctx is not in the kubeconfig"),
        "{:?}",
        st[2]
    );
    // Three exporters each: two GPU Operator pods and one ready chart pod (the not-ready one
    // is left out).
    assert_eq!((st[0].targets, st[1].targets), (3, 3));

    let groups = sd(&d);
    assert_eq!(groups.len(), 6, "{groups:#?}");
    let g = &groups[0];
    assert_eq!(g["targets"], json!(["10.1.0.1:9400"]));
    assert_eq!(
        g["labels"],
        json!({"cluster": "new-ctx", "job": "dcgm-exporter",
               "kubernetes_namespace": "gpu-operator",
               "kubernetes_service_name": "nvidia-dcgm-exporter",
               "kubernetes_pod_name": "nvidia-dcgm-exporter-00",
               "kubernetes_node_name": "gpu-node-00",
               "__scheme__": "http", "__metrics_path__": "/metrics"})
    );
    assert_eq!(
        groups[2]["labels"]["kubernetes_pod_name"],
        "dcgm-exporter-m"
    );
    assert_eq!(groups[3]["labels"]["cluster"], "old-ctx");
    // Old servers are asked for Endpoints, never for v1 slices.
    assert!(
        old.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .all(|r| !r.contains("endpointslices"))
    );
    // The context's own token was sent.
    assert!(
        new.state
            .lock()
            .unwrap()
            .authorizations
            .iter()
            .all(|a| a == &format!("Bearer {TOKEN}-new-ctx"))
    );

    assert_eq!(
        sample(&d, "skydeck.discovery.context_up", "new-ctx"),
        Some(1.0)
    );
    assert_eq!(
        sample(&d, "skydeck.discovery.targets", "old-ctx"),
        Some(3.0)
    );
    assert_eq!(
        sample(&d, "skydeck.discovery.context_up", "absent-ctx"),
        Some(0.0)
    );
    assert_eq!(
        sample(&d, "skydeck.discovery.targets", "absent-ctx"),
        Some(0.0)
    );
    assert_eq!(
        sample(&d, "skydeck.discovery.last_success_timestamp", "absent-ctx"),
        None
    );
    assert!(sample(&d, "skydeck.discovery.last_success_timestamp", "new-ctx").unwrap() > 1.7e9);

    // Service mode: the seed's address format, one group per Service (two endpoints behind
    // one Service are one target, without pod labels).
    let set = ContextSet::load(&[dir.path().join("kubeconfig")], &["new-ctx".into()]).unwrap();
    let d2 = Discovery::start(set, opts(TargetMode::Service)).unwrap();
    wait_refreshed(&d2, &counts(&d2, &["new-ctx"])).await;
    let groups = sd(&d2);
    let targets: Vec<&serde_json::Value> = groups.iter().map(|g| &g["targets"]).collect();
    assert_eq!(
        targets,
        [
            &json!(["nvidia-dcgm-exporter.gpu-operator.svc:9400"]),
            &json!(["dcgm-dcgm-exporter.monitoring.svc:9400"])
        ]
    );
    assert!(
        groups
            .iter()
            .all(|g| g["labels"].get("kubernetes_pod_name").is_none())
    );
    d.shutdown();
    d2.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_contexts_go_stale_without_touching_the_others() {
    let good = FakeKube::start(true, 2);
    let hang = FakeKube::start(true, 2);
    let forbidden = FakeKube::start(true, 2);
    let garbage = FakeKube::start(false, 2);
    let mut gone = FakeKube::start(true, 2);
    let never = FakeKube::start(true, 2);
    never.set(Behavior::Hang);
    let names = ["good", "hang", "forbidden", "garbage", "gone", "never"];
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(
        dir.path(),
        &[
            ("good", &good),
            ("hang", &hang),
            ("forbidden", &forbidden),
            ("garbage", &garbage),
            ("gone", &gone),
            ("never", &never),
        ],
    );
    let set = ContextSet::load(&[kc], &names.map(String::from)).unwrap();
    let d = Discovery::start(set, opts(TargetMode::Pod)).unwrap();
    let router = d.router();
    wait_refreshed(&d, &counts(&d, &names)).await;
    let before = sd(&d);
    assert_eq!(before.len(), 15, "never is absent: {before:#?}");
    assert!(before.iter().all(|g| g["labels"]["cluster"] != "never"));

    hang.set(Behavior::Hang);
    forbidden.set(Behavior::Forbidden);
    garbage.set(Behavior::Garbage);
    gone.stop();
    let c = counts(&d, &names);
    d.refresh_now();
    // While `hang` and `never` hang, the SD answer stays fast and complete.
    for _ in 0..50 {
        let t = Instant::now();
        let (s, h, b) = fetch(&router, "/api/service-discovery").await;
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(
            serde_json::from_slice::<Vec<Value>>(&b.unwrap())
                .unwrap()
                .len(),
            15
        );
    }
    wait_refreshed(&d, &c).await;

    let after = sd(&d);
    assert_eq!(after.len(), 15);
    for g in &after {
        let cluster = g["labels"]["cluster"].as_str().unwrap();
        let stale = g["labels"].get("skydeck_stale");
        if cluster == "good" {
            assert!(stale.is_none(), "{g}");
        } else {
            assert_eq!(stale, Some(&json!("true")), "{g}");
        }
    }
    // The good context's groups are byte-for-byte what they were.
    let good_of = |v: &[Value]| -> Vec<Value> {
        v.iter()
            .filter(|g| g["labels"]["cluster"] == "good")
            .cloned()
            .collect()
    };
    assert_eq!(good_of(&before), good_of(&after));

    let st: BTreeMap<String, _> = d
        .status()
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect();
    assert!(st["good"].up && !st["good"].stale);
    for n in ["hang", "forbidden", "garbage", "gone"] {
        assert!(
            !st[n].up && st[n].stale && st[n].targets == 3,
            "{:?}",
            st[n]
        );
        assert_eq!(sample(&d, "skydeck.discovery.context_up", n), Some(0.0));
        assert_eq!(sample(&d, "skydeck.discovery.context_stale", n), Some(1.0));
        assert_eq!(sample(&d, "skydeck.discovery.targets", n), Some(3.0));
        assert!(sample(&d, "skydeck.discovery.last_success_timestamp", n).is_some());
    }
    let err = |n: &str| st[n].last_error.clone().unwrap();
    assert!(
        err("hang").contains("did not finish within"),
        "{}",
        err("hang")
    );
    assert!(err("forbidden").contains("403"), "{}", err("forbidden"));
    assert!(
        err("garbage").contains("context garbage"),
        "{}",
        err("garbage")
    );
    assert!(err("gone").contains("context gone"), "{}", err("gone"));
    assert!(!st["never"].up && !st["never"].stale && st["never"].targets == 0);
    assert_eq!(
        sample(&d, "skydeck.discovery.last_success_timestamp", "never"),
        None
    );
    for s in st.values() {
        let text = format!("{s:?}");
        assert!(!text.contains(TOKEN), "credential in status: {text}");
    }

    // Recovery clears the stale label.
    forbidden.set(Behavior::Healthy);
    let c = counts(&d, &["forbidden"]);
    d.refresh_now();
    wait_refreshed(&d, &c).await;
    let st = d.status();
    let f = st.iter().find(|s| s.name == "forbidden").unwrap();
    assert!(f.up && !f.stale && f.last_error.is_none());
    assert!(
        sd(&d)
            .iter()
            .filter(|g| g["labels"]["cluster"] == "forbidden")
            .all(|g| g["labels"].get("skydeck_stale").is_none())
    );
    d.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_serves_listed_targets_only() {
    let fake = FakeKube::start(true, 1);
    let other = FakeKube::start(true, 1);
    let dir = tempfile::tempdir().unwrap();
    let eks = "arn:aws:eks:us-west-2:123456789012:cluster/gpu";
    let kc = kubeconfig(dir.path(), &[(eks, &fake), ("svc-ctx", &other)]);
    let mut o = opts(TargetMode::Proxy);
    o.context_modes
        .insert("svc-ctx".into(), TargetMode::Service);
    let set = ContextSet::load(&[kc], &[eks.to_string(), "svc-ctx".into()]).unwrap();
    let d = Discovery::start(set, o).unwrap();
    let router = d.router();
    wait_refreshed(&d, &counts(&d, &[eks, "svc-ctx"])).await;

    let groups = sd(&d);
    let g = &groups[0];
    assert_eq!(g["targets"], json!(["skydeck.monitoring.svc:9180"]));
    let path = g["labels"]["__metrics_path__"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        path,
        "/proxy/arn:aws:eks:us-west-2:123456789012:cluster%2Fgpu/gpu-operator/nvidia-dcgm-exporter-00/9400/metrics"
    );

    // As Prometheus sends it (the `%` escaped once more) and as curl would.
    for p in [path.replace('%', "%25"), path.clone()] {
        let (s, h, b) = fetch(&router, &p).await;
        let body = String::from_utf8(b.unwrap()).unwrap();
        assert_eq!(s, StatusCode::OK, "{p}: {body}");
        assert_eq!(
            h["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert!(body.starts_with("# path /metrics\n"), "{body}");
        assert!(body.contains("DCGM_FI_DEV_GPU_UTIL{gpu=\"0\""), "{body}");
    }
    assert!(
        fake.state.lock().unwrap().requests.iter().any(|r| r
            == "/api/v1/namespaces/gpu-operator/pods/nvidia-dcgm-exporter-00:9400/proxy/metrics")
    );

    let enc = "arn:aws:eks:us-west-2:123456789012:cluster%2Fgpu";
    let cases = [
        (
            format!("/proxy/{enc}/gpu-operator/nvidia-dcgm-exporter-99/9400/metrics"),
            404,
            "not_found",
        ),
        (
            format!("/proxy/{enc}/kube-system/nvidia-dcgm-exporter-00/9400/metrics"),
            404,
            "not_found",
        ),
        (
            format!("/proxy/{enc}/gpu-operator/nvidia-dcgm-exporter-00/10250/metrics"),
            404,
            "not_found",
        ),
        (
            format!("/proxy/{enc}/gpu-operator/nvidia-dcgm-exporter-00/9400/debug"),
            404,
            "not_found",
        ),
        (
            format!(
                "/proxy/{enc}/gpu-operator/nvidia-dcgm-exporter-00/9400/../../../api/v1/secrets"
            ),
            400,
            "invalid_path",
        ),
        (
            format!("/proxy/{enc}/gpu-operator/nvidia-dcgm-exporter-00/9400/%2e%2e/secrets"),
            400,
            "invalid_path",
        ),
        (
            format!("/proxy/{enc}/gpu-operator/nvidia-dcgm-exporter-00/9400/metrics%2F..%2Fx"),
            400,
            "invalid_path",
        ),
        (
            format!("/proxy/{enc}/gpu-operator/nvidia-dcgm-exporter-00/9400/metrics?x=1"),
            400,
            "invalid_path",
        ),
        (
            "/proxy/nope/gpu-operator/nvidia-dcgm-exporter-00/9400/metrics".into(),
            404,
            "not_found",
        ),
        (
            "/proxy/svc-ctx/gpu-operator/nvidia-dcgm-exporter-00/9400/metrics".into(),
            404,
            "not_found",
        ),
        ("/proxy/only/three".into(), 404, "not_found"),
    ];
    for (p, want, code) in cases {
        let (s, h, b) = fetch(&router, &p).await;
        let v: Value = serde_json::from_slice(&b.unwrap()).unwrap();
        assert_eq!(s.as_u16(), want, "{p}: {v}");
        assert_eq!(h["content-type"], "application/json", "{p}");
        assert_eq!(v["error"]["code"], code, "{p}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    let n_before = fake.state.lock().unwrap().requests.len();

    // Oversized answers: refused up front when the length is known, cut off when streamed.
    fake.set_page(Page::HugeWithLength);
    let (s, _, b) = fetch(&router, &path).await;
    let v: Value = serde_json::from_slice(&b.unwrap()).unwrap();
    assert_eq!(
        (s.as_u16(), v["error"]["code"].as_str()),
        (502, Some("too_large")),
        "{v}"
    );
    assert!(v["error"]["message"].as_str().unwrap().contains(eks));
    fake.set_page(Page::HugeChunked);
    let (s, _, b) = fetch(&router, &path).await;
    assert_eq!(s, StatusCode::OK);
    assert!(b.unwrap_err().contains("proxy_max_bytes"));
    // The API server refusing the proxy: 502 naming the context, no token.
    fake.set_page(Page::Forbidden);
    let (s, _, b) = fetch(&router, &path).await;
    let text = String::from_utf8(b.unwrap()).unwrap();
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{text}");
    assert!(
        text.contains("\"forbidden\"") && text.contains(eks) && !text.contains(TOKEN),
        "{text}"
    );
    // A hung API server: 504 after proxy_timeout.
    fake.set(Behavior::Hang);
    let t = Instant::now();
    let (s, _, _) = fetch(&router, &path).await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
    assert!(t.elapsed() < Duration::from_secs(5));
    // Refused requests never reached the API server.
    assert_eq!(fake.state.lock().unwrap().requests.len(), n_before + 4);

    let proxy = |r: &str| {
        d.samples(jiff::Timestamp::now())
            .into_iter()
            .find(|s| {
                s.name == "skydeck.proxy.requests"
                    && s.tags["context"] == eks
                    && s.tags["result"] == r
            })
            .map(|s| s.value)
    };
    assert_eq!(proxy("ok"), Some(2.0));
    assert_eq!(proxy("too_large"), Some(2.0));
    assert_eq!(proxy("forbidden"), Some(1.0));
    assert_eq!(proxy("timeout"), Some(1.0));
    assert!(proxy("not_found").unwrap() >= 4.0);
    d.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sd_answers_every_target_of_50_contexts_of_20_exporters() {
    let fake = FakeKube::start(true, 19);
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..50).map(|i| format!("ctx-{i:02}")).collect();
    let path = dir.path().join("kubeconfig");
    let ctxs: Vec<KubeContext> = names
        .iter()
        .map(|n| KubeContext::http(n, &fake.url, TOKEN))
        .collect();
    write_kubeconfig(&path, &ctxs, None);
    let set = ContextSet::load(&[path], &names).unwrap();
    // A refresh that fails is tried again one refresh interval later: with the other tests'
    // 300 s a context whose first list timed out under CI's load (1.5 s) stayed empty past
    // the wait below. This test is about completeness: a 10 s list timeout and a 30 s
    // interval, as a deployment has.
    let o = DiscoveryOptions {
        refresh_interval: Duration::from_secs(30),
        refresh_timeout: Duration::from_secs(10),
        ..opts(TargetMode::Proxy)
    };
    let d = Discovery::start(set, o).unwrap();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    wait_refreshed(&d, &counts(&d, &refs)).await;
    // On a loaded machine a context's first list may still time out and be retried: wait
    // for all 1,000 targets rather than assume one round got them.
    let t0 = Instant::now();
    while sd(&d).len() != 1000 {
        // Generous: CI runs every test at once on two cores, and a retried context waits out
        // its backoff; this test is about completeness, scripts/bench/serve.sh about speed.
        assert!(
            t0.elapsed() < Duration::from_secs(240),
            "{} targets",
            sd(&d).len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let router = d.router();
    for _ in 0..1000 {
        let resp = router
            .clone()
            .oneshot(
                Request::get("/api/service-discovery")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let _ = resp.into_body().collect().await.unwrap();
    }
    // Its speed is measured by scripts/bench/serve.sh, not asserted here.
    d.shutdown();
}
