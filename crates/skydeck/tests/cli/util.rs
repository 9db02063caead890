//! Helpers shared by the tests: running skydeck in a sandbox and reading its output.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use assert_cmd::Command;

/// A finished `skydeck` run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// Samples printed as JSON lines.
    pub fn samples(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }

    /// The value of the series `name` whose tags are exactly `tags`.
    pub fn value(&self, name: &str, tags: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples().into_iter().find_map(|s| {
            let got: BTreeMap<String, String> =
                serde_json::from_value(s["tags"].clone()).unwrap_or_default();
            (s["name"] == name && got == want).then(|| s["value"].as_f64().unwrap())
        })
    }

    /// Everything the run printed, for secret checks.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// A `skydeck` command that sees none of the developer's SkyPilot settings: HOME is `home`
/// (so `~/.sky/config.yaml` is the sandbox's), and SkyPilot's variables are cleared.
pub fn skydeck(home: &Path) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("skydeck"));
    cmd.env("HOME", home)
        .env_remove("SKYPILOT_API_SERVER_ENDPOINT")
        .env_remove("SKYPILOT_SERVICE_ACCOUNT_TOKEN")
        .env_remove("SKYPILOT_API_KEY")
        .env_remove("SKYPILOT_GLOBAL_CONFIG")
        .env_remove("SKYPILOT_API_SERVER_LOCAL_PORT")
        .env_remove("SKYDECK_LOG")
        .current_dir(home)
        .timeout(Duration::from_secs(600));
    cmd
}

/// Runs the command and captures everything.
pub fn run(cmd: &mut Command) -> Run {
    let t0 = Instant::now();
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("skydeck runs");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        elapsed: t0.elapsed(),
    }
}

/// Writes a config file with one external collector that prints `probe_ok 1`, so a test can
/// show the other collectors' metrics survive a SkyPilot failure.
pub fn config_with_probe(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("skydeck.toml");
    std::fs::write(
        &path,
        format!(
            "[[collectors]]\nname = \"probe\"\ncommand = [\"sh\", \"-c\", \"echo probe_ok 1\"]\n\
             timeout = \"10s\"\n{extra}"
        ),
    )
    .unwrap();
    path
}
