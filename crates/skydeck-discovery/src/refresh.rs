//! The background refresher of one context: list, record, sleep (interval ±10 % jitter, so 50
//! contexts started together do not hit their API servers in lockstep), repeat.
//!
//! Each refresh runs under the context's own timeout; a hung, 403ing, garbage-returning or
//! vanished API server therefore only marks its own context down: it keeps its last good
//! targets (labelled stale), the HTTP SD body of the other contexts is untouched, and the
//! error is logged when it changes, not on every interval.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::listing::{self, ListError, Listing};
use crate::state::{ContextState, Shared};

/// `e` and its sources, joined with `: `, skipping a source whose text the previous one
/// already contains (kube and hyper often repeat the inner message).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cur = s.source();
    }
    text
}

fn jittered(interval: Duration) -> Duration {
    let f = 0.9 + fastrand::f64() * 0.2;
    interval.mul_f64(f)
}

/// Runs the refresher of context `idx` until shutdown.
pub(crate) async fn run(shared: Arc<Shared>, idx: usize) {
    let ctx = Arc::clone(&shared.contexts[idx]);
    let Some(client) = ctx.client.clone() else {
        return;
    };
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let cached = lock(&ctx).endpoint_api;
        let started = Instant::now();
        let outcome = tokio::select! {
            r = tokio::time::timeout(
                shared.opts.refresh_timeout,
                listing::list(&client, &shared.opts.namespaces, cached),
            ) => r,
            _ = shutdown.changed() => return,
        };
        let elapsed = started.elapsed();
        let changed = match outcome {
            Ok(Ok(listing)) => succeed(&ctx, listing, elapsed),
            Ok(Err(e)) => fail(&ctx, e, elapsed),
            Err(_) => fail(
                &ctx,
                ListError {
                    message: format!(
                        "the refresh did not finish within {:?} (refresh_timeout)",
                        shared.opts.refresh_timeout
                    ),
                    reset_api: false,
                    forbidden: false,
                },
                elapsed,
            ),
        };
        if changed {
            shared.rebuild_body();
        }
        tokio::select! {
            _ = tokio::time::sleep(jittered(shared.opts.refresh_interval)) => {}
            _ = ctx.wake.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn lock(ctx: &ContextState) -> std::sync::MutexGuard<'_, crate::state::Inner> {
    ctx.inner.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records a good list; whether the HTTP SD body must change.
fn succeed(ctx: &ContextState, listing: Listing, elapsed: Duration) -> bool {
    let warning = listing.warning.map(|w| ctx.scrub(w));
    let mut inner = lock(ctx);
    let was_stale = inner.stale();
    let changed = !inner.ever_ok || was_stale || *inner.exporters != listing.exporters;
    if inner.last_error.is_some() {
        tracing::info!(
            context = %ctx.name,
            targets = listing.exporters.len(),
            "Discovery refresh recovered."
        );
    } else if changed {
        tracing::info!(
            context = %ctx.name,
            targets = listing.exporters.len(),
            endpoint_api = listing.api.as_str(),
            "Discovery targets changed."
        );
    }
    if warning.is_some() && warning != inner.warning {
        tracing::warn!(
            context = %ctx.name,
            warning = warning.as_deref().unwrap_or_default(),
            "Discovery could not read some namespaces."
        );
    }
    inner.exporters = Arc::new(listing.exporters);
    inner.ever_ok = true;
    inner.up = true;
    inner.last_success = Some(Timestamp::now());
    inner.last_error = None;
    inner.warning = warning;
    inner.last_duration = Some(elapsed);
    inner.endpoint_api = Some(listing.api);
    inner.refreshes += 1;
    changed
}

/// Records a failed refresh; whether the HTTP SD body must change.
fn fail(ctx: &ContextState, e: ListError, elapsed: Duration) -> bool {
    let message = ctx.scrub(format!(
        "context {} ({}): {}",
        ctx.name,
        ctx.server.as_deref().unwrap_or("?"),
        e.message
    ));
    let mut inner = lock(ctx);
    let changed = inner.up; // the stale label appears
    if inner.last_error.as_deref() != Some(message.as_str()) {
        tracing::warn!(
            context = %ctx.name,
            error = %message,
            kept_targets = inner.exporters.len(),
            forbidden = e.forbidden,
            "Discovery refresh failed; serving the last good targets."
        );
    }
    inner.up = false;
    inner.last_error = Some(message);
    inner.last_duration = Some(elapsed);
    if e.reset_api {
        inner.endpoint_api = None;
    }
    inner.refreshes += 1;
    changed
}
