//! `skydeck control` against the real SkyPilot API server (skypilot[server]==0.14.1) that
//! `scripts/test.sh` starts with a seeded fleet: the reconciler reads the seeded clusters
//! through `/status`, a real `/launch` request is submitted, followed through the request table
//! and fails offline with SkyPilot's own reason, and `/down` of an unknown cluster takes the
//! documented error path.

use std::time::Duration;

use serde_json::{Value, json};
use skydeck_skypilot::api::DownBody;
use skydeck_skypilot::{Client, ClientOptions, Error as SkyError};

use crate::control::{Plane, TestDb};

fn endpoint() -> String {
    let dir = std::env::var("SKYDECK_TEST_SKYPILOT_SMALL").unwrap_or_else(|_| {
        panic!(
            "SKYDECK_TEST_SKYPILOT_SMALL is not set: these tests need the real SkyPilot API \
             server that scripts/test.sh starts (run the tests with scripts/test.sh)"
        )
    });
    std::fs::read_to_string(std::path::Path::new(&dir).join("endpoint"))
        .unwrap()
        .trim()
        .to_string()
}

fn seeded_clusters() -> Vec<String> {
    let dir = std::env::var("SKYDECK_TEST_SKYPILOT_SMALL").unwrap();
    let fleet: Value = serde_json::from_slice(
        &std::fs::read(std::path::Path::new(&dir).join("fleet.json")).unwrap(),
    )
    .unwrap();
    fleet["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn reconciler_reads_the_real_fleet_and_follows_a_real_launch() {
    let sky = endpoint();
    let seeded = seeded_clusters();
    // Borrow a prefix the seeded fleet uses, so its clusters look like ours but unknown.
    let owner = seeded[0].split('-').next().unwrap().to_string();
    let mut expected: Vec<String> = seeded
        .iter()
        .filter(|n| n.starts_with(&format!("{owner}-")))
        .cloned()
        .collect();
    expected.sort();
    let db = TestDb::sqlite();
    let plane = Plane::start(
        &db,
        &sky,
        &["--cluster-prefix", &owner, "--poll-interval", "1s"],
    );

    // Drift: the seeded clusters with the prefix are reported, not adopted.
    let t0 = std::time::Instant::now();
    loop {
        let (_, r) = plane.admin("GET", "/admin/unmanaged-clusters", None);
        if r["clusters"] == json!(expected) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "unmanaged clusters {r} != seeded {expected:?}\n{}",
            plane.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let (_, list) = plane.admin("GET", "/admin/nodes", None);
    assert_eq!(list["nodes"], json!([]), "nothing is adopted");

    // A real launch: SkyPilot accepts the generated task, runs the request, and (offline) fails
    // it; the node carries SkyPilot's reason.
    let cluster = plane.launch(json!({
        "provider": "aws", "region": "us-east-1", "gpu": "A100:8",
        "model": "meta-llama/Llama-2-70b-chat-hf", "vllm_args": "--tensor-parallel-size 8"
    }));
    let node = plane.wait_status(&cluster, "failed", Duration::from_secs(120));
    let reason = node["status_reason"].as_str().unwrap();
    assert!(reason.starts_with("SkyPilot launch failed: "), "{reason}");
    let request_id = node["launch_request_id"].as_str().unwrap().to_string();

    // The request table finds the launch by cluster name: what a restarted control plane uses
    // to adopt a launch instead of sending it twice.
    let client = Client::new(
        skydeck_skypilot::target::resolve(&skydeck_skypilot::target::Inputs {
            // Nothing from the developer's environment or ~/.sky: only the test server.
            endpoint: Some(&sky),
            credential: None,
            env: &|_| None,
            home: None,
        })
        .unwrap(),
        ClientOptions::default(),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let requests = rt.block_on(client.requests_for_cluster(&cluster)).unwrap();
    let launches: Vec<_> = requests.iter().filter(|r| r.name == "sky.launch").collect();
    assert_eq!(launches.len(), 1, "{requests:?}");
    assert_eq!(launches[0].request_id, request_id);
    assert_eq!(launches[0].status, "FAILED");

    // Terminating a failed node is a success and sends nothing.
    let (code, resp) = plane.admin("POST", &format!("/admin/nodes/{cluster}/terminate"), None);
    assert_eq!((code, resp["status"].as_str()), (200, Some("failed")));
    let metrics = plane.metrics();
    assert!(
        metrics.contains(r#"skydeck_control_launches_total{result="failed"} 1"#),
        "{metrics}"
    );

    // /down of a cluster SkyPilot does not know: the request fails with ClusterDoesNotExist,
    // which the reconciler reads as "already gone".
    let err = rt
        .block_on(async {
            let id = client
                .submit_down(&DownBody {
                    cluster_name: "skydeck-no-such-cluster",
                    purge: false,
                })
                .await?;
            for _ in 0..100 {
                if client
                    .request_status(&id)
                    .await?
                    .is_some_and(|r| r.is_finished())
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            client.down_result(&id).await
        })
        .unwrap_err();
    match err {
        SkyError::RequestFailed {
            error_type,
            message,
            ..
        } => {
            assert_eq!(error_type, "ClusterDoesNotExist");
            assert!(message.contains("does not exist"), "{message}");
        }
        other => panic!("unexpected: {other}"),
    }
}
