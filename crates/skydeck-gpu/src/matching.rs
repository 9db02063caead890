//! Which SkyPilot cluster a GPU series belongs to, as pure functions of its [`GpuId`] and the
//! cluster table. A GPU that matches no cluster, or more than one, is unmatched: counted,
//! never guessed.
//!
//! Kubernetes clusters (cloud `Kubernetes`, and `SSH` node pools, which SkyPilot also runs as
//! pods): dcgm-exporter with Kubernetes mapping labels each GPU with the pod using it. SkyPilot
//! 0.14.1 names a cluster's pods `<cluster_name_on_cloud>-head` and
//! `<cluster_name_on_cloud>-worker<i>` and labels them
//! `skypilot-cluster-name=<cluster_name_on_cloud>` (`sky/provision/kubernetes/instance.py`,
//! `sky/provision/constants.py`). A GPU matches when its pod (`exported_pod` or `pod`) has one
//! of those names, or when a label derived from the pod label equals the name on the cloud:
//! [`K8S_CLUSTER_LABELS`] (relabelled `__meta_kubernetes_pod_label_skypilot_cluster_name`,
//! kube-state-metrics' `label_skypilot_cluster_name`, or `skypilot_cluster`).
//!
//! VM clusters (any cloud, Kubernetes too): by a configurable label, default
//! [`DEFAULT_VM_LABEL`] (`skypilot_cluster`), equal to the cluster's name or its name on the
//! cloud. dcgm-exporter cannot know the cluster, so the label comes from the scrape config,
//! e.g. per target:
//!
//! ```yaml
//! scrape_configs:
//!   - job_name: dcgm-vms
//!     static_configs:
//!       - targets: ["10.0.1.5:9400", "10.0.1.6:9400"]
//!         labels: { skypilot_cluster: "train-a100" }
//! ```
//!
//! or from the node name with a relabel rule (the alternative: `vm_label = "Hostname"` matches
//! when the node's host name *is* the cluster's name or name on the cloud, which depends on the
//! cloud's naming, so deriving `skypilot_cluster` from it is usually the safer choice):
//!
//! ```yaml
//!     metric_relabel_configs:
//!       - source_labels: [Hostname]
//!         regex: "(.+)-(head|worker).*"
//!         target_label: skypilot_cluster
//!         replacement: "$1"
//! ```

use std::collections::BTreeMap;

use skydeck_skypilot::api::ClusterRecord;

use crate::window::GpuId;

/// The default label VM GPUs are matched by.
pub const DEFAULT_VM_LABEL: &str = "skypilot_cluster";

/// Labels that carry a Kubernetes pod's `skypilot-cluster-name` once it reaches Prometheus
/// (label names cannot contain `-`, so it arrives with `_`).
pub const K8S_CLUSTER_LABELS: [&str; 3] = [
    "skypilot_cluster_name",
    "label_skypilot_cluster_name",
    "skypilot_cluster",
];

/// How GPUs are matched to clusters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchOptions {
    /// The label whose value names a GPU's cluster (its name or its name on the cloud).
    pub vm_label: String,
    /// For Kubernetes clusters, also require the GPU's `cluster` label (the context) to equal
    /// the cluster's region (SkyPilot's context) when both are known. Off by default: many
    /// Prometheus setups use `cluster` for something else.
    pub check_context: bool,
}

impl Default for MatchOptions {
    fn default() -> Self {
        MatchOptions {
            vm_label: DEFAULT_VM_LABEL.to_string(),
            check_context: false,
        }
    }
}

impl MatchOptions {
    /// The labels a [`GpuId`] must keep for matching (pass them to [`GpuId::from_labels`]).
    pub fn kept_labels(&self) -> Vec<String> {
        let mut keys: Vec<String> = K8S_CLUSTER_LABELS.iter().map(|s| s.to_string()).collect();
        if !keys.contains(&self.vm_label) {
            keys.push(self.vm_label.clone());
        }
        keys
    }
}

/// True for the clouds whose nodes are pods (SkyPilot's `Kubernetes` and `SSH` node pools).
pub fn is_pod_cloud(cluster: &ClusterRecord) -> bool {
    cluster
        .cloud
        .as_deref()
        .is_some_and(|c| c.eq_ignore_ascii_case("kubernetes") || c.eq_ignore_ascii_case("ssh"))
}

/// True when `pod` is one of the pods SkyPilot names for `name_on_cloud`: `<n>-head`, or
/// `<n>-worker<digits>`. The digits are required so that another cluster whose name on the
/// cloud merely starts with `<n>-worker` does not match.
pub fn is_cluster_pod(pod: &str, name_on_cloud: &str) -> bool {
    let Some(rest) = pod.strip_prefix(name_on_cloud) else {
        return false;
    };
    if rest == "-head" {
        return true;
    }
    rest.strip_prefix("-worker")
        .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
}

/// True when `gpu` belongs to `cluster` under `opts` (see the module docs for the rules).
pub fn gpu_belongs_to(gpu: &GpuId, cluster: &ClusterRecord, opts: &MatchOptions) -> bool {
    let on_cloud = cluster
        .cluster_name_on_cloud
        .as_deref()
        .filter(|s| !s.is_empty());
    if let Some(v) = gpu.label(&opts.vm_label)
        && (v == cluster.name || Some(v) == on_cloud)
    {
        return true;
    }
    if !is_pod_cloud(cluster) {
        return false;
    }
    // Without the name on the cloud (an old server) the pod rules cannot be applied.
    let Some(on_cloud) = on_cloud else {
        return false;
    };
    if opts.check_context
        && let (Some(ctx), Some(region)) = (&gpu.context, &cluster.region)
        && ctx != region
    {
        return false;
    }
    if gpu
        .pod
        .as_deref()
        .is_some_and(|p| is_cluster_pod(p, on_cloud))
    {
        return true;
    }
    K8S_CLUSTER_LABELS
        .iter()
        .any(|k| gpu.label(k) == Some(on_cloud))
}

/// Where one GPU went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// Exactly one cluster: its index in the slice given.
    Cluster(usize),
    /// No cluster.
    Unmatched,
    /// Several clusters: not guessed, counted as unmatched.
    Ambiguous,
}

/// The cluster `gpu` belongs to among `clusters`.
pub fn match_gpu(gpu: &GpuId, clusters: &[ClusterRecord], opts: &MatchOptions) -> Match {
    let mut found = None;
    for (i, c) in clusters.iter().enumerate() {
        if gpu_belongs_to(gpu, c, opts) {
            if found.is_some() {
                return Match::Ambiguous;
            }
            found = Some(i);
        }
    }
    found.map_or(Match::Unmatched, Match::Cluster)
}

/// Every GPU's cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matches<'a> {
    /// GPUs per cluster index (into the slice given), in GPU order.
    pub by_cluster: BTreeMap<usize, Vec<&'a GpuId>>,
    /// GPUs that matched no cluster.
    pub unmatched: Vec<&'a GpuId>,
    /// GPUs that matched several clusters (also not assigned).
    pub ambiguous: Vec<&'a GpuId>,
}

/// Matches every GPU of `gpus` against `clusters`.
pub fn match_gpus<'a>(
    gpus: impl IntoIterator<Item = &'a GpuId>,
    clusters: &[ClusterRecord],
    opts: &MatchOptions,
) -> Matches<'a> {
    let mut out = Matches::default();
    for g in gpus {
        match match_gpu(g, clusters, opts) {
            Match::Cluster(i) => out.by_cluster.entry(i).or_default().push(g),
            Match::Unmatched => out.unmatched.push(g),
            Match::Ambiguous => out.ambiguous.push(g),
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn cluster(name: &str, cloud: &str, on_cloud: Option<&str>) -> ClusterRecord {
        serde_json::from_value(serde_json::json!({
            "name": name,
            "status": "UP",
            "cloud": cloud,
            "region": "ctx-a",
            "nodes": 2,
            "accelerators": "{'H100': 1}",
            "cluster_name_on_cloud": on_cloud,
            "user_name": "alice",
        }))
        .unwrap()
    }

    fn pod_gpu(pod: &str) -> GpuId {
        GpuId {
            pod: Some(pod.into()),
            namespace: Some("default".into()),
            gpu: Some("0".into()),
            ..GpuId::default()
        }
    }

    fn labelled(key: &str, value: &str) -> GpuId {
        let mut g = GpuId {
            hostname: Some("ip-10-0-0-1".into()),
            gpu: Some("0".into()),
            ..GpuId::default()
        };
        g.labels.insert(key.into(), value.into());
        g
    }

    #[test]
    fn cluster_record_reads_the_name_on_cloud() {
        let c = cluster("train", "Kubernetes", Some("train-2ea4"));
        assert_eq!(c.cluster_name_on_cloud.as_deref(), Some("train-2ea4"));
        let old: ClusterRecord =
            serde_json::from_value(serde_json::json!({"name": "x", "status": "UP"})).unwrap();
        assert_eq!(old.cluster_name_on_cloud, None);
    }

    #[test]
    fn kubernetes_head_and_worker_pods_match() {
        let c = cluster("train", "Kubernetes", Some("train-2ea4"));
        let o = MatchOptions::default();
        assert!(gpu_belongs_to(&pod_gpu("train-2ea4-head"), &c, &o));
        assert!(gpu_belongs_to(&pod_gpu("train-2ea4-worker1"), &c, &o));
        assert!(gpu_belongs_to(&pod_gpu("train-2ea4-worker12"), &c, &o));
        for other in [
            "train-2ea4-headless",
            "train-2ea4-worker",
            "train-2ea4-workerx",
            "train-2ea4-worker1-extra",
            "train-head",
            "nvidia-dcgm-exporter-7x2kq",
            "train-2ea4",
        ] {
            assert!(!gpu_belongs_to(&pod_gpu(other), &c, &o), "{other}");
        }
    }

    #[test]
    fn kubernetes_pod_label_matches_the_name_on_cloud_only() {
        let c = cluster("train", "Kubernetes", Some("train-2ea4"));
        let o = MatchOptions::default();
        assert!(gpu_belongs_to(
            &labelled("skypilot_cluster_name", "train-2ea4"),
            &c,
            &o
        ));
        assert!(gpu_belongs_to(
            &labelled("label_skypilot_cluster_name", "train-2ea4"),
            &c,
            &o
        ));
        assert!(!gpu_belongs_to(
            &labelled("skypilot_cluster_name", "train"),
            &c,
            &o
        ));
    }

    #[test]
    fn pod_rules_apply_only_to_pod_clouds() {
        let vm = cluster("train", "AWS", Some("train-2ea4"));
        let o = MatchOptions::default();
        assert!(!gpu_belongs_to(&pod_gpu("train-2ea4-head"), &vm, &o));
        // Without the name on the cloud, nothing to compare a pod with.
        let old = cluster("train", "Kubernetes", None);
        assert!(!gpu_belongs_to(&pod_gpu("train-head"), &old, &o));
    }

    #[test]
    fn vm_label_matches_name_or_name_on_cloud() {
        let vm = cluster("train", "AWS", Some("train-2ea4"));
        let o = MatchOptions::default();
        assert!(gpu_belongs_to(
            &labelled("skypilot_cluster", "train"),
            &vm,
            &o
        ));
        assert!(gpu_belongs_to(
            &labelled("skypilot_cluster", "train-2ea4"),
            &vm,
            &o
        ));
        assert!(!gpu_belongs_to(
            &labelled("skypilot_cluster", "train2"),
            &vm,
            &o
        ));
        let by_host = MatchOptions {
            vm_label: "Hostname".into(),
            ..MatchOptions::default()
        };
        let mut g = labelled("Hostname", "train-2ea4");
        g.hostname = Some("train-2ea4".into());
        assert!(gpu_belongs_to(&g, &vm, &by_host));
        assert!(by_host.kept_labels().contains(&"Hostname".to_string()));
    }

    #[test]
    fn context_check_is_opt_in() {
        let c = cluster("train", "Kubernetes", Some("train-2ea4"));
        let mut g = pod_gpu("train-2ea4-head");
        g.context = Some("ctx-b".into());
        assert!(gpu_belongs_to(&g, &c, &MatchOptions::default()));
        let strict = MatchOptions {
            check_context: true,
            ..MatchOptions::default()
        };
        assert!(!gpu_belongs_to(&g, &c, &strict));
        g.context = Some("ctx-a".into());
        assert!(gpu_belongs_to(&g, &c, &strict));
    }

    #[test]
    fn unmatched_and_ambiguous_gpus_are_not_assigned() {
        let clusters = vec![
            cluster("a", "Kubernetes", Some("a-1111")),
            cluster("b", "AWS", Some("b-2222")),
            cluster("c", "AWS", Some("a")),
        ];
        let gpus = [
            pod_gpu("a-1111-worker1"),
            labelled("skypilot_cluster", "b"),
            pod_gpu("someone-elses-pod"),
            // "a" is cluster a's name and cluster c's name on the cloud.
            labelled("skypilot_cluster", "a"),
        ];
        let m = match_gpus(gpus.iter(), &clusters, &MatchOptions::default());
        assert_eq!(m.by_cluster[&0], vec![&gpus[0]]);
        assert_eq!(m.by_cluster[&1], vec![&gpus[1]]);
        assert_eq!(m.unmatched, vec![&gpus[2]]);
        assert_eq!(m.ambiguous, vec![&gpus[3]]);
    }
}
