//! The idle stop against the real SkyPilot API server (skypilot[server]==0.14.1) that
//! `scripts/test.sh` starts with a seeded fleet (`SKYDECK_TEST_SKYPILOT_SMALL`): decisions made
//! on the server's own `/status` records are executed, the server accepts the `/stop` and
//! `/autostop` bodies (no 422), and its request table shows `sky.stop` and `sky.autostop` for the
//! chosen cluster. Offline they fail for lack of a cloud SDK, before SkyPilot changes anything,
//! which the test checks too, so the seeded ground truth other tests compare with is left as
//! it was. Without the server this test fails loudly instead of passing.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use skydeck_gpu::idle::{Action, IdleMarks, IdlePolicy, Outcome, decide, execute};
use skydeck_gpu::{Activity, ClusterUtilization, UtilizationReport};
use skydeck_skypilot::api::{
    AUTOSTOP_REQUEST_NAME, ClusterRecord, ClusterStatus, RequestSummary, STOP_REQUEST_NAME,
    StatusQuery,
};
use skydeck_skypilot::{Client, ClientOptions, Error as SkyError};

fn endpoint() -> String {
    let dir = std::env::var("SKYDECK_TEST_SKYPILOT_SMALL").unwrap_or_else(|_| {
        panic!(
            "SKYDECK_TEST_SKYPILOT_SMALL is not set: this test needs the real SkyPilot API \
             server that scripts/test.sh starts (run the tests with scripts/test.sh)"
        )
    });
    std::fs::read_to_string(std::path::Path::new(&dir).join("endpoint"))
        .unwrap_or_else(|e| panic!("no endpoint file in {dir}: {e}"))
        .trim()
        .to_string()
}

fn client(url: &str) -> Client {
    let target = skydeck_skypilot::target::resolve(&skydeck_skypilot::target::Inputs {
        // Nothing from the developer's environment or ~/.sky: only the test server.
        endpoint: Some(url),
        credential: None,
        env: &|_| None,
        home: None,
    })
    .unwrap();
    Client::new(target, ClientOptions::default()).unwrap()
}

/// A report that calls `cluster` idle for two hours, at 0.5 %, for $12.34/h.
fn idle_report(cluster: &ClusterRecord, now: Timestamp) -> UtilizationReport {
    UtilizationReport {
        at: now,
        clusters: vec![ClusterUtilization {
            cluster: cluster.name.clone(),
            user: cluster.user_name.clone(),
            expected_gpus: 1,
            gpus: Vec::new(),
            utilization: Some(0.005),
            idle_since: Some(now - jiff::SignedDuration::from_hours(2)),
            cost_per_hour: Some(12.34),
            status: Activity::Idle,
            reason: "all GPUs idle (test)".into(),
        }],
        avg_utilization: Some(0.005),
        idle_clusters: 1,
        idle_gpus: 1,
        unknown_clusters: 0,
        idle_burn_rate_hourly: 12.34,
        unmatched_gpus: 0,
    }
}

async fn wait_finished(client: &Client, id: &str) -> RequestSummary {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(r) = client.request_status(id).await.unwrap()
            && r.is_finished()
        {
            return r;
        }
        assert!(Instant::now() < deadline, "request {id} did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn real_server_accepts_idle_stop_and_autostop_requests() {
    let sky = endpoint();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = client(&sky);
    rt.block_on(async {
        let records = c.status(&StatusQuery::default()).await.unwrap();
        // A seeded UP cluster on a VM cloud: stop and autostop are supported there, so the
        // request goes as far as the (missing) cloud SDK.
        let target = records
            .iter()
            .find(|r| {
                r.status == ClusterStatus::Up
                    && !r.is_managed
                    && r.cloud.as_deref().is_some_and(|c| c != "Kubernetes")
                    && !r.name.starts_with("sky-")
            })
            .unwrap_or_else(|| panic!("no UP VM cluster in the seeded fleet: {records:?}"))
            .clone();
        let now = Timestamp::now();

        for (action, name) in [
            (Action::Stop, STOP_REQUEST_NAME),
            (Action::Autostop, AUTOSTOP_REQUEST_NAME),
        ] {
            let policy = IdlePolicy {
                action,
                // Only the chosen cluster is in scope, whatever else the fleet holds.
                name_patterns: vec![target.name.clone()],
                ..IdlePolicy::default()
            };
            policy.validate().unwrap();
            let d = decide(
                &policy,
                &idle_report(&target, now),
                &records,
                now,
                &IdleMarks::new(),
            );
            assert_eq!(d.len(), 1);
            assert_eq!(d[0].outcome, Outcome::Act, "{}", d[0].reason);
            let done = execute(&c, &d).await;
            assert_eq!(done.len(), 1);
            let id = match &done[0].result {
                Ok(id) => id.clone(),
                Err(e) => panic!("{action} of {} was refused: {e}", target.name),
            };

            // The request table has it under the cluster, with SkyPilot's request name.
            let row = wait_finished(&c, &id).await;
            assert_eq!(row.name, name);
            assert_eq!(row.cluster_name.as_deref(), Some(target.name.as_str()));
            let rows = c.requests_for_cluster(&target.name).await.unwrap();
            assert!(
                rows.iter().any(|r| r.request_id == id && r.name == name),
                "{rows:?}"
            );
            // Offline it fails with SkyPilot's own reason (no cloud SDK in the server's venv).
            let outcome = match action {
                Action::Stop => c.stop_result(&id).await,
                _ => c.autostop_result(&id).await,
            };
            match outcome {
                Err(SkyError::RequestFailed {
                    error_type,
                    message,
                    ..
                }) => {
                    assert!(!error_type.is_empty() && !message.is_empty());
                }
                Ok(()) => panic!("{name} of a seeded cluster succeeded offline: status {row:?}"),
                Err(other) => panic!("unexpected: {other}"),
            }
        }

        // Nothing changed in SkyPilot's table: the cluster is UP, its autostop as seeded.
        let after = c
            .status(&StatusQuery {
                cluster_names: Some(vec![target.name.clone()]),
                ..StatusQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].status, ClusterStatus::Up);
    });
}
