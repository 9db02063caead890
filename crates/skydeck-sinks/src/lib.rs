//! Sinks: where a run's samples go. Sinks never know which collector produced a sample.
//!
//! The seam is [`Sink::deliver`]: one call per run with every sample, returning how many points
//! were accepted and how many dropped, so the run's summary and exit status can say when
//! anything was lost. This issue ships the stdout sinks (a human table and JSON lines); the
//! Datadog and Prometheus sinks plug into the same trait.

mod stdout;

use futures::future::BoxFuture;
use skydeck_core::Sample;

pub use stdout::{JsonLinesSink, TableSink};

/// What a sink did with one run's samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Points the destination accepted.
    pub accepted: usize,
    /// Points that needed a retry (and were then accepted or dropped).
    pub retried: usize,
    /// Points that were not delivered.
    pub dropped: usize,
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
    /// Delivers one run's samples.
    fn deliver<'a>(
        &'a self,
        samples: &'a [Sample],
    ) -> BoxFuture<'a, Result<DeliveryReport, SinkError>>;
}
