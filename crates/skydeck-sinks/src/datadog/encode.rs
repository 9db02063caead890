//! Samples → `POST /api/v2/series` bodies, each within Datadog's intake limits.
//!
//! Every series is encoded once into one buffer (each followed by a comma), so a payload is
//! `{"series":[` + a contiguous slice + `]}` streamed straight into the compressor, and
//! splitting a payload (when it compresses too large, or the intake answers 413) is a matter
//! of halving an index range: nothing is re-encoded.

use std::io::Write;
use std::ops::Range;

use skydeck_core::Sample;

/// Datadog's limits for one v2 series request (the Datadog Agent's serializer defaults, which
/// its source says must not be raised or "payloads will get dropped by Datadog's intake").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Compressed body, as sent: at most 512,000 bytes.
    pub max_compressed: usize,
    /// Uncompressed body: less than 5 MiB.
    pub max_raw: usize,
    /// Points per payload.
    pub max_points: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_compressed: 512_000,
            max_raw: 5_242_880 - 1,
            max_points: 10_000,
        }
    }
}

/// Content encoding of the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// gzip (`Content-Encoding: gzip`).
    #[default]
    Gzip,
    /// zstd (`Content-Encoding: zstd1`, Datadog's name for it).
    Zstd,
}

impl Compression {
    /// The `Content-Encoding` header value Datadog expects.
    pub fn header(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd1",
        }
    }
}

/// A sample that cannot be sent, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The metric name.
    pub metric: String,
    /// Why.
    pub reason: &'static str,
}

/// All series of one delivery, encoded.
#[derive(Debug, Default)]
pub struct Encoded {
    /// Series JSON objects, each followed by `,`.
    buf: Vec<u8>,
    /// Start of each series in `buf`, plus `buf.len()` at the end.
    offsets: Vec<usize>,
}

const PREFIX: &[u8] = b"{\"series\":[";
const SUFFIX: &[u8] = b"]}";

impl Encoded {
    /// Number of series (= points: one point per series).
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Uncompressed body length of the payload holding `range`.
    pub fn raw_len(&self, range: &Range<usize>) -> usize {
        if range.is_empty() {
            return PREFIX.len() + SUFFIX.len();
        }
        // The slice ends with a comma that the body does not have.
        PREFIX.len() + (self.offsets[range.end] - self.offsets[range.start]) - 1 + SUFFIX.len()
    }

    /// Writes the uncompressed body of `range` to `w`.
    pub fn write_raw(&self, range: &Range<usize>, w: &mut impl Write) -> std::io::Result<()> {
        w.write_all(PREFIX)?;
        if !range.is_empty() {
            w.write_all(&self.buf[self.offsets[range.start]..self.offsets[range.end] - 1])?;
        }
        w.write_all(SUFFIX)
    }

    /// The uncompressed body of `range` (for `--dry-run` and tests).
    pub fn raw(&self, range: &Range<usize>) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.raw_len(range));
        self.write_raw(range, &mut v).expect("writing to a Vec");
        v
    }
}

/// Encodes samples; returns the series and the samples that cannot be sent.
///
/// `global_tags` (`env:prod`, `service:skydeck`, DD_TAGS) are added to every series; `host`,
/// when set, becomes the series' host resource (by default series carry none: fleet metrics
/// belong to no host).
pub fn encode<'a>(
    samples: impl IntoIterator<Item = &'a Sample>,
    global_tags: &[String],
    host: Option<&str>,
) -> (Encoded, Vec<Rejected>) {
    let samples = samples.into_iter();
    let hint = samples.size_hint().0;
    let mut enc = Encoded {
        buf: Vec::with_capacity(hint * 160),
        offsets: Vec::with_capacity(hint + 1),
    };
    let mut rejected = Vec::new();
    let mut name = String::new();
    let mut tag = String::new();
    for s in samples {
        if !s.value.is_finite() {
            rejected.push(Rejected {
                metric: s.name.to_string(),
                reason: "the value is not a finite number",
            });
            continue;
        }
        if !sanitize_name(&s.name, &mut name) {
            rejected.push(Rejected {
                metric: s.name.to_string(),
                reason: "the name does not start with a letter or is longer than 200 characters",
            });
            continue;
        }
        enc.offsets.push(enc.buf.len());
        let b = &mut enc.buf;
        b.extend_from_slice(b"{\"metric\":");
        write_str(b, &name);
        // Counters are cumulative totals, not per-interval deltas: a one-shot run has no
        // previous value to subtract, so they are sent as gauges (type 3), like gauges are.
        b.extend_from_slice(b",\"type\":3,\"points\":[{\"timestamp\":");
        b.extend_from_slice(itoa::Buffer::new().format(s.at.as_second()).as_bytes());
        b.extend_from_slice(b",\"value\":");
        b.extend_from_slice(ryu::Buffer::new().format_finite(s.value).as_bytes());
        b.extend_from_slice(b"}]");
        if let Some(unit) = s.unit.as_deref() {
            b.extend_from_slice(b",\"unit\":");
            write_str(b, unit);
        }
        if !s.tags.is_empty() || !global_tags.is_empty() {
            b.extend_from_slice(b",\"tags\":[");
            let mut first = true;
            for (k, v) in &s.tags {
                tag.clear();
                tag.push_str(k);
                if !v.is_empty() {
                    tag.push(':');
                    tag.push_str(v);
                }
                truncate_tag(&mut tag);
                if !first {
                    b.push(b',');
                }
                first = false;
                write_str(b, &tag);
            }
            for t in global_tags {
                if !first {
                    b.push(b',');
                }
                first = false;
                write_str(b, t);
            }
            b.push(b']');
        }
        if let Some(h) = host {
            b.extend_from_slice(b",\"resources\":[{\"name\":");
            write_str(b, h);
            b.extend_from_slice(b",\"type\":\"host\"}]");
        }
        b.extend_from_slice(b"},");
    }
    enc.offsets.push(enc.buf.len());
    (enc, rejected)
}

/// Datadog metric names: a letter first, then ASCII letters, digits, `_` and `.` (Datadog
/// itself turns anything else into `_`), at most 200 characters.
fn sanitize_name(raw: &str, out: &mut String) -> bool {
    out.clear();
    if !raw.starts_with(|c: char| c.is_ascii_alphabetic()) || raw.len() > 200 {
        return false;
    }
    out.extend(raw.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            c
        } else {
            '_'
        }
    }));
    true
}

/// The Datadog Agent caps a tag at 200 bytes.
fn truncate_tag(tag: &mut String) {
    if tag.len() > 200 {
        let mut cut = 200;
        while !tag.is_char_boundary(cut) {
            cut -= 1;
        }
        tag.truncate(cut);
    }
}

fn write_str(buf: &mut Vec<u8>, s: &str) {
    // Names, units and tags are almost always plain ASCII: copy them without the escaper.
    if s.bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
    {
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else {
        serde_json::to_writer(&mut *buf, s).expect("writing to a Vec");
    }
}

/// One request body.
#[derive(Debug, Clone)]
pub struct Payload {
    /// The series it holds (indices into [`Encoded`]).
    pub range: Range<usize>,
    /// The compressed body.
    pub body: Vec<u8>,
    /// Uncompressed length.
    pub raw_len: usize,
}

impl Payload {
    /// Points in the payload.
    pub fn points(&self) -> usize {
        self.range.len()
    }
}

/// Compresses the payload of `range`.
pub fn compress(enc: &Encoded, range: Range<usize>, compression: Compression) -> Payload {
    let raw_len = enc.raw_len(&range);
    // Metric JSON compresses about tenfold; start with room for that.
    let out = Vec::with_capacity(raw_len / 8 + 64);
    let body = match compression {
        Compression::Gzip => {
            // Level 1: the body is highly repetitive JSON, where the fastest level already
            // compresses ~10x; higher levels cost several times the CPU for a few percent.
            let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
            enc.write_raw(&range, &mut gz)
                .expect("compressing into a Vec");
            gz.finish().expect("compressing into a Vec")
        }
        Compression::Zstd => {
            let mut z = zstd::stream::Encoder::new(out, 1).expect("zstd level 1");
            enc.write_raw(&range, &mut z)
                .expect("compressing into a Vec");
            z.finish().expect("compressing into a Vec")
        }
    };
    Payload {
        range,
        body,
        raw_len,
    }
}

/// Splits all series into payloads that each respect `limits`: greedily by points and
/// uncompressed size, then halving any payload that compresses above the limit.
pub fn chunk(enc: &Encoded, limits: Limits, compression: Compression) -> Vec<Payload> {
    let mut ranges = Vec::new();
    let mut start = 0;
    for i in 0..enc.len() {
        let candidate = start..i + 1;
        if i > start
            && (candidate.len() > limits.max_points || enc.raw_len(&candidate) > limits.max_raw)
        {
            ranges.push(start..i);
            start = i;
        }
    }
    if start < enc.len() {
        ranges.push(start..enc.len());
    }
    let mut out = Vec::with_capacity(ranges.len());
    let mut todo: Vec<Range<usize>> = ranges.into_iter().rev().collect();
    while let Some(r) = todo.pop() {
        let p = compress(enc, r, compression);
        if p.body.len() > limits.max_compressed && p.points() > 1 {
            let (a, b) = halves(&p.range);
            todo.push(b);
            todo.push(a);
        } else {
            out.push(p);
        }
    }
    out
}

/// The two halves of a range.
pub fn halves(r: &Range<usize>) -> (Range<usize>, Range<usize>) {
    let mid = r.start + r.len() / 2;
    (r.start..mid, mid..r.end)
}
