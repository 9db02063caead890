//! Every SkyPilot task the control plane can generate is loaded by SkyPilot's own task loader
//! (`sky.Task.from_yaml`, skypilot 0.14.1), offline, through `scripts/peers/check_tasks.py`.
//!
//! The tasks cover each (provider, region) with the provider's first GPU, and each
//! (provider, GPU, count) in the provider's first region, with and without spot where the
//! provider sells it, plus specs with `vllm_args`. Kubernetes "regions" are kubeconfig contexts,
//! so two realistic context names stand in for them. A second test feeds the loader broken
//! variants of a good task (a misspelt key, an unknown region...) and requires each to be
//! rejected, so a pass means something. A third checks that a hostile-looking but valid model
//! id only ever travels in `envs:`, never in script text.
//!
//! The peer is the SkyPilot venv made by `scripts/peers/skypilot.sh install` (run by
//! `scripts/test.sh`); `SKYDECK_TEST_PYTHON_SKYPILOT` overrides its python. Without it these
//! tests fail: they never pass vacuously. `SKYDECK_TEST_KEEP_TASKS_DIR=<dir>` keeps copies of
//! the script's input there, to rerun it by hand.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use skydeck_contract::Engine;
use skydeck_control::node_config::{NodeConfig, NodeSpec, Rules, runs_images};
use skydeck_control::offerings::{GPU_COUNTS, OFFERINGS, PROVIDERS, Provider, gpu_counts};
use skydeck_control::task::{self, TaskContext};

/// Kubernetes contexts as cloud tooling names them (GKE, and an EKS ARN with `:` and `/`).
const K8S_CONTEXTS: [&str; 2] = [
    "gke_ml-platform_us-central1_h100-pool",
    "arn:aws:eks:us-west-2:123456789012:cluster/inference-prod",
];
const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";
const VLLM_ARGS: &str = "--tensor-parallel-size 2 --max-model-len 4096";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's python; panics (the test must fail, not skip) when it is missing.
fn skypilot_python() -> PathBuf {
    let py = match std::env::var_os("SKYDECK_TEST_PYTHON_SKYPILOT") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        // Where scripts/test.sh put the peers (SKYDECK_PEERS_DIR, as every peer script reads).
        _ => std::env::var_os("SKYDECK_PEERS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target/peers"))
            .join("skypilot-venv/bin/python"),
    };
    assert!(
        py.exists(),
        "the SkyPilot peer is missing: {} does not exist. Run scripts/test.sh (or \
         scripts/peers/skypilot.sh install) to create the SkyPilot venv, or set \
         SKYDECK_TEST_PYTHON_SKYPILOT to a python with skypilot[server]==0.14.1.",
        py.display()
    );
    py
}

/// The provider's regions, Kubernetes contexts standing in for Kubernetes.
fn regions(p: Provider) -> Vec<&'static str> {
    match p {
        Provider::Kubernetes => K8S_CONTEXTS.to_vec(),
        _ => p.offering().regions.to_vec(),
    }
}

/// Validates a request the way the API does; every spec here must be one it accepts.
fn spec(
    p: Provider,
    region: &str,
    gpu: &str,
    count: u32,
    spot: bool,
    vllm_args: Option<&str>,
) -> NodeSpec {
    let cfg = NodeConfig {
        provider: p.as_str().into(),
        region: region.into(),
        gpu: format!("{gpu}:{count}"),
        model: MODEL.into(),
        use_spot: Some(spot),
        engine_args: vllm_args.map(str::to_string),
        ..NodeConfig::default()
    };
    cfg.validate(&Rules::default())
        .unwrap_or_else(|e| panic!("validation rejects {cfg:?}: {e}"))
}

/// One task entry for check_tasks.py: its id, YAML and what SkyPilot must read from it.
fn entry(spec: &NodeSpec) -> Value {
    let cluster = format!("skydeck-{}", spec.node_id);
    let token = skydeck_control::token::generate();
    let cx = TaskContext {
        cluster_name: &cluster,
        control_plane_url: "https://skydeck.example.com:8443",
        agent_sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        agent_token: &token,
    };
    let id = format!(
        "{}/{}/{}:{}/{}{}",
        spec.provider,
        spec.region,
        spec.gpu,
        spec.gpu_count,
        if spec.use_spot { "spot" } else { "on-demand" },
        if spec.engine_args.is_empty() {
            ""
        } else {
            "/vllm-args"
        },
    ) + match (spec.engine, spec.image.is_some()) {
        (Engine::Vllm, false) => "",
        (Engine::Vllm, true) => "/vllm-image",
        (Engine::Llamacpp, false) => "/llamacpp",
        (Engine::Llamacpp, true) => "/llamacpp-image",
    };
    json!({
        "id": id,
        "yaml": task::render(spec, &cx),
        "expect": {
            "provider": spec.provider.as_str(),
            "region": spec.region,
            "gpu": spec.gpu,
            "gpu_count": spec.gpu_count,
            "use_spot": spec.use_spot,
        },
    })
}

fn spot_modes(p: Provider) -> &'static [bool] {
    if p.offering().spot {
        &[false, true]
    } else {
        &[false]
    }
}

/// Every spec the matrix covers (deduplicated by id).
fn all_tasks() -> Vec<Value> {
    let mut specs = Vec::new();
    for p in PROVIDERS {
        let off = p.offering();
        let first_gpu = off.gpus[0];
        for region in regions(p) {
            for &spot in spot_modes(p) {
                specs.push(spec(p, region, first_gpu, 1, spot, None));
            }
        }
        let first_region = regions(p)[0];
        for gpu in off.gpus {
            for &count in gpu_counts(p, gpu) {
                for &spot in spot_modes(p) {
                    specs.push(spec(p, first_region, gpu, count, spot, None));
                }
            }
        }
        // vLLM arguments travel as quoted words of the run script.
        specs.push(spec(
            p,
            first_region,
            first_gpu,
            2,
            off.spot,
            Some(VLLM_ARGS),
        ));
    }
    // llama.cpp, and an image in resources.image_id, on every provider that runs images.
    for p in PROVIDERS {
        let base = NodeConfig {
            provider: p.as_str().into(),
            region: regions(p)[0].into(),
            gpu: p.offering().gpus[0].into(),
            model: "Qwen/Qwen2.5-7B-Instruct-GGUF:Q4_K_M".into(),
            engine: Some(Engine::Llamacpp),
            engine_args: Some("--ctx-size 8192 --n-gpu-layers 99".into()),
            use_spot: Some(false),
            ..NodeConfig::default()
        };
        let with_image = NodeConfig {
            image: Some("docker:ghcr.io/ggml-org/llama.cpp:server-cuda".into()),
            ..base.clone()
        };
        // Validation refuses an image where SkyPilot runs none (OCI).
        let cfgs = if runs_images(p) {
            vec![base, with_image]
        } else {
            vec![base]
        };
        for cfg in cfgs {
            specs.push(
                cfg.validate(&Rules::default())
                    .unwrap_or_else(|e| panic!("validation rejects {cfg:?}: {e}")),
            );
        }
    }
    let mut seen = std::collections::HashSet::new();
    specs
        .iter()
        .map(entry)
        .filter(|e| seen.insert(e["id"].as_str().unwrap().to_string()))
        .collect()
}

struct Outcome {
    success: bool,
    report: Value,
    stderr: String,
}

/// Runs check_tasks.py on `tasks`; the report is its stdout JSON.
fn run_loader(tasks: &[Value]) -> Outcome {
    let py = skypilot_python();
    let script = repo_root().join("scripts/peers/check_tasks.py");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("tasks.json");
    let doc = json!({
        "offerings": &OFFERINGS,
        "gpu_counts": GPU_COUNTS,
        "kube_contexts": K8S_CONTEXTS,
        "tasks": tasks,
    });
    let bytes = serde_json::to_vec_pretty(&doc).unwrap();
    std::fs::write(&input, &bytes).expect("write input");
    // For debugging: keep a copy of the input (run the script on it by hand).
    if let Some(keep) = std::env::var_os("SKYDECK_TEST_KEEP_TASKS_DIR") {
        let name = format!("tasks-{}.json", tasks.len());
        std::fs::write(Path::new(&keep).join(name), &bytes).expect("write kept input");
    }
    let out = Command::new(&py)
        .arg(&script)
        .arg(&input)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", py.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "check_tasks.py printed no JSON report ({e}); exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status.code()
        )
    });
    Outcome {
        success: out.status.success(),
        report,
        stderr,
    }
}

fn failures(report: &Value) -> Vec<(String, String)> {
    report["failures"]
        .as_array()
        .expect("failures array")
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap_or("?").to_string(),
                f["error"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

#[test]
fn skypilot_loads_every_generated_task() {
    let tasks = all_tasks();
    let out = run_loader(&tasks);
    let report = &out.report;
    // What was not checked, and the optimizer's view, are part of the result: show them.
    for s in report["skipped"].as_array().into_iter().flatten() {
        eprintln!(
            "skipped: {} ({} tasks): {}",
            s["check"],
            s["ids"].as_array().map_or(0, Vec::len),
            s["reason"]
        );
    }
    let infeasible = report["optimizer"]["infeasible"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    eprintln!(
        "optimizer (informational): {} of {} non-Kubernetes tasks have no instance type in \
         SkyPilot's rules",
        infeasible.len(),
        report["optimizer"]["checked"]
    );
    for i in &infeasible {
        eprintln!("  infeasible: {}: {}", i["id"], i["reason"]);
    }
    assert!(
        infeasible.is_empty(),
        "SkyPilot's optimizer has no instance for {} allowed GPU counts (fix offerings::gpu_counts)",
        infeasible.len()
    );
    let failed = failures(report);
    assert!(
        failed.is_empty() && out.success,
        "SkyPilot rejected {} of {} tasks (exit ok: {}):\n{}\nstderr:\n{}",
        failed.len(),
        tasks.len(),
        out.success,
        failed
            .iter()
            .map(|(id, e)| format!("  {id}: {e}"))
            .collect::<Vec<_>>()
            .join("\n"),
        out.stderr
    );
    assert_eq!(
        report["ok"].as_u64(),
        Some(tasks.len() as u64),
        "{report:#}"
    );
    assert_eq!(report["network_attempts"], json!([]), "{report:#}");
    eprintln!(
        "SkyPilot 0.14.1 loaded and validated all {} tasks",
        tasks.len()
    );
}

#[test]
fn skypilot_rejects_broken_tasks() {
    let good = entry(&spec(Provider::Aws, "us-east-1", "A100", 1, true, None));
    let yaml = good["yaml"].as_str().unwrap().to_string();
    let broken = |id: &str, from: &str, to: &str| {
        assert!(yaml.contains(from), "the task has no {from:?}:\n{yaml}");
        // No "expect": the rejection must come from SkyPilot, not from comparing with the spec.
        json!({ "id": id, "yaml": yaml.replacen(from, to, 1) })
    };
    let bad = vec![
        broken("misspelt-key", "use_spot:", "use_spott:"),
        broken("misspelt-top-level-key", "\nsecrets:", "\nsecret:"),
        broken(
            "unknown-region",
            "infra: aws/us-east-1",
            "infra: aws/mars-east-1",
        ),
        broken(
            "unknown-cloud",
            "infra: aws/us-east-1",
            "infra: awz/us-east-1",
        ),
        broken(
            "bad-accelerators",
            "accelerators: A100:1",
            "accelerators: A100:x",
        ),
    ];
    let k8s = entry(&spec(
        Provider::Kubernetes,
        K8S_CONTEXTS[0],
        "H100",
        8,
        false,
        None,
    ));
    let k8s_yaml = k8s["yaml"].as_str().unwrap();
    let from = format!("infra: k8s/{}", K8S_CONTEXTS[0]);
    assert!(k8s_yaml.contains(&from), "{k8s_yaml}");
    let bad = [
        bad,
        vec![json!({
            "id": "context-not-in-kubeconfig",
            "yaml": k8s_yaml.replacen(&from, "infra: k8s/gke_other-project_europe-west4_pool", 1),
        })],
    ]
    .concat();
    let mut tasks = vec![good.clone()];
    tasks.extend(bad.iter().cloned());
    let out = run_loader(&tasks);
    assert!(
        !out.success,
        "check_tasks.py exited 0 with broken tasks: {:#}",
        out.report
    );
    let failed = failures(&out.report);
    let ids: Vec<&str> = failed.iter().map(|(id, _)| id.as_str()).collect();
    for b in &bad {
        let id = b["id"].as_str().unwrap();
        assert!(
            ids.contains(&id),
            "SkyPilot accepted the broken task {id}; failures: {failed:#?}"
        );
    }
    assert_eq!(
        ids.len(),
        bad.len(),
        "only the broken tasks may fail; failures: {failed:#?}"
    );
    assert_eq!(out.report["ok"].as_u64(), Some(1), "{:#}", out.report);
    let (_, why) = failed.iter().find(|(id, _)| id == "misspelt-key").unwrap();
    assert!(
        why.contains("use_spott"),
        "the error should name the key: {why}"
    );
}

#[test]
fn hostile_looking_model_stays_in_envs() {
    // Valid by the rules (letters, digits, `._-`), chosen to look like shell when pasted.
    let model = "rm-rf.sh/curl_evil.example-sh";
    let cfg = NodeConfig {
        provider: "gcp".into(),
        region: "us-central1".into(),
        gpu: "A100:2".into(),
        model: model.into(),
        engine_args: Some("--served-model-name rm-rf/curl.sh --max-model-len 4096".into()),
        ..NodeConfig::default()
    };
    let spec = cfg.validate(&Rules::default()).expect("a valid request");
    let token = skydeck_control::token::generate();
    let cx = TaskContext {
        cluster_name: "skydeck-hostile",
        control_plane_url: "https://skydeck.example.com",
        agent_sha256: "00",
        agent_token: &token,
    };
    let t = task::Task::new(&spec, &cx);
    assert!(
        !t.run.contains(model) && !t.setup.contains(model),
        "model in script text"
    );
    assert_eq!(t.envs.get("SKYDECK_MODEL").map(String::as_str), Some(model));
    assert!(
        t.run.contains("\"$SKYDECK_MODEL\""),
        "run reads the model from its env"
    );
    assert!(
        t.run.contains("--served-model-name rm-rf/curl.sh"),
        "{}",
        t.run
    );

    let yaml = task::render(&spec, &cx);
    let doc: Value = serde_saphyr::from_str(&yaml).expect("the task is YAML");
    assert_eq!(doc["envs"]["SKYDECK_MODEL"], json!(model));
    for key in ["run", "setup"] {
        let text = doc[key].as_str().expect("script is a string");
        assert!(!text.contains(model), "{key} contains the model:\n{text}");
    }
    assert_eq!(
        yaml.matches(model).count(),
        1,
        "the model appears once, in envs:\n{yaml}"
    );
    assert!(!doc["envs"].to_string().contains(&token), "token in envs");
    assert_eq!(doc["secrets"]["SKYDECK_AGENT_TOKEN"], json!(token));

    // And SkyPilot reads it the same way.
    let out = run_loader(&[json!({ "id": "hostile-model", "yaml": yaml })]);
    assert!(
        out.success && failures(&out.report).is_empty(),
        "{:#}\n{}",
        out.report,
        out.stderr
    );
}
