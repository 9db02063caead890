//! The push to the sinks after each collection (a daemon alternative to the CronJob).
//!
//! Collections never wait on a sink: each one leaves its samples in a pending slot (one per
//! collector, the latest wins), and one task per sink delivers whatever is pending, with
//! skydeck's own health samples, under `push_timeout`. A slow Datadog therefore coalesces
//! pushes instead of queueing them without bound. Every delivery is logged and counted
//! (`skydeck.sink.points`, `skydeck.sink.deliveries`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skydeck_core::Sample;
use skydeck_sinks::Sink;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::Snapshot;

struct SinkSlot {
    pending: Mutex<BTreeMap<String, Arc<Vec<Sample>>>>,
    notify: Notify,
}

/// The handle collections push through.
#[derive(Clone, Default)]
pub(crate) struct Delivery {
    slots: Arc<Vec<Arc<SinkSlot>>>,
}

impl Delivery {
    /// One delivery task per sink.
    pub(crate) fn start(
        sinks: Vec<Arc<dyn Sink>>,
        snapshot: Snapshot,
        timeout: Duration,
        tasks: &mut JoinSet<()>,
        stop: watch::Receiver<bool>,
    ) -> Delivery {
        let mut slots = Vec::new();
        for sink in sinks {
            let slot = Arc::new(SinkSlot {
                pending: Mutex::new(BTreeMap::new()),
                notify: Notify::new(),
            });
            slots.push(Arc::clone(&slot));
            let (snapshot, mut stop) = (snapshot.clone(), stop.clone());
            tasks.spawn(async move {
                loop {
                    tokio::select! {
                        _ = slot.notify.notified() => {}
                        _ = stop.changed() => break,
                    }
                    let batches = std::mem::take(
                        &mut *slot.pending.lock().unwrap_or_else(|p| p.into_inner()),
                    );
                    if batches.is_empty() {
                        continue;
                    }
                    deliver(&*sink, &snapshot, batches, timeout).await;
                }
            });
        }
        Delivery {
            slots: Arc::new(slots),
        }
    }

    /// Leaves samples that are for the sinks only (not in `/metrics`): the per-GPU series.
    pub(crate) fn push_extra(&self, name: &str, samples: Arc<Vec<Sample>>) {
        for slot in self.slots.iter() {
            slot.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.to_string(), Arc::clone(&samples));
            slot.notify.notify_one();
        }
    }

    /// Leaves `collector`'s latest samples for every sink.
    pub(crate) fn push(&self, collector: &str, snapshot: &Snapshot) {
        if self.slots.is_empty() {
            return;
        }
        let samples = snapshot.samples_of(collector);
        for slot in self.slots.iter() {
            slot.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(collector.to_string(), Arc::clone(&samples));
            slot.notify.notify_one();
        }
    }
}

async fn deliver(
    sink: &dyn Sink,
    snapshot: &Snapshot,
    batches: BTreeMap<String, Arc<Vec<Sample>>>,
    timeout: Duration,
) {
    let at = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .unwrap_or_else(|_| jiff::Timestamp::now());
    let mut all: Vec<Sample> = batches.values().flat_map(|b| b.iter().cloned()).collect();
    // Every sample of one push carries the push's time: Datadog keeps one point per series
    // and second, and the collectors' own times differ per request.
    for s in &mut all {
        s.at = at;
    }
    all.extend(snapshot.health_samples(at));
    let deadline = tokio::time::Instant::now() + timeout;
    let n = all.len() as u64;
    match tokio::time::timeout(timeout, sink.deliver(&all, deadline)).await {
        Ok(Ok(r)) => {
            let summary = r.summary(sink.name());
            let result = if r.dropped == 0 { "ok" } else { "partial" };
            if r.dropped == 0 {
                tracing::info!("{summary}");
            } else {
                tracing::warn!("{summary}");
            }
            snapshot.record_delivery(
                sink.name(),
                result,
                r.accepted as u64 + r.printed as u64,
                r.dropped as u64,
                summary,
            );
        }
        Ok(Err(e)) => {
            let summary = format!("✗ {}: {e}", sink.name());
            tracing::warn!("{summary}");
            snapshot.record_delivery(sink.name(), "failed", 0, n, summary);
        }
        Err(_) => {
            let summary = format!(
                "✗ {}: push timed out after {:.0} s",
                sink.name(),
                timeout.as_secs_f64()
            );
            tracing::warn!("{summary}");
            snapshot.record_delivery(sink.name(), "failed", 0, n, summary);
        }
    }
}
