//! External command collectors, including the seed's failure: a collector whose descendants
//! ignore SIGTERM is killed with its whole process group at its timeout.

use std::time::Duration;

use crate::util::{run, skydeck};

fn collect_with(config: &str) -> (tempfile::TempDir, crate::util::Run) {
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().join("skydeck.toml");
    std::fs::write(&cfg, config).unwrap();
    let r = run(skydeck(home.path())
        .args(["collect", "--no-skypilot", "--format", "json", "--config"])
        .arg(&cfg));
    (home, r)
}

/// Live processes in process group `pgid`, from /proc.
fn group_alive(pgid: i32) -> Vec<String> {
    let mut alive = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > 2 && f[2] == pgid.to_string() && f[0] != "Z" {
            alive.push(head.to_string());
        }
    }
    alive
}

#[test]
fn hung_collector_is_killed_with_its_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pgid");
    // The seed's hang: a collector that spawns children and grandchildren which ignore
    // SIGTERM, then waits forever.
    let script = format!(
        "trap '' TERM; echo $$ > {p}; \
         (trap '' TERM; sleep 300 & sleep 300; wait) & \
         (trap '' TERM; sleep 300) & \
         wait",
        p = pidfile.display()
    );
    let config = format!(
        "[collect]\nkill_grace = \"1s\"\n\
         [[collectors]]\nname = \"github\"\ncommand = [\"sh\", \"-c\", {script:?}]\ntimeout = \"2s\"\n\
         [[collectors]]\nname = \"ok\"\ncommand = [\"sh\", \"-c\", \"echo fine 1\"]\n"
    );
    let (_home, r) = collect_with(&config);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let line = r.stderr.lines().find(|l| l.contains("github")).unwrap();
    assert!(
        line.starts_with("✗ github: timed out after 2 s, killed "),
        "{line}"
    );
    let killed: usize = line
        .rsplit("killed ")
        .next()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(killed >= 4, "sh, two subshells and sleeps: {line}");
    // Timeout + grace + the runner's own overhead.
    assert!(
        r.elapsed < Duration::from_secs(2 + 1 + 5),
        "took {:?}",
        r.elapsed
    );
    let pgid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let alive = group_alive(pgid);
    assert!(
        alive.is_empty(),
        "processes of the collector's group survived: {alive:?}"
    );
    assert_eq!(r.value("fine", &[]), Some(1.0));
    assert_eq!(
        r.value("skydeck.collector.up", &[("collector", "github")]),
        Some(0.0)
    );
}

#[test]
fn background_leftovers_of_a_finished_collector_are_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pgid");
    let script = format!(
        "echo $$ > {p}; (sleep 300 >/dev/null 2>&1 &); echo done_metric 2",
        p = pidfile.display()
    );
    let config = format!(
        "[[collectors]]\nname = \"leaky\"\ncommand = [\"sh\", \"-c\", {script:?}]\ntimeout = \"10s\"\n"
    );
    let (_home, r) = collect_with(&config);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.value("done_metric", &[]), Some(2.0));
    let pgid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SIGKILL is delivered asynchronously; give the kernel a moment.
    for _ in 0..50 {
        if group_alive(pgid).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("leftover processes: {:?}", group_alive(pgid));
}

#[test]
fn failures_and_bad_output_are_reported_per_collector() {
    let config = r#"
[[collectors]]
name = "boom"
command = ["sh", "-c", "echo partial 1; echo 'token expired' >&2; exit 3"]
[[collectors]]
name = "garbage"
command = ["sh", "-c", "printf 'ok 1\nnot a metric line{\n'"]
[[collectors]]
name = "missing"
command = ["/nonexistent/collector"]
[[collectors]]
name = "jsonl"
command = ["sh", "-c", "echo '{\"name\":\"wandb.runs.active\",\"value\":4,\"tags\":{\"project\":\"x\"}}'"]
"#;
    let (_home, r) = collect_with(config);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("✗ boom: `sh` exited with exit status: 3: token expired"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("✗ garbage: line 2 of `sh`'s output"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("✗ missing: cannot start `/nonexistent/collector`"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("✓ jsonl: 1 metrics in"), "{}", r.stderr);
    assert_eq!(r.value("wandb.runs.active", &[("project", "x")]), Some(4.0));
    assert_eq!(
        r.value("partial", &[]),
        None,
        "a failed collector's output is not trusted"
    );
}

#[test]
fn usage_and_config_errors_exit_2_with_a_clear_message() {
    let home = tempfile::tempdir().unwrap();
    let r = run(skydeck(home.path()).args(["collect", "--config", "/nonexistent/skydeck.toml"]));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("cannot read config file /nonexistent/skydeck.toml"),
        "{}",
        r.stderr
    );
    let (_h, r) = collect_with("[skypilot]\ntimeot = \"5s\"\n");
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("timeot"), "{}", r.stderr);
    let r = run(skydeck(home.path()).args(["collect", "--deadline", "soon"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("expected e.g. 30s"), "{}", r.stderr);
    let r = run(skydeck(home.path()).args(["collect", "--breakdown", "cloud,zone"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("\"zone\""), "{}", r.stderr);
}

#[test]
fn help_never_shows_secrets() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = skydeck(home.path());
    cmd.env("SKYPILOT_SERVICE_ACCOUNT_TOKEN", "sky_help_secret")
        .env(
            "SKYPILOT_API_SERVER_ENDPOINT",
            "https://ops:hunter2@sky.example",
        )
        .args(["collect", "--help"]);
    let r = run(&mut cmd);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("--token-file"));
    assert!(!r.all_output().contains("sky_help_secret"));
    assert!(!r.all_output().contains("hunter2"));
}

#[test]
fn basic_auth_password_never_printed() {
    let home = tempfile::tempdir().unwrap();
    let fake = skydeck_testkit::FakeSkypilot::start(skydeck_testkit::Behavior::Refuse);
    let url = fake.url().replace("http://", "http://ops:hunter2@");
    let r = run(skydeck(home.path())
        .args([
            "-vv",
            "collect",
            "--format",
            "json",
            "--timeout",
            "2s",
            "--endpoint",
        ])
        .arg(&url));
    assert_eq!(r.code, 1);
    assert!(!r.all_output().contains("hunter2"), "{}", r.all_output());
}
