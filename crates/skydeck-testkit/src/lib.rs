//! Test peers for skydeck's own tests (a dev-dependency only).
//!
//! [`FakeSkypilot`] speaks the SkyPilot API server's wire protocol on 127.0.0.1 with the
//! responses captured from a real server (`tests/fixtures/skypilot/`), and can misbehave in
//! the ways a real deployment does: refuse connections, accept and never answer, answer a byte
//! a second, reject the credential, fail a request, send malformed JSON or 100 MB, or speak an
//! incompatible API version. No offline real server can do these on demand; everything else is
//! tested against the real server.

pub mod datadog;
pub mod fleet;
mod http;
pub mod kube;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::http::read_request;

/// How the fake server behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// Serves the captured fleet.
    Healthy,
    /// Nothing listens on the port.
    Refuse,
    /// Accepts connections and never answers.
    Hang,
    /// Answers every request, one byte a second.
    Drip,
    /// Rejects every request but `/api/health` with 401, as a server with service accounts.
    Unauthorized,
    /// `/api/get` answers 500 with a SkyPilot error payload.
    RequestFails,
    /// `/api/get` answers 200 with malformed JSON.
    Malformed,
    /// `/api/get` answers 200 with a 100 MB body.
    Huge,
    /// Every request is refused as from an incompatible client (400 version_mismatch).
    VersionMismatch,
    /// `/api/health` reports an API version older than any supported.
    OldServer,
    /// Serves the fleet, but `/jobs/queue/v2` never finishes (`/api/get` blocks forever).
    SlowJobsQueue,
}

pub use http::Recorded;

/// A fake SkyPilot API server on 127.0.0.1, stopped when dropped.
pub struct FakeSkypilot {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    _runtime: Option<tokio::runtime::Runtime>,
}

/// The directory of captured responses.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/skypilot")
}

pub(crate) fn fixture(name: &str) -> String {
    let path = fixtures_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

impl FakeSkypilot {
    /// Starts a server with `behavior` on a free port.
    pub fn start(behavior: Behavior) -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = std_listener.local_addr().expect("local addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        if behavior == Behavior::Refuse {
            // Closing the listener leaves a port that refuses connections.
            drop(std_listener);
            return FakeSkypilot {
                addr,
                requests,
                _runtime: None,
            };
        }
        std_listener.set_nonblocking(true).expect("nonblocking");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let recs = Arc::clone(&requests);
        runtime.spawn(async move {
            let listener = TcpListener::from_std(std_listener).expect("listener");
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let recs = Arc::clone(&recs);
                tokio::spawn(async move {
                    let _ = serve(sock, behavior, recs).await;
                });
            }
        });
        FakeSkypilot {
            addr,
            requests,
            _runtime: Some(runtime),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeSkypilot {
    fn drop(&mut self) {
        if let Some(rt) = self._runtime.take() {
            rt.shutdown_background();
        }
    }
}

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn json(status: u16, body: impl Into<Vec<u8>>) -> Reply {
    Reply {
        status,
        headers: vec![("content-type", "application/json".into())],
        body: body.into(),
    }
}

/// The request id the fake hands out for each operation (the path, so `/api/get` knows what
/// to return).
fn request_id_for(path: &str) -> Option<&'static str> {
    match path {
        "/status" => Some("00000000-0000-4000-8000-000000000001"),
        "/jobs/queue/v2" => Some("00000000-0000-4000-8000-000000000002"),
        "/cost_report" => Some("00000000-0000-4000-8000-000000000003"),
        "/queue" => Some("00000000-0000-4000-8000-000000000004"),
        _ => None,
    }
}

fn payload_for(id: &str) -> Option<String> {
    match id {
        "00000000-0000-4000-8000-000000000001" => Some(fixture("status.json")),
        "00000000-0000-4000-8000-000000000002" => Some(fixture("jobs_queue_v2.json")),
        "00000000-0000-4000-8000-000000000003" => Some(fixture("cost_report_7d.json")),
        "00000000-0000-4000-8000-000000000004" => {
            // The real failure of /queue on a seeded cluster (already a `{"detail": …}` body).
            Some(fixture("error_queue_fake_cluster.json"))
        }
        _ => None,
    }
}

async fn serve(
    mut sock: TcpStream,
    behavior: Behavior,
    recs: Arc<Mutex<Vec<Recorded>>>,
) -> std::io::Result<()> {
    loop {
        let Some(req) = read_request(&mut sock).await? else {
            return Ok(());
        };
        recs.lock().unwrap().push(req.clone());
        if behavior == Behavior::Hang {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Ok(());
        }
        let reply = route(&req, behavior).await;
        let mut out = format!(
            "HTTP/1.1 {} X\r\ncontent-length: {}\r\n",
            reply.status,
            reply.body.len()
        );
        for (k, v) in &reply.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&reply.body);
        if behavior == Behavior::Drip {
            for b in bytes {
                sock.write_all(&[b]).await?;
                sock.flush().await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        } else {
            sock.write_all(&bytes).await?;
        }
    }
}

/// A failed request's `/api/get` body is `{"detail": RequestPayload}`.
fn is_failure(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body).is_ok_and(|v| v.get("detail").is_some())
}

async fn route(req: &Recorded, behavior: Behavior) -> Reply {
    let path = req.path.split('?').next().unwrap_or_default();
    let api_headers = |mut r: Reply| {
        r.headers.push(("x-skypilot-api-version", "62".into()));
        r.headers.push(("x-skypilot-version", "0.14.1".into()));
        r
    };
    if behavior == Behavior::VersionMismatch {
        return json(
            400,
            "{\"error\":\"version_mismatch\",\"message\":\"\\u001b[33mThe SkyPilot API server \
             (API version 99) requires a newer client (API version >= 70).\\u001b[0m\"}",
        );
    }
    if path == "/api/health" {
        let mut health: serde_json::Value =
            serde_json::from_str(&fixture("api_health.json")).expect("health fixture");
        if behavior == Behavior::OldServer {
            health["api_version"] = "12".into();
            health["version"] = "0.8.0".into();
        }
        return api_headers(json(200, health.to_string()));
    }
    if behavior == Behavior::Unauthorized {
        return json(
            401,
            "{\"detail\":\"Invalid or expired service account token\"}",
        );
    }
    if req.method == "POST" {
        return match request_id_for(path) {
            Some(id) => {
                let mut r = api_headers(json(200, "null"));
                r.headers.push(("x-skypilot-request-id", id.into()));
                r
            }
            None => json(404, "{\"detail\":\"Not Found\"}"),
        };
    }
    if path == "/api/get" {
        let id = req
            .path
            .split_once("request_id=")
            .map(|(_, id)| id.split('&').next().unwrap_or_default())
            .unwrap_or_default();
        if behavior == Behavior::SlowJobsQueue && id.ends_with("0002") {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        return match behavior {
            Behavior::RequestFails => json(
                500,
                fixture("error_jobs_queue_v2_no_controller.500.json")
                    .replace("ClusterNotUpError", "RuntimeError")
                    .replace(
                        "No in-progress managed jobs.",
                        "Failed to query the jobs database",
                    ),
            ),
            Behavior::Malformed => json(
                200,
                "{\"request_id\": \"x\", \"status\": \"SUCCEEDED\", \"return_value\": \"[{\\\"name\\\": ",
            ),
            Behavior::Huge => {
                let mut body = Vec::with_capacity(100 << 20);
                body.extend_from_slice(
                    b"{\"request_id\":\"x\",\"status\":\"SUCCEEDED\",\"return_value\":\"",
                );
                body.resize(100 << 20, b'x');
                body.extend_from_slice(b"\"}");
                json(200, body)
            }
            _ => match payload_for(id) {
                Some(p) if is_failure(&p) => json(500, p),
                Some(p) => json(200, p),
                None => json(404, format!("{{\"detail\":\"Request '{id}' not found\"}}")),
            },
        };
    }
    json(404, "{\"detail\":\"Not Found\"}")
}
