//! serve's HTTP routes: `/metrics` (fleet and health, text format or OpenMetrics), `/healthz`
//! (alive), `/readyz` (every source fresh), and discovery's `/api/service-discovery` and
//! `/proxy/…`; optional bearer-token auth on every route but the probes (`/healthz`,
//! `/readyz`, which a kubelet calls without a token and which carry no fleet data).
//!
//! The token is compared as a SHA-256 digest in constant time, so neither its length nor its
//! prefix leaks through timing; TLS is left to the ingress.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use skydeck_core::exposition::{self, Format};
use skydeck_discovery::Discovery;
use subtle::ConstantTimeEq;

use crate::Snapshot;

/// The bearer token serve requires.
pub struct Auth {
    digest: [u8; 32],
}

impl Auth {
    /// Requires `token`.
    pub fn new(token: SecretString) -> Self {
        Auth {
            digest: Sha256::digest(token.expose_secret().trim().as_bytes()).into(),
        }
    }

    fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
        else {
            return false;
        };
        let d: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
        bool::from(d.ct_eq(&self.digest))
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct State {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Discovery, when enabled.
    pub discovery: Option<Discovery>,
    /// The required token, when set.
    pub auth: Option<Arc<Auth>>,
}

/// A JSON error `{"error": {"code", "message"}}`.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message.into()}});
    (status, Json(body)).into_response()
}

/// The router.
pub fn router(state: State) -> Router {
    let mut protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/idle", get(idle))
        .with_state(state.clone());
    let discovery_on = state.discovery.is_some();
    if let Some(d) = &state.discovery {
        protected = protected.merge(d.router());
    }
    // The fallback sits behind the token too: without it, nothing about the routes leaks.
    protected = protected.fallback(move |req: Request| async move {
        let hint = if discovery_on {
            ""
        } else {
            " (discovery is off: no kubeconfig, or --no-discovery)"
        };
        error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no route {} {}; serve has GET /metrics, /healthz, /readyz, \
                 /api/service-discovery and /proxy/…{hint}",
                req.method(),
                req.uri().path()
            ),
        )
    });
    if let Some(auth) = state.auth.clone() {
        protected = protected.layer(middleware::from_fn(move |req: Request, next: Next| {
            let auth = Arc::clone(&auth);
            async move {
                if auth.allows(req.headers()) {
                    next.run(req).await
                } else {
                    let mut r = error(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "this route needs `Authorization: Bearer <token>` with serve's \
                         auth token (auth_token_file)",
                    );
                    r.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer realm=\"skydeck\""),
                    );
                    r
                }
            }
        }));
    }
    // The probes stay open: a kubelet cannot send a token, and they show no fleet data.
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
        .merge(protected)
}

async fn metrics(
    axum::extract::State(s): axum::extract::State<State>,
    headers: HeaderMap,
) -> Response {
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let at = jiff::Timestamp::now();
    let fleet = s.snapshot.fleet_exposition(format);
    let mut health = s.snapshot.health_samples(at);
    if let Some(d) = &s.discovery {
        health.extend(d.samples(at));
    }
    let health = exposition::render_families(&health, &[], format);
    let mut body = String::with_capacity(fleet.len() + health.len() + 8);
    body.push_str(&fleet);
    body.push_str(&health);
    if format == Format::OpenMetrics {
        body.push_str("# EOF\n");
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        )],
        body,
    )
        .into_response()
}

async fn idle(axum::extract::State(s): axum::extract::State<State>) -> Response {
    match s.snapshot.idle() {
        Some(v) => Json((*v).clone()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "no_gpu_data",
            "no idle decisions yet: GPU utilization needs [gpu] prometheus_url (or \
             --prometheus-url), and a first read",
        ),
    }
}

async fn readyz(axum::extract::State(s): axum::extract::State<State>) -> Response {
    let waiting = s.snapshot.not_ready(tokio::time::Instant::now());
    if waiting.is_empty() {
        (StatusCode::OK, Json(serde_json::json!({"ready": true}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"ready": false, "waiting": waiting})),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RunResult;
    use axum::body::Body;
    use skydeck_core::{Sample, catalog as c};
    use std::time::Duration;
    use tower::ServiceExt;

    fn state(token: Option<&str>) -> State {
        let snapshot = Snapshot::default();
        snapshot.register("skypilot", Duration::from_secs(30));
        State {
            snapshot,
            discovery: None,
            auth: token.map(|t| Arc::new(Auth::new(SecretString::from(t.to_string())))),
        }
    }

    async fn get(
        r: &Router,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let mut req = Request::builder().uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = r
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 24).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn metrics_formats_and_readiness() {
        let st = state(None);
        let r = router(st.clone());
        let (code, _, body) = get(&r, "/readyz", &[]).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("no successful run yet"), "{body}");
        st.snapshot.record(
            "skypilot",
            Duration::from_millis(3),
            RunResult::Ok(vec![Sample::of(
                &c::CLUSTERS_ACTIVE,
                4.0,
                jiff::Timestamp::now(),
            )]),
        );
        let (code, _, _) = get(&r, "/readyz", &[]).await;
        assert_eq!(code, StatusCode::OK);
        let (code, h, body) = get(&r, "/metrics", &[]).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(
            h[header::CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert!(body.contains("skypilot_clusters_active 4\n"));
        assert!(
            body.contains("skydeck_collector_up{collector=\"skypilot\"} 1\n"),
            "{body}"
        );
        let (_, h, body) = get(
            &r,
            "/metrics",
            &[(
                "accept",
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
            )],
        )
        .await;
        assert!(
            h[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text")
        );
        assert!(body.ends_with("# EOF\n") && body.matches("# EOF").count() == 1);
    }

    #[tokio::test]
    async fn every_route_but_the_probes_needs_the_token() {
        let r = router(state(Some("s3cret-token")));
        assert_eq!(get(&r, "/healthz", &[]).await.0, StatusCode::OK);
        assert_eq!(
            get(&r, "/readyz", &[]).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        for path in ["/metrics", "/nope"] {
            let (code, h, body) = get(&r, path, &[]).await;
            assert_eq!(code, StatusCode::UNAUTHORIZED, "{path}");
            assert!(h.contains_key(header::WWW_AUTHENTICATE));
            assert!(!body.contains("s3cret"));
            let (code, ..) = get(&r, path, &[("authorization", "Bearer wrong")]).await;
            assert_eq!(code, StatusCode::UNAUTHORIZED);
            let (code, ..) = get(&r, path, &[("authorization", "Bearer s3cret-token")]).await;
            assert_ne!(code, StatusCode::UNAUTHORIZED, "{path}");
        }
        let (code, _, body) = get(&r, "/nope", &[("authorization", "Bearer s3cret-token")]).await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert!(body.contains("\"error\""), "{body}");
    }
}
