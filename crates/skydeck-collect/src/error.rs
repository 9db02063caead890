//! Why a collector produced no samples.

use std::time::Duration;

/// Errors of one collector run.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// A SkyPilot API call failed.
    #[error(transparent)]
    Skypilot(#[from] skydeck_skypilot::Error),
    /// The configured server could not be used and neither could the local fallback.
    #[error("{primary}; --fallback-local found no usable local API server either: {local}")]
    Fallback {
        /// Why the configured server could not be used.
        primary: skydeck_skypilot::Error,
        /// Why the local server could not be used.
        local: skydeck_skypilot::Error,
    },
    /// The collector ran past its timeout and was stopped.
    #[error(
        "timed out after {}{}{}",
        fmt_secs(*after),
        waiting_suffix(waiting_for),
        killed_suffix(*killed)
    )]
    TimedOut {
        /// The timeout that passed.
        after: Duration,
        /// Processes killed (external commands), if any were counted.
        killed: Option<usize>,
        /// Requests still outstanding (SkyPilot API paths).
        waiting_for: Vec<&'static str>,
    },
    /// The collector could not be set up (e.g. its credential could not be read).
    #[error("{reason}")]
    Unavailable {
        /// What is missing, naming the input.
        reason: String,
    },
    /// An external command could not be started.
    #[error("cannot start `{program}`: {reason}")]
    Spawn {
        /// argv[0].
        program: String,
        /// The OS error.
        reason: String,
    },
    /// An external command exited unsuccessfully.
    #[error("`{program}` exited with {status}{}", stderr_suffix(stderr))]
    Exit {
        /// argv[0].
        program: String,
        /// Exit code or signal.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// An external command's output is not valid samples.
    #[error("line {line} of `{program}`'s output: {message}")]
    Parse {
        /// argv[0].
        program: String,
        /// 1-based line number.
        line: usize,
        /// What was wrong and what was expected.
        message: String,
    },
    /// Output larger than the limit.
    #[error("`{program}` wrote more than {limit} bytes to stdout")]
    OutputTooLarge {
        /// argv[0].
        program: String,
        /// The limit.
        limit: usize,
    },
}

/// `120 s`, `0.5 s`.
pub fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.2} s")
    }
}

fn killed_suffix(killed: Option<usize>) -> String {
    match killed {
        Some(1) => ", killed 1 process".into(),
        Some(n) => format!(", killed {n} processes"),
        None => String::new(),
    }
}

fn waiting_suffix(paths: &[&'static str]) -> String {
    if paths.is_empty() {
        String::new()
    } else {
        format!(" waiting for {}", paths.join(", "))
    }
}

fn stderr_suffix(stderr: &str) -> String {
    let last = stderr.trim();
    if last.is_empty() {
        String::new()
    } else {
        format!(": {last}")
    }
}
