//! skydeck's core data model, shared by collectors, sinks and (later) generators.
//!
//! Collectors produce [`Sample`]s, sinks consume them; neither side knows the other. The
//! [`catalog`] is the single list of every built-in metric with its unit, help text and both
//! names (Datadog and Prometheus), so sinks and dashboards never restate those facts.

pub mod catalog;
pub mod exposition;
pub mod sample;

pub use catalog::{MetricDef, MetricType, Unit};
pub use sample::{MetricKind, Sample, Tags};
