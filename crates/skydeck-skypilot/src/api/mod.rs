//! Wire types of the SkyPilot API-server endpoints skydeck uses (skypilot 0.14.1).
//!
//! Every record type ignores fields it does not name (the server adds fields over time) and
//! treats an absent field like `null` (the server omits `None` fields of cluster records).
//! Enums have an `Other` variant so a status added by a newer server is counted, not fatal.

mod cost;
mod health;
mod jobs;
mod launch;
mod queue;
mod request;
mod status;
mod stop;

pub use cost::{CostRecord, CostReportQuery};
pub use health::Health;
pub use jobs::{JobsQueue, JobsQueueQuery, ManagedJobRecord, ManagedJobStatus};
pub use launch::{DownBody, LAUNCH_PATH, LaunchBody, LaunchResult, RequestSummary};
pub use queue::{ClusterJob, ClusterJobStatus, ClusterQueueQuery};
pub use request::{REQUEST_NAME_PREFIX, RequestError, RequestName, RequestPayload, RequestStatus};
pub use status::{ClusterRecord, ClusterStatus, StatusQuery};
pub use stop::{
    AUTOSTOP_PATH, AUTOSTOP_REQUEST_NAME, AutostopBody, AutostopWaitFor, DOWN_PATH,
    DOWN_REQUEST_NAME, STOP_PATH, STOP_REQUEST_NAME, StopBody,
};

/// SkyPilot labels of a cluster or a managed job (`labels:` of the task's resources): a JSON
/// object of strings. Decoded leniently: `null` is no labels, and a non-string value is kept
/// as its JSON text, so an odd label never fails a whole collection.
pub type Labels = std::collections::BTreeMap<String, String>;

pub(crate) fn lenient_labels<'de, D>(d: D) -> Result<Labels, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    let raw: Option<serde_json::Value> = Option::deserialize(d)?;
    let mut out = Labels::new();
    if let Some(serde_json::Value::Object(map)) = raw {
        for (k, v) in map {
            let v = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            out.insert(k, v);
        }
    }
    Ok(out)
}

/// Parses the leading `<n>x` of a SkyPilot resources string (`2x[spot](gpus=H100:8, …)`).
pub fn leading_node_count(resources: &str) -> Option<u32> {
    let digits: &str = resources
        .split_once('x')
        .map(|(n, _)| n.trim())
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))?;
    digits.parse().ok()
}

/// True when a SkyPilot resources string carries the spot marker (`[spot]` in cluster
/// resources, `[Spot]` in requested resources).
pub fn is_spot(resources: &str) -> bool {
    resources.to_ascii_lowercase().contains("[spot]")
}

/// Parses the Python dict repr SkyPilot uses for a cluster's accelerators (`"{'A100': 8}"`,
/// `"None"` for CPU-only clusters) into name/count pairs.
pub fn parse_accelerators(repr: &str) -> Vec<(String, f64)> {
    let inner = repr.trim();
    let Some(inner) = inner.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
        return Vec::new();
    };
    inner
        .split(',')
        .filter_map(|pair| {
            let (name, count) = pair.split_once(':')?;
            let name = name
                .trim()
                .trim_matches(|c| c == '\'' || c == '"')
                .to_string();
            let count: f64 = count.trim().parse().ok()?;
            (!name.is_empty()).then_some((name, count))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_strings() {
        assert_eq!(
            leading_node_count("2x[spot](gpus=A100:8, p4d.24xlarge, ...)"),
            Some(2)
        );
        assert_eq!(leading_node_count("1x[A10G:4][Spot]"), Some(1));
        assert_eq!(leading_node_count("12x(cpus=8, ...)"), Some(12));
        assert_eq!(leading_node_count("-"), None);
        assert_eq!(leading_node_count("(gpus=x)"), None);
        assert!(is_spot("1x[A10G:4][Spot]"));
        assert!(is_spot("2x[spot](gpus=A100:8)"));
        assert!(!is_spot("2x(gpus=H100:8, p5.48xlarge, ...)"));
    }

    #[test]
    fn accelerator_reprs() {
        assert_eq!(
            parse_accelerators("{'A100': 8}"),
            vec![("A100".into(), 8.0)]
        );
        assert_eq!(
            parse_accelerators("{'H100': 8, 'L4': 0.5}"),
            vec![("H100".into(), 8.0), ("L4".into(), 0.5)]
        );
        assert!(parse_accelerators("None").is_empty());
        assert!(parse_accelerators("{}").is_empty());
    }
}
