//! The opt-in idle stop (issue 11): which GPU-idle clusters to autostop, stop or take down, as a
//! pure function of the [`UtilizationReport`], the cluster table and "now" ([`decide`]), and the
//! executor that submits the SkyPilot requests ([`execute`]).
//!
//! The rules, per UP cluster with GPUs in the report:
//!
//! * never acted on, whatever the policy: SkyPilot's controllers (`sky-jobs-controller-*`,
//!   `sky-serve-controller-*`) and clusters a controller launched (a managed job's cluster, a
//!   SkyServe replica, a pool worker: `is_managed` in the record);
//! * never acted on: a cluster whose GPU data is not present and fresh for the whole window
//!   ([`Activity::Unknown`]), or that the cluster table does not show UP;
//! * excluded by the policy: the keep-alive label ([`DEFAULT_EXCLUDE_LABEL`]) or an exclude
//!   pattern; out of scope: not one of the policy's users, workspaces or name patterns;
//! * a candidate when idle for at least `min_idle` (the report's idle-since, extended by the
//!   previous runs' [`IdleMarks`] only where they join up with the current data);
//! * candidates are taken most expensive first, at most `max_actions_per_run`; the action
//!   `report` and `dry_run` say what would be done and do nothing.
//!
//! Only [`Outcome::Act`] decisions are submitted; nothing else reaches SkyPilot.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize, Serializer};
use skydeck_skypilot::api::{AutostopBody, ClusterRecord, ClusterStatus, DownBody, StopBody};

use crate::utilization::{Activity, ClusterUtilization, UtilizationReport};

/// The default `min_idle`: an hour of idle GPUs before anything is asked.
pub const DEFAULT_MIN_IDLE: Duration = Duration::from_secs(60 * 60);
/// The default `autostop_idle_minutes`: SkyPilot's own idle check gets five more minutes (its
/// jobs-and-SSH check still applies), so a user who just connected is not cut off.
pub const DEFAULT_AUTOSTOP_IDLE_MINUTES: u32 = 5;
/// The default `max_actions_per_run`.
pub const DEFAULT_MAX_ACTIONS_PER_RUN: usize = 3;
/// The default keep-alive label key: a cluster launched with this SkyPilot label
/// (`resources.labels`), whatever its value, is never acted on. It is a plain key without a
/// `prefix/` or dots because SkyPilot passes labels on as cloud tags and GCP label keys allow
/// only lower-case letters, digits, `-` and `_` (`skydeck.io/keep-alive` would be refused
/// there); this one is valid on AWS, GCP, Azure and Kubernetes alike.
pub const DEFAULT_EXCLUDE_LABEL: &str = "skydeck-keep-alive";
/// Name prefix of SkyPilot's managed-jobs controller (`sky/utils/common.py`).
pub const JOBS_CONTROLLER_PREFIX: &str = "sky-jobs-controller-";
/// Name prefix of SkyPilot's SkyServe controller (`sky/utils/common.py`).
pub const SERVE_CONTROLLER_PREFIX: &str = "sky-serve-controller-";

/// Largest `autostop_idle_minutes` accepted (a week).
const MAX_AUTOSTOP_MINUTES: u32 = 7 * 24 * 60;
/// Largest `max_actions_per_run` accepted: a typo must not become a fleet-wide stop.
const MAX_ACTIONS_LIMIT: usize = 100;

/// What the idle stop asks SkyPilot for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing: decisions are reported only (the default: the idle stop is opt-in).
    #[default]
    Report,
    /// `POST /autostop` with `autostop_idle_minutes`, `down: false`: SkyPilot stops the
    /// cluster once its own idle check agrees.
    Autostop,
    /// `POST /stop`.
    Stop,
    /// `POST /down` (tears the cluster down; disks are lost).
    Down,
}

impl Action {
    /// Every action, in the order of the docs.
    pub const ALL: [Action; 4] = [Action::Report, Action::Autostop, Action::Stop, Action::Down];

    /// `report`, `autostop`, `stop` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Report => "report",
            Action::Autostop => "autostop",
            Action::Stop => "stop",
            Action::Down => "down",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, PolicyError> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| PolicyError {
                field: "action",
                message: format!("{s:?} is not an action; expected report, autostop, stop or down"),
            })
    }
}

/// The idle-stop policy (`[idle]` of the config). Every field has a default, and the defaults
/// act on nothing (`action = "report"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdlePolicy {
    /// What to ask SkyPilot for.
    pub action: Action,
    /// How long every GPU of a cluster must have been idle (friendly duration: `60m`, `2h`).
    #[serde(with = "friendly_duration")]
    pub min_idle: Duration,
    /// `idle_minutes` of the `/autostop` request (action `autostop` only).
    pub autostop_idle_minutes: u32,
    /// Only clusters of these users (SkyPilot user name or user hash); empty: everyone.
    pub users: Vec<String>,
    /// Only clusters in these workspaces; empty: every workspace.
    pub workspaces: Vec<String>,
    /// Only clusters whose name matches one of these globs (`*`, `?`); empty: every name.
    pub name_patterns: Vec<String>,
    /// A cluster with this SkyPilot label key (any value) is never acted on.
    pub exclude_label: String,
    /// A cluster whose name matches one of these globs is never acted on.
    pub exclude_patterns: Vec<String>,
    /// At most this many requests per run, the most expensive clusters first.
    pub max_actions_per_run: usize,
    /// Decide and report, but submit nothing.
    pub dry_run: bool,
}

impl Default for IdlePolicy {
    fn default() -> Self {
        IdlePolicy {
            action: Action::Report,
            min_idle: DEFAULT_MIN_IDLE,
            autostop_idle_minutes: DEFAULT_AUTOSTOP_IDLE_MINUTES,
            users: Vec::new(),
            workspaces: Vec::new(),
            name_patterns: Vec::new(),
            exclude_label: DEFAULT_EXCLUDE_LABEL.to_string(),
            exclude_patterns: Vec::new(),
            max_actions_per_run: DEFAULT_MAX_ACTIONS_PER_RUN,
            dry_run: false,
        }
    }
}

/// A policy field that is not valid, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("idle.{field}: {message}")]
pub struct PolicyError {
    /// The field (`min_idle`, `name_patterns`, ...).
    pub field: &'static str,
    /// What is wrong and what was expected.
    pub message: String,
}

impl IdlePolicy {
    /// Checks every field; the first bad one is named with the values it accepts.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let err = |field: &'static str, message: String| Err(PolicyError { field, message });
        if self.min_idle < Duration::from_secs(60) {
            return err(
                "min_idle",
                format!(
                    "{} s is too short; expected a duration of at least 1m (e.g. 60m, 2h)",
                    self.min_idle.as_secs()
                ),
            );
        }
        if self.autostop_idle_minutes > MAX_AUTOSTOP_MINUTES {
            return err(
                "autostop_idle_minutes",
                format!(
                    "{} is out of range; expected whole minutes from 0 to {MAX_AUTOSTOP_MINUTES}",
                    self.autostop_idle_minutes
                ),
            );
        }
        if !(1..=MAX_ACTIONS_LIMIT).contains(&self.max_actions_per_run) {
            return err(
                "max_actions_per_run",
                format!(
                    "{} is out of range; expected 1 to {MAX_ACTIONS_LIMIT} (use action = \"report\" \
                     to act on nothing)",
                    self.max_actions_per_run
                ),
            );
        }
        for (field, values) in [("users", &self.users), ("workspaces", &self.workspaces)] {
            if values.iter().any(|v| v.trim().is_empty()) {
                return err(
                    field,
                    "contains an empty name; expected non-empty names (or an empty list for all)"
                        .into(),
                );
            }
        }
        for (field, patterns) in [
            ("name_patterns", &self.name_patterns),
            ("exclude_patterns", &self.exclude_patterns),
        ] {
            for p in patterns {
                if p.trim().is_empty() {
                    return err(
                        field,
                        "contains an empty pattern; expected globs such as \"dev-*\"".into(),
                    );
                }
                if p.contains(['[', ']']) {
                    // SkyPilot cluster names never contain brackets, so a bracket means a
                    // character class we would silently not honour.
                    return err(
                        field,
                        format!(
                            "{p:?}: character classes are not supported; expected globs with \
                             * and ? only"
                        ),
                    );
                }
            }
        }
        let key = &self.exclude_label;
        if key.is_empty()
            || key.len() > 253
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        {
            return err(
                "exclude_label",
                format!(
                    "{key:?} is not a label key; expected letters, digits, -, _, . or / \
                     (default {DEFAULT_EXCLUDE_LABEL:?})"
                ),
            );
        }
        Ok(())
    }
}

/// Why a cluster is not acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// A GPU reached the threshold within the window.
    Active,
    /// GPU data missing, stale or partial (or the cluster table disagrees): never acted on.
    UnknownData,
    /// Idle, but for less than `min_idle`.
    IdleTooShort,
    /// The managed-jobs controller, or a cluster a managed job runs on.
    ManagedJobCluster,
    /// The SkyServe controller, a service replica or a pool worker.
    ServeOrPoolCluster,
    /// Not one of the policy's users, workspaces or name patterns.
    NotInScope,
    /// Has the keep-alive label or matches an exclude pattern.
    Excluded,
    /// A candidate beyond `max_actions_per_run` (cheaper ones are cut first).
    CapReached,
    /// A candidate, but the action is `report`.
    ReportOnly,
    /// A candidate within the cap, but the policy is a dry run.
    DryRun,
}

impl SkipReason {
    /// The snake_case name (the `outcome` tag of `skydeck.idle.decisions`).
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Active => "active",
            SkipReason::UnknownData => "unknown_data",
            SkipReason::IdleTooShort => "idle_too_short",
            SkipReason::ManagedJobCluster => "managed_job_cluster",
            SkipReason::ServeOrPoolCluster => "serve_or_pool_cluster",
            SkipReason::NotInScope => "not_in_scope",
            SkipReason::Excluded => "excluded",
            SkipReason::CapReached => "cap_reached",
            SkipReason::ReportOnly => "report_only",
            SkipReason::DryRun => "dry_run",
        }
    }
}

/// What happens to a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The action is submitted.
    Act,
    /// Nothing is submitted, for this reason.
    Skipped(SkipReason),
}

impl Outcome {
    /// `act` or the skip reason's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Act => "act",
            Outcome::Skipped(r) => r.as_str(),
        }
    }
}

impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The decision on one UP cluster with GPUs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Cluster name.
    pub cluster: String,
    /// Owner's name.
    pub user: Option<String>,
    /// GPUs the cluster has.
    pub gpus: u32,
    /// Mean GPU utilization over the window, as a ratio 0–1.
    pub utilization: Option<f64>,
    /// Since when every GPU has been idle (across runs, see [`IdleMarks`]); `None` unless idle.
    pub idle_since: Option<Timestamp>,
    /// Hourly cost, when known.
    pub cost_per_hour: Option<f64>,
    /// The GPU verdict of the report.
    #[serde(serialize_with = "activity_str")]
    pub status: Activity,
    /// What would be or was asked (the policy's action).
    pub action: Action,
    /// For `autostop`, the `idle_minutes` asked.
    pub autostop_idle_minutes: Option<u32>,
    /// Act, or why not.
    pub outcome: Outcome,
    /// Why, in a sentence for operators.
    pub reason: String,
}

fn activity_str<S: Serializer>(a: &Activity, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(a.as_str())
}

/// What an earlier run saw: idle since `since`, still idle at `seen_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdleMark {
    /// Since when the cluster had been idle.
    pub since: Timestamp,
    /// When that run saw it idle.
    pub seen_at: Timestamp,
}

/// Per cluster name, the idle marks a caller keeps from one run to the next (from
/// [`idle_marks`]). The GPU windows reach back only so far; these let `min_idle` exceed them.
pub type IdleMarks = HashMap<String, IdleMark>;

/// The marks to keep for the next run: the idle clusters of `decisions`, seen at `at` (the
/// report's time). Clusters not idle now are left out, so idleness never bridges a busy or
/// unknown stretch.
pub fn idle_marks(decisions: &[Decision], at: Timestamp) -> IdleMarks {
    decisions
        .iter()
        .filter(|d| d.status == Activity::Idle)
        .filter_map(|d| {
            let since = d.idle_since?;
            Some((d.cluster.clone(), IdleMark { since, seen_at: at }))
        })
        .collect()
}

/// Decides, for every UP cluster with GPUs of `report`, whether to act (see the module docs).
/// The result is in acting order: most expensive first (unknown costs last), then by name.
///
/// `policy` is expected to have passed [`IdlePolicy::validate`]; `clusters` is this run's
/// `/status` table (a cluster the report has and the table lacks is never acted on);
/// `previous_idle_since` is what [`idle_marks`] returned last run, replaced wholesale each run.
pub fn decide(
    policy: &IdlePolicy,
    report: &UtilizationReport,
    clusters: &[ClusterRecord],
    now: Timestamp,
    previous_idle_since: &IdleMarks,
) -> Vec<Decision> {
    let table: HashMap<&str, &ClusterRecord> =
        clusters.iter().map(|c| (c.name.as_str(), c)).collect();
    // Each decision with whether it passed every rule; candidates get their outcome below.
    let mut out: Vec<(Decision, bool)> = report
        .clusters
        .iter()
        .map(|cu| {
            let record = table.get(cu.cluster.as_str()).copied();
            let idle_since = idle_since(cu, record, previous_idle_since.get(&cu.cluster), now);
            let (skip, reason) = match judge(policy, cu, record, idle_since, now) {
                Ok(summary) => (None, summary),
                Err((r, why)) => (Some(r), why),
            };
            let decision = Decision {
                cluster: cu.cluster.clone(),
                user: cu.user.clone(),
                gpus: cu
                    .expected_gpus
                    .max(cu.gpus.len().try_into().unwrap_or(u32::MAX)),
                utilization: cu.utilization,
                idle_since,
                cost_per_hour: cu.cost_per_hour,
                status: cu.status,
                action: policy.action,
                autostop_idle_minutes: (policy.action == Action::Autostop)
                    .then_some(policy.autostop_idle_minutes),
                // Never `Act` before the cap below has had its say.
                outcome: Outcome::Skipped(skip.unwrap_or(SkipReason::ReportOnly)),
                reason,
            };
            (decision, skip.is_none())
        })
        .collect();
    out.sort_by(|(a, _), (b, _)| {
        by_cost(a.cost_per_hour, b.cost_per_hour).then(a.cluster.cmp(&b.cluster))
    });

    // The cap goes down the cost order.
    let mut taken = 0;
    for d in out.iter_mut().filter(|(_, c)| *c).map(|(d, _)| d) {
        let (outcome, tail) = if policy.action == Action::Report {
            (
                Outcome::Skipped(SkipReason::ReportOnly),
                "action is report".to_string(),
            )
        } else if taken >= policy.max_actions_per_run {
            (
                Outcome::Skipped(SkipReason::CapReached),
                format!(
                    "cap of {} {} per run reached",
                    policy.max_actions_per_run,
                    if policy.max_actions_per_run == 1 {
                        "action"
                    } else {
                        "actions"
                    }
                ),
            )
        } else if policy.dry_run {
            taken += 1;
            (
                Outcome::Skipped(SkipReason::DryRun),
                format!("dry run: would {}", verb(d)),
            )
        } else {
            taken += 1;
            (Outcome::Act, verb(d))
        };
        d.outcome = outcome;
        d.reason = format!("{}; {tail}", d.reason);
    }
    out.into_iter().map(|(d, _)| d).collect()
}

/// Most expensive first; an unknown cost sorts last.
fn by_cost(a: Option<f64>, b: Option<f64>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(a), Some(b)) => b.total_cmp(&a),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

fn verb(d: &Decision) -> String {
    match d.action {
        Action::Autostop => format!(
            "autostop after {} idle min",
            d.autostop_idle_minutes.unwrap_or_default()
        ),
        Action::Stop => "stop".into(),
        Action::Down => "down".into(),
        Action::Report => "report".into(),
    }
}

/// The idle-since of an idle cluster: the report's, moved back to a previous run's when that
/// run saw the cluster idle at a time the current data already covers (so the two stretches
/// join up with no gap), and never before the cluster's launch (a relaunch under the same name
/// starts afresh).
fn idle_since(
    cu: &ClusterUtilization,
    record: Option<&ClusterRecord>,
    mark: Option<&IdleMark>,
    now: Timestamp,
) -> Option<Timestamp> {
    if cu.status != Activity::Idle {
        return None;
    }
    let mut since = cu.idle_since?;
    if let Some(m) = mark
        && m.since <= m.seen_at
        && m.seen_at <= now
        && m.seen_at >= since
    {
        since = since.min(m.since);
    }
    if let Some(launched) = record
        .and_then(|r| r.launched_at)
        .and_then(|s| Timestamp::from_second(s).ok())
    {
        since = since.max(launched);
    }
    Some(since.min(now))
}

/// The summary of a cluster that passed every rule, or why it is skipped.
fn judge(
    policy: &IdlePolicy,
    cu: &ClusterUtilization,
    record: Option<&ClusterRecord>,
    idle_since: Option<Timestamp>,
    now: Timestamp,
) -> Result<String, (SkipReason, String)> {
    let skip = |r: SkipReason, why: String| Err((r, why));
    let name = cu.cluster.as_str();
    if name.starts_with(JOBS_CONTROLLER_PREFIX) {
        return skip(
            SkipReason::ManagedJobCluster,
            "SkyPilot's managed-jobs controller".into(),
        );
    }
    if name.starts_with(SERVE_CONTROLLER_PREFIX) {
        return skip(
            SkipReason::ServeOrPoolCluster,
            "SkyPilot's SkyServe controller".into(),
        );
    }
    let Some(record) = record else {
        return skip(
            SkipReason::UnknownData,
            "not in the cluster table of this run".into(),
        );
    };
    if record.is_managed {
        return if launched_for_a_service(record) {
            skip(
                SkipReason::ServeOrPoolCluster,
                "launched by the SkyServe controller (a service replica or pool worker)".into(),
            )
        } else {
            skip(
                SkipReason::ManagedJobCluster,
                "launched by the managed-jobs controller".into(),
            )
        };
    }
    if record.status != ClusterStatus::Up {
        return skip(
            SkipReason::UnknownData,
            format!("the cluster table says {}", record.status.as_str()),
        );
    }
    if let Some(v) = record.labels.get(&policy.exclude_label) {
        return skip(
            SkipReason::Excluded,
            format!("label {}={v:?}", policy.exclude_label),
        );
    }
    if let Some(p) = policy.exclude_patterns.iter().find(|p| glob(p, name)) {
        return skip(
            SkipReason::Excluded,
            format!("name matches exclude pattern {p:?}"),
        );
    }
    if !policy.users.is_empty()
        && !policy.users.iter().any(|u| {
            record.user_name.as_deref() == Some(u.as_str())
                || record.user_hash.as_deref() == Some(u.as_str())
        })
    {
        return skip(
            SkipReason::NotInScope,
            format!(
                "user {} is not in users",
                record.user_name.as_deref().unwrap_or("(unknown)")
            ),
        );
    }
    if !policy.workspaces.is_empty()
        && !record
            .workspace
            .as_deref()
            .is_some_and(|w| policy.workspaces.iter().any(|p| p == w))
    {
        return skip(
            SkipReason::NotInScope,
            format!(
                "workspace {} is not in workspaces",
                record.workspace.as_deref().unwrap_or("(unknown)")
            ),
        );
    }
    if !policy.name_patterns.is_empty() && !policy.name_patterns.iter().any(|p| glob(p, name)) {
        return skip(
            SkipReason::NotInScope,
            "name matches none of name_patterns".into(),
        );
    }
    match cu.status {
        Activity::Unknown => return skip(SkipReason::UnknownData, cu.reason.clone()),
        Activity::Active => return skip(SkipReason::Active, cu.reason.clone()),
        Activity::Idle => {}
    }
    let Some(since) = idle_since else {
        return skip(
            SkipReason::UnknownData,
            "idle, but since when is not known".into(),
        );
    };
    let idle_for = Duration::from_secs(u64::try_from((now - since).get_seconds()).unwrap_or(0));
    let summary = format!(
        "idle {} min at {} (min_idle {} min); {}",
        idle_for.as_secs() / 60,
        percent(cu.utilization),
        policy.min_idle.as_secs() / 60,
        cost(cu.cost_per_hour)
    );
    if idle_for < policy.min_idle {
        return skip(SkipReason::IdleTooShort, summary);
    }
    Ok(summary)
}

/// A controller-launched cluster is a service's (replica or pool worker) when its launch YAML
/// has a top-level `service:` or `pool:` section; otherwise it is a managed job's.
fn launched_for_a_service(record: &ClusterRecord) -> bool {
    record.last_creation_yaml.as_deref().is_some_and(|yaml| {
        yaml.lines()
            .any(|l| l.starts_with("service:") || l.starts_with("pool:"))
    })
}

fn percent(ratio: Option<f64>) -> String {
    ratio.map_or_else(
        || "unknown utilization".into(),
        |r| format!("{:.1} %", r * 100.0),
    )
}

fn cost(c: Option<f64>) -> String {
    c.map_or_else(|| "cost unknown".into(), |c| format!("${c:.2}/h"))
}

/// Glob match of a whole name: `*` any run of characters, `?` one character.
pub fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and the name position it is matching up to: backtrack there.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// One submitted request.
#[derive(Debug)]
pub struct Executed {
    /// The cluster.
    pub cluster: String,
    /// What was asked.
    pub action: Action,
    /// SkyPilot's request id, or why the submission failed (the error keeps the server's own
    /// message: a 403 detail, a validation error, an unreachable server).
    pub result: Result<String, skydeck_skypilot::Error>,
}

impl Executed {
    /// The request id when the submission was accepted.
    pub fn request_id(&self) -> Option<&str> {
        self.result.as_deref().ok()
    }
}

/// Submits the request of every [`Outcome::Act`] decision of an idle cluster, most expensive
/// first, one at a time (at most `max_actions_per_run` of them). A failed submission is
/// recorded and the next one is still sent. Report-only, dry-run and skipped decisions send
/// nothing, and neither does a decision whose status is not idle, however it was built.
///
/// The requests are submitted, not awaited: `sky.stop`/`sky.down` take minutes; follow them
/// with [`skydeck_skypilot::Client::request_status`].
pub async fn execute(client: &skydeck_skypilot::Client, decisions: &[Decision]) -> Vec<Executed> {
    let mut todo: Vec<&Decision> = decisions
        .iter()
        .filter(|d| d.outcome == Outcome::Act && d.status == Activity::Idle)
        .filter(|d| d.action != Action::Report)
        .collect();
    todo.sort_by(|a, b| by_cost(a.cost_per_hour, b.cost_per_hour).then(a.cluster.cmp(&b.cluster)));
    let mut out = Vec::with_capacity(todo.len());
    for d in todo {
        let result = match d.action {
            Action::Autostop => {
                client
                    .submit_autostop(&AutostopBody {
                        cluster_name: &d.cluster,
                        idle_minutes: i64::from(
                            d.autostop_idle_minutes
                                .unwrap_or(DEFAULT_AUTOSTOP_IDLE_MINUTES),
                        ),
                        // The server's default (jobs and SSH) keeps SkyPilot's own checks.
                        wait_for: None,
                        down: false,
                    })
                    .await
            }
            Action::Stop => {
                client
                    .submit_stop(&StopBody {
                        cluster_name: &d.cluster,
                        purge: false,
                    })
                    .await
            }
            Action::Down => {
                client
                    .submit_down(&DownBody {
                        cluster_name: &d.cluster,
                        purge: false,
                    })
                    .await
            }
            Action::Report => continue,
        };
        out.push(Executed {
            cluster: d.cluster.clone(),
            action: d.action,
            result,
        });
    }
    out
}

/// `Duration` as a friendly string (`60m`, `1h 30m`) in config files.
mod friendly_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        let signed = jiff::SignedDuration::try_from(*d).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&format!("{signed:#}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        let signed: jiff::SignedDuration = s.trim().parse().map_err(|e| {
            serde::de::Error::custom(format!(
                "{s:?} is not a duration ({e}); expected e.g. 30m, 1h or 1h30m"
            ))
        })?;
        Duration::try_from(signed)
            .map_err(|_| serde::de::Error::custom(format!("{s:?} must not be negative")))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{Value, json};
    use skydeck_skypilot::{Client, ClientOptions};
    use skydeck_testkit::fleet::FakeFleet;

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn now() -> Timestamp {
        Timestamp::from_second(NOW).unwrap()
    }

    fn ago(minutes: i64) -> Timestamp {
        Timestamp::from_second(NOW - minutes * 60).unwrap()
    }

    /// An UP GPU cluster of alice in `default`, launched a day ago; `fields` override.
    fn rec(name: &str, fields: Value) -> ClusterRecord {
        let mut v = json!({
            "name": name, "status": "UP", "nodes": 1, "cloud": "AWS",
            "accelerators": "{'H100': 8}", "user_name": "alice", "user_hash": "a1b2c3d4",
            "workspace": "default", "launched_at": NOW - 86_400, "labels": {},
        });
        for (k, val) in fields.as_object().unwrap() {
            v[k] = val.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    /// A verdict: idle since `idle_min` minutes ago (for `Idle`), at 1.2 %.
    fn cu(name: &str, status: Activity, idle_min: i64, cost: Option<f64>) -> ClusterUtilization {
        ClusterUtilization {
            cluster: name.into(),
            user: Some("alice".into()),
            expected_gpus: 8,
            gpus: Vec::new(),
            utilization: Some(0.012),
            idle_since: (status == Activity::Idle).then(|| ago(idle_min)),
            cost_per_hour: cost,
            status,
            reason: format!("{} per the report", status.as_str()),
        }
    }

    fn report(clusters: Vec<ClusterUtilization>) -> UtilizationReport {
        UtilizationReport {
            at: now(),
            clusters,
            avg_utilization: None,
            idle_clusters: 0,
            idle_gpus: 0,
            unknown_clusters: 0,
            idle_burn_rate_hourly: 0.0,
            unmatched_gpus: 0,
        }
    }

    fn stop_policy() -> IdlePolicy {
        IdlePolicy {
            action: Action::Stop,
            max_actions_per_run: 10,
            ..IdlePolicy::default()
        }
    }

    fn outcomes(d: &[Decision]) -> BTreeMap<String, &'static str> {
        d.iter()
            .map(|d| (d.cluster.clone(), d.outcome.as_str()))
            .collect()
    }

    #[test]
    fn defaults_act_on_nothing_and_config_reads_friendly_values() {
        let p = IdlePolicy::default();
        assert_eq!(p.action, Action::Report);
        assert_eq!(p.min_idle, Duration::from_secs(3600));
        assert_eq!(
            (p.autostop_idle_minutes, p.max_actions_per_run, p.dry_run),
            (5, 3, false)
        );
        assert_eq!(p.exclude_label, "skydeck-keep-alive");
        p.validate().unwrap();

        let p: IdlePolicy = serde_json::from_value(json!({
            "action": "autostop", "min_idle": "1h 30m", "users": ["bob"], "dry_run": true
        }))
        .unwrap();
        assert_eq!(p.action, Action::Autostop);
        assert_eq!(p.min_idle, Duration::from_secs(5400));
        assert_eq!(p.max_actions_per_run, 3);
        assert_eq!(serde_json::to_value(&p).unwrap()["min_idle"], "1h 30m");
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>().unwrap(), a);
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }

        let bad = serde_json::from_value::<IdlePolicy>(json!({"action": "terminate"}))
            .unwrap_err()
            .to_string();
        assert!(bad.contains("report") && bad.contains("down"), "{bad}");
        let typo = serde_json::from_value::<IdlePolicy>(json!({"min_idel": "1h"}))
            .unwrap_err()
            .to_string();
        assert!(typo.contains("min_idel"), "{typo}");
        let dur = serde_json::from_value::<IdlePolicy>(json!({"min_idle": "soon"}))
            .unwrap_err()
            .to_string();
        assert!(dur.contains("expected e.g. 30m"), "{dur}");
        let e = "terminate".parse::<Action>().unwrap_err();
        assert_eq!(e.field, "action");
    }

    #[test]
    fn validation_names_the_field_and_what_it_accepts() {
        let cases: Vec<(IdlePolicy, &str, &str)> = vec![
            (
                IdlePolicy {
                    min_idle: Duration::from_secs(30),
                    ..IdlePolicy::default()
                },
                "min_idle",
                "at least 1m",
            ),
            (
                IdlePolicy {
                    autostop_idle_minutes: 100_000,
                    ..IdlePolicy::default()
                },
                "autostop_idle_minutes",
                "0 to 10080",
            ),
            (
                IdlePolicy {
                    max_actions_per_run: 0,
                    ..IdlePolicy::default()
                },
                "max_actions_per_run",
                "1 to 100",
            ),
            (
                IdlePolicy {
                    users: vec![" ".into()],
                    ..IdlePolicy::default()
                },
                "users",
                "non-empty",
            ),
            (
                IdlePolicy {
                    workspaces: vec![String::new()],
                    ..IdlePolicy::default()
                },
                "workspaces",
                "non-empty",
            ),
            (
                IdlePolicy {
                    name_patterns: vec!["dev-[0-9]".into()],
                    ..IdlePolicy::default()
                },
                "name_patterns",
                "* and ?",
            ),
            (
                IdlePolicy {
                    exclude_patterns: vec![String::new()],
                    ..IdlePolicy::default()
                },
                "exclude_patterns",
                "globs",
            ),
            (
                IdlePolicy {
                    exclude_label: "keep alive".into(),
                    ..IdlePolicy::default()
                },
                "exclude_label",
                "skydeck-keep-alive",
            ),
        ];
        for (p, field, expected) in cases {
            let e = p.validate().unwrap_err();
            assert_eq!(e.field, field);
            let text = e.to_string();
            assert!(text.starts_with(&format!("idle.{field}: ")), "{text}");
            assert!(text.contains(expected), "{text}");
        }
    }

    #[test]
    fn every_skip_reason() {
        let idle = |n: &str| cu(n, Activity::Idle, 90, Some(5.0));
        let report = report(vec![
            idle("go"),
            cu("busy", Activity::Active, 0, Some(5.0)),
            cu("blind", Activity::Unknown, 0, Some(5.0)),
            idle("vanished"),
            idle("stopping"),
            cu("fresh", Activity::Idle, 20, Some(5.0)),
            idle("sky-jobs-controller-fcd1e5cf"),
            idle("finetune-12"),
            idle("sky-serve-controller-fcd1e5cf"),
            idle("llm-svc-3"),
            idle("pool-w-1"),
            idle("bobs"),
            idle("research"),
            idle("other-name"),
            idle("kept"),
            idle("scratch-keep"),
        ]);
        let clusters = vec![
            rec("go", json!({})),
            rec("busy", json!({})),
            rec("blind", json!({})),
            rec("stopping", json!({"status": "STOPPED"})),
            rec("fresh", json!({})),
            rec(
                "sky-jobs-controller-fcd1e5cf",
                json!({"accelerators": null}),
            ),
            rec(
                "finetune-12",
                json!({"is_managed": true, "last_creation_yaml": "name: finetune\nrun: python train.py\n"}),
            ),
            rec("sky-serve-controller-fcd1e5cf", json!({})),
            rec(
                "llm-svc-3",
                json!({"is_managed": true, "last_creation_yaml": "name: llm-svc\nservice:\n  readiness_probe: /health\n"}),
            ),
            rec(
                "pool-w-1",
                json!({"is_managed": true, "last_creation_yaml": "pool:\n  workers: 2\n"}),
            ),
            rec("bobs", json!({"user_name": "bob", "user_hash": "b0b0b0b0"})),
            rec("research", json!({"workspace": "ml-research"})),
            rec("other-name", json!({})),
            rec(
                "kept",
                json!({"labels": {"skydeck-keep-alive": "demo until friday"}}),
            ),
            rec("scratch-keep", json!({})),
        ];
        let policy = IdlePolicy {
            // alice by name, and a hash of someone who owns nothing here.
            users: vec!["alice".into(), "ffffffff".into()],
            workspaces: vec!["default".into()],
            name_patterns: vec![
                "go".into(),
                "b*".into(),
                "?lind".into(),
                "vanished".into(),
                "st*".into(),
                "fr?sh".into(),
                "research".into(),
                "k*".into(),
                "scratch-*".into(),
            ],
            exclude_patterns: vec!["*-keep".into()],
            ..stop_policy()
        };
        let d = decide(&policy, &report, &clusters, now(), &IdleMarks::new());
        let got = outcomes(&d);
        let want: BTreeMap<String, &str> = [
            ("go", "act"),
            ("busy", "active"),
            ("blind", "unknown_data"),
            ("vanished", "unknown_data"),
            ("stopping", "unknown_data"),
            ("fresh", "idle_too_short"),
            ("sky-jobs-controller-fcd1e5cf", "managed_job_cluster"),
            ("finetune-12", "managed_job_cluster"),
            ("sky-serve-controller-fcd1e5cf", "serve_or_pool_cluster"),
            ("llm-svc-3", "serve_or_pool_cluster"),
            ("pool-w-1", "serve_or_pool_cluster"),
            ("bobs", "not_in_scope"),
            ("research", "not_in_scope"),
            ("other-name", "not_in_scope"),
            ("kept", "excluded"),
            ("scratch-keep", "excluded"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(got, want);
        let by = |n: &str| d.iter().find(|d| d.cluster == n).unwrap();
        assert!(
            by("kept").reason.contains("skydeck-keep-alive"),
            "{}",
            by("kept").reason
        );
        assert!(by("scratch-keep").reason.contains("*-keep"));
        assert!(by("bobs").reason.contains("user bob"));
        assert!(by("research").reason.contains("workspace ml-research"));
        assert!(by("stopping").reason.contains("STOPPED"));
        assert_eq!(by("blind").reason, "unknown per the report");
        assert_eq!(by("busy").reason, "active per the report");
        assert!(
            by("fresh").reason.starts_with("idle 20 min"),
            "{}",
            by("fresh").reason
        );
        // Every reason serializes under its snake_case name.
        for x in &d {
            let v = serde_json::to_value(x).unwrap();
            assert_eq!(v["outcome"], x.outcome.as_str());
            assert_eq!(v["action"], "stop");
            assert_eq!(v["status"], x.status.as_str());
        }
        if let Outcome::Skipped(r) = by("fresh").outcome {
            assert_eq!(serde_json::to_value(r).unwrap(), "idle_too_short");
        }
        // A user hash scopes too.
        let by_hash = IdlePolicy {
            users: vec!["b0b0b0b0".into()],
            ..stop_policy()
        };
        let d = decide(&by_hash, &report, &clusters, now(), &IdleMarks::new());
        assert_eq!(outcomes(&d)["bobs"], "act");
        assert_eq!(outcomes(&d)["go"], "not_in_scope");
    }

    #[test]
    fn the_reason_says_how_long_how_idle_and_how_expensive() {
        let r = report(vec![cu("a", Activity::Idle, 74, Some(32.77))]);
        let d = decide(
            &stop_policy(),
            &r,
            &[rec("a", json!({}))],
            now(),
            &IdleMarks::new(),
        );
        assert_eq!(
            d[0].reason,
            "idle 74 min at 1.2 % (min_idle 60 min); $32.77/h; stop"
        );
        assert_eq!(d[0].idle_since, Some(ago(74)));
        assert_eq!((d[0].gpus, d[0].user.as_deref()), (8, Some("alice")));
        let auto = IdlePolicy {
            action: Action::Autostop,
            autostop_idle_minutes: 7,
            ..stop_policy()
        };
        let d = decide(&auto, &r, &[rec("a", json!({}))], now(), &IdleMarks::new());
        assert_eq!(d[0].autostop_idle_minutes, Some(7));
        assert!(
            d[0].reason.ends_with("; autostop after 7 idle min"),
            "{}",
            d[0].reason
        );
    }

    #[test]
    fn the_cap_takes_the_most_expensive_first() {
        let costs = [
            ("a", Some(1.0)),
            ("b", Some(30.0)),
            ("c", None),
            ("d", Some(10.0)),
            ("e", Some(20.0)),
        ];
        let r = report(
            costs
                .iter()
                .map(|(n, c)| cu(n, Activity::Idle, 120, *c))
                .collect(),
        );
        let clusters: Vec<_> = costs.iter().map(|(n, _)| rec(n, json!({}))).collect();
        let policy = IdlePolicy {
            max_actions_per_run: 3,
            ..stop_policy()
        };
        let d = decide(&policy, &r, &clusters, now(), &IdleMarks::new());
        let order: Vec<(&str, &str)> = d
            .iter()
            .map(|d| (d.cluster.as_str(), d.outcome.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                ("b", "act"),
                ("e", "act"),
                ("d", "act"),
                ("a", "cap_reached"),
                ("c", "cap_reached")
            ]
        );
        assert!(
            d[3].reason.ends_with("cap of 3 actions per run reached"),
            "{}",
            d[3].reason
        );
        assert!(d[4].reason.contains("cost unknown"));

        // Dry run: the same clusters would be acted on, none is.
        let dry = IdlePolicy {
            dry_run: true,
            ..policy.clone()
        };
        let d = decide(&dry, &r, &clusters, now(), &IdleMarks::new());
        let o = outcomes(&d);
        assert_eq!((o["b"], o["e"], o["d"]), ("dry_run", "dry_run", "dry_run"));
        assert_eq!((o["a"], o["c"]), ("cap_reached", "cap_reached"));
        assert!(
            d[0].reason.ends_with("dry run: would stop"),
            "{}",
            d[0].reason
        );

        // Report: every candidate is reported, none acted on, no cap.
        let rep = IdlePolicy {
            action: Action::Report,
            ..policy
        };
        let d = decide(&rep, &r, &clusters, now(), &IdleMarks::new());
        assert!(
            d.iter()
                .all(|d| d.outcome == Outcome::Skipped(SkipReason::ReportOnly))
        );
        assert_eq!(d[0].autostop_idle_minutes, None);
    }

    #[test]
    fn unknown_data_is_never_acted_on_whatever_else() {
        // Unknown now, but earlier runs said idle for hours, it is expensive, in scope.
        let mut blind = cu("blind", Activity::Unknown, 0, Some(99.0));
        blind.idle_since = Some(ago(600));
        let marks = IdleMarks::from([(
            "blind".to_string(),
            IdleMark {
                since: ago(600),
                seen_at: ago(1),
            },
        )]);
        let d = decide(
            &stop_policy(),
            &report(vec![blind]),
            &[rec("blind", json!({}))],
            now(),
            &marks,
        );
        assert_eq!(d[0].outcome, Outcome::Skipped(SkipReason::UnknownData));
        assert_eq!(d[0].idle_since, None);
        assert!(
            idle_marks(&d, now()).is_empty(),
            "unknown carries no idleness forward"
        );
    }

    #[test]
    fn earlier_runs_extend_idleness_only_when_they_join_up() {
        let r = report(vec![cu("a", Activity::Idle, 30, Some(3.0))]);
        let clusters = [rec("a", json!({}))];
        let run = |marks: &IdleMarks| decide(&stop_policy(), &r, &clusters, now(), marks);
        // Alone: 30 min is too short.
        assert_eq!(
            run(&IdleMarks::new())[0].outcome,
            Outcome::Skipped(SkipReason::IdleTooShort)
        );
        // The last run saw it idle since 90 min ago, 10 min ago (inside today's idle stretch).
        let joined = IdleMarks::from([(
            "a".to_string(),
            IdleMark {
                since: ago(90),
                seen_at: ago(10),
            },
        )]);
        let d = run(&joined);
        assert_eq!(d[0].outcome, Outcome::Act);
        assert_eq!(d[0].idle_since, Some(ago(90)));
        assert_eq!(
            idle_marks(&d, now())["a"],
            IdleMark {
                since: ago(90),
                seen_at: now()
            }
        );
        // Seen 40 min ago, before today's data starts: a gap, so no extension.
        let gap = IdleMarks::from([(
            "a".to_string(),
            IdleMark {
                since: ago(200),
                seen_at: ago(40),
            },
        )]);
        assert_eq!(run(&gap)[0].idle_since, Some(ago(30)));
        // Relaunched under the same name 45 min ago: idleness starts at the launch.
        let relaunched = [rec("a", json!({"launched_at": NOW - 45 * 60}))];
        let d = decide(&stop_policy(), &r, &relaunched, now(), &joined);
        assert_eq!(d[0].idle_since, Some(ago(45)));
        assert_eq!(d[0].outcome, Outcome::Skipped(SkipReason::IdleTooShort));
    }

    #[test]
    fn globs() {
        for (p, n, want) in [
            ("*", "anything", true),
            ("dev-*", "dev-1", true),
            ("dev-*", "prod-1", false),
            ("*-gpu-*", "team-gpu-3", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*a*b", "xaxxb", true),
            ("*a*b", "xaxxbc", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("", "", true),
        ] {
            assert_eq!(glob(p, n), want, "{p} vs {n}");
        }
    }

    /// A small deterministic generator (xorshift), so the random cases are the same each run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn random_fleets_never_act_on_unknown_excluded_or_managed_clusters() {
        let mut rng = Rng(0x5eed_1d1e);
        for case in 0..2000 {
            let n = rng.below(12) as usize;
            let mut cus = Vec::new();
            let mut recs = Vec::new();
            for i in 0..n {
                let kind = rng.below(6);
                let name = match kind {
                    0 => format!("sky-jobs-controller-{i:08x}"),
                    1 => format!("sky-serve-controller-{i:08x}"),
                    _ => format!("c{i}-{}", ["dev", "prod", "keep"][rng.below(3) as usize]),
                };
                let status =
                    [Activity::Idle, Activity::Active, Activity::Unknown][rng.below(3) as usize];
                let cost = (rng.below(4) > 0).then(|| rng.below(5000) as f64 / 100.0);
                let mut c = cu(&name, status, rng.below(240) as i64, cost);
                // Unknown and active verdicts may still carry stale idle-since values.
                if rng.below(2) == 0 {
                    c.idle_since = Some(ago(rng.below(600) as i64));
                }
                cus.push(c);
                let user = ["alice", "bob"][rng.below(2) as usize];
                let table_status = ["UP", "UP", "UP", "STOPPED", "INIT"][rng.below(5) as usize];
                let mut fields = json!({
                    "is_managed": rng.below(5) == 0,
                    "user_name": user,
                    "status": table_status,
                });
                if rng.below(4) == 0 {
                    fields["labels"] = json!({"skydeck-keep-alive": "yes"});
                }
                if rng.below(8) > 0 {
                    recs.push(rec(&name, fields));
                }
            }
            let policy = IdlePolicy {
                action: [Action::Autostop, Action::Stop, Action::Down][rng.below(3) as usize],
                max_actions_per_run: 1 + rng.below(4) as usize,
                exclude_patterns: vec!["*-keep".into()],
                min_idle: Duration::from_secs(60 * (1 + rng.below(180))),
                dry_run: rng.below(5) == 0,
                ..IdlePolicy::default()
            };
            let mut marks = IdleMarks::new();
            for c in &cus {
                if rng.below(2) == 0 {
                    let since = ago(rng.below(900) as i64);
                    let seen_at = ago(rng.below(60) as i64);
                    marks.insert(c.cluster.clone(), IdleMark { since, seen_at });
                }
            }
            let r = report(cus.clone());
            let d = decide(&policy, &r, &recs, now(), &marks);
            assert_eq!(d.len(), cus.len());
            let acted: Vec<&Decision> = d.iter().filter(|d| d.outcome == Outcome::Act).collect();
            assert!(acted.len() <= policy.max_actions_per_run, "case {case}");
            if policy.dry_run {
                assert!(acted.is_empty(), "case {case}");
            }
            for a in &acted {
                let record = recs.iter().find(|r| r.name == a.cluster);
                let record =
                    record.unwrap_or_else(|| panic!("case {case}: acted without a record"));
                let verdict = cus.iter().find(|c| c.cluster == a.cluster).unwrap();
                assert_eq!(verdict.status, Activity::Idle, "case {case}: {a:?}");
                assert_eq!(record.status, ClusterStatus::Up, "case {case}");
                assert!(!record.is_managed, "case {case}");
                assert!(!a.cluster.starts_with("sky-"), "case {case}");
                assert!(!a.cluster.ends_with("-keep"), "case {case}");
                assert!(
                    !record.labels.contains_key(DEFAULT_EXCLUDE_LABEL),
                    "case {case}"
                );
                let idle_for = now() - a.idle_since.unwrap();
                assert!(
                    idle_for.get_seconds() >= policy.min_idle.as_secs() as i64,
                    "case {case}"
                );
            }
            // Whatever was cut by the cap costs no more than what was taken.
            let cheapest_taken = acted
                .iter()
                .map(|a| a.cost_per_hour.unwrap_or(-1.0))
                .reduce(f64::min);
            for c in d
                .iter()
                .filter(|d| d.outcome == Outcome::Skipped(SkipReason::CapReached))
            {
                assert!(
                    c.cost_per_hour.unwrap_or(-1.0) <= cheapest_taken.unwrap_or(f64::MAX),
                    "case {case}"
                );
            }
        }
    }

    fn client(url: &str) -> Client {
        let target = skydeck_skypilot::target::resolve(&skydeck_skypilot::target::Inputs {
            endpoint: Some(url),
            credential: None,
            env: &|_| None,
            home: None,
        })
        .unwrap();
        Client::new(target, ClientOptions::default()).unwrap()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// The fake fleet: two idle clusters, one whose submissions are refused, a managed job's
    /// cluster, a controller, a kept one and one without fresh data.
    fn fleet() -> FakeFleet {
        let f = FakeFleet::start(Duration::from_millis(10));
        for name in [
            "idle-big",
            "idle-small",
            "refused",
            "blind",
            "sky-jobs-controller-fcd1e5cf",
        ] {
            f.add_cluster(name);
        }
        f.add_cluster_with("job-cluster-7", json!({"is_managed": true}));
        f.add_cluster_with("kept", json!({"labels": {"skydeck-keep-alive": "true"}}));
        f.refuse_cluster(
            "refused",
            Some((
                403,
                "User 'skydeck' does not have permission to access cluster 'refused'",
            )),
        );
        f
    }

    fn fleet_report() -> UtilizationReport {
        report(vec![
            cu("idle-big", Activity::Idle, 120, Some(40.0)),
            cu("idle-small", Activity::Idle, 120, Some(2.0)),
            // The most expensive, so it is the first submitted, and its refusal must not stop
            // the others.
            cu("refused", Activity::Idle, 120, Some(90.0)),
            cu("blind", Activity::Unknown, 0, Some(50.0)),
            cu(
                "sky-jobs-controller-fcd1e5cf",
                Activity::Idle,
                120,
                Some(60.0),
            ),
            cu("job-cluster-7", Activity::Idle, 120, Some(70.0)),
            cu("kept", Activity::Idle, 120, Some(80.0)),
        ])
    }

    /// Decides on the fake fleet's own `/status` records and executes.
    fn run_on_fleet(f: &FakeFleet, policy: &IdlePolicy) -> (Vec<Decision>, Vec<Executed>) {
        let rt = runtime();
        let c = client(&f.url());
        rt.block_on(async {
            let records = c
                .status(&skydeck_skypilot::api::StatusQuery::default())
                .await
                .unwrap();
            let launched_at = records[0].launched_at.unwrap();
            let now = Timestamp::from_second(launched_at + 3 * 3600).unwrap();
            let mut r = fleet_report();
            r.at = now;
            for cl in &mut r.clusters {
                cl.idle_since = cl
                    .idle_since
                    .map(|_| Timestamp::from_second(launched_at).unwrap());
            }
            let d = decide(policy, &r, &records, now, &IdleMarks::new());
            let e = execute(&c, &d).await;
            (d, e)
        })
    }

    #[test]
    fn executor_stops_the_chosen_clusters_and_nothing_else() {
        let f = fleet();
        let (d, e) = run_on_fleet(&f, &stop_policy());
        let acted: Vec<&str> = d
            .iter()
            .filter(|d| d.outcome == Outcome::Act)
            .map(|d| d.cluster.as_str())
            .collect();
        assert_eq!(acted, ["refused", "idle-big", "idle-small"]);
        // Submitted in cost order, the refused one first, the others still sent.
        assert_eq!(f.stops(), ["refused", "idle-big", "idle-small"]);
        let clusters: Vec<&str> = e.iter().map(|x| x.cluster.as_str()).collect();
        assert_eq!(clusters, ["refused", "idle-big", "idle-small"]);
        let err = e[0].result.as_ref().unwrap_err().to_string();
        assert!(
            err.contains("does not have permission to access cluster 'refused'"),
            "{err}"
        );
        assert!(e[0].request_id().is_none());
        // Only the accepted ones became requests; nothing for the others.
        assert_eq!(
            f.cluster_requests(),
            [
                ("sky.stop".to_string(), "idle-big".to_string()),
                ("sky.stop".to_string(), "idle-small".to_string())
            ]
        );
        assert!(f.autostops().is_empty() && f.downs().is_empty());
        // The request ids are SkyPilot's: the request table knows them, under the cluster.
        let rt = runtime();
        let c = client(&f.url());
        for x in &e[1..] {
            let id = x.request_id().unwrap();
            let row = rt.block_on(c.request_status(id)).unwrap().unwrap();
            assert_eq!(row.name, skydeck_skypilot::api::STOP_REQUEST_NAME);
            assert_eq!(row.cluster_name.as_deref(), Some(x.cluster.as_str()));
        }
        std::thread::sleep(Duration::from_millis(400));
        let states = f.clusters();
        assert_eq!(states["idle-big"], "STOPPED");
        assert_eq!(states["blind"], "UP");
        assert_eq!(states["kept"], "UP");
    }

    #[test]
    fn executor_autostops_and_downs_with_the_right_bodies() {
        let f = fleet();
        let auto = IdlePolicy {
            action: Action::Autostop,
            autostop_idle_minutes: 7,
            max_actions_per_run: 2,
            ..IdlePolicy::default()
        };
        let (_, e) = run_on_fleet(&f, &auto);
        assert_eq!(e.len(), 2, "the cap of 2: refused and idle-big");
        let calls = f.autostops();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].cluster, "idle-big");
        assert_eq!(
            (
                calls[1].idle_minutes,
                calls[1].down,
                calls[1].wait_for.as_deref()
            ),
            (7, false, None)
        );
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(f.autostop_of("idle-big"), Some((7, false)));
        assert_eq!(f.autostop_of("idle-small"), Some((-1, false)));
        assert!(f.stops().is_empty() && f.downs().is_empty());

        let down = IdlePolicy {
            action: Action::Down,
            ..stop_policy()
        };
        let (_, e) = run_on_fleet(&f, &down);
        assert_eq!(e.iter().filter(|x| x.result.is_ok()).count(), 2);
        assert_eq!(f.downs(), ["idle-big", "idle-small"]);
        assert!(f.stops().is_empty());
    }

    #[test]
    fn executor_sends_nothing_for_dry_runs_reports_or_non_idle_decisions() {
        let f = fleet();
        for policy in [
            IdlePolicy {
                dry_run: true,
                ..stop_policy()
            },
            IdlePolicy::default(),
        ] {
            let (d, e) = run_on_fleet(&f, &policy);
            assert!(e.is_empty());
            assert!(d.iter().all(|d| d.outcome != Outcome::Act));
        }
        // A hand-made `Act` on a cluster whose data is unknown is still not sent.
        let forged = Decision {
            cluster: "blind".into(),
            user: None,
            gpus: 1,
            utilization: None,
            idle_since: None,
            cost_per_hour: None,
            status: Activity::Unknown,
            action: Action::Down,
            autostop_idle_minutes: None,
            outcome: Outcome::Act,
            reason: String::new(),
        };
        let e = runtime().block_on(execute(&client(&f.url()), &[forged]));
        assert!(e.is_empty());
        assert!(
            f.cluster_requests().is_empty(),
            "{:?}",
            f.cluster_requests()
        );
        assert!(f.stops().is_empty() && f.downs().is_empty() && f.autostops().is_empty());
    }
}
