//! Turning the configuration into sinks: stdout (table or JSON lines) and Datadog.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context as _;
use clap::ValueEnum;
use skydeck_secrets::Credentials;
use skydeck_sinks::datadog::{DatadogConfig, Limits, Site};
use skydeck_sinks::{DatadogSink, JsonLinesSink, Sink, TableSink};

use crate::config::{Config, DatadogSection, SinkSection, StdoutSection};
use crate::credentials;

/// A sink named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SinkKind {
    /// An aligned table on stdout.
    Table,
    /// JSON lines on stdout.
    Json,
    /// Datadog's metrics intake (settings from the config's datadog sink, DD_* variables).
    Datadog,
}

/// Command-line choices that shape the sinks.
#[derive(Debug, Default)]
pub struct SinkFlags {
    /// `--sink`: replaces the config's sinks.
    pub sinks: Vec<SinkKind>,
    /// `--format`: the stdout format.
    pub format: Option<SinkKind>,
    /// `--dry-run`: Datadog payloads are printed, not sent.
    pub dry_run: bool,
}

/// Datadog's default site.
const DEFAULT_SITE: &str = "datadoghq.com";

/// The Datadog site: the config's, else `DD_SITE`, else datadoghq.com.
pub fn datadog_site(dd: &DatadogSection) -> anyhow::Result<Site> {
    let raw = dd
        .site
        .clone()
        .or_else(|| {
            std::env::var("DD_SITE")
                .ok()
                .filter(|s| !s.trim().is_empty())
        })
        .unwrap_or_else(|| DEFAULT_SITE.to_string());
    Site::parse(&raw).map_err(|e| anyhow::anyhow!(e))
}

/// The first Datadog section of the config, or defaults.
pub fn datadog_section(cfg: &Config) -> DatadogSection {
    cfg.sinks
        .iter()
        .find_map(|s| match s {
            SinkSection::Datadog(d) => Some(d.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Builds the Datadog sink; reads the API key now, so a missing key is a configuration error
/// before anything is collected.
pub async fn datadog(
    dd: &DatadogSection,
    creds: &Credentials,
    dry_run: bool,
) -> anyhow::Result<Box<dyn Sink>> {
    let site = datadog_site(dd)?;
    let key = if dry_run {
        // A dry run sends nothing, so it needs no key (handy to inspect payloads anywhere).
        secrecy::SecretString::from(String::new())
    } else {
        let spec = credentials::datadog_api_key(dd)?;
        let found = creds
            .get(&spec)
            .await
            .context("reading the Datadog API key")?
            .context("no Datadog API key")?;
        tracing::info!(source = %found.source, site = %site.name, "Datadog API key");
        found.value
    };
    let mut tags = dd.tags.clone();
    if let Ok(extra) = std::env::var("DD_TAGS") {
        tags.extend(
            extra
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|t| !t.is_empty())
                .map(str::to_string),
        );
    }
    let config = DatadogConfig {
        site,
        api_key: key,
        tags,
        host: dd.host.clone(),
        compression: dd.compression,
        request_timeout: dd.request_timeout.unwrap_or(Duration::from_secs(20)),
        limits: Limits::default(),
    };
    let sink = if dry_run {
        DatadogSink::dry_run(config, Box::new(std::io::stdout()))
    } else {
        DatadogSink::new(config)
    };
    Ok(Box::new(sink.map_err(|e| anyhow::anyhow!(e))?))
}

fn stdout(kind: SinkKind) -> Box<dyn Sink> {
    match kind {
        SinkKind::Table => Box::new(TableSink::new(Box::new(std::io::stdout()))),
        _ => Box::new(JsonLinesSink::new(Box::new(std::io::stdout()))),
    }
}

fn default_stdout(flags: &SinkFlags, section: Option<&StdoutSection>) -> SinkKind {
    flags
        .format
        .or_else(|| match section.and_then(|s| s.format.as_deref()) {
            Some("table") => Some(SinkKind::Table),
            Some("json") => Some(SinkKind::Json),
            _ => None,
        })
        .unwrap_or(if std::io::stdout().is_terminal() {
            SinkKind::Table
        } else {
            SinkKind::Json
        })
}

/// The run's sinks: `--sink` if given, else the config's `[[sinks]]`, else stdout.
pub async fn build(
    cfg: &Config,
    flags: &SinkFlags,
    creds: &Credentials,
) -> anyhow::Result<Vec<Box<dyn Sink>>> {
    let mut out: Vec<Box<dyn Sink>> = Vec::new();
    if !flags.sinks.is_empty() {
        for kind in &flags.sinks {
            match kind {
                SinkKind::Datadog => {
                    out.push(datadog(&datadog_section(cfg), creds, flags.dry_run).await?)
                }
                k => out.push(stdout(flags.format.unwrap_or(*k))),
            }
        }
    } else if !cfg.sinks.is_empty() {
        for s in &cfg.sinks {
            match s {
                SinkSection::Datadog(dd) => out.push(datadog(dd, creds, flags.dry_run).await?),
                SinkSection::Stdout(st) => out.push(stdout(default_stdout(flags, Some(st)))),
            }
        }
    } else {
        out.push(stdout(default_stdout(flags, None)));
    }
    Ok(out)
}
