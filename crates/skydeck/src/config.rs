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
//! token_file = "/var/run/secrets/skypilot/token"
//! timeout = "2m"
//! breakdown = ["cloud", "accelerator"]
//!
//! [[collectors]]
//! name = "github"
//! command = ["python3", "/app/collectors/github.py"]
//! timeout = "1m"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Deserialize;
use skydeck_collect::exposition::OutputFormat;

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
}

impl Default for CollectSection {
    fn default() -> Self {
        CollectSection {
            deadline: default_deadline(),
            default_timeout: default_timeout(),
            kill_grace: default_grace(),
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
    /// File holding the service-account token (a Kubernetes secret mount).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
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
