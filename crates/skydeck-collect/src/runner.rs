//! Runs every collector concurrently, each under its own limit and all under a global deadline,
//! and turns each outcome into data.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use skydeck_core::{Sample, catalog};
use tokio::task::JoinSet;

use crate::error::fmt_secs;
use crate::{CollectError, Collector, Context};

/// How one collector's run ended.
#[derive(Debug)]
pub enum OutcomeStatus {
    /// It produced this many samples.
    Ok(usize),
    /// It failed or timed out.
    Failed(CollectError),
}

/// One collector's run.
#[derive(Debug)]
pub struct Outcome {
    /// Collector name.
    pub collector: String,
    /// Wall time.
    pub duration: Duration,
    /// Result.
    pub status: OutcomeStatus,
    /// The collector's note for the summary line.
    pub note: Option<String>,
    /// A part of the run that failed while the rest delivered.
    pub problem: Option<String>,
}

impl Outcome {
    /// True when the collector succeeded.
    pub fn is_ok(&self) -> bool {
        matches!(self.status, OutcomeStatus::Ok(_)) && self.problem.is_none()
    }

    /// The summary line: `✓ skypilot: 31 metrics in 0.42 s`, `✗ github: timed out after 120 s,
    /// killed 3 processes`.
    pub fn summary(&self) -> String {
        let line = match &self.status {
            OutcomeStatus::Ok(n) => format!(
                "✓ {}: {n} metrics in {:.2} s",
                self.collector,
                self.duration.as_secs_f64()
            ),
            OutcomeStatus::Failed(e) => format!("✗ {}: {e}", self.collector),
        };
        let line = match &self.note {
            Some(n) => format!("{line} ({n})"),
            None => line,
        };
        match (&self.status, &self.problem) {
            (OutcomeStatus::Ok(_), Some(p)) => format!("{line}; ✗ {p}"),
            _ => line,
        }
    }
}

/// Everything one run produced.
#[derive(Debug)]
pub struct RunReport {
    /// T, the run's start (whole seconds).
    pub started_at: Timestamp,
    /// One outcome per collector, in configuration order.
    pub outcomes: Vec<Outcome>,
    /// The collectors' samples followed by the runner's own (`skydeck.collector.*`).
    pub samples: Vec<Sample>,
}

impl RunReport {
    /// True when every collector succeeded.
    pub fn all_ok(&self) -> bool {
        self.outcomes.iter().all(Outcome::is_ok)
    }
}

/// A collector task's wall time and result.
type Finished = (Duration, Result<Vec<Sample>, CollectError>);

/// Runs collectors.
pub struct Runner {
    collectors: Vec<Arc<dyn Collector>>,
    deadline: Duration,
}

impl Runner {
    /// A runner for `collectors` whose whole run ends by `deadline`.
    pub fn new(collectors: Vec<Arc<dyn Collector>>, deadline: Duration) -> Self {
        Runner {
            collectors,
            deadline,
        }
    }

    /// Runs every collector once, concurrently.
    pub async fn run(&self) -> RunReport {
        // T is whole seconds: every sample of the run carries it, and sinks (Datadog) store
        // seconds anyway.
        let started_at =
            Timestamp::from_second(Timestamp::now().as_second()).expect("now is a valid timestamp");
        let started = Instant::now();
        let cx = Context {
            started_at,
            deadline: tokio::time::Instant::now() + self.deadline,
        };

        let mut set = JoinSet::new();
        for (idx, c) in self.collectors.iter().enumerate() {
            let c = Arc::clone(c);
            let cx = cx.clone();
            set.spawn(async move {
                let t0 = Instant::now();
                let limit = c.hard_limit().min(cx.remaining());
                let timed_out_after = c.timeout().min(cx.remaining());
                let result = match tokio::time::timeout(limit, c.collect(&cx)).await {
                    Ok(r) => r,
                    Err(_) => Err(CollectError::TimedOut {
                        after: timed_out_after,
                        killed: None,
                        waiting_for: Vec::new(),
                    }),
                };
                (idx, t0.elapsed(), result)
            });
        }

        let mut results: Vec<Option<Finished>> = (0..self.collectors.len()).map(|_| None).collect();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((idx, d, r)) => results[idx] = Some((d, r)),
                Err(e) => tracing::error!("a collector task panicked: {e}"),
            }
        }

        let mut samples = Vec::new();
        let mut outcomes = Vec::new();
        for (c, r) in self.collectors.iter().zip(results) {
            let (duration, result) = r.unwrap_or_else(|| {
                (
                    started.elapsed(),
                    Err(CollectError::Exit {
                        program: c.name().to_string(),
                        status: "a panic".into(),
                        stderr: String::new(),
                    }),
                )
            });
            let status = match result {
                Ok(s) => {
                    let n = s.len();
                    samples.extend(s);
                    OutcomeStatus::Ok(n)
                }
                Err(e) => OutcomeStatus::Failed(e),
            };
            outcomes.push(Outcome {
                collector: c.name().to_string(),
                duration,
                status,
                note: c.note(),
                problem: c.problem(),
            });
        }
        for o in &outcomes {
            let n = match o.status {
                OutcomeStatus::Ok(n) => n,
                OutcomeStatus::Failed(_) => 0,
            };
            // Up is the collector's own result; a failed part has its own health metric.
            let up = if matches!(o.status, OutcomeStatus::Ok(_)) {
                1.0
            } else {
                0.0
            };
            for (def, v) in [
                (&catalog::COLLECTOR_UP, up),
                (&catalog::COLLECTOR_DURATION, o.duration.as_secs_f64()),
                (&catalog::COLLECTOR_SAMPLES, n as f64),
            ] {
                samples.push(Sample::of(def, v, started_at).tag("collector", o.collector.clone()));
            }
        }
        tracing::debug!(elapsed = %fmt_secs(started.elapsed()), "run finished");
        RunReport {
            started_at,
            outcomes,
            samples,
        }
    }
}
