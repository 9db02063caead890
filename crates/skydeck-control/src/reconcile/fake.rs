//! An in-process SkyPilot for the reconciler's tests: a cluster table, a request table and
//! scripted outcomes, answering through [`SkyApi`] with the same types and errors the real
//! client returns. Request times come from the store's clock, so a test that moves a
//! [`crate::clock::SimClock`] moves SkyPilot's clock too.
//!
//! Scripts are queues: each launch or teardown takes the next outcome (default: success) and
//! each submit the next fault (default: none). A `Hang` outcome stays running until the test
//! [`FakeSky::settle`]s it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::{Future, ready};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skydeck_skypilot::api::{
    ClusterRecord, ClusterStatus, CostRecord, CostReportQuery, DOWN_PATH, DownBody, LAUNCH_PATH,
    LaunchBody, LaunchResult, RequestName, RequestStatus, RequestSummary, STOP_PATH, StatusQuery,
    StopBody,
};
use skydeck_skypilot::{CLUSTER_DOES_NOT_EXIST, Error, Result, StatusCode, UnreachableKind};

use super::SkyApi;
use crate::clock::SharedClock;

/// The endpoint the fake's errors name.
const ENDPOINT: &str = "http://127.0.0.1:46580/";

/// How a launch ends.
#[derive(Debug, Clone, PartialEq)]
pub enum LaunchOutcome {
    /// The cluster comes up (`UP`) and the request succeeds.
    Succeed,
    /// The request fails with SkyPilot's exception class and message.
    Fail {
        /// E.g. `ResourcesUnavailableError`.
        error_type: String,
        /// `str(exception)`.
        message: String,
    },
    /// The request is cancelled (`/api/cancel`).
    Cancel,
    /// The request keeps running (the cluster is `INIT`) until [`FakeSky::settle`].
    Hang,
}

/// How a teardown ends.
#[derive(Debug, Clone, PartialEq)]
pub enum DownOutcome {
    /// The cluster goes; the request succeeds (or fails with `ClusterDoesNotExist` when the
    /// cluster was not there, as SkyPilot's `down` does).
    Succeed,
    /// The request fails with this exception class and message; the cluster stays.
    Fail {
        /// The exception class.
        error_type: String,
        /// Its message.
        message: String,
    },
    /// The request keeps running until [`FakeSky::settle_down`].
    Hang,
    /// The server loses the request (a reset request table): its id is unknown from then on.
    Lose,
}

/// What goes wrong with one submit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Connection refused: nothing was sent (a definite rejection).
    Refused,
    /// The server answers with this HTTP status before creating a request (definite, unless
    /// a gateway's 502/504).
    Status(u16),
    /// The server created the request, then the connection broke before its id came back
    /// (an unknown outcome).
    ReplyLost,
    /// The call timed out before the server created anything (an unknown outcome: the client
    /// cannot tell it from [`Fault::ReplyLost`]).
    Timeout,
}

/// How a finished request ended, as `/api/get` reports it.
#[derive(Debug, Clone)]
enum Ended {
    Ok,
    Failed(String, String),
    Cancelled,
}

#[derive(Debug, Clone)]
struct Request {
    id: String,
    name: RequestName,
    cluster: String,
    status: RequestStatus,
    created_at: f64,
    finished_at: Option<f64>,
    result: Ended,
    lost: bool,
}

#[derive(Debug, Default)]
struct State {
    clusters: BTreeMap<String, ClusterStatus>,
    requests: Vec<Request>,
    launch_outcomes: VecDeque<LaunchOutcome>,
    down_outcomes: VecDeque<DownOutcome>,
    launch_faults: VecDeque<Fault>,
    down_faults: VecDeque<Fault>,
    status_fault: Option<Fault>,
    costs: HashMap<String, (f64, f64)>,
    seq: u64,
    calls: Vec<String>,
    /// Placements (`infra` of the task, with spot or not) out of capacity.
    unavailable: Vec<(String, Option<bool>)>,
}

/// The fake SkyPilot API server. Cheap to clone; clones share one state.
#[derive(Debug, Clone)]
pub struct FakeSky {
    state: Arc<Mutex<State>>,
    clock: SharedClock,
}

impl FakeSky {
    /// An empty SkyPilot whose clock is `clock` (the store's).
    pub fn new(clock: SharedClock) -> FakeSky {
        FakeSky {
            state: Arc::default(),
            clock,
        }
    }

    fn now_s(&self) -> f64 {
        self.clock.now_ms() as f64 / 1000.0
    }

    /// Adds (or changes) a cluster, as another tool or SkyPilot itself would.
    pub fn set_cluster(&self, name: &str, status: ClusterStatus) {
        self.state
            .lock()
            .unwrap()
            .clusters
            .insert(name.to_string(), status);
    }

    /// Removes a cluster (preempted, or taken down outside skydeck).
    pub fn remove_cluster(&self, name: &str) {
        self.state.lock().unwrap().clusters.remove(name);
    }

    /// The cluster table.
    pub fn clusters(&self) -> BTreeMap<String, ClusterStatus> {
        self.state.lock().unwrap().clusters.clone()
    }

    /// The next launch ends with `outcome`.
    pub fn push_launch(&self, outcome: LaunchOutcome) {
        self.state
            .lock()
            .unwrap()
            .launch_outcomes
            .push_back(outcome);
    }

    /// The next teardown ends with `outcome`.
    pub fn push_down(&self, outcome: DownOutcome) {
        self.state.lock().unwrap().down_outcomes.push_back(outcome);
    }

    /// The next `/launch` submit fails with `fault`.
    pub fn push_launch_fault(&self, fault: Fault) {
        self.state.lock().unwrap().launch_faults.push_back(fault);
    }

    /// The next `/down` submit fails with `fault`.
    pub fn push_down_fault(&self, fault: Fault) {
        self.state.lock().unwrap().down_faults.push_back(fault);
    }

    /// Every `/status` fails with `fault` while it is set.
    pub fn set_status_fault(&self, fault: Option<Fault>) {
        self.state.lock().unwrap().status_fault = fault;
    }

    /// The cost report says `cluster` cost `total_cost` USD over `duration_s` seconds.
    pub fn set_cost(&self, cluster: &str, total_cost: f64, duration_s: f64) {
        self.state
            .lock()
            .unwrap()
            .costs
            .insert(cluster.to_string(), (total_cost, duration_s));
    }

    /// Launches on `infra` (`aws/us-east-1`, as the task's `resources.infra` has it) fail with
    /// SkyPilot's `ResourcesUnavailableError` until [`FakeSky::restore`]; `spot` limits it to
    /// spot (`Some(true)`) or on-demand (`Some(false)`) launches.
    pub fn set_unavailable(&self, infra: &str, spot: Option<bool>) {
        self.state
            .lock()
            .unwrap()
            .unavailable
            .push((infra.to_string(), spot));
    }

    /// Every placement has capacity again.
    pub fn restore(&self) {
        self.state.lock().unwrap().unavailable.clear();
    }

    /// Ends a hanging launch with `outcome` (`Hang` leaves it running).
    pub fn settle(&self, request_id: &str, outcome: LaunchOutcome) {
        let now = self.now_s();
        let mut st = self.state.lock().unwrap();
        let Some(i) = st.requests.iter().position(|r| r.id == request_id) else {
            panic!("no request {request_id}");
        };
        let cluster = st.requests[i].cluster.clone();
        apply_launch(&mut st, i, &cluster, outcome, now);
    }

    /// Ends a hanging teardown with `outcome`.
    pub fn settle_down(&self, request_id: &str, outcome: DownOutcome) {
        let now = self.now_s();
        let mut st = self.state.lock().unwrap();
        let Some(i) = st.requests.iter().position(|r| r.id == request_id) else {
            panic!("no request {request_id}");
        };
        let cluster = st.requests[i].cluster.clone();
        apply_down(&mut st, i, &cluster, outcome, now);
    }

    /// Adds a request record as another client (or a newer server) would leave it; returns its
    /// id. Its result, once finished, is a success.
    pub fn add_request(&self, name: RequestName, cluster: &str, status: RequestStatus) -> String {
        let now = self.now_s();
        let mut st = self.state.lock().unwrap();
        let i = Self::new_request(&mut st, name, cluster, now);
        let r = &mut st.requests[i];
        if status.is_finished() {
            r.finished_at = Some(now);
        }
        r.status = status;
        r.id.clone()
    }

    /// Sets the status of a request the server holds, leaving its result as it is.
    pub fn set_request_status(&self, request_id: &str, status: RequestStatus) {
        let mut st = self.state.lock().unwrap();
        let r = st
            .requests
            .iter_mut()
            .find(|r| r.id == request_id)
            .unwrap_or_else(|| panic!("no request {request_id}"));
        r.status = status;
    }

    /// Every request the server created (lost ones included), oldest first.
    pub fn requests(&self) -> Vec<RequestSummary> {
        let st = self.state.lock().unwrap();
        st.requests.iter().map(summary).collect()
    }

    /// Clusters a launch request was created for, in order (one entry per request).
    pub fn launches(&self) -> Vec<String> {
        self.created(RequestName::Launch)
    }

    /// Clusters a stop request was created for, in order.
    pub fn stops(&self) -> Vec<String> {
        self.created(RequestName::Stop)
    }

    /// Clusters a teardown request was created for, in order.
    pub fn downs(&self) -> Vec<String> {
        self.created(RequestName::Down)
    }

    fn created(&self, name: RequestName) -> Vec<String> {
        let st = self.state.lock().unwrap();
        st.requests
            .iter()
            .filter(|r| r.name == name)
            .map(|r| r.cluster.clone())
            .collect()
    }

    /// Every call received, by name (`status`, `submit_launch`, …), in order.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    fn fault_error(&self, fault: Fault, path: &'static str) -> Error {
        match fault {
            Fault::Refused => Error::Unreachable {
                endpoint: ENDPOINT.into(),
                path,
                reason: "tcp connect error: Connection refused (os error 111)".into(),
                kind: UnreachableKind::Connect,
            },
            Fault::Status(code) => Error::Status {
                path,
                status: StatusCode::from_u16(code).expect("a valid HTTP status"),
                body: "refused by the fake".into(),
            },
            Fault::ReplyLost => Error::Unreachable {
                endpoint: ENDPOINT.into(),
                path,
                reason: "connection closed before message completed".into(),
                kind: UnreachableKind::Broken,
            },
            Fault::Timeout => Error::Timeout {
                endpoint: ENDPOINT.into(),
                path,
                after: Duration::from_secs(120),
            },
        }
    }

    fn new_request(st: &mut State, name: RequestName, cluster: &str, now: f64) -> usize {
        st.seq += 1;
        st.requests.push(Request {
            id: format!("req-{:04}", st.seq),
            name,
            cluster: cluster.to_string(),
            status: RequestStatus::Pending,
            created_at: now,
            finished_at: None,
            result: Ended::Ok,
            lost: false,
        });
        st.requests.len() - 1
    }

    fn result_of(&self, request_id: &str, path: &'static str) -> Result<()> {
        let st = self.state.lock().unwrap();
        let Some(r) = st.requests.iter().find(|r| r.id == request_id && !r.lost) else {
            return Err(Error::Status {
                path,
                status: StatusCode::NOT_FOUND,
                body: format!("Request '{request_id}' not found"),
            });
        };
        if !r.status.is_finished() {
            // The real `/api/get` would wait; the reconciler only asks for finished requests.
            return Err(Error::Timeout {
                endpoint: ENDPOINT.into(),
                path,
                after: Duration::from_secs(120),
            });
        }
        match &r.result {
            Ended::Ok => Ok(()),
            Ended::Failed(error_type, message) => Err(Error::RequestFailed {
                path,
                request_id: r.id.clone(),
                error_type: error_type.clone(),
                message: message.clone(),
            }),
            Ended::Cancelled => Err(Error::Cancelled {
                path,
                request_id: r.id.clone(),
            }),
        }
    }

    fn record(&self, call: &str) {
        self.state.lock().unwrap().calls.push(call.to_string());
    }
}

fn finish(r: &mut Request, status: RequestStatus, result: Ended, now: f64) {
    r.status = status;
    r.result = result;
    r.finished_at = Some(now);
}

/// Ends `r` as SkyPilot ends an operation on a cluster its table does not hold.
fn no_such_cluster(r: &mut Request, cluster: &str, now: f64) {
    finish(
        r,
        RequestStatus::Failed,
        Ended::Failed(
            CLUSTER_DOES_NOT_EXIST.into(),
            format!("Cluster '{cluster}' does not exist."),
        ),
        now,
    );
}

fn apply_launch(st: &mut State, i: usize, cluster: &str, outcome: LaunchOutcome, now: f64) {
    match outcome {
        LaunchOutcome::Succeed => {
            st.clusters.insert(cluster.to_string(), ClusterStatus::Up);
            finish(
                &mut st.requests[i],
                RequestStatus::Succeeded,
                Ended::Ok,
                now,
            );
        }
        LaunchOutcome::Fail {
            error_type,
            message,
        } => {
            // A failed provision leaves no cluster behind (SkyPilot cleans up after itself).
            st.clusters.remove(cluster);
            finish(
                &mut st.requests[i],
                RequestStatus::Failed,
                Ended::Failed(error_type, message),
                now,
            );
        }
        LaunchOutcome::Cancel => {
            st.clusters.remove(cluster);
            finish(
                &mut st.requests[i],
                RequestStatus::Cancelled,
                Ended::Cancelled,
                now,
            );
        }
        LaunchOutcome::Hang => {
            st.clusters.insert(cluster.to_string(), ClusterStatus::Init);
            st.requests[i].status = RequestStatus::Running;
        }
    }
}

fn apply_down(st: &mut State, i: usize, cluster: &str, outcome: DownOutcome, now: f64) {
    match outcome {
        DownOutcome::Succeed => {
            if st.clusters.remove(cluster).is_some() {
                finish(
                    &mut st.requests[i],
                    RequestStatus::Succeeded,
                    Ended::Ok,
                    now,
                );
            } else {
                // `sky/core.py` `down` of a cluster its table does not hold.
                no_such_cluster(&mut st.requests[i], cluster, now);
            }
        }
        DownOutcome::Fail {
            error_type,
            message,
        } => finish(
            &mut st.requests[i],
            RequestStatus::Failed,
            Ended::Failed(error_type, message),
            now,
        ),
        DownOutcome::Hang => st.requests[i].status = RequestStatus::Running,
        DownOutcome::Lose => st.requests[i].lost = true,
    }
}

fn summary(r: &Request) -> RequestSummary {
    RequestSummary {
        request_id: r.id.clone(),
        name: r.name.clone(),
        status: r.status.clone(),
        cluster_name: Some(r.cluster.clone()),
        created_at: Some(r.created_at),
        finished_at: r.finished_at,
        status_msg: None,
    }
}

impl SkyApi for FakeSky {
    fn status(
        &self,
        _query: &StatusQuery,
    ) -> impl Future<Output = Result<Vec<ClusterRecord>>> + Send {
        self.record("status");
        let st = self.state.lock().unwrap();
        let out = match st.status_fault {
            Some(f) => Err(self.fault_error(f, "/status")),
            None => Ok(st
                .clusters
                .iter()
                .map(|(name, status)| {
                    serde_json::from_value(serde_json::json!({
                        "name": name, "status": status.as_str(), "nodes": 1,
                    }))
                    .expect("a cluster record")
                })
                .collect()),
        };
        ready(out)
    }

    fn cost_report(
        &self,
        query: &CostReportQuery,
    ) -> impl Future<Output = Result<Vec<CostRecord>>> + Send {
        self.record("cost_report");
        let st = self.state.lock().unwrap();
        let out = st
            .costs
            .iter()
            .filter(|(name, _)| {
                query
                    .cluster_names
                    .as_ref()
                    .is_none_or(|names| names.contains(name))
            })
            .map(|(name, (cost, secs))| {
                serde_json::from_value(serde_json::json!({
                    "name": name, "total_cost": cost, "duration": secs, "num_nodes": 1,
                }))
                .expect("a cost record")
            })
            .collect();
        ready(Ok(out))
    }

    fn requests_for_cluster(
        &self,
        cluster_name: &str,
    ) -> impl Future<Output = Result<Vec<RequestSummary>>> + Send {
        self.record("requests_for_cluster");
        let st = self.state.lock().unwrap();
        let out = st
            .requests
            .iter()
            .filter(|r| r.cluster == cluster_name && !r.lost)
            .map(summary)
            .collect();
        ready(Ok(out))
    }

    fn request_status(
        &self,
        request_id: &str,
    ) -> impl Future<Output = Result<Option<RequestSummary>>> + Send {
        self.record("request_status");
        let st = self.state.lock().unwrap();
        let out = st
            .requests
            .iter()
            .find(|r| r.id == request_id && !r.lost)
            .map(summary);
        ready(Ok(out))
    }

    fn submit_launch(&self, body: &LaunchBody<'_>) -> impl Future<Output = Result<String>> + Send {
        self.record("submit_launch");
        let now = self.now_s();
        let mut st = self.state.lock().unwrap();
        let fault = st.launch_faults.pop_front();
        let out = match fault {
            Some(f @ (Fault::Refused | Fault::Status(_) | Fault::Timeout)) => {
                Err(self.fault_error(f, LAUNCH_PATH))
            }
            other => {
                let i = Self::new_request(&mut st, RequestName::Launch, body.cluster_name, now);
                // Where the task asks to run, read as SkyPilot reads it.
                let task: serde_json::Value = serde_saphyr::from_str(body.task).unwrap_or_default();
                let spot = task["resources"]["use_spot"] == true;
                let infra = task["resources"]["infra"].as_str().unwrap_or("");
                let out_of_capacity = st
                    .unavailable
                    .iter()
                    .find(|(i, s)| i == infra && s.is_none_or(|s| s == spot));
                let outcome = match out_of_capacity {
                    Some((infra, _)) => LaunchOutcome::Fail {
                        error_type: skydeck_skypilot::RESOURCES_UNAVAILABLE.into(),
                        message: format!(
                            "Failed to provision all possible launchable resources. Relax the task's resource requirements: {infra}{}",
                            if spot { " (spot)" } else { "" }
                        ),
                    },
                    None => st
                        .launch_outcomes
                        .pop_front()
                        .unwrap_or(LaunchOutcome::Succeed),
                };
                apply_launch(&mut st, i, body.cluster_name, outcome, now);
                match other {
                    Some(f) => Err(self.fault_error(f, LAUNCH_PATH)),
                    None => Ok(st.requests[i].id.clone()),
                }
            }
        };
        ready(out)
    }

    fn launch_result(&self, request_id: &str) -> impl Future<Output = Result<LaunchResult>> + Send {
        self.record("launch_result");
        ready(
            self.result_of(request_id, LAUNCH_PATH)
                .map(|()| LaunchResult { job_id: Some(1) }),
        )
    }

    fn submit_down(&self, body: &DownBody<'_>) -> impl Future<Output = Result<String>> + Send {
        self.record("submit_down");
        let now = self.now_s();
        let mut st = self.state.lock().unwrap();
        let fault = st.down_faults.pop_front();
        let out = match fault {
            Some(f @ (Fault::Refused | Fault::Status(_) | Fault::Timeout)) => {
                Err(self.fault_error(f, DOWN_PATH))
            }
            other => {
                let i = Self::new_request(&mut st, RequestName::Down, body.cluster_name, now);
                let outcome = st.down_outcomes.pop_front().unwrap_or(DownOutcome::Succeed);
                apply_down(&mut st, i, body.cluster_name, outcome, now);
                match other {
                    Some(f) => Err(self.fault_error(f, DOWN_PATH)),
                    None => Ok(st.requests[i].id.clone()),
                }
            }
        };
        ready(out)
    }

    fn down_result(&self, request_id: &str) -> impl Future<Output = Result<()>> + Send {
        self.record("down_result");
        ready(self.result_of(request_id, DOWN_PATH))
    }

    fn submit_stop(&self, body: &StopBody<'_>) -> impl Future<Output = Result<String>> + Send {
        self.record("submit_stop");
        let now = self.now_s();
        let mut st = self.state.lock().unwrap();
        let i = Self::new_request(&mut st, RequestName::Stop, body.cluster_name, now);
        // `sky/core.py` `stop`: the cluster is kept, STOPPED; a missing one fails.
        if let Some(c) = st.clusters.get_mut(body.cluster_name) {
            *c = ClusterStatus::Stopped;
            finish(
                &mut st.requests[i],
                RequestStatus::Succeeded,
                Ended::Ok,
                now,
            );
        } else {
            no_such_cluster(&mut st.requests[i], body.cluster_name, now);
        }
        ready(Ok(st.requests[i].id.clone()))
    }

    fn stop_result(&self, request_id: &str) -> impl Future<Output = Result<()>> + Send {
        self.record("stop_result");
        ready(self.result_of(request_id, STOP_PATH))
    }
}
