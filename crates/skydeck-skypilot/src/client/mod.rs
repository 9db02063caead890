//! The request protocol: version headers, submit + `/api/get`, bounded everywhere.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::RequestStatus;
use crate::api::{
    AUTOSTOP_PATH, AutostopBody, ClusterJob, ClusterQueueQuery, CostRecord, CostReportQuery,
    DOWN_PATH, DownBody, Health, JobsQueue, JobsQueueQuery, LAUNCH_PATH, LaunchBody, LaunchResult,
    RequestError, RequestPayload, RequestSummary, STOP_PATH, StatusQuery, StopBody,
};
use crate::error::{Error, Result, UnreachableKind};
use crate::target::Target;

/// Limits of every call.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Deadline of one whole call: submit, wait in `/api/get`, read and decode.
    pub call_timeout: Duration,
    /// Largest response body accepted. 5,000 jobs with all fields are ~10 MB; the default
    /// leaves room for fleets ten times larger without letting a broken server exhaust memory.
    pub max_response_bytes: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(120),
            max_response_bytes: 64 << 20,
        }
    }
}

/// A client of one SkyPilot API server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    target: Target,
    opts: ClientOptions,
}

/// Bytes of a body shown in an error.
const ERROR_BODY_CHARS: usize = 400;

impl Client {
    /// Builds a client for `target`.
    pub fn new(target: Target, opts: ClientOptions) -> Result<Self> {
        // reqwest is built without a default TLS provider so only ring is compiled in; install
        // it here (idempotent) so the client works whoever calls it, not only skydeck's main.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut headers = HeaderMap::new();
        headers.insert(
            "X-SkyPilot-API-Version",
            HeaderValue::from_str(&crate::API_VERSION.to_string()).expect("digits"),
        );
        headers.insert(
            "X-SkyPilot-Version",
            HeaderValue::from_static(crate::SKYPILOT_VERSION),
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.call_timeout)
            .user_agent(concat!("skydeck/", env!("CARGO_PKG_VERSION")))
            // A redirect would resend the Authorization header to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Config {
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Client { http, target, opts })
    }

    /// The target this client talks to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    fn endpoint(&self) -> String {
        self.target.endpoint.to_string()
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, self.target.endpoint.join(path));
        match (&self.target.credential, &self.target.endpoint.basic_auth) {
            // A service-account token wins over URL basic auth: only one Authorization header
            // can be sent, and the token is the headless identity SkyPilot recommends.
            (Some(c), _) => req.bearer_auth(c.token.expose_secret()),
            (None, Some((user, pass))) => req.basic_auth(user, Some(pass.expose_secret())),
            (None, None) => req,
        }
    }

    /// Runs `fut` under the call deadline.
    async fn bounded<T>(
        &self,
        path: &'static str,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.opts.call_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                endpoint: self.endpoint(),
                path,
                after: self.opts.call_timeout,
            }),
        }
    }

    /// `GET /api/health`, checking that the server speaks a compatible API version and accepts
    /// the credential (an authenticated call, so a bad token shows up here too).
    pub async fn health(&self) -> Result<Health> {
        const PATH: &str = "/api/health";
        self.bounded(PATH, async {
            let resp = self.send(self.request(Method::GET, PATH), PATH).await?;
            let resp = self.check_status(resp, PATH).await?;
            let body = self.read_body(resp, PATH).await?;
            let health: Health = decode(&body, PATH)?;
            match health.status.as_str() {
                "needs_auth" => {
                    return Err(Error::Unauthorized {
                        endpoint: self.endpoint(),
                        path: PATH,
                        status: StatusCode::UNAUTHORIZED,
                        credential: self.target.credential_source(),
                        message: "the server requires authentication (status needs_auth)".into(),
                    });
                }
                "version_mismatch" => {
                    return Err(Error::VersionMismatch {
                        endpoint: self.endpoint(),
                        message: format!(
                            "the server reports version_mismatch (server API {}, client API {})",
                            health.api_version.as_deref().unwrap_or("unknown"),
                            crate::API_VERSION
                        ),
                    });
                }
                _ => {}
            }
            if let Some(v) = health.api_version()
                && v < crate::MIN_SERVER_API_VERSION
            {
                return Err(Error::VersionMismatch {
                    endpoint: self.endpoint(),
                    message: format!(
                        "server API version {v} (SkyPilot {}) is older than the oldest supported, {}",
                        health.version.as_deref().unwrap_or("unknown"),
                        crate::MIN_SERVER_API_VERSION
                    ),
                });
            }
            Ok(health)
        })
        .await
    }

    /// `POST /status` (all users, no credentials, no handle).
    pub async fn status(&self, query: &StatusQuery) -> Result<Vec<crate::api::ClusterRecord>> {
        self.call("/status", query).await
    }

    /// `POST /jobs/queue/v2`. "No in-progress managed jobs" (no jobs controller) is an empty
    /// queue, as SkyPilot's CLI shows it, not an error.
    pub async fn jobs_queue(&self, query: &JobsQueueQuery) -> Result<JobsQueue> {
        match self.call("/jobs/queue/v2", query).await {
            Err(Error::RequestFailed {
                error_type,
                message,
                ..
            }) if error_type == "ClusterNotUpError"
                && message.contains("No in-progress managed jobs") =>
            {
                Ok(JobsQueue::default())
            }
            other => other,
        }
    }

    /// `POST /cost_report`.
    pub async fn cost_report(&self, query: &CostReportQuery) -> Result<Vec<CostRecord>> {
        self.call("/cost_report", query).await
    }

    /// `POST /queue`: one cluster's job queue.
    pub async fn cluster_queue(&self, query: &ClusterQueueQuery) -> Result<Vec<ClusterJob>> {
        self.call("/queue", query).await
    }

    /// Submits `POST /launch` and returns the request id at once (the launch takes minutes;
    /// follow it with [`Client::request_status`]).
    pub async fn submit_launch(&self, body: &LaunchBody<'_>) -> Result<String> {
        self.bounded(LAUNCH_PATH, self.submit(LAUNCH_PATH, body))
            .await
    }

    /// Submits `POST /down` and returns the request id.
    pub async fn submit_down(&self, body: &DownBody<'_>) -> Result<String> {
        self.bounded(DOWN_PATH, self.submit(DOWN_PATH, body)).await
    }

    /// Submits `POST /stop` and returns the request id (request `sky.stop`; follow it with
    /// [`Client::request_status`], its outcome with [`Client::stop_result`]).
    pub async fn submit_stop(&self, body: &StopBody<'_>) -> Result<String> {
        self.bounded(STOP_PATH, self.submit(STOP_PATH, body)).await
    }

    /// Submits `POST /autostop` and returns the request id (request `sky.autostop`; its outcome
    /// with [`Client::autostop_result`]).
    pub async fn submit_autostop(&self, body: &AutostopBody<'_>) -> Result<String> {
        self.bounded(AUTOSTOP_PATH, self.submit(AUTOSTOP_PATH, body))
            .await
    }

    /// The row of one request in the server's request table, without waiting for it
    /// (`GET /api/status`). `None` when the server does not know the id.
    pub async fn request_status(&self, request_id: &str) -> Result<Option<RequestSummary>> {
        let rows = self
            .request_table(&[("request_ids", request_id), ("all_status", "true")])
            .await?;
        Ok(rows.into_iter().find(|r| r.request_id == request_id))
    }

    /// Every request (finished or not) the server holds for `cluster_name`.
    pub async fn requests_for_cluster(&self, cluster_name: &str) -> Result<Vec<RequestSummary>> {
        let rows = self
            .request_table(&[("cluster_name", cluster_name), ("all_status", "true")])
            .await?;
        Ok(rows
            .into_iter()
            .filter(|r| r.cluster_name.as_deref() == Some(cluster_name))
            .collect())
    }

    async fn request_table(&self, query: &[(&str, &str)]) -> Result<Vec<RequestSummary>> {
        const PATH: &str = "/api/status";
        self.bounded(PATH, async {
            let resp = self
                .send(self.request(Method::GET, PATH).query(query), PATH)
                .await?;
            let resp = self.check_status(resp, PATH).await?;
            let body = self.read_body(resp, PATH).await?;
            decode(&body, PATH)
        })
        .await
    }

    /// The outcome of a finished launch: its result, or the request's failure
    /// ([`Error::RequestFailed`] with SkyPilot's exception type and message).
    pub async fn launch_result(&self, request_id: &str) -> Result<LaunchResult> {
        self.finished(LAUNCH_PATH, request_id).await
    }

    /// The outcome of a finished `/down` (`null` on success).
    pub async fn down_result(&self, request_id: &str) -> Result<()> {
        let _: serde_json::Value = self.finished(DOWN_PATH, request_id).await?;
        Ok(())
    }

    /// The outcome of a finished `/stop` (`null` on success).
    pub async fn stop_result(&self, request_id: &str) -> Result<()> {
        let _: serde_json::Value = self.finished(STOP_PATH, request_id).await?;
        Ok(())
    }

    /// The outcome of a finished `/autostop` (`null` on success).
    pub async fn autostop_result(&self, request_id: &str) -> Result<()> {
        let _: serde_json::Value = self.finished(AUTOSTOP_PATH, request_id).await?;
        Ok(())
    }

    /// `/api/get` of a request already known to be finished (so the long poll returns at once),
    /// under the call deadline.
    pub async fn finished<T: DeserializeOwned>(
        &self,
        path: &'static str,
        request_id: &str,
    ) -> Result<T> {
        self.bounded(path, async {
            let body = self.get(path, request_id).await?;
            decode_return_value(&body, path)
        })
        .await
    }

    /// Submits an asynchronous request and waits for its result, all within the call deadline.
    pub async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &'static str,
        body: &B,
    ) -> Result<T> {
        self.bounded(path, async {
            let id = self.submit(path, body).await?;
            tracing::debug!(path, request_id = %id, "submitted");
            let body = self.get(path, &id).await?;
            decode_return_value(&body, path)
        })
        .await
    }

    async fn submit<B: Serialize + ?Sized>(&self, path: &'static str, body: &B) -> Result<String> {
        let resp = self
            .send(self.request(Method::POST, path).json(body), path)
            .await?;
        let resp = self.check_status(resp, path).await?;
        let id = resp
            .headers()
            .get("x-skypilot-request-id")
            .or_else(|| resp.headers().get("x-request-id"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or(Error::NoRequestId { path })?;
        // Drain the (tiny, `null`) body so the connection can be reused.
        let _ = self.read_body(resp, path).await?;
        Ok(id)
    }

    /// Waits for the request's result and returns the body of a successful `/api/get`.
    async fn get(&self, path: &'static str, id: &str) -> Result<Vec<u8>> {
        let resp = self
            .send(
                self.request(Method::GET, "/api/get")
                    .query(&[("request_id", id)]),
                path,
            )
            .await?;
        let status = resp.status();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            let body = self.read_body(resp, path).await?;
            #[derive(serde::Deserialize)]
            struct Detail<'a> {
                #[serde(borrow)]
                detail: RequestPayload<'a>,
            }
            return match serde_json::from_slice::<Detail<'_>>(&body) {
                Ok(d) => Err(request_failed(path, d.detail)),
                Err(_) => Err(Error::Status {
                    path,
                    status,
                    body: snippet(&body),
                }),
            };
        }
        let resp = self.check_status(resp, path).await?;
        self.read_body(resp, path).await
    }

    async fn send(&self, req: reqwest::RequestBuilder, path: &'static str) -> Result<Response> {
        req.send().await.map_err(|e| self.transport(e, path))
    }

    fn transport(&self, e: reqwest::Error, path: &'static str) -> Error {
        if e.is_timeout() {
            return Error::Timeout {
                endpoint: self.endpoint(),
                path,
                after: self.opts.call_timeout,
            };
        }
        // A connect error (refused, DNS, TLS handshake) means no request left this client;
        // anything later may have reached the server.
        let kind = if e.is_connect() {
            UnreachableKind::Connect
        } else {
            UnreachableKind::Broken
        };
        // reqwest's Display includes the URL; ours has no user info, but print the chain of
        // causes without it to keep messages short.
        let mut reason = String::new();
        let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
        while let Some(s) = src {
            if !reason.is_empty() {
                reason.push_str(": ");
            }
            reason.push_str(&s.to_string());
            src = s.source();
        }
        if reason.is_empty() {
            reason = e.without_url().to_string();
        }
        Error::Unreachable {
            endpoint: self.endpoint(),
            path,
            reason,
            kind,
        }
    }

    /// Maps non-success statuses to errors; passes 2xx through.
    async fn check_status(&self, resp: Response, path: &'static str) -> Result<Response> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = self.read_body(resp, path).await.unwrap_or_default();
        let message = server_message(&body);
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::Unauthorized {
                endpoint: self.endpoint(),
                path,
                status,
                credential: self.target.credential_source(),
                message,
            },
            StatusCode::BAD_REQUEST if is_version_mismatch(&body) => Error::VersionMismatch {
                endpoint: self.endpoint(),
                message,
            },
            _ => Error::Status {
                path,
                status,
                body: message,
            },
        })
    }

    /// Reads a body, refusing more than `max_response_bytes`.
    async fn read_body(&self, mut resp: Response, path: &'static str) -> Result<Vec<u8>> {
        let limit = self.opts.max_response_bytes;
        let announced = resp.content_length().unwrap_or(0);
        if announced > limit as u64 {
            return Err(Error::TooLarge { path, limit });
        }
        // Sized once from Content-Length: growing by doubling would hold up to twice the body.
        let mut body = Vec::with_capacity(announced as usize);
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport(e, path))? {
            if body.len() + chunk.len() > limit {
                return Err(Error::TooLarge { path, limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The result of a successful `/api/get` body: checks the request's status, then parses
/// `return_value` (JSON text inside a JSON string) straight from the escaped bytes.
fn decode_return_value<T: DeserializeOwned>(body: &[u8], path: &'static str) -> Result<T> {
    let payload: RequestPayload<'_> = decode(body, path)?;
    match payload.status {
        RequestStatus::Succeeded => {}
        RequestStatus::Cancelled => {
            return Err(Error::Cancelled {
                path,
                request_id: payload.request_id,
            });
        }
        _ => return Err(request_failed(path, payload)),
    }
    let raw = payload.return_value.map_or("null", |r| r.get());
    match raw.as_bytes() {
        [b'"', inner @ .., b'"'] => {
            let reader =
                std::io::BufReader::with_capacity(64 << 10, crate::unescape::Unescape::new(inner));
            let de = &mut serde_json::Deserializer::from_reader(reader);
            serde_path_to_error::deserialize(de).map_err(|e| Error::Decode {
                path,
                field: e.path().to_string(),
                message: e.into_inner().to_string(),
            })
        }
        // Not a string: the server sent the value itself.
        other => decode(other, path),
    }
}

fn request_failed(path: &'static str, payload: RequestPayload<'_>) -> Error {
    let err: Option<RequestError> = payload
        .error
        .as_deref()
        .and_then(|e| serde_json::from_str(e).ok());
    let (error_type, message) = match err {
        Some(e) => (
            e.error_type.unwrap_or_else(|| "unknown error".into()),
            e.message.unwrap_or_default(),
        ),
        None => (
            format!("status {}", payload.status),
            "the server gave no error details".into(),
        ),
    };
    Error::RequestFailed {
        path,
        request_id: payload.request_id,
        error_type,
        message: strip_ansi(&message),
    }
}

fn decode<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8], path: &'static str) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        Error::Decode {
            path,
            field,
            message: e.into_inner().to_string(),
        }
    })
}

fn is_version_mismatch(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("error")
                .and_then(|e| e.as_str())
                .map(|e| e == "version_mismatch")
        })
        .unwrap_or(false)
}

/// The human part of an error body: `detail` or `message` of a JSON body, a bare JSON string,
/// or the start of the text.
fn server_message(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Object(o)) => o
            .get("message")
            .or_else(|| o.get("detail"))
            .map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| serde_json::Value::Object(o.clone()).to_string()),
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    let text = strip_ansi(&text);
    truncate(text.trim())
}

fn snippet(body: &[u8]) -> String {
    truncate(String::from_utf8_lossy(body).trim())
}

fn truncate(s: &str) -> String {
    if s.chars().count() <= ERROR_BODY_CHARS {
        return s.to_string();
    }
    let cut: String = s.chars().take(ERROR_BODY_CHARS).collect();
    format!("{cut}…")
}

/// Removes ANSI escape sequences (the server colours its version-mismatch message).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod classify_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::CredentialSource;

    #[test]
    fn messages_from_bodies() {
        assert_eq!(
            server_message(br#"{"detail":"Service account authentication disabled"}"#),
            "Service account authentication disabled"
        );
        assert_eq!(
            server_message(br#""Authentication required""#),
            "Authentication required"
        );
        assert_eq!(
            // The server escapes the ANSI colour codes of its message, as JSON requires.
            server_message(
                br#"{"error":"version_mismatch","message":"\u001b[31mtoo old\u001b[0m"}"#
            ),
            "too old"
        );
        assert!(is_version_mismatch(
            br#"{"error":"version_mismatch","message":"x"}"#
        ));
        assert!(truncate(&"x".repeat(1000)).chars().count() <= ERROR_BODY_CHARS + 1);
    }

    #[test]
    fn decode_errors_name_the_field() {
        let err = decode::<Vec<crate::api::ClusterRecord>>(
            br#"[{"name":"a","status":"UP","nodes":1},{"name":"b","status":"UP","nodes":"two"}]"#,
            "/status",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("[1].nodes"), "{text}");
        assert!(text.contains("/status"), "{text}");
    }

    #[test]
    fn unknown_credential_source_is_named() {
        assert_eq!(CredentialSource::None.to_string(), "no credential");
    }
}
