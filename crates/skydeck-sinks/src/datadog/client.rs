//! HTTP to Datadog: series submission with retries and splits, key validation, metadata.

use std::time::Duration;

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use skydeck_core::MetricDef;

use super::encode::{self, Compression, Encoded, Payload};
use super::{DatadogConfig, Site};
use crate::DeliveryReport;

/// First retry delay; doubled per attempt, with ±50 % jitter, up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(16);
/// Attempts per payload before it is dropped (the deadline usually comes first).
const MAX_ATTEMPTS: u32 = 8;

/// A Datadog API client for one site and key.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    site: Site,
    api_key: SecretString,
    compression: Compression,
    request_timeout: Duration,
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 202: accepted (with the intake's non-fatal error strings, if any).
    Accepted(Vec<String>),
    /// 413: the payload is too large.
    TooLarge,
    /// 408, 429, 5xx or a transport error: worth retrying.
    Retryable(String),
    /// 400: the payload is wrong; retrying would fail again.
    BadRequest(String),
    /// 403: the key is wrong for this site.
    Forbidden(String),
    /// Any other status.
    Other(String),
}

/// Result of one metadata update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataOutcome {
    /// The metric.
    pub metric: &'static str,
    /// `Ok` or the reason it failed.
    pub result: Result<(), String>,
}

impl Client {
    /// A client for `config`'s site and key.
    pub fn new(config: &DatadogConfig) -> Result<Self, String> {
        // reqwest is built without a default TLS provider so only ring is compiled in; install
        // it here (idempotent) so the client works whoever calls it, not only skydeck's main.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(config.request_timeout)
            .user_agent(concat!("skydeck/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Client {
            http,
            site: config.site.clone(),
            api_key: config.api_key.clone(),
            compression: config.compression,
            request_timeout: config.request_timeout,
        })
    }

    /// The site.
    pub fn site(&self) -> &Site {
        &self.site
    }

    /// Sends one payload once.
    pub async fn post(&self, p: &Payload) -> Outcome {
        let resp = self
            .http
            .post(self.site.url("/api/v2/series"))
            .header("DD-API-KEY", self.api_key.expose_secret())
            .header("Content-Type", "application/json")
            .header("Content-Encoding", self.compression.header())
            .body(p.body.clone())
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return Outcome::Retryable(transport_reason(&e)),
        };
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let errors = intake_errors(&body);
        match status {
            s if s.is_success() => Outcome::Accepted(errors),
            StatusCode::PAYLOAD_TOO_LARGE => Outcome::TooLarge,
            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => {
                Outcome::Retryable(status.to_string())
            }
            s if s.is_server_error() => Outcome::Retryable(status.to_string()),
            StatusCode::BAD_REQUEST => Outcome::BadRequest(if errors.is_empty() {
                snippet(&body)
            } else {
                errors.join(", ")
            }),
            StatusCode::FORBIDDEN => Outcome::Forbidden(format!(
                "Datadog rejected the API key (403 Forbidden) at site {}: check DD_API_KEY and \
                 DD_SITE (a key belongs to one site)",
                self.site.name
            )),
            s => Outcome::Other(format!("{s}: {}", snippet(&body))),
        }
    }

    /// Sends every payload, retrying and splitting as needed, and counts each point once as
    /// accepted or dropped in `report`.
    pub async fn send_all(
        &self,
        enc: &Encoded,
        payloads: Vec<Payload>,
        deadline: tokio::time::Instant,
        report: &mut DeliveryReport,
    ) {
        let mut stack: Vec<Payload> = payloads.into_iter().rev().collect();
        let mut fatal: Option<String> = None;
        while let Some(p) = stack.pop() {
            if fatal.is_some() {
                report.dropped += p.points();
                continue;
            }
            let mut attempt = 0u32;
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left < Duration::from_millis(50) {
                    report.dropped += p.points();
                    report.problems.push(format!(
                        "run deadline reached with {} points unsent",
                        p.points()
                    ));
                    break;
                }
                report.requests += 1;
                let outcome =
                    match tokio::time::timeout(self.request_timeout.min(left), self.post(&p)).await
                    {
                        Ok(o) => o,
                        Err(_) => Outcome::Retryable(format!(
                            "no answer within {:?}",
                            self.request_timeout.min(left)
                        )),
                    };
                match outcome {
                    Outcome::Accepted(errors) => {
                        report.accepted += p.points();
                        if !errors.is_empty() {
                            tracing::warn!("Datadog accepted the payload with errors: {errors:?}");
                            report
                                .problems
                                .push(format!("intake reported: {}", errors.join(", ")));
                        }
                        break;
                    }
                    Outcome::TooLarge if p.points() > 1 => {
                        tracing::info!(
                            points = p.points(),
                            "413 from Datadog: splitting the payload"
                        );
                        let (a, b) = encode::halves(&p.range);
                        stack.push(encode::compress(enc, b, self.compression));
                        stack.push(encode::compress(enc, a, self.compression));
                        break;
                    }
                    Outcome::TooLarge => {
                        report.dropped += 1;
                        report.problems.push("413 for a single point".into());
                        break;
                    }
                    Outcome::Retryable(reason) => {
                        if attempt == 0 {
                            report.retried += p.points();
                        }
                        attempt += 1;
                        let wait = backoff(attempt);
                        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                        if attempt >= MAX_ATTEMPTS || wait >= left {
                            report.dropped += p.points();
                            report.problems.push(format!(
                                "gave up on {} points after {attempt} attempts: {reason}",
                                p.points()
                            ));
                            break;
                        }
                        tracing::info!(attempt, ?wait, "retrying Datadog request: {reason}");
                        tokio::time::sleep(wait).await;
                    }
                    Outcome::BadRequest(reason) => {
                        report.dropped += p.points();
                        report.problems.push(format!("400 Bad Request: {reason}"));
                        break;
                    }
                    Outcome::Forbidden(reason) => {
                        report.dropped += p.points();
                        report.problems.push(reason.clone());
                        fatal = Some(reason);
                        break;
                    }
                    Outcome::Other(reason) => {
                        report.dropped += p.points();
                        report.problems.push(reason);
                        break;
                    }
                }
            }
        }
    }

    /// `GET /api/v1/validate`: `Ok(true)` when the key is valid for this site.
    pub async fn validate(&self) -> Result<bool, String> {
        let resp = self
            .http
            .get(self.site.url("/api/v1/validate"))
            .header("DD-API-KEY", self.api_key.expose_secret())
            .send()
            .await
            .map_err(|e| {
                format!(
                    "cannot reach Datadog at {}: {}",
                    self.site.base,
                    transport_reason(&e)
                )
            })?;
        match resp.status() {
            s if s.is_success() => {
                let v: serde_json::Value = resp.json().await.unwrap_or_default();
                Ok(v.get("valid").and_then(|v| v.as_bool()).unwrap_or(true))
            }
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => Ok(false),
            s => Err(format!("Datadog answered {s} to /api/v1/validate")),
        }
    }

    /// `PUT /api/v1/metrics/{name}` for each metric: unit, type and description, so Datadog
    /// shows the catalog's units. Needs an application key.
    pub async fn sync_metadata(
        &self,
        app_key: &SecretString,
        defs: &[&'static MetricDef],
    ) -> Vec<MetadataOutcome> {
        let mut out = Vec::with_capacity(defs.len());
        for d in defs {
            let mut body = serde_json::json!({
                "type": "gauge",
                "description": d.help,
                "short_name": d.name.rsplit('.').next().unwrap_or(d.name),
                "unit": d.unit.datadog_name(),
            });
            if let Some(per) = d.unit.datadog_per_unit() {
                body["per_unit"] = per.into();
            }
            let result = self
                .http
                .put(self.site.url(&format!("/api/v1/metrics/{}", d.name)))
                .header("DD-API-KEY", self.api_key.expose_secret())
                .header("DD-APPLICATION-KEY", app_key.expose_secret())
                .json(&body)
                .send()
                .await
                .map_err(|e| transport_reason(&e))
                .and_then(|r| {
                    if r.status().is_success() {
                        Ok(())
                    } else {
                        Err(r.status().to_string())
                    }
                });
            out.push(MetadataOutcome {
                metric: d.name,
                result,
            });
        }
        out
    }
}

/// Exponential backoff with ±50 % jitter, so retries of many runs don't synchronise.
fn backoff(attempt: u32) -> Duration {
    let exp = BASE_BACKOFF.saturating_mul(1 << attempt.saturating_sub(1).min(10));
    exp.min(MAX_BACKOFF).mul_f64(0.5 + fastrand::f64())
}

fn intake_errors(body: &str) -> Vec<String> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("errors").cloned())
        .and_then(|e| serde_json::from_value::<Vec<String>>(e).ok())
        .unwrap_or_default()
}

fn snippet(body: &str) -> String {
    let t: String = body.trim().chars().take(300).collect();
    if t.is_empty() {
        "(empty body)".into()
    } else {
        t
    }
}

/// A transport error without the URL (which reqwest's `Display` includes), with its causes.
fn transport_reason(e: &reqwest::Error) -> String {
    let mut reason = String::from(if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    });
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        src = s.source();
    }
    reason
}
