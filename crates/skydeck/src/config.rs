//! The TOML configuration file (`--config`, else `/etc/skydeck/config.toml`, else
//! `./skydeck.toml`, else built-in defaults). Unknown keys are errors, so a typo is reported
//! instead of silently ignored. Secrets never live here: the file names a token *file*.
//!
//! ```toml
//! [collect]
//! deadline = "3m"          # the whole run
//! kill_grace = "5s"        # SIGTERM → SIGKILL for external collectors
//!
//! [skypilot]
//! endpoint = "https://skypilot.example.com"
//! token_file = "/var/run/secrets/skydeck/skypilot-token"
//! token_aws_secret = "skypilot/api-key"
//! timeout = "2m"
//! breakdown = ["cloud", "accelerator"]
//!
//! [[sinks]]
//! type = "datadog"
//! site = "datadoghq.eu"
//! api_key_file = "/var/run/secrets/skydeck/datadog-api-key"
//! api_key_aws_secret = "datadog/api-key"
//! tags = ["env:prod", "service:skydeck"]
//!
//! [[collectors]]
//! name = "github"
//! command = ["python3", "/app/collectors/github.py"]
//! timeout = "1m"
//!
//! [scope]                  # collect and serve report only this part of the fleet
//! names = ["train-*"]
//! users = ["alice"]
//!
//! [serve]
//! listen = "0.0.0.0:9180"
//! auth_token_file = "/var/run/secrets/skydeck/serve-token"
//! status_interval = "30s"
//! jobs_interval = "1m"
//! cost_interval = "10m"
//!
//! [discovery]
//! mode = "proxy"
//! proxy_base = "http://skydeck.monitoring.svc:9180"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Deserialize;
use skydeck_collect::exposition::OutputFormat;
use skydeck_sinks::datadog::Compression;

use crate::duration::serde_friendly;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Run-wide settings.
    #[serde(default)]
    pub collect: CollectSection,
    /// The built-in SkyPilot collector.
    #[serde(default)]
    pub skypilot: SkypilotSection,
    /// External command collectors.
    #[serde(default)]
    pub collectors: Vec<ExternalSection>,
    /// Where samples go (default: stdout).
    #[serde(default)]
    pub sinks: Vec<SinkSection>,
    /// AWS Secrets Manager access, for `*_aws_secret` keys.
    #[serde(default)]
    pub aws: AwsSection,
    /// The part of the fleet that `collect` and `serve` report.
    #[serde(default)]
    pub scope: ScopeSection,
    /// `skydeck serve`.
    #[serde(default)]
    pub serve: ServeSection,
    /// DCGM exporter discovery in `skydeck serve`.
    #[serde(default)]
    pub discovery: DiscoverySection,
    /// GPU utilization of the fleet.
    #[serde(default)]
    pub gpu: GpuSection,
    /// The opt-in idle stop (default `action = "report"`: decisions are reported only).
    #[serde(default)]
    pub idle: skydeck_gpu::idle::IdlePolicy,
}

/// `[gpu]`: where GPU utilization comes from and when a GPU counts as idle.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSection {
    /// A Prometheus that scrapes the DCGM exporters (`http://prometheus:9090`; basic-auth
    /// credentials may be embedded and are never printed).
    #[serde(default)]
    pub prometheus_url: Option<url::Url>,
    /// File holding a bearer token for that Prometheus.
    #[serde(default)]
    pub prometheus_token_file: Option<PathBuf>,
    /// Extra label matchers for the DCGM selectors, without braces (`job="dcgm-exporter"`).
    #[serde(default)]
    pub matchers: Option<String>,
    /// How long every GPU must stay under the threshold to be idle.
    #[serde(default = "default_gpu_window", with = "serde_friendly")]
    pub window: Duration,
    /// Resolution of the range query; a GPU without a sample for 2 steps is stale.
    #[serde(default = "default_gpu_step", with = "serde_friendly")]
    pub step: Duration,
    /// A GPU under this utilization (percent) is idle.
    #[serde(default = "default_idle_threshold")]
    pub idle_threshold_percent: f64,
    /// The label naming a VM cluster's GPUs (added by your relabeling; or `Hostname`).
    #[serde(default = "default_match_label")]
    pub match_label: String,
    /// How often `serve` reads utilization.
    #[serde(default = "default_gpu_interval", with = "serde_friendly")]
    pub interval: Duration,
    /// `serve` only, without a Prometheus: scrape the DCGM exporters discovery finds through
    /// each context's API server, and forward per-GPU series to the Datadog sink.
    #[serde(default)]
    pub scrape: bool,
    /// Scrapes in flight at once.
    #[serde(default = "default_scrape_concurrency")]
    pub scrape_concurrency: usize,
    /// Limit of one exporter's scrape.
    #[serde(default = "default_scrape_timeout", with = "serde_friendly")]
    pub scrape_timeout: Duration,
    /// GPUs whose series are forwarded to Datadog (the rest are counted, not sent).
    #[serde(default = "default_max_series_gpus")]
    pub max_series_gpus: usize,
}

fn default_scrape_concurrency() -> usize {
    16
}
fn default_scrape_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_max_series_gpus() -> usize {
    2000
}

impl Default for GpuSection {
    fn default() -> Self {
        GpuSection {
            prometheus_url: None,
            prometheus_token_file: None,
            matchers: None,
            window: default_gpu_window(),
            step: default_gpu_step(),
            idle_threshold_percent: default_idle_threshold(),
            match_label: default_match_label(),
            interval: default_gpu_interval(),
            scrape: false,
            scrape_concurrency: default_scrape_concurrency(),
            scrape_timeout: default_scrape_timeout(),
            max_series_gpus: default_max_series_gpus(),
        }
    }
}

fn default_gpu_window() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_gpu_step() -> Duration {
    Duration::from_secs(60)
}
fn default_idle_threshold() -> f64 {
    5.0
}
fn default_match_label() -> String {
    skydeck_gpu::DEFAULT_VM_LABEL.to_string()
}
fn default_gpu_interval() -> Duration {
    Duration::from_secs(60)
}

/// `[scope]`: every criterion that is set must match; any listed value of one may match.
/// `SKYPILOT_CLUSTER_FILTER` and `SKYPILOT_REGION` (seed 001) add to it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeSection {
    /// Cluster or job names (globs: `train-*`).
    #[serde(default)]
    pub names: Vec<String>,
    /// SkyPilot user names.
    #[serde(default)]
    pub users: Vec<String>,
    /// Workspaces.
    #[serde(default)]
    pub workspaces: Vec<String>,
    /// Clouds (`aws`, `kubernetes`), case-insensitive.
    #[serde(default)]
    pub clouds: Vec<String>,
    /// Regions (Kubernetes: contexts), case-insensitive.
    #[serde(default)]
    pub regions: Vec<String>,
    /// SkyPilot labels, `key=value` or `key`.
    #[serde(default)]
    pub labels: Vec<String>,
}

/// `[serve]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeSection {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: std::net::SocketAddr,
    /// File holding the bearer token every route but `/healthz` requires (Prometheus:
    /// `authorization: {credentials_file: …}`); no auth when unset.
    #[serde(default)]
    pub auth_token_file: Option<PathBuf>,
    /// Refresh interval of SkyPilot's `/status`.
    #[serde(default = "default_status_interval", with = "serde_friendly")]
    pub status_interval: Duration,
    /// Refresh interval of `/jobs/queue/v2` (each costs the server a Python subprocess).
    #[serde(default = "default_jobs_interval", with = "serde_friendly")]
    pub jobs_interval: Duration,
    /// Refresh interval of `/cost_report` (the slowest request at scale).
    #[serde(default = "default_cost_interval", with = "serde_friendly")]
    pub cost_interval: Duration,
    /// Refresh interval of the per-cluster `/queue` probe (`cluster_queues`).
    #[serde(default = "default_queues_interval", with = "serde_friendly")]
    pub queues_interval: Duration,
    /// Interval of the external `[[collectors]]`.
    #[serde(default = "default_collectors_interval", with = "serde_friendly")]
    pub collectors_interval: Duration,
    /// Every interval varies by up to this fraction either way (0 to 0.5).
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// Limit of one push to a sink.
    #[serde(default = "default_push_timeout", with = "serde_friendly")]
    pub push_timeout: Duration,
}

impl Default for ServeSection {
    fn default() -> Self {
        ServeSection {
            listen: default_listen(),
            auth_token_file: None,
            status_interval: default_status_interval(),
            jobs_interval: default_jobs_interval(),
            cost_interval: default_cost_interval(),
            queues_interval: default_queues_interval(),
            collectors_interval: default_collectors_interval(),
            jitter: default_jitter(),
            push_timeout: default_push_timeout(),
        }
    }
}

fn default_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([0, 0, 0, 0], 9180))
}
fn default_status_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_jobs_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_cost_interval() -> Duration {
    Duration::from_secs(600)
}
fn default_queues_interval() -> Duration {
    Duration::from_secs(300)
}
fn default_collectors_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_jitter() -> f64 {
    0.1
}
fn default_push_timeout() -> Duration {
    Duration::from_secs(30)
}

/// `[discovery]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverySection {
    /// Serve `/api/service-discovery` and `/proxy/…`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Kubeconfig files (else `$KUBECONFIG`, else `~/.kube/config`).
    #[serde(default)]
    pub kubeconfig: Vec<PathBuf>,
    /// Contexts to watch (else the SkyPilot config's `allowed_contexts`, else the
    /// kubeconfig's current context).
    #[serde(default)]
    pub contexts: Vec<String>,
    /// Namespaces searched in every context.
    #[serde(default)]
    pub namespaces: Option<Vec<String>>,
    /// `service`, `pod` or `proxy` (default).
    #[serde(default)]
    pub mode: Option<skydeck_discovery::TargetMode>,
    /// Per-context modes.
    #[serde(default)]
    pub context_modes: BTreeMap<String, skydeck_discovery::TargetMode>,
    /// How Prometheus reaches this serve (proxy mode's targets); default `http://<listen>`.
    #[serde(default)]
    pub proxy_base: Option<url::Url>,
    /// Time between refreshes of one context.
    #[serde(default, with = "serde_friendly::option")]
    pub refresh_interval: Option<Duration>,
    /// Limit of one context's refresh.
    #[serde(default, with = "serde_friendly::option")]
    pub refresh_timeout: Option<Duration>,
    /// Limit of one proxied scrape.
    #[serde(default, with = "serde_friendly::option")]
    pub proxy_timeout: Option<Duration>,
    /// Largest proxied answer in bytes.
    #[serde(default)]
    pub proxy_max_bytes: Option<u64>,
}

impl Default for DiscoverySection {
    fn default() -> Self {
        DiscoverySection {
            enabled: true,
            kubeconfig: Vec::new(),
            contexts: Vec::new(),
            namespaces: None,
            mode: None,
            context_modes: BTreeMap::new(),
            proxy_base: None,
            refresh_interval: None,
            refresh_timeout: None,
            proxy_timeout: None,
            proxy_max_bytes: None,
        }
    }
}

/// `[[sinks]]`: one destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkSection {
    /// Datadog's metrics intake.
    Datadog(DatadogSection),
    /// stdout, as a table or JSON lines.
    Stdout(StdoutSection),
}

/// `type = "datadog"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatadogSection {
    /// `datadoghq.com`, `datadoghq.eu`, `us3.datadoghq.com`, … or a full URL (a proxy); else
    /// `DD_SITE`, else `datadoghq.com`.
    #[serde(default)]
    pub site: Option<String>,
    /// File holding the API key (after `DD_API_KEY`; a missing file counts as not set).
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// AWS Secrets Manager secret holding the API key (`name` or `name#json_field`).
    #[serde(default)]
    pub api_key_aws_secret: Option<String>,
    /// File holding the application key (`sync-metadata` only; after `DD_APP_KEY`).
    #[serde(default)]
    pub app_key_file: Option<PathBuf>,
    /// AWS Secrets Manager secret holding the application key.
    #[serde(default)]
    pub app_key_aws_secret: Option<String>,
    /// Tags on every series (`env:prod`); `DD_TAGS` adds more.
    #[serde(default)]
    pub tags: Vec<String>,
    /// `gzip` (default) or `zstd`.
    #[serde(default)]
    pub compression: Compression,
    /// Host resource of every series (default: none; fleet metrics belong to no host).
    #[serde(default)]
    pub host: Option<String>,
    /// Limit of one request (default 20 s, the Datadog Agent's).
    #[serde(default, with = "serde_friendly::option")]
    pub request_timeout: Option<Duration>,
}

/// `type = "stdout"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSection {
    /// `table` or `json` (default: table on a terminal, json otherwise).
    #[serde(default)]
    pub format: Option<String>,
}

/// `[aws]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSection {
    /// Region of the secrets (default: the standard AWS chain: `AWS_REGION`, profile, …).
    #[serde(default)]
    pub region: Option<String>,
    /// Limit of loading AWS configuration and of each secret read (default 10 s).
    #[serde(default, with = "serde_friendly::option")]
    pub timeout: Option<Duration>,
}

/// `[collect]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectSection {
    /// The whole run ends by this deadline, whatever the collectors do.
    #[serde(default = "default_deadline", with = "serde_friendly")]
    pub deadline: Duration,
    /// Default timeout of a collector that sets none.
    #[serde(default = "default_timeout", with = "serde_friendly")]
    pub default_timeout: Duration,
    /// Time between SIGTERM and SIGKILL for an external collector's process group.
    #[serde(default = "default_grace", with = "serde_friendly")]
    pub kill_grace: Duration,
    /// Part of the deadline kept for delivery: collectors must finish this much before it.
    #[serde(default = "default_reserve", with = "serde_friendly")]
    pub delivery_reserve: Duration,
}

impl Default for CollectSection {
    fn default() -> Self {
        CollectSection {
            deadline: default_deadline(),
            default_timeout: default_timeout(),
            kill_grace: default_grace(),
            delivery_reserve: default_reserve(),
        }
    }
}

fn default_deadline() -> Duration {
    Duration::from_secs(180)
}
fn default_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_grace() -> Duration {
    Duration::from_secs(5)
}
fn default_reserve() -> Duration {
    Duration::from_secs(30)
}

/// `[skypilot]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkypilotSection {
    /// Run the SkyPilot collector.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// API server URL (else `SKYPILOT_API_SERVER_ENDPOINT`, the SkyPilot config, the default).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// File holding the service-account token (a Kubernetes secret mount), read after
    /// `SKYPILOT_SERVICE_ACCOUNT_TOKEN` and `SKYPILOT_API_KEY`; a missing file counts as not set.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// AWS Secrets Manager secret holding the token (`name` or `name#json_field`).
    #[serde(default)]
    pub token_aws_secret: Option<String>,
    /// Limit of one collection (default: `collect.default_timeout`).
    #[serde(default, with = "serde_friendly::option")]
    pub timeout: Option<Duration>,
    /// Tags that split counts and costs.
    #[serde(default)]
    pub breakdown: Vec<String>,
    /// Values kept per breakdown tag; the rest become `other`.
    #[serde(default = "default_top")]
    pub breakdown_top: usize,
    /// Regex that marks a job as a training run.
    #[serde(default)]
    pub training_pattern: Option<String>,
    /// Read each UP cluster's job queue for `skypilot.clusters.idle`.
    #[serde(default)]
    pub cluster_queues: bool,
    /// Use a local API server when the configured one cannot be used.
    #[serde(default)]
    pub fallback_local: bool,
}

impl Default for SkypilotSection {
    fn default() -> Self {
        SkypilotSection {
            enabled: true,
            endpoint: None,
            token_file: None,
            token_aws_secret: None,
            timeout: None,
            breakdown: Vec::new(),
            breakdown_top: default_top(),
            training_pattern: None,
            cluster_queues: false,
            fallback_local: false,
        }
    }
}

fn yes() -> bool {
    true
}
fn default_top() -> usize {
    10
}

/// `[[collectors]]`: an external command.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalSection {
    /// Name in summaries and in the `collector` tag.
    pub name: String,
    /// argv, run without a shell.
    pub command: Vec<String>,
    /// Limit of one run (default: `collect.default_timeout`).
    #[serde(default, with = "serde_friendly::option")]
    pub timeout: Option<Duration>,
    /// `auto`, `prometheus` or `json`.
    #[serde(default)]
    pub format: OutputFormat,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Set to false to skip this collector.
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// Where the configuration came from.
#[derive(Debug)]
pub enum Source {
    /// This file.
    File(PathBuf),
    /// No file: defaults.
    Defaults,
}

/// Loads the file named by `--config`, or the first default location that exists.
pub fn load(explicit: Option<&Path>) -> anyhow::Result<(Config, Source)> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => match ["/etc/skydeck/config.toml", "skydeck.toml"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
        {
            Some(p) => p,
            None => return Ok((Config::default(), Source::Defaults)),
        },
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let cfg = parse(&text).with_context(|| format!("config file {}", path.display()))?;
    Ok((cfg, Source::File(path)))
}

/// Parses and checks a configuration.
pub fn parse(text: &str) -> anyhow::Result<Config> {
    let cfg: Config = toml::from_str(text)?;
    let mut names = std::collections::HashSet::new();
    names.insert("skypilot".to_string());
    for c in &cfg.collectors {
        if c.command.is_empty() || c.command[0].trim().is_empty() {
            bail!(
                "collector {:?}: `command` must name a program (argv list)",
                c.name
            );
        }
        if c.name.trim().is_empty() {
            bail!("a [[collectors]] entry has an empty `name`");
        }
        if !names.insert(c.name.clone()) {
            bail!(
                "collector name {:?} is used twice (or clashes with `skypilot`)",
                c.name
            );
        }
    }
    for sink in &cfg.sinks {
        if let SinkSection::Stdout(s) = sink
            && let Some(f) = &s.format
            && f != "table"
            && f != "json"
        {
            bail!("[[sinks]] type = \"stdout\": format {f:?} is not `table` or `json`");
        }
    }
    cfg.idle
        .validate()
        .map_err(|e| anyhow::anyhow!("[idle] {e}"))?;
    let t = cfg.gpu.idle_threshold_percent;
    if !(t > 0.0 && t < 100.0) {
        bail!("[gpu] idle_threshold_percent = {t}: expected a percentage above 0 and below 100");
    }
    if cfg.gpu.scrape && cfg.gpu.prometheus_url.is_some() {
        bail!("[gpu] scrape = true and prometheus_url are both set; choose one GPU source");
    }
    if cfg.gpu.scrape_concurrency == 0 {
        bail!("[gpu] scrape_concurrency must be at least 1");
    }
    if cfg.gpu.step >= cfg.gpu.window {
        bail!("[gpu] step must be shorter than window");
    }
    if cfg.gpu.match_label.trim().is_empty() {
        bail!(
            "[gpu] match_label is empty; expected a Prometheus label name such as skypilot_cluster"
        );
    }
    if !(0.0..=0.5).contains(&cfg.serve.jitter) {
        bail!(
            "[serve] jitter = {}: expected a fraction between 0 and 0.5",
            cfg.serve.jitter
        );
    }
    if cfg.collect.delivery_reserve >= cfg.collect.deadline {
        bail!("[collect] delivery_reserve must be shorter than deadline");
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_file() {
        let cfg = parse(
            r#"
            [collect]
            deadline = "5m"
            kill_grace = "2s"
            [skypilot]
            endpoint = "https://sky.example"
            breakdown = ["cloud"]
            timeout = "90s"
            [[collectors]]
            name = "github"
            command = ["python3", "gh.py"]
            timeout = "1m"
            format = "json"
            env = { ORG = "x" }
            "#,
        )
        .unwrap();
        assert_eq!(cfg.collect.deadline, Duration::from_secs(300));
        assert_eq!(cfg.skypilot.timeout, Some(Duration::from_secs(90)));
        assert_eq!(cfg.collectors[0].format, OutputFormat::Json);
        assert_eq!(cfg.collectors[0].timeout, Some(Duration::from_secs(60)));
    }

    #[test]
    fn sinks() {
        let cfg = parse(
            r#"
            [aws]
            region = "eu-west-1"
            [[sinks]]
            type = "datadog"
            site = "datadoghq.eu"
            api_key_aws_secret = "datadog/api-key"
            tags = ["env:prod"]
            compression = "zstd"
            [[sinks]]
            type = "stdout"
            format = "json"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.sinks.len(), 2);
        let SinkSection::Datadog(dd) = &cfg.sinks[0] else {
            panic!()
        };
        assert_eq!(dd.compression, Compression::Zstd);
        assert_eq!(cfg.aws.region.as_deref(), Some("eu-west-1"));
        let e = format!(
            "{:#}",
            parse("[[sinks]]\ntype = \"datadog\"\napi_kee = \"x\"\n").unwrap_err()
        );
        assert!(e.contains("api_kee"), "{e}");
        let e = format!("{:#}", parse("[[sinks]]\ntype = \"kafka\"\n").unwrap_err());
        assert!(e.contains("kafka"), "{e}");
    }

    #[test]
    fn mistakes_are_named() {
        let e = parse("[skypilot]\nendpiont = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("endpiont"), "{e}");
        let e = format!(
            "{:#}",
            parse("[collect]\ndeadline = \"soon\"\n").unwrap_err()
        );
        assert!(e.contains("expected e.g. 30s"), "{e}");
        let e = parse("[[collectors]]\nname = \"a\"\ncommand = []\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("command"), "{e}");
        let e = parse("[[collectors]]\nname = \"skypilot\"\ncommand = [\"x\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("twice"), "{e}");
    }
}
