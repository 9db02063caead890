//! The client against an in-process fake Prometheus (axum on 127.0.0.1:0), and, when
//! `SKYDECK_TEST_PROMETHEUS` names a `prometheus` binary, against a real one scraping a
//! DCGM-format page.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use super::*;

async fn serve(app: Router) -> Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Url::parse(&format!("http://{addr}/")).unwrap()
}

fn client(base: Url) -> PrometheusClient {
    PrometheusClient::new(base, PrometheusAuth::None, PrometheusOptions::default()).unwrap()
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

fn range() -> RangeQuery {
    RangeQuery {
        start: Timestamp::from_second(1_800_000_000 - 1800).unwrap(),
        end: Timestamp::from_second(1_800_000_000).unwrap(),
        step: Duration::from_secs(60),
    }
}

fn success(result_type: &str, result: serde_json::Value) -> axum::Json<serde_json::Value> {
    axum::Json(json!({"status": "success", "data": {"resultType": result_type, "result": result}}))
}

fn dcgm_labels(gpu: &str, pod: &str) -> serde_json::Value {
    json!({
        "__name__": "ignored", "gpu": gpu, "UUID": format!("GPU-{gpu}"), "Hostname": "node-1",
        "modelName": "NVIDIA H100 80GB HBM3", "pod": pod, "namespace": "default",
        "cluster": "ctx-a", "job": "dcgm", "instance": "10.0.0.1:9400",
    })
}

/// Each request's query parameters and `Authorization` header.
type Seen = Arc<Mutex<Vec<(HashMap<String, String>, Option<String>)>>>;

/// A fake serving both fields over 1,800,000,000 − 120 … 1,800,000,000: GPU 0 has engine
/// activity (with a NaN and a +Inf among its samples) and GPU util; GPU 1 only GPU util.
fn fake_dcgm(seen: Seen) -> Router {
    Router::new().route(
        "/api/v1/query_range",
        get(
            move |Query(q): Query<HashMap<String, String>>, headers: HeaderMap| {
                let seen = Arc::clone(&seen);
                async move {
                    let auth = headers
                        .get(header::AUTHORIZATION)
                        .map(|v| v.to_str().unwrap().to_string());
                    let query = q["query"].clone();
                    seen.lock().unwrap().push((q, auth));
                    let t = 1_800_000_000;
                    if query.starts_with("DCGM_FI_PROF_GR_ENGINE_ACTIVE") {
                        success(
                            "matrix",
                            json!([{
                                "metric": dcgm_labels("0", "train-2ea4-head"),
                                "values": [[t - 120, "0.25"], [t - 90, "NaN"], [t - 60, "0.5"],
                                           [t - 30, "+Inf"], [t, "0.75"]],
                            }]),
                        )
                    } else {
                        success(
                            "matrix",
                            json!([
                                {"metric": dcgm_labels("0", "train-2ea4-head"),
                                 "values": [[t - 60, "99"], [t, "99"]]},
                                {"metric": dcgm_labels("1", "train-2ea4-worker1"),
                                 "values": [[t - 60, "50"], [t, "-Inf"], [t + 1, "120"]]},
                            ]),
                        )
                    }
                }
            },
        ),
    )
}

#[tokio::test]
async fn fetch_reads_engine_activity_and_falls_back_to_gpu_util() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let base = serve(fake_dcgm(Arc::clone(&seen))).await;
    let c = PrometheusClient::new(
        base,
        PrometheusAuth::Bearer(SecretString::from("s3cret-token".to_string())),
        PrometheusOptions::default(),
    )
    .unwrap();
    let mut q = UtilizationQuery::new(Timestamp::from_second(1_800_000_000).unwrap());
    q.matchers = Some("job=\"dcgm\"".into());
    let got = c.fetch_utilization(&q, soon()).await.unwrap();

    assert_eq!((got.engine_active_gpus, got.gpu_util_gpus), (1, 1));
    let w = &got.windows;
    assert_eq!(w.interval(), Duration::from_secs(60));
    let (g0, s0) = w
        .iter()
        .find(|(id, _)| id.gpu.as_deref() == Some("0"))
        .unwrap();
    assert_eq!(s0.source(), UtilSource::EngineActive);
    assert_eq!(g0.pod.as_deref(), Some("train-2ea4-head"));
    assert_eq!(g0.context.as_deref(), Some("ctx-a"));
    let t = 1_800_000_000;
    assert_eq!(
        s0.samples().collect::<Vec<_>>(),
        vec![(t - 120, 0.25), (t - 60, 0.5), (t, 0.75)]
    );
    let (_, s1) = w
        .iter()
        .find(|(id, _)| id.gpu.as_deref() == Some("1"))
        .unwrap();
    assert_eq!(s1.source(), UtilSource::GpuUtil);
    assert_eq!(s1.samples().collect::<Vec<_>>(), vec![(t - 60, 0.5)]);
    // NaN, +Inf, -Inf and 120 % never became samples.
    assert_eq!(w.rejected_samples(), 4);

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    for (params, auth) in seen.iter() {
        assert_eq!(auth.as_deref(), Some("Bearer s3cret-token"));
        assert_eq!(params["step"], "60s");
        assert_eq!(params["end"], "1800000000");
        assert_eq!(params["start"], (1_800_000_000 - 1800).to_string());
        assert!(
            params["query"].ends_with("{job=\"dcgm\"}"),
            "{}",
            params["query"]
        );
    }
}

#[tokio::test]
async fn instant_query_reads_a_vector() {
    let app = Router::new().route(
        "/prom/api/v1/query",
        get(|Query(q): Query<HashMap<String, String>>| async move {
            assert_eq!(q["time"], "1800000000");
            success(
                "vector",
                json!([{"metric": {"gpu": "0"}, "value": [1_800_000_000.5, "0.5"]},
                       {"metric": {"gpu": "1"}, "value": [1_800_000_000.5, "NaN"]}]),
            )
        }),
    );
    let base = serve(app).await.join("prom").unwrap();
    let got = client(base)
        .query(
            "up",
            Some(Timestamp::from_second(1_800_000_000).unwrap()),
            soon(),
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].value, 0.5);
    assert_eq!(got[0].at, 1_800_000_000.5);
    assert!(got[1].value.is_nan());
}

#[tokio::test]
async fn http_errors_carry_prometheus_error_type() {
    let app = Router::new().route(
        "/api/v1/query_range",
        get(|| async {
            (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({
                    "status": "error", "errorType": "bad_data",
                    "error": "invalid parameter \"query\": parse error",
                })),
            )
        }),
    );
    let base = serve(app).await;
    let err = client(base.clone())
        .query_range("up{", &range(), soon())
        .await
        .unwrap_err();
    match &err {
        Error::Status {
            status, error_type, ..
        } => {
            assert_eq!(*status, 400);
            assert_eq!(error_type.as_deref(), Some("bad_data"));
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&format!("{base}api/v1/query_range")), "{msg}");
    assert!(msg.contains("bad_data: invalid parameter"), "{msg}");
    assert!(msg.contains("expected 200"), "{msg}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_non_json_error_body_is_quoted() {
    let app = Router::new().route(
        "/api/v1/query",
        get(|| async { (StatusCode::BAD_GATEWAY, "upstream down") }),
    );
    let err = client(serve(app).await)
        .query("up", None, soon())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("HTTP 502: upstream down"), "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn the_wrong_result_type_is_an_error() {
    let app = Router::new()
        .route(
            "/api/v1/query_range",
            get(|| async { success("vector", json!([])) }),
        )
        .route(
            "/api/v1/query",
            get(|| async { success("matrix", json!([])) }),
        );
    let c = client(serve(app).await);
    let err = c.query_range("up", &range(), soon()).await.unwrap_err();
    assert!(
        matches!(&err, Error::ResultType { expected: "matrix", got, .. } if got == "vector"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("expected a \"matrix\" result"),
        "{err}"
    );
    let err = c.query("up[5m]", None, soon()).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::ResultType {
                expected: "vector",
                ..
            }
        ),
        "{err:?}"
    );
    // The utilization fetch refuses it too: no metric from a vector.
    let err = c
        .fetch_utilization(&UtilizationQuery::new(Timestamp::now()), soon())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ResultType { .. }), "{err:?}");
}

#[tokio::test]
async fn malformed_json_is_an_error() {
    let app = Router::new()
        .route(
            "/api/v1/query_range",
            get(|| async { "{\"status\": \"success\", \"data\": " }),
        )
        .route(
            "/api/v1/query",
            get(|| async { success("vector", json!([{"metric": {}, "value": "not a pair"}])) }),
        );
    let base = serve(app).await;
    let c = client(base.clone());
    let err = c.query_range("up", &range(), soon()).await.unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("{base}api/v1/query_range")), "{msg}");
    assert!(msg.contains("expected the API's JSON envelope"), "{msg}");
    let err = c.query("up", None, soon()).await.unwrap_err();
    assert!(err.to_string().contains("expected a vector"), "{err}");
}

#[tokio::test]
async fn a_success_without_data_or_an_error_status_in_200() {
    let app = Router::new()
        .route(
            "/api/v1/query_range",
            get(|| async { axum::Json(json!({"status": "success"})) }),
        )
        .route(
            "/api/v1/query",
            get(|| async {
                axum::Json(json!({"status": "error", "errorType": "timeout", "error": "slow"}))
            }),
        );
    let c = client(serve(app).await);
    let err = c.query_range("up", &range(), soon()).await.unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
    let err = c.query("up", None, soon()).await.unwrap_err();
    assert!(err.to_string().contains("(timeout: slow)"), "{err}");
}

#[tokio::test]
async fn a_hanging_server_is_cut_at_the_deadline() {
    let app = Router::new().route(
        "/api/v1/query_range",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            success("matrix", json!([]))
        }),
    );
    let c = client(serve(app).await);
    let started = std::time::Instant::now();
    let deadline = Instant::now() + Duration::from_millis(300);
    let err = c
        .fetch_utilization(&UtilizationQuery::new(Timestamp::now()), deadline)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("within the deadline"), "{err}");
    assert!(err.is_retryable());
    // A deadline already past fails at once.
    let err = c
        .query_range("up", &range(), Instant::now())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let big = format!(
        "{{\"status\":\"success\",\"data\":{{\"resultType\":\"matrix\",\"result\":[{}]}}}}",
        vec!["{\"metric\":{},\"values\":[[1,\"0\"]]}"; 40_000].join(",")
    );
    assert!(big.len() > 1 << 20);
    let app = Router::new()
        .route(
            "/api/v1/query_range",
            get(move || async move { big.clone() }),
        )
        .route(
            "/api/v1/query",
            get(|| async {
                // Streamed without a Content-Length: the limit applies while reading.
                let chunks = (0..200).map(|_| Ok::<_, std::io::Error>(vec![b' '; 16 << 10]));
                axum::body::Body::from_stream(futures::stream::iter(chunks))
            }),
        );
    let opts = PrometheusOptions {
        max_response_bytes: 1 << 20,
        ..PrometheusOptions::default()
    };
    let base = serve(app).await;
    let c = PrometheusClient::new(base, PrometheusAuth::None, opts).unwrap();
    let err = c.query_range("up", &range(), soon()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                limit: 1_048_576,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("over 1048576 bytes"), "{err}");
    let err = c.query("up", None, soon()).await.unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_server_names_the_url_not_the_password() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let base = Url::parse(&format!("http://admin:hunter2@127.0.0.1:{port}/prom")).unwrap();
    let c =
        PrometheusClient::new(base, PrometheusAuth::None, PrometheusOptions::default()).unwrap();
    assert!(matches!(&c.auth, PrometheusAuth::Basic { username, .. } if username == "admin"));
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    let err = c.query("up", None, soon()).await.unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("http://127.0.0.1:{port}/prom/api/v1/query")),
        "{msg}"
    );
    assert!(!msg.contains("hunter2") && !msg.contains("admin"), "{msg}");
    assert!(!format!("{err:?}").contains("hunter2"));
}

#[test]
fn secrets_never_show_in_debug() {
    let bearer = PrometheusAuth::Bearer(SecretString::from("tok-123".to_string()));
    let basic = PrometheusAuth::Basic {
        username: "u".into(),
        password: SecretString::from("pw-456".to_string()),
    };
    assert!(!format!("{bearer:?}").contains("tok-123"));
    assert!(!format!("{basic:?}").contains("pw-456"));
    let both = PrometheusClient::new(
        Url::parse("http://u:p@localhost:9090").unwrap(),
        bearer,
        PrometheusOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(both, Error::Config { .. }));
    assert!(!both.to_string().contains(":p@"), "{both}");
}

#[test]
fn prometheus_float_text_parses() {
    assert_eq!(parse_value("0.5"), 0.5);
    assert_eq!(parse_value("1e-3"), 0.001);
    assert_eq!(parse_value("+Inf"), f64::INFINITY);
    assert_eq!(parse_value("-Inf"), f64::NEG_INFINITY);
    assert!(parse_value("NaN").is_nan());
    assert!(parse_value("banana").is_nan());
}

/// A dcgm-exporter page: GPU 0 has engine activity and GPU util, GPU 1 only GPU util.
const DCGM_PAGE: &str = "\
# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu=\"0\",UUID=\"GPU-aaaa\",device=\"nvidia0\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"node-1\",pod=\"train-2ea4-head\",namespace=\"default\",container=\"ray-node\"} 97
DCGM_FI_DEV_GPU_UTIL{gpu=\"1\",UUID=\"GPU-bbbb\",device=\"nvidia1\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"node-1\",pod=\"train-2ea4-worker1\",namespace=\"default\",container=\"ray-node\"} 73
# HELP DCGM_FI_PROF_GR_ENGINE_ACTIVE Ratio of time the graphics engine is active.
# TYPE DCGM_FI_PROF_GR_ENGINE_ACTIVE gauge
DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu=\"0\",UUID=\"GPU-aaaa\",device=\"nvidia0\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"node-1\",pod=\"train-2ea4-head\",namespace=\"default\",container=\"ray-node\"} 0.420000
";

/// Starts the real Prometheus at `$SKYDECK_TEST_PROMETHEUS` scraping [`DCGM_PAGE`] every
/// second and reads the utilization back through the client.
#[tokio::test]
async fn real_prometheus_reads_dcgm_utilization_back() {
    let Ok(bin) = std::env::var("SKYDECK_TEST_PROMETHEUS") else {
        eprintln!("SKYDECK_TEST_PROMETHEUS is not set: skipping the real-Prometheus test");
        return;
    };
    let exporter = serve(Router::new().route(
        "/metrics",
        get(|| async {
            (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                DCGM_PAGE,
            )
                .into_response()
        }),
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: dcgm\n    static_configs:\n      \
             - targets: [\"{}\"]\n        labels: {{ cluster: ctx-a }}\n",
            exporter.authority()
        ),
    )
    .unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let mut child = tokio::process::Command::new(&bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("start prometheus");
    let c = client(Url::parse(&format!("http://127.0.0.1:{port}")).unwrap());

    // A first scrape takes a few seconds after start; poll.
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    let got = loop {
        let mut q = UtilizationQuery::new(Timestamp::now());
        q.window = Duration::from_secs(60);
        q.step = Duration::from_secs(1);
        let r = c
            .fetch_utilization(&q, Instant::now() + Duration::from_secs(5))
            .await;
        match r {
            Ok(f) if f.windows.len() == 2 => break f,
            other if std::time::Instant::now() > give_up => {
                let log =
                    std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
                panic!("no utilization from Prometheus: {other:?}\n{log}");
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    let _ = child.kill().await;

    assert_eq!((got.engine_active_gpus, got.gpu_util_gpus), (1, 1));
    let find = |gpu: &str| {
        got.windows
            .iter()
            .find(|(id, _)| id.gpu.as_deref() == Some(gpu))
            .unwrap()
    };
    let (id0, s0) = find("0");
    assert_eq!(s0.source(), UtilSource::EngineActive);
    assert_eq!(s0.last().unwrap().1, 0.42);
    assert_eq!(id0.pod.as_deref(), Some("train-2ea4-head"));
    assert_eq!(id0.uuid.as_deref(), Some("GPU-aaaa"));
    assert_eq!(id0.context.as_deref(), Some("ctx-a"));
    let (id1, s1) = find("1");
    assert_eq!(s1.source(), UtilSource::GpuUtil);
    assert!((s1.last().unwrap().1 - 0.73).abs() < 1e-12);
    assert_eq!(id1.namespace.as_deref(), Some("default"));
    assert_eq!(got.windows.rejected_samples(), 0);
}
