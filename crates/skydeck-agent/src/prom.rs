//! A reader of the Prometheus text exposition (0.0.4, and the OpenMetrics text that shares its
//! sample lines) for the engine's `/metrics` page: every sample line becomes a name, its
//! labels and its value, and a family's value is the sum over its series (vLLM labels its
//! gauges with `model_name`, one series per served model).
//!
//! The reader never fails as a whole: a line that does not parse, or a value that is NaN or
//! infinite, poisons only the family it names, and [`Page::sum`] then says why that family
//! has no value. The agent turns that into a `null` field and an `engine.detail`, so a broken
//! engine page is reported, not a crash. Hand-written because the crates that parse this
//! format reject a page on its first bad line, which is exactly the case the agent must
//! report field by field.

use std::collections::HashMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name (`vllm:num_requests_running`).
    pub name: String,
    /// Labels in page order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// A parsed page: the good samples, and why some families or lines were refused.
#[derive(Debug, Clone, Default)]
pub struct Page {
    samples: Vec<Sample>,
    /// Family name → why it has no trustworthy value (the first problem seen).
    poisoned: HashMap<String, String>,
    /// The first line that names no family we could read, for the report.
    unattributed: Option<String>,
}

impl Page {
    /// Parses `text`; never fails (see the module doc).
    pub fn parse(text: &str) -> Page {
        let mut page = Page::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_line(line) {
                Ok(s) if s.value.is_finite() => page.samples.push(s),
                Ok(s) => {
                    let why = format!("line {}: {} has the value {}", i + 1, s.name, s.value);
                    page.poisoned.entry(s.name).or_insert(why);
                }
                Err(e) => {
                    // The reason names the family so a heartbeat's `detail` says which
                    // field went missing and why.
                    match leading_name(line) {
                        Some(name) => {
                            let why = format!("{name}: line {} does not parse: {e}", i + 1);
                            page.poisoned.entry(name.to_string()).or_insert(why);
                        }
                        None => {
                            let why = format!("line {} does not parse: {e}", i + 1);
                            page.unattributed.get_or_insert(why);
                        }
                    }
                }
            }
        }
        page
    }

    /// The good samples.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The sum of family `name` over its series, or why there is none: a bad line or value
    /// of that family, or the family missing from the page.
    pub fn sum(&self, name: &str) -> Result<f64, String> {
        if let Some(why) = self.poisoned.get(name) {
            return Err(why.clone());
        }
        let mut found = false;
        let mut total = 0.0;
        for s in self.samples.iter().filter(|s| s.name == name) {
            found = true;
            total += s.value;
        }
        if found {
            return Ok(total);
        }
        Err(match &self.unattributed {
            Some(why) => format!("{name} is not on the page ({why})"),
            None => format!("{name} is not on the page"),
        })
    }
}

/// The metric name a line starts with, when it starts with one.
fn leading_name(line: &str) -> Option<&str> {
    let end = line.find(|c: char| !is_name_char(c)).unwrap_or(line.len());
    let name = &line[..end];
    let first = name.chars().next()?;
    (!first.is_ascii_digit()).then_some(name)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Parses `name{k="v",…} value [timestamp]`.
fn parse_line(line: &str) -> Result<Sample, String> {
    let name = leading_name(line).ok_or("it does not start with a metric name")?;
    let mut rest = &line[name.len()..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, tail) = parse_labels(after)?;
        labels = parsed;
        rest = tail;
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("no value after the name")?;
    let value = parse_value(value).ok_or_else(|| format!("{value:?} is not a number"))?;
    if let Some(ts) = fields.next()
        && ts.parse::<f64>().is_err()
    {
        return Err(format!("{ts:?} is not a timestamp"));
    }
    if fields.next().is_some() {
        return Err("more than a value and a timestamp after the name".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Prometheus spells the specials `NaN`, `+Inf`, `-Inf`; Rust's parser takes those and more.
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if s
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
        {
            s.parse().ok()
        }
        _ => None,
    }
}

/// Parses the labels after `{` up to the closing `}`; returns them and the text after `}`.
/// A series' labels, name and value.
type Labels = Vec<(String, String)>;

fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let end = s.find(|c: char| !is_name_char(c)).unwrap_or(s.len());
        if end == 0 {
            return Err("a label has no name".into());
        }
        let key = &s[..end];
        s = s[end..].trim_start();
        s = s
            .strip_prefix('=')
            .ok_or_else(|| format!("label {key} has no ="))?
            .trim_start();
        s = s
            .strip_prefix('"')
            .ok_or_else(|| format!("label {key}'s value is not quoted"))?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let close = loop {
            match chars.next() {
                None => return Err(format!("label {key}'s value is not closed")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("label {key}'s value is not closed")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((key.to_string(), value));
        s = s[close + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err(format!("expected , or }} after label {key}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VLLM: &str = r#"# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="a/b"} 2.0
vllm:num_requests_running{engine="0",model_name="c/d"} 1.0
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="a/b"} 1234.0
vllm:generation_tokens_created{engine="0",model_name="a/b"} 1.7e+09
"#;

    #[test]
    fn sums_over_series() {
        let p = Page::parse(VLLM);
        assert_eq!(p.sum("vllm:num_requests_running"), Ok(3.0));
        assert_eq!(p.sum("vllm:generation_tokens_total"), Ok(1234.0));
        assert_eq!(
            p.samples()[0].labels[1],
            ("model_name".into(), "a/b".into())
        );
        assert!(
            p.sum("vllm:num_requests_waiting")
                .unwrap_err()
                .contains("not on the page")
        );
    }

    #[test]
    fn labels_with_escapes_commas_and_braces() {
        let p = Page::parse("m{a=\"x,}\\\"y\\\\\",b=\"\\n\",} 5 1700000000000\n");
        assert_eq!(p.sum("m"), Ok(5.0));
        assert_eq!(
            p.samples()[0].labels,
            vec![("a".into(), "x,}\"y\\".into()), ("b".into(), "\n".into())]
        );
    }

    #[test]
    fn bad_values_poison_their_family_only() {
        let p = Page::parse("a 1\nb NaN\nb 2\nc{x=\"1\" 3\nd one\n");
        assert_eq!(p.sum("a"), Ok(1.0));
        assert!(p.sum("b").unwrap_err().contains("NaN"), "{:?}", p.sum("b"));
        assert!(p.sum("c").unwrap_err().contains("line 4"));
        assert!(p.sum("d").unwrap_err().contains("\"one\" is not a number"));
        assert!(
            Page::parse("e +Inf\n")
                .sum("e")
                .unwrap_err()
                .contains("inf")
        );
    }

    #[test]
    fn garbage_pages_say_why() {
        let p = Page::parse("<html>oops</html>\n");
        let e = p.sum("vllm:num_requests_running").unwrap_err();
        assert!(e.contains("line 1 does not parse"), "{e}");
        let p = Page::parse("\u{0}\u{1}{{{\n12 34\n");
        assert!(p.sum("x").is_err());
    }
}
