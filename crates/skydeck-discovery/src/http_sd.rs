//! Prometheus HTTP service discovery: exporter endpoints → target groups → the JSON body.
//!
//! The format (<https://prometheus.io/docs/prometheus/latest/http_sd/>) is a JSON array of
//! `{"targets": ["host:port"], "labels": {…}}`; an empty list is `[]`, and each answer is the
//! complete list. There is one group per exporter endpoint so each carries its own pod and
//! node labels, even in service mode where several groups share the Service address (the
//! format SkyPilot's own `/api/service-discovery` used). Output is sorted so equal inputs give
//! byte-equal bodies. In proxy mode the `__metrics_path__` is percent-encoded per segment:
//! Prometheus puts the label into `url.URL.Path` (`scrape/target.go`, `Target.URL`), which
//! escapes `%` once more on the wire, so the proxy accepts both single and double encoding.

use std::collections::BTreeMap;

use bytes::Bytes;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::Serialize;
use url::Url;

use crate::options::TargetMode;
use crate::targets::Exporter;

/// The `job` label of every group (SkyPilot's choice, kept for its dashboards).
pub const JOB: &str = "dcgm-exporter";

/// Characters escaped in one path segment: everything but RFC 3986 unreserved characters and
/// the sub-delimiters Prometheus (Go's `url` package) leaves alone in paths.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// One HTTP SD target group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct TargetGroup {
    /// `host:port` addresses.
    pub targets: Vec<String>,
    /// Labels of every target in the group.
    pub labels: BTreeMap<String, String>,
}

/// Percent-encodes one path segment for `__metrics_path__`.
pub(crate) fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// The proxy path (below the proxy base) that serves `e` of `cluster`.
pub(crate) fn proxy_path(cluster: &str, e: &Exporter) -> Option<String> {
    let pod = e.pod.as_deref()?;
    let mut p = format!(
        "/proxy/{}/{}/{}/{}",
        encode_segment(cluster),
        encode_segment(&e.namespace),
        encode_segment(pod),
        e.port
    );
    // Exporter paths are clean (`dcgm::is_clean_path`), but encode them the same way.
    for seg in e.path.split('/').skip(1) {
        p.push('/');
        p.push_str(&encode_segment(seg));
    }
    Some(p)
}

/// `host:port` of a URL, with the scheme's default port spelled out.
fn host_port(u: &Url) -> Option<String> {
    let host = match u.host()? {
        url::Host::Ipv6(a) => format!("[{a}]"),
        h => h.to_string(),
    };
    Some(format!("{host}:{}", u.port_or_known_default()?))
}

/// The target groups of one context's exporters.
pub(crate) fn groups(
    cluster: &str,
    mode: TargetMode,
    proxy_base: Option<&Url>,
    exporters: &[Exporter],
    stale: bool,
) -> Vec<TargetGroup> {
    let mut out = Vec::with_capacity(exporters.len());
    for e in exporters {
        let mut labels = BTreeMap::new();
        labels.insert("cluster".to_string(), cluster.to_string());
        labels.insert("job".to_string(), JOB.to_string());
        labels.insert("kubernetes_namespace".to_string(), e.namespace.clone());
        labels.insert("kubernetes_service_name".to_string(), e.service.clone());
        // A Service address reaches any of its pods (kube-proxy picks one per connection), so
        // in service mode a pod or node label would be a guess: one group per Service port.
        if mode != TargetMode::Service {
            if let Some(p) = &e.pod {
                labels.insert("kubernetes_pod_name".to_string(), p.clone());
            }
            if let Some(n) = &e.node {
                labels.insert("kubernetes_node_name".to_string(), n.clone());
            }
        }
        if stale {
            labels.insert("skydeck_stale".to_string(), "true".to_string());
        }
        let target = match mode {
            TargetMode::Service => {
                labels.insert("__scheme__".into(), e.scheme.into());
                labels.insert("__metrics_path__".into(), e.path.clone());
                format!("{}.{}.svc:{}", e.service, e.namespace, e.service_port)
            }
            TargetMode::Pod => {
                labels.insert("__scheme__".into(), e.scheme.into());
                labels.insert("__metrics_path__".into(), e.path.clone());
                if e.ip.contains(':') {
                    format!("[{}]:{}", e.ip, e.port)
                } else {
                    format!("{}:{}", e.ip, e.port)
                }
            }
            TargetMode::Proxy => {
                // Without a pod name the API server cannot proxy to the endpoint.
                let (Some(base), Some(path)) = (proxy_base, proxy_path(cluster, e)) else {
                    continue;
                };
                let Some(addr) = host_port(base) else {
                    continue;
                };
                labels.insert("__scheme__".into(), base.scheme().into());
                labels.insert(
                    "__metrics_path__".into(),
                    format!("{}{path}", base.path().trim_end_matches('/')),
                );
                addr
            }
        };
        out.push(TargetGroup {
            targets: vec![target],
            labels,
        });
    }
    if mode == TargetMode::Service {
        out.sort();
        out.dedup();
    }
    out
}

/// The HTTP SD body of all groups, sorted.
pub(crate) fn body(mut groups: Vec<TargetGroup>) -> Bytes {
    groups.sort_by(|a, b| {
        let key = |g: &TargetGroup| {
            [
                "cluster",
                "kubernetes_namespace",
                "kubernetes_service_name",
                "kubernetes_pod_name",
            ]
            .map(|k| g.labels.get(k).cloned().unwrap_or_default())
        };
        key(a).cmp(&key(b)).then_with(|| a.cmp(b))
    });
    Bytes::from(serde_json::to_vec(&groups).expect("target groups serialize"))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn exporter(pod: &str, ip: &str) -> Exporter {
        Exporter {
            namespace: "gpu-operator".into(),
            service: "nvidia-dcgm-exporter".into(),
            pod: Some(pod.into()),
            ip: ip.into(),
            port: 9400,
            node: Some(format!("node-of-{pod}")),
            service_port: 9400,
            scheme: "http",
            path: "/metrics".into(),
        }
    }

    #[test]
    fn service_mode_matches_seed_format_one_group_per_service() {
        let g = groups(
            "gke_proj_zone_c1",
            TargetMode::Service,
            None,
            &[exporter("a", "10.0.0.1"), exporter("b", "10.0.0.2")],
            false,
        );
        assert_eq!(
            g.len(),
            1,
            "two endpoints behind one Service are one target"
        );
        let v = serde_json::to_value(&g[0]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "targets": ["nvidia-dcgm-exporter.gpu-operator.svc:9400"],
                "labels": {
                    "cluster": "gke_proj_zone_c1",
                    "job": "dcgm-exporter",
                    "kubernetes_namespace": "gpu-operator",
                    "kubernetes_service_name": "nvidia-dcgm-exporter",
                    "__scheme__": "http",
                    "__metrics_path__": "/metrics"
                }
            })
        );
    }

    #[test]
    fn pod_mode_uses_pod_ip_and_brackets_ipv6() {
        let g = groups(
            "c",
            TargetMode::Pod,
            None,
            &[exporter("a", "10.0.0.1"), exporter("b", "fd00::2")],
            true,
        );
        assert_eq!(g[0].targets, ["10.0.0.1:9400"]);
        assert_eq!(g[1].targets, ["[fd00::2]:9400"]);
        assert_eq!(g[0].labels["skydeck_stale"], "true");
    }

    #[test]
    fn proxy_mode_points_at_skydeck_with_encoded_segments() {
        let base = Url::parse("https://skydeck.example/base/").unwrap();
        let mut e = exporter("dcgm-x", "10.0.0.1");
        e.pod = Some("dcgm-x".into());
        let cluster = "arn:aws:eks:us-west-2:123:cluster/gpu a";
        let g = groups(cluster, TargetMode::Proxy, Some(&base), &[e], false);
        assert_eq!(g[0].targets, ["skydeck.example:443"]);
        assert_eq!(g[0].labels["__scheme__"], "https");
        assert_eq!(
            g[0].labels["__metrics_path__"],
            "/base/proxy/arn:aws:eks:us-west-2:123:cluster%2Fgpu%20a/gpu-operator/dcgm-x/9400/metrics"
        );
        assert_eq!(g[0].labels["cluster"], cluster);
        // No pod name: nothing the API server could proxy to.
        let mut e = exporter("p", "10.0.0.1");
        e.pod = None;
        let base = Url::parse("http://skydeck.monitoring.svc:9180").unwrap();
        assert!(groups("c", TargetMode::Proxy, Some(&base), &[e], false).is_empty());
    }

    #[test]
    fn body_is_sorted_and_empty_is_brackets() {
        assert_eq!(&body(Vec::new())[..], b"[]");
        let a = groups(
            "b-ctx",
            TargetMode::Pod,
            None,
            &[exporter("z", "10.0.0.9")],
            false,
        );
        let b = groups(
            "a-ctx",
            TargetMode::Pod,
            None,
            &[exporter("y", "10.0.0.8")],
            false,
        );
        let one = body(a.iter().chain(&b).cloned().collect());
        let two = body(b.iter().chain(&a).cloned().collect());
        assert_eq!(one, two);
        let v: serde_json::Value = serde_json::from_slice(&one).unwrap();
        assert_eq!(v[0]["labels"]["cluster"], "a-ctx");
    }
}
