//! `skydeck serve`: the fleet exporter for Prometheus (and a Datadog pusher), with service
//! discovery of every DCGM exporter in the Kubernetes contexts SkyPilot may use.
//!
//! This file only turns flags and the config file into [`skydeck_serve::ServeOptions`],
//! collectors, sinks and a [`skydeck_discovery::Discovery`]; the schedule, the snapshot and
//! the routes live in `skydeck-serve`, discovery in `skydeck-discovery`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::serve::ListenerExt;
use clap::Args;
use secrecy::SecretString;
use skydeck_discovery::{
    ContextSet, Discovery, DiscoveryOptions, TargetMode, default_kubeconfig_paths,
};
use skydeck_serve::{Intervals, Serve, ServeOptions, Sources};
use skydeck_sinks::Sink;

use super::collect::{SourceArgs, build_external, skypilot_collector};
use crate::config::{self, Config, SinkSection};
use crate::{credentials, duration, sinks};

/// Flags of `skydeck serve`. Flags override the config file's `[serve]` and `[discovery]`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where the metrics come from.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Address to listen on [default: 0.0.0.0:9180].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// File holding the bearer token every route but /healthz requires [default: no auth].
    #[arg(long, value_name = "PATH")]
    pub auth_token_file: Option<PathBuf>,
    /// Refresh interval of SkyPilot's /status [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    pub status_interval: Option<Duration>,
    /// Refresh interval of /jobs/queue/v2 [default: 1m].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    pub jobs_interval: Option<Duration>,
    /// Refresh interval of /cost_report [default: 10m].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    pub cost_interval: Option<Duration>,
    /// Interval of the external [[collectors]] [default: 1m].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    pub collectors_interval: Option<Duration>,
    /// Push every collection to Datadog (the config's datadog sink and DD_* variables)
    /// [default: the config's datadog [[sinks]]].
    #[arg(long)]
    pub datadog: bool,
    /// Print the Datadog payloads instead of sending them, and submit no idle-stop request.
    #[arg(long)]
    pub dry_run: bool,
    /// Turn DCGM exporter discovery off.
    #[arg(long)]
    pub no_discovery: bool,
    /// Kubeconfig file; repeat for several [default: $KUBECONFIG, then ~/.kube/config].
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Vec<PathBuf>,
    /// Kubernetes context to discover in; repeat [default: the SkyPilot config's
    /// kubernetes.allowed_contexts, then the kubeconfig's current context].
    #[arg(long, value_name = "NAME")]
    pub context: Vec<String>,
    /// How Prometheus reaches the exporters: service, pod or proxy [default: proxy].
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    pub discovery_mode: Option<TargetMode>,
    /// The URL Prometheus reaches this serve at, for proxy-mode targets
    /// [default: http://<listen address>].
    #[arg(long, value_name = "URL")]
    pub proxy_base: Option<url::Url>,
}

fn parse_mode(s: &str) -> Result<TargetMode, String> {
    match s {
        "service" => Ok(TargetMode::Service),
        "pod" => Ok(TargetMode::Pod),
        "proxy" => Ok(TargetMode::Proxy),
        _ => Err(format!(
            "{s:?} is not a target mode; expected service, pod or proxy"
        )),
    }
}

/// Runs `skydeck serve` until SIGTERM or SIGINT.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let (cfg, source) = config::load(args.source.config.as_deref())?;
    if let config::Source::File(path) = &source {
        tracing::info!(path = %path.display(), "configuration loaded");
    }
    let creds = credentials::reader(&cfg.aws);
    let sv = &cfg.serve;
    let listen = args.listen.unwrap_or(sv.listen);
    let auth_token = match args
        .auth_token_file
        .as_deref()
        .or(sv.auth_token_file.as_deref())
    {
        Some(path) => {
            let t = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the auth token file {}", path.display()))?;
            if t.trim().is_empty() {
                anyhow::bail!("the auth token file {} is empty", path.display());
            }
            Some(SecretString::from(t.trim().to_string()))
        }
        None => None,
    };
    let intervals = Intervals {
        status: args.status_interval.unwrap_or(sv.status_interval),
        jobs: args.jobs_interval.unwrap_or(sv.jobs_interval),
        cost: args.cost_interval.unwrap_or(sv.cost_interval),
        queues: sv.queues_interval,
        collectors: args.collectors_interval.unwrap_or(sv.collectors_interval),
        gpu: cfg.gpu.interval,
    };

    let push = push_sinks(&args, &cfg, &creds).await?;
    let skypilot = match skypilot_collector(&args.source, &cfg, &creds).await? {
        Some(Ok(c)) => Some(c),
        Some(Err(u)) => anyhow::bail!("{}", u.reason()),
        None => None,
    };
    let collectors: Vec<_> = build_external(&args.source, &cfg)
        .into_iter()
        .map(|c| {
            let interval = intervals.collectors;
            (c, interval)
        })
        .collect();

    // Bind before anything starts, so a port in use is a clear configuration error.
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let local = listener.local_addr()?;
    let discovery = if args.no_discovery || !cfg.discovery.enabled {
        None
    } else {
        discovery(&args, &cfg, local)?
    };
    let gpu_scrape = if cfg.gpu.scrape {
        if args.source.prometheus_url.is_some() {
            anyhow::bail!("--prometheus-url and [gpu] scrape = true: choose one GPU source");
        }
        if discovery.is_none() {
            anyhow::bail!(
                "[gpu] scrape = true needs discovery (a kubeconfig or [discovery] contexts) to \
                 find the DCGM exporters"
            );
        }
        let g = &cfg.gpu;
        let utilization = super::collect::utilization_options(g);
        let scrape = skydeck_gpu::scrape::ScrapeOptions {
            concurrency: g.scrape_concurrency,
            timeout: g.scrape_timeout,
            max_series_gpus: g.max_series_gpus,
            interval: g.interval,
            retention: g.window.max(cfg.idle.min_idle) + g.interval * 2,
            keep_labels: utilization.matching.kept_labels(),
            ..Default::default()
        };
        Some((scrape, utilization))
    } else {
        None
    };
    if skypilot.is_none() && collectors.is_empty() && discovery.is_none() {
        anyhow::bail!(
            "nothing to serve: the SkyPilot collector is off, no [[collectors]] are configured \
             and discovery is off"
        );
    }
    let serve = Serve::start(
        ServeOptions {
            intervals,
            jitter: sv.jitter,
            push_timeout: sv.push_timeout,
            auth_token,
            idle: {
                let mut p = cfg.idle.clone();
                p.dry_run |= args.dry_run;
                p
            },
            gpu_scrape,
        },
        Sources {
            skypilot,
            collectors,
            sinks: push,
            discovery,
        },
    );
    let app = serve.router();
    // The listening line is printed in one write, so a test reading stderr sees it whole.
    let line = format!("skydeck serve listening on http://{local}\n");
    eprint!("{line}");
    // TCP_NODELAY: a proxied scrape streams the API server's TLS records (≤ 16 KB) as they
    // arrive, and with Nagle the last small segment waits for a delayed ACK (~40 ms each).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown_signal());
    let result = server.await;
    // In-flight scrapes have finished; stop the schedule (no new runs start).
    serve.shutdown().await;
    result.context("serving HTTP")?;
    eprintln!("skydeck serve stopped");
    Ok(ExitCode::SUCCESS)
}

/// The sinks every collection is pushed to: Datadog when `--datadog` or a datadog
/// `[[sinks]]` entry says so. stdout sinks make no sense for a daemon and are skipped.
async fn push_sinks(
    args: &ServeArgs,
    cfg: &Config,
    creds: &skydeck_secrets::Credentials,
) -> anyhow::Result<Vec<Arc<dyn Sink>>> {
    let wanted = args.datadog
        || cfg
            .sinks
            .iter()
            .any(|s| matches!(s, SinkSection::Datadog(_)));
    if !wanted {
        return Ok(Vec::new());
    }
    let dd = sinks::datadog_section(cfg);
    let sink = sinks::datadog(&dd, creds, args.dry_run).await?;
    Ok(vec![Arc::from(sink)])
}

/// Kubeconfig files: the flag's or the config's, else kubectl's default.
fn kubeconfig_paths(args: &ServeArgs, cfg: &Config) -> Vec<PathBuf> {
    if !args.kubeconfig.is_empty() {
        return args.kubeconfig.clone();
    }
    if !cfg.discovery.kubeconfig.is_empty() {
        return cfg.discovery.kubeconfig.clone();
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    default_kubeconfig_paths(std::env::var("KUBECONFIG").ok().as_deref(), home.as_deref())
}

fn discovery(
    args: &ServeArgs,
    cfg: &Config,
    local: SocketAddr,
) -> anyhow::Result<Option<Discovery>> {
    let d = &cfg.discovery;
    let paths = kubeconfig_paths(args, cfg);
    let files_named = !args.kubeconfig.is_empty() || !d.kubeconfig.is_empty();
    let contexts_named = !args.context.is_empty() || !d.contexts.is_empty();
    if !paths.iter().any(|p| p.exists()) {
        if files_named {
            anyhow::bail!(
                "discovery: no kubeconfig file exists among {}",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        // Named contexts (`in-cluster`: the pod's service account) need no file.
        if !contexts_named {
            tracing::info!("discovery is off: no kubeconfig ($KUBECONFIG or ~/.kube/config)");
            return Ok(None);
        }
    }
    let wanted: Vec<String> = if !args.context.is_empty() {
        args.context.clone()
    } else if !d.contexts.is_empty() {
        d.contexts.clone()
    } else {
        let env = |k: &str| std::env::var(k).ok();
        let home = std::env::var_os("HOME").map(PathBuf::from);
        match skydeck_skypilot::sky_config::config_path(&env, home.as_deref()) {
            Some(p) => skydeck_skypilot::sky_config::allowed_kubernetes_contexts(&p)
                .context("discovery: reading the contexts SkyPilot may use")?,
            None => Vec::new(),
        }
    };
    let contexts =
        ContextSet::load(&paths, &wanted).context("discovery: loading the kubeconfig")?;
    for (name, why) in contexts.unavailable() {
        tracing::warn!(context = %name, "discovery: {why}");
    }
    let defaults = DiscoveryOptions::default();
    let proxy_base = match args.proxy_base.clone().or_else(|| d.proxy_base.clone()) {
        Some(u) => Some(u),
        None => {
            let host = if local.ip().is_unspecified() {
                SocketAddr::from(([127, 0, 0, 1], local.port()))
            } else {
                local
            };
            Some(url::Url::parse(&format!("http://{host}")).context("proxy base URL")?)
        }
    };
    let opts = DiscoveryOptions {
        namespaces: d.namespaces.clone().unwrap_or(defaults.namespaces.clone()),
        refresh_interval: d.refresh_interval.unwrap_or(defaults.refresh_interval),
        refresh_timeout: d.refresh_timeout.unwrap_or(defaults.refresh_timeout),
        mode: args.discovery_mode.or(d.mode).unwrap_or(defaults.mode),
        context_modes: d.context_modes.clone(),
        proxy_base,
        proxy_timeout: d.proxy_timeout.unwrap_or(defaults.proxy_timeout),
        proxy_max_bytes: d.proxy_max_bytes.unwrap_or(defaults.proxy_max_bytes),
    };
    tracing::info!(contexts = ?contexts.names(), mode = %opts.mode, "discovery");
    Ok(Some(Discovery::start(contexts, opts).context("discovery")?))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
