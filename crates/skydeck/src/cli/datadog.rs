//! `skydeck datadog check` and `skydeck datadog sync-metadata`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use skydeck_sinks::datadog::{Client, Compression, DatadogConfig, Limits};

use crate::{config, credentials, sinks};

/// Flags of `skydeck datadog`.
#[derive(Debug, Args)]
pub struct DatadogArgs {
    /// Config file (its first `type = "datadog"` sink gives site and key sources).
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: DatadogCommand,
}

/// Datadog commands.
#[derive(Debug, Subcommand)]
pub enum DatadogCommand {
    /// Validate the API key against the configured site (GET /api/v1/validate).
    Check,
    /// Set every catalog metric's unit, type and description in Datadog
    /// (PUT /api/v1/metrics/{name}; needs an application key: DD_APP_KEY).
    SyncMetadata,
}

/// Runs `skydeck datadog …`.
pub async fn run(args: DatadogArgs) -> anyhow::Result<ExitCode> {
    let (cfg, _) = config::load(args.config.as_deref())?;
    let dd = sinks::datadog_section(&cfg);
    let site = sinks::datadog_site(&dd)?;
    let creds = credentials::reader(&cfg.aws);
    let key = creds
        .get(&credentials::datadog_api_key(&dd)?)
        .await
        .context("reading the Datadog API key")?
        .context("no Datadog API key")?;
    let client = Client::new(&DatadogConfig {
        site: site.clone(),
        api_key: key.value,
        tags: Vec::new(),
        host: None,
        compression: Compression::Gzip,
        request_timeout: std::time::Duration::from_secs(20),
        limits: Limits::default(),
    })
    .map_err(|e| anyhow::anyhow!(e))?;
    match args.command {
        DatadogCommand::Check => match client.validate().await {
            Ok(true) => {
                println!(
                    "✓ the Datadog API key from {} is valid for site {} ({})",
                    key.source,
                    site.name,
                    site.base.as_str().trim_end_matches('/')
                );
                Ok(ExitCode::SUCCESS)
            }
            Ok(false) => {
                println!(
                    "✗ Datadog site {} rejected the API key from {}: check DD_API_KEY and \
                     DD_SITE (a key belongs to one site)",
                    site.name, key.source
                );
                Ok(ExitCode::from(1))
            }
            Err(e) => {
                println!("✗ {e}");
                Ok(ExitCode::from(1))
            }
        },
        DatadogCommand::SyncMetadata => {
            let app = creds
                .get(&credentials::datadog_app_key(&dd)?)
                .await
                .context("reading the Datadog application key")?
                .context("no Datadog application key")?;
            let results = client
                .sync_metadata(&app.value, skydeck_core::catalog::ALL)
                .await;
            let mut failed = 0;
            for r in &results {
                match &r.result {
                    Ok(()) => println!("✓ {}", r.metric),
                    Err(e) => {
                        failed += 1;
                        println!("✗ {}: {e}", r.metric);
                    }
                }
            }
            println!(
                "{} of {} metrics updated on {}",
                results.len() - failed,
                results.len(),
                site.name
            );
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
