//! Tests of the metric definitions on hand-made fleets, real captures and random fleets.

use super::*;
use proptest::prelude::*;
use serde_json::json;

const T: i64 = 1_795_434_586;

fn at() -> Timestamp {
    Timestamp::from_second(T).unwrap()
}

fn t(offset_h: f64) -> f64 {
    T as f64 + offset_h * 3600.0
}

fn job(v: serde_json::Value) -> ManagedJobRecord {
    serde_json::from_value(v).unwrap()
}

fn cluster(v: serde_json::Value) -> ClusterRecord {
    serde_json::from_value(v).unwrap()
}

fn cost(v: serde_json::Value) -> CostRecord {
    serde_json::from_value(v).unwrap()
}

fn value(samples: &[Sample], name: &str) -> Option<f64> {
    let v: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .collect();
    (!v.is_empty()).then(|| v.iter().sum())
}

fn tagged(samples: &[Sample], name: &str, key: &str, val: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && s.tags.get(key).map(String::as_str) == Some(val))
        .map(|s| s.value)
        .sum()
}

fn small_fleet() -> (Vec<ClusterRecord>, Vec<ManagedJobRecord>, Vec<CostRecord>) {
    let clusters = vec![
        cluster(
            json!({"name": "a", "status": "UP", "nodes": 2, "cloud": "AWS",
            "accelerators": "{'H100': 8}", "resources_str": "2x[spot](gpus=H100:8, p5.48xlarge, ...)",
            "user_name": "alice", "workspace": "default"}),
        ),
        cluster(
            json!({"name": "b", "status": "AUTOSTOPPING", "nodes": 1, "cloud": "GCP",
            "accelerators": "{'L4': 1}", "resources_str": "1x(gpus=L4:1, g2-standard-8, ...)"}),
        ),
        cluster(
            json!({"name": "c", "status": "STOPPED", "nodes": 3, "cloud": "AWS",
            "resources_str": "3x(cpus=8, m6i.2xlarge, ...)"}),
        ),
        cluster(json!({"name": "d", "status": "INIT", "nodes": 1, "cloud": "Lambda"})),
    ];
    let jobs = vec![
        // A pipeline: task 0 done, task 1 running on 2 spot nodes with 4 GPUs each.
        job(
            json!({"job_id": 1, "task_id": 0, "status": "SUCCEEDED", "job_name": "llama-finetune",
            "task_name": "prep", "submitted_at": t(-10.0), "start_at": t(-9.0), "end_at": t(-8.0),
            "job_duration": 3600.0, "recovery_count": 0, "cloud": "AWS"}),
        ),
        job(
            json!({"job_id": 1, "task_id": 1, "status": "RUNNING", "job_name": "llama-finetune",
            "task_name": "train", "submitted_at": t(-10.0), "start_at": t(-8.0), "end_at": null,
            "job_duration": 7200.0, "recovery_count": 2,
            "cluster_resources": "2x[spot](gpus=A100:4, ...)", "accelerators": {"A100": 4},
            "cloud": "AWS"}),
        ),
        job(
            json!({"job_id": 2, "task_id": 0, "status": "PENDING", "job_name": "etl",
            "submitted_at": t(-1.0), "cluster_resources": "-", "cloud": "-"}),
        ),
        job(
            json!({"job_id": 3, "task_id": 0, "status": "SUCCEEDED", "job_name": "sft-7",
            "task_name": "sft-7", "submitted_at": t(-30.0), "start_at": t(-29.0),
            "end_at": t(-20.0), "job_duration": 1800.0, "recovery_count": 1}),
        ),
        job(
            json!({"job_id": 4, "task_id": 0, "status": "FAILED_SETUP", "job_name": "batch-eval",
            "task_name": "batch-eval", "submitted_at": t(-50.0), "start_at": t(-49.5),
            "end_at": t(-49.0), "job_duration": 600.0}),
        ),
        // Ended 8 days ago: outside every 7-day window.
        job(
            json!({"job_id": 5, "task_id": 0, "status": "CANCELLED", "job_name": "old",
            "submitted_at": t(-200.0), "start_at": t(-199.0), "end_at": t(-192.0),
            "job_duration": 100.0, "recovery_count": 5}),
        ),
        job(
            json!({"job_id": 6, "task_id": 0, "status": "RECOVERING", "job_name": "grpo-x",
            "submitted_at": t(-3.0), "start_at": t(-2.0), "job_duration": 60.0,
            "recovery_count": 1}),
        ),
    ];
    let costs = vec![
        // Live cluster, open interval started 48 h ago: $2/h.
        cost(
            json!({"name": "a", "duration": 172800.0, "total_cost": 96.0,
            "usage_intervals": [[t(-48.0), null]], "cloud": "AWS"}),
        ),
        // Terminated: 10 h, 5 of them in the last 24 h.
        cost(json!({"name": "x", "duration": 36000.0, "total_cost": 10.0,
            "usage_intervals": [[t(-29.0), t(-19.0)]], "cloud": "GCP"})),
        // The clusters of job 3 (sft-7) and job 4 (batch-eval).
        cost(
            json!({"name": "sft-7-3", "duration": 32400.0, "total_cost": 9.0,
            "usage_intervals": [[t(-29.0), t(-20.0)]]}),
        ),
        cost(
            json!({"name": "batch-eval-4", "duration": 1800.0, "total_cost": 1.0,
            "usage_intervals": [[t(-49.5), t(-49.0)]]}),
        ),
    ];
    (clusters, jobs, costs)
}

#[test]
fn definitions_on_a_small_fleet() {
    let (clusters, jobs, costs) = small_fleet();
    let s = compute(
        &clusters,
        &jobs,
        &costs,
        None,
        at(),
        &FleetOptions::default(),
    );
    let v = |n| value(&s, n).unwrap_or(f64::NAN);
    assert_eq!(v("skypilot.jobs.running"), 1.0);
    assert_eq!(v("skypilot.jobs.queued"), 1.0);
    assert_eq!(v("skypilot.jobs.recovering"), 1.0);
    assert_eq!(v("skypilot.jobs.count"), 6.0);
    assert_eq!(
        tagged(&s, "skypilot.jobs.count", "status", "SUCCEEDED"),
        1.0
    );
    assert_eq!(
        tagged(&s, "skypilot.jobs.count", "status", "WINDING_DOWN"),
        0.0
    );
    assert_eq!(
        s.iter().filter(|x| x.name == "skypilot.jobs.count").count(),
        14,
        "one series per status, zeros included"
    );
    assert_eq!(v("skypilot.jobs.completed_7d"), 2.0);
    assert_eq!(v("skypilot.jobs.succeeded_7d"), 1.0);
    assert_eq!(v("skypilot.jobs.failed_7d"), 1.0);
    assert_eq!(v("skypilot.jobs.cancelled_7d"), 0.0);
    assert_eq!(v("skypilot.jobs.success_rate_7d"), 50.0);
    assert_eq!(v("skypilot.jobs.avg_duration_minutes"), (30.0 + 10.0) / 2.0);
    // Started within 7 days: jobs 1, 3, 4, 6 (queue 1 h, 1 h, 0.5 h, 1 h).
    assert!((v("skypilot.jobs.avg_queue_time_minutes") - 52.5).abs() < 1e-9);
    assert_eq!(v("skypilot.jobs.longest_running_hours"), 3.0);
    assert_eq!(v("skypilot.clusters.active"), 1.0);
    assert_eq!(v("skypilot.clusters.total_nodes"), 7.0);
    assert_eq!(tagged(&s, "skypilot.clusters.count", "status", "INIT"), 1.0);
    assert_eq!(v("skypilot.instances.running"), 2.0 + 1.0 + 2.0);
    assert_eq!(v("skypilot.instances.spot"), 4.0);
    assert_eq!(v("skypilot.instances.on_demand"), 1.0);
    assert_eq!(v("skypilot.gpus.running"), 16.0 + 1.0 + 8.0);
    // Submitted within 7 days: jobs 1 (2), 2, 3 (1), 4, 6 (1).
    assert_eq!(v("skypilot.instances.preempted_7d"), 4.0);
    // cost_24h: a 24 h of 48 → 48; x 5 h of 10 → 5; sft 4 h of 9 → 4; batch 0.
    assert!((v("skypilot.compute.cost_24h") - 57.0).abs() < 1e-9);
    assert!((v("skypilot.compute.cost_7d") - 116.0).abs() < 1e-9);
    assert!((v("skypilot.compute.burn_rate_hourly") - 2.0).abs() < 1e-9);
    assert!((v("skypilot.compute.estimated_monthly_cost") - 116.0 / 7.0 * 30.0).abs() < 1e-9);
    assert!((v("skypilot.compute.cost_per_job_avg") - 5.0).abs() < 1e-9);
    assert_eq!(v("skypilot.training.runs_active"), 1.0);
    assert_eq!(v("skypilot.training.runs_completed_7d"), 1.0);
    assert!((v("skypilot.training.avg_cost_per_run") - 9.0).abs() < 1e-9);
    // a (AWS, UP) is priced by its row; b (GCP, AUTOSTOPPING) has no cost row at all.
    assert_eq!(
        series(&s, "skypilot.clusters.unpriced"),
        unpriced_of(&[("AWS", 0.0), ("GCP", 1.0), ("Lambda", 0.0), ("none", 0.0),])
    );
    assert!(
        value(&s, "skypilot.clusters.idle").is_none(),
        "idle is opt-in"
    );
    assert!(
        s.iter().all(|x| x.at == at()),
        "one timestamp for the whole run"
    );
    assert!(s.iter().all(|x| x.def().is_some()), "only catalog metrics");
}

fn series(samples: &[Sample], name: &str) -> BTreeMap<Tags, f64> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| (s.tags.clone(), s.value))
        .collect()
}

fn unpriced_of(v: &[(&str, f64)]) -> BTreeMap<Tags, f64> {
    v.iter()
        .map(|(c, n)| (Tags::from([("cloud".to_string(), c.to_string())]), *n))
        .collect()
}

/// A Kubernetes fleet the way SkyPilot 0.14.1 reports it without `kubernetes.pricing`:
/// `total_cost` 0.0 for every row however long it ran.
fn kubernetes_fleet() -> (Vec<ClusterRecord>, Vec<CostRecord>) {
    let k8s = |name: &str, status: &str, hash: &str| {
        cluster(
            json!({"name": name, "status": status, "nodes": 2, "cloud": "Kubernetes",
            "region": "gke_p_us-central1_h100", "accelerators": "{'H100': 8}",
            "cluster_hash": hash}),
        )
    };
    let clusters = vec![
        k8s("train", "UP", "h-train"),
        k8s("serve", "AUTOSTOPPING", "h-serve"),
        k8s("paused", "STOPPED", "h-paused"),
        k8s("booting", "INIT", "h-booting"),
        k8s("priced", "UP", "h-priced"),
        // Its row is named differently (renamed): joined by hash.
        k8s("renamed", "UP", "h-renamed"),
        cluster(
            json!({"name": "aws-a", "status": "UP", "nodes": 1, "cloud": "AWS",
            "cluster_hash": "h-aws"}),
        ),
    ];
    let open = |h: f64| json!([[t(-h), null]]);
    // Kubernetes cost rows: name, hash, status, usage intervals, duration, total_cost.
    let rows = [
        (
            "train",
            "h-train",
            json!("UP"),
            open(5.0),
            18000.0,
            json!(0.0),
        ),
        (
            "serve",
            "h-serve",
            json!("AUTOSTOPPING"),
            open(2.0),
            7200.0,
            json!(null),
        ),
        (
            "paused",
            "h-paused",
            json!("STOPPED"),
            json!([[t(-9.0), t(-3.0)]]),
            21600.0,
            json!(0.0),
        ),
        // Launched this second: no duration yet, nothing to judge.
        (
            "booting",
            "h-booting",
            json!("INIT"),
            json!([[t(0.0), null]]),
            0.0,
            json!(0.0),
        ),
        (
            "priced",
            "h-priced",
            json!("UP"),
            open(1.0),
            3600.0,
            json!(40.0),
        ),
        (
            "old-name",
            "h-renamed",
            json!("UP"),
            open(3.0),
            10800.0,
            json!(0.0),
        ),
        // A managed job's cluster: not in /status, but its open row accrues nothing.
        (
            "sft-7-7",
            "h-job",
            json!("UP"),
            open(4.0),
            14400.0,
            json!(0.0),
        ),
        // Terminated, unpriced: not running, not counted.
        (
            "gone",
            "h-gone",
            json!(null),
            json!([[t(-30.0), t(-20.0)]]),
            36000.0,
            json!(0.0),
        ),
        // aws-a has no row at all: its cost is missing from every sum.
    ];
    let costs = rows
        .into_iter()
        .map(|(name, hash, status, iv, dur, total)| {
            cost(json!({"name": name, "cluster_hash": hash, "status": status,
                "usage_intervals": iv, "duration": dur, "total_cost": total,
                "cloud": "Kubernetes", "region": "gke_p_us-central1_h100", "num_nodes": 2}))
        })
        .collect();
    (clusters, costs)
}

#[test]
fn unpriced_counts_running_clusters_without_a_price() {
    let (clusters, costs) = kubernetes_fleet();
    let s = compute(&clusters, &[], &costs, None, at(), &FleetOptions::default());
    // train (0.0), serve (null), renamed (0.0, by hash), sft-7-7 (managed, open row).
    assert_eq!(
        series(&s, "skypilot.clusters.unpriced"),
        unpriced_of(&[("AWS", 1.0), ("Kubernetes", 4.0)])
    );
    // Nothing running: every cloud seen still reads 0.
    let stopped: Vec<ClusterRecord> = clusters
        .iter()
        .filter(|c| c.status == ClusterStatus::Stopped)
        .cloned()
        .collect();
    let closed: Vec<CostRecord> = costs.iter().filter(|r| !is_open(r)).cloned().collect();
    let s = compute(&stopped, &[], &closed, None, at(), &FleetOptions::default());
    assert_eq!(
        series(&s, "skypilot.clusters.unpriced"),
        unpriced_of(&[("Kubernetes", 0.0)])
    );
}

#[test]
fn unpriced_cloud_follows_the_breakdown_cap() {
    let (clusters, costs) = kubernetes_fleet();
    let opts = FleetOptions {
        breakdown: vec![BreakdownKey::Cloud, BreakdownKey::User],
        breakdown_top: 1,
        ..FleetOptions::default()
    };
    let s = compute(&clusters, &[], &costs, None, at(), &opts);
    // Kubernetes is the most frequent cloud; AWS becomes `other`. No user tag: the metric is
    // split by cloud only.
    assert_eq!(
        series(&s, "skypilot.clusters.unpriced"),
        unpriced_of(&[("Kubernetes", 4.0), ("other", 1.0)])
    );
}

#[test]
fn empty_fleet_emits_zeros_and_no_placeholders() {
    let s = compute(&[], &[], &[], None, at(), &FleetOptions::default());
    assert_eq!(
        series(&s, "skypilot.clusters.unpriced"),
        unpriced_of(&[("none", 0.0)])
    );
    assert_eq!(value(&s, "skypilot.jobs.running"), Some(0.0));
    assert_eq!(value(&s, "skypilot.jobs.longest_running_hours"), Some(0.0));
    assert_eq!(value(&s, "skypilot.compute.cost_7d"), Some(0.0));
    for absent in [
        "skypilot.jobs.success_rate_7d",
        "skypilot.jobs.avg_duration_minutes",
        "skypilot.jobs.avg_queue_time_minutes",
        "skypilot.compute.cost_per_job_avg",
        "skypilot.training.avg_cost_per_run",
        "skypilot.clusters.avg_utilization_percent",
        "skypilot.storage.cost_7d",
    ] {
        assert!(value(&s, absent).is_none(), "{absent} must not be emitted");
    }
}

#[test]
fn queue_probe_is_reported() {
    let q = QueueProbe {
        idle: 2,
        unreachable: 3,
    };
    let s = compute(&[], &[], &[], Some(q), at(), &FleetOptions::default());
    assert_eq!(value(&s, "skypilot.clusters.idle"), Some(2.0));
    assert_eq!(value(&s, "skypilot.clusters.queue_unreachable"), Some(3.0));
}

#[test]
fn breakdown_caps_values_and_keeps_totals() {
    let (clusters, jobs, costs) = small_fleet();
    let plain = compute(
        &clusters,
        &jobs,
        &costs,
        None,
        at(),
        &FleetOptions::default(),
    );
    let opts = FleetOptions {
        breakdown: vec![BreakdownKey::Cloud, BreakdownKey::Accelerator],
        breakdown_top: 1,
        ..FleetOptions::default()
    };
    let split = compute(&clusters, &jobs, &costs, None, at(), &opts);
    assert_sums_match(&plain, &split);
    // Most entities have no cloud (never-launched jobs, CPU records): `none` is the top value.
    let clouds: BTreeSet<&str> = split
        .iter()
        .filter_map(|s| s.tags.get("cloud").map(String::as_str))
        .collect();
    assert_eq!(clouds, BTreeSet::from(["none", "other"]));
}

fn assert_sums_match(plain: &[Sample], split: &[Sample]) {
    let names: BTreeSet<&str> = plain.iter().map(|s| s.name.as_ref()).collect();
    for name in names {
        let a = value(plain, name).unwrap();
        let b = value(split, name).unwrap_or(f64::NAN);
        assert!(
            (a - b).abs() <= 1e-6 * a.abs().max(1.0),
            "{name}: total {a} but the breakdown sums to {b}"
        );
    }
}

#[test]
fn real_captures_decode_and_compute() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/skypilot");
    let rv = |f: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(format!("{dir}/{f}")).unwrap();
        let payload: serde_json::Value = serde_json::from_str(&text).unwrap();
        serde_json::from_str(payload["return_value"].as_str().unwrap()).unwrap()
    };
    let clusters: Vec<ClusterRecord> = serde_json::from_value(rv("status.json")).unwrap();
    let queue: skydeck_skypilot::api::JobsQueue =
        serde_json::from_value(rv("jobs_queue_v2.json")).unwrap();
    let costs: Vec<CostRecord> = serde_json::from_value(rv("cost_report_7d.json")).unwrap();
    assert_eq!(clusters.len(), 10);
    assert!(!queue.jobs.is_empty());
    let s = compute(
        &clusters,
        &queue.jobs,
        &costs,
        None,
        at(),
        &FleetOptions::default(),
    );
    let jobs: BTreeSet<i64> = queue.jobs.iter().map(|j| j.job_id).collect();
    assert_eq!(value(&s, "skypilot.jobs.count"), Some(jobs.len() as f64));
    assert!(value(&s, "skypilot.compute.cost_7d").unwrap() > 0.0);
    assert!(s.iter().all(|x| x.value.is_finite()));
}

fn arb_fleet() -> impl Strategy<Value = (Vec<ClusterRecord>, Vec<ManagedJobRecord>, Vec<CostRecord>)>
{
    let clouds = prop::sample::select(vec!["AWS", "GCP", "Lambda", "Kubernetes", "-"]);
    let accs = prop::sample::select(vec!["H100", "A100", "L4", "A10G"]);
    let users = prop::sample::select(vec!["alice", "bob", "carol", "dan"]);
    let cluster_s = (
        prop::sample::select(ClusterStatus::ALL.to_vec()),
        1u32..5,
        clouds.clone(),
        accs.clone(),
        any::<bool>(),
        users.clone(),
    )
        .prop_map(|(status, nodes, cloud, acc, spot, user)| {
            cluster(json!({"name": "c", "status": status.as_str(), "nodes": nodes,
                "cloud": cloud, "accelerators": format!("{{'{acc}': 8}}"), "user_name": user,
                "resources_str": format!("{nodes}x{}(gpus={acc}:8)", if spot {"[spot]"} else {""})}))
        });
    let job_s = (
        0i64..40,
        0i64..3,
        prop::sample::select(ManagedJobStatus::ALL.to_vec()),
        -300.0f64..0.0,
        0.0f64..100.0,
        clouds.clone(),
        accs.clone(),
        users.clone(),
        0u32..4,
        1u32..4,
    )
        .prop_map(
            |(id, task, status, sub, run_h, cloud, acc, user, rec, nodes)| {
                let started = !matches!(
                    status,
                    ManagedJobStatus::Pending | ManagedJobStatus::Starting
                );
                let end = status.is_terminal().then(|| t(sub + run_h.min(-sub)));
                job(
                    json!({"job_id": id, "task_id": task, "status": status.as_str(),
                "job_name": format!("job-{id}"), "submitted_at": t(sub),
                "start_at": if started { Some(t(sub + 0.5)) } else { None }, "end_at": end,
                "job_duration": run_h * 3600.0, "recovery_count": rec, "cloud": cloud,
                "user_name": user, "accelerators": {acc: 2},
                "cluster_resources": format!("{nodes}x[spot](gpus={acc}:2)")}),
                )
            },
        );
    let cost_s = (
        -300.0f64..0.0,
        0.1f64..200.0,
        any::<bool>(),
        clouds,
        0.0f64..500.0,
        users,
    )
        .prop_map(|(start, len, open, cloud, total, user)| {
            let end = if open {
                None
            } else {
                Some(t((start + len).min(0.0)))
            };
            let dur = if open {
                -start * 3600.0
            } else {
                (len.min(-start)) * 3600.0
            };
            cost(
                json!({"name": "k", "usage_intervals": [[t(start), end]], "duration": dur,
                "total_cost": total, "cloud": cloud, "user_name": user}),
            )
        });
    (
        prop::collection::vec(cluster_s, 0..20),
        prop::collection::vec(job_s, 0..60),
        prop::collection::vec(cost_s, 0..20),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// `sum` over the breakdown tags is the total, for any fleet, any tags and any top N.
    #[test]
    fn breakdown_sums_to_totals(
        (clusters, jobs, costs) in arb_fleet(),
        keys in prop::sample::subsequence(BreakdownKey::ALL.to_vec(), 1..=3),
        top in 1usize..4,
    ) {
        let plain = compute(&clusters, &jobs, &costs, None, at(), &FleetOptions::default());
        let opts = FleetOptions { breakdown: keys.clone(), breakdown_top: top, ..FleetOptions::default() };
        let split = compute(&clusters, &jobs, &costs, None, at(), &opts);
        assert_sums_match(&plain, &split);
        // Cardinality is bounded: at most top + 1 values per tag.
        for k in &keys {
            let values: BTreeSet<&str> = split.iter()
                .filter_map(|s| s.tags.get(k.as_str()).map(String::as_str)).collect();
            prop_assert!(values.len() <= top + 1, "{:?}: {values:?}", k);
        }
    }
}
