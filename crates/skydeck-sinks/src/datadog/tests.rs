//! The encoder's limits as properties, and delivery against a local intake that faults.

use std::io::Read;
use std::time::Duration;

use jiff::Timestamp;
use proptest::prelude::*;
use secrecy::SecretString;
use skydeck_core::{Sample, catalog};
use skydeck_testkit::datadog::{FakeDatadog, GOOD_KEY, Reply};

use super::encode::{Compression, Limits, chunk, encode};
use super::*;

fn sample(i: usize, tags: usize, at: Timestamp) -> Sample {
    let mut s = Sample::of(&catalog::JOBS_COUNT, i as f64 * 0.5, at);
    for t in 0..tags {
        s = s.tag(format!("tag{t}"), format!("value-{}-{}", i % 97, t));
    }
    s
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Every payload within `limits`, and together every series exactly once, in order.
fn check_chunks(samples: &[Sample], limits: Limits, compression: Compression) {
    let (enc, rejected) = encode(samples, &["env:test".into()], None);
    assert!(rejected.is_empty());
    let payloads = chunk(&enc, limits, compression);
    let mut next = 0;
    let mut names = 0;
    for p in &payloads {
        assert_eq!(
            p.range.start, next,
            "payloads cover the series in order, without gaps"
        );
        next = p.range.end;
        assert!(p.points() <= limits.max_points, "{} points", p.points());
        assert!(p.raw_len <= limits.max_raw, "raw {}", p.raw_len);
        assert!(
            p.body.len() <= limits.max_compressed || p.points() == 1,
            "compressed {}",
            p.body.len()
        );
        let raw = match compression {
            Compression::Gzip => gunzip(&p.body),
            Compression::Zstd => zstd::stream::decode_all(p.body.as_slice()).unwrap(),
        };
        assert_eq!(raw.len(), p.raw_len);
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        let series = v["series"].as_array().unwrap();
        assert_eq!(series.len(), p.points());
        names += series.len();
    }
    assert_eq!(next, samples.len());
    assert_eq!(names, samples.len());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Datadog's real limits, on batches up to 25,000 points.
    #[test]
    fn chunks_respect_datadog_limits(n in 0usize..25_000, tags in 0usize..6) {
        let at = Timestamp::now();
        let samples: Vec<Sample> = (0..n).map(|i| sample(i, tags, at)).collect();
        check_chunks(&samples, Limits::default(), Compression::Gzip);
    }

    /// Tiny limits, so every rule (points, raw size, compressed size) does the splitting.
    #[test]
    fn chunks_respect_small_limits(
        n in 0usize..600,
        tags in 0usize..8,
        max_points in 1usize..80,
        max_raw in 600usize..20_000,
        max_compressed in 300usize..4_000,
        zstd in any::<bool>(),
    ) {
        let at = Timestamp::now();
        let samples: Vec<Sample> = (0..n).map(|i| sample(i, tags, at)).collect();
        let compression = if zstd { Compression::Zstd } else { Compression::Gzip };
        check_chunks(&samples, Limits { max_points, max_raw, max_compressed }, compression);
    }
}

#[test]
fn series_shape() {
    let at = Timestamp::from_second(1_795_434_586).unwrap();
    let s = vec![
        Sample::of(&catalog::COST_7D, 12.5, at).tag("cloud", "AWS"),
        Sample::of(&catalog::JOBS_RUNNING, 3.0, at),
    ];
    let (enc, _) = encode(&s, &["env:prod".into()], Some("collector-1"));
    let v: serde_json::Value = serde_json::from_slice(&enc.raw(&(0..2))).unwrap();
    assert_eq!(
        v["series"][0],
        serde_json::json!({"metric": "skypilot.compute.cost_7d", "type": 3,
            "points": [{"timestamp": 1795434586, "value": 12.5}], "unit": "dollar",
            "tags": ["cloud:AWS", "env:prod"],
            "resources": [{"name": "collector-1", "type": "host"}]})
    );
    let (enc, _) = encode(&s[1..], &[], None);
    let v: serde_json::Value = serde_json::from_slice(&enc.raw(&(0..1))).unwrap();
    assert!(
        v["series"][0].get("resources").is_none(),
        "host-less by default"
    );
    assert!(v["series"][0].get("tags").is_none());
}

#[test]
fn unsendable_samples_are_reported() {
    let at = Timestamp::now();
    let mut bad_name = sample(0, 0, at);
    bad_name.name = "9lives".into();
    let mut nan = sample(1, 0, at);
    nan.value = f64::NAN;
    let mut colon = sample(2, 0, at);
    colon.name = "vllm:num_requests_running".into();
    let (enc, rejected) = encode(&[bad_name, nan, colon], &[], None);
    assert_eq!(rejected.len(), 2);
    assert_eq!(enc.len(), 1);
    let v: serde_json::Value = serde_json::from_slice(&enc.raw(&(0..1))).unwrap();
    assert_eq!(v["series"][0]["metric"], "vllm_num_requests_running");
}

fn config(url: &str, key: &str) -> DatadogConfig {
    DatadogConfig {
        site: Site::parse(url).unwrap(),
        api_key: SecretString::from(key.to_string()),
        tags: vec!["env:test".into()],
        host: None,
        compression: Compression::Gzip,
        request_timeout: Duration::from_secs(2),
        limits: Limits::default(),
    }
}

fn batch(n: usize) -> Vec<Sample> {
    let at = Timestamp::now();
    (0..n).map(|i| sample(i, 3, at)).collect()
}

async fn deliver(fake: &FakeDatadog, key: &str, samples: &[Sample], secs: u64) -> DeliveryReport {
    let sink = DatadogSink::new(config(&fake.url(), key)).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    sink.deliver(samples, deadline).await.unwrap()
}

#[tokio::test]
async fn accepted_in_gzip_within_limits() {
    let fake = FakeDatadog::start();
    let r = deliver(&fake, GOOD_KEY, &batch(25_000), 30).await;
    assert_eq!(r.accepted, 25_000);
    assert_eq!((r.dropped, r.retried), (0, 0));
    assert_eq!(r.requests, 3, "10,000 points per request");
    for req in fake.series() {
        assert_eq!(req.encoding.as_deref(), Some("gzip"));
        assert!(req.violations.is_empty(), "{:?}", req.violations);
    }
    assert_eq!(fake.accepted_points(), 25_000);
    assert_eq!(
        r.summary("datadog"),
        "✓ datadog: 25000 points accepted in 3 requests"
    );
}

#[tokio::test]
async fn payload_too_large_is_split_and_every_point_sent_once() {
    let fake = FakeDatadog::start();
    fake.split_above(1_500);
    let r = deliver(&fake, GOOD_KEY, &batch(10_000), 30).await;
    assert_eq!(r.accepted, 10_000);
    assert_eq!(r.dropped, 0);
    assert_eq!(fake.accepted_points(), 10_000);
    let mut seen: Vec<f64> = fake
        .series()
        .iter()
        .filter(|q| q.answered == Some(202))
        .flat_map(|q| q.body["series"].as_array().unwrap().clone())
        .map(|s| s["points"][0]["value"].as_f64().unwrap())
        .collect();
    seen.sort_by(f64::total_cmp);
    seen.dedup();
    assert_eq!(seen.len(), 10_000, "every point exactly once");
}

#[tokio::test]
async fn transient_failures_are_retried() {
    let fake = FakeDatadog::start();
    fake.script([
        Reply::Status(500),
        Reply::Status(429),
        Reply::Status(408),
        Reply::Stall,
    ]);
    let r = deliver(&fake, GOOD_KEY, &batch(100), 60).await;
    assert_eq!(r.accepted, 100, "{:?}", r.problems);
    assert_eq!(r.retried, 100);
    assert_eq!(r.dropped, 0);
    assert_eq!(fake.series().len(), 5);
}

#[tokio::test]
async fn bad_request_and_forbidden_are_not_retried() {
    let fake = FakeDatadog::start();
    fake.script([Reply::Status(400)]);
    let r = deliver(&fake, GOOD_KEY, &batch(10), 30).await;
    assert_eq!((r.accepted, r.dropped, r.requests), (0, 10, 1));
    assert!(
        r.problems[0].starts_with("400 Bad Request"),
        "{:?}",
        r.problems
    );

    let fake = FakeDatadog::start();
    let r = deliver(&fake, "wrong-key", &batch(25_000), 30).await;
    assert_eq!((r.accepted, r.dropped), (0, 25_000));
    assert_eq!(r.requests, 1, "a 403 stops the delivery");
    assert!(r.problems[0].contains("403") && r.problems[0].contains(&fake.url()));
    assert!(!r.summary("datadog").contains("wrong-key"));
}

#[tokio::test]
async fn deadline_ends_retries_and_counts_the_rest_dropped() {
    let fake = FakeDatadog::start();
    fake.script(std::iter::repeat_n(Reply::Status(503), 100));
    let t0 = tokio::time::Instant::now();
    let r = deliver(&fake, GOOD_KEY, &batch(20_001), 3).await;
    assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
    assert_eq!(r.accepted, 0);
    assert_eq!(r.dropped, 20_001);
    assert_eq!(r.accepted + r.dropped, 20_001);
}

#[tokio::test]
async fn stale_points_are_dropped_with_a_reason() {
    let fake = FakeDatadog::start();
    let mut samples = batch(5);
    samples[0].at = Timestamp::now() - jiff::SignedDuration::from_hours(2);
    let r = deliver(&fake, GOOD_KEY, &samples, 30).await;
    assert_eq!((r.accepted, r.dropped), (4, 1));
    assert!(r.problems[0].contains("older than 1 h"), "{:?}", r.problems);
}

/// Count conservation under a random mix of faults: every point in is accepted or reported
/// dropped, and the intake accepted exactly what the report says.
#[tokio::test]
async fn counts_are_conserved_under_mixed_faults() {
    for seed in 0..6u64 {
        fastrand::seed(seed);
        let fake = FakeDatadog::start();
        fake.split_above(4_000);
        let replies: Vec<Reply> = (0..12)
            .map(|_| match fastrand::u8(0..8) {
                0 => Reply::Status(500),
                1 => Reply::Status(429),
                2 => Reply::Status(408),
                3 => Reply::Status(400),
                4 => Reply::Status(413),
                _ => Reply::Status(202),
            })
            .collect();
        fake.script(replies);
        let n = 5_000 + fastrand::usize(0..20_000);
        let r = deliver(&fake, GOOD_KEY, &batch(n), 60).await;
        assert_eq!(r.accepted + r.dropped, n, "seed {seed}: {r:?}");
        assert_eq!(fake.accepted_points(), r.accepted, "seed {seed}");
        assert!(fake.series().iter().all(|q| q.violations.is_empty()));
    }
}

#[tokio::test]
async fn zstd_is_framed_as_zstd1() {
    let fake = FakeDatadog::start();
    let mut cfg = config(&fake.url(), GOOD_KEY);
    cfg.compression = Compression::Zstd;
    let sink = DatadogSink::new(cfg).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let r = sink.deliver(&batch(50), deadline).await.unwrap();
    assert_eq!(r.accepted, 50);
    assert_eq!(fake.series()[0].encoding.as_deref(), Some("zstd1"));
}
