//! The SkyPilot collector against a server that misbehaves: every fault ends in a clear error
//! within the deadline, and the other collectors' metrics are still produced.

use skydeck_testkit::{Behavior, FakeSkypilot};

use crate::util::{Run, config_with_probe, run, skydeck};

const SECRET: &str = "sky_eyJhbGciOiJIUzI1NiJ9.secret-token-value";

/// Runs `collect` against a fake server with a 3 s SkyPilot timeout.
fn collect_against(behavior: Behavior) -> (FakeSkypilot, Run) {
    collect_with_timeout(behavior, "3s")
}

/// Runs `collect` against a fake server with SkyPilot timeout `timeout`.
fn collect_with_timeout(behavior: Behavior, timeout: &str) -> (FakeSkypilot, Run) {
    let fake = FakeSkypilot::start(behavior);
    let home = tempfile::tempdir().unwrap();
    let cfg = config_with_probe(home.path(), "");
    let r = run(skydeck(home.path())
        .env("SKYPILOT_SERVICE_ACCOUNT_TOKEN", SECRET)
        .args([
            "collect",
            "--format",
            "json",
            "--timeout",
            timeout,
            "--deadline",
            "30s",
        ])
        .arg("--config")
        .arg(&cfg)
        .arg("--endpoint")
        .arg(fake.url()));
    (fake, r)
}

/// The common assertions of a fault: exit 1, the message, the probe's metric, skypilot down,
/// within the deadline, no secret anywhere.
fn assert_fault(r: &Run, expect: &[&str]) {
    assert_eq!(r.code, 1, "stderr: {}", r.stderr);
    let line = r
        .stderr
        .lines()
        .find(|l| l.starts_with("✗ skypilot:"))
        .unwrap_or_else(|| panic!("no skypilot summary line in {}", r.stderr));
    for e in expect {
        assert!(line.contains(e), "expected {e:?} in {line:?}");
    }
    assert_eq!(
        r.value("probe_ok", &[]),
        Some(1.0),
        "the other collector's metrics are lost"
    );
    assert_eq!(
        r.value("skydeck.collector.up", &[("collector", "skypilot")]),
        Some(0.0)
    );
    assert_eq!(
        r.value("skydeck.collector.up", &[("collector", "probe")]),
        Some(1.0)
    );
    assert!(r.stderr.contains("✓ probe: 1 metrics in"), "{}", r.stderr);
    // 3 s timeout plus the runner's 1 s backstop; generous slack for a loaded machine.
    assert!(r.elapsed.as_secs() < 20, "took {:?}", r.elapsed);
    assert!(
        !r.all_output().contains("secret-token-value"),
        "the token leaked"
    );
}

#[test]
fn connection_refused() {
    let (_f, r) = collect_against(Behavior::Refuse);
    assert_fault(
        &r,
        &[
            "cannot reach the SkyPilot API server at http://127.0.0.1:",
            "refused",
        ],
    );
}

#[test]
fn accepts_and_never_answers() {
    let (_f, r) = collect_against(Behavior::Hang);
    assert_fault(&r, &["/api/health"]);
    assert!(
        r.stderr.contains("3 s") || r.stderr.contains("3s"),
        "{}",
        r.stderr
    );
}

#[test]
fn answers_a_byte_a_second() {
    let (_f, r) = collect_against(Behavior::Drip);
    assert_fault(&r, &["/api/health"]);
}

#[test]
fn rejected_credential_names_endpoint_and_source() {
    let (fake, r) = collect_against(Behavior::Unauthorized);
    assert_fault(
        &r,
        &[
            "401",
            "$SKYPILOT_SERVICE_ACCOUNT_TOKEN",
            "Invalid or expired service account token",
            &fake.url(),
        ],
    );
    let auth: Vec<String> = fake
        .requests()
        .iter()
        .filter_map(|q| {
            q.headers
                .iter()
                .find(|(k, _)| k == "authorization")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert!(!auth.is_empty() && auth.iter().all(|a| a == &format!("Bearer {SECRET}")));
}

#[test]
fn failed_request_gives_the_server_error() {
    let (_f, r) = collect_against(Behavior::RequestFails);
    assert_fault(
        &r,
        &[
            "failed with RuntimeError",
            "Failed to query the jobs database",
        ],
    );
}

#[test]
fn malformed_json_names_the_path() {
    let (_f, r) = collect_against(Behavior::Malformed);
    assert_fault(&r, &["cannot decode the response to /"]);
}

#[test]
fn hundred_megabyte_response_is_refused() {
    // Reading 64 MiB over loopback takes well under a second on an idle machine, but CI runs
    // every test at once on two cores: a timeout this test is not about must not end the read
    // before the size limit does (the deadline, 30 s, still bounds the run).
    let (_f, r) = collect_with_timeout(Behavior::Huge, "20s");
    assert_fault(&r, &["larger than the 64 MiB limit"]);
}

#[test]
fn version_mismatch_is_explained() {
    let (_f, r) = collect_against(Behavior::VersionMismatch);
    assert_fault(
        &r,
        &["incompatible with this client", "requires a newer client"],
    );
    assert!(!r.stderr.contains('\u{1b}'), "ANSI codes must be stripped");
    let (_f, r) = collect_against(Behavior::OldServer);
    assert_fault(
        &r,
        &["server API version 12", "older than the oldest supported"],
    );
}

#[test]
fn a_request_that_never_finishes_is_named() {
    let (_f, r) = collect_against(Behavior::SlowJobsQueue);
    assert_fault(&r, &["timed out after 3 s", "waiting for /jobs/queue/v2"]);
}

#[test]
fn healthy_fake_speaks_the_protocol() {
    let (fake, r) = collect_against(Behavior::Healthy);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("✓ skypilot:"), "{}", r.stderr);
    assert!(r.value("skypilot.clusters.active", &[]).is_some());
    let reqs = fake.requests();
    for q in &reqs {
        let header = |name: &str| {
            q.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("x-skypilot-api-version"), Some("62"), "{}", q.path);
        assert_eq!(header("x-skypilot-version"), Some("0.14.1"));
    }
    let body = |path: &str| -> serde_json::Value {
        let q = reqs
            .iter()
            .find(|q| q.method == "POST" && q.path == path)
            .unwrap();
        serde_json::from_str(&q.body).unwrap()
    };
    let status = body("/status");
    assert_eq!(status["include_credentials"], false);
    assert_eq!(status["include_handle"], false);
    assert_eq!(status["all_users"], true);
    assert_eq!(status["refresh"], "NONE");
    let jobs = body("/jobs/queue/v2");
    assert_eq!(jobs["all_users"], true);
    assert_eq!(jobs["skip_finished"], false);
    assert!(
        jobs.get("page").is_none() && jobs.get("limit").is_none(),
        "one request for all jobs"
    );
    assert!(
        jobs["fields"].as_array().unwrap().len() < 20,
        "only the fields the metrics need"
    );
    assert_eq!(body("/cost_report")["days"], 7);
    // One POST per operation: fewer requests, fewer server subprocesses.
    assert_eq!(reqs.iter().filter(|q| q.method == "POST").count(), 3);
}

#[test]
fn cluster_queues_unreadable_are_counted_not_guessed() {
    let fake = FakeSkypilot::start(Behavior::Healthy);
    let home = tempfile::tempdir().unwrap();
    let r = run(skydeck(home.path())
        .args([
            "collect",
            "--format",
            "json",
            "--cluster-queues",
            "--endpoint",
        ])
        .arg(fake.url()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let up = r.value("skypilot.clusters.active", &[]).unwrap();
    assert!(up > 0.0);
    assert_eq!(
        r.value("skypilot.clusters.queue_unreachable", &[]),
        Some(up)
    );
    assert_eq!(r.value("skypilot.clusters.idle", &[]), Some(0.0));
}

#[test]
fn fallback_local_uses_a_local_server_only_when_asked() {
    let local = FakeSkypilot::start(Behavior::Healthy);
    let port = local.url().rsplit(':').next().unwrap().to_string();
    let dead = FakeSkypilot::start(Behavior::Refuse);
    let home = tempfile::tempdir().unwrap();
    let base = |extra: &[&str]| {
        let mut cmd = skydeck(home.path());
        cmd.env("SKYPILOT_API_SERVER_LOCAL_PORT", &port)
            .args([
                "collect",
                "--format",
                "json",
                "--timeout",
                "5s",
                "--endpoint",
            ])
            .arg(dead.url())
            .args(extra);
        run(&mut cmd)
    };
    let without = base(&[]);
    assert_eq!(without.code, 1);
    assert!(local.requests().is_empty(), "no fallback without the flag");
    let with = base(&["--fallback-local"]);
    assert_eq!(with.code, 0, "{}", with.stderr);
    assert!(with.stderr.contains("--fallback-local"), "{}", with.stderr);
    assert!(with.value("skypilot.jobs.running", &[]).is_some());

    // Rejected credential + no local server: both reasons are given.
    let unauthorized = FakeSkypilot::start(Behavior::Unauthorized);
    let mut cmd = skydeck(home.path());
    cmd.env(
        "SKYPILOT_API_SERVER_LOCAL_PORT",
        dead.url().rsplit(':').next().unwrap(),
    )
    .env("SKYPILOT_API_KEY", SECRET)
    .args([
        "collect",
        "--format",
        "json",
        "--fallback-local",
        "--endpoint",
    ])
    .arg(unauthorized.url());
    let r = run(&mut cmd);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("$SKYPILOT_API_KEY"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("--fallback-local found no usable local API server"),
        "{}",
        r.stderr
    );
    assert!(!r.all_output().contains("secret-token-value"));
}

#[test]
fn an_unreadable_token_fails_the_skypilot_collector_only() {
    let fake = FakeSkypilot::start(Behavior::Healthy);
    let home = tempfile::tempdir().unwrap();
    // A directory where the token file should be: readable as nothing.
    let token_dir = home.path().join("token");
    std::fs::create_dir(&token_dir).unwrap();
    let cfg = config_with_probe(home.path(), "");
    let r = run(skydeck(home.path())
        .args(["collect", "--format", "json", "--config"])
        .arg(&cfg)
        .arg("--token-file")
        .arg(&token_dir)
        .args(["--endpoint", &fake.url()]));
    assert_eq!(r.code, 1, "{}", r.stderr);
    let line = r
        .stderr
        .lines()
        .find(|l| l.starts_with("✗ skypilot:"))
        .unwrap();
    assert!(line.contains("cannot read the SkyPilot token"), "{line}");
    assert!(line.contains(&token_dir.display().to_string()), "{line}");
    assert_eq!(r.value("probe_ok", &[]), Some(1.0));
    assert!(fake.requests().is_empty(), "no request without the token");
}
