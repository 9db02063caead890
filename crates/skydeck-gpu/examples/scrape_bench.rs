//! Benchmark of the direct-scrape GPU source ([`skydeck_gpu::Scraper`]) for
//! `scripts/bench/gpu.sh`, and the DCGM stand-in that script's Prometheus scrapes.
//!
//! ```text
//! scrape_bench serve --exporters N --gpus G [--k8s]
//! scrape_bench bench --url URL --exporters N [--cycles C] [--step-s S] [--concurrency K]
//! scrape_bench bench --kubeconfig FILE --contexts N [--cycles C] …
//! ```
//!
//! `serve` (a separate process, so its memory and CPU are not the scraper's) listens on
//! 127.0.0.1 (one tokio worker), prints its URL on stdout and answers
//! `GET /e/{i}/metrics` (i < N) with a dcgm-exporter-shaped page: G GPUs × the 20 fields of
//! dcgm-exporter's default set, labels `gpu`, `UUID`, `pci_bus_id`, `device`, `modelName`,
//! `Hostname`, `DCGM_FI_DRIVER_VERSION` (and with `--k8s`, the Kubernetes mapping's `pod`,
//! `namespace`, `container`: pod `bench-NNN-<hash>-head`). Values change every 5 s; exporter
//! i is idle (utilization under 3 %) when `i % 4 == 0`, busy otherwise. Runs until SIGTERM.
//!
//! `bench` runs C cycles of a `Scraper` (default options: 16 at once, 5 s and 8 MiB per
//! target, 2,000 GPUs of series) back to back, the cycle's "now" advancing S seconds each time
//! (default 30, serve's interval) so the windows fill as in an hour of serve, and after each
//! cycle builds the per-GPU Datadog samples as serve does. The source is either plain HTTP to
//! the stand-in (`--url`: an `ExporterSource` of N exporters in N contexts `ctx-NNN`, one
//! reqwest client) or skydeck's own [`skydeck_discovery::Discovery`] over the contexts
//! `ctx-00` … of a kubeconfig written by `fake_kube` (its pod-proxy route). Prints one JSON
//! object: per-cycle wall time (median, max), CPU time of the process per cycle
//! (`/proc/self/stat`), VmRSS/VmHWM before the first cycle and after the last, and the last
//! cycle's counts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use jiff::Timestamp;
use skydeck_gpu::{ExporterRef, ExporterSource, ScrapeOptions, Scraper, TargetError};

const FIELDS: &[(&str, &str)] = &[
    ("DCGM_FI_DEV_SM_CLOCK", "gauge"),
    ("DCGM_FI_DEV_MEM_CLOCK", "gauge"),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge"),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge"),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter"),
    ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter"),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge"),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge"),
    ("DCGM_FI_DEV_ENC_UTIL", "gauge"),
    ("DCGM_FI_DEV_DEC_UTIL", "gauge"),
    ("DCGM_FI_DEV_XID_ERRORS", "gauge"),
    ("DCGM_FI_DEV_FB_FREE", "gauge"),
    ("DCGM_FI_DEV_FB_USED", "gauge"),
    ("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "counter"),
    ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge"),
    ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge"),
    ("DCGM_FI_PROF_DRAM_ACTIVE", "gauge"),
    ("DCGM_FI_PROF_PCIE_TX_BYTES", "counter"),
    ("DCGM_FI_PROF_PCIE_RX_BYTES", "counter"),
    ("DCGM_FI_DEV_SM_OCCUPANCY", "gauge"),
];

/// A cheap deterministic hash to [0, 1).
fn unit(a: u64, b: u64, c: u64) -> f64 {
    let mut x = a
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F))
        .wrapping_add(c.wrapping_mul(0x1656_67B1_9E37_79F9));
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// The page of exporter `i` at time bucket `t` (5 s).
fn page(i: usize, gpus: usize, k8s: bool, t: u64) -> String {
    let mut out = String::with_capacity(gpus * FIELDS.len() * 330 + 4096);
    let idle = i.is_multiple_of(4);
    for (f, (name, kind)) in FIELDS.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {name}.\n# TYPE {name} {kind}");
        for g in 0..gpus {
            let r = unit(i as u64, g as u64, t);
            let util = if idle { r * 3.0 } else { 35.0 + r * 65.0 };
            let v = match *name {
                "DCGM_FI_DEV_GPU_UTIL" => format!("{}", util.round()),
                "DCGM_FI_PROF_GR_ENGINE_ACTIVE" => format!("{:.6}", util / 100.0),
                "DCGM_FI_DEV_GPU_TEMP" => format!("{}", (35.0 + util / 2.0).round()),
                "DCGM_FI_DEV_POWER_USAGE" => format!("{:.3}", 70.0 + util * 6.0),
                "DCGM_FI_DEV_FB_USED" => format!("{}", (util * 800.0).round()),
                "DCGM_FI_DEV_XID_ERRORS" => "0".to_string(),
                _ => format!("{}", (unit(f as u64, g as u64, t) * 1000.0).round()),
            };
            let _ = write!(
                out,
                "{name}{{gpu=\"{g}\",UUID=\"GPU-{i:04x}{g:04x}-5d1e-7f2a-9c3b-0123456789ab\",\
                 pci_bus_id=\"00000000:{:02X}:00.0\",device=\"nvidia{g}\",\
                 modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"gpu-node-{i:03}\",\
                 DCGM_FI_DRIVER_VERSION=\"550.54.15\"",
                0x18 + g * 0x10
            );
            if k8s {
                let _ = write!(
                    out,
                    ",container=\"ray-node\",namespace=\"default\",pod=\"bench-{i:03}-2ea4-head\""
                );
            }
            let _ = writeln!(out, "}} {v}");
        }
    }
    out
}

fn usage() -> ! {
    eprintln!(
        "usage: scrape_bench serve --exporters N --gpus G [--k8s 1]\n\
         \x20      scrape_bench bench (--url URL --exporters N | --kubeconfig FILE --contexts N)\n\
         \x20                         [--cycles C] [--step-s S] [--concurrency K] [--clk-tck T]"
    );
    std::process::exit(2)
}

fn main() {
    let mut it = std::env::args().skip(1);
    let mode = it.next().unwrap_or_else(|| usage());
    let mut args: BTreeMap<String, String> = BTreeMap::new();
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
    match mode.as_str() {
        "serve" => serve(num("exporters", 125), num("gpus", 8), num("k8s", 0) != 0),
        "bench" => bench(&args, &num),
        _ => usage(),
    }
}

fn serve(exporters: usize, gpus: usize, k8s: bool) {
    use axum::Router;
    use axum::extract::Path;
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let app = Router::new().route(
            "/e/{i}/metrics",
            get(move |Path(i): Path<usize>| async move {
                if i >= exporters {
                    return (StatusCode::NOT_FOUND, "no such exporter").into_response();
                }
                let t = Timestamp::now().as_second() as u64 / 5;
                let mut r: Response = page(i, gpus, k8s, t).into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                r
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("http://{}", listener.local_addr().expect("addr"));
        let stop = async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
            .expect("serve");
    });
}

/// N exporters on the stand-in, fetched with one reqwest client (what discovery's proxy
/// exchange costs is left out: this is the scraper's own cost).
struct Http {
    client: reqwest::Client,
    base: String,
    targets: Vec<ExporterRef>,
}

impl ExporterSource for Http {
    fn exporters(&self) -> Vec<ExporterRef> {
        self.targets.clone()
    }

    fn scrape<'a>(
        &'a self,
        target: &'a ExporterRef,
        timeout: Duration,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<Bytes, TargetError>> {
        Box::pin(async move {
            let url = format!("{}{}", self.base, target.path);
            let call = async {
                let mut resp = self
                    .client
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| TargetError::Failed(format!("{target}: {e}")))?;
                if !resp.status().is_success() {
                    return Err(TargetError::Failed(format!(
                        "{target}: HTTP {}",
                        resp.status()
                    )));
                }
                let mut body = Vec::new();
                while let Some(chunk) = resp
                    .chunk()
                    .await
                    .map_err(|e| TargetError::Failed(format!("{target}: {e}")))?
                {
                    if (body.len() + chunk.len()) as u64 > max_bytes {
                        return Err(TargetError::Failed(format!("{target}: too large")));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(Bytes::from(body))
            };
            match tokio::time::timeout(timeout, call).await {
                Ok(r) => r,
                Err(_) => Err(TargetError::Timeout(format!("{target}: timed out"))),
            }
        })
    }
}

/// `(VmRSS, VmHWM)` in KiB.
fn mem() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| -> u64 {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// utime + stime of the process, in clock ticks.
fn cpu_ticks() -> u64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = s.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let n = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    n(14) + n(15)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn bench(args: &BTreeMap<String, String>, num: &dyn Fn(&str, usize) -> usize) {
    let cycles = num("cycles", 20).max(1);
    let step = num("step-s", 30) as i64;
    let clk_tck = num("clk-tck", 100).max(1) as f64;
    let mut opts = ScrapeOptions::default();
    opts.concurrency = num("concurrency", opts.concurrency);
    // serve's default: a tokio runtime with a worker per core (2 here).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        if let Some(url) = args.get("url") {
            let n = num("exporters", 125);
            let targets = (0..n)
                .map(|i| ExporterRef {
                    context: format!("ctx-{i:03}"),
                    mode: skydeck_discovery::TargetMode::Proxy,
                    namespace: "gpu-operator".into(),
                    service: "nvidia-dcgm-exporter".into(),
                    pod: format!("nvidia-dcgm-exporter-{i:03}"),
                    node: Some(format!("gpu-node-{i:03}")),
                    port: 9400,
                    path: format!("/e/{i}/metrics"),
                    scheme: "http".into(),
                    stale: false,
                })
                .collect();
            // reqwest is built without a TLS provider (as the client in prometheus/mod.rs does).
            let _ = rustls::crypto::ring::default_provider().install_default();
            let client = reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .expect("client");
            let source = Http {
                client,
                base: url.trim_end_matches('/').to_string(),
                targets,
            };
            run(Scraper::new(source, opts), cycles, step, clk_tck, "http").await;
        } else if let Some(kc) = args.get("kubeconfig") {
            let n = num("contexts", 125);
            let names: Vec<String> = (0..n).map(|i| format!("ctx-{i:02}")).collect();
            let set =
                skydeck_discovery::ContextSet::load(&[kc.into()], &names).expect("kubeconfig");
            // Proxy mode (the default) needs the URL Prometheus would use for the HTTP SD
            // body; nothing reads it here.
            let dopts = skydeck_discovery::DiscoveryOptions {
                proxy_base: Some("http://127.0.0.1:9180/".parse().expect("url")),
                ..Default::default()
            };
            let d = skydeck_discovery::Discovery::start(set, dopts).expect("discovery");
            // Until every context has listed its exporters (bounded: 60 s).
            let want = num("exporters", n);
            let t0 = Instant::now();
            while d.exporters().len() < want && t0.elapsed() < Duration::from_secs(60) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            eprintln!(
                "scrape_bench: discovery lists {} exporters after {:.1} s",
                d.exporters().len(),
                t0.elapsed().as_secs_f64()
            );
            run(
                Scraper::new(Arc::new(d), opts),
                cycles,
                step,
                clk_tck,
                "discovery",
            )
            .await;
        } else {
            usage();
        }
    });
}

async fn run<S: ExporterSource>(
    mut s: Scraper<S>,
    cycles: usize,
    step: i64,
    clk_tck: f64,
    source: &str,
) {
    let (rss0, hwm0) = mem();
    let cpu0 = cpu_ticks();
    let start = Timestamp::now().as_second();
    let mut walls = Vec::with_capacity(cycles);
    let mut cycle_only = Vec::with_capacity(cycles);
    let mut last = None;
    let mut samples_n = 0;
    let t_all = Instant::now();
    for c in 0..cycles {
        let now = Timestamp::from_second(start + c as i64 * step).expect("time");
        let t = Instant::now();
        let st = s.run_cycle(now).await.clone();
        cycle_only.push(t.elapsed().as_secs_f64());
        samples_n = s.samples(now).len();
        walls.push(t.elapsed().as_secs_f64());
        last = Some(st);
    }
    let total = t_all.elapsed().as_secs_f64();
    let cpu = (cpu_ticks() - cpu0) as f64 / clk_tck;
    let (rss1, hwm1) = mem();
    let st = last.expect("a cycle");
    let max = walls.iter().copied().fold(0.0, f64::max);
    let first = walls[0];
    let out = serde_json::json!({
        "source": source,
        "cycles": cycles,
        "step_s": step,
        "concurrency": s.options().concurrency,
        "targets": st.targets, "ok": st.ok, "failed": st.failed, "timed_out": st.timed_out,
        "gpus": st.gpus, "window_gpus": s.windows().len(), "samples_stored": st.samples,
        "rejected": st.rejected, "series_dropped": st.series_dropped,
        "datadog_samples": samples_n,
        "errors": st.errors.iter().take(3).map(|(t, m)| format!("{t}: {m}")).collect::<Vec<_>>(),
        "cycle_s_median": median(&mut walls.clone()),
        "cycle_s_max": max,
        "cycle_s_first": first,
        "run_cycle_s_median": median(&mut cycle_only.clone()),
        "wall_s_total": total,
        "cpu_s_total": cpu,
        "cpu_s_per_cycle": cpu / cycles as f64,
        "rss_kb_before": rss0, "hwm_kb_before": hwm0,
        "rss_kb_after": rss1, "hwm_kb_after": hwm1,
        "added_rss_kb": rss1 as i64 - rss0 as i64,
        "added_hwm_kb": hwm1 as i64 - rss0 as i64,
    });
    println!("{out}");
}
