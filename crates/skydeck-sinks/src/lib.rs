//! Sinks: where a run's samples go. Sinks never know which collector produced a sample.
//!
//! The seam is [`Sink::deliver`]: one call per run with every sample, returning how many points
//! were accepted and how many dropped, so the run's summary and exit status can say when
//! anything was lost. Sinks here: a human table and JSON lines on stdout, and Datadog's
//! metrics intake; a Prometheus sink plugs into the same trait.

pub mod datadog;
mod stdout;

use futures::future::BoxFuture;
use skydeck_core::Sample;

pub use datadog::DatadogSink;
pub use stdout::{JsonLinesSink, TableSink};

/// What a sink did with one run's samples. Every sample handed to a sink ends up counted as
/// accepted or dropped (or, for a dry run, printed), so nothing is lost silently.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Points the destination accepted.
    pub accepted: usize,
    /// Points that needed at least one retry (and were then accepted or dropped).
    pub retried: usize,
    /// Points that were not delivered.
    pub dropped: usize,
    /// Requests sent.
    pub requests: usize,
    /// Points printed instead of sent (`--dry-run`).
    pub printed: usize,
    /// What went wrong, one line each (no secrets).
    pub problems: Vec<String>,
}

impl DeliveryReport {
    /// The summary line: `✓ datadog: 45 points accepted in 1 request`.
    pub fn summary(&self, sink: &str) -> String {
        let mark = if self.dropped == 0 { '✓' } else { '✗' };
        let mut line = if self.printed > 0 {
            format!(
                "{mark} {sink}: dry run, {} points printed, nothing sent",
                self.printed
            )
        } else {
            let plural = if self.requests == 1 { "" } else { "s" };
            format!(
                "{mark} {sink}: {} points accepted in {} request{plural}",
                self.accepted, self.requests
            )
        };
        if self.retried > 0 {
            line.push_str(&format!(", {} retried", self.retried));
        }
        if self.dropped > 0 {
            line.push_str(&format!(", {} dropped", self.dropped));
        }
        if !self.problems.is_empty() {
            line.push_str(": ");
            line.push_str(&self.problems.join("; "));
        }
        line
    }
}

/// Errors of a sink that could deliver nothing at all.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Writing to a local stream failed.
    #[error("writing to {target}: {source}")]
    Io {
        /// What was written to.
        target: &'static str,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
}

/// A destination for samples.
pub trait Sink: Send + Sync {
    /// Name in summaries.
    fn name(&self) -> &str;
    /// Delivers one run's samples, giving up on what is not delivered by `deadline`.
    fn deliver<'a>(
        &'a self,
        samples: &'a [Sample],
        deadline: tokio::time::Instant,
    ) -> BoxFuture<'a, Result<DeliveryReport, SinkError>>;
}
