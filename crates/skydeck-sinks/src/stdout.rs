//! Human table and JSON lines on a local stream (stdout by default).

use std::io::Write;
use std::sync::Mutex;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;
use skydeck_core::{Sample, Tags};

use crate::{DeliveryReport, Sink, SinkError};

type Out = Mutex<Box<dyn Write + Send>>;

/// Writes one run's rendering of `points` samples: the stdout sinks' whole delivery.
fn deliver_text(out: &Out, text: &str, points: usize) -> Result<DeliveryReport, SinkError> {
    let mut w = out.lock().unwrap_or_else(|p| p.into_inner());
    w.write_all(text.as_bytes())
        .and_then(|_| w.flush())
        .map_err(|source| SinkError::Io {
            target: "stdout",
            source,
        })?;
    Ok(DeliveryReport {
        accepted: points,
        requests: 1,
        ..Default::default()
    })
}

/// One sample per line: `{"name", "value", "unit", "tags", "timestamp"}` (timestamp in epoch
/// seconds).
pub struct JsonLinesSink {
    out: Out,
}

impl JsonLinesSink {
    /// Writes to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        JsonLinesSink {
            out: Mutex::new(out),
        }
    }
}

#[derive(Serialize)]
struct JsonLine<'a> {
    name: &'a str,
    value: f64,
    unit: Option<&'a str>,
    tags: &'a Tags,
    timestamp: i64,
}

/// Renders one JSON line (without the newline).
pub fn json_line(s: &Sample) -> String {
    serde_json::to_string(&JsonLine {
        name: &s.name,
        value: s.value,
        unit: s.unit.as_deref(),
        tags: &s.tags,
        timestamp: s.at.as_second(),
    })
    .expect("a sample always serializes")
}

impl Sink for JsonLinesSink {
    fn name(&self) -> &str {
        "json"
    }

    fn deliver<'a>(
        &'a self,
        samples: &'a [Sample],
        _deadline: tokio::time::Instant,
    ) -> BoxFuture<'a, Result<DeliveryReport, SinkError>> {
        let mut text = String::new();
        for s in samples {
            text.push_str(&json_line(s));
            text.push('\n');
        }
        async move { deliver_text(&self.out, &text, samples.len()) }.boxed()
    }
}

/// An aligned table for people: metric, tags, value with its unit.
pub struct TableSink {
    out: Out,
}

impl TableSink {
    /// Writes to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        TableSink {
            out: Mutex::new(out),
        }
    }
}

fn fmt_value(s: &Sample) -> String {
    let v = s.value;
    let num = if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    };
    match s.unit.as_deref() {
        Some("dollar") => {
            let per = if s.name.contains("burn_rate") {
                "/h"
            } else {
                ""
            };
            format!("${num}{per}")
        }
        Some("percent") => format!("{num} %"),
        Some(u @ ("minute" | "hour" | "second")) => format!("{num} {u}s"),
        _ => num,
    }
}

/// Renders the table.
pub fn render_table(samples: &[Sample]) -> String {
    let rows: Vec<[String; 3]> = samples
        .iter()
        .map(|s| {
            let tags = s
                .tags
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect::<Vec<_>>()
                .join(",");
            [s.name.to_string(), tags, fmt_value(s)]
        })
        .collect();
    let header = ["METRIC".to_string(), "TAGS".into(), "VALUE".into()];
    let w0 = rows
        .iter()
        .map(|r| r[0].len())
        .chain([6])
        .max()
        .unwrap_or(6);
    let w1 = rows
        .iter()
        .map(|r| r[1].chars().count())
        .chain([4])
        .max()
        .unwrap_or(4);
    let mut out = String::new();
    for r in std::iter::once(&header).chain(rows.iter()) {
        out.push_str(&format!("{:<w0$}  {:<w1$}  {:>}\n", r[0], r[1], r[2]));
    }
    out
}

impl Sink for TableSink {
    fn name(&self) -> &str {
        "table"
    }

    fn deliver<'a>(
        &'a self,
        samples: &'a [Sample],
        _deadline: tokio::time::Instant,
    ) -> BoxFuture<'a, Result<DeliveryReport, SinkError>> {
        let text = render_table(samples);
        async move { deliver_text(&self.out, &text, samples.len()) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skydeck_core::catalog;

    #[test]
    fn json_line_shape() {
        let at = skydeck_core::sample::Sample::of(
            &catalog::JOBS_COUNT,
            3.0,
            "2026-11-23T12:00:00Z".parse().unwrap(),
        )
        .tag("status", "RUNNING");
        let v: serde_json::Value = serde_json::from_str(&json_line(&at)).unwrap();
        assert_eq!(v["name"], "skypilot.jobs.count");
        assert_eq!(v["value"], 3.0);
        assert_eq!(v["unit"], "job");
        assert_eq!(v["tags"]["status"], "RUNNING");
        assert_eq!(v["timestamp"], 1795435200);
    }

    #[test]
    fn table_is_aligned() {
        let t = "2026-11-23T12:00:00Z".parse().unwrap();
        let text = render_table(&[
            Sample::of(&catalog::COST_7D, 1234.5678, t),
            Sample::of(&catalog::JOBS_RUNNING, 7.0, t),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].ends_with("$1234.6"), "{text}");
        // The value column starts at the same place on every line.
        assert_eq!(lines[1].rfind(' '), lines[2].rfind(' '));
    }
}
