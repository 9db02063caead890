//! One observation of one metric series, the unit of exchange between collectors and sinks.

use std::borrow::Cow;
use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::catalog::{self, MetricDef};

/// Tags (Datadog) or labels (Prometheus) of a series, sorted by key so output is stable.
pub type Tags = BTreeMap<String, String>;

/// How a metric's value behaves over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// A value that can go up and down (a count of running jobs, a cost over a window).
    Gauge,
    /// A monotonically increasing total.
    Counter,
}

/// One observation of one metric series at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Dotted metric name (`skypilot.jobs.running`); for catalog metrics, the Datadog name.
    pub name: Cow<'static, str>,
    /// The value, in the metric's catalog unit.
    pub value: f64,
    /// The series' tags.
    #[serde(default)]
    pub tags: Tags,
    /// Gauge or counter.
    #[serde(default = "default_kind")]
    pub kind: MetricKind,
    /// Unit name (Datadog's unit vocabulary), when known.
    #[serde(default)]
    pub unit: Option<Cow<'static, str>>,
    /// When the value was observed: for built-in collectors, the run's start time T.
    pub at: Timestamp,
}

fn default_kind() -> MetricKind {
    MetricKind::Gauge
}

impl Sample {
    /// A sample of a catalog metric; kind and unit come from the catalog.
    pub fn of(def: &'static MetricDef, value: f64, at: Timestamp) -> Self {
        Sample {
            name: Cow::Borrowed(def.name),
            value,
            tags: Tags::new(),
            kind: def.kind.sample_kind(),
            unit: Some(Cow::Borrowed(def.unit.datadog_name())),
            at,
        }
    }

    /// Adds one tag (builder style).
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Adds several tags (builder style).
    pub fn tags<K, V>(mut self, tags: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.tags
            .extend(tags.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// The catalog entry of this sample's metric, if it is a built-in metric.
    pub fn def(&self) -> Option<&'static MetricDef> {
        catalog::find(&self.name)
    }
}
