//! Simulated node agents heartbeating a control plane over loopback (the heartbeat part of
//! `scripts/bench/control.sh`).
//!
//! ```sh
//! cargo run --release -p skydeck-control --example heartbeat_load -- \
//!     --base http://127.0.0.1:PORT --tokens FILE [--mode steady|burst] [--interval 30] \
//!     [--duration 60] [--concurrency 200] [--body contract|empty]
//! ```
//!
//! `--tokens` holds `token<TAB>node_id` lines (`examples/store_bench.rs seed` writes them).
//! `steady`: every agent sends `POST /v1/agent/heartbeat` every `--interval` seconds, its first
//! beat at a random point of the first interval (agents start at different times), for
//! `--duration` seconds: 2,000 agents every 30 s is about 67 requests/s. `burst`: every agent
//! once, all at the same moment, at most `--concurrency` in flight (a control plane coming
//! back after an outage). The body is the contract's `Heartbeat` (`contract`, the default) or
//! `{}` (`empty`: what a handler that predates the contract accepts).
//!
//! Prints one line: `requests ok non2xx errors p50_ms p90_ms p99_ms max_ms rps`, then the
//! first failure's status and body (if any) on stderr. Latency is per request, client side,
//! from sending to the whole answer read.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skydeck_contract::Heartbeat;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What one request came to.
enum Outcome {
    Ok(f64),
    Status(f64, u16, String),
    Failed(String),
}

fn flags() -> Result<HashMap<String, String>, Error> {
    let mut it = std::env::args().skip(1);
    let mut out = HashMap::new();
    while let Some(k) = it.next() {
        let k = k
            .strip_prefix("--")
            .ok_or_else(|| format!("expected a --flag, got {k:?}"))?
            .to_string();
        let v = it.next().ok_or_else(|| format!("--{k} needs a value"))?;
        out.insert(k, v);
    }
    Ok(out)
}

fn num(flags: &HashMap<String, String>, k: &str, default: u64) -> Result<u64, Error> {
    flags.get(k).map_or(Ok(default), |v| {
        v.parse()
            .map_err(|_| format!("--{k}: expected a whole number, got {v:?}").into())
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let f = flags()?;
    let base = f.get("base").ok_or("--base URL is required")?.clone();
    let tokens = f.get("tokens").ok_or("--tokens FILE is required")?;
    let mode = f.get("mode").map_or("steady", String::as_str).to_string();
    let interval = Duration::from_secs(num(&f, "interval", 30)?.max(1));
    let duration = Duration::from_secs(num(&f, "duration", 60)?);
    let concurrency = num(&f, "concurrency", 200)?.max(1) as usize;
    let contract_body = match f.get("body").map_or("contract", String::as_str) {
        "contract" => true,
        "empty" => false,
        other => return Err(format!("--body: expected contract or empty, got {other:?}").into()),
    };
    let text = std::fs::read_to_string(tokens).map_err(|e| format!("reading {tokens}: {e}"))?;
    let agents: Vec<(String, String)> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.split_once('\t')
                .map(|(t, id)| (t.to_string(), id.to_string()))
                .ok_or_else(|| format!("{tokens}: expected token<TAB>node_id, got {l:?}"))
        })
        .collect::<Result<_, _>>()?;
    if agents.is_empty() {
        return Err(format!("{tokens} holds no agents").into());
    }

    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("{}/v1/agent/heartbeat", base.trim_end_matches('/'));
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (token, node_id)) in agents.into_iter().enumerate() {
        let body = if contract_body {
            serde_json::to_vec(&Heartbeat {
                node_id,
                served_models: vec!["meta-llama/Llama-3.1-8B-Instruct".into()],
                uptime_seconds: 100.0 + i as f64,
                ..Default::default()
            })?
        } else {
            b"{}".to_vec()
        };
        let (client, url, gate, mode) = (client.clone(), url.clone(), gate.clone(), mode.clone());
        tasks.spawn(async move {
            let mut out = Vec::new();
            let beat = || async {
                let _permit = gate.acquire().await.expect("the gate stays open");
                let t = Instant::now();
                let res = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                match res {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let text = r.text().await.unwrap_or_default();
                        let ms = t.elapsed().as_secs_f64() * 1000.0;
                        if (200..300).contains(&status) {
                            Outcome::Ok(ms)
                        } else {
                            Outcome::Status(ms, status, text)
                        }
                    }
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            };
            if mode == "burst" {
                out.push(beat().await);
                return out;
            }
            let mut next = started + interval.mul_f64(fastrand::f64());
            let end = started + duration;
            while next < end {
                tokio::time::sleep_until(next.into()).await;
                out.push(beat().await);
                next += interval;
            }
            out
        });
    }
    let mut lat = Vec::new();
    let (mut ok, mut bad, mut failed) = (0u64, 0u64, 0u64);
    let mut first_failure: Option<String> = None;
    while let Some(r) = tasks.join_next().await {
        for o in r? {
            match o {
                Outcome::Ok(ms) => {
                    ok += 1;
                    lat.push(ms);
                }
                Outcome::Status(ms, status, body) => {
                    bad += 1;
                    lat.push(ms);
                    first_failure.get_or_insert_with(|| format!("HTTP {status}: {body}"));
                }
                Outcome::Failed(e) => {
                    failed += 1;
                    first_failure.get_or_insert(e);
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| {
        if lat.is_empty() {
            0.0
        } else {
            lat[((lat.len() - 1) as f64 * p).round() as usize]
        }
    };
    let n = ok + bad + failed;
    println!(
        "{n} {ok} {bad} {failed} {:.1} {:.1} {:.1} {:.1} {:.0}",
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0),
        n as f64 / secs
    );
    if let Some(f) = first_failure {
        eprintln!("heartbeat_load: first failure: {f}");
    }
    Ok(())
}
