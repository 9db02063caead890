//! Parsing an external collector's stdout: Prometheus text format or JSON lines of samples.

use std::borrow::Cow;
use std::collections::HashMap;

use jiff::Timestamp;
use serde::Deserialize;
use skydeck_core::{MetricKind, Sample, Tags};

/// The format of an external collector's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// JSON lines if the first non-blank line starts with `{`, else Prometheus text.
    #[default]
    Auto,
    /// Prometheus text exposition format 0.0.4.
    Prometheus,
    /// One JSON object per line: `{"name", "value", "tags"?, "unit"?, "kind"?}`.
    Json,
}

/// A parse error: 1-based line and what was expected.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub message: String,
}

/// Parses `text` into samples stamped `at`.
pub fn parse(text: &str, format: OutputFormat, at: Timestamp) -> Result<Vec<Sample>, ParseError> {
    let format = match format {
        OutputFormat::Auto => {
            let first = text.lines().map(str::trim).find(|l| !l.is_empty());
            if first.is_some_and(|l| l.starts_with('{')) {
                OutputFormat::Json
            } else {
                OutputFormat::Prometheus
            }
        }
        f => f,
    };
    match format {
        OutputFormat::Json => parse_json_lines(text, at),
        _ => parse_prometheus(text, at),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSample {
    name: String,
    value: f64,
    #[serde(default)]
    tags: Option<JsonTags>,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    kind: Option<MetricKind>,
    /// Accepted and ignored: every sample of a run is stamped with the run's start.
    #[serde(default)]
    #[allow(dead_code)]
    timestamp: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonTags {
    Map(HashMap<String, String>),
    List(Vec<String>),
}

fn parse_json_lines(text: &str, at: Timestamp) -> Result<Vec<Sample>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let err = |message: String| ParseError {
            line: i + 1,
            message,
        };
        let s: JsonSample = serde_json::from_str(line).map_err(|e| {
            err(format!(
                "{e}; expected {{\"name\": \"a.metric\", \"value\": 1.0, \"tags\": {{\"k\": \"v\"}}}}"
            ))
        })?;
        check_name(&s.name).map_err(err)?;
        if !s.value.is_finite() {
            return Err(err(format!("value of {} is not a finite number", s.name)));
        }
        let mut tags = Tags::new();
        match s.tags {
            Some(JsonTags::Map(m)) => tags.extend(m),
            Some(JsonTags::List(l)) => {
                for t in l {
                    let (k, v) = t.split_once(':').unwrap_or((t.as_str(), ""));
                    tags.insert(k.to_string(), v.to_string());
                }
            }
            None => {}
        }
        out.push(Sample {
            name: Cow::Owned(s.name),
            value: s.value,
            tags,
            kind: s.kind.unwrap_or(MetricKind::Gauge),
            unit: s.unit.map(Cow::Owned),
            at,
        });
    }
    Ok(out)
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "metric name {name:?} is not valid; expected a letter then letters, digits, `_`, `.` \
             or `:` (at most 200 characters)"
        ))
    }
}

fn parse_prometheus(text: &str, at: Timestamp) -> Result<Vec<Sample>, ParseError> {
    let mut kinds: HashMap<String, MetricKind> = HashMap::new();
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let err = |message: String| ParseError {
            line: i + 1,
            message,
        };
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let mut parts = rest.split_whitespace();
            if parts.next() == Some("TYPE")
                && let (Some(name), Some(kind)) = (parts.next(), parts.next())
            {
                let kind = match kind {
                    "counter" => MetricKind::Counter,
                    _ => MetricKind::Gauge,
                };
                kinds.insert(name.to_string(), kind);
            }
            continue;
        }
        let (name, rest) = split_name(line);
        check_name(name).map_err(err)?;
        let (tags, rest) = if let Some(rest) = rest.strip_prefix('{') {
            parse_labels(rest).map_err(err)?
        } else {
            (Tags::new(), rest)
        };
        let value_text = rest.split_whitespace().next().ok_or_else(|| {
            err(format!(
                "no value after {name}; expected `name{{labels}} value`"
            ))
        })?;
        let value = parse_value(value_text)
            .ok_or_else(|| err(format!("value {value_text:?} of {name} is not a number")))?;
        if !value.is_finite() {
            // NaN/±Inf are legal in the exposition format but no sink can store them.
            tracing::debug!(name, value_text, "skipping a non-finite sample");
            continue;
        }
        let kind = kinds
            .get(name)
            .or_else(|| name.strip_suffix("_total").and_then(|b| kinds.get(b)))
            .copied()
            .unwrap_or(MetricKind::Gauge);
        out.push(Sample {
            name: Cow::Owned(name.to_string()),
            value,
            tags,
            kind,
            unit: None,
            at,
        });
    }
    Ok(out)
}

fn split_name(line: &str) -> (&str, &str) {
    let end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    (&line[..end], line[end..].trim_start())
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Parses `k="v",k2="v2"} rest` and returns the labels and `rest`.
fn parse_labels(mut s: &str) -> Result<(Tags, &str), String> {
    let mut tags = Tags::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((tags, rest.trim_start()));
        }
        let eq = s
            .find('=')
            .ok_or("label without `=`; expected key=\"value\"")?;
        let key = s[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("label name {key:?} is not valid"));
        }
        s = s[eq + 1..].trim_start();
        s = s
            .strip_prefix('"')
            .ok_or_else(|| format!("value of label {key} is not quoted"))?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("value of label {key} is not terminated")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("value of label {key} ends in a backslash")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        tags.insert(key.to_string(), value);
        s = s[end + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> Timestamp {
        Timestamp::from_second(1_795_434_586).unwrap()
    }

    #[test]
    fn prometheus_text() {
        let text = "# HELP gh_prs Open PRs.\n# TYPE gh_prs gauge\ngh_prs{repo=\"a\\\"b\",state=\"open\"} 12\n\
                    # TYPE builds counter\nbuilds_total 7 1795434586000\nnan_metric NaN\nplain 1.5e3\n";
        let s = parse(text, OutputFormat::Auto, at()).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "gh_prs");
        assert_eq!(s[0].tags["repo"], "a\"b");
        assert_eq!(s[0].value, 12.0);
        assert_eq!(s[1].kind, MetricKind::Counter);
        assert_eq!(s[2].value, 1500.0);
    }

    #[test]
    fn json_lines() {
        let text = "{\"name\":\"github.prs.open\",\"value\":3,\"tags\":[\"repo:x\"]}\n\n\
                    {\"name\":\"asana.tasks\",\"value\":1,\"tags\":{\"team\":\"ml\"},\"unit\":\"task\"}\n";
        let s = parse(text, OutputFormat::Auto, at()).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].tags["repo"], "x");
        assert_eq!(s[1].unit.as_deref(), Some("task"));
    }

    #[test]
    fn errors_name_the_line_and_the_expectation() {
        let e = parse("ok 1\nbad{x=1} 2\n", OutputFormat::Prometheus, at()).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("not quoted"), "{}", e.message);
        let e = parse("{\"name\":\"a\"}\n", OutputFormat::Json, at()).unwrap_err();
        assert!(e.message.contains("value"), "{}", e.message);
        let e = parse("9lives 1\n", OutputFormat::Prometheus, at()).unwrap_err();
        assert!(e.message.contains("not valid"), "{}", e.message);
    }
}
