//! What discovery reports about itself: [`ContextStatus`] for logs and a console, and
//! catalog samples (`skydeck_core::catalog::DISCOVERY_*`, `PROXY_REQUESTS`) for the metrics
//! sinks.
//!
//! A context that never answered reports `up=0`, `targets=0` and no last-success sample, so a
//! dashboard can tell "never worked" from "worked until T".

use std::sync::atomic::Ordering;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use skydeck_core::Sample;
use skydeck_core::catalog::{
    DISCOVERY_CONTEXT_STALE, DISCOVERY_CONTEXT_UP, DISCOVERY_LAST_SUCCESS,
    DISCOVERY_REFRESH_DURATION, DISCOVERY_TARGETS, PROXY_REQUESTS,
};

use crate::options::TargetMode;
use crate::state::{ContextState, ProxyResult, Shared};

/// The state of one context.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContextStatus {
    /// The context's name.
    pub name: String,
    /// How its exporters become targets.
    pub mode: TargetMode,
    /// The API server URL, when the context could be loaded.
    pub server: Option<String>,
    /// Whether the last refresh succeeded.
    pub up: bool,
    /// Whether its targets are the last good list while refreshes fail.
    pub stale: bool,
    /// Exporter endpoints it currently lists (the last good list while stale).
    pub targets: usize,
    /// When the last refresh succeeded.
    pub last_success: Option<Timestamp>,
    /// Why the last refresh failed, or why the context cannot be used; never a credential.
    pub last_error: Option<String>,
    /// A problem that did not fail the refresh (namespaces the credential may not read).
    pub warning: Option<String>,
    /// Wall time of the last refresh.
    pub refresh_duration: Option<Duration>,
    /// `discovery.k8s.io/v1 EndpointSlices` or `core/v1 Endpoints`, once detected.
    pub endpoint_api: Option<&'static str>,
    /// Completed refreshes, successful or not.
    pub refreshes: u64,
}

pub(crate) fn status_of(c: &ContextState) -> ContextStatus {
    let inner = c.inner.lock().unwrap_or_else(|e| e.into_inner());
    ContextStatus {
        name: c.name.clone(),
        mode: c.mode,
        server: c.server.clone(),
        up: inner.up,
        stale: inner.stale(),
        targets: if inner.ever_ok {
            inner.exporters.len()
        } else {
            0
        },
        last_success: inner.last_success,
        last_error: c.unavailable.clone().or_else(|| inner.last_error.clone()),
        warning: inner.warning.clone(),
        refresh_duration: inner.last_duration,
        endpoint_api: inner.endpoint_api.map(|a| a.as_str()),
        refreshes: inner.refreshes,
    }
}

pub(crate) fn samples(shared: &Shared, at: Timestamp) -> Vec<Sample> {
    let mut out = Vec::with_capacity(shared.contexts.len() * 11);
    for c in &shared.contexts {
        let s = status_of(c);
        let tag = |sample: Sample| sample.tag("context", s.name.clone());
        out.push(tag(Sample::of(
            &DISCOVERY_CONTEXT_UP,
            f64::from(u8::from(s.up)),
            at,
        )));
        out.push(tag(Sample::of(
            &DISCOVERY_CONTEXT_STALE,
            f64::from(u8::from(s.stale)),
            at,
        )));
        out.push(tag(Sample::of(&DISCOVERY_TARGETS, s.targets as f64, at)));
        if let Some(t) = s.last_success {
            out.push(tag(Sample::of(
                &DISCOVERY_LAST_SUCCESS,
                t.as_millisecond() as f64 / 1000.0,
                at,
            )));
        }
        if let Some(d) = s.refresh_duration {
            out.push(tag(Sample::of(
                &DISCOVERY_REFRESH_DURATION,
                d.as_secs_f64(),
                at,
            )));
        }
        if c.mode == TargetMode::Proxy {
            for (i, r) in ProxyResult::ALL.iter().enumerate() {
                out.push(
                    tag(Sample::of(
                        &PROXY_REQUESTS,
                        c.proxy_counts[i].load(Ordering::Relaxed) as f64,
                        at,
                    ))
                    .tag("result", r.as_str()),
                );
            }
        }
    }
    out
}
