//! The Datadog sink: `POST /api/v2/series` with compression, Datadog's size limits, retries
//! with jittered backoff inside the run's deadline, and honest counts.
//!
//! * 408, 429, 5xx and transport errors are retried; 413 splits the payload in two and sends
//!   the halves; 400 and 403 are not retried (403 stops the delivery: the key or the site is
//!   wrong, and every further request would fail the same way).
//! * Points older than one hour or more than ten minutes ahead are dropped before sending
//!   (Datadog rejects them) and counted as dropped, with a warning.
//! * Every point ends up accepted or dropped in the [`DeliveryReport`].

mod client;
pub mod encode;
mod site;
#[cfg(test)]
mod tests;

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use secrecy::SecretString;
use skydeck_core::Sample;

pub use client::{Client, MetadataOutcome, Outcome};
pub use encode::{Compression, Limits};
pub use site::{SITES, Site};

use crate::{DeliveryReport, Sink, SinkError};

/// Configuration of the Datadog sink.
#[derive(Clone)]
pub struct DatadogConfig {
    /// Where the API is.
    pub site: Site,
    /// `DD-API-KEY`.
    pub api_key: SecretString,
    /// Tags added to every series (`env:prod`, `service:skydeck`, `DD_TAGS`).
    pub tags: Vec<String>,
    /// Host resource of every series; none by default (fleet metrics belong to no host).
    pub host: Option<String>,
    /// Body compression.
    pub compression: Compression,
    /// Limit of one request.
    pub request_timeout: Duration,
    /// Request size limits.
    pub limits: Limits,
}

impl std::fmt::Debug for DatadogConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatadogConfig")
            .field("site", &self.site.name)
            .field("api_key", &"<redacted>")
            .field("tags", &self.tags)
            .field("host", &self.host)
            .field("compression", &self.compression)
            .finish()
    }
}

/// Datadog accepts points at most one hour old.
const MAX_AGE: i64 = 3600;
/// … and at most ten minutes ahead.
const MAX_AHEAD: i64 = 600;

/// Sends samples to Datadog, or prints the payloads (`dry_run`).
pub struct DatadogSink {
    config: DatadogConfig,
    client: Client,
    dry_run: Option<Mutex<Box<dyn Write + Send>>>,
}

impl DatadogSink {
    /// A sink that sends.
    pub fn new(config: DatadogConfig) -> Result<Self, String> {
        let client = Client::new(&config)?;
        Ok(DatadogSink {
            config,
            client,
            dry_run: None,
        })
    }

    /// A sink that prints each payload as one JSON line to `out` instead of sending it.
    pub fn dry_run(config: DatadogConfig, out: Box<dyn Write + Send>) -> Result<Self, String> {
        let mut s = Self::new(config)?;
        s.dry_run = Some(Mutex::new(out));
        Ok(s)
    }

    async fn deliver_all(
        &self,
        samples: &[Sample],
        deadline: tokio::time::Instant,
    ) -> Result<DeliveryReport, SinkError> {
        let mut report = DeliveryReport::default();
        let now = jiff::Timestamp::now().as_second();
        let (fresh, stale): (Vec<&Sample>, Vec<&Sample>) = samples
            .iter()
            .partition(|s| (now - MAX_AGE..=now + MAX_AHEAD).contains(&s.at.as_second()));
        if !stale.is_empty() {
            tracing::warn!(
                points = stale.len(),
                "dropping points older than one hour or more than ten minutes ahead (Datadog rejects them)"
            );
            report.dropped += stale.len();
            report.problems.push(format!(
                "{} points outside Datadog's window (older than 1 h or over 10 min ahead)",
                stale.len()
            ));
        }
        let (enc, rejected) = encode::encode(fresh, &self.config.tags, self.config.host.as_deref());
        for r in &rejected {
            tracing::warn!(metric = %r.metric, "not sent to Datadog: {}", r.reason);
        }
        if !rejected.is_empty() {
            report.dropped += rejected.len();
            report.problems.push(format!(
                "{} points not sendable ({}: {})",
                rejected.len(),
                rejected[0].metric,
                rejected[0].reason
            ));
        }
        let payloads = encode::chunk(&enc, self.config.limits, self.config.compression);

        if let Some(out) = &self.dry_run {
            let mut w = out.lock().unwrap_or_else(|p| p.into_inner());
            for p in &payloads {
                enc.write_raw(&p.range, &mut *w)
                    .and_then(|_| w.write_all(b"\n"))
                    .map_err(|source| SinkError::Io {
                        target: "stdout",
                        source,
                    })?;
                report.printed += p.points();
            }
            w.flush().map_err(|source| SinkError::Io {
                target: "stdout",
                source,
            })?;
            return Ok(report);
        }
        self.client
            .send_all(&enc, payloads, deadline, &mut report)
            .await;
        Ok(report)
    }
}

impl Sink for DatadogSink {
    fn name(&self) -> &str {
        "datadog"
    }

    fn deliver<'a>(
        &'a self,
        samples: &'a [Sample],
        deadline: tokio::time::Instant,
    ) -> BoxFuture<'a, Result<DeliveryReport, SinkError>> {
        self.deliver_all(samples, deadline).boxed()
    }
}
