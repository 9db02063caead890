//! A small client of the Prometheus HTTP API (`GET /api/v1/query` and `/api/v1/query_range`,
//! <https://prometheus.io/docs/prometheus/latest/querying/api/>), and the DCGM utilization fetch
//! built on it.
//!
//! Every call runs under a deadline the caller passes in (the collector's), covering connect,
//! headers and body; the body is read up to [`PrometheusOptions::max_response_bytes`]. Errors
//! ([`Error`]) name the URL without credentials and what was expected; credentials
//! ([`PrometheusAuth`]) are `SecretString`s, so `Debug` never shows them.
//!
//! [`PrometheusClient::fetch_utilization`] asks for `DCGM_FI_PROF_GR_ENGINE_ACTIVE` (ratio 0–1,
//! the truer signal) and `DCGM_FI_DEV_GPU_UTIL` (percent) over the window and fills
//! [`GpuWindows`]: a GPU that has engine activity never uses its GPU-util series. Values
//! Prometheus reports as `NaN`, `±Inf` or outside the range are refused by the windows and
//! counted ([`GpuWindows::rejected_samples`]).
//!
//! Range queries evaluate at step-aligned instants with Prometheus' lookback (5 min by
//! default); a target that fails or disappears gets staleness markers at once, so its series
//! ends there and the data turns stale, as it should.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::time::Instant;
use url::Url;

use crate::window::{GpuId, GpuWindows, UtilSource, WindowLimits};

/// Characters of an error body kept in [`Error::Status`].
const ERROR_BODY_CHARS: usize = 400;

/// How the client authenticates.
#[derive(Clone, Default)]
pub enum PrometheusAuth {
    /// No `Authorization` header.
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(SecretString),
    /// HTTP basic auth.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: SecretString,
    },
}

impl fmt::Debug for PrometheusAuth {
    /// Names the scheme only (the user name too for basic auth); never a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrometheusAuth::None => f.write_str("None"),
            PrometheusAuth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            PrometheusAuth::Basic { username, .. } => {
                write!(
                    f,
                    "Basic {{ username: {username:?}, password: <redacted> }}"
                )
            }
        }
    }
}

/// Transport settings of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrometheusOptions {
    /// Time to establish the TCP/TLS connection.
    pub connect_timeout: Duration,
    /// Largest response body read (decompressed); a larger one is an error.
    pub max_response_bytes: usize,
}

impl Default for PrometheusOptions {
    /// 5 s to connect; 32 MiB per response (30 min at 60 s steps is about 1 KiB per GPU
    /// series, so this fits some 10,000 GPUs × 2 fields).
    fn default() -> Self {
        PrometheusOptions {
            connect_timeout: Duration::from_secs(5),
            max_response_bytes: 32 << 20,
        }
    }
}

/// Errors of the Prometheus client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client cannot be built (bad base URL, conflicting credentials, TLS setup).
    #[error("invalid Prometheus client setup: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },
    /// The server could not be reached or the connection broke.
    // The cause is the source, not in the message: callers print the chain (`{:#}`).
    #[error("cannot reach Prometheus at {url}; expected an answer from its HTTP API")]
    Unreachable {
        /// The URL, without credentials or query.
        url: String,
        /// The transport error (its own URL removed).
        #[source]
        source: reqwest::Error,
    },
    /// The caller's deadline passed before the whole response arrived.
    #[error(
        "Prometheus at {url} did not answer within the deadline ({} ms); expected a complete \
         response in time",
        after.as_millis()
    )]
    Timeout {
        /// The URL, without credentials or query.
        url: String,
        /// Time the request had.
        after: Duration,
    },
    /// A non-success HTTP status, with Prometheus' own error when it sent one.
    #[error(
        "Prometheus at {url} returned HTTP {status}{}; expected 200 with status \"success\"",
        describe_api_error(error_type.as_deref(), error.as_deref(), body)
    )]
    Status {
        /// The URL, without credentials or query.
        url: String,
        /// HTTP status code.
        status: u16,
        /// Prometheus' `errorType` (`bad_data`, `timeout`, `execution`, …).
        error_type: Option<String>,
        /// Prometheus' `error` message.
        error: Option<String>,
        /// The start of the body when it was not Prometheus' error JSON.
        body: String,
    },
    /// HTTP 200 but `"status": "error"` in the body.
    #[error(
        "Prometheus at {url} answered status {status:?}{}; expected status \"success\"",
        describe_api_error(error_type.as_deref(), error.as_deref(), "")
    )]
    Api {
        /// The URL, without credentials or query.
        url: String,
        /// The `status` field.
        status: String,
        /// Prometheus' `errorType`.
        error_type: Option<String>,
        /// Prometheus' `error` message.
        error: Option<String>,
    },
    /// The result is not of the type the endpoint was asked for.
    #[error("Prometheus at {url} returned a {got:?} result; expected a {expected:?} result")]
    ResultType {
        /// The URL, without credentials or query.
        url: String,
        /// `matrix` for range queries, `vector` for instant queries.
        expected: &'static str,
        /// What came back.
        got: String,
    },
    /// The body is not the JSON the API documents.
    #[error("Prometheus at {url} returned malformed JSON; expected {expected}")]
    Malformed {
        /// The URL, without credentials or query.
        url: String,
        /// What was expected, in words.
        expected: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The body exceeds the size limit.
    #[error(
        "Prometheus at {url} sent a response over {limit} bytes; expected at most that \
         (narrow the query's matchers or raise the limit)"
    )]
    TooLarge {
        /// The URL, without credentials or query.
        url: String,
        /// The limit.
        limit: usize,
    },
}

impl Error {
    /// True for errors worth retrying later (transport, deadline, 429, 5xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::Timeout { .. } => true,
            Error::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

fn describe_api_error(error_type: Option<&str>, error: Option<&str>, body: &str) -> String {
    match (error_type, error) {
        (Some(t), Some(e)) => format!(" ({t}: {e})"),
        (None, Some(e)) => format!(" ({e})"),
        (Some(t), None) => format!(" ({t})"),
        (None, None) if !body.trim().is_empty() => format!(": {}", body.trim()),
        (None, None) => String::new(),
    }
}

/// One series of an instant query's vector.
#[derive(Debug, Clone, PartialEq)]
pub struct InstantSample {
    /// The series' labels (with `__name__` when the expression kept it).
    pub labels: BTreeMap<String, String>,
    /// Evaluation time, unix seconds.
    pub at: f64,
    /// The value; `NaN` and `±Inf` are passed through for the caller to judge.
    pub value: f64,
}

/// One series of a range query's matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    /// The series' labels.
    pub labels: BTreeMap<String, String>,
    /// `(unix seconds, value)`, oldest first; `NaN` and `±Inf` are passed through (a value
    /// that is not a number at all becomes `NaN`).
    pub values: Vec<(f64, f64)>,
}

/// The range of a range query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RangeQuery {
    /// First evaluation instant.
    pub start: Timestamp,
    /// Last evaluation instant.
    pub end: Timestamp,
    /// Resolution (whole seconds; at least 1 s).
    pub step: Duration,
}

/// What [`PrometheusClient::fetch_utilization`] asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct UtilizationQuery {
    /// How far back (default 30 min).
    pub window: Duration,
    /// Resolution, also the windows' interval for staleness (default 60 s).
    pub step: Duration,
    /// The window's end, normally now.
    pub end: Timestamp,
    /// Extra label matchers inside the selector's braces, e.g. `job="dcgm"` (no braces).
    pub matchers: Option<String>,
    /// Labels a [`GpuId`] keeps for matching ([`crate::MatchOptions::kept_labels`]).
    pub keep_labels: Vec<String>,
    /// Bounds of the windows filled.
    pub limits: WindowLimits,
}

impl UtilizationQuery {
    /// The defaults (30 min, 60 s steps, default limits and matching labels) ending at `end`.
    pub fn new(end: Timestamp) -> UtilizationQuery {
        UtilizationQuery {
            window: crate::utilization::DEFAULT_WINDOW,
            step: Duration::from_secs(60),
            end,
            matchers: None,
            keep_labels: crate::MatchOptions::default().kept_labels(),
            limits: WindowLimits::default(),
        }
    }
}

/// The result of [`PrometheusClient::fetch_utilization`].
#[derive(Debug, Clone)]
pub struct FetchedUtilization {
    /// Per-GPU windows; rejected (NaN, ±Inf, out-of-range) samples are counted there.
    pub windows: GpuWindows,
    /// GPUs whose data is `DCGM_FI_PROF_GR_ENGINE_ACTIVE`.
    pub engine_active_gpus: usize,
    /// GPUs whose data is `DCGM_FI_DEV_GPU_UTIL` (they lack engine activity).
    pub gpu_util_gpus: usize,
    /// Prometheus' `warnings`, if any.
    pub warnings: Vec<String>,
}

/// A client of one Prometheus. Cheap to clone.
#[derive(Clone)]
pub struct PrometheusClient {
    http: reqwest::Client,
    base: Url,
    auth: PrometheusAuth,
    opts: PrometheusOptions,
}

impl fmt::Debug for PrometheusClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusClient")
            .field("base", &self.base.as_str())
            .field("auth", &self.auth)
            .field("opts", &self.opts)
            .finish()
    }
}

/// The `data` of a success, before the result is decoded by type.
#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct MatrixEntry {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    // Native-histogram series carry `histograms` instead; they are not utilizations.
    #[serde(default)]
    values: Vec<(f64, String)>,
}

#[derive(Deserialize)]
struct VectorEntry {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// Prometheus' float text (`1.5`, `NaN`, `+Inf`, `-Inf`); anything else becomes NaN, which
/// every consumer refuses.
fn parse_value(s: &str) -> f64 {
    s.parse().unwrap_or(f64::NAN)
}

impl PrometheusClient {
    /// A client of the Prometheus at `base` (e.g. `http://prometheus:9090`, or with a path
    /// prefix such as `https://host/prometheus`). User and password in the URL are taken as
    /// basic auth and removed from it.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a URL that is not http(s), credentials both in the URL and in
    /// `auth`, or an HTTP client that cannot be built.
    pub fn new(
        base: Url,
        auth: PrometheusAuth,
        opts: PrometheusOptions,
    ) -> Result<PrometheusClient, Error> {
        // reqwest is built without a default TLS provider so only ring is compiled in; install
        // it here (idempotent) so the client works whoever calls it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut base = base;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::Config {
                message: format!("Prometheus URL {} is not http or https", redact(&base)),
            });
        }
        let mut auth = auth;
        if !base.username().is_empty() || base.password().is_some() {
            if !matches!(auth, PrometheusAuth::None) {
                return Err(Error::Config {
                    message: format!(
                        "Prometheus URL {} carries credentials and others are configured too",
                        redact(&base)
                    ),
                });
            }
            auth = PrometheusAuth::Basic {
                username: base.username().to_string(),
                password: SecretString::from(base.password().unwrap_or("").to_string()),
            };
            let _ = base.set_username("");
            let _ = base.set_password(None);
        }
        base.set_query(None);
        base.set_fragment(None);
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout)
            .user_agent(concat!("skydeck/", env!("CARGO_PKG_VERSION")))
            // A redirect would resend the Authorization header to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Config {
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(PrometheusClient {
            http,
            base,
            auth,
            opts,
        })
    }

    /// The base URL (without credentials).
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// An instant query (`/api/v1/query`) at `at` (the server's now when `None`).
    ///
    /// # Errors
    ///
    /// Every [`Error`] but `Config`; [`Error::ResultType`] when the result is not a vector
    /// (a range-vector expression gives a matrix, a literal a scalar).
    pub async fn query(
        &self,
        promql: &str,
        at: Option<Timestamp>,
        deadline: Instant,
    ) -> Result<Vec<InstantSample>, Error> {
        let mut params = vec![("query", promql.to_string())];
        if let Some(at) = at {
            params.push(("time", at.as_second().to_string()));
        }
        let (url, data, _) = self
            .get("api/v1/query", &params, "vector", deadline)
            .await?;
        let entries: Vec<VectorEntry> =
            serde_json::from_value(data).map_err(|source| Error::Malformed {
                url,
                expected: "a vector: [{\"metric\": {…}, \"value\": [time, \"value\"]}, …]",
                source,
            })?;
        Ok(entries
            .into_iter()
            .map(|e| InstantSample {
                labels: e.metric,
                at: e.value.0,
                value: parse_value(&e.value.1),
            })
            .collect())
    }

    /// A range query (`/api/v1/query_range`).
    ///
    /// # Errors
    ///
    /// Every [`Error`] but `Config`; [`Error::ResultType`] when the result is not a matrix.
    pub async fn query_range(
        &self,
        promql: &str,
        range: &RangeQuery,
        deadline: Instant,
    ) -> Result<Vec<RangeSeries>, Error> {
        Ok(self.query_range_warned(promql, range, deadline).await?.0)
    }

    async fn query_range_warned(
        &self,
        promql: &str,
        range: &RangeQuery,
        deadline: Instant,
    ) -> Result<(Vec<RangeSeries>, Vec<String>), Error> {
        let params = [
            ("query", promql.to_string()),
            ("start", range.start.as_second().to_string()),
            ("end", range.end.as_second().to_string()),
            ("step", format!("{}s", range.step.as_secs().max(1))),
        ];
        let (url, data, warnings) = self
            .get("api/v1/query_range", &params, "matrix", deadline)
            .await?;
        let entries: Vec<MatrixEntry> =
            serde_json::from_value(data).map_err(|source| Error::Malformed {
                url,
                expected: "a matrix: [{\"metric\": {…}, \"values\": [[time, \"value\"], …]}, …]",
                source,
            })?;
        let series = entries
            .into_iter()
            .map(|e| RangeSeries {
                labels: e.metric,
                values: e
                    .values
                    .into_iter()
                    .map(|(t, v)| (t, parse_value(&v)))
                    .collect(),
            })
            .collect();
        Ok((series, warnings))
    }

    /// DCGM utilization of every GPU over `q.window` up to `q.end`, both fields queried at
    /// once under `deadline`.
    ///
    /// # Errors
    ///
    /// The first [`Error`] of either query, and [`Error::Config`] for matchers with braces.
    pub async fn fetch_utilization(
        &self,
        q: &UtilizationQuery,
        deadline: Instant,
    ) -> Result<FetchedUtilization, Error> {
        let matchers = q.matchers.as_deref().unwrap_or("").trim();
        if matchers.contains(['{', '}']) {
            return Err(Error::Config {
                message: format!("GPU matchers {matchers:?} must be given without braces"),
            });
        }
        let step = Duration::from_secs(q.step.as_secs().max(1));
        let window = jiff::SignedDuration::try_from(q.window).map_err(|e| Error::Config {
            message: format!("window too long: {e}"),
        })?;
        let start = q.end.checked_sub(window).map_err(|e| Error::Config {
            message: format!("window too long: {e}"),
        })?;
        let range = RangeQuery {
            start,
            end: q.end,
            step,
        };
        let selector = |m: &str| {
            if matchers.is_empty() {
                m.to_string()
            } else {
                format!("{m}{{{matchers}}}")
            }
        };
        let engine = selector(UtilSource::EngineActive.metric());
        let util = selector(UtilSource::GpuUtil.metric());
        let (engine, util) = tokio::join!(
            self.query_range_warned(&engine, &range, deadline),
            self.query_range_warned(&util, &range, deadline),
        );
        let (engine, mut warnings) = engine?;
        let (util, more) = util?;
        warnings.extend(more);

        let mut windows = GpuWindows::new(q.limits, step);
        let keep: Vec<&str> = q.keep_labels.iter().map(String::as_str).collect();
        // Engine activity first: GPU-util samples of the same GPU are then ignored.
        for (source, series) in [
            (UtilSource::EngineActive, engine),
            (UtilSource::GpuUtil, util),
        ] {
            for s in series {
                let id = GpuId::from_labels(&s.labels, keep.iter().copied());
                for (t, v) in s.values {
                    windows.push(&id, source, t.floor() as i64, v * source.to_ratio());
                }
            }
        }
        let engine_active_gpus = windows
            .iter()
            .filter(|(_, s)| s.source() == UtilSource::EngineActive)
            .count();
        Ok(FetchedUtilization {
            gpu_util_gpus: windows.len() - engine_active_gpus,
            engine_active_gpus,
            windows,
            warnings,
        })
    }

    /// GETs `path` with `params`, checks status and result type, and returns the redacted
    /// URL, the `result` and the warnings.
    async fn get(
        &self,
        path: &str,
        params: &[(&str, String)],
        expected: &'static str,
        deadline: Instant,
    ) -> Result<(String, serde_json::Value, Vec<String>), Error> {
        let endpoint = self.base.join(path).map_err(|e| Error::Config {
            message: format!("cannot join {path} to {}: {e}", self.base),
        })?;
        let url = redact(&endpoint);
        let budget = deadline.saturating_duration_since(Instant::now());
        let call = async {
            let req = self.http.get(endpoint).query(params);
            let req = match &self.auth {
                PrometheusAuth::None => req,
                PrometheusAuth::Bearer(t) => req.bearer_auth(t.expose_secret()),
                PrometheusAuth::Basic { username, password } => {
                    req.basic_auth(username, Some(password.expose_secret()))
                }
            };
            let mut resp = req.send().await.map_err(|e| Error::Unreachable {
                url: url.clone(),
                source: e.without_url(),
            })?;
            let status = resp.status();
            let limit = self.opts.max_response_bytes;
            if resp.content_length().is_some_and(|n| n > limit as u64) {
                return Err(Error::TooLarge {
                    url: url.clone(),
                    limit,
                });
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| Error::Unreachable {
                url: url.clone(),
                source: e.without_url(),
            })? {
                if body.len() + chunk.len() > limit {
                    return Err(Error::TooLarge {
                        url: url.clone(),
                        limit,
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok((status, body))
        };
        let (status, body) = match tokio::time::timeout_at(deadline, call).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(Error::Timeout { url, after: budget });
            }
        };
        let parsed: Result<Envelope, _> = serde_json::from_slice(&body);
        if !status.is_success() {
            let (error_type, error) = match &parsed {
                Ok(env) => (env.error_type.clone(), env.error.clone()),
                Err(_) => (None, None),
            };
            let body = if error.is_some() {
                String::new()
            } else {
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(ERROR_BODY_CHARS)
                    .collect()
            };
            return Err(Error::Status {
                url,
                status: status.as_u16(),
                error_type,
                error,
                body,
            });
        }
        let env = parsed.map_err(|source| Error::Malformed {
            url: url.clone(),
            expected: "the API's JSON envelope {\"status\", \"data\": {\"resultType\", \"result\"}}",
            source,
        })?;
        if env.status != "success" {
            return Err(Error::Api {
                url,
                status: env.status,
                error_type: env.error_type,
                error: env.error,
            });
        }
        let Some(data) = env.data else {
            return Err(Error::Malformed {
                url,
                expected: "a \"data\" object in a success",
                source: serde::de::Error::missing_field("data"),
            });
        };
        if data.result_type != expected {
            return Err(Error::ResultType {
                url,
                expected,
                got: data.result_type,
            });
        }
        Ok((url, data.result, env.warnings))
    }
}

/// `url` without user, password, query or fragment: what errors and logs may show.
fn redact(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

#[cfg(test)]
mod tests;
