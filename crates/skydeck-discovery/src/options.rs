//! How discovery runs: which namespaces it looks in, how often, and how Prometheus reaches the
//! exporters it finds ([`TargetMode`]).
//!
//! The defaults follow what the exporters' own deployments use (GPU Operator in `gpu-operator`
//! or `nvidia-gpu-operator` on OpenShift, the standalone chart often in `monitoring` or
//! `kube-system`, CoreWeave's in `cw-exporters`) and what Prometheus expects of an HTTP SD
//! endpoint (it polls every 60 s by default, so a 30 s refresh keeps the list at most one poll
//! behind).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::Error;

/// How a discovered exporter becomes a Prometheus target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetMode {
    /// `<service>.<namespace>.svc:<port>`: for a Prometheus inside the same cluster.
    Service,
    /// `<podIP>:<port>`: for a Prometheus on the cluster's pod network.
    Pod,
    /// Through skydeck (`<proxy_base>/proxy/<cluster>/<namespace>/<pod>/<port><path>`), which
    /// forwards through the context's API server: works from anywhere skydeck can reach.
    Proxy,
}

impl TargetMode {
    /// The mode's name as written in config (`service`, `pod`, `proxy`).
    pub fn as_str(self) -> &'static str {
        match self {
            TargetMode::Service => "service",
            TargetMode::Pod => "pod",
            TargetMode::Proxy => "proxy",
        }
    }
}

impl std::fmt::Display for TargetMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The namespaces searched by default.
pub const DEFAULT_NAMESPACES: &[&str] = &[
    "gpu-operator",
    "kube-system",
    "monitoring",
    "default",
    "nvidia-gpu-operator",
    "cw-exporters",
];
/// Shortest allowed refresh interval: a fleet of 50 contexts must not hammer API servers.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// Longest allowed refresh interval: targets older than this are too stale to be useful.
pub const MAX_REFRESH_INTERVAL: Duration = Duration::from_secs(600);

/// Options of [`crate::Discovery`].
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveryOptions {
    /// Namespaces searched in every context.
    pub namespaces: Vec<String>,
    /// Time between refreshes of one context (±10 % jitter), within 5 s ..= 10 min.
    pub refresh_interval: Duration,
    /// A refresh that takes longer is a failure (the context keeps its last good list).
    pub refresh_timeout: Duration,
    /// The mode of every context without an override.
    pub mode: TargetMode,
    /// Per-context mode overrides, by context name.
    pub context_modes: BTreeMap<String, TargetMode>,
    /// How Prometheus reaches skydeck itself (`http://skydeck.monitoring.svc:9180`); required
    /// when any context uses [`TargetMode::Proxy`].
    pub proxy_base: Option<Url>,
    /// Limit on one proxied scrape, from request to the last byte.
    pub proxy_timeout: Duration,
    /// Largest proxied answer; a larger one is cut off with an error, never buffered whole.
    pub proxy_max_bytes: u64,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        DiscoveryOptions {
            namespaces: DEFAULT_NAMESPACES.iter().map(|s| s.to_string()).collect(),
            refresh_interval: Duration::from_secs(30),
            refresh_timeout: Duration::from_secs(10),
            mode: TargetMode::Proxy,
            context_modes: BTreeMap::new(),
            proxy_base: None,
            proxy_timeout: Duration::from_secs(10),
            proxy_max_bytes: 16 << 20,
        }
    }
}

impl DiscoveryOptions {
    /// The mode of `context`.
    pub fn mode_of(&self, context: &str) -> TargetMode {
        self.context_modes
            .get(context)
            .copied()
            .unwrap_or(self.mode)
    }

    /// Checks the options against the contexts that will be watched.
    ///
    /// # Errors
    ///
    /// [`Error::Option`] naming the option: an interval outside 5 s ..= 10 min, a timeout that
    /// is zero or longer than the interval, an invalid namespace name, a proxy base that is
    /// missing (while a context uses proxy mode), not http(s), or carries a query or user info.
    pub fn validate(&self, contexts: &[String]) -> Result<(), Error> {
        if !(MIN_REFRESH_INTERVAL..=MAX_REFRESH_INTERVAL).contains(&self.refresh_interval) {
            return Err(Error::Option {
                option: "refresh_interval",
                message: format!(
                    "{:?} is outside the allowed range 5s ..= 10m",
                    self.refresh_interval
                ),
            });
        }
        if self.refresh_timeout < Duration::from_millis(100)
            || self.refresh_timeout > self.refresh_interval
        {
            return Err(Error::Option {
                option: "refresh_timeout",
                message: format!(
                    "{:?} must be at least 100ms and at most refresh_interval ({:?})",
                    self.refresh_timeout, self.refresh_interval
                ),
            });
        }
        if self.proxy_timeout < Duration::from_millis(100) {
            return Err(Error::Option {
                option: "proxy_timeout",
                message: format!("{:?} must be at least 100ms", self.proxy_timeout),
            });
        }
        if self.proxy_max_bytes == 0 {
            return Err(Error::Option {
                option: "proxy_max_bytes",
                message: "must be greater than 0".into(),
            });
        }
        if self.namespaces.is_empty() {
            return Err(Error::Option {
                option: "namespaces",
                message: "the list is empty; expected at least one namespace".into(),
            });
        }
        for ns in &self.namespaces {
            if !is_dns_label(ns) {
                return Err(Error::Option {
                    option: "namespaces",
                    message: format!(
                        "`{ns}` is not a namespace name (lowercase letters, digits and `-`, \
                         at most 63 characters)"
                    ),
                });
            }
        }
        let proxied: Vec<&String> = contexts
            .iter()
            .filter(|c| self.mode_of(c) == TargetMode::Proxy)
            .collect();
        match &self.proxy_base {
            None if !proxied.is_empty() => Err(Error::Option {
                option: "proxy_base",
                message: format!(
                    "not set, but context(s) {} use proxy mode; set it to the URL Prometheus \
                     uses to reach skydeck (e.g. http://skydeck.monitoring.svc:9180), or \
                     choose the service or pod mode",
                    proxied
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
            Some(base) => check_proxy_base(base),
            None => Ok(()),
        }
    }
}

fn check_proxy_base(base: &Url) -> Result<(), Error> {
    let bad = |message: String| Error::Option {
        option: "proxy_base",
        message,
    };
    if base.scheme() != "http" && base.scheme() != "https" {
        return Err(bad(format!(
            "scheme `{}`; expected http or https",
            base.scheme()
        )));
    }
    if base.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host".into()));
    }
    if !base.username().is_empty() || base.password().is_some() {
        // It ends up in every target group, which Prometheus shows on its targets page.
        return Err(bad(
            "carries user info; credentials do not belong in a scrape address".into(),
        ));
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err(bad("has a query or fragment; expected a base URL".into()));
    }
    Ok(())
}

/// Whether `s` is an RFC 1123 DNS label (the shape of namespace names).
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_without_proxy_contexts_only_with_base() {
        let o = DiscoveryOptions::default();
        assert!(o.validate(&[]).is_ok());
        let e = o.validate(&["a".into()]).unwrap_err().to_string();
        assert!(e.contains("proxy_base") && e.contains("`a`"), "{e}");
        let o = DiscoveryOptions {
            proxy_base: Some(Url::parse("http://skydeck.monitoring.svc:9180").unwrap()),
            ..Default::default()
        };
        assert!(o.validate(&["a".into()]).is_ok());
        let mut o = DiscoveryOptions::default();
        o.context_modes.insert("a".into(), TargetMode::Pod);
        assert!(o.validate(&["a".into()]).is_ok());
    }

    #[test]
    fn ranges_are_enforced() {
        let o = DiscoveryOptions {
            refresh_interval: Duration::from_secs(1),
            ..Default::default()
        };
        assert!(
            o.validate(&[])
                .unwrap_err()
                .to_string()
                .contains("refresh_interval")
        );
        let o = DiscoveryOptions {
            refresh_timeout: Duration::from_secs(60),
            ..Default::default()
        };
        assert!(
            o.validate(&[])
                .unwrap_err()
                .to_string()
                .contains("refresh_timeout")
        );
        let o = DiscoveryOptions {
            namespaces: vec!["Bad/ns".into()],
            ..Default::default()
        };
        assert!(
            o.validate(&[])
                .unwrap_err()
                .to_string()
                .contains("`Bad/ns`")
        );
        for bad in ["ftp://x", "http://u:p@x", "http://x/?a=b"] {
            let o = DiscoveryOptions {
                proxy_base: Some(Url::parse(bad).unwrap()),
                ..Default::default()
            };
            assert!(o.validate(&[]).is_err(), "{bad}");
        }
    }

    #[test]
    fn mode_serde_is_snake_case() {
        assert_eq!(
            serde_json::to_string(&TargetMode::Proxy).unwrap(),
            "\"proxy\""
        );
        let m: TargetMode = serde_json::from_str("\"service\"").unwrap();
        assert_eq!(m, TargetMode::Service);
    }
}
