//! The state every part of discovery shares: one [`ContextState`] per context and the
//! pre-serialized HTTP SD body.
//!
//! Refreshers write a context's state and, when its targets or stale flag changed, rebuild the
//! body; handlers only read. The body is kept serialized (`Bytes`) behind a lock that is held
//! for a pointer copy, so `/api/service-discovery` never waits on a cluster or on JSON
//! encoding. No lock here is held across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use tokio::sync::{Notify, watch};

use crate::http_sd;
use crate::listing::EndpointApi;
use crate::options::{DiscoveryOptions, TargetMode};
use crate::targets::Exporter;

/// Outcomes of proxied scrapes, in the order of [`ProxyResult::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyResult {
    Ok,
    UpstreamError,
    Timeout,
    TooLarge,
    NotFound,
    Forbidden,
}

impl ProxyResult {
    pub(crate) const ALL: [ProxyResult; 6] = [
        ProxyResult::Ok,
        ProxyResult::UpstreamError,
        ProxyResult::Timeout,
        ProxyResult::TooLarge,
        ProxyResult::NotFound,
        ProxyResult::Forbidden,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ProxyResult::Ok => "ok",
            ProxyResult::UpstreamError => "upstream_error",
            ProxyResult::Timeout => "timeout",
            ProxyResult::TooLarge => "too_large",
            ProxyResult::NotFound => "not_found",
            ProxyResult::Forbidden => "forbidden",
        }
    }
}

/// What the last refreshes of a context found.
#[derive(Debug, Default)]
pub(crate) struct Inner {
    /// The last good list (kept while refreshes fail).
    pub(crate) exporters: Arc<Vec<Exporter>>,
    /// Whether any refresh ever succeeded.
    pub(crate) ever_ok: bool,
    /// Whether the last refresh succeeded.
    pub(crate) up: bool,
    pub(crate) last_success: Option<Timestamp>,
    pub(crate) last_error: Option<String>,
    pub(crate) warning: Option<String>,
    pub(crate) last_duration: Option<Duration>,
    pub(crate) endpoint_api: Option<EndpointApi>,
    /// Completed refreshes, successful or not.
    pub(crate) refreshes: u64,
}

impl Inner {
    /// Serving the last good list while refreshes fail.
    pub(crate) fn stale(&self) -> bool {
        self.ever_ok && !self.up
    }
}

/// One context.
pub(crate) struct ContextState {
    pub(crate) name: String,
    pub(crate) mode: TargetMode,
    /// The API server URL (no credentials), when the context is usable.
    pub(crate) server: Option<String>,
    pub(crate) client: Option<kube::Client>,
    /// Static credentials to scrub from any text we keep.
    pub(crate) secrets: Vec<String>,
    /// Why the context cannot be used at all.
    pub(crate) unavailable: Option<String>,
    pub(crate) inner: Mutex<Inner>,
    pub(crate) proxy_counts: [AtomicU64; 6],
    /// Wakes the refresher for an immediate refresh.
    pub(crate) wake: Notify,
}

impl ContextState {
    pub(crate) fn count(&self, r: ProxyResult) {
        let i = ProxyResult::ALL
            .iter()
            .position(|x| *x == r)
            .expect("listed");
        self.proxy_counts[i].fetch_add(1, Ordering::Relaxed);
    }

    /// `text` with this context's static credentials removed.
    pub(crate) fn scrub(&self, text: String) -> String {
        let mut t = text;
        for s in &self.secrets {
            if t.contains(s.as_str()) {
                t = t.replace(s.as_str(), "<redacted>");
            }
        }
        t
    }
}

/// Everything discovery shares.
pub(crate) struct Shared {
    pub(crate) opts: DiscoveryOptions,
    pub(crate) contexts: Vec<Arc<ContextState>>,
    pub(crate) by_name: HashMap<String, usize>,
    body: RwLock<Bytes>,
    /// Serializes body rebuilds so a slower rebuild cannot overwrite a newer one.
    rebuild: Mutex<()>,
    pub(crate) shutdown: watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn new(opts: DiscoveryOptions, contexts: Vec<Arc<ContextState>>) -> Self {
        let by_name = contexts
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        Shared {
            opts,
            contexts,
            by_name,
            body: RwLock::new(Bytes::from_static(b"[]")),
            rebuild: Mutex::new(()),
            shutdown: watch::channel(false).0,
        }
    }

    pub(crate) fn context(&self, name: &str) -> Option<&Arc<ContextState>> {
        self.by_name.get(name).map(|i| &self.contexts[*i])
    }

    pub(crate) fn body(&self) -> Bytes {
        self.body.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-serializes the HTTP SD body from every context's current list.
    pub(crate) fn rebuild_body(&self) {
        let _one_at_a_time = self.rebuild.lock().unwrap_or_else(|e| e.into_inner());
        let mut groups = Vec::new();
        for c in &self.contexts {
            let (exporters, stale) = {
                let inner = c.inner.lock().unwrap_or_else(|e| e.into_inner());
                if !inner.ever_ok {
                    // A context that never answered is absent, not empty-and-healthy.
                    continue;
                }
                (Arc::clone(&inner.exporters), inner.stale())
            };
            groups.extend(http_sd::groups(
                &c.name,
                c.mode,
                self.opts.proxy_base.as_ref(),
                &exporters,
                stale,
            ));
        }
        let body = http_sd::body(groups);
        *self.body.write().unwrap_or_else(|e| e.into_inner()) = body;
    }
}
