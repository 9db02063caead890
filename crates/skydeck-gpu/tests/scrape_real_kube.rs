//! One scrape cycle through `Discovery` against the real kube-apiserver (v1.20.2 with etcd)
//! that `scripts/peers/kube.sh up NAME` starts; `SKYDECK_TEST_KUBE` points at its directory.
//! As in skydeck-discovery's `real_kube.rs`, a DCGM page is served from a network namespace
//! (the API server refuses to proxy to loopback) behind a Pod whose `status.podIP` the test
//! writes, with the Service and Endpoints the GPU Operator would have (there is no
//! controller-manager). A second exporter points at a port where nothing listens, so one cycle
//! shows both the GPUs read and a failure that costs only its own timeout. Without the peer
//! this test fails loudly instead of passing.

use std::time::{Duration, Instant};

use skydeck_core::catalog as c;
use skydeck_discovery::{ContextSet, Discovery, DiscoveryOptions, TargetMode};
use skydeck_gpu::{ScrapeOptions, Scraper, UtilSource};
use skydeck_testkit::kube::{
    ExporterSpec, KubeContext, KubePeer, NetnsHost, unique_name, write_kubeconfig,
};

/// A dcgm-exporter page (profiling fields on, Kubernetes mapping on) of two GPUs of `node`.
fn page(node: &str) -> String {
    let mut out = String::new();
    for (name, values) in [
        ("DCGM_FI_DEV_GPU_UTIL", ["91", "3"]),
        ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", ["0.82", "0.01"]),
        ("DCGM_FI_DEV_FB_USED", ["70000", "512"]),
        ("DCGM_FI_DEV_POWER_USAGE", ["650.25", "80"]),
        ("DCGM_FI_DEV_GPU_TEMP", ["71", "33"]),
        ("DCGM_FI_DEV_XID_ERRORS", ["0", "48"]),
    ] {
        out.push_str(&format!(
            "# HELP {name} A DCGM field.\n# TYPE {name} gauge\n"
        ));
        for (g, v) in values.iter().enumerate() {
            out.push_str(&format!(
                "{name}{{gpu=\"{g}\",UUID=\"GPU-{node}-{g}\",device=\"nvidia{g}\",\
                 modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"{node}\",\
                 DCGM_FI_DRIVER_VERSION=\"550.54.15\",pod=\"mycl-2ea4-head\",\
                 namespace=\"default\",container=\"ray-node\"}} {v}\n"
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_cycle_through_discovery_reads_the_gpus_of_a_real_pod_proxy() {
    let peer = KubePeer::from_env();
    peer.grant_reader();
    let ns = unique_name("gpu-operator");
    peer.create_namespace(&ns);
    let mut host = NetnsHost::create_unique("skgpu");
    let page_dir = tempfile::tempdir().unwrap();
    std::fs::write(page_dir.path().join("metrics"), page("gpu-node-1")).unwrap();
    host.serve_dir(page_dir.path(), 9400);

    // The GPU Operator's exporter, and a chart exporter whose pod does not listen.
    let live = "nvidia-dcgm-exporter-n1";
    peer.create_exporter(
        &ns,
        &ExporterSpec {
            service: "nvidia-dcgm-exporter",
            labels: &[("app", "nvidia-dcgm-exporter")],
            annotations: &[("prometheus.io/scrape", "true")],
            port: ("gpu-metrics", 9400),
            pod: live,
            node: "gpu-node-1",
            ip: host.ns_ip(),
        },
    );
    let dead = "dcgm-dcgm-exporter-n2";
    peer.create_exporter(
        &ns,
        &ExporterSpec {
            service: "dcgm-dcgm-exporter",
            labels: &[("app.kubernetes.io/name", "dcgm-exporter")],
            annotations: &[],
            port: ("metrics", 9401),
            pod: dead,
            node: "gpu-node-2",
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
    let d = Discovery::start(
        set,
        DiscoveryOptions {
            namespaces: vec![ns.clone()],
            mode: TargetMode::Proxy,
            proxy_base: Some("http://skydeck.monitoring.svc:9180".parse().unwrap()),
            ..Default::default()
        },
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.status()[0].refreshes == 0 {
        assert!(Instant::now() < deadline, "{:#?}", d.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listed = d.exporters();
    assert_eq!(listed.len(), 2, "{listed:#?} {:#?}", d.status());

    let timeout = Duration::from_secs(2);
    let mut scraper = Scraper::new(
        d.clone(),
        ScrapeOptions {
            timeout,
            ..ScrapeOptions::default()
        },
    );
    let now = jiff::Timestamp::now();
    let started = Instant::now();
    let stats = scraper.run_cycle(now).await.clone();
    let took = started.elapsed();
    assert!(took < timeout + Duration::from_secs(5), "{took:?}");
    assert_eq!(stats.targets, 2, "{stats:#?}");
    assert_eq!(stats.ok, 1, "{stats:#?}");
    assert_eq!(stats.failed + stats.timed_out, 1, "{stats:#?}");
    assert_eq!((stats.gpus, stats.samples, stats.rejected), (2, 2, 0));
    let (failed_target, why) = &stats.errors[0];
    assert!(failed_target.contains(dead), "{failed_target}");
    assert!(why.contains(ctx) && why.contains(dead), "{why}");
    assert!(!why.contains(peer.reader_token()), "{why}");

    // The windows: both GPUs, keyed with the context as `cluster`, engine activity preferred.
    let w = scraper.windows();
    assert_eq!(w.len(), 2);
    let mut ratios: Vec<(String, f64)> = w
        .iter()
        .map(|(id, s)| {
            assert_eq!(id.context.as_deref(), Some(ctx));
            assert_eq!(id.hostname.as_deref(), Some("gpu-node-1"));
            assert_eq!(id.pod.as_deref(), Some("mycl-2ea4-head"));
            assert_eq!(s.source(), UtilSource::EngineActive);
            (id.gpu.clone().unwrap(), s.last().unwrap().1)
        })
        .collect();
    ratios.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(ratios, [("0".to_string(), 0.82), ("1".to_string(), 0.01)]);

    // The Datadog series: percent, bytes, catalog tags.
    let samples = scraper.samples(now);
    let of = |def: &c::MetricDef, gpu: &str| {
        samples
            .iter()
            .find(|s| s.name == def.name && s.tags.get("gpu").map(String::as_str) == Some(gpu))
            .unwrap_or_else(|| panic!("no {} for GPU {gpu}: {samples:#?}", def.name))
    };
    let u = of(&c::GPU_UTILIZATION, "0");
    assert!((u.value - 82.0).abs() < 1e-9, "{}", u.value);
    assert_eq!(u.tags["cluster"], ctx);
    assert_eq!(u.tags["Hostname"], "gpu-node-1");
    assert_eq!(u.tags["kubernetes_namespace"], "default");
    assert_eq!(u.tags["pod"], "mycl-2ea4-head");
    assert_eq!(u.tags["modelName"], "NVIDIA H100 80GB HBM3");
    assert_eq!(of(&c::GPU_MEMORY_USED, "0").value, 70000.0 * 1_048_576.0);
    assert_eq!(of(&c::GPU_XID, "1").value, 48.0);
    let up = samples
        .iter()
        .find(|s| s.name == c::GPU_SOURCE_UP.name)
        .unwrap();
    assert_eq!((up.value, up.tags["source"].as_str()), (1.0, "scrape"));

    // Counted in the context's proxy counters like `/proxy/` requests.
    let proxied: f64 = d
        .samples(jiff::Timestamp::now())
        .into_iter()
        .filter(|s| s.name == c::PROXY_REQUESTS.name && s.tags["context"] == ctx)
        .map(|s| s.value)
        .sum();
    assert_eq!(proxied, 2.0);
    d.shutdown();
    peer.delete_namespace(&ns);
}
