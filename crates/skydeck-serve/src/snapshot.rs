//! The last good snapshot: what every collector last produced, and the health of every run.
//!
//! A failed or slow run never blanks what `/metrics` shows: the samples of a collector are
//! replaced only by a successful run, while its health (`up`, the last success time, run
//! counts) changes with every run. Reads take a cheap clone of `Arc`s under a short lock, so
//! a scrape never waits on a collector.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use skydeck_core::exposition::{self, Format};
use skydeck_core::{Sample, catalog as c};
use tokio::time::Instant;

/// One collector's state.
#[derive(Debug, Clone)]
pub struct CollectorState {
    /// The samples of its last successful run.
    pub samples: Arc<Vec<Sample>>,
    /// Whether its last run succeeded.
    pub up: bool,
    /// Wall time of its last run.
    pub last_duration: Duration,
    /// When its last successful run ended (wall clock).
    pub last_success: Option<Timestamp>,
    /// When its last successful run ended (monotonic), for readiness.
    pub last_success_at: Option<Instant>,
    /// Successful runs since start.
    pub runs_ok: u64,
    /// Failed runs since start.
    pub runs_failed: u64,
    /// Why the last run failed (credential-free text).
    pub last_error: Option<String>,
    /// How often it runs; ready means a success within two of these.
    pub interval: Duration,
}

impl CollectorState {
    fn new(interval: Duration) -> Self {
        CollectorState {
            samples: Arc::new(Vec::new()),
            up: false,
            last_duration: Duration::ZERO,
            last_success: None,
            last_success_at: None,
            runs_ok: 0,
            runs_failed: 0,
            last_error: None,
            interval,
        }
    }
}

/// One SkyPilot request's refresh state (status, jobs, cost, queues).
#[derive(Debug, Clone)]
pub struct RequestState {
    /// Whether its last refresh succeeded.
    pub up: bool,
    /// When its last good answer arrived (wall clock).
    pub last_success: Option<Timestamp>,
    /// When its last good answer arrived (monotonic).
    pub last_success_at: Option<Instant>,
    /// Refreshes that succeeded.
    pub ok: u64,
    /// Refreshes that failed.
    pub failed: u64,
    /// Its refresh interval.
    pub interval: Duration,
    /// Why the last refresh failed.
    pub last_error: Option<String>,
}

/// Delivery counts of one sink.
#[derive(Debug, Clone, Default)]
pub struct SinkState {
    /// Points accepted.
    pub accepted: u64,
    /// Points dropped.
    pub dropped: u64,
    /// Deliveries by result (`ok`, `partial`, `failed`).
    pub deliveries: BTreeMap<&'static str, u64>,
    /// The last delivery's summary line.
    pub last_summary: Option<String>,
}

#[derive(Default)]
struct Inner {
    collectors: BTreeMap<String, CollectorState>,
    requests: BTreeMap<&'static str, RequestState>,
    sinks: BTreeMap<String, SinkState>,
    /// Bumped whenever some collector's samples change.
    version: u64,
    /// The rendered fleet part for (version, format).
    cache: Option<(u64, Format, Arc<String>)>,
    /// The last idle-stop pass, as `/api/idle` shows it.
    idle: Option<Arc<serde_json::Value>>,
}

/// The shared snapshot.
#[derive(Clone, Default)]
pub struct Snapshot {
    inner: Arc<Mutex<Inner>>,
}

/// A run's result, as handed to [`Snapshot::record`].
pub enum RunResult {
    /// It produced these samples.
    Ok(Vec<Sample>),
    /// It failed for this reason.
    Failed(String),
}

impl Snapshot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Declares a collector (so it is reported, and not ready, before its first run).
    pub fn register(&self, collector: &str, interval: Duration) {
        self.lock()
            .collectors
            .entry(collector.to_string())
            .or_insert_with(|| CollectorState::new(interval));
    }

    /// Declares a SkyPilot request.
    pub fn register_request(&self, request: &'static str, interval: Duration) {
        self.lock().requests.entry(request).or_insert(RequestState {
            up: false,
            last_success: None,
            last_success_at: None,
            ok: 0,
            failed: 0,
            interval,
            last_error: None,
        });
    }

    /// Records a run of `collector`.
    pub fn record(&self, collector: &str, duration: Duration, result: RunResult) {
        let mut g = self.lock();
        let st = g
            .collectors
            .entry(collector.to_string())
            .or_insert_with(|| CollectorState::new(Duration::from_secs(60)));
        st.last_duration = duration;
        let changed = match result {
            RunResult::Ok(samples) => {
                st.samples = Arc::new(samples);
                st.up = true;
                st.last_success = Some(Timestamp::now());
                st.last_success_at = Some(Instant::now());
                st.runs_ok += 1;
                st.last_error = None;
                true
            }
            RunResult::Failed(e) => {
                st.up = false;
                st.runs_failed += 1;
                st.last_error = Some(e);
                false
            }
        };
        if changed {
            g.version += 1;
        }
    }

    /// Marks a collector down without a run (a part of it failed) and keeps its samples.
    pub fn mark_down(&self, collector: &str, reason: String) {
        let mut g = self.lock();
        if let Some(st) = g.collectors.get_mut(collector) {
            st.up = false;
            st.last_error = Some(reason);
        }
    }

    /// Records a refresh of a SkyPilot request.
    pub fn record_request(&self, request: &'static str, ok: Result<(), String>) {
        let mut g = self.lock();
        let st = g.requests.entry(request).or_insert(RequestState {
            up: false,
            last_success: None,
            last_success_at: None,
            ok: 0,
            failed: 0,
            interval: Duration::from_secs(60),
            last_error: None,
        });
        match ok {
            Ok(()) => {
                st.up = true;
                st.ok += 1;
                st.last_success = Some(Timestamp::now());
                st.last_success_at = Some(Instant::now());
                st.last_error = None;
            }
            Err(e) => {
                st.up = false;
                st.failed += 1;
                st.last_error = Some(e);
            }
        }
    }

    /// Whether every SkyPilot request is up (its last refresh succeeded).
    pub fn requests_up(&self) -> bool {
        self.lock().requests.values().all(|r| r.up)
    }

    /// Records a delivery to a sink.
    pub fn record_delivery(
        &self,
        sink: &str,
        result: &'static str,
        accepted: u64,
        dropped: u64,
        summary: String,
    ) {
        let mut g = self.lock();
        let st = g.sinks.entry(sink.to_string()).or_default();
        st.accepted += accepted;
        st.dropped += dropped;
        *st.deliveries.entry(result).or_default() += 1;
        st.last_summary = Some(summary);
    }

    /// Records the last idle-stop pass (the JSON `/api/idle` serves).
    pub fn set_idle(&self, v: serde_json::Value) {
        self.lock().idle = Some(Arc::new(v));
    }

    /// The last idle-stop pass, if a GPU read has happened.
    pub fn idle(&self) -> Option<Arc<serde_json::Value>> {
        self.lock().idle.clone()
    }

    /// A copy of every collector's state.
    pub fn collectors(&self) -> BTreeMap<String, CollectorState> {
        self.lock().collectors.clone()
    }

    /// A copy of every SkyPilot request's state.
    pub fn requests(&self) -> BTreeMap<&'static str, RequestState> {
        self.lock().requests.clone()
    }

    /// A copy of every sink's counts.
    pub fn sinks(&self) -> BTreeMap<String, SinkState> {
        self.lock().sinks.clone()
    }

    /// The samples of one collector's last good run.
    pub fn samples_of(&self, collector: &str) -> Arc<Vec<Sample>> {
        self.lock()
            .collectors
            .get(collector)
            .map(|s| Arc::clone(&s.samples))
            .unwrap_or_default()
    }

    /// What is not ready: each collector and SkyPilot request that has not succeeded within
    /// two of its intervals. Empty when ready.
    pub fn not_ready(&self, now: Instant) -> Vec<String> {
        let g = self.lock();
        let fresh = |at: Option<Instant>, interval: Duration| {
            at.is_some_and(|t| now.saturating_duration_since(t) <= interval * 2)
        };
        let mut out = Vec::new();
        for (name, st) in &g.collectors {
            if !fresh(st.last_success_at, st.interval) {
                out.push(match (&st.last_success_at, &st.last_error) {
                    (None, None) => format!("{name}: no successful run yet"),
                    (_, Some(e)) => {
                        format!("{name}: no success within 2 intervals; last error: {e}")
                    }
                    (Some(_), None) => format!("{name}: no success within 2 intervals"),
                });
            }
        }
        for (name, st) in &g.requests {
            if !fresh(st.last_success_at, st.interval) {
                out.push(match &st.last_error {
                    Some(e) => format!(
                        "skypilot {name}: no good answer within 2 intervals; last error: {e}"
                    ),
                    None => format!("skypilot {name}: no good answer yet"),
                });
            }
        }
        out
    }

    /// The fleet part of `/metrics` (every collector's samples), rendered once per change.
    pub fn fleet_exposition(&self, format: Format) -> Arc<String> {
        let (version, samples) = {
            let g = self.lock();
            if let Some((v, f, text)) = &g.cache
                && *v == g.version
                && *f == format
            {
                return Arc::clone(text);
            }
            let samples: Vec<Arc<Vec<Sample>>> = g
                .collectors
                .values()
                .map(|s| Arc::clone(&s.samples))
                .collect();
            (g.version, samples)
        };
        // Render outside the lock: a 10,000-series render must not hold up the collectors.
        let all: Vec<Sample> = samples.iter().flat_map(|s| s.iter().cloned()).collect();
        let text = Arc::new(exposition::render_families(&all, &[], format));
        let mut g = self.lock();
        if g.version == version {
            g.cache = Some((version, format, Arc::clone(&text)));
        }
        text
    }

    /// skydeck's own health samples: per collector, per SkyPilot request, per sink.
    pub fn health_samples(&self, at: Timestamp) -> Vec<Sample> {
        let g = self.lock();
        let mut out = Vec::new();
        for (name, st) in &g.collectors {
            let tag = |s: Sample| s.tag("collector", name.clone());
            out.push(tag(Sample::of(
                &c::COLLECTOR_UP,
                f64::from(u8::from(st.up)),
                at,
            )));
            out.push(tag(Sample::of(
                &c::COLLECTOR_DURATION,
                st.last_duration.as_secs_f64(),
                at,
            )));
            out.push(tag(Sample::of(
                &c::COLLECTOR_SAMPLES,
                st.samples.len() as f64,
                at,
            )));
            if let Some(t) = st.last_success {
                out.push(tag(Sample::of(
                    &c::COLLECTOR_LAST_SUCCESS,
                    t.as_millisecond() as f64 / 1000.0,
                    at,
                )));
            }
            for (result, n) in [("ok", st.runs_ok), ("failed", st.runs_failed)] {
                out.push(tag(Sample::of(&c::COLLECTOR_RUNS, n as f64, at)).tag("result", result));
            }
        }
        for (name, st) in &g.requests {
            let tag = |s: Sample| s.tag("request", *name);
            out.push(tag(Sample::of(
                &c::SKYPILOT_REQUEST_UP,
                f64::from(u8::from(st.up)),
                at,
            )));
            if let Some(t) = st.last_success {
                out.push(tag(Sample::of(
                    &c::SKYPILOT_REQUEST_LAST_SUCCESS,
                    t.as_millisecond() as f64 / 1000.0,
                    at,
                )));
            }
            for (result, n) in [("ok", st.ok), ("failed", st.failed)] {
                out.push(
                    tag(Sample::of(&c::SKYPILOT_REQUESTS, n as f64, at)).tag("result", result),
                );
            }
        }
        for (name, st) in &g.sinks {
            for (result, n) in [("accepted", st.accepted), ("dropped", st.dropped)] {
                out.push(
                    Sample::of(&c::SINK_POINTS, n as f64, at)
                        .tag("sink", name.clone())
                        .tag("result", result),
                );
            }
            for (result, n) in &st.deliveries {
                out.push(
                    Sample::of(&c::SINK_DELIVERIES, *n as f64, at)
                        .tag("sink", name.clone())
                        .tag("result", *result),
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> Timestamp {
        Timestamp::from_second(1_795_434_586).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_run_keeps_the_samples_and_readiness_follows_intervals() {
        let s = Snapshot::default();
        s.register("skypilot", Duration::from_secs(30));
        assert_eq!(
            s.not_ready(Instant::now()),
            ["skypilot: no successful run yet"]
        );
        s.record(
            "skypilot",
            Duration::from_millis(5),
            RunResult::Ok(vec![Sample::of(&c::JOBS_RUNNING, 3.0, at())]),
        );
        assert!(s.not_ready(Instant::now()).is_empty());
        let before = s.fleet_exposition(Format::Text);
        assert!(before.contains("skypilot_jobs_running 3\n"));
        s.record(
            "skypilot",
            Duration::from_secs(1),
            RunResult::Failed("timed out".into()),
        );
        let after = s.fleet_exposition(Format::Text);
        assert!(
            Arc::ptr_eq(&before, &after),
            "unchanged samples reuse the rendering"
        );
        let health = skydeck_core::exposition::render(&s.health_samples(at()), &[], Format::Text);
        assert!(
            health.contains("skydeck_collector_up{collector=\"skypilot\"} 0\n"),
            "{health}"
        );
        assert!(health.contains("result=\"failed\"} 1\n"), "{health}");
        assert!(health.contains("skydeck_collector_last_success_timestamp_seconds"));
        tokio::time::advance(Duration::from_secs(61)).await;
        let nr = s.not_ready(Instant::now());
        assert!(nr[0].contains("timed out"), "{nr:?}");
    }
}
