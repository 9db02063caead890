//! Collectors and the runner that keeps every one of them under a hard deadline.
//!
//! The seed collector hung for 81 minutes because a thread-pool timeout cannot stop the
//! subprocesses a collector spawns. Here a collector is a future (cancelled at its deadline by
//! dropping it) or an external command run through [`bounded::run_bounded`], which owns the
//! command's whole process group and kills it at the deadline. A collector that fails or
//! times out becomes data (`skydeck.collector.up` = 0 and a summary line), never a hung run.

pub mod bounded;
pub mod collectors;
mod error;
pub mod exposition;
pub mod runner;

use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;
use skydeck_core::Sample;

pub use error::CollectError;
pub use runner::{Outcome, OutcomeStatus, RunReport, Runner};

/// What every collector of one run shares.
#[derive(Debug, Clone)]
pub struct Context {
    /// The run's start, T: one timestamp for every sample of the run (whole seconds).
    pub started_at: Timestamp,
    /// When the whole run must be over.
    pub deadline: tokio::time::Instant,
}

impl Context {
    /// Time left until the run's deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline
            .saturating_duration_since(tokio::time::Instant::now())
    }
}

/// A source of samples.
pub trait Collector: Send + Sync {
    /// Name in summaries and in the `collector` tag.
    fn name(&self) -> &str;
    /// How long one run may take.
    fn timeout(&self) -> Duration;
    /// The runner's backstop: when the future is dropped. Collectors that clean up after their
    /// own timeout (killing a process group) ask for their grace period on top.
    fn hard_limit(&self) -> Duration {
        self.timeout()
    }
    /// A part of the last run that failed while the rest delivered (the GPU source of the
    /// SkyPilot collector): shown on the summary line, and the run does not count as all well.
    fn problem(&self) -> Option<String> {
        None
    }
    /// A note for the summary line (e.g. that a scope filter is on).
    fn note(&self) -> Option<String> {
        None
    }
    /// Collects once.
    fn collect<'a>(&'a self, cx: &'a Context) -> BoxFuture<'a, Result<Vec<Sample>, CollectError>>;
}
