//! The scrape proxy: `GET /proxy/{cluster}/{namespace}/{pod}/{port}{path}` forwarded through
//! the context's API server (`/api/v1/namespaces/{ns}/pods/[https:]{pod}:{port}/proxy{path}`)
//! with that context's credentials, the body streamed back.
//!
//! skydeck is never an open proxy into a cluster: only a (cluster, namespace, pod, port, path)
//! tuple that discovery currently lists is served, compared after decoding; dot segments,
//! encoded slashes or backslashes, empty segments and query strings are refused before any
//! lookup. Segments are accepted percent-encoded once (curl) or twice (Prometheus re-escapes
//! the `%` of `__metrics_path__`, see `http_sd`). The answer is streamed, never buffered:
//! `proxy_max_bytes` is enforced up front from `Content-Length` (502) and while streaming (the
//! response is cut off, which Prometheus records as a failed scrape), and `proxy_timeout`
//! bounds the whole exchange. Errors are `{"error": {"code", "message"}}` and name the context,
//! never a credential. The exchange itself ([`open`]) is shared with
//! [`crate::Discovery::scrape`], serve's own scrape of the exporters, so both count alike.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use percent_encoding::percent_decode_str;
use serde_json::json;
use tokio::time::Instant;

use crate::options::TargetMode;
use crate::refresh::error_chain;
use crate::state::{ContextState, ProxyResult, Shared};
use crate::targets::Exporter;

/// A JSON error answer.
pub(crate) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let mut r = (
        status,
        axum::Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn bad(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_path", message)
}

const USAGE: &str = "expected /proxy/{cluster}/{namespace}/{pod}/{port}/{path} of a target \
                     listed by /api/service-discovery";

/// A request path taken apart, segments still raw (percent-encoded).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RawTarget<'a> {
    pub(crate) cluster: &'a str,
    pub(crate) namespace: &'a str,
    pub(crate) pod: &'a str,
    pub(crate) port: &'a str,
    pub(crate) path: Vec<&'a str>,
}

/// Splits and checks `rest` (the path after `/proxy/`); `Err` is the 400/404 answer text.
pub(crate) fn split(rest: &str) -> Result<RawTarget<'_>, (StatusCode, String)> {
    let segs: Vec<&str> = rest.split('/').collect();
    if segs.len() < 4 || segs[..4].iter().any(|s| s.is_empty()) {
        return Err((
            StatusCode::NOT_FOUND,
            format!("no such proxy path; {USAGE}"),
        ));
    }
    for (i, s) in segs.iter().enumerate() {
        let lower = s.to_ascii_lowercase();
        if s.contains('\\') || lower.contains("%5c") {
            return Err((
                StatusCode::BAD_REQUEST,
                "backslashes are not allowed in proxy paths".into(),
            ));
        }
        // The cluster may hold an encoded `/` (EKS context names do); nothing else may.
        if i > 0 && lower.contains("%2f") {
            return Err((
                StatusCode::BAD_REQUEST,
                "encoded slashes are not allowed in proxy paths".into(),
            ));
        }
        let once = decode(s).unwrap_or_default();
        let twice = decode(&once).unwrap_or_default();
        if [s.to_string(), once, twice]
            .iter()
            .any(|d| d == "." || d == "..")
        {
            return Err((
                StatusCode::BAD_REQUEST,
                "dot segments (`.`, `..`) are not allowed in proxy paths".into(),
            ));
        }
        if s.is_empty() && i >= 4 && i != segs.len() - 1 {
            return Err((
                StatusCode::BAD_REQUEST,
                "empty segments (`//`) are not allowed in proxy paths".into(),
            ));
        }
    }
    Ok(RawTarget {
        cluster: segs[0],
        namespace: segs[1],
        pod: segs[2],
        port: segs[3],
        path: segs[4..].to_vec(),
    })
}

fn decode(s: &str) -> Option<String> {
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

fn decode_twice(s: &str) -> Option<String> {
    decode(&decode(s)?)
}

/// The upstream path of `e` on its API server.
pub(crate) fn upstream_path(e: &Exporter, pod: &str) -> String {
    let scheme = if e.scheme == "https" { "https:" } else { "" };
    format!(
        "/api/v1/namespaces/{}/pods/{scheme}{pod}:{}/proxy{}",
        e.namespace, e.port, e.path
    )
}

/// Finds the listed exporter that `raw` names, decoding once, then twice.
fn lookup(ctx: &ContextState, raw: &RawTarget<'_>) -> Option<Exporter> {
    let exporters = Arc::clone(
        &ctx.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .exporters,
    );
    let port: u16 = raw.port.parse().ok()?;
    for dec in [decode as fn(&str) -> Option<String>, decode_twice] {
        let (Some(ns), Some(pod)) = (dec(raw.namespace), dec(raw.pod)) else {
            continue;
        };
        let Some(segs) = raw.path.iter().map(|s| dec(s)).collect::<Option<Vec<_>>>() else {
            continue;
        };
        if segs.iter().any(|s| s.contains('/')) {
            continue;
        }
        let path = format!("/{}", segs.join("/"));
        if let Some(e) = exporters.iter().find(|e| {
            e.namespace == ns && e.pod.as_deref() == Some(pod.as_str()) && e.port == port && {
                // `/proxy/c/ns/pod/9400` (no path) is the exporter's root.
                e.path == path
            }
        }) {
            return Some(e.clone());
        }
    }
    None
}

/// Serves one proxy request; `rest` is the raw path after `/proxy/`.
pub(crate) async fn handle(shared: Arc<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    let Some(rest) = uri.path().strip_prefix("/proxy/") else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such proxy path; {USAGE}"),
        );
    };
    if uri.query().is_some() {
        return bad("query strings are not forwarded by the proxy");
    }
    let raw = match split(rest) {
        Ok(r) => r,
        Err((status, m)) if status == StatusCode::NOT_FOUND => {
            return error(status, "not_found", m);
        }
        Err((_, m)) => return bad(m),
    };
    let ctx = [decode(raw.cluster), decode_twice(raw.cluster)]
        .into_iter()
        .flatten()
        .find_map(|name| shared.context(&name));
    let Some(ctx) = ctx.cloned() else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "cluster `{}` is not a context discovery watches",
                decode(raw.cluster).unwrap_or_else(|| raw.cluster.to_string())
            ),
        );
    };
    if ctx.mode != TargetMode::Proxy {
        ctx.count(ProxyResult::NotFound);
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "context {} uses the {} mode; its exporters are not served through the proxy",
                ctx.name, ctx.mode
            ),
        );
    }
    if raw.port.parse::<u16>().is_err() {
        ctx.count(ProxyResult::NotFound);
        return bad(format!("port `{}` is not a port number", raw.port));
    }
    let Some(target) = lookup(&ctx, &raw) else {
        ctx.count(ProxyResult::NotFound);
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "context {} lists no DCGM exporter at namespace `{}`, pod `{}`, port {}, path \
                 `/{}`; {USAGE}",
                ctx.name,
                decode(raw.namespace).unwrap_or_default(),
                decode(raw.pod).unwrap_or_default(),
                raw.port,
                raw.path.join("/")
            ),
        );
    };
    let Some(client) = ctx.client.clone() else {
        ctx.count(ProxyResult::NotFound);
        return error(StatusCode::NOT_FOUND, "not_found", "context is unavailable");
    };
    forward(&shared, ctx, client, target, &headers).await
}

async fn forward(
    shared: &Shared,
    ctx: Arc<ContextState>,
    client: kube::Client,
    target: Exporter,
    headers: &HeaderMap,
) -> Response {
    let limits = Limits {
        timeout: shared.opts.proxy_timeout,
        max_bytes: shared.opts.proxy_max_bytes,
        timeout_name: "proxy_timeout",
        max_name: "proxy_max_bytes",
    };
    // Content negotiation (Prometheus asks for OpenMetrics first) is the exporter's business.
    let accept = headers.get(header::ACCEPT).cloned();
    match open(ctx, client, &target, accept, &limits).await {
        Err(refused) => refused.response(),
        Ok(upstream) => {
            let content_type = upstream.content_type.clone();
            let mut out = Response::new(Body::from_stream(upstream.into_stream()));
            if let Some(ct) = content_type {
                out.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            out
        }
    }
}

/// Bounds of one upstream exchange, and how its messages name them (the route's options, or
/// the caller's limits for [`crate::Discovery::scrape`]).
pub(crate) struct Limits {
    /// From the request to the last byte.
    pub(crate) timeout: Duration,
    /// Largest answer.
    pub(crate) max_bytes: u64,
    pub(crate) timeout_name: &'static str,
    pub(crate) max_name: &'static str,
}

/// An exchange that failed before its body: already counted under `result`, with a message
/// that names the context and pod and never a credential.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) result: ProxyResult,
    pub(crate) message: String,
}

impl Refused {
    /// The route's JSON answer.
    fn response(self) -> Response {
        let (status, code) = match self.result {
            ProxyResult::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            ProxyResult::TooLarge => (StatusCode::BAD_GATEWAY, "too_large"),
            ProxyResult::Forbidden => (StatusCode::BAD_GATEWAY, "forbidden"),
            _ => (StatusCode::BAD_GATEWAY, "upstream_error"),
        };
        error(status, code, self.message)
    }
}

/// Why a streamed answer was cut off: the error its body stream ends with, downcastable from
/// the `io::Error` so callers can tell a timeout from an oversized answer.
#[derive(Debug)]
pub(crate) struct Cut {
    pub(crate) result: ProxyResult,
    pub(crate) message: String,
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Cut {}

/// An upstream answer with a success status whose body is still to be read.
pub(crate) struct Upstream {
    pub(crate) content_type: Option<HeaderValue>,
    body: Streaming,
}

impl Upstream {
    /// The body as a stream of chunks, bounded by the exchange's deadline and size limit; the
    /// outcome is counted when it ends (ok) or is cut off (with a [`Cut`] error).
    pub(crate) fn into_stream(self) -> impl futures::Stream<Item = Chunk> + Send {
        futures::stream::unfold(self.body, next_chunk)
    }
}

/// Sends `GET` for `target` through the context's API server pod proxy. Failures before the
/// body (transport, deadline, non-2xx, a `Content-Length` over the limit) are counted and
/// returned; the body's outcome is counted by the stream.
pub(crate) async fn open(
    ctx: Arc<ContextState>,
    client: kube::Client,
    target: &Exporter,
    accept: Option<HeaderValue>,
    limits: &Limits,
) -> Result<Upstream, Refused> {
    let pod = target.pod.clone().unwrap_or_default();
    let deadline = Instant::now() + limits.timeout;
    let max = limits.max_bytes;
    let what = format!(
        "context {} ({}): pod {}/{} port {}",
        ctx.name,
        ctx.server.as_deref().unwrap_or("?"),
        target.namespace,
        pod,
        target.port
    );
    let refuse = |result: ProxyResult, message: String| {
        ctx.count(result);
        Refused { result, message }
    };
    let mut req = http::Request::get(upstream_path(target, &pod));
    if let Some(accept) = accept {
        req = req.header(header::ACCEPT, accept);
    }
    let req = match req.body(kube::client::Body::empty()) {
        Ok(r) => r,
        Err(e) => return Err(refuse(ProxyResult::UpstreamError, format!("{what}: {e}"))),
    };
    let resp = match tokio::time::timeout_at(deadline, client.send(req)).await {
        Err(_) => {
            return Err(refuse(
                ProxyResult::Timeout,
                format!(
                    "{what}: the API server did not answer within {:?} ({})",
                    limits.timeout, limits.timeout_name
                ),
            ));
        }
        Ok(Err(e)) => {
            let m = ctx.scrub(format!(
                "{what}: the API server cannot be reached: {}",
                error_chain(&e)
            ));
            tracing::debug!(context = %ctx.name, error = %m, "Proxied scrape failed.");
            return Err(refuse(ProxyResult::UpstreamError, m));
        }
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    if !status.is_success() {
        let forbidden = matches!(status.as_u16(), 401 | 403);
        let detail = small_text(resp.into_body(), deadline).await;
        let m = ctx.scrub(format!(
            "{what}: the API server answered {status}{}",
            detail.map(|d| format!(": {d}")).unwrap_or_default()
        ));
        tracing::debug!(context = %ctx.name, error = %m, "Proxied scrape failed.");
        let result = if forbidden {
            ProxyResult::Forbidden
        } else {
            ProxyResult::UpstreamError
        };
        return Err(refuse(result, m));
    }
    let length = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|l| l > max) {
        return Err(refuse(
            ProxyResult::TooLarge,
            format!(
                "{what}: the answer is {} bytes, more than {} ({max})",
                length.unwrap_or_default(),
                limits.max_name
            ),
        ));
    }
    let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
    Ok(Upstream {
        content_type,
        body: Streaming {
            body: resp.into_body(),
            seen: 0,
            max,
            deadline,
            ctx,
            done: false,
            timeout_name: limits.timeout_name,
            max_name: limits.max_name,
        },
    })
}

/// A bounded, credential-free excerpt of an error body (the API server's Status message).
async fn small_text(body: kube::client::Body, deadline: Instant) -> Option<String> {
    let limited = http_body_util::Limited::new(body, 8 << 10);
    let bytes = tokio::time::timeout_at(deadline, limited.collect())
        .await
        .ok()?
        .ok()?
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    let msg = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.trim().to_string());
    let msg: String = msg.chars().take(300).collect();
    (!msg.is_empty()).then_some(msg)
}

struct Streaming {
    body: kube::client::Body,
    seen: u64,
    max: u64,
    deadline: Instant,
    ctx: Arc<ContextState>,
    done: bool,
    timeout_name: &'static str,
    max_name: &'static str,
}

pub(crate) type Chunk = Result<bytes::Bytes, std::io::Error>;

async fn next_chunk(mut st: Streaming) -> Option<(Chunk, Streaming)> {
    if st.done {
        return None;
    }
    loop {
        let failure = match tokio::time::timeout_at(st.deadline, st.body.frame()).await {
            Err(_) => (
                ProxyResult::Timeout,
                format!("{} passed while streaming", st.timeout_name),
            ),
            Ok(None) => {
                st.ctx.count(ProxyResult::Ok);
                st.done = true;
                return None;
            }
            Ok(Some(Err(e))) => (
                ProxyResult::UpstreamError,
                st.ctx
                    .scrub(format!("the upstream body broke: {}", error_chain(&e))),
            ),
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    st.seen += data.len() as u64;
                    if st.seen <= st.max {
                        return Some((Ok(data), st));
                    }
                    (
                        ProxyResult::TooLarge,
                        format!("the answer exceeded {} ({})", st.max_name, st.max),
                    )
                }
                // Trailers carry nothing a scrape needs.
                Err(_) => continue,
            },
        };
        let (result, message) = failure;
        st.ctx.count(result);
        st.done = true;
        tracing::debug!(context = %st.ctx.name, error = %message, "Proxied scrape cut off.");
        return Some((Err(std::io::Error::other(Cut { result, message })), st));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_accepts_targets_and_refuses_tricks() {
        let t = split("ctx/gpu-operator/dcgm-x/9400/metrics").unwrap();
        assert_eq!(
            (t.cluster, t.namespace, t.pod, t.port, t.path.clone()),
            ("ctx", "gpu-operator", "dcgm-x", "9400", vec!["metrics"])
        );
        let t = split("arn:aws:eks:r:1:cluster%2Fgpu/ns/p/9400").unwrap();
        assert_eq!(t.cluster, "arn:aws:eks:r:1:cluster%2Fgpu");
        assert!(t.path.is_empty());
        for (bad, status) in [
            ("ctx/ns/p", StatusCode::NOT_FOUND),
            ("ctx//p/9400/metrics", StatusCode::NOT_FOUND),
            ("ctx/ns/p/9400/../../secrets", StatusCode::BAD_REQUEST),
            ("ctx/ns/p/9400/%2e%2e/x", StatusCode::BAD_REQUEST),
            ("ctx/ns/p/9400/%252e%252e/x", StatusCode::BAD_REQUEST),
            ("ctx/ns/p/9400/a%2Fb", StatusCode::BAD_REQUEST),
            (
                "ctx/ns%2f..%2fkube-system/p/9400/metrics",
                StatusCode::BAD_REQUEST,
            ),
            ("ctx/ns/p/9400/a\\b", StatusCode::BAD_REQUEST),
            ("ctx/ns/p/9400/a//b", StatusCode::BAD_REQUEST),
            ("ctx/ns/./9400/metrics", StatusCode::BAD_REQUEST),
        ] {
            assert_eq!(split(bad).unwrap_err().0, status, "{bad}");
        }
    }

    #[test]
    fn upstream_paths() {
        let mut e = crate::targets::tests::gpu_operator_svc();
        e.path = "/metrics".into();
        let x = crate::targets::Exporter {
            namespace: "gpu-operator".into(),
            service: e.name.clone(),
            pod: Some("p".into()),
            ip: "10.0.0.1".into(),
            port: 9400,
            node: None,
            service_port: 9400,
            scheme: "http",
            path: "/metrics".into(),
        };
        assert_eq!(
            upstream_path(&x, "p"),
            "/api/v1/namespaces/gpu-operator/pods/p:9400/proxy/metrics"
        );
        let x = crate::targets::Exporter {
            scheme: "https",
            ..x
        };
        assert_eq!(
            upstream_path(&x, "p"),
            "/api/v1/namespaces/gpu-operator/pods/https:p:9400/proxy/metrics"
        );
    }
}
