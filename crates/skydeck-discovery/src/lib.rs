//! Discovery of the NVIDIA DCGM exporters of every Kubernetes context SkyPilot may use, served
//! to Prometheus as HTTP service discovery, plus a scrape proxy through each context's API
//! server for Prometheus instances that cannot reach the pods.
//!
//! * [`ContextSet`] loads the contexts (SkyPilot's `allowed_contexts`, or the current context)
//!   from the kubeconfig with kube's own loader: exec, token, tokenFile, client certificates.
//! * [`Discovery::start`] spawns one refresher per context ([`DiscoveryOptions`]: namespaces,
//!   interval with jitter, timeout, [`TargetMode`]). A failing context keeps its last good
//!   targets, labelled `skydeck_stale="true"`, and never delays or empties another.
//! * [`Discovery::router`] serves `GET /api/service-discovery` (pre-serialized, so answering
//!   is a copy of `Bytes`) and `GET /proxy/{cluster}/{namespace}/{pod}/{port}{path}`, which
//!   serves only targets discovery currently lists.
//! * [`Discovery::samples`] and [`Discovery::status`] report each context's health with the
//!   catalog metrics `skydeck_core::catalog::DISCOVERY_*` and `PROXY_REQUESTS`.
//! * [`Discovery::exporters`] lists the exporters found now and [`Discovery::scrape`] fetches
//!   one through its API server, the proxy's own exchange under the caller's limits: serve's
//!   direct scrape when there is no Prometheus.

mod contexts;
mod dcgm;
mod error;
pub mod http_sd;
mod listing;
mod options;
mod proxy;
mod refresh;
mod router;
mod scrape;
mod state;
mod status;
mod targets;

use std::sync::Arc;

use bytes::Bytes;

pub use contexts::{ContextSet, IN_CLUSTER, default_kubeconfig_paths};
pub use dcgm::DCGM_PORT;
pub use error::Error;
pub use http_sd::TargetGroup;
pub use options::{
    DEFAULT_NAMESPACES, DiscoveryOptions, MAX_REFRESH_INTERVAL, MIN_REFRESH_INTERVAL, TargetMode,
};
pub use router::SD_PATH;
pub use scrape::{ExporterRef, ScrapeError, ScrapeErrorKind};
pub use status::ContextStatus;

use contexts::ContextSource;
use state::{ContextState, Inner, Shared};

/// Running discovery: cheap to clone (an `Arc` inside); every clone sees the same state.
#[derive(Clone)]
pub struct Discovery {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("contexts", &self.shared.by_name.len())
            .finish()
    }
}

impl Discovery {
    /// Validates `opts`, builds one Kubernetes client per usable context and spawns its
    /// background refresher on the current tokio runtime. Never waits on a cluster: until a
    /// context's first refresh succeeds it is simply absent from the HTTP SD body.
    ///
    /// # Errors
    ///
    /// [`Error::Option`] when the options are invalid (see [`DiscoveryOptions::validate`]),
    /// [`Error::NoRuntime`] outside a tokio runtime. A context whose client cannot be built
    /// is reported as unavailable, not an error.
    pub fn start(contexts: ContextSet, opts: DiscoveryOptions) -> Result<Discovery, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        opts.validate(&contexts.names())?;
        let mut states = Vec::with_capacity(contexts.entries.len());
        for entry in contexts.entries {
            let mode = opts.mode_of(&entry.name);
            let (server, client, secrets, unavailable) = match entry.source {
                ContextSource::Ready { config, secrets } => {
                    let server = config.cluster_url.to_string();
                    let server = server.trim_end_matches('/').to_string();
                    // The Client spawns its connection machinery, hence inside the runtime.
                    let built = {
                        let _guard = runtime.enter();
                        kube::Client::try_from(*config)
                    };
                    match built {
                        Ok(c) => (Some(server), Some(c), secrets, None),
                        Err(e) => {
                            let mut why = format!(
                                "context {} ({server}): the Kubernetes client cannot be built: {}",
                                entry.name,
                                refresh::error_chain(&e)
                            );
                            for s in &secrets {
                                why = why.replace(s.as_str(), "<redacted>");
                            }
                            (Some(server), None, secrets, Some(why))
                        }
                    }
                }
                ContextSource::Unavailable(why) => (None, None, Vec::new(), Some(why)),
            };
            if let Some(why) = &unavailable {
                tracing::warn!(context = %entry.name, reason = %why, "Kubernetes context unavailable.");
            }
            states.push(Arc::new(ContextState {
                name: entry.name,
                mode,
                server,
                client,
                secrets,
                unavailable,
                inner: std::sync::Mutex::new(Inner::default()),
                proxy_counts: Default::default(),
                wake: tokio::sync::Notify::new(),
            }));
        }
        if states.is_empty() {
            tracing::warn!(
                "No Kubernetes contexts to watch (no allowed_contexts and no current-context)."
            );
        }
        let shared = Arc::new(Shared::new(opts, states));
        for (i, c) in shared.contexts.iter().enumerate() {
            if c.client.is_some() {
                runtime.spawn(refresh::run(Arc::clone(&shared), i));
            }
        }
        Ok(Discovery { shared })
    }

    /// The current HTTP SD body: a JSON array of target groups, `[]` when there are none.
    pub fn http_sd_body(&self) -> Bytes {
        self.shared.body()
    }

    /// Health samples of every context at `at` (catalog `DISCOVERY_*`, and `PROXY_REQUESTS`
    /// per result for proxy-mode contexts), tagged `context`.
    pub fn samples(&self, at: jiff::Timestamp) -> Vec<skydeck_core::Sample> {
        status::samples(&self.shared, at)
    }

    /// The status of every context, in the order of the [`ContextSet`].
    pub fn status(&self) -> Vec<ContextStatus> {
        self.shared
            .contexts
            .iter()
            .map(|c| status::status_of(c))
            .collect()
    }

    /// Refreshes every usable context now instead of at its next interval (returns at once;
    /// watch [`ContextStatus::refreshes`] to see it done).
    pub fn refresh_now(&self) {
        for c in &self.shared.contexts {
            c.wake.notify_one();
        }
    }

    /// The routes `GET /api/service-discovery` and `GET /proxy/...`, with their own state.
    pub fn router(&self) -> axum::Router {
        router::router(Arc::clone(&self.shared))
    }

    /// Stops every refresher (the last lists stay served).
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }
}
