//! The opt-in idle stop, run after a GPU read: the policy's decisions
//! ([`skydeck_gpu::idle::decide`]), the requests it submits ([`skydeck_gpu::idle::execute`]),
//! a log line and a summary line per decision, and the `skydeck.idle.decisions` counts.
//!
//! `collect` runs it once per run; `serve` after every GPU read, carrying the idle marks from
//! one read to the next so a cluster's idleness can outlast the query window.

use std::collections::BTreeMap;

use jiff::Timestamp;
use skydeck_core::{Sample, catalog as c};
use skydeck_gpu::UtilizationReport;
use skydeck_gpu::idle::{self, Action, Decision, IdleMarks, IdlePolicy, Outcome};
use skydeck_skypilot::api::ClusterRecord;

use super::SkypilotCollector;

/// What one idle-stop pass did.
#[derive(Debug, Default)]
pub struct IdleRun {
    /// One decision per UP GPU cluster, in acting order.
    pub decisions: Vec<Decision>,
    /// The outcome of each decision after submitting: `acted`, `failed`, or the skip reason.
    pub outcomes: Vec<&'static str>,
    /// Request ids or submission errors, by cluster (credential-free text).
    pub requests: BTreeMap<String, Result<String, String>>,
    /// The marks for the next pass.
    pub marks: IdleMarks,
}

impl IdleRun {
    /// `(action, outcome)` counts of this pass.
    pub fn counts(&self) -> BTreeMap<(Action, &'static str), u64> {
        let mut out = BTreeMap::new();
        for (d, o) in self.decisions.iter().zip(&self.outcomes) {
            *out.entry((d.action, *o)).or_default() += 1;
        }
        out
    }

    /// Summary lines: one per acted, failed or dry-run decision, and one with the counts.
    pub fn summary(&self, policy: &IdlePolicy) -> Vec<String> {
        let mut lines = Vec::new();
        for (d, o) in self.decisions.iter().zip(&self.outcomes) {
            match *o {
                "acted" => lines.push(format!(
                    "✓ idle: {} {}: {} → request {}",
                    d.action.as_str(),
                    d.cluster,
                    d.reason,
                    self.requests
                        .get(&d.cluster)
                        .and_then(|r| r.as_ref().ok())
                        .map(String::as_str)
                        .unwrap_or("?")
                )),
                "failed" => lines.push(format!(
                    "✗ idle: {} {}: {}",
                    d.action.as_str(),
                    d.cluster,
                    self.requests
                        .get(&d.cluster)
                        .and_then(|r| r.as_ref().err())
                        .map(String::as_str)
                        .unwrap_or("failed")
                )),
                "dry_run" => lines.push(format!(
                    "· idle: would {} {}: {}",
                    d.action.as_str(),
                    d.cluster,
                    d.reason
                )),
                _ => {}
            }
        }
        let mut by: BTreeMap<&str, usize> = BTreeMap::new();
        for o in &self.outcomes {
            *by.entry(o).or_default() += 1;
        }
        let parts: Vec<String> = by.iter().map(|(o, n)| format!("{n} {o}")).collect();
        lines.push(format!(
            "idle ({}{}): {} GPU clusters: {}",
            policy.action.as_str(),
            if policy.dry_run { ", dry run" } else { "" },
            self.decisions.len(),
            if parts.is_empty() {
                "none".to_string()
            } else {
                parts.join(", ")
            }
        ));
        lines
    }
}

/// `skydeck.idle.decisions` samples from cumulative counts.
pub fn decision_samples(
    counts: &BTreeMap<(Action, &'static str), u64>,
    at: Timestamp,
) -> Vec<Sample> {
    counts
        .iter()
        .map(|((action, outcome), n)| {
            Sample::of(&c::IDLE_DECISIONS, *n as f64, at)
                .tag("action", action.as_str())
                .tag("outcome", *outcome)
        })
        .collect()
}

impl SkypilotCollector {
    /// Decides on every UP GPU cluster of `report` and submits what the policy asks (unless it
    /// is `report` or a dry run). Every decision is logged with its reason.
    pub async fn idle_stop(
        &self,
        policy: &IdlePolicy,
        report: &UtilizationReport,
        clusters: &[ClusterRecord],
        marks: &IdleMarks,
    ) -> IdleRun {
        let now = report.at;
        let decisions = idle::decide(policy, report, clusters, now, marks);
        let mut requests = BTreeMap::new();
        let acting = decisions.iter().any(|d| d.outcome == Outcome::Act);
        if acting {
            match self.connect_with_fallback().await {
                Ok(client) => {
                    for e in idle::execute(&client, &decisions).await {
                        requests.insert(e.cluster, e.result.map_err(|err| err.to_string()));
                    }
                }
                Err(e) => {
                    for d in decisions.iter().filter(|d| d.outcome == Outcome::Act) {
                        requests.insert(d.cluster.clone(), Err(e.to_string()));
                    }
                }
            }
        }
        let outcomes: Vec<&'static str> = decisions
            .iter()
            .map(|d| match (d.outcome, requests.get(&d.cluster)) {
                (Outcome::Act, Some(Ok(_))) => "acted",
                (Outcome::Act, _) => "failed",
                (o, _) => o.as_str(),
            })
            .collect();
        for (d, o) in decisions.iter().zip(&outcomes) {
            tracing::info!(
                cluster = %d.cluster,
                action = d.action.as_str(),
                outcome = *o,
                "idle decision: {}",
                d.reason
            );
        }
        IdleRun {
            marks: idle::idle_marks(&decisions, now),
            decisions,
            outcomes,
            requests,
        }
    }
}
