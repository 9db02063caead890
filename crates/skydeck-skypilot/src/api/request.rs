//! The request protocol's own vocabulary: what `GET /api/get` returns for every asynchronous
//! request ([`RequestPayload`]), the request's status ([`RequestStatus`]) and the names requests
//! carry in the server's request table ([`RequestName`]).
//!
//! Both enums are SkyPilot's (`sky/server/requests/requests.py` `RequestStatus` and
//! `sky/server/requests/request_names.py` `RequestName` of skypilot 0.14.1), spelled here once
//! so no caller writes a wire string; each has an `Other` variant so a value added by a newer
//! server is carried, not fatal.

use std::fmt;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// The body of `/api/get` (200) or its `detail` (500). Only the fields skydeck reads; the
/// pickled `entrypoint`/`request_body` are ignored. `return_value` is borrowed from the body
/// as it arrived (JSON text inside a JSON string), so a multi-megabyte result is not copied
/// before it is parsed.
#[derive(Debug, Clone, Deserialize)]
pub struct RequestPayload<'a> {
    /// Full request id.
    pub request_id: String,
    /// Where the request is in its life.
    pub status: RequestStatus,
    /// The result: a JSON string holding JSON text (`"null"` on failure).
    #[serde(borrow, default)]
    pub return_value: Option<&'a RawValue>,
    /// JSON text: `"null"` or `{"object", "type", "message"}`.
    #[serde(default)]
    pub error: Option<String>,
}

/// The decoded `error` of a failed request. `object` (a pickle) is not read.
#[derive(Debug, Clone, Deserialize)]
pub struct RequestError {
    /// The Python exception class.
    #[serde(rename = "type", default)]
    pub error_type: Option<String>,
    /// `str(exception)`.
    #[serde(default)]
    pub message: Option<String>,
}

/// A request's status (`RequestStatus`). The first three are active, the last three final.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RequestStatus {
    /// Queued, not started.
    Pending,
    /// Dequeued, waiting for a precondition (e.g. another request on the same cluster).
    Waiting,
    /// Executing.
    Running,
    /// Finished with a result.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Cancelled (`/api/cancel`, or the server shut down under it).
    Cancelled,
    /// A status this client does not know (a newer server's), kept as sent.
    Other(String),
}

impl RequestStatus {
    /// The wire form.
    pub fn as_str(&self) -> &str {
        match self {
            RequestStatus::Pending => "PENDING",
            RequestStatus::Waiting => "WAITING",
            RequestStatus::Running => "RUNNING",
            RequestStatus::Succeeded => "SUCCEEDED",
            RequestStatus::Failed => "FAILED",
            RequestStatus::Cancelled => "CANCELLED",
            RequestStatus::Other(s) => s,
        }
    }

    /// Parses the wire form; unknown values become [`RequestStatus::Other`].
    pub fn parse(s: &str) -> RequestStatus {
        match s {
            "PENDING" => RequestStatus::Pending,
            "WAITING" => RequestStatus::Waiting,
            "RUNNING" => RequestStatus::Running,
            "SUCCEEDED" => RequestStatus::Succeeded,
            "FAILED" => RequestStatus::Failed,
            "CANCELLED" => RequestStatus::Cancelled,
            other => RequestStatus::Other(other.to_string()),
        }
    }

    /// Whether the request has finished one way or another (SkyPilot's `finished_status()`).
    /// An unknown status counts as not finished: waiting longer on it is safe, acting on a
    /// result that may not exist is not.
    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            RequestStatus::Succeeded | RequestStatus::Failed | RequestStatus::Cancelled
        )
    }
}

impl fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RequestStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(RequestStatus::parse(&s))
    }
}

impl serde::Serialize for RequestStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PartialEq<str> for RequestStatus {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for RequestStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Prefix of every request name in the request table (`REQUEST_NAME_PREFIX`).
pub const REQUEST_NAME_PREFIX: &str = "sky.";

/// The name a request carries in the request table (`sky.` + `RequestName`), for the requests
/// skydeck submits or looks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RequestName {
    /// `sky.launch` (`CLUSTER_LAUNCH`).
    Launch,
    /// `sky.down` (`CLUSTER_DOWN`).
    Down,
    /// `sky.stop` (`CLUSTER_STOP`).
    Stop,
    /// `sky.start` (`CLUSTER_START`).
    Start,
    /// `sky.autostop` (`CLUSTER_AUTOSTOP`).
    Autostop,
    /// `sky.status` (`CLUSTER_STATUS`).
    Status,
    /// `sky.queue` (`CLUSTER_QUEUE`).
    Queue,
    /// `sky.cost_report` (`CLUSTER_COST_REPORT`).
    CostReport,
    /// `sky.endpoints` (`CLUSTER_ENDPOINTS`).
    Endpoints,
    /// `sky.cluster_events` (`CLUSTER_EVENTS`).
    ClusterEvents,
    /// `sky.jobs.queue_v2` (`JOBS_QUEUE_V2`).
    JobsQueueV2,
    /// `sky.jobs.events` (`JOBS_EVENTS`).
    JobsEvents,
    /// `sky.api_cancel` (`API_CANCEL`).
    ApiCancel,
    /// Any other name, kept as sent.
    Other(String),
}

impl RequestName {
    /// The names this client knows, with their wire form.
    const KNOWN: [(RequestName, &'static str); 13] = [
        (RequestName::Launch, "sky.launch"),
        (RequestName::Down, super::DOWN_REQUEST_NAME),
        (RequestName::Stop, super::STOP_REQUEST_NAME),
        (RequestName::Start, "sky.start"),
        (RequestName::Autostop, super::AUTOSTOP_REQUEST_NAME),
        (RequestName::Status, "sky.status"),
        (RequestName::Queue, "sky.queue"),
        (RequestName::CostReport, "sky.cost_report"),
        (RequestName::Endpoints, "sky.endpoints"),
        (RequestName::ClusterEvents, "sky.cluster_events"),
        (RequestName::JobsQueueV2, "sky.jobs.queue_v2"),
        (RequestName::JobsEvents, "sky.jobs.events"),
        (RequestName::ApiCancel, "sky.api_cancel"),
    ];

    /// The wire form (`sky.launch`, …).
    pub fn as_str(&self) -> &str {
        if let RequestName::Other(s) = self {
            return s;
        }
        Self::KNOWN
            .iter()
            .find(|(n, _)| n == self)
            .map(|(_, s)| *s)
            .expect("every known name is in KNOWN")
    }

    /// Parses the wire form; unknown names become [`RequestName::Other`].
    pub fn parse(s: &str) -> RequestName {
        Self::KNOWN
            .iter()
            .find(|(_, w)| *w == s)
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| RequestName::Other(s.to_string()))
    }
}

impl fmt::Display for RequestName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RequestName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(RequestName::parse(&s))
    }
}

impl serde::Serialize for RequestName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PartialEq<str> for RequestName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for RequestName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RequestSummary;

    fn capture(name: &str) -> String {
        let path = format!(
            "{}/../../tests/fixtures/skypilot/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn statuses_and_names_round_trip() {
        for s in [
            "PENDING",
            "WAITING",
            "RUNNING",
            "SUCCEEDED",
            "FAILED",
            "CANCELLED",
            "PAUSED",
        ] {
            assert_eq!(RequestStatus::parse(s).as_str(), s);
        }
        assert_eq!(
            RequestStatus::parse("PAUSED"),
            RequestStatus::Other("PAUSED".into())
        );
        let finished: Vec<_> = ["PENDING", "WAITING", "RUNNING", "SUCCEEDED", "FAILED"]
            .iter()
            .chain(&["CANCELLED", "PAUSED"])
            .filter(|s| RequestStatus::parse(s).is_finished())
            .collect();
        assert_eq!(finished, [&"SUCCEEDED", &"FAILED", &"CANCELLED"]);
        for (n, w) in RequestName::KNOWN {
            assert_eq!(RequestName::parse(w), n);
            assert_eq!(n.as_str(), w);
            assert!(w.starts_with(REQUEST_NAME_PREFIX));
        }
        assert_eq!(
            RequestName::parse("sky.serve.up"),
            RequestName::Other("sky.serve.up".into())
        );
    }

    #[test]
    fn the_request_table_capture_decodes() {
        // `GET /api/status` of a real 0.14.1 server.
        let rows: Vec<RequestSummary> = serde_json::from_str(&capture("api_status.json")).unwrap();
        assert!(!rows.is_empty());
        let names: Vec<_> = rows.iter().map(|r| r.name.clone()).collect();
        assert!(names.contains(&RequestName::Status), "{names:?}");
        assert!(names.contains(&RequestName::Queue), "{names:?}");
        assert!(names.contains(&RequestName::Endpoints), "{names:?}");
        assert!(names.contains(&RequestName::ClusterEvents), "{names:?}");
        assert!(names.contains(&RequestName::JobsEvents), "{names:?}");
        for r in &rows {
            assert!(
                !matches!(r.status, RequestStatus::Other(_)),
                "{}: {}",
                r.request_id,
                r.status
            );
            assert!(!matches!(r.name, RequestName::Other(_)), "{}", r.name);
        }
        let status = rows.iter().find(|r| r.name == RequestName::Status).unwrap();
        assert_eq!(status.status, RequestStatus::Failed);
        assert!(status.is_finished());
    }

    #[test]
    fn the_launch_failure_capture_decodes() {
        // `/api/get` of a failed dry-run launch answers 500 with `{"detail": RequestPayload}`.
        #[derive(Deserialize)]
        struct Detail<'a> {
            #[serde(borrow)]
            detail: RequestPayload<'a>,
        }
        let text = capture("launch_dryrun.json");
        let d: Detail<'_> = serde_json::from_str(&text).unwrap();
        assert_eq!(d.detail.status, RequestStatus::Failed);
        #[derive(Deserialize)]
        struct Named {
            name: RequestName,
        }
        let n: std::collections::HashMap<String, Named> = serde_json::from_str(&text).unwrap();
        assert_eq!(n["detail"].name, RequestName::Launch);
    }
}
