//! Kubernetes cost against the real SkyPilot API server (skypilot[server]==0.14.1).
//!
//! SkyPilot prices Kubernetes pods only from `kubernetes.pricing` in its config (per
//! accelerator, else per vCPU and GiB; `kubernetes.context_configs.<ctx>.pricing` merged over
//! it) and reports $0 without it. `scripts/test.sh` starts `test-priced`: a Kubernetes-only
//! seeded fleet whose server config carries `scripts/peers/k8s_pricing.yaml` (the YAML the
//! README shows). Its cost metrics must equal what this file computes from those rates and the
//! seeded usage intervals, and its A100 pods, which that pricing does not list, must be counted
//! in `skypilot.clusters.unpriced`. On `test-small` (no pricing) every running Kubernetes
//! cluster costs $0 and is counted there. Without the servers these tests fail loudly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::{Run, run, skydeck};

const DAY: f64 = 86400.0;
const GKE: &str = "gke_ml-platform_us-central1_h100-pool";
const EKS: &str = "eks_inference-prod_us-west-2";

/// The rates of `scripts/peers/k8s_pricing.yaml`, restated: USD per hour, per accelerator, vCPU
/// or GiB. EKS overrides L4; A100 is not priced anywhere.
fn rates(context: &str) -> Rates {
    let l4 = if context == EKS { 0.81 } else { 0.62 };
    Rates {
        cpu: 0.035,
        memory: 0.0045,
        accelerators: BTreeMap::from([("H100".to_string(), 2.49), ("L4".to_string(), l4)]),
    }
}

struct Rates {
    cpu: f64,
    memory: f64,
    accelerators: BTreeMap<String, f64>,
}

impl Rates {
    /// One pod-hour of a virtual instance type `<cpus>CPU--<mem>GB[--<acc>:<n>]`: an accelerator
    /// pod is all-in at count x rate (an unlisted accelerator is $0), a CPU-only pod pays per vCPU
    /// and GiB.
    fn hourly(&self, instance_type: &str) -> f64 {
        let parts: Vec<&str> = instance_type.split("--").collect();
        let num = |s: &str, suffix: &str| -> f64 {
            s.strip_suffix(suffix)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("bad instance type {instance_type:?}"))
        };
        match parts.as_slice() {
            [_, _, acc] => {
                let (name, n) = acc.split_once(':').expect("<acc>:<n>");
                let n: f64 = n.parse().expect("accelerator count");
                n * self.accelerators.get(name).copied().unwrap_or(0.0)
            }
            [cpus, mem] => num(cpus, "CPU") * self.cpu + num(mem, "GB") * self.memory,
            _ => panic!("bad instance type {instance_type:?}"),
        }
    }
}

fn peer(var: &str) -> PathBuf {
    let dir = std::env::var_os(var).unwrap_or_else(|| {
        panic!(
            "{var} is not set: these tests need the real SkyPilot API server that \
             scripts/test.sh starts (run the tests with scripts/test.sh)"
        )
    });
    let dir = PathBuf::from(dir);
    assert!(
        dir.join("endpoint").exists(),
        "no endpoint file in {}: is the server up?",
        dir.display()
    );
    dir
}

fn fleet(peer: &Path) -> Value {
    let text = std::fs::read_to_string(peer.join("fleet.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn collect(peer: &Path, extra: &[&str]) -> Run {
    let endpoint = std::fs::read_to_string(peer.join("endpoint")).unwrap();
    let home = tempfile::tempdir().unwrap();
    let r = run(skydeck(home.path())
        .args(["collect", "--format", "json", "--timeout", "5m"])
        .args(["--endpoint", endpoint.trim()])
        .args(extra));
    assert_eq!(r.code, 0, "collect failed: {}", r.stderr);
    r
}

fn intervals(rec: &Value) -> Vec<(f64, Option<f64>)> {
    rec["usage_intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|iv| (iv[0].as_f64().unwrap(), iv[1].as_f64()))
        .collect()
}

fn is_open(rec: &Value) -> bool {
    intervals(rec).iter().any(|(_, end)| end.is_none())
}

/// The records `cost_report(days=7)` returns at `t`: every live cluster, and terminated ones
/// last active within 7 days.
fn report(fleet: &Value, t: f64) -> Vec<&Value> {
    fleet["cost_records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["live"] == true || r["last_activity"].as_f64().unwrap() >= t - 7.0 * DAY)
        .collect()
}

/// The running clusters as skydeck defines them: UP or AUTOSTOPPING in `/status`, or a live
/// record still accruing (managed-job and INIT clusters included), by cluster hash.
fn running<'a>(fleet: &Value, report: &[&'a Value]) -> Vec<&'a Value> {
    let up: Vec<&str> = fleet["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| matches!(c["status"].as_str(), Some("UP" | "AUTOSTOPPING")))
        .map(|c| c["cluster_hash"].as_str().unwrap())
        .collect();
    report
        .iter()
        .copied()
        .filter(|r| {
            r["live"] == true && (is_open(r) || up.contains(&r["cluster_hash"].as_str().unwrap()))
        })
        .collect()
}

#[derive(Debug, Default)]
struct Costs {
    cost_24h: f64,
    cost_7d: f64,
    burn: f64,
}

/// The cost metrics over `report` with `hourly(record)` per node, as SkyPilot computes a
/// record's total (price x nodes x seconds, open intervals to now) and skydeck spreads it.
fn costs(report: &[&Value], t: f64, hourly: impl Fn(&Value) -> f64) -> Costs {
    let mut c = Costs::default();
    for r in report {
        let iv = intervals(r);
        let duration: f64 = iv
            .iter()
            .map(|(s, e)| (e.unwrap_or(t) as i64 - *s as i64) as f64)
            .sum();
        if duration <= 0.0 {
            continue;
        }
        let per_second = hourly(r) * r["num_nodes"].as_f64().unwrap() / 3600.0;
        let overlap = |from: f64| -> f64 {
            iv.iter()
                .map(|(s, e)| (e.unwrap_or(t).min(t) - s.max(from)).max(0.0))
                .sum()
        };
        c.cost_7d += per_second * overlap(t - 7.0 * DAY);
        c.cost_24h += per_second * overlap(t - DAY);
        if is_open(r) {
            c.burn += per_second * 3600.0;
        }
    }
    c
}

fn price(r: &Value) -> f64 {
    rates(r["region"].as_str().unwrap()).hourly(r["instance_type"].as_str().unwrap())
}

fn assert_close(what: &str, got: Option<f64>, want: f64) {
    let got = got.unwrap_or_else(|| panic!("{what}: not emitted (expected {want})"));
    assert!(
        (got - want).abs() <= 1e-6 * want.abs().max(1.0),
        "{what}: got {got}, expected {want}"
    );
}

#[test]
fn kubernetes_pricing_prices_the_cost_metrics() {
    let peer = peer("SKYDECK_TEST_SKYPILOT_PRICED");
    let fleet = fleet(&peer);
    // SkyPilot's own config loader read the server's config as these rates (the seeder
    // records what it read; every seeded price was checked against Resources.get_cost).
    for ctx in [GKE, EKS] {
        let got = &fleet["k8s_pricing"][ctx];
        let want = rates(ctx);
        assert_eq!(got["cpu"].as_f64(), Some(want.cpu), "{ctx}");
        assert_eq!(got["memory"].as_f64(), Some(want.memory), "{ctx}");
        let accs: BTreeMap<String, f64> =
            serde_json::from_value(got["accelerators"].clone()).unwrap();
        assert_eq!(accs, want.accelerators, "{ctx}");
    }
    assert_eq!(fleet["clouds"], serde_json::json!(["kubernetes"]));

    let r = collect(&peer, &[]);
    let t = r.samples()[0]["timestamp"].as_f64().unwrap();
    let report = report(&fleet, t);
    let running = running(&fleet, &report);
    // The fleet exercises every rule: a priced accelerator in each context (EKS's L4 through
    // the override), a CPU-only pod, and an accelerator the pricing does not list.
    let has = |f: &dyn Fn(&Value) -> bool| running.iter().any(|r| f(r));
    let it = |r: &Value| r["instance_type"].as_str().unwrap().to_string();
    assert!(has(&|r| r["region"] == EKS && it(r).ends_with("L4:1")));
    assert!(has(&|r| r["region"] == GKE && it(r).contains("--H100:")));
    assert!(has(&|r| r["accelerators"] == serde_json::json!({})));
    assert!(has(&|r| it(r).ends_with("A100:1")));

    let want = costs(&report, t, price);
    assert!(want.burn > 0.0 && want.cost_24h > 0.0);
    let v = |name: &str| r.value(name, &[]);
    assert_close("cost_24h", v("skypilot.compute.cost_24h"), want.cost_24h);
    assert_close("cost_7d", v("skypilot.compute.cost_7d"), want.cost_7d);
    assert_close(
        "burn_rate_hourly",
        v("skypilot.compute.burn_rate_hourly"),
        want.burn,
    );
    assert_close(
        "estimated_monthly_cost",
        v("skypilot.compute.estimated_monthly_cost"),
        want.cost_7d / 7.0 * 30.0,
    );
    // Only the A100 pods (not priced) are left over.
    let a100 = running.iter().filter(|r| price(r) == 0.0).count();
    assert!(
        running
            .iter()
            .filter(|r| price(r) == 0.0)
            .all(|r| it(r).ends_with("A100:1"))
    );
    assert_eq!(
        r.value("skypilot.clusters.unpriced", &[("cloud", "Kubernetes")]),
        Some(a100 as f64),
        "running clusters whose accelerator kubernetes.pricing does not list"
    );
}

#[test]
fn without_pricing_running_kubernetes_clusters_are_unpriced() {
    let peer = peer("SKYDECK_TEST_SKYPILOT_SMALL");
    let fleet = fleet(&peer);
    assert_eq!(
        fleet["k8s_pricing"],
        serde_json::json!({}),
        "test-small must have no kubernetes.pricing"
    );
    let r = collect(&peer, &["--breakdown", "cloud"]);
    let t = r.samples()[0]["timestamp"].as_f64().unwrap();
    let report = report(&fleet, t);
    let running = running(&fleet, &report);
    let k8s = |r: &&&Value| r["cloud"] == "Kubernetes";
    let n = running.iter().filter(k8s).count();
    assert!(n > 0, "test-small has no running Kubernetes cluster");
    assert_eq!(
        r.value("skypilot.clusters.unpriced", &[("cloud", "Kubernetes")]),
        Some(n as f64)
    );
    // Every other cloud is priced from the catalog.
    for cloud in ["AWS", "GCP", "Lambda"] {
        assert_eq!(
            r.value("skypilot.clusters.unpriced", &[("cloud", cloud)]),
            Some(0.0),
            "{cloud}"
        );
    }
    // What the count warns about: those clusters add $0 to the cost metrics.
    let k8s_report: Vec<&Value> = report.iter().copied().filter(|r| k8s(&r)).collect();
    assert!(!k8s_report.is_empty());
    for name in [
        "skypilot.compute.burn_rate_hourly",
        "skypilot.compute.cost_7d",
    ] {
        assert_eq!(
            r.value(name, &[("cloud", "Kubernetes")]),
            Some(0.0),
            "{name}"
        );
    }
}

/// The README's config is the one the priced test server loads.
#[test]
fn readme_shows_the_tested_pricing_config() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let tested = std::fs::read_to_string(repo.join("scripts/peers/k8s_pricing.yaml")).unwrap();
    let section = readme
        .split("\n### Kubernetes pricing\n")
        .nth(1)
        .expect("README has a '### Kubernetes pricing' section");
    let block = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a ```yaml block in that section");
    assert_eq!(
        block, tested,
        "README and scripts/peers/k8s_pricing.yaml differ"
    );
}

/// Every metric of the priced fleet also matches the independent calculator
/// (`scripts/peers/expected_metrics.py`), which prices from the seeded ground truth.
#[test]
fn priced_fleet_matches_ground_truth() {
    crate::real_skypilot::assert_matches_ground_truth("priced");
}
