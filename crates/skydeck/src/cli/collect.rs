//! `skydeck collect`: run every enabled collector once, concurrently, under hard deadlines,
//! then deliver the samples to every sink within what is left of the run's deadline.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use futures::FutureExt;
use futures::future::BoxFuture;
use regex::Regex;
use secrecy::ExposeSecret;
use skydeck_collect::collectors::skypilot::idle_stop::decision_samples;
use skydeck_collect::collectors::skypilot::{
    BreakdownKey, DEFAULT_TRAINING_PATTERN, FleetOptions, GpuOptions, QueueOptions, Scope,
    SkypilotCollector, SkypilotOptions,
};
use skydeck_collect::collectors::{ExternalCollector, ExternalSpec};
use skydeck_collect::{CollectError, Collector, Context, Runner};
use skydeck_core::Sample;
use skydeck_secrets::Credentials;
use skydeck_skypilot::target::{CredentialSource, Inputs, resolve, token};

use crate::config::{self, Config};
use crate::sinks::{self, SinkFlags, SinkKind};
use crate::{credentials, duration};

/// Where the fleet metrics come from: flags shared by `collect` and `serve`. Flags override
/// the config file.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Config file [default: /etc/skydeck/config.toml, then ./skydeck.toml, if present].
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// SkyPilot API server URL [default: $SKYPILOT_API_SERVER_ENDPOINT, then api_server.endpoint
    /// in ~/.sky/config.yaml, then http://127.0.0.1:46580]. Basic-auth credentials may be
    /// embedded (https://user:pass@host); they are never printed.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// File holding a SkyPilot service-account token, read when neither
    /// $SKYPILOT_SERVICE_ACCOUNT_TOKEN nor $SKYPILOT_API_KEY is set (then AWS Secrets Manager,
    /// then api_server.service_account_token in ~/.sky/config.yaml).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Split counts and costs by these tags (comma-separated: cloud, region, workspace, user,
    /// accelerator).
    #[arg(long, value_delimiter = ',', value_name = "TAGS")]
    pub breakdown: Vec<String>,
    /// Values kept per breakdown tag; the rest are tagged `other` [default: 10].
    #[arg(long, value_name = "N")]
    pub breakdown_top: Option<usize>,
    /// Regex marking a job as a training run [default: (?i)train|finetune|…].
    #[arg(long, value_name = "REGEX")]
    pub training_pattern: Option<String>,
    /// Read each UP cluster's job queue to count idle clusters (one request per cluster).
    #[arg(long)]
    pub cluster_queues: bool,
    /// If the configured server is unreachable or rejects the credential, use a local API
    /// server on 127.0.0.1:46580 if one answers. Never starts a server.
    #[arg(long)]
    pub fallback_local: bool,
    /// Limit of each collector that sets none [default: 2m].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    pub timeout: Option<Duration>,
    /// Skip the built-in SkyPilot collector (run only external collectors).
    #[arg(long)]
    pub no_skypilot: bool,
    /// Report only clusters and jobs whose name matches one of these globs (`train-*`);
    /// adds to [scope] names and $SKYPILOT_CLUSTER_FILTER.
    #[arg(long, value_delimiter = ',', value_name = "GLOB")]
    pub scope_name: Vec<String>,
    /// Report only clusters and jobs of these SkyPilot users.
    #[arg(long, value_delimiter = ',', value_name = "USER")]
    pub scope_user: Vec<String>,
    /// Report only clusters and jobs in these workspaces.
    #[arg(long, value_delimiter = ',', value_name = "WORKSPACE")]
    pub scope_workspace: Vec<String>,
    /// Report only clusters and jobs on these clouds (aws, gcp, kubernetes, …).
    #[arg(long, value_delimiter = ',', value_name = "CLOUD")]
    pub scope_cloud: Vec<String>,
    /// Report only clusters and jobs in these regions (Kubernetes: contexts); adds to
    /// $SKYPILOT_REGION.
    #[arg(long, value_delimiter = ',', value_name = "REGION")]
    pub scope_region: Vec<String>,
    /// A Prometheus with DCGM data for GPU utilization and idle clusters
    /// [default: [gpu] prometheus_url; without one no GPU metric is emitted].
    #[arg(long, value_name = "URL")]
    pub prometheus_url: Option<url::Url>,
    /// Report only clusters and jobs carrying these SkyPilot labels (key=value or key).
    #[arg(long, value_delimiter = ',', value_name = "LABEL")]
    pub scope_label: Vec<String>,
}

/// Flags of `skydeck collect`. Flags override the config file.
#[derive(Debug, Args)]
pub struct CollectArgs {
    /// Where the metrics come from.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Where samples go; repeat or comma-separate [default: the config's [[sinks]], else
    /// stdout].
    #[arg(long, value_enum, value_delimiter = ',', value_name = "SINK")]
    pub sink: Vec<SinkKind>,
    /// stdout format [default: table on a terminal, json otherwise].
    #[arg(long, value_parser = ["table", "json"])]
    pub format: Option<String>,
    /// Print the Datadog payloads as JSON lines instead of sending them.
    #[arg(long)]
    pub dry_run: bool,
    /// The whole run, delivery included, ends by this deadline [default: 3m].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    pub deadline: Option<Duration>,
}

/// Runs `skydeck collect`. Errors are configuration errors (exit 2); collector and delivery
/// failures are reported and give exit 1.
pub async fn run(args: CollectArgs) -> anyhow::Result<ExitCode> {
    let started = tokio::time::Instant::now();
    let (cfg, source) = config::load(args.source.config.as_deref())?;
    if let config::Source::File(path) = &source {
        tracing::info!(path = %path.display(), "configuration loaded");
    }
    let deadline = args.deadline.unwrap_or(cfg.collect.deadline);
    let creds = credentials::reader(&cfg.aws);
    let flags = SinkFlags {
        sinks: args.sink.clone(),
        format: args.format.as_deref().map(|f| {
            if f == "table" {
                SinkKind::Table
            } else {
                SinkKind::Json
            }
        }),
        dry_run: args.dry_run,
    };
    // Sinks first: a sink that cannot work (no Datadog key) is a configuration error, found
    // before anything is collected.
    let sinks = sinks::build(&cfg, &flags, &creds).await?;
    let mut collectors: Vec<Arc<dyn Collector>> = Vec::new();
    let mut skypilot = None;
    match skypilot_collector(&args.source, &cfg, &creds).await? {
        Some(Ok(c)) => {
            skypilot = Some(Arc::clone(&c));
            collectors.push(c);
        }
        Some(Err(u)) => collectors.push(Arc::new(u)),
        None => {}
    }
    collectors.extend(build_external(&args.source, &cfg));
    if collectors.is_empty() {
        anyhow::bail!(
            "no collector is enabled (the SkyPilot collector is off and no [[collectors]] are \
             configured)"
        );
    }
    // Collectors stop early enough to leave the delivery its share of the deadline.
    let reserve = cfg.collect.delivery_reserve.min(deadline / 2);
    let collect_budget = deadline
        .saturating_sub(reserve)
        .saturating_sub(started.elapsed());
    let mut report = Runner::new(collectors, collect_budget).run().await;

    let run_deadline = started + deadline;
    // The idle stop acts on this run's GPU verdicts, within what is left before delivery.
    let mut idle_lines = Vec::new();
    let mut idle_ok = true;
    if let Some(sk) = &skypilot
        && let Some((gpu, clusters)) = sk.gpu_report()
    {
        let mut policy = cfg.idle.clone();
        policy.dry_run |= args.dry_run;
        let budget = run_deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .saturating_sub(reserve / 2);
        // One-shot: no marks from an earlier run; the lookback covers min_idle instead.
        let marks = Default::default();
        let pass = sk.idle_stop(&policy, &gpu, &clusters, &marks);
        match tokio::time::timeout(budget, pass).await {
            Ok(run) => {
                idle_ok = !run.outcomes.contains(&"failed");
                report
                    .samples
                    .extend(decision_samples(&run.counts(), report.started_at));
                idle_lines = run.summary(&policy);
            }
            Err(_) => {
                idle_ok = false;
                idle_lines.push(format!(
                    "✗ idle: ran out of time after {:.0} s",
                    budget.as_secs_f64()
                ));
            }
        }
    }
    let mut delivered_ok = true;
    let mut lines = Vec::new();
    for sink in &sinks {
        match sink.deliver(&report.samples, run_deadline).await {
            Ok(r) => {
                delivered_ok &= r.dropped == 0;
                if !matches!(sink.name(), "table" | "json") {
                    lines.push(r.summary(sink.name()));
                }
            }
            Err(e) => {
                delivered_ok = false;
                lines.push(format!("✗ {}: {e}", sink.name()));
            }
        }
    }
    for o in &report.outcomes {
        eprintln!("{}", o.summary());
    }
    for l in idle_lines.into_iter().chain(lines) {
        eprintln!("{l}");
    }
    Ok(if report.all_ok() && delivered_ok && idle_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A collector that could not even be set up (its credential could not be read): it runs as a
/// failure, so the other collectors still deliver and the run reports it like any other.
pub struct Unavailable {
    name: &'static str,
    error: String,
}

impl Unavailable {
    /// Why the collector cannot run.
    pub fn reason(&self) -> &str {
        &self.error
    }
}

impl Collector for Unavailable {
    fn name(&self) -> &str {
        self.name
    }
    fn timeout(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn collect<'a>(&'a self, _: &'a Context) -> BoxFuture<'a, Result<Vec<Sample>, CollectError>> {
        async move {
            Err(CollectError::Unavailable {
                reason: self.error.clone(),
            })
        }
        .boxed()
    }
}

/// The external `[[collectors]]`.
pub fn build_external(args: &SourceArgs, cfg: &Config) -> Vec<Arc<dyn Collector>> {
    let default_timeout = args.timeout.unwrap_or(cfg.collect.default_timeout);
    let mut out: Vec<Arc<dyn Collector>> = Vec::new();
    for c in cfg.collectors.iter().filter(|c| c.enabled) {
        out.push(Arc::new(ExternalCollector::new(ExternalSpec {
            name: c.name.clone(),
            argv: c.command.clone(),
            timeout: c.timeout.unwrap_or(default_timeout),
            grace: cfg.collect.kill_grace,
            format: c.format,
            env: c.env.clone(),
            cwd: c.cwd.clone(),
        })));
    }
    out
}

/// The SkyPilot collector (`Ok`), or the reason it cannot run (`Err`, a collector that
/// fails every run), or `None` when disabled.
pub async fn skypilot_collector(
    args: &SourceArgs,
    cfg: &Config,
    creds: &Credentials,
) -> anyhow::Result<Option<Result<Arc<SkypilotCollector>, Unavailable>>> {
    let default_timeout = args.timeout.unwrap_or(cfg.collect.default_timeout);
    let sk = &cfg.skypilot;
    if sk.enabled && !args.no_skypilot {
        let opts = skypilot_options(args, cfg, default_timeout)?;
        let spec = credentials::skypilot_token(
            args.token_file.as_deref().or(sk.token_file.as_deref()),
            sk.token_aws_secret.as_deref(),
            "[skypilot] token_aws_secret",
        )?;
        match creds.get(&spec).await {
            Ok(found) => {
                let credential = found.map(|r| {
                    token(
                        r.value.expose_secret().to_string(),
                        CredentialSource::Provided(r.source.to_string()),
                    )
                });
                let endpoint = args.endpoint.as_deref().or(sk.endpoint.as_deref());
                let target = resolve(&Inputs::from_process(endpoint, credential))
                    .context("resolving the SkyPilot API server")?;
                tracing::info!(
                    endpoint = %target.endpoint,
                    source = %target.endpoint.source,
                    credential = %target.credential_source(),
                    "SkyPilot API server"
                );
                if !opts.scope.is_empty() {
                    tracing::info!(scope = %opts.scope.describe(), "reporting only part of the fleet");
                }
                return Ok(Some(Ok(Arc::new(SkypilotCollector::new(target, opts)))));
            }
            Err(e) => {
                return Ok(Some(Err(Unavailable {
                    name: "skypilot",
                    error: format!("cannot read the SkyPilot token: {e}"),
                })));
            }
        }
    }
    Ok(None)
}

fn skypilot_options(
    args: &SourceArgs,
    cfg: &Config,
    default_timeout: Duration,
) -> anyhow::Result<SkypilotOptions> {
    let sk = &cfg.skypilot;
    let breakdown_names = if args.breakdown.is_empty() {
        &sk.breakdown
    } else {
        &args.breakdown
    };
    let breakdown = breakdown_names
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| BreakdownKey::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--breakdown: {e}"))?;
    let pattern = args
        .training_pattern
        .as_deref()
        .or(sk.training_pattern.as_deref())
        .unwrap_or(DEFAULT_TRAINING_PATTERN);
    let training_pattern = Regex::new(pattern)
        .with_context(|| format!("--training-pattern {pattern:?} is not a valid regex"))?;
    let top = args.breakdown_top.unwrap_or(sk.breakdown_top);
    if top == 0 {
        anyhow::bail!("--breakdown-top must be at least 1");
    }
    let timeout = args.timeout.or(sk.timeout).unwrap_or(default_timeout);
    Ok(SkypilotOptions {
        timeout,
        fleet: FleetOptions {
            breakdown,
            breakdown_top: top,
            training_pattern,
        },
        cluster_queues: (args.cluster_queues || sk.cluster_queues).then(QueueOptions::default),
        fallback_local: args.fallback_local || sk.fallback_local,
        client: skydeck_skypilot::ClientOptions {
            call_timeout: timeout,
            ..Default::default()
        },
        scope: scope(args, &cfg.scope)?,
        gpu: gpu_options(args, &cfg.gpu, cfg.idle.min_idle)?,
    })
}

/// The GPU utilization source: `--prometheus-url`, else `[gpu] prometheus_url`.
fn gpu_options(
    args: &SourceArgs,
    g: &config::GpuSection,
    min_idle: Duration,
) -> anyhow::Result<Option<GpuOptions>> {
    let Some(url) = args
        .prometheus_url
        .clone()
        .or_else(|| g.prometheus_url.clone())
    else {
        return Ok(None);
    };
    let auth = match &g.prometheus_token_file {
        Some(path) => {
            let t = std::fs::read_to_string(path).with_context(|| {
                format!(
                    "[gpu] prometheus_token_file: cannot read {}",
                    path.display()
                )
            })?;
            skydeck_gpu::PrometheusAuth::Bearer(secrecy::SecretString::from(t.trim().to_string()))
        }
        None => skydeck_gpu::PrometheusAuth::None,
    };
    let prometheus =
        skydeck_gpu::PrometheusClient::new(url, auth, skydeck_gpu::PrometheusOptions::default())
            .map_err(|e| anyhow::anyhow!("--prometheus-url: {e}"))?;
    Ok(Some(GpuOptions {
        prometheus,
        lookback: g.window.max(min_idle),
        step: g.step,
        matchers: g.matchers.clone(),
        utilization: utilization_options(g),
    }))
}

/// How GPU data is judged (`[gpu]` window, threshold and match label), for either source.
pub fn utilization_options(g: &config::GpuSection) -> skydeck_gpu::UtilizationOptions {
    skydeck_gpu::UtilizationOptions {
        window: g.window,
        threshold: g.idle_threshold_percent / 100.0,
        matching: skydeck_gpu::MatchOptions {
            vm_label: g.match_label.trim().to_string(),
            ..Default::default()
        },
    }
}

/// The scope: `[scope]`, the `--scope-*` flags and seed 001's `SKYPILOT_CLUSTER_FILTER` and
/// `SKYPILOT_REGION`, all together.
fn scope(args: &SourceArgs, s: &config::ScopeSection) -> anyhow::Result<Scope> {
    let join = |a: &[String], b: &[String]| -> Vec<String> {
        a.iter()
            .chain(b)
            .filter(|v| !v.trim().is_empty())
            .cloned()
            .collect()
    };
    let env = |k: &str| std::env::var(k).ok();
    Scope::default()
        .names(&join(&s.names, &args.scope_name))
        .and_then(|x| x.users(&join(&s.users, &args.scope_user)))
        .and_then(|x| x.workspaces(&join(&s.workspaces, &args.scope_workspace)))
        .and_then(|x| x.clouds(&join(&s.clouds, &args.scope_cloud)))
        .and_then(|x| x.regions(&join(&s.regions, &args.scope_region)))
        .and_then(|x| x.labels(&join(&s.labels, &args.scope_label)))
        .and_then(|x| {
            x.from_filter_env(
                env("SKYPILOT_CLUSTER_FILTER").as_deref(),
                env("SKYPILOT_REGION").as_deref(),
            )
        })
        .map_err(|e| anyhow::anyhow!("scope: {e}"))
}
