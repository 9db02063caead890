//! The fake SkyPilot API server ([`skydeck_testkit::FakeSkypilot`], `Behavior::Healthy`) as a
//! process, counting what it receives: for `scripts/bench/serve.sh`, which measures how many
//! requests `skydeck serve` sends per hour.
//!
//! ```text
//! cargo run --release -p skydeck-testkit --example fake_skypilot -- COUNTS.json
//! ```
//!
//! Prints its URL (`http://127.0.0.1:PORT`) on stdout once listening, then rewrites
//! `COUNTS.json` every 200 ms (and once more on SIGTERM or SIGINT, then exits) with every
//! request so far counted by method and path (query dropped), plus the time of the first and
//! the last request in seconds since the server started.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use skydeck_testkit::{Behavior, FakeSkypilot};

fn write_counts(path: &str, fake: &FakeSkypilot, started: Instant, seen: &mut Vec<f64>) {
    let reqs = fake.requests();
    // Arrival times are not recorded by the fake; note when each new request was first seen
    // (200 ms resolution), which is enough to place the first and last request.
    let now = started.elapsed().as_secs_f64();
    while seen.len() < reqs.len() {
        seen.push(now);
    }
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    for r in &reqs {
        let p = r.path.split('?').next().unwrap_or_default();
        *by.entry(format!("{} {p}", r.method)).or_default() += 1;
    }
    let body = serde_json::json!({
        "total": reqs.len(),
        "by": by,
        "first_s": seen.first(),
        "last_s": seen.last(),
        "now_s": now,
    });
    let tmp = format!("{path}.tmp");
    if std::fs::write(&tmp, body.to_string()).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

fn main() {
    let Some(out) = std::env::args().nth(1) else {
        eprintln!("usage: fake_skypilot COUNTS.json");
        std::process::exit(2);
    };
    let fake = FakeSkypilot::start(Behavior::Healthy);
    let started = Instant::now();
    println!("{}", fake.url());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut seen = Vec::new();
        loop {
            write_counts(&out, &fake, started, &mut seen);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        write_counts(&out, &fake, started, &mut seen);
    });
}
