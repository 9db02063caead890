//! Against the real SkyPilot API server (skypilot[server]==0.14.1) that `scripts/test.sh`
//! starts with a seeded fleet: every metric is compared with the value
//! `scripts/peers/expected_metrics.py` computes independently from the seeded ground truth,
//! at two fleet sizes. Without the servers these tests fail loudly instead of passing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::util::{Run, run, skydeck};

type Key = (String, BTreeMap<String, String>);

/// The peer directory `scripts/test.sh` exported for `size` (`small`, `large`, `priced`).
fn peer(size: &str) -> PathBuf {
    let var = format!("SKYDECK_TEST_SKYPILOT_{}", size.to_uppercase());
    let dir = std::env::var_os(&var).unwrap_or_else(|| {
        panic!(
            "{var} is not set: these tests need the real SkyPilot API server that \
             scripts/test.sh starts (run the tests with scripts/test.sh)"
        )
    });
    let dir = PathBuf::from(dir);
    assert!(
        dir.join("endpoint").exists(),
        "no endpoint file in {}",
        dir.display()
    );
    dir
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn collect(peer: &Path, extra: &[&str]) -> Run {
    let endpoint = std::fs::read_to_string(peer.join("endpoint")).unwrap();
    let home = tempfile::tempdir().unwrap();
    let r = run(skydeck(home.path())
        .args([
            "collect",
            "--format",
            "json",
            "--timeout",
            "5m",
            "--deadline",
            "6m",
        ])
        .args(["--endpoint", endpoint.trim()])
        .args(extra));
    assert_eq!(r.code, 0, "collect failed: {}", r.stderr);
    r
}

fn series(samples: Vec<serde_json::Value>) -> BTreeMap<Key, f64> {
    samples
        .into_iter()
        .filter(|s| s["name"].as_str().unwrap().starts_with("skypilot."))
        .map(|s| {
            let tags: BTreeMap<String, String> = serde_json::from_value(s["tags"].clone()).unwrap();
            (
                (s["name"].as_str().unwrap().to_string(), tags),
                s["value"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// What the independent calculator expects at T.
fn expected(peer: &Path, t: i64) -> BTreeMap<Key, f64> {
    let python = std::env::var("SKYDECK_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(python)
        .arg(repo().join("scripts/peers/expected_metrics.py"))
        .arg("--fleet")
        .arg(peer.join("fleet.json"))
        .args(["--at", &t.to_string()])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    series(samples)
}

/// Absolute tolerance of a metric. The server computes a RUNNING job's duration when it answers,
/// a few seconds after T, so the longest running time may differ by that much; everything else
/// must match exactly (up to float rounding).
fn tolerance(name: &str, expected: f64) -> f64 {
    match name {
        "skypilot.jobs.longest_running_hours" => 0.1,
        _ => 1e-6 * expected.abs().max(1.0),
    }
}

pub(crate) fn assert_matches_ground_truth(size: &str) {
    let peer = peer(size);
    let r = collect(&peer, &[]);
    let t = r.samples()[0]["timestamp"].as_i64().unwrap();
    assert!(
        r.samples().iter().all(|s| s["timestamp"] == t),
        "one timestamp per run"
    );
    let ours = series(r.samples());
    let want = expected(&peer, t);
    let mut problems = Vec::new();
    for (key, &v) in &want {
        match ours.get(key) {
            None => problems.push(format!("missing {key:?} (expected {v})")),
            Some(&got) if (got - v).abs() > tolerance(&key.0, v) => {
                problems.push(format!("{key:?}: got {got}, expected {v}"))
            }
            Some(_) => {}
        }
    }
    for key in ours.keys().filter(|k| !want.contains_key(*k)) {
        problems.push(format!("unexpected {key:?}"));
    }
    assert!(
        problems.is_empty(),
        "{size} fleet:\n{}",
        problems.join("\n")
    );
    // Every catalog metric of the SkyPilot collector is there (the seeded fleet has finished,
    // failed and training jobs; `clusters.unpriced` is always emitted, per cloud), except the
    // opt-in queue probe and the GPU utilization metrics (no DCGM source here); and the fleet
    // is not empty.
    let names: BTreeSet<&str> = ours.keys().map(|k| k.0.as_str()).collect();
    let catalog: BTreeSet<&str> = skydeck_core::catalog::ALL
        .iter()
        .map(|d| d.name)
        .filter(|n| n.starts_with("skypilot."))
        .filter(|n| {
            use skydeck_core::catalog as c;
            // The queue probe is opt-in, and the GPU metrics need a utilization source.
            ![
                &c::CLUSTERS_IDLE,
                &c::CLUSTERS_QUEUE_UNREACHABLE,
                &c::CLUSTERS_AVG_UTILIZATION,
                &c::CLUSTERS_GPU_IDLE,
                &c::GPUS_IDLE,
                &c::IDLE_BURN_RATE,
                &c::CLUSTERS_GPU_UNKNOWN,
                &c::GPUS_UNMATCHED,
                &c::GPU_UTILIZATION,
                &c::GPU_MEMORY_USED,
                &c::GPU_POWER,
                &c::GPU_TEMPERATURE,
                &c::GPU_XID,
            ]
            .iter()
            .any(|d| d.name == *n)
        })
        .collect();
    assert_eq!(names, catalog);
    assert!(ours[&("skypilot.jobs.running".to_string(), BTreeMap::new())] > 0.0);
    assert!(ours[&("skypilot.compute.cost_7d".to_string(), BTreeMap::new())] > 0.0);
}

#[test]
fn small_fleet_matches_ground_truth() {
    assert_matches_ground_truth("small");
}

#[test]
fn large_fleet_matches_ground_truth() {
    assert_matches_ground_truth("large");
}

/// With every breakdown tag and a small top N, each series' tags are bounded and `sum` over
/// the tags is the independently computed total.
#[test]
fn breakdown_sums_to_ground_truth_totals() {
    let peer = peer("large");
    let top = 3;
    let r = collect(
        &peer,
        &[
            "--breakdown",
            "cloud,region,workspace,user,accelerator",
            "--breakdown-top",
            "3",
        ],
    );
    let t = r.samples()[0]["timestamp"].as_i64().unwrap();
    let ours = series(r.samples());
    let want = expected(&peer, t);
    let keys = ["cloud", "region", "workspace", "user", "accelerator"];
    let split: BTreeSet<&str> = ours
        .keys()
        .filter(|k| k.1.contains_key("cloud"))
        .map(|k| k.0.as_str())
        .collect();
    assert!(split.contains("skypilot.jobs.running") && split.contains("skypilot.compute.cost_7d"));
    for key in keys {
        let values: BTreeSet<&str> = ours
            .keys()
            .filter_map(|k| k.1.get(key).map(String::as_str))
            .collect();
        assert!(values.len() <= top + 1, "{key}: {values:?}");
    }
    // A series the calculator splits by cloud (`clusters.unpriced`) is compared by its total:
    // with `--breakdown cloud` skydeck caps the cloud values like every other tag.
    let mut totals: BTreeMap<Key, f64> = BTreeMap::new();
    for ((name, tags), v) in want {
        let mut tags = tags;
        tags.remove("cloud");
        *totals.entry((name, tags)).or_default() += v;
    }
    let mut problems = Vec::new();
    for ((name, tags), v) in &totals {
        let sum: f64 = ours
            .iter()
            .filter(|((n, t), _)| n == name && tags.iter().all(|(k, v)| t.get(k) == Some(v)))
            .map(|(_, v)| v)
            .sum();
        if (sum - v).abs() > tolerance(name, *v) {
            problems.push(format!(
                "{name} {tags:?}: breakdown sums to {sum}, expected {v}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `/queue` cannot be served for seeded clusters (their head nodes do not exist), so with
/// `--cluster-queues` every UP cluster is counted as unreachable, never guessed idle.
#[test]
fn cluster_queues_against_the_real_server() {
    let peer = peer("small");
    let r = collect(&peer, &["--cluster-queues"]);
    let ours = series(r.samples());
    let get = |n: &str| ours[&(n.to_string(), BTreeMap::new())];
    assert_eq!(
        get("skypilot.clusters.queue_unreachable"),
        get("skypilot.clusters.active")
    );
    assert_eq!(get("skypilot.clusters.idle"), 0.0);
}

/// A wrong token against a server without service accounts is refused with the server's
/// reason, naming the credential source, and the token is never printed.
#[test]
fn bearer_token_refused_by_real_server() {
    let peer = peer("small");
    let endpoint = std::fs::read_to_string(peer.join("endpoint")).unwrap();
    let home = tempfile::tempdir().unwrap();
    let token = "sky_not.a.real-token-value";
    let r = run(skydeck(home.path()).env("SKYPILOT_API_KEY", token).args([
        "collect",
        "--format",
        "json",
        "--timeout",
        "60s",
        "--endpoint",
        endpoint.trim(),
    ]));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("$SKYPILOT_API_KEY"), "{}", r.stderr);
    assert!(r.stderr.contains("401"), "{}", r.stderr);
    assert!(!r.all_output().contains("real-token-value"));
}
