//! The Prometheus exposition of samples: the one writer behind `skydeck serve`'s `/metrics`
//! and the control plane's, in the text format 0.0.4 or OpenMetrics 1.0.
//!
//! Names, HELP and TYPE come from the [catalog](crate::catalog); values are converted to the
//! Prometheus base unit (`Unit::prometheus_scale`: percent → ratio, minutes → seconds). Samples
//! that are not in the catalog (external collectors') keep their kind and get a name made
//! valid for Prometheus. Every family is written once, its series together, so the output
//! passes `promtool check metrics`. It lives in the core crate (no IO) so that the control
//! plane renders through it without depending on the sinks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;

use crate::catalog::{self, MetricDef, MetricType};
use crate::sample::{MetricKind, Sample, Tags};

/// Which exposition format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0 text (`# EOF` at the end, counters typed without `_total`).
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the scraper's `Accept` header asks for it (Prometheus sends
    /// `application/openmetrics-text;version=1.0.0,…;q=0.5,text/plain;version=0.0.4;q=0.4`),
    /// else the text format.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// One histogram series: cumulative bucket counts by upper bound, ascending, without `+Inf`
/// (the writer adds it from `count`).
#[derive(Debug, Clone)]
pub struct Histogram {
    /// The catalog family (its type is [`MetricType::Histogram`]).
    pub def: &'static MetricDef,
    /// The series' labels.
    pub tags: Tags,
    /// `(le, observations ≤ le)`, ascending by `le`.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of the observations, in the family's unit.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

/// A family's series, gathered before writing.
enum Series<'a> {
    Scalar(&'a Sample),
    Histogram(&'a Histogram),
}

/// A family: its name, HELP and TYPE.
struct Family<'a> {
    name: String,
    help: &'a str,
    kind: MetricType,
    scale: f64,
    series: Vec<Series<'a>>,
}

/// Writes `samples` and `histograms` in `format`, with OpenMetrics' closing `# EOF`.
pub fn render(samples: &[Sample], histograms: &[Histogram], format: Format) -> String {
    let mut out = render_families(samples, histograms, format);
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// Writes the families of `samples` and `histograms` without OpenMetrics' `# EOF`, so parts
/// whose families are disjoint (serve's fleet and health parts) can be concatenated.
pub fn render_families(samples: &[Sample], histograms: &[Histogram], format: Format) -> String {
    // Catalog families in catalog order, then the others by name.
    let order: HashMap<&str, usize> = catalog::ALL
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name, i))
        .collect();
    let mut known: BTreeMap<usize, Family<'_>> = BTreeMap::new();
    let mut other: BTreeMap<String, Family<'_>> = BTreeMap::new();
    let family_of = |def: &'static MetricDef| Family {
        name: def.prometheus.to_string(),
        help: def.help,
        kind: def.kind,
        scale: def.unit.prometheus_scale(),
        series: Vec::new(),
    };
    for s in samples {
        match order.get(s.name.as_ref()) {
            Some(&i) => {
                let def = catalog::ALL[i];
                if def.kind == MetricType::Histogram {
                    continue; // a scalar of a histogram family cannot be written
                }
                known
                    .entry(i)
                    .or_insert_with(|| family_of(def))
                    .series
                    .push(Series::Scalar(s));
            }
            None => {
                let kind = match s.kind {
                    MetricKind::Counter => MetricType::Counter,
                    MetricKind::Gauge => MetricType::Gauge,
                };
                let mut name = prometheus_name(&s.name);
                if kind == MetricType::Counter && !name.ends_with("_total") {
                    name.push_str("_total");
                }
                if catalog::find_prometheus(&name).is_some() {
                    continue; // an outside sample may not pose as a catalog metric
                }
                other
                    .entry(name.clone())
                    .or_insert_with(|| Family {
                        name,
                        help: "Metric of an external collector.",
                        kind,
                        scale: 1.0,
                        series: Vec::new(),
                    })
                    .series
                    .push(Series::Scalar(s));
            }
        }
    }
    for h in histograms {
        if h.def.kind != MetricType::Histogram {
            continue;
        }
        if let Some(&i) = order.get(h.def.name) {
            known
                .entry(i)
                .or_insert_with(|| family_of(h.def))
                .series
                .push(Series::Histogram(h));
        }
    }

    let mut out = String::with_capacity(256 + samples.len() * 64);
    for f in known.values().chain(other.values()) {
        write_family(&mut out, f, format);
    }
    out
}

fn write_family(out: &mut String, f: &Family<'_>, format: Format) {
    // OpenMetrics names a counter family without `_total`; its samples keep it.
    let family_name = match (format, f.kind) {
        (Format::OpenMetrics, MetricType::Counter) => {
            f.name.strip_suffix("_total").unwrap_or(&f.name)
        }
        _ => f.name.as_str(),
    };
    let _ = writeln!(out, "# HELP {family_name} {}", escape_help(f.help));
    let _ = writeln!(out, "# TYPE {family_name} {}", f.kind.as_str());
    let mut seen: HashSet<String> = HashSet::new();
    for s in &f.series {
        match s {
            Series::Scalar(s) => {
                let labels = labels(&s.tags, None);
                if !seen.insert(labels.clone()) {
                    continue; // one value per series; the first wins
                }
                let _ = writeln!(out, "{}{labels} {}", f.name, number(s.value * f.scale));
            }
            Series::Histogram(h) => {
                let key = labels(&h.tags, None);
                if !seen.insert(key.clone()) {
                    continue;
                }
                for (le, n) in &h.buckets {
                    let le = number(*le * f.scale);
                    let _ = writeln!(out, "{}_bucket{} {n}", f.name, labels(&h.tags, Some(&le)));
                }
                let _ = writeln!(
                    out,
                    "{}_bucket{} {}",
                    f.name,
                    labels(&h.tags, Some("+Inf")),
                    h.count
                );
                let _ = writeln!(out, "{}_sum{key} {}", f.name, number(h.sum * f.scale));
                let _ = writeln!(out, "{}_count{key} {}", f.name, h.count);
            }
        }
    }
}

/// `{k="v",…}` (empty when there are no labels), with `le` last for buckets.
fn labels(tags: &Tags, le: Option<&str>) -> String {
    if tags.is_empty() && le.is_none() {
        return String::new();
    }
    let mut out = String::from("{");
    let mut first = true;
    for (k, v) in tags {
        let k = label_name(k);
        if k == "le" && le.is_some() {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "{k}=\"{}\"", escape_value(v));
    }
    if let Some(le) = le {
        if !first {
            out.push(',');
        }
        let _ = write!(out, "le=\"{le}\"");
    }
    out.push('}');
    out
}

/// A float as the exposition writes it: `+Inf`, `-Inf`, `NaN`, else the shortest form.
pub fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // Rust's Display for f64 is the shortest representation that round-trips.
        let b = format!("{v}");
        if b == "-0" { "0".into() } else { b }
    }
}

/// A metric name valid for Prometheus: `[a-zA-Z_:][a-zA-Z0-9_:]*`, dots and other characters
/// turned into `_`.
pub fn prometheus_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A label name valid for Prometheus: `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`
/// (reserved).
fn label_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    while out.starts_with("__") {
        out.remove(0);
    }
    out
}

fn escape_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str(r"\n"),
            c => out.push(c),
        }
    }
    out
}

fn escape_help(v: &str) -> String {
    v.replace('\\', r"\\").replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog as c;
    use jiff::Timestamp;

    fn at() -> Timestamp {
        Timestamp::from_second(1_795_434_586).unwrap()
    }

    #[test]
    fn catalog_units_help_and_types() {
        let samples = vec![
            Sample::of(&c::JOBS_SUCCESS_RATE_7D, 87.5, at()),
            Sample::of(&c::JOBS_AVG_DURATION, 2.0, at()),
            Sample::of(&c::JOBS_COUNT, 3.0, at()).tag("status", "RUNNING"),
            Sample::of(&c::JOBS_COUNT, 4.0, at()).tag("status", "PENDING"),
            Sample::of(&c::COLLECTOR_RUNS, 7.0, at())
                .tag("collector", "skypilot")
                .tag("result", "ok"),
        ];
        let text = render(&samples, &[], Format::Text);
        assert!(text.contains("# TYPE skypilot_jobs_success_ratio_7d gauge\n"));
        assert!(
            text.contains("skypilot_jobs_success_ratio_7d 0.875\n"),
            "{text}"
        );
        assert!(
            text.contains("skypilot_jobs_avg_duration_seconds 120\n"),
            "{text}"
        );
        assert_eq!(text.matches("# TYPE skypilot_jobs gauge").count(), 1);
        assert!(text.contains("skypilot_jobs{status=\"PENDING\"} 4\n"));
        assert!(text.contains("# TYPE skydeck_collector_runs_total counter\n"));
        assert!(
            text.contains("skydeck_collector_runs_total{collector=\"skypilot\",result=\"ok\"} 7\n")
        );
        let om = render(&samples, &[], Format::OpenMetrics);
        assert!(
            om.contains("# TYPE skydeck_collector_runs counter\n"),
            "{om}"
        );
        assert!(om.contains("skydeck_collector_runs_total{"));
        assert!(om.ends_with("# EOF\n"));
    }

    #[test]
    fn histograms_and_escaping() {
        let h = Histogram {
            def: &c::CONTROL_LAUNCH_DURATION,
            tags: Tags::new(),
            buckets: vec![(15.0, 1), (30.0, 2)],
            sum: 40.5,
            count: 3,
        };
        let s = Sample::of(&c::CONTROL_NODES, 1.0, at())
            .tag("status", "active")
            .tag("provider", "a\"b\\c\nd")
            .tag("gpu", "H100");
        let text = render(&[s], &[h], Format::Text);
        assert!(text.contains("skydeck_control_launch_duration_seconds_bucket{le=\"15\"} 1\n"));
        assert!(text.contains("skydeck_control_launch_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("skydeck_control_launch_duration_seconds_sum 40.5\n"));
        assert!(text.contains("skydeck_control_launch_duration_seconds_count 3\n"));
        assert!(text.contains(r#"provider="a\"b\\c\nd""#), "{text}");
    }

    #[test]
    fn outside_samples_get_valid_names_and_cannot_pose_as_catalog() {
        let mut counter = Sample::of(&c::JOBS_RUNNING, 1.0, at());
        counter.name = "github.builds".into();
        counter.kind = MetricKind::Counter;
        counter.tags.insert("repo.name".into(), "x".into());
        counter.tags.insert("__name__".into(), "y".into());
        let mut fake = Sample::of(&c::JOBS_RUNNING, 1.0, at());
        fake.name = "skypilot_jobs_running".into();
        fake.value = 99.0;
        let real = Sample::of(&c::JOBS_RUNNING, 2.0, at());
        let text = render(&[counter, fake, real], &[], Format::Text);
        assert!(
            text.contains("# TYPE github_builds_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("github_builds_total{_name__=\"y\",repo_name=\"x\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("skypilot_jobs_running 2\n"));
        assert!(!text.contains(" 99\n"));
    }

    #[test]
    fn numbers_and_negotiation() {
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(-0.0), "0");
        assert_eq!(number(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Text);
        assert_eq!(Format::negotiate(None), Format::Text);
    }
}
