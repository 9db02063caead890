//! A fake Kubernetes API server for `scripts/bench/serve.sh`: just enough of the API for
//! skydeck's discovery (API discovery, Services, EndpointSlices, core/v1 Endpoints) and for
//! its scrape proxy (the pod proxy subresource), on plain HTTP on 127.0.0.1.
//!
//! ```text
//! cargo run --release -p skydeck-discovery --example fake_kube -- \
//!     --dir DIR [--contexts 50] [--exporters 20] [--page-bytes 100000]
//! ```
//!
//! Every context of the kubeconfig it writes (`DIR/kubeconfig`, contexts `ctx-00` … and
//! `hung`) points at this one server, except `hung`, which points at a TCP listener that
//! accepts connections and never answers. Namespace `gpu-operator` holds one GPU Operator
//! exporter Service (`app: nvidia-dcgm-exporter`, port `gpu-metrics` 9400) with `--exporters`
//! ready endpoints (pods `nvidia-dcgm-exporter-NN` on nodes `gpu-node-NN`); every other
//! namespace is empty. `GET /api/v1/namespaces/gpu-operator/pods/<pod>:9400/proxy/metrics`
//! and `GET /direct/metrics` answer the same DCGM-shaped page of at least `--page-bytes`
//! bytes (the direct route is the baseline: same server, same bytes, no API server proxy and
//! no skydeck in between). `GET /_bench/stats` counts the requests by kind.
//!
//! With `--page-only ADDR` it serves only the page, at any path, on `ADDR` (an address inside
//! a network namespace, the "pod" the real kube-apiserver peer proxies to) and writes nothing.
//!
//! Prints one JSON line on stdout once listening: `{"url", "hung_url", "kubeconfig",
//! "contexts", "page_bytes"}`; runs until SIGTERM or SIGINT. Not a test helper: the tests use
//! the real kube-apiserver peer (`scripts/peers/kube.sh`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde_json::{Value, json};

const NS: &str = "gpu-operator";
const SERVICE: &str = "nvidia-dcgm-exporter";

#[derive(Default)]
struct Counts {
    discovery: AtomicU64,
    services: AtomicU64,
    slices: AtomicU64,
    endpoints: AtomicU64,
    proxy: AtomicU64,
    direct: AtomicU64,
    other: AtomicU64,
}

struct Fake {
    exporters: usize,
    page: Bytes,
    services: Bytes,
    empty_services: Bytes,
    slices: Bytes,
    empty_slices: Bytes,
    endpoints: Bytes,
    counts: Counts,
}

fn pod(i: usize) -> String {
    format!("{SERVICE}-{i:02}")
}

/// A DCGM-exporter-shaped page (8 GPUs per pod, the usual field set), `min` bytes and up to one
/// line more.
fn dcgm_page(min: usize) -> Bytes {
    const FIELDS: &[(&str, &str, &str)] = &[
        (
            "DCGM_FI_DEV_SM_CLOCK",
            "gauge",
            "SM clock frequency (in MHz).",
        ),
        (
            "DCGM_FI_DEV_MEM_CLOCK",
            "gauge",
            "Memory clock frequency (in MHz).",
        ),
        ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
        ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
        (
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
            "counter",
            "Total energy consumption since boot (in mJ).",
        ),
        (
            "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
            "counter",
            "Total number of PCIe retries.",
        ),
        ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
        (
            "DCGM_FI_DEV_MEM_COPY_UTIL",
            "gauge",
            "Memory utilization (in %).",
        ),
        (
            "DCGM_FI_DEV_ENC_UTIL",
            "gauge",
            "Encoder utilization (in %).",
        ),
        (
            "DCGM_FI_DEV_DEC_UTIL",
            "gauge",
            "Decoder utilization (in %).",
        ),
        (
            "DCGM_FI_DEV_XID_ERRORS",
            "gauge",
            "Value of the last XID error encountered.",
        ),
        (
            "DCGM_FI_DEV_FB_FREE",
            "gauge",
            "Framebuffer memory free (in MiB).",
        ),
        (
            "DCGM_FI_DEV_FB_USED",
            "gauge",
            "Framebuffer memory used (in MiB).",
        ),
        (
            "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
            "counter",
            "Total number of NVLink bandwidth counters for all lanes.",
        ),
        (
            "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
            "gauge",
            "Ratio of time the graphics engine is active.",
        ),
        (
            "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
            "gauge",
            "Ratio of cycles the tensor (HMMA) pipe is active.",
        ),
        (
            "DCGM_FI_PROF_DRAM_ACTIVE",
            "gauge",
            "Ratio of cycles the device memory interface is active.",
        ),
        (
            "DCGM_FI_PROF_PCIE_TX_BYTES",
            "counter",
            "The rate of data transmitted over the PCIe bus.",
        ),
        (
            "DCGM_FI_PROF_PCIE_RX_BYTES",
            "counter",
            "The rate of data received over the PCIe bus.",
        ),
    ];
    let mut out = String::with_capacity(min + 4096);
    let mut round = 0usize;
    while out.len() < min {
        for (name, kind, help) in FIELDS {
            if round == 0 {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            }
            for gpu in 0..8 {
                if out.len() >= min {
                    break;
                }
                let _ = writeln!(
                    out,
                    "{name}{{gpu=\"{gpu}\",UUID=\"GPU-{round:04x}{gpu:04x}-5d1e-7f2a-9c3b-0123456789ab\",\
                     pci_bus_id=\"00000000:{:02X}:00.0\",device=\"nvidia{gpu}\",modelName=\"NVIDIA H100 80GB HBM3\",\
                     Hostname=\"gpu-node-{round:02}\",DCGM_FI_DRIVER_VERSION=\"550.54.15\",\
                     container=\"main\",namespace=\"default\",pod=\"train-{round}-0\"}} {}",
                    0x18 + gpu * 0x10,
                    (round * 31 + gpu * 7) % 1000
                );
            }
        }
        round += 1;
    }
    Bytes::from(out)
}

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&json!({
            "kind": kind,
            "apiVersion": api_version,
            "metadata": {"resourceVersion": "1000"},
            "items": items,
        }))
        .expect("json"),
    )
}

impl Fake {
    fn new(exporters: usize, page_bytes: usize) -> Fake {
        let service = json!({
            "metadata": {
                "name": SERVICE, "namespace": NS, "uid": "svc-uid", "resourceVersion": "10",
                "labels": {"app": SERVICE},
                "annotations": {"prometheus.io/scrape": "true"},
            },
            "spec": {
                "type": "ClusterIP", "clusterIP": "10.96.0.40",
                "selector": {"app": SERVICE},
                "ports": [{"name": "gpu-metrics", "port": 9400, "protocol": "TCP", "targetPort": 9400}],
            },
        });
        let eps: Vec<Value> = (0..exporters)
            .map(|i| {
                json!({
                    "addresses": [format!("10.244.{}.{}", i / 200, 10 + i % 200)],
                    "conditions": {"ready": true, "serving": true, "terminating": false},
                    "nodeName": format!("gpu-node-{i:02}"),
                    "targetRef": {"kind": "Pod", "namespace": NS, "name": pod(i), "uid": format!("pod-uid-{i}")},
                })
            })
            .collect();
        let slice = json!({
            "metadata": {
                "name": format!("{SERVICE}-abcde"), "namespace": NS, "resourceVersion": "11",
                "labels": {"kubernetes.io/service-name": SERVICE, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
            },
            "addressType": "IPv4",
            "endpoints": eps,
            "ports": [{"name": "gpu-metrics", "port": 9400, "protocol": "TCP"}],
        });
        let addresses: Vec<Value> = (0..exporters)
            .map(|i| {
                json!({
                    "ip": format!("10.244.{}.{}", i / 200, 10 + i % 200),
                    "nodeName": format!("gpu-node-{i:02}"),
                    "targetRef": {"kind": "Pod", "namespace": NS, "name": pod(i)},
                })
            })
            .collect();
        let endpoints = json!({
            "kind": "Endpoints", "apiVersion": "v1",
            "metadata": {"name": SERVICE, "namespace": NS, "resourceVersion": "12"},
            "subsets": [{"addresses": addresses, "ports": [{"name": "gpu-metrics", "port": 9400, "protocol": "TCP"}]}],
        });
        Fake {
            exporters,
            page: dcgm_page(page_bytes),
            services: list("ServiceList", "v1", vec![service]),
            empty_services: list("ServiceList", "v1", vec![]),
            slices: list("EndpointSliceList", "discovery.k8s.io/v1", vec![slice]),
            empty_slices: list("EndpointSliceList", "discovery.k8s.io/v1", vec![]),
            endpoints: Bytes::from(serde_json::to_vec(&endpoints).expect("json")),
            counts: Counts::default(),
        }
    }
}

fn json_bytes(b: Bytes) -> Response {
    let mut r = b.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn not_found(what: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{what} not found"), "reason": "NotFound", "code": 404,
    });
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

fn page(b: Bytes) -> Response {
    let mut r = b.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

fn router(fake: Arc<Fake>) -> Router {
    Router::new()
        .route(
            "/api",
            get(|State(f): State<Arc<Fake>>| async move {
                f.counts.discovery.fetch_add(1, Ordering::Relaxed);
                axum::Json(json!({"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}))
            }),
        )
        .route(
            "/apis",
            get(|State(f): State<Arc<Fake>>| async move {
                f.counts.discovery.fetch_add(1, Ordering::Relaxed);
                axum::Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [{
                    "name": "discovery.k8s.io",
                    "versions": [{"groupVersion": "discovery.k8s.io/v1", "version": "v1"}],
                    "preferredVersion": {"groupVersion": "discovery.k8s.io/v1", "version": "v1"}}]}))
            }),
        )
        .route(
            "/apis/discovery.k8s.io",
            get(|State(f): State<Arc<Fake>>| async move {
                f.counts.discovery.fetch_add(1, Ordering::Relaxed);
                axum::Json(json!({"kind": "APIGroup", "apiVersion": "v1", "name": "discovery.k8s.io",
                    "versions": [{"groupVersion": "discovery.k8s.io/v1", "version": "v1"}],
                    "preferredVersion": {"groupVersion": "discovery.k8s.io/v1", "version": "v1"}}))
            }),
        )
        .route(
            "/api/v1/namespaces/{ns}/services",
            get(|State(f): State<Arc<Fake>>, Path(ns): Path<String>| async move {
                f.counts.services.fetch_add(1, Ordering::Relaxed);
                json_bytes(if ns == NS { f.services.clone() } else { f.empty_services.clone() })
            }),
        )
        .route(
            "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
            get(|State(f): State<Arc<Fake>>, Path(ns): Path<String>| async move {
                f.counts.slices.fetch_add(1, Ordering::Relaxed);
                json_bytes(if ns == NS { f.slices.clone() } else { f.empty_slices.clone() })
            }),
        )
        .route(
            "/api/v1/namespaces/{ns}/endpoints/{name}",
            get(
                |State(f): State<Arc<Fake>>, Path((ns, name)): Path<(String, String)>| async move {
                    f.counts.endpoints.fetch_add(1, Ordering::Relaxed);
                    if ns == NS && name == SERVICE {
                        json_bytes(f.endpoints.clone())
                    } else {
                        not_found("endpoints")
                    }
                },
            ),
        )
        .route(
            "/api/v1/namespaces/{ns}/pods/{pod}/proxy/{*rest}",
            get(
                |State(f): State<Arc<Fake>>,
                 Path((ns, pod_port, rest)): Path<(String, String, String)>| async move {
                    f.counts.proxy.fetch_add(1, Ordering::Relaxed);
                    let known = (0..f.exporters).any(|i| pod_port == format!("{}:9400", pod(i)));
                    if ns == NS && known && rest == "metrics" {
                        page(f.page.clone())
                    } else {
                        not_found("pod")
                    }
                },
            ),
        )
        .route(
            "/direct/metrics",
            get(|State(f): State<Arc<Fake>>| async move {
                f.counts.direct.fetch_add(1, Ordering::Relaxed);
                page(f.page.clone())
            }),
        )
        .route(
            "/_bench/stats",
            get(|State(f): State<Arc<Fake>>| async move {
                let c = &f.counts;
                let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
                axum::Json(json!({
                    "discovery": n(&c.discovery), "services": n(&c.services),
                    "endpointslices": n(&c.slices), "endpoints": n(&c.endpoints),
                    "proxy": n(&c.proxy), "direct": n(&c.direct), "other": n(&c.other),
                }))
            }),
        )
        .fallback(|State(f): State<Arc<Fake>>| async move {
            f.counts.other.fetch_add(1, Ordering::Relaxed);
            not_found("path")
        })
        .with_state(fake)
}

fn kubeconfig(url: &str, hung_url: &str, contexts: usize) -> String {
    let mut clusters = String::new();
    let mut ctxs = String::new();
    let names: Vec<(String, &str)> = (0..contexts)
        .map(|i| (format!("ctx-{i:02}"), url))
        .chain(std::iter::once(("hung".to_string(), hung_url)))
        .collect();
    for (name, server) in &names {
        let _ = writeln!(clusters, "- name: {name}\n  cluster:\n    server: {server}");
        let _ = writeln!(
            ctxs,
            "- name: {name}\n  context:\n    cluster: {name}\n    user: bench"
        );
    }
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: ctx-00\nclusters:\n{clusters}\
         users:\n- name: bench\n  user:\n    token: bench-token-not-secret\ncontexts:\n{ctxs}"
    )
}

fn usage() -> ! {
    eprintln!(
        "usage: fake_kube --dir DIR [--contexts N] [--exporters N] [--page-bytes N] [--threads N]\n\
         \x20      fake_kube --page-only ADDR [--page-bytes N]"
    );
    std::process::exit(2)
}

fn main() {
    let mut args: BTreeMap<String, String> = BTreeMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let Some(k) = k.strip_prefix("--") else {
            usage()
        };
        let Some(v) = it.next() else { usage() };
        args.insert(k.to_string(), v);
    }
    let num = |k: &str, d: usize| -> usize {
        args.get(k)
            .map(|v| v.parse().unwrap_or_else(|_| usage()))
            .unwrap_or(d)
    };
    let contexts = num("contexts", 50);
    let exporters = num("exporters", 20);
    let page_bytes = num("page-bytes", 100_000);
    let threads = num("threads", 1);
    if let Some(addr) = args.get("page-only") {
        let addr: std::net::SocketAddr = addr.parse().unwrap_or_else(|_| usage());
        let body = dcgm_page(page_bytes);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
            let app = Router::new().fallback(move || {
                let b = body.clone();
                async move { page(b) }
            });
            axum::serve(listener, app).await.expect("serve");
        });
        return;
    }
    let Some(dir) = args.get("dir").map(PathBuf::from) else {
        usage()
    };
    std::fs::create_dir_all(&dir).expect("create --dir");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let fake = Arc::new(Fake::new(exporters, page_bytes));
        let page_len = fake.page.len();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let hung = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let hung_url = format!("http://{}", hung.local_addr().expect("addr"));
        // Accepts and never answers (nor reads): the connections are kept open until exit.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = hung.accept().await {
                held.push(sock);
            }
        });
        let kc = dir.join("kubeconfig");
        std::fs::write(&kc, kubeconfig(&url, &hung_url, contexts)).expect("write kubeconfig");
        println!(
            "{}",
            json!({"url": url, "hung_url": hung_url, "kubeconfig": kc, "contexts": contexts,
                   "exporters": exporters, "page_bytes": page_len})
        );
        let stop = async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        axum::serve(listener, router(fake))
            .with_graceful_shutdown(stop)
            .await
            .expect("serve");
    });
}
