//! Against the real kube-apiserver (v1.20.2 with etcd) that `scripts/peers/kube.sh up NAME`
//! starts; `SKYDECK_TEST_KUBE` points at its directory. Objects are created the way the GPU
//! Operator and the dcgm-exporter chart create them (the test writes the Endpoints itself:
//! there is no controller-manager), each test in its own namespaces so tests run in parallel.
//! The proxy test serves a DCGM page from a network namespace (the API server refuses to
//! proxy to loopback) behind a Pod whose `status.podIP` the test writes. Without the peer these
//! tests fail loudly instead of passing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use skydeck_discovery::{ContextSet, Discovery, DiscoveryOptions, TargetMode};
use skydeck_testkit::kube::{
    EndpointAddr, ExporterSpec, KubeContext, KubePeer, NetnsHost, dcgm_metrics_text, unique_name,
    write_kubeconfig,
};
use tower::ServiceExt;

async fn wait_refreshed(d: &Discovery) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = d.status();
        if st.iter().all(|s| s.refreshes > 0 || s.server.is_none()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "contexts did not refresh: {st:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn options(namespaces: &[&str], mode: TargetMode) -> DiscoveryOptions {
    DiscoveryOptions {
        namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
        refresh_timeout: Duration::from_secs(10),
        mode,
        proxy_base: Some("http://skydeck.monitoring.svc:9180".parse().unwrap()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_api_server_lists_gpu_operator_and_chart_exporters() {
    let peer = KubePeer::from_env();
    peer.grant_reader();
    let op_ns = unique_name("gpu-operator");
    let chart_ns = unique_name("monitoring");
    peer.create_namespace(&op_ns);
    peer.create_namespace(&chart_ns);
    // GPU Operator: assets/state-dcgm-exporter/0600_service.yaml.
    peer.create_service(
        &op_ns,
        "nvidia-dcgm-exporter",
        &[("app", "nvidia-dcgm-exporter")],
        &[
            ("prometheus.io/scrape", "true"),
            ("prometheus.io/port", "9400"),
        ],
        &[("gpu-metrics", 9400)],
    );
    let addr = |ip: &str, node: &str, pod: &str| EndpointAddr {
        ip: ip.into(),
        node: Some(node.into()),
        pod: Some(pod.into()),
    };
    peer.create_endpoints(
        &op_ns,
        "nvidia-dcgm-exporter",
        &[
            addr("10.250.200.11", "gpu-node-1", "nvidia-dcgm-exporter-abcde"),
            addr("10.250.200.12", "gpu-node-2", "nvidia-dcgm-exporter-fghij"),
        ],
        &[("gpu-metrics", 9400)],
    );
    // The standalone chart: Service `<release>-dcgm-exporter`, port `metrics`.
    peer.create_service(
        &chart_ns,
        "dcgm-dcgm-exporter",
        &[
            ("app.kubernetes.io/name", "dcgm-exporter"),
            ("app.kubernetes.io/instance", "dcgm"),
        ],
        &[("prometheus.io/scrape", "true")],
        &[("metrics", 9400)],
    );
    peer.create_endpoints(
        &chart_ns,
        "dcgm-dcgm-exporter",
        &[addr("10.250.200.21", "gpu-node-3", "dcgm-dcgm-exporter-x1")],
        &[("metrics", 9400)],
    );
    // Not an exporter: must not be listed.
    peer.create_service(&op_ns, "other", &[("app", "other")], &[], &[("http", 80)]);

    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    write_kubeconfig(
        &kc,
        &[
            KubeContext::for_peer("real-reader", &peer, peer.reader_token()),
            KubeContext::for_peer("real-norights", &peer, peer.norights_token()),
        ],
        Some("real-reader"),
    );
    let set = ContextSet::load(&[kc], &["real-reader".into(), "real-norights".into()]).unwrap();
    let d = Discovery::start(set, options(&[&op_ns, &chart_ns], TargetMode::Pod)).unwrap();
    wait_refreshed(&d).await;

    let st: BTreeMap<String, _> = d
        .status()
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect();
    let reader = &st["real-reader"];
    assert!(reader.up, "{reader:#?}");
    // 1.20 has only discovery.k8s.io/v1beta1: the fallback to core/v1 Endpoints.
    assert_eq!(reader.endpoint_api, Some("core/v1 Endpoints"));
    assert_eq!(reader.targets, 3);
    let norights = &st["real-norights"];
    assert!(
        !norights.up && !norights.stale && norights.targets == 0,
        "{norights:#?}"
    );
    let err = norights.last_error.clone().unwrap();
    assert!(err.contains("403") && err.contains("forbidden"), "{err}");
    assert!(!err.contains(peer.norights_token()), "{err}");

    let groups: Vec<Value> = serde_json::from_slice(&d.http_sd_body()).unwrap();
    assert_eq!(groups.len(), 3, "{groups:#?}");
    let by_pod: BTreeMap<String, &Value> = groups
        .iter()
        .map(|g| {
            (
                g["labels"]["kubernetes_pod_name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                g,
            )
        })
        .collect();
    let g = by_pod["nvidia-dcgm-exporter-abcde"];
    assert_eq!(g["targets"], json!(["10.250.200.11:9400"]));
    assert_eq!(
        g["labels"],
        json!({"cluster": "real-reader", "job": "dcgm-exporter",
               "kubernetes_namespace": op_ns,
               "kubernetes_service_name": "nvidia-dcgm-exporter",
               "kubernetes_pod_name": "nvidia-dcgm-exporter-abcde",
               "kubernetes_node_name": "gpu-node-1",
               "__scheme__": "http", "__metrics_path__": "/metrics"})
    );
    let g = by_pod["dcgm-dcgm-exporter-x1"];
    assert_eq!(g["labels"]["kubernetes_namespace"], chart_ns.as_str());
    assert_eq!(g["labels"]["kubernetes_service_name"], "dcgm-dcgm-exporter");
    let up = |ctx: &str| {
        d.samples(jiff::Timestamp::now())
            .into_iter()
            .find(|s| s.name == "skydeck.discovery.context_up" && s.tags["context"] == ctx)
            .map(|s| s.value)
    };
    assert_eq!(
        (up("real-reader"), up("real-norights")),
        (Some(1.0), Some(0.0))
    );
    d.shutdown();
    peer.delete_namespace(&op_ns);
    peer.delete_namespace(&chart_ns);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_api_server_proxies_a_dcgm_page_from_a_pod() {
    let peer = KubePeer::from_env();
    peer.grant_reader();
    let ns = unique_name("gpu-operator");
    peer.create_namespace(&ns);
    let mut host = NetnsHost::create_unique("skdisc");
    let pod = "nvidia-dcgm-exporter-n1";
    let page_dir = tempfile::tempdir().unwrap();
    let page = dcgm_metrics_text("gpu-node-1", "trainer-0", "team-a");
    std::fs::write(page_dir.path().join("metrics"), &page).unwrap();
    host.serve_dir(page_dir.path(), 9400);

    peer.create_exporter(
        &ns,
        &ExporterSpec {
            service: "nvidia-dcgm-exporter",
            labels: &[("app", "nvidia-dcgm-exporter")],
            annotations: &[("prometheus.io/scrape", "true")],
            port: ("gpu-metrics", 9400),
            pod,
            node: "gpu-node-1",
            ip: host.ns_ip(),
        },
    );

    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    let ctx = "kind-gpu/east";
    write_kubeconfig(
        &kc,
        &[KubeContext::for_peer(ctx, &peer, peer.reader_token())],
        Some(ctx),
    );
    let set = ContextSet::load(&[kc], &[]).unwrap();
    let d = Discovery::start(set, options(&[&ns], TargetMode::Proxy)).unwrap();
    wait_refreshed(&d).await;
    let groups: Vec<Value> = serde_json::from_slice(&d.http_sd_body()).unwrap();
    assert_eq!(groups.len(), 1, "{groups:#?} {:#?}", d.status());
    let path = groups[0]["labels"]["__metrics_path__"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        path,
        format!("/proxy/kind-gpu%2Feast/{ns}/{pod}/9400/metrics")
    );
    assert_eq!(groups[0]["targets"], json!(["skydeck.monitoring.svc:9180"]));

    let router = d.router();
    // As Prometheus sends it: the `%` of the label escaped once more.
    let resp = router
        .clone()
        .oneshot(
            Request::get(path.replace('%', "%25"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, page);

    // A pod that discovery does not list is refused without asking the API server.
    let resp = router
        .oneshot(
            Request::get(format!(
                "/proxy/kind-gpu%2Feast/{ns}/other-pod/9400/metrics"
            ))
            .body(Body::empty())
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    d.shutdown();
    peer.delete_namespace(&ns);
}
