//! The part of the fleet a report covers (seed 001's `SKYPILOT_CLUSTER_FILTER` and
//! `SKYPILOT_REGION`): clusters and managed jobs matching name patterns, users, workspaces,
//! clouds, regions or SkyPilot labels. Every criterion that is set must match (AND); within one
//! criterion any listed value may match (OR). An empty scope keeps everything.
//!
//! The filter runs on the server's answers before any metric is computed, so every metric,
//! costs included, counts only the selection.

use std::collections::HashSet;

use regex::Regex;
use skydeck_skypilot::api::{ClusterRecord, CostRecord, Labels, ManagedJobRecord};

/// One `key=value` (or bare `key`: the label is present) label criterion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMatch {
    /// Label key.
    pub key: String,
    /// Required value; `None` when any value will do.
    pub value: Option<String>,
}

/// What the report covers. Build it with [`Scope::builder`]-style setters or from the seed's
/// environment variables with [`Scope::from_filter_env`].
#[derive(Debug, Clone, Default)]
pub struct Scope {
    names: Vec<(String, Regex)>,
    users: Vec<String>,
    workspaces: Vec<String>,
    clouds: Vec<String>,
    regions: Vec<String>,
    labels: Vec<LabelMatch>,
}

/// A glob (`*` any run, `?` one character) as an anchored regex.
fn glob(pattern: &str) -> Result<Regex, String> {
    if pattern.trim().is_empty() {
        return Err(
            "an empty name pattern; expected a cluster or job name or a glob like train-*".into(),
        );
    }
    let mut re = String::from("^");
    for c in pattern.trim().chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    Regex::new(&re).map_err(|e| format!("name pattern {pattern:?}: {e}"))
}

fn clean(values: &[String], what: &str) -> Result<Vec<String>, String> {
    values
        .iter()
        .map(|v| {
            let v = v.trim();
            if v.is_empty() {
                Err(format!("an empty {what}; expected a {what} name"))
            } else {
                Ok(v.to_string())
            }
        })
        .collect()
}

impl Scope {
    /// Cluster and job names matching any of these globs.
    pub fn names(mut self, patterns: &[String]) -> Result<Self, String> {
        for p in patterns {
            self.names.push((p.trim().to_string(), glob(p)?));
        }
        Ok(self)
    }

    /// Owned by any of these users (SkyPilot user names).
    pub fn users(mut self, users: &[String]) -> Result<Self, String> {
        self.users.extend(clean(users, "user")?);
        Ok(self)
    }

    /// In any of these workspaces.
    pub fn workspaces(mut self, ws: &[String]) -> Result<Self, String> {
        self.workspaces.extend(clean(ws, "workspace")?);
        Ok(self)
    }

    /// On any of these clouds (case-insensitive: `aws`, `Kubernetes`).
    pub fn clouds(mut self, clouds: &[String]) -> Result<Self, String> {
        self.clouds.extend(clean(clouds, "cloud")?);
        Ok(self)
    }

    /// In any of these regions (for Kubernetes: contexts), case-insensitive.
    pub fn regions(mut self, regions: &[String]) -> Result<Self, String> {
        self.regions.extend(clean(regions, "region")?);
        Ok(self)
    }

    /// Carrying every one of these labels (`key=value` or `key`).
    pub fn labels(mut self, labels: &[String]) -> Result<Self, String> {
        for l in labels {
            self.labels.push(parse_label(l)?);
        }
        Ok(self)
    }

    /// Adds the seed's variables: `SKYPILOT_CLUSTER_FILTER` (comma-separated; a `key=value`
    /// term is a label, any other term a name glob) and `SKYPILOT_REGION` (comma-separated
    /// regions).
    pub fn from_filter_env(
        self,
        cluster_filter: Option<&str>,
        region: Option<&str>,
    ) -> Result<Self, String> {
        let mut scope = self;
        if let Some(f) = cluster_filter.filter(|f| !f.trim().is_empty()) {
            for term in f.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                scope = if term.contains('=') {
                    scope
                        .labels(&[term.to_string()])
                        .map_err(|e| format!("SKYPILOT_CLUSTER_FILTER: {e}"))?
                } else {
                    scope
                        .names(&[term.to_string()])
                        .map_err(|e| format!("SKYPILOT_CLUSTER_FILTER: {e}"))?
                };
            }
        }
        if let Some(r) = region.filter(|r| !r.trim().is_empty()) {
            let regions: Vec<String> = r
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect();
            scope = scope
                .regions(&regions)
                .map_err(|e| format!("SKYPILOT_REGION: {e}"))?;
        }
        Ok(scope)
    }

    /// True when nothing is filtered.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
            && self.users.is_empty()
            && self.workspaces.is_empty()
            && self.clouds.is_empty()
            && self.regions.is_empty()
            && self.labels.is_empty()
    }

    /// `names=train-*; users=alice,bob` for the summary line.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let mut push = |k: &str, v: Vec<String>| {
            if !v.is_empty() {
                parts.push(format!("{k}={}", v.join(",")));
            }
        };
        push("names", self.names.iter().map(|(p, _)| p.clone()).collect());
        push("users", self.users.clone());
        push("workspaces", self.workspaces.clone());
        push("clouds", self.clouds.clone());
        push("regions", self.regions.clone());
        push(
            "labels",
            self.labels
                .iter()
                .map(|l| match &l.value {
                    Some(v) => format!("{}={v}", l.key),
                    None => l.key.clone(),
                })
                .collect(),
        );
        parts.join("; ")
    }

    fn common(
        &self,
        names: &[Option<&str>],
        user: Option<&str>,
        workspace: Option<&str>,
        cloud: Option<&str>,
        region: Option<&str>,
    ) -> bool {
        let any = |list: &[String], v: Option<&str>, fold: bool| {
            list.is_empty()
                || v.is_some_and(|v| {
                    list.iter().any(|x| {
                        if fold {
                            x.eq_ignore_ascii_case(v)
                        } else {
                            x == v
                        }
                    })
                })
        };
        (self.names.is_empty()
            || names
                .iter()
                .flatten()
                .any(|n| self.names.iter().any(|(_, re)| re.is_match(n))))
            && any(&self.users, user, false)
            && any(&self.workspaces, workspace, false)
            && any(&self.clouds, cloud, true)
            && any(&self.regions, region, true)
    }

    fn labels_match(&self, labels: &Labels) -> bool {
        self.labels
            .iter()
            .all(|m| match (&m.value, labels.get(&m.key)) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(want), Some(have)) => want == have,
            })
    }

    /// Whether a cluster of `/status` is in scope.
    pub fn cluster(&self, c: &ClusterRecord) -> bool {
        self.common(
            &[Some(&c.name)],
            c.user_name.as_deref(),
            c.workspace.as_deref(),
            c.cloud.as_deref(),
            c.region.as_deref(),
        ) && self.labels_match(&c.labels)
    }

    /// Whether a managed-job task row is in scope (by job or task name).
    pub fn job(&self, j: &ManagedJobRecord) -> bool {
        self.common(
            &[j.job_name.as_deref(), j.task_name.as_deref()],
            j.user_name.as_deref(),
            j.workspace.as_deref(),
            j.cloud.as_deref(),
            j.region.as_deref(),
        ) && self.labels_match(&j.labels)
    }

    /// Whether a cost-report row is in scope. Cost rows carry no labels: with a label
    /// criterion, a row counts only when its cluster is one of `in_scope_clusters` (the
    /// clusters of `/status` that matched).
    pub fn cost(&self, r: &CostRecord, in_scope_clusters: &HashSet<&str>) -> bool {
        self.common(
            &[Some(&r.name)],
            r.user_name.as_deref(),
            r.workspace.as_deref(),
            r.cloud.as_deref(),
            r.region.as_deref(),
        ) && (self.labels.is_empty() || in_scope_clusters.contains(r.name.as_str()))
    }

    /// The answers restricted to the scope (copies only when a filter is on).
    pub fn apply(
        &self,
        clusters: &[ClusterRecord],
        jobs: &[ManagedJobRecord],
        costs: &[CostRecord],
    ) -> (Vec<ClusterRecord>, Vec<ManagedJobRecord>, Vec<CostRecord>) {
        let clusters: Vec<ClusterRecord> = clusters
            .iter()
            .filter(|c| self.cluster(c))
            .cloned()
            .collect();
        let names: HashSet<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
        let jobs = jobs.iter().filter(|j| self.job(j)).cloned().collect();
        let costs = costs
            .iter()
            .filter(|r| self.cost(r, &names))
            .cloned()
            .collect();
        (clusters, jobs, costs)
    }
}

fn parse_label(s: &str) -> Result<LabelMatch, String> {
    let s = s.trim();
    let (k, v) = match s.split_once('=') {
        Some((k, v)) => (k.trim(), Some(v.trim().to_string())),
        None => (s, None),
    };
    if k.is_empty() {
        return Err(format!("label {s:?} has no key; expected key=value or key"));
    }
    Ok(LabelMatch {
        key: k.to_string(),
        value: v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cluster(v: serde_json::Value) -> ClusterRecord {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn criteria_and_across_or_within() {
        let a = cluster(
            json!({"name": "train-a", "status": "UP", "user_name": "alice",
            "cloud": "AWS", "region": "us-east-1", "workspace": "ml",
            "labels": {"team": "vision", "n": 3}}),
        );
        let b = cluster(
            json!({"name": "serve-b", "status": "UP", "user_name": "bob",
            "cloud": "Kubernetes", "region": "gke-1", "labels": null}),
        );
        let s = Scope::default();
        assert!(s.is_empty() && s.cluster(&a) && s.cluster(&b));
        let s = Scope::default().names(&["train-*".into()]).unwrap();
        assert!(s.cluster(&a) && !s.cluster(&b));
        let s = Scope::default()
            .users(&["alice".into(), "bob".into()])
            .unwrap()
            .clouds(&["kubernetes".into()])
            .unwrap();
        assert!(!s.cluster(&a) && s.cluster(&b));
        let s = Scope::default().labels(&["team=vision".into()]).unwrap();
        assert!(s.cluster(&a) && !s.cluster(&b));
        let s = Scope::default().labels(&["n=3".into()]).unwrap();
        assert!(
            s.cluster(&a),
            "non-string label values match their JSON text"
        );
        assert_eq!(
            Scope::default()
                .names(&["x*".into()])
                .unwrap()
                .users(&["u".into()])
                .unwrap()
                .describe(),
            "names=x*; users=u"
        );
    }

    #[test]
    fn seed_environment_variables() {
        let s = Scope::default()
            .from_filter_env(Some("train-*, team=vision"), Some("us-east-1,eu-west-1"))
            .unwrap();
        assert_eq!(
            s.describe(),
            "names=train-*; regions=us-east-1,eu-west-1; labels=team=vision"
        );
        let e = Scope::default()
            .from_filter_env(Some("=x"), None)
            .unwrap_err();
        assert!(
            e.contains("SKYPILOT_CLUSTER_FILTER") && e.contains("no key"),
            "{e}"
        );
        assert!(Scope::default().users(&[" ".into()]).is_err());
        // Regex metacharacters in a glob are literal.
        let s = Scope::default().names(&["a.b".into()]).unwrap();
        assert!(!s.cluster(&cluster(json!({"name": "axb", "status": "UP"}))));
    }
}
