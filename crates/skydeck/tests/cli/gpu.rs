//! GPU utilization end to end: the real SkyPilot server's UP GPU clusters, a DCGM-format
//! stand-in exporter on loopback whose series name those clusters the way dcgm-exporter does
//! (Kubernetes: the pod `<name on cloud>-head`/`-worker<i>`; VMs: the `skypilot_cluster` label
//! a relabeling adds), a real Prometheus scraping it, and `skydeck collect --prometheus-url`.
//! Every GPU metric is compared with what this test computes from the same inputs. Then a
//! Prometheus that is down: a clear error on the collector's line, the fleet metrics still
//! delivered, and no utilization metric.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skydeck_skypilot::api::{ClusterRecord, ClusterStatus, CostRecord, CostReportQuery};

use crate::serve::Prometheus;
use crate::util::{run, skydeck};

fn small_peer() -> PathBuf {
    PathBuf::from(
        std::env::var_os("SKYDECK_TEST_SKYPILOT_SMALL").unwrap_or_else(|| {
            panic!(
                "SKYDECK_TEST_SKYPILOT_SMALL is not set: this test needs the real SkyPilot API \
             server that scripts/test.sh starts"
            )
        }),
    )
}

/// The fleet as the server reports it, read with skydeck's own client.
fn fleet(endpoint: &str) -> (Vec<ClusterRecord>, Vec<CostRecord>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let target = skydeck_skypilot::Target {
            endpoint: skydeck_skypilot::Endpoint::parse(
                endpoint,
                skydeck_skypilot::EndpointSource::Flag,
            )
            .unwrap(),
            credential: None,
        };
        let client = skydeck_skypilot::Client::new(target, Default::default()).unwrap();
        let clusters = client.status(&Default::default()).await.unwrap();
        let costs = client
            .cost_report(&CostReportQuery {
                days: 7,
                cluster_names: None,
            })
            .await
            .unwrap();
        (clusters, costs)
    })
}

/// GPUs per node, as `/status` gives them.
fn gpus_per_node(c: &ClusterRecord) -> u32 {
    c.gpus_per_node().ceil() as u32
}

/// A loopback HTTP server answering every GET with the current `page`.
fn page_server(page: Arc<Mutex<String>>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let body = page.lock().unwrap().clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

struct Gpu {
    labels: String,
    engine_active: Option<f64>,
    util_percent: Option<f64>,
}

fn dcgm_page(gpus: &[Gpu]) -> String {
    let mut out = String::from(
        "# HELP DCGM_FI_PROF_GR_ENGINE_ACTIVE Ratio of time the graphics engine is active.\n\
         # TYPE DCGM_FI_PROF_GR_ENGINE_ACTIVE gauge\n",
    );
    for g in gpus {
        if let Some(v) = g.engine_active {
            out.push_str(&format!(
                "DCGM_FI_PROF_GR_ENGINE_ACTIVE{{{}}} {v}\n",
                g.labels
            ));
        }
    }
    out.push_str(
        "# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).\n# TYPE DCGM_FI_DEV_GPU_UTIL gauge\n",
    );
    for g in gpus {
        if let Some(v) = g.util_percent {
            out.push_str(&format!("DCGM_FI_DEV_GPU_UTIL{{{}}} {v}\n", g.labels));
        }
    }
    out
}

/// The labels dcgm-exporter gives GPU `i` of node `node` of `c`.
fn labels_for(c: &ClusterRecord, node: u32, i: u32) -> String {
    let noc = c
        .cluster_name_on_cloud
        .clone()
        .unwrap_or_else(|| c.name.clone());
    let uuid = format!(
        "GPU-{:08x}-{node}-{i}",
        noc.len() * 7919 + (node * 97 + i) as usize
    );
    let base = format!(
        "gpu=\"{i}\",UUID=\"{uuid}\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"{noc}-{node}\""
    );
    if c.cloud.as_deref() == Some("Kubernetes") {
        let pod = if node == 0 {
            format!("{noc}-head")
        } else {
            format!("{noc}-worker{node}")
        };
        format!("{base},pod=\"{pod}\",namespace=\"default\",container=\"ray-node\"")
    } else {
        format!("{base},skypilot_cluster=\"{}\"", c.name)
    }
}

fn metric(r: &crate::util::Run, name: &str) -> Option<f64> {
    r.value(name, &[])
}

#[test]
fn gpu_metrics_from_prometheus_equal_what_the_dcgm_data_says() {
    let endpoint = std::fs::read_to_string(small_peer().join("endpoint"))
        .unwrap()
        .trim()
        .to_string();
    let (clusters, costs) = fleet(&endpoint);
    let mut gpu_clusters: Vec<&ClusterRecord> = clusters
        .iter()
        .filter(|c| c.status == ClusterStatus::Up && gpus_per_node(c) > 0)
        .collect();
    // The half-covered cluster (third) needs at least two GPUs: put one with most GPUs last.
    gpu_clusters.sort_by_key(|c| c.nodes.unwrap_or(1) * gpus_per_node(c));
    if let Some(big) = gpu_clusters.pop() {
        gpu_clusters.insert(2.min(gpu_clusters.len()), big);
    }
    assert!(
        gpu_clusters.len() >= 3,
        "the seeded fleet needs 3 UP GPU clusters, has {}",
        gpu_clusters.len()
    );

    // Cluster 0 busy (engine activity 0.8 on every GPU), cluster 1 idle (GPU util 1 % on
    // every GPU, no engine activity field), cluster 2 half covered (only its first GPU),
    // the rest no data at all; plus one GPU of no SkyPilot cluster.
    let mut gpus = Vec::new();
    let mut expected_means = Vec::new();
    for (k, c) in gpu_clusters.iter().enumerate().take(3) {
        let nodes = c.nodes.unwrap_or(1);
        for node in 0..nodes {
            for i in 0..gpus_per_node(c) {
                let labels = labels_for(c, node, i);
                match k {
                    0 => {
                        gpus.push(Gpu {
                            labels,
                            engine_active: Some(0.8),
                            util_percent: Some(93.0),
                        });
                        expected_means.push(0.8);
                    }
                    1 => {
                        gpus.push(Gpu {
                            labels,
                            engine_active: None,
                            util_percent: Some(1.0),
                        });
                        expected_means.push(0.01);
                    }
                    _ if node == 0 && i == 0 => {
                        gpus.push(Gpu {
                            labels,
                            engine_active: Some(0.0),
                            util_percent: None,
                        });
                        expected_means.push(0.0);
                    }
                    _ => {}
                }
            }
        }
    }
    gpus.push(Gpu {
        labels:
            "gpu=\"0\",UUID=\"GPU-stray\",modelName=\"NVIDIA L4\",Hostname=\"someone-elses-box\""
                .into(),
        engine_active: Some(0.5),
        util_percent: None,
    });
    let page = Arc::new(Mutex::new(dcgm_page(&gpus)));
    let port = page_server(Arc::clone(&page));
    let prom = Prometheus::start(
        &format!(
            "  - job_name: dcgm\n    scrape_interval: 1s\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
        ),
        &[],
    );
    // The window must be covered by data: wait until Prometheus has scraped for longer.
    prom.wait_query("DCGM_FI_DEV_GPU_UTIL");
    let window_s = 15;
    std::thread::sleep(Duration::from_secs(window_s + 3));

    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("skydeck.toml"),
        format!("[gpu]\nwindow = \"{window_s}s\"\nstep = \"1s\"\nidle_threshold_percent = 5\n"),
    )
    .unwrap();
    let r = run(skydeck(home.path()).args([
        "collect",
        "--format",
        "json",
        "--config",
        "skydeck.toml",
        "--endpoint",
        &endpoint,
        "--prometheus-url",
        &prom.url,
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);

    // Independently: the mean over matched GPUs, idle and unknown clusters, idle spend.
    let hourly: HashMap<&str, f64> = costs
        .iter()
        .filter(|c| {
            c.usage_intervals
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .any(|(_, e)| e.is_none())
                && c.duration.unwrap_or(0.0) > 0.0
        })
        .map(|c| {
            (
                c.name.as_str(),
                c.total_cost.unwrap_or(0.0) / c.duration.unwrap() * 3600.0,
            )
        })
        .collect();
    let mean = expected_means.iter().sum::<f64>() / expected_means.len() as f64;
    let got = metric(&r, "skypilot.clusters.avg_utilization_percent").expect("avg utilization");
    assert!(
        (got - mean * 100.0).abs() < 1e-6,
        "avg {got} % vs {} %",
        mean * 100.0
    );
    let idle = gpu_clusters[1];
    assert_eq!(
        metric(&r, "skypilot.clusters.gpu_idle"),
        Some(1.0),
        "{}",
        r.stdout
    );
    let partial = gpu_clusters[2];
    assert!(
        partial.nodes.unwrap_or(1) * gpus_per_node(partial) >= 2,
        "{}",
        partial.name
    );
    // Idle GPUs: all of the idle cluster's, and the one idle GPU of the half-covered one.
    let idle_gpus = idle.nodes.unwrap_or(1) * gpus_per_node(idle) + 1;
    assert_eq!(metric(&r, "skypilot.gpus.idle"), Some(f64::from(idle_gpus)));
    let burn = hourly.get(idle.name.as_str()).copied().unwrap_or(0.0);
    let got_burn = metric(&r, "skypilot.compute.idle_burn_rate_hourly").unwrap();
    assert!(
        (got_burn - burn).abs() < 1e-9 * burn.max(1.0),
        "{got_burn} vs {burn}"
    );
    // Half-covered and silent clusters are unknown, never idle.
    assert_eq!(
        metric(&r, "skypilot.clusters.gpu_unknown"),
        Some((gpu_clusters.len() - 2) as f64)
    );
    assert_eq!(metric(&r, "skypilot.gpus.unmatched"), Some(1.0));
    assert_eq!(
        r.value("skydeck.gpu.source_up", &[("source", "prometheus")]),
        Some(1.0)
    );

    // The idle stop: once the idle cluster's data is older than min_idle (1 min), a dry run
    // says it would stop it, and nothing else; serve's /api/idle explains every decision.
    std::thread::sleep(Duration::from_secs(65u64.saturating_sub(window_s + 3)));
    std::fs::write(
        home.path().join("idle.toml"),
        format!(
            "[gpu]\nwindow = \"{window_s}s\"\nstep = \"1s\"\n\
             [idle]\naction = \"stop\"\nmin_idle = \"1m\"\n"
        ),
    )
    .unwrap();
    let dry = run(skydeck(home.path()).args([
        "collect",
        "--format",
        "json",
        "--dry-run",
        "--config",
        "idle.toml",
        "--endpoint",
        &endpoint,
        "--prometheus-url",
        &prom.url,
    ]));
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(
        dry.stderr
            .contains(&format!("· idle: would stop {}:", idle.name)),
        "{}",
        dry.stderr
    );
    assert_eq!(
        dry.stderr.matches("· idle: would").count(),
        1,
        "{}",
        dry.stderr
    );
    assert!(
        dry.stderr.contains("idle (stop, dry run)"),
        "{}",
        dry.stderr
    );
    assert_eq!(
        dry.value(
            "skydeck.idle.decisions",
            &[("action", "stop"), ("outcome", "dry_run")]
        ),
        Some(1.0)
    );
    std::fs::write(
        home.path().join("report.toml"),
        format!(
            "[gpu]\nwindow = \"{window_s}s\"\nstep = \"1s\"\ninterval = \"1s\"\n\
             [idle]\nmin_idle = \"1m\"\n"
        ),
    )
    .unwrap();
    let served = crate::serve::Served::start(
        &[
            "--endpoint",
            &endpoint,
            "--no-discovery",
            "--config",
            &home.path().join("report.toml").display().to_string(),
            "--prometheus-url",
            &prom.url,
        ],
        &[],
    );
    let t0 = Instant::now();
    let idle_doc: serde_json::Value = loop {
        let (code, _, body) = served.get("/api/idle", None);
        if code == 200 {
            break serde_json::from_str(&body).unwrap();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "{body}\n{}",
            served.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let outcome = |name: &str| -> String {
        idle_doc["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["cluster"] == name)
            .map(|c| c["outcome"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert_eq!(outcome(&idle.name), "report_only", "{idle_doc:#}");
    assert_eq!(outcome(&gpu_clusters[0].name), "active", "{idle_doc:#}");
    assert_eq!(outcome(&partial.name), "unknown_data", "{idle_doc:#}");
    drop(served);

    // A Prometheus that is down: the fleet metrics still come, no GPU metric, a clear line.
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        drop(l);
        format!("http://127.0.0.1:{p}")
    };
    let t0 = Instant::now();
    let down = run(skydeck(home.path()).args([
        "collect",
        "--format",
        "json",
        "--endpoint",
        &endpoint,
        "--prometheus-url",
        &dead,
    ]));
    assert!(t0.elapsed() < Duration::from_secs(300));
    assert_eq!(down.code, 1, "{}", down.stderr);
    assert!(
        down.stderr
            .contains("✗ gpu utilization: cannot reach Prometheus"),
        "{}",
        down.stderr
    );
    assert!(metric(&down, "skypilot.clusters.active").is_some());
    assert!(metric(&down, "skypilot.clusters.avg_utilization_percent").is_none());
    assert!(metric(&down, "skypilot.clusters.gpu_idle").is_none());
    assert_eq!(
        down.value("skydeck.gpu.source_up", &[("source", "prometheus")]),
        Some(0.0)
    );
    assert_eq!(
        down.value("skydeck.collector.up", &[("collector", "skypilot")]),
        Some(1.0)
    );
}
