//! `skydeck collect`: run every enabled collector once, concurrently, under hard deadlines.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use regex::Regex;
use skydeck_collect::collectors::skypilot::{
    BreakdownKey, DEFAULT_TRAINING_PATTERN, FleetOptions, QueueOptions, SkypilotCollector,
    SkypilotOptions,
};
use skydeck_collect::collectors::{ExternalCollector, ExternalSpec};
use skydeck_collect::{Collector, Runner};
use skydeck_sinks::{JsonLinesSink, Sink, TableSink};
use skydeck_skypilot::target::{Inputs, resolve};

use crate::config::{self, Config};
use crate::duration;

/// Output format on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An aligned table for people (the default on a terminal).
    Table,
    /// One JSON object per sample and line (the default otherwise).
    Json,
}

/// Flags of `skydeck collect`. Flags override the config file.
#[derive(Debug, Args)]
pub struct CollectArgs {
    /// Config file [default: /etc/skydeck/config.toml, then ./skydeck.toml, if present].
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// SkyPilot API server URL [default: $SKYPILOT_API_SERVER_ENDPOINT, then api_server.endpoint
    /// in ~/.sky/config.yaml, then http://127.0.0.1:46580]. Basic-auth credentials may be
    /// embedded (https://user:pass@host); they are never printed.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// File holding a SkyPilot service-account token [default: $SKYPILOT_SERVICE_ACCOUNT_TOKEN,
    /// then $SKYPILOT_API_KEY, then api_server.service_account_token in ~/.sky/config.yaml].
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Output format [default: table on a terminal, json otherwise].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
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
    /// The whole run ends by this deadline [default: 3m].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    pub deadline: Option<Duration>,
    /// Skip the built-in SkyPilot collector (run only external collectors).
    #[arg(long)]
    pub no_skypilot: bool,
}

/// Runs `skydeck collect`. Errors are configuration errors (exit 2); collector failures are
/// reported and give exit 1.
pub async fn run(args: CollectArgs) -> anyhow::Result<ExitCode> {
    let (cfg, source) = config::load(args.config.as_deref())?;
    if let config::Source::File(path) = &source {
        tracing::info!(path = %path.display(), "configuration loaded");
    }
    let collectors = build_collectors(&args, &cfg)?;
    if collectors.is_empty() {
        anyhow::bail!(
            "no collector is enabled (the SkyPilot collector is off and no [[collectors]] are configured)"
        );
    }
    let deadline = args.deadline.unwrap_or(cfg.collect.deadline);

    let report = Runner::new(collectors, deadline).run().await;

    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Json
    });
    let sink: Box<dyn Sink> = match format {
        Format::Table => Box::new(TableSink::new(Box::new(std::io::stdout()))),
        Format::Json => Box::new(JsonLinesSink::new(Box::new(std::io::stdout()))),
    };
    let delivered = sink.deliver(&report.samples).await;

    for o in &report.outcomes {
        eprintln!("{}", o.summary());
    }
    let sink_ok = match delivered {
        Ok(r) => r.dropped == 0,
        Err(e) => {
            eprintln!("✗ {}: {e}", sink.name());
            false
        }
    };
    Ok(if report.all_ok() && sink_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn build_collectors(args: &CollectArgs, cfg: &Config) -> anyhow::Result<Vec<Arc<dyn Collector>>> {
    let mut out: Vec<Arc<dyn Collector>> = Vec::new();
    let default_timeout = args.timeout.unwrap_or(cfg.collect.default_timeout);
    let sk = &cfg.skypilot;
    if sk.enabled && !args.no_skypilot {
        let endpoint = args.endpoint.as_deref().or(sk.endpoint.as_deref());
        let token_file = args.token_file.as_deref().or(sk.token_file.as_deref());
        let target = resolve(&Inputs::from_process(endpoint, token_file))
            .context("resolving the SkyPilot API server")?;
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
        let opts = SkypilotOptions {
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
        };
        tracing::info!(endpoint = %target.endpoint, source = %target.endpoint.source, credential = %target.credential_source(), "SkyPilot API server");
        out.push(Arc::new(SkypilotCollector::new(target, opts)));
    }
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
    Ok(out)
}
