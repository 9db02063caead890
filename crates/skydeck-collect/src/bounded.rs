//! The one place skydeck runs a subprocess: in its own process group, under a deadline, and
//! with the whole group killed when the deadline passes.
//!
//! `tokio::time::timeout` only drops a future; a child process (and its children) keeps
//! running, which is exactly how the seed collector hung for 81 minutes. Here, at the deadline
//! the group gets SIGTERM, then after a grace period SIGKILL, and the leader is reaped. When the
//! leader exits on its own, whatever it left behind in its group is killed too, so no process
//! of a collector outlives its run. If the future itself is dropped (the run's global
//! deadline), a guard sends SIGKILL to the group synchronously.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// What a command that finished in time produced.
#[derive(Debug)]
pub struct BoundedOutput {
    /// Exit status of the leader.
    pub status: ExitStatus,
    /// Everything it wrote to stdout (at most the limit).
    pub stdout: Vec<u8>,
    /// The last few KiB of its stderr.
    pub stderr_tail: String,
}

/// Why a bounded command did not produce output.
#[derive(Debug, thiserror::Error)]
pub enum BoundedError {
    /// The command could not be started.
    #[error("cannot start: {0}")]
    Spawn(std::io::Error),
    /// The deadline passed; the group was killed.
    #[error("timed out after {after:?}, killed {killed} processes")]
    TimedOut {
        /// The deadline.
        after: Duration,
        /// Live processes in the group when the deadline passed.
        killed: usize,
    },
    /// Stdout exceeded the limit; the group was killed.
    #[error("stdout exceeded {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Reading the command's output failed.
    #[error("reading output: {0}")]
    Io(std::io::Error),
}

/// Bytes of stderr kept for error messages.
const STDERR_TAIL: usize = 2048;

/// Kills the group with SIGKILL when dropped while armed (the future was cancelled).
struct GroupGuard {
    pgid: Pid,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = killpg(self.pgid, Signal::SIGKILL);
        }
    }
}

/// Runs `cmd` in a new process group with stdin closed, stdout captured (at most
/// `max_stdout` bytes) and stderr's tail kept. At `limit` the group gets SIGTERM, after `grace`
/// SIGKILL. Returns within about `limit + grace` whatever the command and its descendants do
/// (descendants that leave the group with `setsid` are beyond any group kill).
pub async fn run_bounded(
    mut cmd: Command,
    limit: Duration,
    grace: Duration,
    max_stdout: usize,
) -> Result<BoundedOutput, BoundedError> {
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(BoundedError::Spawn)?;
    let pgid = Pid::from_raw(child.id().expect("a just-spawned child has a pid") as i32);
    let mut guard = GroupGuard { pgid, armed: true };

    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut out_task = tokio::spawn(read_limited(stdout, max_stdout));
    let err_task = tokio::spawn(read_tail(stderr, STDERR_TAIL));

    let deadline = tokio::time::Instant::now() + limit;
    let mut early_stdout: Option<Vec<u8>> = None;
    let waited = loop {
        tokio::select! {
            status = child.wait() => break Some(status.map_err(BoundedError::Io)?),
            _ = tokio::time::sleep_until(deadline) => break None,
            // A command flooding stdout is stopped at once rather than at its deadline.
            res = &mut out_task, if early_stdout.is_none() => {
                match res.map_err(|j| BoundedError::Io(std::io::Error::other(j))).and_then(|r| r) {
                    Ok(buf) => early_stdout = Some(buf),
                    Err(e) => {
                        kill_group(&mut child, pgid, Duration::ZERO).await;
                        guard.armed = false;
                        err_task.abort();
                        return Err(e);
                    }
                }
            }
        }
    };

    let Some(status) = waited else {
        let killed = group_members(pgid).unwrap_or(1);
        kill_group(&mut child, pgid, grace).await;
        guard.armed = false;
        out_task.abort();
        err_task.abort();
        return Err(BoundedError::TimedOut {
            after: limit,
            killed,
        });
    };

    // The leader is done: anything it left in its group is an orphan of this run.
    let _ = killpg(pgid, Signal::SIGKILL);
    guard.armed = false;
    let stdout = match early_stdout {
        Some(buf) => buf,
        None => match tokio::time::timeout(grace.max(Duration::from_millis(200)), out_task).await {
            Ok(Ok(r)) => r?,
            Ok(Err(join)) => return Err(BoundedError::Io(std::io::Error::other(join))),
            // Someone outside the group holds stdout open; don't wait on it.
            Err(_) => {
                return Err(BoundedError::Io(std::io::Error::other(
                    "stdout is still held open by a process that left the command's process group",
                )));
            }
        },
    };
    let stderr_tail = match tokio::time::timeout(Duration::from_millis(200), err_task).await {
        Ok(Ok(s)) => s,
        _ => String::new(),
    };
    Ok(BoundedOutput {
        status,
        stdout,
        stderr_tail,
    })
}

/// SIGTERM the group, wait up to `grace` for it to be empty, SIGKILL, reap the leader.
async fn kill_group(child: &mut tokio::process::Child, pgid: Pid, grace: Duration) {
    if !grace.is_zero() {
        let _ = killpg(pgid, Signal::SIGTERM);
        let until = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < until {
            // Reap the leader if it exited, so it does not count as a live member.
            let _ = child.try_wait();
            if group_members(pgid) == Some(0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    let _ = killpg(pgid, Signal::SIGKILL);
    // The leader is dead or dying: reaping it takes at most a moment.
    let _ = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
}

/// Live (non-zombie) processes whose process group is `pgid`, read from /proc. `None` where
/// /proc is not available.
pub fn group_members(pgid: Pid) -> Option<usize> {
    let dir = std::fs::read_dir("/proc").ok()?;
    let mut n = 0;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ..." where comm may hold spaces and parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let _ppid = fields.next();
        let pgrp = fields.next().and_then(|p| p.parse::<i32>().ok());
        if pgrp == Some(pgid.as_raw()) && state != Some("Z") && state != Some("X") {
            n += 1;
        }
    }
    Some(n)
}

async fn read_limited(
    mut r: impl AsyncRead + Unpin,
    limit: usize,
) -> Result<Vec<u8>, BoundedError> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = r.read(&mut chunk).await.map_err(BoundedError::Io)?;
        if n == 0 {
            return Ok(buf);
        }
        if buf.len() + n > limit {
            return Err(BoundedError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn read_tail(mut r: impl AsyncRead + Unpin, keep: usize) -> String {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = r.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 2 * keep {
            buf.drain(..buf.len() - keep);
        }
    }
    let start = buf.len().saturating_sub(keep);
    String::from_utf8_lossy(&buf[start..]).into_owned()
}
