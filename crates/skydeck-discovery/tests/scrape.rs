//! `Discovery::exporters` and `Discovery::scrape` against an in-process fake Kubernetes API
//! server (axum on 127.0.0.1:0, core/v1 Endpoints only): the exporters listed with their pod,
//! node, port, path and scheme; a page fetched through the pod proxy path; and every failure
//! typed, naming the context and pod, without the token, and counted in the proxy counters as
//! the `/proxy/` route counts them.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use skydeck_discovery::{
    ContextSet, Discovery, DiscoveryOptions, ExporterRef, ScrapeErrorKind, TargetMode,
};
use skydeck_testkit::kube::{KubeContext, dcgm_metrics_text, write_kubeconfig};

const TOKEN: &str = "scrape-test-token-0123456789";
const CTX: &str = "arn:aws:eks:us-west-2:123456789012:cluster/gpu";
const PODS: [&str; 6] = [
    "dcgm-ok",
    "dcgm-hang",
    "dcgm-big",
    "dcgm-down",
    "dcgm-forbidden",
    "dcgm-unavailable",
];

fn status(code: u16, message: &str) -> Response {
    (
        StatusCode::from_u16(code).unwrap(),
        [("content-type", "application/json")],
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "message": message, "code": code})
        .to_string(),
    )
        .into_response()
}

async fn services() -> Response {
    axum::Json(
        json!({"kind": "ServiceList", "apiVersion": "v1", "metadata": {},
        "items": [{"metadata": {"name": "nvidia-dcgm-exporter", "namespace": "gpu-operator",
            "labels": {"app": "nvidia-dcgm-exporter"}},
          "spec": {"ports": [{"name": "gpu-metrics", "port": 9400, "targetPort": 9400}]}}]}),
    )
    .into_response()
}

async fn endpoints() -> Response {
    let mut addrs: Vec<_> = PODS
        .iter()
        .enumerate()
        .map(|(i, pod)| {
            json!({"ip": format!("10.1.0.{}", i + 1), "nodeName": format!("gpu-node-{i}"),
                   "targetRef": {"kind": "Pod", "name": pod, "namespace": "gpu-operator"}})
        })
        .collect();
    // No pod to proxy to: not listed by `exporters()`.
    addrs.push(json!({"ip": "10.1.0.99"}));
    axum::Json(json!({"kind": "Endpoints", "apiVersion": "v1",
        "metadata": {"name": "nvidia-dcgm-exporter", "namespace": "gpu-operator"},
        "subsets": [{"addresses": addrs, "ports": [{"name": "gpu-metrics", "port": 9400}]}]}))
    .into_response()
}

async fn pod_proxy(Path((ns, podport, path)): Path<(String, String, String)>) -> Response {
    let (pod, _) = podport.rsplit_once(':').unwrap();
    match pod {
        "dcgm-ok" => (
            [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
            format!(
                "# path /{path}\n{}",
                dcgm_metrics_text("gpu-node-0", "train-head", &ns)
            ),
        )
            .into_response(),
        "dcgm-hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
        "dcgm-big" => {
            let chunks = futures::stream::iter(
                (0..32).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'#'; 64 << 10]))),
            );
            Body::from_stream(chunks).into_response()
        }
        "dcgm-down" => status(
            500,
            "error trying to reach service: dial tcp 10.1.0.4:9400: connect: connection refused",
        ),
        "dcgm-unavailable" => status(503, "no endpoints available"),
        _ => status(
            403,
            "pods \"x\" is forbidden: cannot get resource pods/proxy",
        ),
    }
}

async fn start_fake() -> String {
    let app = Router::new()
        .route("/api/v1/namespaces/gpu-operator/services", get(services))
        .route(
            "/api/v1/namespaces/gpu-operator/endpoints/nvidia-dcgm-exporter",
            get(endpoints),
        )
        .route(
            "/api/v1/namespaces/{ns}/pods/{podport}/proxy/{*path}",
            get(pod_proxy),
        )
        .fallback(|| async { status(404, "the server could not find the requested resource") });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn discovery(url: &str, dir: &std::path::Path) -> Discovery {
    let kc = dir.join("kubeconfig");
    write_kubeconfig(&kc, &[KubeContext::http(CTX, url, TOKEN)], None);
    let set = ContextSet::load(&[kc], &[CTX.to_string(), "absent".to_string()]).unwrap();
    let d = Discovery::start(
        set,
        DiscoveryOptions {
            namespaces: vec!["gpu-operator".into()],
            refresh_interval: Duration::from_secs(300),
            refresh_timeout: Duration::from_secs(5),
            // Pod mode: the scrape goes through the API server whatever Prometheus uses.
            mode: TargetMode::Pod,
            ..Default::default()
        },
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while d.status()[0].refreshes == 0 {
        assert!(Instant::now() < deadline, "{:#?}", d.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d
}

fn proxy_count(d: &Discovery, result: &str) -> f64 {
    d.samples(jiff::Timestamp::now())
        .into_iter()
        .find(|s| {
            s.name == "skydeck.proxy.requests"
                && s.tags["context"] == CTX
                && s.tags["result"] == result
        })
        .map_or(0.0, |s| s.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporters_are_listed_and_scraped_through_the_pod_proxy() {
    let url = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let d = discovery(&url, dir.path()).await;

    let list = d.exporters();
    let pods: Vec<&str> = list.iter().map(|e| e.pod.as_str()).collect();
    let mut want = PODS.to_vec();
    want.sort_unstable();
    assert_eq!(pods, want, "{list:#?}");
    let ok = list.iter().find(|e| e.pod == "dcgm-ok").unwrap().clone();
    assert_eq!(
        ok,
        ExporterRef {
            context: CTX.into(),
            mode: TargetMode::Pod,
            namespace: "gpu-operator".into(),
            service: "nvidia-dcgm-exporter".into(),
            pod: "dcgm-ok".into(),
            node: Some("gpu-node-0".into()),
            port: 9400,
            path: "/metrics".into(),
            scheme: "http".into(),
            stale: false,
        }
    );
    assert_eq!(
        ok.to_string(),
        format!("{CTX}/gpu-operator/dcgm-ok:9400/metrics")
    );

    let body = d
        .scrape(&ok, Duration::from_secs(5), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.starts_with("# path /metrics\n"), "{text}");
    assert!(text.contains("DCGM_FI_DEV_GPU_UTIL{gpu=\"0\""), "{text}");

    let by_pod = |pod: &str| list.iter().find(|e| e.pod == pod).unwrap().clone();
    let check = |e: &skydeck_discovery::ScrapeError, kind: ScrapeErrorKind, pod: &str| {
        assert_eq!(e.kind, kind, "{e}");
        assert_eq!((e.context.as_str(), e.pod.as_str()), (CTX, pod));
        let m = e.to_string();
        assert!(m.contains(CTX) && m.contains(pod), "{m}");
        assert!(!m.contains(TOKEN), "credential in {m}");
    };

    // Hung: the caller's timeout, not proxy_timeout (10 s by default).
    let t = Instant::now();
    let e = d
        .scrape(&by_pod("dcgm-hang"), Duration::from_millis(300), 1 << 20)
        .await
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    check(&e, ScrapeErrorKind::Timeout, "dcgm-hang");
    assert!(e.message.contains("the scrape timeout"), "{e}");

    // Streamed past the caller's limit: cut off while reading.
    let e = d
        .scrape(&by_pod("dcgm-big"), Duration::from_secs(5), 1 << 20)
        .await
        .unwrap_err();
    check(&e, ScrapeErrorKind::TooLarge, "dcgm-big");
    assert!(e.message.contains("the scrape size limit"), "{e}");
    // Under a larger limit the same page is whole (2 MiB in 32 chunks).
    let big = d
        .scrape(&by_pod("dcgm-big"), Duration::from_secs(5), 4 << 20)
        .await
        .unwrap();
    assert_eq!(big.len(), 2 << 20);

    let e = d
        .scrape(&by_pod("dcgm-down"), Duration::from_secs(5), 1 << 20)
        .await
        .unwrap_err();
    check(&e, ScrapeErrorKind::Upstream, "dcgm-down");
    assert!(
        e.message.contains("500") && e.message.contains("connection refused"),
        "{e}"
    );
    // kube's client retries 429/503/504 with backoff (its default retry layer), so an API
    // server answering 503 (overloaded, or a load balancer in front of it) costs the caller's
    // timeout and is counted as a timeout, not an upstream error; bounded all the same. (A
    // pod that refuses the connection is a 500 from kube-apiserver 1.20, as above.)
    let t = Instant::now();
    let e = d
        .scrape(
            &by_pod("dcgm-unavailable"),
            Duration::from_millis(500),
            1 << 20,
        )
        .await
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    check(&e, ScrapeErrorKind::Timeout, "dcgm-unavailable");

    let e = d
        .scrape(&by_pod("dcgm-forbidden"), Duration::from_secs(5), 1 << 20)
        .await
        .unwrap_err();
    check(&e, ScrapeErrorKind::Forbidden, "dcgm-forbidden");

    // Not listed (a pod that went away, or one never found): refused without a request.
    let gone = ExporterRef {
        pod: "dcgm-gone".into(),
        ..ok.clone()
    };
    let e = d
        .scrape(&gone, Duration::from_secs(5), 1 << 20)
        .await
        .unwrap_err();
    check(&e, ScrapeErrorKind::NotListed, "dcgm-gone");
    let other_path = ExporterRef {
        path: "/debug/pprof".into(),
        ..ok.clone()
    };
    let e = d
        .scrape(&other_path, Duration::from_secs(5), 1 << 20)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ScrapeErrorKind::NotListed);
    // A context that is not in the kubeconfig has no client.
    let absent = ExporterRef {
        context: "absent".into(),
        ..ok.clone()
    };
    let e = d
        .scrape(&absent, Duration::from_secs(5), 1 << 20)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ScrapeErrorKind::Unavailable, "{e}");
    assert!(e.message.contains("absent"), "{e}");

    // The counts of this pod-mode context are kept but not reported (`samples()` reports
    // proxy counters of proxy-mode contexts only); the next test reads them in proxy mode.
    d.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_count_in_the_proxy_counters() {
    let url = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    write_kubeconfig(&kc, &[KubeContext::http(CTX, &url, TOKEN)], None);
    let set = ContextSet::load(&[kc], &[CTX.to_string()]).unwrap();
    let d = Discovery::start(
        set,
        DiscoveryOptions {
            namespaces: vec!["gpu-operator".into()],
            refresh_interval: Duration::from_secs(300),
            refresh_timeout: Duration::from_secs(5),
            mode: TargetMode::Proxy,
            proxy_base: Some("http://skydeck.monitoring.svc:9180".parse().unwrap()),
            ..Default::default()
        },
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while d.status()[0].refreshes == 0 {
        assert!(Instant::now() < deadline, "{:#?}", d.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let list = d.exporters();
    assert_eq!(list.len(), PODS.len());
    let by_pod = |pod: &str| list.iter().find(|e| e.pod == pod).unwrap().clone();
    let limit = 1 << 20;
    d.scrape(&by_pod("dcgm-ok"), Duration::from_secs(5), limit)
        .await
        .unwrap();
    d.scrape(&by_pod("dcgm-ok"), Duration::from_secs(5), limit)
        .await
        .unwrap();
    let _ = d
        .scrape(&by_pod("dcgm-big"), Duration::from_secs(5), limit)
        .await;
    let _ = d
        .scrape(&by_pod("dcgm-hang"), Duration::from_millis(200), limit)
        .await;
    let _ = d
        .scrape(&by_pod("dcgm-forbidden"), Duration::from_secs(5), limit)
        .await;
    let _ = d
        .scrape(&by_pod("dcgm-down"), Duration::from_secs(5), limit)
        .await;
    let gone = ExporterRef {
        pod: "dcgm-gone".into(),
        ..by_pod("dcgm-ok")
    };
    let _ = d.scrape(&gone, Duration::from_secs(5), limit).await;
    let counts: Vec<(&str, f64)> = [
        "ok",
        "too_large",
        "timeout",
        "forbidden",
        "upstream_error",
        "not_found",
    ]
    .into_iter()
    .map(|r| (r, proxy_count(&d, r)))
    .collect();
    assert_eq!(
        counts,
        [
            ("ok", 2.0),
            ("too_large", 1.0),
            ("timeout", 1.0),
            ("forbidden", 1.0),
            ("upstream_error", 1.0),
            ("not_found", 1.0)
        ]
    );
    // The future owns what it needs: it can be spawned.
    let spawned = tokio::spawn(d.scrape(&by_pod("dcgm-ok"), Duration::from_secs(5), limit));
    assert!(spawned.await.unwrap().is_ok());
    d.shutdown();
}
