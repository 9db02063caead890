//! `skydeck serve` end to end: the real binary against the real SkyPilot server (values equal
//! to `collect`'s, which the real-server tests prove equal to an independent oracle), a real
//! Prometheus scraping it, a fake SkyPilot server that goes away (the last values stay), a
//! local Datadog intake, auth, bad input and SIGTERM.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use skydeck_testkit::datadog::{FakeDatadog, GOOD_KEY};
use skydeck_testkit::{Behavior, FakeSkypilot};

use crate::util::{run, skydeck};

/// A running `skydeck serve`, killed when dropped.
pub struct Served {
    child: Child,
    pub url: String,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
    http: reqwest::blocking::Client,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Starts serve with `args` (after `serve --listen 127.0.0.1:0`) and `env`, in a sandbox
    /// HOME, and waits for its listening line.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Served {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, args, env)
    }

    /// The same in a given sandbox directory (its files may be named in `args`).
    pub fn start_in(dir: tempfile::TempDir, args: &[&str], env: &[(&str, &str)]) -> Served {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let log = dir.path().join("serve.log");
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("skydeck"));
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("HOME", dir.path())
            .env("SKYDECK_LOG", "info")
            .env_remove("KUBECONFIG")
            .env_remove("SKYPILOT_API_SERVER_ENDPOINT")
            .env_remove("SKYPILOT_SERVICE_ACCOUNT_TOKEN")
            .env_remove("SKYPILOT_API_KEY")
            .env_remove("SKYPILOT_GLOBAL_CONFIG")
            .env_remove("SKYPILOT_CLUSTER_FILTER")
            .env_remove("SKYPILOT_REGION")
            .env_remove("DD_API_KEY")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("skydeck serve starts");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let mut s = Served {
            child,
            url: String::new(),
            log,
            _dir: dir,
            http,
        };
        let t0 = Instant::now();
        s.url = loop {
            let text = s.log_text();
            if let Some(line) = text.lines().find(|l| l.contains("serve listening on "))
                && text.contains(&format!("{line}\n"))
            {
                break line
                    .split("listening on ")
                    .nth(1)
                    .unwrap()
                    .trim()
                    .to_string();
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("skydeck serve exited with {status}; its log:\n{text}");
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "skydeck serve did not start; its log:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        s
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path` with an optional bearer token: status, content type, body.
    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, String, String) {
        let mut req = self.http.get(format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().expect("serve answers");
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (status, ct, resp.text().unwrap_or_default())
    }

    /// Polls until `/readyz` answers 200.
    pub fn wait_ready(&self, token: Option<&str>) {
        let t0 = Instant::now();
        loop {
            let (code, _, body) = self.get("/readyz", token);
            if code == 200 {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(300),
                "serve never became ready: {body}\nlog:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn metrics(&self, token: Option<&str>) -> String {
        let (code, _, body) = self.get("/metrics", token);
        assert_eq!(code, 200, "{body}");
        body
    }

    /// Polls `/metrics` until `pred` holds.
    pub fn wait_metrics(&self, what: &str, pred: impl Fn(&Exposition) -> bool) -> Exposition {
        let t0 = Instant::now();
        loop {
            let e = Exposition::parse(&self.metrics(None));
            if pred(&e) {
                return e;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "{what} never showed in /metrics:\n{}\nlog:\n{}",
                e.text,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// SIGTERM, then the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t0 = Instant::now();
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "serve ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A parsed text exposition: `name{sorted labels}` → value.
pub struct Exposition {
    pub text: String,
    pub series: BTreeMap<(String, BTreeMap<String, String>), f64>,
}

impl Exposition {
    pub fn parse(text: &str) -> Exposition {
        let mut series = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (head, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match head.split_once('{') {
                Some((n, rest)) => (n.to_string(), parse_labels(rest.trim_end_matches('}'))),
                None => (head.to_string(), BTreeMap::new()),
            };
            let v = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap(),
            };
            series.insert((name, labels), v);
        }
        Exposition {
            text: text.to_string(),
            series,
        }
    }

    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.series.get(&(name.to_string(), want)).copied()
    }
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some((k, r)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = r.char_indices();
        let mut end = r.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => {
                    end = i;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(k.trim_start_matches(',').to_string(), value);
        rest = &r[(end + 1).min(r.len())..];
    }
    out
}

/// `promtool check metrics` on `text`: 0 (clean) or 3 (lint warnings only) is a pass.
pub fn promtool_check(text: &str) {
    let promtool = std::env::var("SKYDECK_TEST_PROMTOOL").unwrap_or_else(|_| {
        panic!("SKYDECK_TEST_PROMTOOL is not set: run the tests with scripts/test.sh")
    });
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "promtool check metrics: {said}\n{text}"
    );
}

/// A real Prometheus on 127.0.0.1 with a config the test writes, stopped when dropped.
pub struct Prometheus {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
    http: reqwest::blocking::Client,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Prometheus {
    /// Starts Prometheus with these `scrape_configs` (YAML, indented as list items).
    pub fn start(scrape_configs: &str, files: &[(&str, &str)]) -> Prometheus {
        let bin = std::env::var("SKYDECK_TEST_PROMETHEUS").unwrap_or_else(|_| {
            panic!("SKYDECK_TEST_PROMETHEUS is not set: run the tests with scripts/test.sh")
        });
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n{scrape_configs}"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus starts");
        let p = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        let t0 = Instant::now();
        while p
            .http
            .get(format!("{}/-/ready", p.url))
            .send()
            .map(|r| r.status().as_u16())
            .ok()
            != Some(200)
        {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "Prometheus did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// `/api/v1/query` → the result vector.
    pub fn query(&self, q: &str) -> Vec<serde_json::Value> {
        let v: serde_json::Value = self
            .http
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", q)])
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(v["status"], "success", "{v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Polls `q` until it returns at least one series.
    pub fn wait_query(&self, q: &str) -> Vec<serde_json::Value> {
        let t0 = Instant::now();
        loop {
            let r = self.query(q);
            if !r.is_empty() {
                return r;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "Prometheus never had data for {q}; targets: {}",
                serde_json::to_string_pretty(&self.targets()).unwrap()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// `/api/v1/targets` → active targets.
    pub fn targets(&self) -> Vec<serde_json::Value> {
        let v: serde_json::Value = self
            .http
            .get(format!("{}/api/v1/targets", self.url))
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

fn value_of(series: &serde_json::Value) -> f64 {
    series["value"][1].as_str().unwrap().parse().unwrap()
}

fn small_peer() -> PathBuf {
    let dir = std::env::var_os("SKYDECK_TEST_SKYPILOT_SMALL").unwrap_or_else(|| {
        panic!(
            "SKYDECK_TEST_SKYPILOT_SMALL is not set: this test needs the real SkyPilot API \
             server that scripts/test.sh starts"
        )
    });
    PathBuf::from(dir)
}

fn endpoint_of(peer: &Path) -> String {
    std::fs::read_to_string(peer.join("endpoint"))
        .unwrap()
        .trim()
        .to_string()
}

/// Metrics that move with the clock between two reads of the same fleet.
fn clock_dependent(name: &str) -> bool {
    name.contains("longest_running")
        || name.contains("cost")
        || name.contains("burn_rate")
        || name.contains("duration")
        || name.contains("estimated_monthly")
}

#[test]
fn serve_matches_collect_on_the_real_server_and_prometheus_scrapes_it() {
    let peer = small_peer();
    let endpoint = endpoint_of(&peer);
    let home = tempfile::tempdir().unwrap();
    let collected = run(skydeck(home.path()).args([
        "collect",
        "--format",
        "json",
        "--timeout",
        "5m",
        "--deadline",
        "6m",
        "--endpoint",
        &endpoint,
    ]));
    assert_eq!(collected.code, 0, "{}", collected.stderr);

    let served = Served::start(
        &["--endpoint", &endpoint, "--no-discovery", "--timeout", "5m"],
        &[],
    );
    served.wait_ready(None);
    let text = served.metrics(None);
    promtool_check(&text);
    let e = Exposition::parse(&text);
    let mut compared = 0;
    for s in collected.samples() {
        let name = s["name"].as_str().unwrap();
        let Some(def) = skydeck_core::catalog::find(name) else {
            continue;
        };
        if !name.starts_with("skypilot.") {
            continue;
        }
        let tags: BTreeMap<String, String> = serde_json::from_value(s["tags"].clone()).unwrap();
        let labels: Vec<(&str, &str)> =
            tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let want = s["value"].as_f64().unwrap() * def.unit.prometheus_scale();
        let got = e.get(def.prometheus, &labels).unwrap_or_else(|| {
            panic!(
                "{} {labels:?} missing from /metrics:\n{text}",
                def.prometheus
            )
        });
        if clock_dependent(name) {
            let tol = want.abs() * 0.02 + 120.0 * def.unit.prometheus_scale().max(1.0);
            assert!(
                (got - want).abs() <= tol,
                "{}: serve {got}, collect {want}",
                def.prometheus
            );
        } else {
            assert_eq!(got, want, "{} {labels:?}", def.prometheus);
        }
        compared += 1;
    }
    assert!(compared >= 25, "only {compared} metrics compared");
    assert_eq!(
        e.get("skydeck_collector_up", &[("collector", "skypilot")]),
        Some(1.0)
    );
    for req in ["status", "jobs", "cost"] {
        assert_eq!(
            e.get("skydeck_skypilot_request_up", &[("request", req)]),
            Some(1.0),
            "{req}"
        );
    }

    // A real Prometheus scrapes the fleet job and gets the same values.
    let host = served.url.trim_start_matches("http://").to_string();
    let prom = Prometheus::start(
        &format!("  - job_name: skydeck\n    static_configs: [{{targets: ['{host}']}}]\n"),
        &[],
    );
    let r = prom.wait_query("skypilot_clusters_active");
    assert_eq!(
        value_of(&r[0]),
        e.get("skypilot_clusters_active", &[]).unwrap()
    );
    let r = prom.wait_query("skypilot_jobs_success_ratio_7d");
    assert_eq!(
        value_of(&r[0]),
        e.get("skypilot_jobs_success_ratio_7d", &[]).unwrap()
    );
    let up = prom.wait_query("up{job=\"skydeck\"}");
    assert_eq!(value_of(&up[0]), 1.0);
}

#[test]
fn a_scope_restricts_every_metric_and_the_log_says_so() {
    let peer = small_peer();
    let endpoint = endpoint_of(&peer);
    let home = tempfile::tempdir().unwrap();
    let all =
        run(skydeck(home.path()).args(["collect", "--format", "json", "--endpoint", &endpoint]));
    assert_eq!(all.code, 0, "{}", all.stderr);
    let none = run(skydeck(home.path())
        .args(["collect", "--format", "json", "--endpoint", &endpoint])
        .env("SKYPILOT_CLUSTER_FILTER", "no-such-cluster-*"));
    assert_eq!(none.code, 0, "{}", none.stderr);
    assert!(
        none.stderr.contains("filter on: names=no-such-cluster-*"),
        "{}",
        none.stderr
    );
    let total = |r: &crate::util::Run| -> f64 {
        r.samples()
            .iter()
            .filter(|s| s["name"] == "skypilot.clusters.count")
            .map(|s| s["value"].as_f64().unwrap())
            .sum()
    };
    assert!(total(&all) > 0.0);
    assert_eq!(
        total(&none),
        0.0,
        "a filter matching nothing counts no cluster"
    );
    assert_eq!(none.value("skypilot.jobs.completed_7d", &[]), Some(0.0));
    let bad =
        run(skydeck(home.path()).args(["collect", "--endpoint", &endpoint, "--scope-label", "=x"]));
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("scope") && bad.stderr.contains("no key"),
        "{}",
        bad.stderr
    );
}

#[test]
fn last_values_stay_when_skypilot_goes_away() {
    let fake = FakeSkypilot::start(Behavior::Healthy);
    let served = Served::start(
        &[
            "--endpoint",
            &fake.url(),
            "--no-discovery",
            "--status-interval",
            "1s",
            "--jobs-interval",
            "1s",
            "--cost-interval",
            "1s",
            "--timeout",
            "3s",
        ],
        &[],
    );
    served.wait_ready(None);
    let before = served.wait_metrics("skypilot metrics", |e| {
        e.get("skypilot_clusters_active", &[]).is_some()
    });
    let active = before.get("skypilot_clusters_active", &[]).unwrap();
    drop(fake);
    let after = served.wait_metrics("skypilot down", |e| {
        e.get("skydeck_collector_up", &[("collector", "skypilot")]) == Some(0.0)
    });
    assert_eq!(after.get("skypilot_clusters_active", &[]), Some(active));
    assert!(
        after
            .get(
                "skydeck_collector_last_success_timestamp_seconds",
                &[("collector", "skypilot")]
            )
            .is_some()
    );
    // Whichever request noticed first (status, jobs or cost) counts a failed refresh.
    let failed: f64 = ["status", "jobs", "cost"]
        .iter()
        .filter_map(|r| {
            after.get(
                "skydeck_skypilot_requests_total",
                &[("request", r), ("result", "failed")],
            )
        })
        .sum();
    assert!(failed >= 1.0, "{}", after.text);
    // Two intervals without a good answer: not ready, and it says why.
    let t0 = Instant::now();
    loop {
        let (code, _, body) = served.get("/readyz", None);
        if code == 503 {
            assert!(body.contains("skypilot"), "{body}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "still ready: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn auth_token_guards_every_route_but_healthz_and_never_leaks() {
    let fake = FakeSkypilot::start(Behavior::Healthy);
    let dir = tempfile::tempdir().unwrap();
    let token = "serve-secret-7f3a9c";
    std::fs::write(dir.path().join("token"), format!("{token}\n")).unwrap();
    let token_path = dir.path().join("token").display().to_string();
    let mut served = Served::start_in(
        dir,
        &[
            "--endpoint",
            &fake.url(),
            "--no-discovery",
            "--auth-token-file",
            &token_path,
        ],
        &[],
    );
    assert_eq!(served.get("/healthz", None).0, 200);
    served.wait_ready(None); // the probes need no token
    for path in ["/metrics", "/api/service-discovery", "/no-such-route"] {
        let (code, _, body) = served.get(path, None);
        assert_eq!(code, 401, "{path}: {body}");
        assert_eq!(served.get(path, Some("wrong")).0, 401, "{path}");
    }
    let (code, ct, body) = served.get("/metrics", Some(token));
    assert_eq!(code, 200);
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    assert!(body.contains("skypilot_clusters_active"));
    assert_eq!(served.terminate(), Some(0), "{}", served.log_text());
    let log = served.log_text();
    assert!(log.contains("skydeck serve stopped"), "{log}");
    assert!(!log.contains(token), "{log}");
}

#[test]
fn serve_pushes_every_collection_to_datadog() {
    let fake = FakeSkypilot::start(Behavior::Healthy);
    let dd = FakeDatadog::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("skydeck.toml"),
        "[[sinks]]\ntype = \"datadog\"\ntags = [\"env:test\"]\n",
    )
    .unwrap();
    let served = Served::start_in(
        dir,
        &[
            "--endpoint",
            &fake.url(),
            "--no-discovery",
            "--config",
            "skydeck.toml",
        ],
        &[("DD_API_KEY", GOOD_KEY), ("DD_SITE", &dd.url())],
    );
    served.wait_ready(None);
    let t0 = Instant::now();
    while dd.accepted_points() == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "nothing reached Datadog: {}",
            served.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let names: Vec<String> = dd
        .series()
        .iter()
        .flat_map(|r| {
            r.body["series"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|s| s["metric"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    assert!(
        names.iter().any(|n| n == "skypilot.clusters.active"),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n == "skydeck.collector.up"),
        "{names:?}"
    );
    let e = served.wait_metrics("a delivery count", |e| {
        e.get(
            "skydeck_sink_deliveries_total",
            &[("sink", "datadog"), ("result", "ok")],
        )
        .is_some_and(|n| n >= 1.0)
    });
    assert!(
        e.get(
            "skydeck_sink_points_total",
            &[("sink", "datadog"), ("result", "accepted")]
        )
        .unwrap()
            > 0.0
    );
    assert!(
        served.log_text().contains("✓ datadog:"),
        "{}",
        served.log_text()
    );
    assert!(!served.log_text().contains(GOOD_KEY));
}

#[test]
fn bad_input_is_a_clear_configuration_error() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("bad-kubeconfig"),
        "apiVersion: v1\nclusters: [oops\n",
    )
    .unwrap();
    let r = run(skydeck(home.path()).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--no-skypilot",
        "--kubeconfig",
        "bad-kubeconfig",
    ]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("bad-kubeconfig"), "{}", r.stderr);
    let r = run(skydeck(home.path()).args(["serve", "--discovery-mode", "tunnel"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("service, pod or proxy"), "{}", r.stderr);
    std::fs::write(home.path().join("skydeck.toml"), "[serve]\njitter = 2.0\n").unwrap();
    let r = run(skydeck(home.path()).args(["serve", "--config", "skydeck.toml"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("jitter"), "{}", r.stderr);
    std::fs::remove_file(home.path().join("skydeck.toml")).unwrap();
    let r = run(skydeck(home.path()).args(["serve", "--auth-token-file", "missing-token"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("missing-token"), "{}", r.stderr);
}
