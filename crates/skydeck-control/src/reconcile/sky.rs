//! The reconciler's view of SkyPilot: the calls it makes, as a trait, so the crate's tests run
//! the reconciler against an in-process fake ([`super::fake`]) and production against
//! [`skydeck_skypilot::Client`]. What the calls mean (request names and statuses, which errors
//! are definite rejections or a missing cluster) stays in the SkyPilot client's own types.

use std::future::Future;

use skydeck_skypilot::api::{
    ClusterRecord, CostRecord, CostReportQuery, DownBody, LaunchBody, LaunchResult, RequestSummary,
    StatusQuery, StopBody,
};
use skydeck_skypilot::{Client, Result};

/// The SkyPilot API server calls the reconciler uses. Each returns a `Send` future because the
/// reconciler steps nodes on spawned tasks.
pub trait SkyApi: Clone + Send + Sync + 'static {
    /// `POST /status`: every cluster SkyPilot holds.
    fn status(
        &self,
        query: &StatusQuery,
    ) -> impl Future<Output = Result<Vec<ClusterRecord>>> + Send;

    /// `POST /cost_report`: cost and runtime of the named clusters.
    fn cost_report(
        &self,
        query: &CostReportQuery,
    ) -> impl Future<Output = Result<Vec<CostRecord>>> + Send;

    /// Every request (finished or not) the server holds for `cluster_name`.
    fn requests_for_cluster(
        &self,
        cluster_name: &str,
    ) -> impl Future<Output = Result<Vec<RequestSummary>>> + Send;

    /// The row of one request without waiting for it; `None` when the server does not know it.
    fn request_status(
        &self,
        request_id: &str,
    ) -> impl Future<Output = Result<Option<RequestSummary>>> + Send;

    /// Submits `POST /launch`; returns the request id at once.
    fn submit_launch(&self, body: &LaunchBody<'_>) -> impl Future<Output = Result<String>> + Send;

    /// The outcome of a finished launch.
    fn launch_result(&self, request_id: &str) -> impl Future<Output = Result<LaunchResult>> + Send;

    /// Submits `POST /down`; returns the request id at once.
    fn submit_down(&self, body: &DownBody<'_>) -> impl Future<Output = Result<String>> + Send;

    /// The outcome of a finished teardown.
    fn down_result(&self, request_id: &str) -> impl Future<Output = Result<()>> + Send;

    /// Submits `POST /stop` (a pool's warm node); returns the request id at once.
    fn submit_stop(&self, body: &StopBody<'_>) -> impl Future<Output = Result<String>> + Send;

    /// The outcome of a finished stop.
    fn stop_result(&self, request_id: &str) -> impl Future<Output = Result<()>> + Send;
}

impl SkyApi for Client {
    fn status(
        &self,
        query: &StatusQuery,
    ) -> impl Future<Output = Result<Vec<ClusterRecord>>> + Send {
        Client::status(self, query)
    }

    fn cost_report(
        &self,
        query: &CostReportQuery,
    ) -> impl Future<Output = Result<Vec<CostRecord>>> + Send {
        Client::cost_report(self, query)
    }

    fn requests_for_cluster(
        &self,
        cluster_name: &str,
    ) -> impl Future<Output = Result<Vec<RequestSummary>>> + Send {
        Client::requests_for_cluster(self, cluster_name)
    }

    fn request_status(
        &self,
        request_id: &str,
    ) -> impl Future<Output = Result<Option<RequestSummary>>> + Send {
        Client::request_status(self, request_id)
    }

    fn submit_launch(&self, body: &LaunchBody<'_>) -> impl Future<Output = Result<String>> + Send {
        Client::submit_launch(self, body)
    }

    fn launch_result(&self, request_id: &str) -> impl Future<Output = Result<LaunchResult>> + Send {
        Client::launch_result(self, request_id)
    }

    fn submit_down(&self, body: &DownBody<'_>) -> impl Future<Output = Result<String>> + Send {
        Client::submit_down(self, body)
    }

    fn down_result(&self, request_id: &str) -> impl Future<Output = Result<()>> + Send {
        Client::down_result(self, request_id)
    }

    fn submit_stop(&self, body: &StopBody<'_>) -> impl Future<Output = Result<String>> + Send {
        Client::submit_stop(self, body)
    }

    fn stop_result(&self, request_id: &str) -> impl Future<Output = Result<()>> + Send {
        Client::stop_result(self, request_id)
    }
}
