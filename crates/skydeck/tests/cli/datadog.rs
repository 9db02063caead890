//! `skydeck collect` delivering to a local Datadog intake, `--dry-run` payloads judged by
//! Datadog's own client models, and `skydeck datadog check|sync-metadata`.

use std::path::Path;

use skydeck_testkit::datadog::{FakeDatadog, GOOD_KEY, Reply};
use skydeck_testkit::{Behavior, FakeSkypilot};

use crate::util::{Run, run, skydeck};

fn write_config(dir: &Path, sinks: &str) -> std::path::PathBuf {
    let path = dir.join("skydeck.toml");
    std::fs::write(
        &path,
        format!(
            "[[collectors]]\nname = \"probe\"\ncommand = [\"sh\", \"-c\", \
             \"echo 'probe_ok 1'; echo 'vllm:requests_running{{model=\\\"x\\\"}} 3'\"]\n{sinks}"
        ),
    )
    .unwrap();
    path
}

fn collect(home: &Path, fake: &FakeDatadog, key: Option<&str>, sinks: &str, extra: &[&str]) -> Run {
    let cfg = write_config(home, sinks);
    let mut cmd = skydeck(home);
    cmd.env("DD_SITE", fake.url())
        .env("DD_TAGS", "team:ml")
        .env_remove("DD_API_KEY")
        .args(["collect", "--no-skypilot", "--config"])
        .arg(cfg)
        .args(extra);
    if let Some(k) = key {
        cmd.env("DD_API_KEY", k);
    }
    run(&mut cmd)
}

const DD_SINK: &str = "[[sinks]]\ntype = \"datadog\"\ntags = [\"env:test\"]\n";

#[test]
fn collect_delivers_to_datadog() {
    let home = tempfile::tempdir().unwrap();
    let fake = FakeDatadog::start();
    let r = collect(home.path(), &fake, Some(GOOD_KEY), DD_SINK, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // 2 probe samples + 3 self-metrics of the probe collector.
    assert!(
        r.stderr
            .contains("✓ datadog: 5 points accepted in 1 request"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.is_empty(),
        "the config's sinks replace stdout: {}",
        r.stdout
    );
    let req = &fake.series()[0];
    assert_eq!(req.encoding.as_deref(), Some("gzip"));
    let series = req.body["series"].as_array().unwrap();
    let probe = series.iter().find(|s| s["metric"] == "probe_ok").unwrap();
    let tags: Vec<&str> = probe["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tags.contains(&"env:test") && tags.contains(&"team:ml"),
        "{tags:?}"
    );
    assert!(
        series
            .iter()
            .any(|s| s["metric"] == "vllm_requests_running")
    );
    assert!(!r.all_output().contains(GOOD_KEY));
}

#[test]
fn forbidden_key_is_explained_and_exits_1() {
    let home = tempfile::tempdir().unwrap();
    let fake = FakeDatadog::start();
    let r = collect(
        home.path(),
        &fake,
        Some("0000wrongwrongwrong"),
        DD_SINK,
        &[],
    );
    assert_eq!(r.code, 1);
    let line = r.stderr.lines().find(|l| l.contains("datadog:")).unwrap();
    assert!(
        line.starts_with("✗ datadog: 0 points accepted in 1 request, 5 dropped"),
        "{line}"
    );
    assert!(line.contains("403") && line.contains(&fake.url()), "{line}");
    assert!(!r.all_output().contains("wrongwrong"));
}

#[test]
fn retries_are_reported() {
    let home = tempfile::tempdir().unwrap();
    let fake = FakeDatadog::start();
    fake.script([Reply::Status(503)]);
    let r = collect(home.path(), &fake, Some(GOOD_KEY), DD_SINK, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("5 points accepted in 2 requests, 5 retried"),
        "{}",
        r.stderr
    );
}

#[test]
fn missing_key_is_a_configuration_error() {
    let home = tempfile::tempdir().unwrap();
    let fake = FakeDatadog::start();
    let sinks = format!(
        "{DD_SINK}api_key_file = \"{}/nope\"\n",
        home.path().display()
    );
    let r = collect(home.path(), &fake, None, &sinks, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("Datadog API key"), "{}", r.stderr);
    assert!(r.stderr.contains("$DD_API_KEY"), "{}", r.stderr);
    assert!(fake.series().is_empty(), "nothing collected or sent");
}

/// The payloads of a real collection (the captured SkyPilot fleet, split by cloud) are valid
/// `MetricPayload`s for Datadog's own client library, with strict checks.
#[test]
fn dry_run_payloads_are_valid_for_datadogs_models() {
    let python = std::env::var("SKYDECK_TEST_PYTOOLS_PYTHON").unwrap_or_else(|_| {
        panic!(
            "SKYDECK_TEST_PYTOOLS_PYTHON is not set: this test needs datadog-api-client from the \
             tools venv that scripts/test.sh installs (run the tests with scripts/test.sh)"
        )
    });
    let home = tempfile::tempdir().unwrap();
    let sky = FakeSkypilot::start(Behavior::Healthy);
    let cfg = write_config(home.path(), "");
    let r = run(skydeck(home.path())
        .env_remove("DD_API_KEY")
        .args([
            "collect",
            "--sink",
            "datadog",
            "--dry-run",
            "--breakdown",
            "cloud,user",
        ])
        .arg("--config")
        .arg(&cfg)
        .args(["--endpoint", &sky.url()]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("✓ datadog: dry run,"), "{}", r.stderr);
    let payloads = home.path().join("payloads.jsonl");
    std::fs::write(&payloads, &r.stdout).unwrap();
    let lines = r.stdout.lines().count();
    assert!(lines >= 1);
    let first: serde_json::Value = serde_json::from_str(r.stdout.lines().next().unwrap()).unwrap();
    let series = first["series"].as_array().unwrap();
    assert!(series.len() > 40, "the whole run: {}", series.len());
    assert!(
        series
            .iter()
            .any(|s| s["metric"] == "skypilot.compute.cost_7d" && s["unit"] == "dollar")
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/peers/validate_datadog.py"
    );
    let out = std::process::Command::new(python)
        .args([script, "metric_payload"])
        .arg(&payloads)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "datadog-api-client rejected the payload:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_validates_the_key_against_the_site() {
    let home = tempfile::tempdir().unwrap();
    let fake = FakeDatadog::start();
    let check = |key: &str| {
        run(skydeck(home.path())
            .env("DD_SITE", fake.url())
            .env("DD_API_KEY", key)
            .args(["datadog", "check"]))
    };
    let ok = check(GOOD_KEY);
    assert_eq!(ok.code, 0, "{}", ok.all_output());
    assert!(ok.stdout.contains("is valid for site"), "{}", ok.stdout);
    assert!(ok.stdout.contains("$DD_API_KEY"));
    let bad = check("0000wrongwrongwrong");
    assert_eq!(bad.code, 1);
    assert!(
        bad.stdout.contains("rejected the API key"),
        "{}",
        bad.stdout
    );
    assert!(!bad.all_output().contains("wrongwrong"));
    assert_eq!(fake.validations(), 2);
    let unknown = run(skydeck(home.path())
        .env("DD_SITE", "datadog.example")
        .env("DD_API_KEY", GOOD_KEY)
        .args(["datadog", "check"]));
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("unknown Datadog site"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn sync_metadata_sets_every_catalog_unit() {
    let home = tempfile::tempdir().unwrap();
    let fake = FakeDatadog::start();
    let r = run(skydeck(home.path())
        .env("DD_SITE", fake.url())
        .env("DD_API_KEY", GOOD_KEY)
        .env("DD_APP_KEY", "app-key-value")
        .args(["datadog", "sync-metadata"]));
    assert_eq!(r.code, 0, "{}", r.all_output());
    let meta = fake.metadata();
    assert_eq!(meta.len(), skydeck_core::catalog::ALL.len());
    let (_, cost) = meta
        .iter()
        .find(|(n, _)| n == "skypilot.compute.burn_rate_hourly")
        .unwrap();
    assert_eq!(cost["unit"], "dollar");
    assert_eq!(cost["per_unit"], "hour");
    assert_eq!(cost["type"], "gauge");
    assert!(!r.all_output().contains("app-key-value"));
    let no_app = run(skydeck(home.path())
        .env("DD_SITE", fake.url())
        .env("DD_API_KEY", GOOD_KEY)
        .env_remove("DD_APP_KEY")
        .env_remove("DD_APPLICATION_KEY")
        .args(["datadog", "sync-metadata"]));
    assert_eq!(no_app.code, 2);
    assert!(
        no_app.stderr.contains("application key"),
        "{}",
        no_app.stderr
    );
}
