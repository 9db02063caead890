//! A local Datadog intake (`/api/v2/series`, `/api/v1/validate`, `/api/v1/metrics/{name}`)
//! that records what it receives and answers from a script.
//!
//! No Datadog intake runs offline (fakeintake is on no registry reachable here), so this one
//! checks what the real one documents: the gzip/zstd framing, the limits (512,000 bytes
//! compressed, under 5 MiB uncompressed, 10,000 points), and the status codes a sender must
//! handle. Payload *contents* are judged separately by Datadog's own client models.

use std::collections::VecDeque;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::http::{read_request, response};

/// The API key the intake accepts.
pub const GOOD_KEY: &str = "0123456789abcdef0123456789abcdef";

/// How the intake answers one series request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// This HTTP status (202, 400, 403, 408, 413, 429, 500, …).
    Status(u16),
    /// Never answer.
    Stall,
}

/// One series request as received.
#[derive(Debug, Clone)]
pub struct SeriesRequest {
    /// `Content-Encoding`.
    pub encoding: Option<String>,
    /// `DD-API-KEY` matched [`GOOD_KEY`].
    pub key_ok: bool,
    /// Compressed size.
    pub compressed_len: usize,
    /// Decompressed size.
    pub raw_len: usize,
    /// The decompressed JSON body.
    pub body: serde_json::Value,
    /// Points in the body.
    pub points: usize,
    /// What the intake answered (None: stalled).
    pub answered: Option<u16>,
    /// Limits this request broke, if any.
    pub violations: Vec<String>,
}

#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    /// Answer 413 to any request with more points than this.
    split_above: Option<usize>,
    series: Vec<SeriesRequest>,
    metadata: Vec<(String, serde_json::Value)>,
    validations: usize,
}

/// The intake, on 127.0.0.1; stopped when dropped.
pub struct FakeDatadog {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Default for FakeDatadog {
    fn default() -> Self {
        Self::start()
    }
}

impl FakeDatadog {
    /// Starts an intake that accepts everything (202) until scripted otherwise.
    pub fn start() -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = std_listener.local_addr().expect("addr");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let state = Arc::new(Mutex::new(State::default()));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let st = Arc::clone(&state);
        runtime.spawn(async move {
            let listener = TcpListener::from_std(std_listener).expect("listener");
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    continue;
                };
                let st = Arc::clone(&st);
                tokio::spawn(async move {
                    while let Ok(Some(req)) = read_request(&mut sock).await {
                        let Some(reply) = handle(&req, &st) else {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        };
                        if sock.write_all(&reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        FakeDatadog {
            addr,
            state,
            runtime: Some(runtime),
        }
    }

    /// `http://127.0.0.1:<port>`, to use as the Datadog site.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers the next series requests with `replies`, in order, then 202 again.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    /// Answers 413 to every request with more than `points` points.
    pub fn split_above(&self, points: usize) {
        self.state.lock().unwrap().split_above = Some(points);
    }

    /// Every series request received.
    pub fn series(&self) -> Vec<SeriesRequest> {
        self.state.lock().unwrap().series.clone()
    }

    /// Points of the requests answered 202.
    pub fn accepted_points(&self) -> usize {
        self.series()
            .iter()
            .filter(|r| r.answered == Some(202))
            .map(|r| r.points)
            .sum()
    }

    /// Metadata updates received (metric name, body).
    pub fn metadata(&self) -> Vec<(String, serde_json::Value)> {
        self.state.lock().unwrap().metadata.clone()
    }

    /// Key validations received.
    pub fn validations(&self) -> usize {
        self.state.lock().unwrap().validations
    }
}

impl Drop for FakeDatadog {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn json(status: u16, body: &str) -> Vec<u8> {
    response(status, "application/json", body.as_bytes())
}

/// The response bytes, or `None` to stall.
fn handle(req: &crate::http::Recorded, st: &Mutex<State>) -> Option<Vec<u8>> {
    let key_ok = req.header("dd-api-key") == Some(GOOD_KEY);
    let path = req.path.split('?').next().unwrap_or_default();
    if req.method == "GET" && path == "/api/v1/validate" {
        st.lock().unwrap().validations += 1;
        return Some(if key_ok {
            json(200, "{\"valid\":true}")
        } else {
            json(403, "{\"errors\":[\"Forbidden\"]}")
        });
    }
    if req.method == "PUT" && path.starts_with("/api/v1/metrics/") {
        let name = path.trim_start_matches("/api/v1/metrics/").to_string();
        let body = serde_json::from_slice(&req.raw).unwrap_or_default();
        st.lock().unwrap().metadata.push((name, body));
        return Some(if key_ok && req.header("dd-application-key").is_some() {
            json(200, "{}")
        } else {
            json(403, "{\"errors\":[\"Forbidden\"]}")
        });
    }
    if !(req.method == "POST" && path == "/api/v2/series") {
        return Some(json(404, "{\"errors\":[\"Not found\"]}"));
    }

    let encoding = req.header("content-encoding").map(str::to_string);
    let mut violations = Vec::new();
    let raw = match decompress(encoding.as_deref(), &req.raw) {
        Ok(r) => r,
        Err(e) => {
            violations.push(format!("body does not decompress as {encoding:?}: {e}"));
            Vec::new()
        }
    };
    let body: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_else(|e| {
        violations.push(format!("body is not JSON: {e}"));
        serde_json::Value::Null
    });
    let points: usize = body["series"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|x| x["points"].as_array().map_or(0, Vec::len))
                .sum()
        })
        .unwrap_or(0);
    if req.raw.len() > 512_000 {
        violations.push(format!("compressed body {} > 512000 bytes", req.raw.len()));
    }
    if raw.len() >= 5_242_880 {
        violations.push(format!("uncompressed body {} >= 5 MiB", raw.len()));
    }
    if points > 10_000 {
        violations.push(format!("{points} points > 10000"));
    }
    if req.header("content-type") != Some("application/json") {
        violations.push("content-type is not application/json".into());
    }

    let mut state = st.lock().unwrap();
    let reply = if !key_ok {
        Reply::Status(403)
    } else if !violations.is_empty() {
        Reply::Status(
            if violations
                .iter()
                .any(|v| v.contains("bytes") || v.contains("points"))
            {
                413
            } else {
                400
            },
        )
    } else if state.split_above.is_some_and(|n| points > n) {
        Reply::Status(413)
    } else {
        state.script.pop_front().unwrap_or(Reply::Status(202))
    };
    let answered = match reply {
        Reply::Status(s) => Some(s),
        Reply::Stall => None,
    };
    state.series.push(SeriesRequest {
        encoding,
        key_ok,
        compressed_len: req.raw.len(),
        raw_len: raw.len(),
        body,
        points,
        answered,
        violations,
    });
    answered.map(|s| match s {
        202 => json(202, "{\"errors\":[]}"),
        400 => json(400, "{\"errors\":[\"Unable to decompress payload\"]}"),
        403 => json(403, "{\"errors\":[\"Forbidden\"]}"),
        s => json(s, "{\"errors\":[\"try again\"]}"),
    })
}

fn decompress(encoding: Option<&str>, body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    match encoding {
        Some("gzip") => {
            flate2::read::GzDecoder::new(body).read_to_end(&mut out)?;
        }
        Some("deflate") => {
            flate2::read::ZlibDecoder::new(body).read_to_end(&mut out)?;
        }
        Some("zstd1") => {
            out = zstd::stream::decode_all(body)?;
        }
        None => out = body.to_vec(),
        Some(other) => {
            return Err(std::io::Error::other(format!("unknown encoding {other}")));
        }
    }
    Ok(out)
}
