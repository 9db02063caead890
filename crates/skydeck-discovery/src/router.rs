//! The HTTP routes discovery serves: `GET /api/service-discovery` (the HTTP SD body, always
//! `200` with `application/json`, `[]` when there are no targets, as Prometheus requires) and
//! `GET /proxy/...` (the scrape proxy, see [`crate::proxy`]).
//!
//! The router holds its own state so the binary can merge it with its other routes and wrap
//! it in its auth layer.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::proxy;
use crate::state::Shared;

/// Where the HTTP SD body is served (SkyPilot's path for the same endpoint).
pub const SD_PATH: &str = "/api/service-discovery";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(SD_PATH, get(service_discovery))
        .route("/proxy", get(proxy_usage))
        .route("/proxy/", get(proxy_usage))
        .route("/proxy/{*rest}", get(proxy_route))
        .with_state(shared)
}

async fn service_discovery(State(shared): State<Arc<Shared>>) -> Response {
    let mut r = shared.body().into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn proxy_usage() -> Response {
    proxy::error(
        StatusCode::NOT_FOUND,
        "not_found",
        "expected /proxy/{cluster}/{namespace}/{pod}/{port}/{path} of a target listed by \
         /api/service-discovery",
    )
}

async fn proxy_route(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    proxy::handle(shared, uri, headers).await
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use crate::{ContextSet, Discovery, DiscoveryOptions};

    async fn call(d: &Discovery, uri: &str) -> (StatusCode, String, serde_json::Value) {
        let resp = d
            .router()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, ct, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn no_targets_is_200_empty_array_and_proxy_is_closed() {
        let set = ContextSet::load(&[], &[]).unwrap();
        let d = Discovery::start(set, DiscoveryOptions::default()).unwrap();
        let (s, ct, v) = call(&d, "/api/service-discovery").await;
        assert_eq!(
            (s, ct.as_str(), v),
            (StatusCode::OK, "application/json", serde_json::json!([]))
        );
        for uri in [
            "/proxy",
            "/proxy/",
            "/proxy/a/b/c/9400/metrics",
            "/proxy/a/b",
        ] {
            let (s, ct, v) = call(&d, uri).await;
            assert_eq!(
                (s, ct.as_str()),
                (StatusCode::NOT_FOUND, "application/json"),
                "{uri}"
            );
            assert_eq!(v["error"]["code"], "not_found", "{uri}");
        }
        let (s, _, v) = call(&d, "/proxy/a/b/c/9400/../x").await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_path"))
        );
        d.shutdown();
    }

    #[test]
    fn start_needs_a_runtime() {
        let set = ContextSet::load(&[], &[]).unwrap();
        let e = Discovery::start(set, DiscoveryOptions::default()).unwrap_err();
        assert!(matches!(e, crate::Error::NoRuntime));
    }
}
