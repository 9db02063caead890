//! Where the store's time goes, and the nodes the HTTP benchmark needs
//! (`scripts/bench/control.sh` runs both subcommands).
//!
//! ```sh
//! cargo run --release -p skydeck-control --example store_bench -- time \
//!     --database-url sqlite:///tmp/x.db [--nodes 10000] [--iterations 1000] [--rounds 3]
//! cargo run --release -p skydeck-control --example store_bench -- seed \
//!     --database-url URL --agents 2000 --tokens FILE
//! ```
//!
//! `time` fills the table to `--nodes` rows (five launch shapes, like the HTTP benchmark),
//! then times, one call at a time on one thread, each read and write the API makes — through
//! the store, through the same driver with the rows fetched but not decoded (the SQL and the
//! wire alone: the floor the store is measured against), and through sqlx's `Any` driver with
//! `AnyRow` decoding (the store's previous path) — and prints a Markdown table: wall time per
//! call (p50, p99) and this process's CPU per call (user + system; for SQLite that includes the
//! database engine, which runs in-process; for PostgreSQL only the client side). Rounds are
//! interleaved so the machine's noise falls on every row alike.
//!
//! `seed` inserts `--agents` nodes with known agent tokens (`bench-token-<i>`), walks each to
//! `active` through the store's own operations, and writes `token<TAB>node_id` lines to
//! `--tokens` for the heartbeat load generator (`examples/heartbeat_load.rs`).

use std::collections::HashMap;
use std::time::Instant;

use skydeck_contract::{Engine, Heartbeat};
use skydeck_control::store::{ListQuery, NewNode, Store};
use sqlx::Row;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The list page's SQL as the store sends it (no filter, no cursor).
const LIST_SQL: &str = "SELECT id, cluster_name, provider, region, gpu_type, gpu_count, model_name, \
    use_spot, disk_size, engine_args, status, status_reason, created_at, updated_at, \
    launch_intent_at, launch_request_id, launching_at, initializing_at, active_at, unhealthy_at, \
    draining_at, terminated_at, failed_at, drain_force, down_intent_at, down_request_id, \
    hourly_price, last_heartbeat_at, attempts, next_attempt_at, engine, image, pool, \
    CAST(NULL AS TEXT) FROM nodes WHERE 1 = 1 ORDER BY created_at, id LIMIT $1";
/// One node by cluster name, as the store sends it.
const STATUS_SQL: &str = "SELECT id, cluster_name, provider, region, gpu_type, gpu_count, model_name, \
    use_spot, disk_size, engine_args, status, status_reason, created_at, updated_at, \
    launch_intent_at, launch_request_id, launching_at, initializing_at, active_at, unhealthy_at, \
    draining_at, terminated_at, failed_at, drain_force, down_intent_at, down_request_id, \
    hourly_price, last_heartbeat_at, attempts, next_attempt_at, engine, image, pool, heartbeat \
    FROM nodes WHERE cluster_name = $1";
/// A heartbeat's update without reading the row back (the write alone).
const BEAT_SQL: &str = "UPDATE nodes SET last_heartbeat_at = $1, updated_at = $1, \
    heartbeat = COALESCE($3, heartbeat) WHERE id = $2";

/// The five launch shapes of the HTTP benchmark.
const SHAPES: [(&str, &str, &str, i64, &str); 5] = [
    (
        "aws",
        "us-east-1",
        "H100",
        8,
        "meta-llama/Llama-3.1-70B-Instruct",
    ),
    (
        "gcp",
        "us-central1",
        "A100-80GB",
        2,
        "Qwen/Qwen2.5-32B-Instruct",
    ),
    (
        "azure",
        "eastus",
        "A100",
        1,
        "mistralai/Mistral-7B-Instruct-v0.3",
    ),
    (
        "lambda",
        "us-east-1",
        "A10",
        1,
        "meta-llama/Llama-3.1-8B-Instruct",
    ),
    (
        "kubernetes",
        "gke_proj_us-central1_gpu",
        "L4",
        1,
        "google/gemma-2-9b-it",
    ),
];

fn args() -> Result<(String, HashMap<String, String>), Error> {
    let mut it = std::env::args().skip(1);
    let cmd = it
        .next()
        .ok_or("usage: store_bench time|seed --database-url URL …")?;
    let mut flags = HashMap::new();
    while let Some(k) = it.next() {
        let k = k
            .strip_prefix("--")
            .ok_or_else(|| format!("expected a --flag, got {k:?}"))?
            .to_string();
        let v = it.next().ok_or_else(|| format!("--{k} needs a value"))?;
        flags.insert(k, v);
    }
    Ok((cmd, flags))
}

fn num(flags: &HashMap<String, String>, k: &str, default: usize) -> Result<usize, Error> {
    flags.get(k).map_or(Ok(default), |v| {
        v.parse()
            .map_err(|_| format!("--{k}: expected a whole number, got {v:?}").into())
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let (cmd, flags) = args()?;
    let url = flags
        .get("database-url")
        .ok_or("--database-url is required")?
        .clone();
    let store = Store::connect(&url, 4).await?;
    match cmd.as_str() {
        "seed" => {
            let agents = num(&flags, "agents", 2000)?;
            let out = flags.get("tokens").ok_or("--tokens FILE is required")?;
            seed_agents(&store, agents, out).await
        }
        "time" => {
            let nodes = num(&flags, "nodes", 10_000)?;
            let iterations = num(&flags, "iterations", 1000)?;
            let rounds = num(&flags, "rounds", 3)?;
            fill(&store, nodes).await?;
            time(&store, &url, iterations, rounds).await
        }
        other => Err(format!("unknown subcommand {other:?} (time, seed)").into()),
    }
}

async fn insert(
    store: &Store,
    name: &str,
    shape: usize,
    token_hash: &str,
) -> Result<String, Error> {
    let (provider, region, gpu, count, model) = SHAPES[shape % SHAPES.len()];
    let id = uuid::Uuid::new_v4().to_string();
    let args = vec!["--max-model-len".to_string(), "32768".to_string()];
    store
        .insert(&NewNode {
            id: &id,
            cluster_name: name,
            provider,
            region,
            gpu_type: gpu,
            gpu_count: count,
            model_name: model,
            use_spot: shape.is_multiple_of(2),
            disk_size: 256,
            engine: Engine::Vllm,
            image: None,
            engine_args: &args,
            pool: None,
            agent_token_hash: token_hash,
        })
        .await?;
    Ok(id)
}

/// Inserts requested nodes until the table has `n` rows.
async fn fill(store: &Store, n: usize) -> Result<(), Error> {
    let have = store
        .list(&ListQuery {
            limit: n as i64,
            ..Default::default()
        })
        .await?
        .len();
    for i in have..n {
        let hash = skydeck_control::token::hash(&format!("fill-{}", uuid::Uuid::new_v4()));
        insert(store, &format!("skydeck-fill-{i:05}"), i, &hash).await?;
    }
    eprintln!(
        "store_bench: {n} nodes in the table ({} inserted)",
        n.saturating_sub(have)
    );
    Ok(())
}

async fn seed_agents(store: &Store, agents: usize, out: &str) -> Result<(), Error> {
    let mut lines = String::new();
    for i in 0..agents {
        let token = format!("bench-token-{i}");
        let hash = skydeck_control::token::hash(&token);
        let id = insert(store, &format!("skydeck-agent-{i:05}"), i, &hash).await?;
        if !(store.claim_launch(&id, None, &hash).await?
            && store
                .launch_submitted(&id, &format!("bench-launch-{i}"))
                .await?)
        {
            return Err(format!("node {id} did not reach launching").into());
        }
        store.heartbeat(&id, None).await?;
        lines.push_str(&format!("{token}\t{id}\n"));
    }
    std::fs::write(out, lines).map_err(|e| format!("writing {out}: {e}"))?;
    eprintln!("store_bench: {agents} active nodes with known tokens; tokens in {out}");
    Ok(())
}

/// This process's CPU time (user + system), in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at `) `.
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after the name and state.
    (ticks(11) + ticks(12)) / 100.0
}

/// Samples of one operation: wall time per call, and CPU over the calls.
#[derive(Default)]
struct Samples {
    wall_us: Vec<f64>,
    cpu_s: f64,
}

async fn time(store: &Store, url: &str, iterations: usize, rounds: usize) -> Result<(), Error> {
    // The same database through the store's own driver, rows not decoded, and through `Any`.
    let raw = Raw::connect(url).await?;
    sqlx::any::install_default_drivers();
    let any_url = if url.starts_with("postgres") {
        url.to_string()
    } else {
        format!("sqlite://{}", url.strip_prefix("sqlite://").unwrap_or(url))
    };
    let any = sqlx::AnyPool::connect(&any_url).await?;
    let page = store
        .list(&ListQuery {
            limit: 10_000,
            ..Default::default()
        })
        .await?;
    let target = page[page.len() / 2].cluster_name.clone();
    let beat_id = page[page.len() / 3].id.clone();
    let report = Heartbeat {
        node_id: beat_id.clone(),
        served_models: vec!["meta-llama/Llama-3.1-8B-Instruct".into()],
        uptime_seconds: 1234.5,
        ..Default::default()
    };
    let report_json = serde_json::to_string(&report)?;
    let list100 = ListQuery {
        limit: 100,
        ..Default::default()
    };
    let nodes100 = store.list(&list100).await?;

    const OPS: [&str; 10] = [
        "list 100: rows one by one through the driver, not decoded (PostgreSQL: the store's path; SQLite: its path before the JSON page)",
        "list 100: store.list",
        "list 100: Any driver + AnyRow decode (before)",
        "list 100: JSON of the 100 nodes (serde_json)",
        "status: SQL alone (driver, row not decoded)",
        "status: store.get",
        "status: Any driver + AnyRow decode (before)",
        "heartbeat: UPDATE alone (driver)",
        "heartbeat: store.heartbeat (UPDATE … RETURNING)",
        "heartbeat: by_token_hash + heartbeat (the handler's calls)",
    ];
    let mut samples: Vec<Samples> = (0..OPS.len()).map(|_| Samples::default()).collect();
    let mut now = 1_800_000_000_000i64;
    for _ in 0..rounds {
        for (op, s) in samples.iter_mut().enumerate() {
            let cpu0 = cpu_seconds();
            for _ in 0..iterations {
                let t = Instant::now();
                match op {
                    0 => std::hint::black_box(raw.rows(LIST_SQL, Bound::Int(100)).await?),
                    1 => std::hint::black_box(store.list(&list100).await?.len()),
                    2 => std::hint::black_box(any_list(&any).await?),
                    3 => std::hint::black_box(serde_json::to_vec(&nodes100)?.len()),
                    4 => std::hint::black_box(raw.rows(STATUS_SQL, Bound::Text(&target)).await?),
                    5 => std::hint::black_box(store.get(&target).await?.is_some() as usize),
                    6 => std::hint::black_box(any_status(&any, &target).await?),
                    7 => {
                        now += 1;
                        raw.beat(now, &beat_id, &report_json).await?;
                        1
                    }
                    8 => std::hint::black_box(
                        store.heartbeat(&beat_id, Some(&report)).await?.is_some() as usize,
                    ),
                    _ => {
                        let hash = skydeck_control::token::hash("bench-time-token");
                        let n = store.by_token_hash(&hash).await?;
                        std::hint::black_box(n.is_some());
                        std::hint::black_box(
                            store.heartbeat(&beat_id, Some(&report)).await?.is_some() as usize,
                        )
                    }
                };
                s.wall_us.push(t.elapsed().as_secs_f64() * 1e6);
            }
            s.cpu_s += cpu_seconds() - cpu0;
        }
    }
    println!("| operation | calls | wall µs/call p50 | wall µs/call p99 | process CPU µs/call |");
    println!("|---|---|---|---|---|");
    for (op, s) in samples.iter_mut().enumerate() {
        s.wall_us.sort_by(f64::total_cmp);
        let q = |p: f64| s.wall_us[((s.wall_us.len() - 1) as f64 * p) as usize];
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} |",
            OPS[op],
            s.wall_us.len(),
            q(0.5),
            q(0.99),
            s.cpu_s * 1e6 / s.wall_us.len() as f64
        );
    }
    Ok(())
}

enum Bound<'a> {
    Int(i64),
    Text(&'a str),
}

/// The database through its own driver, bypassing the store.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

macro_rules! raw {
    ($raw:expr, |$pool:ident| $body:expr) => {
        match $raw {
            Raw::Sqlite($pool) => $body,
            Raw::Postgres($pool) => $body,
        }
    };
}

impl Raw {
    async fn connect(url: &str) -> Result<Raw, Error> {
        Ok(if url.starts_with("postgres") {
            Raw::Postgres(sqlx::PgPool::connect(url).await?)
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            Raw::Sqlite(sqlx::SqlitePool::connect(&format!("sqlite://{path}")).await?)
        })
    }

    /// Runs `sql` and returns how many rows came back, none decoded.
    async fn rows(&self, sql: &str, b: Bound<'_>) -> Result<usize, Error> {
        Ok(raw!(self, |pool| {
            let q = sqlx::query(sql);
            let q = match b {
                Bound::Int(i) => q.bind(i),
                Bound::Text(t) => q.bind(t),
            };
            q.fetch_all(pool).await?.len()
        }))
    }

    async fn beat(&self, now: i64, id: &str, report: &str) -> Result<(), Error> {
        raw!(self, |pool| sqlx::query(BEAT_SQL)
            .bind(now)
            .bind(id)
            .bind(report)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }
}

/// The previous store's read: `Any` driver, every column through `AnyRow::try_get`.
fn any_decode(r: &sqlx::any::AnyRow) -> Result<usize, sqlx::Error> {
    let mut n = 0usize;
    for i in [0, 1, 2, 3, 4, 6, 9, 10, 30] {
        n += r.try_get::<String, _>(i)?.len();
    }
    for i in [5, 7, 8, 12, 13, 23, 28, 29] {
        n += r.try_get::<i64, _>(i)? as usize & 1;
    }
    for i in [11, 15, 25, 31, 32] {
        n += r.try_get::<Option<String>, _>(i)?.map_or(0, |s| s.len());
    }
    for i in [14, 16, 17, 18, 19, 20, 21, 22, 24, 27] {
        n += r.try_get::<Option<i64>, _>(i)?.is_some() as usize;
    }
    n += r.try_get::<Option<f64>, _>(26)?.is_some() as usize;
    let args: String = r.try_get(9)?;
    n += serde_json::from_str::<Vec<String>>(&args).map_or(0, |v| v.len());
    Ok(n)
}

async fn any_list(pool: &sqlx::AnyPool) -> Result<usize, Error> {
    let rows = sqlx::query(LIST_SQL).bind(100i64).fetch_all(pool).await?;
    let mut n = 0;
    for r in &rows {
        n += any_decode(r)?;
    }
    Ok(n)
}

async fn any_status(pool: &sqlx::AnyPool, name: &str) -> Result<usize, Error> {
    let row = sqlx::query(STATUS_SQL)
        .bind(name)
        .fetch_optional(pool)
        .await?;
    Ok(match row {
        Some(r) => any_decode(&r)?,
        None => 0,
    })
}
