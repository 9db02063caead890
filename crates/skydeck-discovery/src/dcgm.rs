//! What makes a Kubernetes Service a DCGM exporter, and which of its ports, path and scheme
//! Prometheus should scrape.
//!
//! Exporters are found by what they are, not by a fixed name: the GPU Operator labels its
//! Service `app: nvidia-dcgm-exporter` (port `gpu-metrics` 9400,
//! `NVIDIA/gpu-operator:assets/state-dcgm-exporter/0600_service.yaml`), the standalone chart
//! `app.kubernetes.io/name: dcgm-exporter` (port `metrics` 9400). Other deployments (SkyPilot's
//! chart, vendor variants) are recognised when annotated `prometheus.io/scrape: "true"` and
//! named or labelled after DCGM. `prometheus.io/scrape: "false"` opts a Service out, as it does
//! for Prometheus' own annotation-based configs. The port is the one named `gpu-metrics` or
//! `metrics`, else 9400, else `prometheus.io/port`, else a Service's only port.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// dcgm-exporter's default port (`:9400`, `DCGM_EXPORTER_LISTEN`).
pub const DCGM_PORT: u16 = 9400;

const SCRAPE: &str = "prometheus.io/scrape";
const PORT: &str = "prometheus.io/port";
const PATH: &str = "prometheus.io/path";
const SCHEME: &str = "prometheus.io/scheme";

/// A Service recognised as a DCGM exporter, with the port, path and scheme to scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExporterService {
    pub(crate) namespace: String,
    pub(crate) name: String,
    /// The Service port's name, used to find the matching port of its endpoints.
    pub(crate) port_name: Option<String>,
    /// The Service's port (service mode).
    pub(crate) service_port: u16,
    /// The pod port when the Service does not say it: an annotation port that is not one of
    /// the Service's ports (endpoints then carry no matching port).
    pub(crate) fixed_pod_port: Option<u16>,
    pub(crate) scheme: &'static str,
    pub(crate) path: String,
}

fn is_dcgm_labelled(labels: &BTreeMap<String, String>) -> bool {
    labels
        .get("app")
        .is_some_and(|v| v == "nvidia-dcgm-exporter")
        || labels
            .get("app.kubernetes.io/name")
            .is_some_and(|v| v == "dcgm-exporter")
}

fn mentions_dcgm(name: &str, labels: &BTreeMap<String, String>) -> bool {
    name.contains("dcgm") || labels.values().any(|v| v.contains("dcgm"))
}

/// The exporter `svc` is, if it is one.
pub(crate) fn exporter_of(svc: &Service) -> Option<ExporterService> {
    let meta = &svc.metadata;
    let name = meta.name.as_deref()?;
    let namespace = meta.namespace.as_deref()?;
    let empty = BTreeMap::new();
    let labels = meta.labels.as_ref().unwrap_or(&empty);
    let annotations = meta.annotations.as_ref().unwrap_or(&empty);
    let scrape = annotations.get(SCRAPE).map(|s| s.trim());
    if scrape == Some("false") {
        return None;
    }
    let recognised =
        is_dcgm_labelled(labels) || (scrape == Some("true") && mentions_dcgm(name, labels));
    if !recognised {
        return None;
    }
    let ports = svc.spec.as_ref()?.ports.as_deref().unwrap_or_default();
    let annotated_port = annotations
        .get(PORT)
        .and_then(|p| p.trim().parse::<u16>().ok())
        .filter(|p| *p > 0);
    let chosen = ports
        .iter()
        .find(|p| p.name.as_deref() == Some("gpu-metrics"))
        .or_else(|| ports.iter().find(|p| p.name.as_deref() == Some("metrics")))
        .or_else(|| ports.iter().find(|p| p.port == i32::from(DCGM_PORT)))
        .or_else(|| {
            annotated_port.and_then(|a| {
                ports.iter().find(|p| {
                    p.port == i32::from(a) || p.target_port == Some(IntOrString::Int(i32::from(a)))
                })
            })
        });
    let (port_name, service_port, fixed_pod_port) = match (chosen, annotated_port) {
        (Some(p), _) => {
            let service_port = u16::try_from(p.port).ok().filter(|p| *p > 0)?;
            (p.name.clone().filter(|n| !n.is_empty()), service_port, None)
        }
        // The annotation names a pod port the Service does not expose: scrape it as is.
        (None, Some(a)) => (None, a, Some(a)),
        (None, None) if ports.len() == 1 => {
            let p = &ports[0];
            let service_port = u16::try_from(p.port).ok().filter(|p| *p > 0)?;
            (p.name.clone().filter(|n| !n.is_empty()), service_port, None)
        }
        (None, None) => return None,
    };
    let scheme = match annotations.get(SCHEME).map(|s| s.trim()) {
        Some("https") => "https",
        _ => "http",
    };
    let path = annotations
        .get(PATH)
        .map(|p| p.trim())
        .filter(|p| is_clean_path(p))
        .unwrap_or("/metrics")
        .to_string();
    Some(ExporterService {
        namespace: namespace.to_string(),
        name: name.to_string(),
        port_name,
        service_port,
        fixed_pod_port,
        scheme,
        path,
    })
}

/// Whether `p` is an absolute path without query, fragment, dot segments, empty segments or
/// percent signs: the only paths discovery lists and the proxy will forward.
pub(crate) fn is_clean_path(p: &str) -> bool {
    p.starts_with('/')
        && p.len() <= 256
        && p[1..].split('/').enumerate().all(|(i, seg)| match seg {
            // A trailing slash (`/metrics/`) is fine, empty segments inside are not.
            "" => i == p[1..].split('/').count() - 1,
            "." | ".." => false,
            s => s.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':')
            }),
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    pub(crate) fn service(
        ns: &str,
        name: &str,
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
        ports: &[(Option<&str>, i32, Option<IntOrString>)],
    ) -> Service {
        let map = |kv: &[(&str, &str)]| {
            Some(
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                labels: map(labels),
                annotations: map(annotations),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p, t)| ServicePort {
                            name: n.map(String::from),
                            port: *p,
                            target_port: t.clone(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn gpu_operator_service() {
        let s = service(
            "gpu-operator",
            "nvidia-dcgm-exporter",
            &[("app", "nvidia-dcgm-exporter")],
            &[
                ("prometheus.io/scrape", "true"),
                ("prometheus.io/port", "9400"),
            ],
            &[(Some("gpu-metrics"), 9400, Some(IntOrString::Int(9400)))],
        );
        let e = exporter_of(&s).unwrap();
        assert_eq!(e.port_name.as_deref(), Some("gpu-metrics"));
        assert_eq!((e.service_port, e.fixed_pod_port), (9400, None));
        assert_eq!((e.scheme, e.path.as_str()), ("http", "/metrics"));
    }

    #[test]
    fn chart_service_picks_the_metrics_port_by_name() {
        let s = service(
            "monitoring",
            "dcgm-dcgm-exporter",
            &[("app.kubernetes.io/name", "dcgm-exporter")],
            &[],
            &[
                (Some("debug"), 8080, None),
                (
                    Some("metrics"),
                    19400,
                    Some(IntOrString::String("metrics".into())),
                ),
            ],
        );
        let e = exporter_of(&s).unwrap();
        assert_eq!(e.port_name.as_deref(), Some("metrics"));
        assert_eq!(e.service_port, 19400);
    }

    #[test]
    fn port_rules_in_order() {
        let l = [("app", "nvidia-dcgm-exporter")];
        let s = service(
            "n",
            "x",
            &l,
            &[],
            &[(Some("a"), 80, None), (None, 9400, None)],
        );
        assert_eq!(exporter_of(&s).unwrap().service_port, 9400);
        let s = service(
            "n",
            "x",
            &l,
            &[("prometheus.io/port", "9500")],
            &[(Some("a"), 80, None), (Some("b"), 9500, None)],
        );
        assert_eq!(exporter_of(&s).unwrap().service_port, 9500);
        let s = service(
            "n",
            "x",
            &l,
            &[("prometheus.io/port", "9600")],
            &[(Some("a"), 80, None), (Some("b"), 81, None)],
        );
        let e = exporter_of(&s).unwrap();
        assert_eq!(
            (e.service_port, e.fixed_pod_port, e.port_name),
            (9600, Some(9600), None)
        );
        let s = service("n", "x", &l, &[], &[(Some("web"), 8000, None)]);
        assert_eq!(exporter_of(&s).unwrap().service_port, 8000);
        let s = service(
            "n",
            "x",
            &l,
            &[],
            &[(Some("a"), 80, None), (Some("b"), 81, None)],
        );
        assert!(exporter_of(&s).is_none());
    }

    #[test]
    fn recognition_rules() {
        let p = [(Some("metrics"), 9400, None)];
        assert!(exporter_of(&service("n", "dcgm", &[("app", "other")], &[], &p)).is_none());
        // Annotated and named after DCGM: SkyPilot's chart, vendor variants.
        let s = service(
            "n",
            "sky-dcgm-exporter",
            &[],
            &[("prometheus.io/scrape", "true")],
            &p,
        );
        assert!(exporter_of(&s).is_some());
        let s = service(
            "n",
            "x",
            &[("component", "dcgm")],
            &[("prometheus.io/scrape", "true")],
            &p,
        );
        assert!(exporter_of(&s).is_some());
        // Annotated but nothing says DCGM: some other exporter.
        let s = service(
            "n",
            "node-exporter",
            &[],
            &[("prometheus.io/scrape", "true")],
            &p,
        );
        assert!(exporter_of(&s).is_none());
        // Opted out.
        let s = service(
            "n",
            "x",
            &[("app", "nvidia-dcgm-exporter")],
            &[("prometheus.io/scrape", "false")],
            &p,
        );
        assert!(exporter_of(&s).is_none());
    }

    #[test]
    fn path_and_scheme_annotations() {
        let l = [("app", "nvidia-dcgm-exporter")];
        let p = [(Some("metrics"), 9400, None)];
        let s = service(
            "n",
            "x",
            &l,
            &[
                ("prometheus.io/path", "/dcgm/metrics"),
                ("prometheus.io/scheme", "https"),
            ],
            &p,
        );
        let e = exporter_of(&s).unwrap();
        assert_eq!((e.scheme, e.path.as_str()), ("https", "/dcgm/metrics"));
        for bad in ["metrics", "/a/../b", "/m?x=1", "/a//b", "/%2e%2e", "/a#b"] {
            let s = service("n", "x", &l, &[("prometheus.io/path", bad)], &p);
            assert_eq!(exporter_of(&s).unwrap().path, "/metrics", "{bad}");
        }
        assert!(is_clean_path("/metrics/"));
        assert!(is_clean_path("/"));
    }
}
