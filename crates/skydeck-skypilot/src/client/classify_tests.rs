//! How the client classifies what a server answers, against responses captured from a real
//! SkyPilot 0.14.1 server (`tests/fixtures/skypilot/`) replayed by a one-connection loopback
//! server: which errors are definite rejections (no request was created, so a launch claim may
//! be released) and which are unknown outcomes, and which failures mean "no such cluster".

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::api::{DownBody, LaunchBody};
use crate::error::CLUSTER_DOES_NOT_EXIST;
use crate::target::{Inputs, resolve};

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../../tests/fixtures/skypilot/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn client(url: &str) -> Client {
    let target = resolve(&Inputs {
        endpoint: Some(url),
        credential: None,
        env: &|_| None,
        home: None,
    })
    .unwrap();
    Client::new(
        target,
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(30),
            ..ClientOptions::default()
        },
    )
    .unwrap()
}

/// What the one-connection server does with the request it reads.
enum Reply {
    /// Answers with this status line, extra headers and body.
    Http(String, Vec<String>, String),
    /// Reads the request, then closes the connection without a word.
    Hang,
}

/// A captured response file (`HTTP/1.1 …`, headers, blank line, body) as a [`Reply`]; its
/// `content-length` is recomputed from the body.
fn captured(name: &str) -> Reply {
    // The captures keep the server's CRLF line ends.
    let text = fixture(name).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").expect("headers, blank line, body");
    let mut lines = head.lines();
    let status = lines.next().unwrap().trim().to_string();
    let headers = lines
        .filter(|l| !l.to_ascii_lowercase().starts_with("content-length"))
        .map(str::to_string)
        .collect();
    Reply::Http(status, headers, body.trim_end().to_string())
}

/// Serves one connection on 127.0.0.1 and returns its URL.
async fn serve_once(reply: Reply) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        // Read the request head and its body, so the client has sent everything.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = sock.read(&mut chunk).await.unwrap();
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break;
                }
            }
        }
        match reply {
            Reply::Hang => drop(sock),
            Reply::Http(status, headers, body) => {
                let mut out = format!("{status}\r\n");
                for h in headers {
                    out.push_str(&h);
                    out.push_str("\r\n");
                }
                out.push_str(&format!(
                    "content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                ));
                sock.write_all(out.as_bytes()).await.unwrap();
                let _ = sock.shutdown().await;
            }
        }
    });
    url
}

fn launch_body() -> LaunchBody<'static> {
    LaunchBody {
        task: "name: t\n",
        cluster_name: "skydeck-a",
        retry_until_up: false,
        dryrun: false,
    }
}

#[tokio::test]
async fn a_refused_connection_is_a_definite_rejection() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = client(&format!("http://127.0.0.1:{port}"))
        .submit_launch(&launch_body())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unreachable {
                kind: UnreachableKind::Connect,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_definite_rejection(), "{err}");
    assert!(!err.is_cluster_missing());
}

#[tokio::test]
async fn a_connection_closed_after_the_request_is_an_unknown_outcome() {
    let url = serve_once(Reply::Hang).await;
    let err = client(&url)
        .submit_launch(&launch_body())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unreachable {
                kind: UnreachableKind::Broken,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_definite_rejection(), "{err}");
}

#[tokio::test]
async fn a_submit_answered_without_a_request_id_is_an_unknown_outcome() {
    let url = serve_once(Reply::Http("HTTP/1.1 200 OK".into(), vec![], "null".into())).await;
    let err = client(&url)
        .submit_launch(&launch_body())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoRequestId { .. }), "{err:?}");
    assert!(!err.is_definite_rejection());
}

#[tokio::test]
async fn refusals_captured_from_a_real_server_are_definite() {
    // 401 from a server with service accounts disabled.
    let url = serve_once(captured("auth_401_service_accounts_disabled.txt")).await;
    let err = client(&url)
        .submit_launch(&launch_body())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert!(err.is_definite_rejection());
    // 400 version_mismatch.
    let url = serve_once(captured("error_400_version_mismatch.txt")).await;
    let err = client(&url)
        .submit_down(&DownBody {
            cluster_name: "skydeck-a",
            purge: false,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::VersionMismatch { .. }), "{err:?}");
    assert!(err.is_definite_rejection());
    // 404 of a request id the server does not know.
    let url = serve_once(captured("error_404_unknown_request.txt")).await;
    let err = client(&url)
        .down_result("does-not-exist")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Status { status, .. } if status == StatusCode::NOT_FOUND),
        "{err:?}"
    );
    assert!(err.is_definite_rejection());
    // A gateway's 504 may have passed the request on.
    let url = serve_once(Reply::Http(
        "HTTP/1.1 504 Gateway Timeout".into(),
        vec![],
        "upstream timed out".into(),
    ))
    .await;
    let err = client(&url)
        .submit_launch(&launch_body())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Status { .. }), "{err:?}");
    assert!(!err.is_definite_rejection());
}

#[tokio::test]
async fn a_failed_request_carries_skypilots_exception() {
    // `/api/get` of a failed request answers 500 with `{"detail": RequestPayload}`.
    let body = fixture("error_endpoints.json");
    let url = serve_once(Reply::Http(
        "HTTP/1.1 500 Internal Server Error".into(),
        vec!["content-type: application/json".into()],
        body,
    ))
    .await;
    let err = client(&url)
        .down_result("c01b6497-eeac-4cd9-ad18-701babdcf763")
        .await
        .unwrap_err();
    match &err {
        Error::RequestFailed {
            error_type,
            message,
            ..
        } => {
            assert_eq!(error_type, "ClusterNotUpError");
            assert!(message.contains("not found"), "{message}");
        }
        other => panic!("unexpected: {other:?}"),
    }
    // "Not up" is not "does not exist": the reconciler must not read it as already gone.
    assert!(!err.is_cluster_missing());
    assert!(!err.is_definite_rejection());
}

#[tokio::test]
async fn a_cancelled_request_is_told_apart() {
    let url = serve_once(Reply::Http(
        "HTTP/1.1 200 OK".into(),
        vec![],
        r#"{"request_id": "r1", "name": "sky.launch", "status": "CANCELLED", "return_value": "null", "error": "null"}"#.into(),
    ))
    .await;
    let err = client(&url).launch_result("r1").await.unwrap_err();
    assert!(err.is_cancelled(), "{err:?}");
    assert!(!err.is_cluster_missing());
}

#[test]
fn missing_clusters_are_recognised_by_skypilots_exception() {
    let failed = |error_type: &str, message: &str| Error::RequestFailed {
        path: "/down",
        request_id: "r".into(),
        error_type: error_type.into(),
        message: message.into(),
    };
    // `sky/core.py` `down`: `ClusterDoesNotExist(f'Cluster {cluster_name!r} does not exist.')`.
    assert!(
        failed(
            CLUSTER_DOES_NOT_EXIST,
            "Cluster 'skydeck-a' does not exist."
        )
        .is_cluster_missing()
    );
    // Older servers raised the ValueError it still subclasses.
    assert!(failed("ValueError", "Cluster 'skydeck-a' does not exist.").is_cluster_missing());
    // Other failures that happen to say "does not exist" are not a missing cluster.
    assert!(!failed("ValueError", "Storage 'b' does not exist.").is_cluster_missing());
    assert!(!failed("RuntimeError", "Path does not exist").is_cluster_missing());
    assert!(!failed("ClusterNotUpError", "Cluster 'x' not found.").is_cluster_missing());
}
