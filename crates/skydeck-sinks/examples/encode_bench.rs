//! Benchmark of the Datadog encoder: encode + gzip (and zstd) of N points on one core.
//!
//! `cargo run --release -p skydeck-sinks --example encode_bench -- [POINTS] [REPEATS]`
//!
//! The samples look like a large skydeck run split by breakdown tags: catalog names, units,
//! 3–5 tags, two global tags. Reports points per second (median of REPEATS), bytes per point
//! compressed and raw, the number of requests, and checks every request against Datadog's
//! limits. The tokio runtime is not involved: this is the synchronous encode path only.

use std::time::Instant;

use jiff::Timestamp;
use skydeck_core::{Sample, catalog};
use skydeck_sinks::datadog::encode::{Compression, Limits, chunk, encode};

fn samples(n: usize) -> Vec<Sample> {
    let at = Timestamp::now();
    let clouds = ["AWS", "GCP", "Kubernetes", "Lambda"];
    let regions = [
        "us-east-1",
        "us-west-2",
        "europe-west4",
        "us-central1",
        "ap-northeast-1",
    ];
    let users = ["alice", "bob", "carol", "dave", "erin", "other"];
    let accs = ["H100", "A100", "L4", "A10G", "none"];
    (0..n)
        .map(|i| {
            let def = catalog::ALL[i % catalog::ALL.len()];
            let mut s = Sample::of(def, (i % 1000) as f64 * 1.25, at)
                .tag("cloud", clouds[i % clouds.len()])
                .tag("region", regions[i % regions.len()])
                .tag("user", users[i % users.len()]);
            if i % 2 == 0 {
                s = s.tag("accelerator", accs[i % accs.len()]);
            }
            if i % 3 == 0 {
                s = s.tag("status", "RUNNING");
            }
            s
        })
        .collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let repeats: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let input = samples(n);
    let tags = vec!["env:prod".to_string(), "service:skydeck".to_string()];
    let limits = Limits::default();
    println!("points: {n}, repeats: {repeats}, limits: {limits:?}");
    for compression in [Compression::Gzip, Compression::Zstd] {
        let mut times = Vec::new();
        let mut stats = (0usize, 0usize, 0usize, 0usize, 0usize);
        for _ in 0..repeats {
            let t0 = Instant::now();
            let (enc, rejected) = encode(&input, &tags, None);
            let payloads = chunk(&enc, limits, compression);
            times.push(t0.elapsed().as_secs_f64());
            assert!(rejected.is_empty());
            let points: usize = payloads.iter().map(|p| p.points()).sum();
            assert_eq!(points, n, "every point in exactly one payload");
            let compressed: usize = payloads.iter().map(|p| p.body.len()).sum();
            let raw: usize = payloads.iter().map(|p| p.raw_len).sum();
            let max_c = payloads.iter().map(|p| p.body.len()).max().unwrap_or(0);
            let max_r = payloads.iter().map(|p| p.raw_len).max().unwrap_or(0);
            for p in &payloads {
                assert!(p.body.len() <= limits.max_compressed);
                assert!(p.raw_len <= limits.max_raw);
                assert!(p.points() <= limits.max_points);
            }
            stats = (payloads.len(), compressed, raw, max_c, max_r);
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let (requests, compressed, raw, max_c, max_r) = stats;
        println!(
            "{compression:?}: median {median:.3} s ({:.0} points/s on one core; min {:.3} s, max {:.3} s); \
             {:.1} bytes/point compressed, {:.1} raw; {requests} requests, largest {max_c} B \
             compressed / {max_r} B raw",
            n as f64 / median,
            times[0],
            times[times.len() - 1],
            compressed as f64 / n as f64,
            raw as f64 / n as f64,
        );
    }
}
