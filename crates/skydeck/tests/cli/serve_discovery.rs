//! Discovery end to end: `skydeck serve` against the real kube-apiserver that
//! `scripts/test.sh` starts, with a DCGM-format exporter in a network namespace the test
//! creates (the API server refuses to proxy to loopback), and a real Prometheus that finds it
//! through `/api/service-discovery` and scrapes it through serve's proxy and the API server.
//! Beside the good context: one without RBAC rights (403), one that accepts and never
//! answers, one that answers garbage, one that disappears mid-run, and one named but missing
//! from the kubeconfig.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use skydeck_testkit::kube::{
    ExporterSpec, KubeContext, KubePeer, NetnsHost, dcgm_metrics_text, unique_name,
    write_kubeconfig,
};

use crate::serve::{Exposition, Prometheus, Served};

/// Accepts connections and never answers.
fn hanging_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
        }
    });
    port
}

/// Answers every request with 200 and a body that is not JSON.
fn garbage_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 14\r\n\
                      connection: close\r\n\r\n{\"items\": [oo",
                );
            });
        }
    });
    port
}

/// A TCP forwarder to `upstream` that can be cut: the context "disappears mid-run".
struct Forwarder {
    port: u16,
    on: Arc<AtomicBool>,
}

impl Forwarder {
    fn start(upstream: String) -> Forwarder {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let on = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&on);
        std::thread::spawn(move || {
            for client in l.incoming().flatten() {
                if !flag.load(Ordering::SeqCst) {
                    drop(client); // refused from now on
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let flag = Arc::clone(&flag);
                for (mut a, mut b) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let flag = Arc::clone(&flag);
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        a.set_read_timeout(Some(Duration::from_millis(200))).ok();
                        loop {
                            if !flag.load(Ordering::SeqCst) {
                                let _ = b.shutdown(std::net::Shutdown::Both);
                                return;
                            }
                            match a.read(&mut buf) {
                                Ok(0) => {
                                    let _ = b.shutdown(std::net::Shutdown::Write);
                                    return;
                                }
                                Ok(n) => {
                                    if b.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => return,
                            }
                        }
                    });
                }
                let _ = flag;
            }
        });
        Forwarder { port, on }
    }

    fn cut(&self) {
        self.on.store(false, Ordering::SeqCst);
    }
}

/// A DCGM exporter serving `page` from a network-namespace host, with its Pod (IP written
/// through the status subresource), Service and Endpoints in `ns`, as the GPU Operator makes
/// them.
fn exporter(peer: &KubePeer, ns: &str, pod: &str, page: &str) -> (NetnsHost, tempfile::TempDir) {
    let mut host = NetnsHost::create_unique("dcgm");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("metrics"), page).unwrap();
    host.serve_dir(dir.path(), 9400);
    peer.create_exporter(
        ns,
        &ExporterSpec {
            service: "nvidia-dcgm-exporter",
            labels: &[("app", "nvidia-dcgm-exporter")],
            annotations: &[],
            port: ("gpu-metrics", 9400),
            pod,
            node: "gpu-node-1",
            ip: host.ns_ip(),
        },
    );
    (host, dir)
}

fn sd(served: &Served) -> Vec<serde_json::Value> {
    let (code, ct, body) = served.get("/api/service-discovery", None);
    assert_eq!(code, 200, "{body}");
    assert!(ct.starts_with("application/json"), "{ct}");
    serde_json::from_str(&body).unwrap()
}

fn groups_of<'a>(sd: &'a [serde_json::Value], cluster: &str) -> Vec<&'a serde_json::Value> {
    sd.iter()
        .filter(|g| g["labels"]["cluster"] == cluster)
        .collect()
}

#[test]
fn prometheus_scrapes_dcgm_through_serve_and_the_real_apiserver() {
    let peer = KubePeer::from_env();
    peer.grant_reader();
    let ns = unique_name("gpu-op");
    peer.create_namespace(&ns);

    let pod = "nvidia-dcgm-exporter-7x2kq";
    let (_host, _page) = exporter(
        &peer,
        &ns,
        pod,
        &dcgm_metrics_text("gpu-node-1", "trainer-0", "ml"),
    );

    let upstream = peer.endpoint().trim_start_matches("https://").to_string();
    let flaky = Forwarder::start(upstream);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut flaky_ctx = KubeContext::for_peer("flaky", &peer, peer.reader_token());
    flaky_ctx.server = format!("https://127.0.0.1:{}", flaky.port);
    let hang = KubeContext::http(
        "hang",
        &format!("http://127.0.0.1:{}", hanging_port()),
        "t1",
    );
    write_kubeconfig(
        &kubeconfig,
        &[
            KubeContext::for_peer("good", &peer, peer.reader_token()),
            KubeContext::for_peer("norights", &peer, peer.norights_token()),
            hang,
            KubeContext::http(
                "garbage",
                &format!("http://127.0.0.1:{}", garbage_port()),
                "t2",
            ),
            flaky_ctx,
        ],
        Some("good"),
    );
    std::fs::write(
        dir.path().join("skydeck.toml"),
        format!(
            "[discovery]\nnamespaces = [\"{ns}\"]\nrefresh_interval = \"5s\"\nrefresh_timeout = \"2s\"\n\
             proxy_timeout = \"5s\"\n"
        ),
    )
    .unwrap();
    let kc = kubeconfig.display().to_string();
    let served = Served::start_in(
        dir,
        &[
            "--no-skypilot",
            "--config",
            "skydeck.toml",
            "--kubeconfig",
            &kc,
            "--context",
            "good",
            "--context",
            "norights",
            "--context",
            "hang",
            "--context",
            "garbage",
            "--context",
            "flaky",
            "--context",
            "missing",
        ],
        &[],
    );

    // Discovery lists the exporter of the good and the flaky context, with its labels.
    let t0 = Instant::now();
    let list = loop {
        let list = sd(&served);
        if !groups_of(&list, "good").is_empty() && !groups_of(&list, "flaky").is_empty() {
            break list;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "no targets: {list:?}\n{}",
            served.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let good = groups_of(&list, "good")[0];
    let labels = &good["labels"];
    assert_eq!(labels["kubernetes_namespace"], ns.as_str());
    assert_eq!(labels["kubernetes_pod_name"], pod);
    assert_eq!(labels["kubernetes_node_name"], "gpu-node-1");
    assert_eq!(labels["job"], "dcgm-exporter");
    assert_eq!(labels["__scheme__"], "http");
    let path = labels["__metrics_path__"].as_str().unwrap().to_string();
    assert_eq!(path, format!("/proxy/good/{ns}/{pod}/9400/metrics"));
    assert!(labels.get("skydeck_stale").is_none(), "{labels}");
    assert_eq!(good["targets"][0], served.url.trim_start_matches("http://"));
    for bad in ["norights", "hang", "garbage", "missing"] {
        assert!(groups_of(&list, bad).is_empty(), "{bad}: {list:?}");
    }

    // The proxy serves the page through the API server, and nothing else.
    let (code, _, body) = served.get(&path, None);
    assert_eq!(code, 200, "{body}\n{}", served.log_text());
    assert!(body.contains("DCGM_FI_DEV_GPU_UTIL{"), "{body}");
    let (code, _, body) = served.get(&format!("/proxy/good/{ns}/other-pod/9400/metrics"), None);
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("\"error\""), "{body}");
    let (code, _, body) = served.get(
        &format!("/proxy/good/{ns}/{pod}/9400/..%2F..%2Fsecrets"),
        None,
    );
    assert!(code == 400 || code == 404, "{code} {body}");

    // Prometheus finds the exporter through HTTP SD and scrapes it through serve.
    let prom = Prometheus::start(
        &format!(
            "  - job_name: dcgm\n    http_sd_configs: [{{url: '{}/api/service-discovery', refresh_interval: 5s}}]\n",
            served.url
        ),
        &[],
    );
    let r = prom.wait_query("DCGM_FI_DEV_GPU_UTIL{cluster=\"good\"}");
    assert_eq!(r[0]["value"][1], "87");
    assert_eq!(r[0]["metric"]["kubernetes_pod_name"], pod);
    assert_eq!(r[0]["metric"]["job"], "dcgm-exporter");
    let up = prom.wait_query("up{cluster=\"good\"}");
    assert_eq!(up[0]["value"][1], "1", "{up:?}");

    // Each context's health is a metric.
    let e = served.wait_metrics("context health", |e| {
        ["norights", "hang", "garbage"]
            .iter()
            .all(|c| e.get("skydeck_discovery_context_up", &[("context", c)]) == Some(0.0))
    });
    assert_eq!(
        e.get("skydeck_discovery_context_up", &[("context", "good")]),
        Some(1.0)
    );
    assert_eq!(
        e.get("skydeck_discovery_targets", &[("context", "good")]),
        Some(1.0)
    );
    crate::serve::promtool_check(&e.text);

    // The flaky context goes away: its last good targets stay, marked stale; good's don't move.
    flaky.cut();
    let t0 = Instant::now();
    loop {
        let list = sd(&served);
        let f = groups_of(&list, "flaky");
        if f.len() == 1 && f[0]["labels"]["skydeck_stale"] == "true" {
            let g = groups_of(&list, "good");
            assert_eq!(g.len(), 1);
            assert!(g[0]["labels"].get("skydeck_stale").is_none());
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "flaky never went stale: {list:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let e = served.wait_metrics("flaky down", |e| {
        e.get("skydeck_discovery_context_up", &[("context", "flaky")]) == Some(0.0)
    });
    assert_eq!(
        e.get("skydeck_discovery_context_stale", &[("context", "flaky")]),
        Some(1.0)
    );
    let e2 = Exposition::parse(&served.metrics(None));
    assert_eq!(
        e2.get("skydeck_discovery_context_up", &[("context", "good")]),
        Some(1.0)
    );

    let log = served.log_text();
    assert!(
        log.contains("missing"),
        "the missing context is reported: {log}"
    );
    for secret in [
        peer.reader_token(),
        peer.norights_token(),
        peer.admin_token(),
    ] {
        assert!(!log.contains(secret), "a token leaked into the log");
    }
    peer.delete_namespace(&ns);
}

/// Without any Prometheus: serve scrapes the exporter discovery found, through the API
/// server, judges the GPUs against the SkyPilot clusters and forwards per-GPU series to
/// Datadog.
#[test]
fn serve_scrapes_dcgm_itself_and_forwards_gpu_series() {
    use skydeck_testkit::datadog::{FakeDatadog, GOOD_KEY};
    let peer = KubePeer::from_env();
    peer.grant_reader();
    let ns = unique_name("gpu-op");
    peer.create_namespace(&ns);
    // One GPU of the captured fleet's `carol-serve` (UP, one L4; a VM cluster named by the
    // `skypilot_cluster` label a relabeling adds) and one GPU of no SkyPilot cluster.
    let page = "# TYPE DCGM_FI_PROF_GR_ENGINE_ACTIVE gauge\n\
        DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu=\"0\",UUID=\"GPU-1\",modelName=\"NVIDIA L4\",Hostname=\"h1\",skypilot_cluster=\"carol-serve\"} 0.25\n\
        DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu=\"0\",UUID=\"GPU-2\",modelName=\"NVIDIA L4\",Hostname=\"h2\"} 0.5\n\
        # TYPE DCGM_FI_DEV_FB_USED gauge\n\
        DCGM_FI_DEV_FB_USED{gpu=\"0\",UUID=\"GPU-1\",modelName=\"NVIDIA L4\",Hostname=\"h1\",skypilot_cluster=\"carol-serve\"} 1024\n";
    let (_host, _page) = exporter(&peer, &ns, "nvidia-dcgm-exporter-s1", page);
    let fake = skydeck_testkit::FakeSkypilot::start(skydeck_testkit::Behavior::Healthy);
    let dd = FakeDatadog::start();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    write_kubeconfig(
        &kubeconfig,
        &[KubeContext::for_peer("good", &peer, peer.reader_token())],
        Some("good"),
    );
    std::fs::write(
        dir.path().join("skydeck.toml"),
        format!(
            "[discovery]\nnamespaces = [\"{ns}\"]\nrefresh_interval = \"5s\"\n\
             refresh_timeout = \"3s\"\n[gpu]\nscrape = true\ninterval = \"2s\"\n\
             [[sinks]]\ntype = \"datadog\"\n"
        ),
    )
    .unwrap();
    let kc = kubeconfig.display().to_string();
    let served = Served::start_in(
        dir,
        &[
            "--endpoint",
            &fake.url(),
            "--config",
            "skydeck.toml",
            "--kubeconfig",
            &kc,
        ],
        &[("DD_API_KEY", GOOD_KEY), ("DD_SITE", &dd.url())],
    );
    let e = served.wait_metrics("GPU utilization from the scrape", |e| {
        e.get("skypilot_clusters_avg_utilization_ratio", &[])
            .is_some()
    });
    assert_eq!(
        e.get("skypilot_clusters_avg_utilization_ratio", &[]),
        Some(0.25)
    );
    assert_eq!(e.get("skypilot_gpus_unmatched", &[]), Some(1.0));
    assert_eq!(
        e.get("skydeck_gpu_source_up", &[("source", "scrape")]),
        Some(1.0)
    );
    assert!(
        e.get("skypilot_gpu_utilization_ratio", &[]).is_none(),
        "per-GPU series go to the sinks, not to /metrics"
    );
    let t0 = Instant::now();
    loop {
        let series: Vec<serde_json::Value> = dd
            .series()
            .iter()
            .flat_map(|r| r.body["series"].as_array().cloned().unwrap_or_default())
            .collect();
        let util = series.iter().find(|s| {
            s["metric"] == "skypilot.gpu.utilization"
                && s["tags"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == "Hostname:h1"))
        });
        if let Some(u) = util {
            assert_eq!(u["points"][0]["value"], 25.0, "{u}");
            let tags: Vec<&str> = u["tags"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|t| t.as_str())
                .collect();
            for t in [
                "cluster:good",
                "gpu:0",
                "modelName:NVIDIA L4",
                "kubernetes_namespace:none",
            ] {
                assert!(tags.contains(&t), "{t} not in {tags:?}");
            }
            assert!(
                series
                    .iter()
                    .any(|s| s["metric"] == "skypilot.gpu.memory_used")
            );
            // Every payload serve pushed is a valid MetricPayload for Datadog's own models.
            let python = std::env::var("SKYDECK_TEST_PYTOOLS_PYTHON").unwrap_or_else(|_| {
                panic!("SKYDECK_TEST_PYTOOLS_PYTHON is not set: run the tests with scripts/test.sh")
            });
            let file = tempfile::NamedTempFile::new().unwrap();
            let lines: Vec<String> = dd.series().iter().map(|r| r.body.to_string()).collect();
            std::fs::write(file.path(), lines.join("\n") + "\n").unwrap();
            let script = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../scripts/peers/validate_datadog.py"
            );
            let out = std::process::Command::new(python)
                .args([script, "metric_payload"])
                .arg(file.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "datadog-api-client refused a payload: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "no per-GPU series reached Datadog: {}",
            served.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    peer.delete_namespace(&ns);
}
