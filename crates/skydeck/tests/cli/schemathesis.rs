//! Schemathesis (pinned in `scripts/peers/pytools.sh`) with every check against the real
//! `skydeck control` on SQLite, seeded with nodes so the list, show, status and terminate
//! routes answer with real rows: every answer must be one the served `/openapi.json`
//! documents, every request valid by the document must be taken and every invalid one refused.
//!
//! The agent routes need a node token, which this run does not have: they answer 401, which
//! they document, and their bodies are covered by the router tests of `skydeck-control`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::control::{ADMIN_KEY, Plane, TestDb};

/// Cases per operation and phase: enough for each route's error branches, small enough that
/// the run stays well under a minute.
const MAX_EXAMPLES: &str = "15";
/// Longest the run may take before it is killed and the test fails.
const DEADLINE: Duration = Duration::from_secs(240);

/// The `schemathesis` entry point next to the tools venv's python.
fn schemathesis() -> PathBuf {
    let py = std::env::var("SKYDECK_TEST_PYTOOLS_PYTHON").unwrap_or_else(|_| {
        panic!(
            "SKYDECK_TEST_PYTOOLS_PYTHON is not set: the Schemathesis test needs the tools venv \
             that scripts/test.sh installs (scripts/peers/pytools.sh) and exports"
        )
    });
    let bin = Path::new(&py)
        .parent()
        .expect("SKYDECK_TEST_PYTOOLS_PYTHON has a directory")
        .join("schemathesis");
    assert!(
        bin.is_file(),
        "{} is missing: run scripts/peers/pytools.sh install",
        bin.display()
    );
    bin
}

/// One run of Schemathesis: its exit status (`None` when killed at the deadline) and output.
fn run(bin: &Path, url: &str, dir: &Path) -> (Option<i32>, String) {
    let out = dir.join("schemathesis.out");
    let mut child = Command::new(bin)
        .arg("run")
        .arg(format!("{url}/openapi.json"))
        .args(["--checks", "all"])
        .args(["--header", &format!("Authorization: Bearer {ADMIN_KEY}")])
        .args(["--max-examples", MAX_EXAMPLES])
        // The same cases on every run, so a failure reproduces and a pass is not luck:
        // deterministic mode (which takes no `--seed` and keeps no example database), one
        // request at a time.
        .args(["--generation-deterministic", "--workers", "1"])
        .args(["--request-timeout", "20", "--no-color"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(dir.join("schemathesis.err")).unwrap())
        .spawn()
        .expect("schemathesis starts");
    let t0 = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if t0.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&out).unwrap_or_default()
        + &std::fs::read_to_string(dir.join("schemathesis.err")).unwrap_or_default();
    (code, text)
}

/// Schemathesis' configuration for the pool routes. A pool spec has rules across fields that
/// JSON Schema cannot state (`min_nodes` at most `max_nodes`, `on_demand_base` at most
/// `max_nodes`, the template's GPU offered by every placement's provider, each placement
/// listed once): a schema-valid body that breaks one gets a 422 naming the field, so for the
/// two operations that take a spec, and only for them, the check that every schema-valid body
/// is accepted counts a 422 as an answer (the launch body's schema states all of its rules,
/// and stays checked strictly). Every other check runs on them as on every route.
const POOL_CHECKS: &str = r#"
[[operations]]
include-path = "/admin/pools"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "404", "409", "422"]
phases.stateful.checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "404", "409", "422"]

[[operations]]
include-path = "/admin/pools/{name}"
include-method = "PATCH"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "404", "409", "422"]
phases.stateful.checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "404", "409", "422"]
"#;

#[test]
fn schemathesis_finds_nothing() {
    let bin = schemathesis();
    let db = TestDb::sqlite();
    // No SkyPilot: the nodes stay as requested, which is what the routes are tested on.
    let plane = Plane::start(&db, "http://127.0.0.1:9", &["--no-reconciler"]);
    for body in [
        json!({"provider": "gcp", "region": "us-central1", "gpu": "L4", "model": "Qwen/Qwen2.5-7B-Instruct"}),
        json!({"provider": "aws", "region": "us-west-2", "gpu": "A10G", "model": "meta-llama/Llama-2-7b-chat-hf", "use_spot": true}),
        json!({"provider": "gcp", "region": "us-central1", "gpu": "L4:2", "model": "Qwen/Qwen2.5-7B-Instruct", "engine": "llamacpp"}),
        json!({"provider": "kubernetes", "region": "kind-skydeck", "gpu": "H100:8", "model": "org/model", "engine_args": "--tensor-parallel-size 8"}),
        json!({"provider": "lambda", "region": "us-east-1", "gpu": "A100", "model": "a/b", "disk_size": 100}),
    ] {
        plane.launch(body);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("schemathesis.toml"), POOL_CHECKS).unwrap();
    let (code, out) = run(&bin, &plane.url, dir.path());
    assert_eq!(
        code,
        Some(0),
        "schemathesis failed (exit {code:?}; None = killed after {DEADLINE:?}):\n{out}\n\
         control plane log:\n{}",
        plane.log_text()
    );
}
