//! An external command as a collector (github, kubernetes, ec2, wandb, … from the seed), run
//! under the same protection as the built-in one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use skydeck_core::Sample;

use crate::bounded::{BoundedError, run_bounded};
use crate::exposition::{self, OutputFormat};
use crate::{CollectError, Collector, Context};

/// Largest stdout accepted from an external collector.
const MAX_STDOUT: usize = 32 << 20;

/// What the configuration says about one external collector.
#[derive(Debug, Clone)]
pub struct ExternalSpec {
    /// Name in summaries and tags.
    pub name: String,
    /// argv; argv[0] is looked up on PATH. No shell is involved.
    pub argv: Vec<String>,
    /// How long it may run.
    pub timeout: Duration,
    /// SIGTERM-to-SIGKILL grace period.
    pub grace: Duration,
    /// Output format.
    pub format: OutputFormat,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
}

/// A collector that runs [`ExternalSpec::argv`] and parses its stdout.
pub struct ExternalCollector {
    spec: ExternalSpec,
}

impl ExternalCollector {
    /// A collector for `spec`; `argv` must not be empty.
    pub fn new(spec: ExternalSpec) -> Self {
        assert!(!spec.argv.is_empty(), "external collector needs a command");
        ExternalCollector { spec }
    }
}

impl Collector for ExternalCollector {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn timeout(&self) -> Duration {
        self.spec.timeout
    }

    fn hard_limit(&self) -> Duration {
        // Leave room for SIGTERM → grace → SIGKILL → reap inside `run_bounded`.
        self.spec.timeout + self.spec.grace + Duration::from_secs(2)
    }

    fn collect<'a>(&'a self, cx: &'a Context) -> BoxFuture<'a, Result<Vec<Sample>, CollectError>> {
        async move {
            let program = self.spec.argv[0].clone();
            let mut cmd = tokio::process::Command::new(&program);
            cmd.args(&self.spec.argv[1..]).envs(&self.spec.env);
            if let Some(dir) = &self.spec.cwd {
                cmd.current_dir(dir);
            }
            // The global deadline may be nearer than the collector's own timeout.
            let limit = self
                .spec
                .timeout
                .min(cx.remaining().saturating_sub(self.spec.grace));
            let out = run_bounded(cmd, limit, self.spec.grace, MAX_STDOUT)
                .await
                .map_err(|e| match e {
                    BoundedError::Spawn(e) => CollectError::Spawn {
                        program: program.clone(),
                        reason: e.to_string(),
                    },
                    BoundedError::TimedOut { after, killed } => CollectError::TimedOut {
                        after,
                        killed: Some(killed),
                        waiting_for: Vec::new(),
                    },
                    BoundedError::TooLarge { limit } => CollectError::OutputTooLarge {
                        program: program.clone(),
                        limit,
                    },
                    BoundedError::Io(e) => CollectError::Exit {
                        program: program.clone(),
                        status: "an output error".into(),
                        stderr: e.to_string(),
                    },
                })?;
            if !out.status.success() {
                return Err(CollectError::Exit {
                    program,
                    status: out.status.to_string(),
                    stderr: last_line(&out.stderr_tail),
                });
            }
            let text = String::from_utf8_lossy(&out.stdout);
            exposition::parse(&text, self.spec.format, cx.started_at).map_err(|e| {
                CollectError::Parse {
                    program,
                    line: e.line,
                    message: e.message,
                }
            })
        }
        .boxed()
    }
}

fn last_line(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_string()
}
