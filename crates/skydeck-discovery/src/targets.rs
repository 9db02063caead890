//! From an exporter Service and its endpoints to the exporter endpoints ([`Exporter`]) that
//! become target groups: one per ready address, with its pod and node where known.
//!
//! EndpointSlices (`discovery.k8s.io/v1`) are preferred; core/v1 Endpoints serve API servers
//! without them (1.20 has only `v1beta1`). Both carry the ports under the Service port's name,
//! so the pod port is found by that name; an endpoint that is not ready is left out (its
//! exporter would not answer), and the same pod seen in two slices (dual-stack) is listed once.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::dcgm::ExporterService;

/// One exporter endpoint of one context.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Exporter {
    pub(crate) namespace: String,
    pub(crate) service: String,
    pub(crate) pod: Option<String>,
    pub(crate) ip: String,
    pub(crate) port: u16,
    pub(crate) node: Option<String>,
    pub(crate) service_port: u16,
    pub(crate) scheme: &'static str,
    pub(crate) path: String,
}

fn exporter(
    svc: &ExporterService,
    ip: &str,
    port: u16,
    pod: Option<String>,
    node: Option<String>,
) -> Exporter {
    Exporter {
        namespace: svc.namespace.clone(),
        service: svc.name.clone(),
        pod,
        ip: ip.to_string(),
        port,
        node,
        service_port: svc.service_port,
        scheme: svc.scheme,
        path: svc.path.clone(),
    }
}

/// The pod port of `svc` among endpoint ports `(name, port)`: the one named like the Service
/// port (endpoints carry the Service's port names with the pods' numbers).
fn pod_port<'a>(
    svc: &ExporterService,
    mut ports: impl Iterator<Item = (Option<&'a str>, Option<i32>)>,
) -> Option<u16> {
    if let Some(fixed) = svc.fixed_pod_port {
        return Some(fixed);
    }
    let want = svc.port_name.as_deref().unwrap_or("");
    ports
        .find(|(name, _)| name.unwrap_or("") == want)
        .and_then(|(_, port)| port)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
}

/// Exporter endpoints of `svc` from its EndpointSlices.
pub(crate) fn from_slices<'a>(
    svc: &ExporterService,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> Vec<Exporter> {
    let mut out = BTreeSet::new();
    for slice in slices {
        let owner = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"));
        if owner.map(String::as_str) != Some(svc.name.as_str())
            || slice.metadata.namespace.as_deref() != Some(svc.namespace.as_str())
        {
            continue;
        }
        let Some(port) = pod_port(
            svc,
            slice
                .ports
                .iter()
                .flatten()
                .map(|p| (p.name.as_deref(), p.port)),
        ) else {
            continue;
        };
        for ep in &slice.endpoints {
            if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            // Addresses of one endpoint are fungible (the same pod); the first is enough.
            let Some(ip) = ep.addresses.first() else {
                continue;
            };
            let pod = ep
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| r.name.clone());
            out.insert(exporter(svc, ip, port, pod, ep.node_name.clone()));
        }
    }
    dedupe_pods(out)
}

/// Exporter endpoints of `svc` from its core/v1 Endpoints object.
pub(crate) fn from_endpoints(svc: &ExporterService, eps: &Endpoints) -> Vec<Exporter> {
    let mut out = BTreeSet::new();
    for subset in eps.subsets.iter().flatten() {
        let Some(port) = pod_port(
            svc,
            subset
                .ports
                .iter()
                .flatten()
                .map(|p| (p.name.as_deref(), Some(p.port))),
        ) else {
            continue;
        };
        // `notReadyAddresses` are left out on purpose.
        for a in subset.addresses.iter().flatten() {
            out.insert(address(svc, a, port));
        }
    }
    dedupe_pods(out)
}

fn address(svc: &ExporterService, a: &EndpointAddress, port: u16) -> Exporter {
    let pod = a
        .target_ref
        .as_ref()
        .filter(|r| r.kind.as_deref() == Some("Pod"))
        .and_then(|r| r.name.clone());
    exporter(svc, &a.ip, port, pod, a.node_name.clone())
}

/// One entry per (service, pod, port): a dual-stack pod appears in an IPv4 and an IPv6 slice.
fn dedupe_pods(all: BTreeSet<Exporter>) -> Vec<Exporter> {
    let mut seen = BTreeSet::new();
    let mut ipv4_first: Vec<Exporter> = all.into_iter().collect();
    ipv4_first.sort_by_key(|e| e.ip.contains(':'));
    let mut out: Vec<Exporter> = ipv4_first
        .into_iter()
        .filter(|e| match &e.pod {
            Some(p) => seen.insert((e.namespace.clone(), e.service.clone(), p.clone(), e.port)),
            None => true,
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dcgm::{exporter_of, tests::service};
    use k8s_openapi::api::core::v1::{EndpointPort, EndpointSubset, ObjectReference};
    use k8s_openapi::api::discovery::v1::{
        Endpoint, EndpointConditions, EndpointPort as SlicePort,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    pub(crate) fn gpu_operator_svc() -> ExporterService {
        exporter_of(&service(
            "gpu-operator",
            "nvidia-dcgm-exporter",
            &[("app", "nvidia-dcgm-exporter")],
            &[],
            &[(Some("gpu-metrics"), 9400, None)],
        ))
        .unwrap()
    }

    fn pod_ref(name: &str) -> ObjectReference {
        ObjectReference {
            kind: Some("Pod".into()),
            name: Some(name.into()),
            namespace: Some("gpu-operator".into()),
            ..Default::default()
        }
    }

    pub(crate) fn slice(
        svc: &str,
        port_name: &str,
        port: i32,
        eps: &[(&str, &str, &str, Option<bool>)],
    ) -> EndpointSlice {
        EndpointSlice {
            address_type: "IPv4".into(),
            metadata: ObjectMeta {
                name: Some(format!("{svc}-abc")),
                namespace: Some("gpu-operator".into()),
                labels: Some([("kubernetes.io/service-name".to_string(), svc.to_string())].into()),
                ..Default::default()
            },
            ports: Some(vec![SlicePort {
                name: Some(port_name.into()),
                port: Some(port),
                ..Default::default()
            }]),
            endpoints: eps
                .iter()
                .map(|(ip, pod, node, ready)| Endpoint {
                    addresses: vec![ip.to_string()],
                    node_name: Some(node.to_string()),
                    target_ref: Some(pod_ref(pod)),
                    conditions: Some(EndpointConditions {
                        ready: *ready,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[test]
    fn slices_give_one_exporter_per_ready_endpoint() {
        let svc = gpu_operator_svc();
        let s = slice(
            "nvidia-dcgm-exporter",
            "gpu-metrics",
            9400,
            &[
                ("10.0.0.2", "dcgm-b", "node-b", Some(true)),
                ("10.0.0.1", "dcgm-a", "node-a", None),
                ("10.0.0.3", "dcgm-c", "node-c", Some(false)),
            ],
        );
        let other = slice(
            "other",
            "gpu-metrics",
            9400,
            &[("10.0.0.9", "x", "n", None)],
        );
        let wrong_port = slice(
            "nvidia-dcgm-exporter",
            "debug",
            1,
            &[("10.0.0.8", "y", "n", None)],
        );
        let got = from_slices(&svc, [&s, &other, &wrong_port]);
        let pods: Vec<_> = got
            .iter()
            .map(|e| (e.pod.as_deref().unwrap(), e.ip.as_str()))
            .collect();
        assert_eq!(pods, [("dcgm-a", "10.0.0.1"), ("dcgm-b", "10.0.0.2")]);
        assert_eq!(got[0].node.as_deref(), Some("node-a"));
        assert_eq!(got[0].port, 9400);
    }

    #[test]
    fn dual_stack_pod_listed_once() {
        let svc = gpu_operator_svc();
        let v4 = slice(
            "nvidia-dcgm-exporter",
            "gpu-metrics",
            9400,
            &[("10.0.0.1", "p", "n", None)],
        );
        let mut v6 = slice(
            "nvidia-dcgm-exporter",
            "gpu-metrics",
            9400,
            &[("fd00::1", "p", "n", None)],
        );
        v6.address_type = "IPv6".into();
        let got = from_slices(&svc, [&v6, &v4]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].ip, "10.0.0.1");
    }

    #[test]
    fn core_endpoints_skip_not_ready() {
        let svc = gpu_operator_svc();
        let eps = Endpoints {
            metadata: ObjectMeta::default(),
            subsets: Some(vec![EndpointSubset {
                addresses: Some(vec![EndpointAddress {
                    ip: "10.250.0.2".into(),
                    node_name: Some("gpu-node-1".into()),
                    target_ref: Some(pod_ref("nvidia-dcgm-exporter-x1")),
                    ..Default::default()
                }]),
                not_ready_addresses: Some(vec![EndpointAddress {
                    ip: "10.250.0.3".into(),
                    ..Default::default()
                }]),
                ports: Some(vec![EndpointPort {
                    name: Some("gpu-metrics".into()),
                    port: 9400,
                    ..Default::default()
                }]),
            }]),
        };
        let got = from_endpoints(&svc, &eps);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].pod.as_deref(), Some("nvidia-dcgm-exporter-x1"));
        assert_eq!(got[0].node.as_deref(), Some("gpu-node-1"));
    }
}
