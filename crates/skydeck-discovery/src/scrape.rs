//! The exporters discovery currently lists ([`Discovery::exporters`]) and a scrape of one of
//! them through its context's API server pod proxy ([`Discovery::scrape`]): how serve reads
//! DCGM pages itself when there is no Prometheus.
//!
//! A scrape is the same exchange as a `/proxy/` request (`proxy::open`): the same upstream
//! path and credentials, one deadline over the whole exchange, the size limit enforced up front
//! from `Content-Length` and while reading, messages that name the context and pod with static
//! credentials scrubbed, and the same `PROXY_REQUESTS{context,result}` counters, so the load
//! skydeck puts on an API server shows in one place whoever asked. Only the caller's limits
//! differ from the route's (`proxy_timeout`, `proxy_max_bytes`).
//!
//! As with the route, only what discovery lists *now* is fetched: an [`ExporterRef`] whose pod
//! has gone since the list was taken is refused ([`ScrapeErrorKind::NotListed`]) without a
//! request. The context's [`TargetMode`] is not consulted: it says how Prometheus reaches the
//! exporters, while serve always goes through the API server.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;
use bytes::Bytes;
use futures::StreamExt;

use crate::Discovery;
use crate::options::TargetMode;
use crate::proxy::{self, Cut, Limits};
use crate::state::{ProxyResult, Shared};

/// What a scrape asks the exporter for: the text format (dcgm-exporter's only one), which the
/// caller's parser reads.
const ACCEPT: &str = "text/plain;version=0.0.4;q=1,*/*;q=0.1";

/// One exporter endpoint discovery currently lists, with the pod the API server proxies to.
///
/// Endpoints without a pod name (an Endpoints address without `targetRef`) are not listed:
/// the pod proxy needs the pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExporterRef {
    /// The Kubernetes context (what HTTP SD labels `cluster`).
    pub context: String,
    /// The context's target mode (informational: a scrape works in every mode).
    pub mode: TargetMode,
    /// The exporter's namespace.
    pub namespace: String,
    /// The exporter's Service.
    pub service: String,
    /// The exporter's pod.
    pub pod: String,
    /// The node the pod runs on, when the endpoints say.
    pub node: Option<String>,
    /// The pod port.
    pub port: u16,
    /// The metrics path (`/metrics`).
    pub path: String,
    /// `http` or `https` (between the API server and the pod).
    pub scheme: String,
    /// True when the context's refreshes fail and this is from its last good list.
    pub stale: bool,
}

impl fmt::Display for ExporterRef {
    /// `context/namespace/pod:port/path`, for logs and errors.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}:{}{}",
            self.context, self.namespace, self.pod, self.port, self.path
        )
    }
}

/// Why a scrape failed, in the terms of the proxy counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScrapeErrorKind {
    /// Discovery does not list this exporter (any more), or does not watch the context.
    /// Counted as `not_found` when the context exists.
    NotListed,
    /// The context's Kubernetes client could not be built (bad kubeconfig entry).
    Unavailable,
    /// The timeout passed before the whole answer arrived (`timeout`).
    Timeout,
    /// The answer exceeds the byte limit (`too_large`).
    TooLarge,
    /// The API server refused the credential (401/403, `forbidden`).
    Forbidden,
    /// The API server could not be reached, answered another error status (e.g. 503 when the
    /// pod does not answer), or the body broke (`upstream_error`).
    Upstream,
}

impl ScrapeErrorKind {
    /// `not_listed`, `unavailable`, `timeout`, `too_large`, `forbidden` or `upstream_error`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScrapeErrorKind::NotListed => "not_listed",
            ScrapeErrorKind::Unavailable => "unavailable",
            ScrapeErrorKind::Timeout => "timeout",
            ScrapeErrorKind::TooLarge => "too_large",
            ScrapeErrorKind::Forbidden => "forbidden",
            ScrapeErrorKind::Upstream => "upstream_error",
        }
    }

    fn of(r: ProxyResult) -> ScrapeErrorKind {
        match r {
            ProxyResult::Timeout => ScrapeErrorKind::Timeout,
            ProxyResult::TooLarge => ScrapeErrorKind::TooLarge,
            ProxyResult::Forbidden => ScrapeErrorKind::Forbidden,
            ProxyResult::NotFound => ScrapeErrorKind::NotListed,
            ProxyResult::Ok | ProxyResult::UpstreamError => ScrapeErrorKind::Upstream,
        }
    }
}

/// A failed [`Discovery::scrape`]. The message names the context, namespace, pod and port and
/// never carries a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ScrapeError {
    /// What went wrong.
    pub kind: ScrapeErrorKind,
    /// The context of the exporter.
    pub context: String,
    /// Its namespace.
    pub namespace: String,
    /// Its pod.
    pub pod: String,
    /// The whole message, for logs.
    pub message: String,
}

impl Discovery {
    /// Every exporter endpoint with a pod that discovery currently lists, context by context in
    /// the order of the [`crate::ContextSet`], each context's list sorted. A context that never
    /// answered lists nothing; one whose refreshes fail lists its last good exporters with
    /// [`ExporterRef::stale`] set.
    pub fn exporters(&self) -> Vec<ExporterRef> {
        let mut out = Vec::new();
        for c in &self.shared.contexts {
            if c.client.is_none() {
                continue;
            }
            let (list, stale) = {
                let inner = c.inner.lock().unwrap_or_else(|e| e.into_inner());
                if !inner.ever_ok {
                    continue;
                }
                (Arc::clone(&inner.exporters), inner.stale())
            };
            out.extend(list.iter().filter_map(|e| {
                Some(ExporterRef {
                    context: c.name.clone(),
                    mode: c.mode,
                    namespace: e.namespace.clone(),
                    service: e.service.clone(),
                    pod: e.pod.clone()?,
                    node: e.node.clone(),
                    port: e.port,
                    path: e.path.clone(),
                    scheme: e.scheme.to_string(),
                    stale,
                })
            }));
        }
        out
    }

    /// Fetches `target`'s page through its context's API server
    /// (`/api/v1/namespaces/{ns}/pods/[https:]{pod}:{port}/proxy{path}`) within `timeout`
    /// (request to last byte) and `max_bytes`, counted in the context's proxy counters.
    ///
    /// The future owns what it needs (`'static`), so it can be spawned.
    ///
    /// # Errors
    ///
    /// A [`ScrapeError`] naming the context and pod: the exporter is not listed now, the
    /// context is unavailable, the timeout passed, the answer is too large, or the API server
    /// refused or failed.
    pub fn scrape(
        &self,
        target: &ExporterRef,
        timeout: Duration,
        max_bytes: u64,
    ) -> impl Future<Output = Result<Bytes, ScrapeError>> + Send + 'static {
        let shared = Arc::clone(&self.shared);
        let target = target.clone();
        async move { scrape(&shared, &target, timeout, max_bytes).await }
    }
}

async fn scrape(
    shared: &Shared,
    t: &ExporterRef,
    timeout: Duration,
    max_bytes: u64,
) -> Result<Bytes, ScrapeError> {
    let fail = |kind: ScrapeErrorKind, message: String| ScrapeError {
        kind,
        context: t.context.clone(),
        namespace: t.namespace.clone(),
        pod: t.pod.clone(),
        message,
    };
    let Some(ctx) = shared.context(&t.context).cloned() else {
        return Err(fail(
            ScrapeErrorKind::NotListed,
            format!("context {} is not a context discovery watches", t.context),
        ));
    };
    let Some(client) = ctx.client.clone() else {
        return Err(fail(
            ScrapeErrorKind::Unavailable,
            ctx.unavailable
                .clone()
                .unwrap_or_else(|| format!("context {} is unavailable", ctx.name)),
        ));
    };
    let listed = {
        let inner = ctx.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .exporters
            .iter()
            .find(|e| {
                e.pod.as_deref() == Some(t.pod.as_str())
                    && e.namespace == t.namespace
                    && e.port == t.port
                    && e.path == t.path
                    && e.scheme == t.scheme
            })
            .cloned()
    };
    let Some(exporter) = listed else {
        ctx.count(ProxyResult::NotFound);
        return Err(fail(
            ScrapeErrorKind::NotListed,
            format!(
                "context {} lists no DCGM exporter at pod {}/{} port {} path {} (any more)",
                ctx.name, t.namespace, t.pod, t.port, t.path
            ),
        ));
    };
    let what = format!(
        "context {} ({}): pod {}/{} port {}",
        ctx.name,
        ctx.server.as_deref().unwrap_or("?"),
        t.namespace,
        t.pod,
        t.port
    );
    let limits = Limits {
        timeout,
        max_bytes,
        timeout_name: "the scrape timeout",
        max_name: "the scrape size limit",
    };
    let accept = HeaderValue::from_static(ACCEPT);
    let upstream = proxy::open(ctx, client, &exporter, Some(accept), &limits)
        .await
        .map_err(|r| fail(ScrapeErrorKind::of(r.result), r.message))?;
    // The stream enforces the deadline and the limit and counts the outcome; this only joins
    // the chunks (one chunk, the usual case for a small page, is returned without a copy).
    let mut stream = std::pin::pin!(upstream.into_stream());
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(data) => match first.take() {
                None if joined.is_empty() => first = Some(data),
                None => joined.extend_from_slice(&data),
                Some(f) => {
                    joined.reserve(f.len() + data.len());
                    joined.extend_from_slice(&f);
                    joined.extend_from_slice(&data);
                }
            },
            Err(e) => {
                let (kind, why) = match e.get_ref().and_then(|c| c.downcast_ref::<Cut>()) {
                    Some(cut) => (ScrapeErrorKind::of(cut.result), cut.message.clone()),
                    None => (ScrapeErrorKind::Upstream, e.to_string()),
                };
                return Err(fail(kind, format!("{what}: {why}")));
            }
        }
    }
    Ok(match first {
        Some(f) => f,
        None => Bytes::from(joined),
    })
}
