//! One refresh of one context against its API server: find the exporter Services in each
//! namespace, then their endpoints.
//!
//! Which endpoint API to read is decided from API discovery (`GET /apis/discovery.k8s.io`):
//! `discovery.k8s.io/v1` EndpointSlices when the server serves them (1.21+), else core/v1
//! Endpoints (a 1.20 server has only `v1beta1` slices). The caller caches the answer per context
//! and drops it when a list under it answers 404 (the server was replaced). Namespaces are
//! listed concurrently; a namespace the credential may not read (403) is skipped with a
//! warning as long as another namespace could be read, so a namespaced Role works.

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use kube::{Client, Error as KubeError};

use crate::dcgm::{ExporterService, exporter_of};
use crate::refresh::error_chain;
use crate::targets::{Exporter, from_endpoints, from_slices};

/// Where endpoints are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndpointApi {
    /// `discovery.k8s.io/v1` EndpointSlices.
    SlicesV1,
    /// core/v1 Endpoints (API servers before 1.21).
    CoreEndpoints,
}

impl EndpointApi {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EndpointApi::SlicesV1 => "discovery.k8s.io/v1 EndpointSlices",
            EndpointApi::CoreEndpoints => "core/v1 Endpoints",
        }
    }
}

/// A successful refresh.
#[derive(Debug)]
pub(crate) struct Listing {
    pub(crate) exporters: Vec<Exporter>,
    pub(crate) api: EndpointApi,
    /// Namespaces that could not be read (403), when others could.
    pub(crate) warning: Option<String>,
}

/// A failed refresh.
#[derive(Debug)]
pub(crate) struct ListError {
    pub(crate) message: String,
    /// The cached endpoint API answered 404: detect it again next time.
    pub(crate) reset_api: bool,
    /// The API server refused the credential (401/403) everywhere.
    pub(crate) forbidden: bool,
}

fn api_text(e: &KubeError) -> String {
    match e {
        KubeError::Api(s) => {
            let mut t = format!("the API server answered {}", s.code);
            if !s.reason.is_empty() {
                t.push_str(&format!(" {}", s.reason));
            }
            if !s.message.is_empty() {
                let m: String = s.message.chars().take(400).collect();
                t.push_str(&format!(": {m}"));
            }
            t
        }
        other => error_chain(other),
    }
}

fn status_code(e: &KubeError) -> Option<u16> {
    match e {
        KubeError::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Detects the endpoint API from API discovery.
pub(crate) async fn detect_api(client: &Client) -> Result<EndpointApi, ListError> {
    let req = http::Request::get("/apis/discovery.k8s.io")
        .body(Vec::new())
        .expect("static request");
    match client.request::<serde_json::Value>(req).await {
        Ok(group) => {
            let has_v1 = group["versions"]
                .as_array()
                .is_some_and(|vs| vs.iter().any(|v| v["version"] == "v1"));
            Ok(if has_v1 {
                EndpointApi::SlicesV1
            } else {
                EndpointApi::CoreEndpoints
            })
        }
        Err(e) if status_code(&e) == Some(404) => Ok(EndpointApi::CoreEndpoints),
        Err(e) => Err(ListError {
            forbidden: matches!(status_code(&e), Some(401 | 403)),
            message: format!(
                "API discovery (GET /apis/discovery.k8s.io): {}",
                api_text(&e)
            ),
            reset_api: false,
        }),
    }
}

enum NsOutcome {
    Ok(Vec<Exporter>),
    Forbidden(String),
    Failed(ListError),
}

async fn namespace(client: &Client, ns: &str, api: EndpointApi) -> NsOutcome {
    let fail = |what: &str, e: KubeError| {
        let code = status_code(&e);
        let message = format!("listing {what} in namespace {ns}: {}", api_text(&e));
        match code {
            Some(401 | 403) => NsOutcome::Forbidden(message),
            _ => NsOutcome::Failed(ListError {
                message,
                reset_api: code == Some(404) && what != "services",
                forbidden: false,
            }),
        }
    };
    let services = match Api::<Service>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
    {
        Ok(l) => l.items,
        Err(e) => return fail("services", e),
    };
    let wanted: Vec<ExporterService> = services.iter().filter_map(exporter_of).collect();
    if wanted.is_empty() {
        return NsOutcome::Ok(Vec::new());
    }
    let mut out = Vec::new();
    match api {
        EndpointApi::SlicesV1 => {
            let mut names: Vec<&str> = wanted.iter().map(|s| s.name.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            let selector = format!("kubernetes.io/service-name in ({})", names.join(","));
            let slices = match Api::<EndpointSlice>::namespaced(client.clone(), ns)
                .list(&ListParams::default().labels(&selector))
                .await
            {
                Ok(l) => l.items,
                Err(e) => return fail("endpointslices", e),
            };
            for svc in &wanted {
                out.extend(from_slices(svc, &slices));
            }
        }
        EndpointApi::CoreEndpoints => {
            let api = Api::<Endpoints>::namespaced(client.clone(), ns);
            for svc in &wanted {
                match api.get_opt(&svc.name).await {
                    Ok(Some(eps)) => out.extend(from_endpoints(svc, &eps)),
                    Ok(None) => {}
                    Err(e) => return fail("endpoints", e),
                }
            }
        }
    }
    NsOutcome::Ok(out)
}

/// Lists the exporters of every namespace, with `api` (detected when `None`).
pub(crate) async fn list(
    client: &Client,
    namespaces: &[String],
    api: Option<EndpointApi>,
) -> Result<Listing, ListError> {
    let api = match api {
        Some(a) => a,
        None => detect_api(client).await?,
    };
    let outcomes = join_all(namespaces.iter().map(|ns| namespace(client, ns, api))).await;
    let mut exporters = Vec::new();
    let mut forbidden = Vec::new();
    let mut read = 0usize;
    for (ns, o) in namespaces.iter().zip(outcomes) {
        match o {
            NsOutcome::Ok(e) => {
                read += 1;
                exporters.extend(e);
            }
            NsOutcome::Forbidden(m) => forbidden.push((ns.as_str(), m)),
            NsOutcome::Failed(e) => return Err(e),
        }
    }
    if read == 0 {
        let (_, first) = forbidden
            .into_iter()
            .next()
            .expect("at least one namespace");
        return Err(ListError {
            message: format!("{first} (no namespace could be read)"),
            reset_api: false,
            forbidden: true,
        });
    }
    exporters.sort();
    exporters.dedup();
    let warning = (!forbidden.is_empty()).then(|| {
        format!(
            "not allowed to read namespace(s) {}: {}",
            forbidden
                .iter()
                .map(|(ns, _)| *ns)
                .collect::<Vec<_>>()
                .join(", "),
            forbidden[0].1
        )
    });
    Ok(Listing {
        exporters,
        api,
        warning,
    })
}
