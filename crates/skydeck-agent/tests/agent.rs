//! The agent against a vLLM stand-in that speaks vLLM 0.33's behaviour exactly and a fake
//! control plane that records every report: loading, registering, heartbeat fields, the drain
//! (on SIGTERM and on the control plane's order, with and without in-flight requests), the
//! control plane going away and coming back, the engine dying, a metrics page that does not
//! parse, a refused token, a node that is gone and a GPU read that never returns.
//!
//! Every test runs under its own deadline; the real-engine proof is `tests/llama.rs`.

mod common;

use std::time::Duration;

use common::{FakePlane, PlaneMode, Running, VLLM_MODEL, VllmStandIn, config, wait_for, within};
use skydeck_agent::gpu::{GpuReader, GpuState};
use skydeck_agent::{Agent, AgentError, Exit};
use skydeck_contract::{AgentState, Engine, EngineHealth, GpuReport, Order};

const LIMIT: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(20);

/// An agent with the test config against `plane` and `vllm`, running.
async fn start_vllm_agent(plane: &FakePlane, vllm: &VllmStandIn) -> Running {
    Running::spawn(
        Agent::new(config(&plane.url(), &vllm.url(), Engine::Vllm))
            .await
            .unwrap(),
    )
}

#[tokio::test]
async fn waits_for_vllm_to_load_registers_heartbeats_and_drains_on_sigterm() {
    within(LIMIT, async {
        let plane = FakePlane::start().await;
        let mut vllm = VllmStandIn::loading().await;
        let cfg = config(&plane.url(), &vllm.url(), Engine::Vllm);
        let mut agent = Running::spawn(Agent::new(cfg).await.unwrap());

        // The port is closed while vLLM loads: the agent waits and does not register.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(plane.registers(), 0);
        assert!(!agent.task.is_finished());
        let page = agent.metrics_page().await;
        assert!(
            page.contains("skydeck_agent_engine_up{engine=\"vllm\"} 0"),
            "{page}"
        );

        vllm.set(|n| {
            n.running = 2.0;
            n.waiting = 1.0;
            n.generation_tokens = 1234.0;
            n.prompt_tokens = 567.0;
        });
        vllm.ready().await;
        wait_for("the register", WAIT, || plane.registers() == 1).await;
        let reg = plane.state.lock().unwrap().registers[0].clone();
        assert_eq!(reg.served_models, vec![VLLM_MODEL.to_string()]);
        assert_eq!(reg.engine, Engine::Vllm);
        assert_eq!(reg.engine_version.as_deref(), Some("0.33.0"));

        wait_for("a heartbeat with vLLM's numbers", WAIT, || {
            plane.saw(|h| h.engine.requests_running == Some(2.0))
        })
        .await;
        let hb = plane.last_heartbeat().unwrap();
        assert_eq!(hb.state, AgentState::Serving);
        assert_eq!(hb.engine.health, EngineHealth::Ok);
        assert_eq!(hb.engine.requests_waiting, Some(1.0));
        assert_eq!(hb.engine.generation_tokens_total, Some(1234.0));
        assert_eq!(hb.engine.prompt_tokens_total, Some(567.0));
        assert_eq!(hb.served_models, vec![VLLM_MODEL.to_string()]);
        assert!(hb.gpus.is_empty() && hb.gpu_error.is_some());
        hb.validate().unwrap();

        let page = agent.metrics_page().await;
        for line in [
            "skydeck_agent_engine_up{engine=\"vllm\"} 1",
            "skydeck_agent_requests_running{engine=\"vllm\"} 2",
            "skydeck_agent_generation_tokens_total{engine=\"vllm\"} 1234",
            "skydeck_agent_draining 0",
        ] {
            assert!(page.contains(line), "missing {line:?} in\n{page}");
        }

        // SIGTERM with requests in flight: draining until they are done.
        agent.sigterm();
        wait_for("a draining heartbeat", WAIT, || {
            plane.saw(|h| h.state == AgentState::Draining)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!agent.task.is_finished(), "it must wait for the 3 requests");
        assert!(
            agent
                .metrics_page()
                .await
                .contains("skydeck_agent_draining 1")
        );
        vllm.set(|n| {
            n.running = 0.0;
            n.waiting = 0.0;
        });
        assert_eq!(agent.exit(WAIT).await.unwrap(), Exit::Drained);
        let last = plane.last_heartbeat().unwrap();
        assert_eq!(last.state, AgentState::Drained);
        assert_eq!(last.engine.requests_running, Some(0.0));
    })
    .await;
}

#[tokio::test]
async fn a_drain_order_ends_after_the_grace_period_when_requests_never_finish() {
    within(LIMIT, async {
        let plane = FakePlane::start().await;
        let vllm = VllmStandIn::serving().await;
        vllm.set(|n| n.running = 3.0);
        let mut cfg = config(&plane.url(), &vllm.url(), Engine::Vllm);
        cfg.drain_grace = Some(Duration::from_millis(600));
        let agent = Running::spawn(Agent::new(cfg).await.unwrap());
        wait_for("heartbeats", WAIT, || plane.heartbeats().len() >= 2).await;
        plane.set(|s| s.order = Order::Drain);
        let started = tokio::time::Instant::now();
        assert_eq!(agent.exit(WAIT).await.unwrap(), Exit::Drained);
        assert!(started.elapsed() >= Duration::from_millis(600));
        let last = plane.last_heartbeat().unwrap();
        assert_eq!(last.state, AgentState::Drained);
        assert_eq!(last.engine.requests_running, Some(3.0));
    })
    .await;
}

#[tokio::test]
async fn an_exit_order_ends_the_agent_at_once() {
    within(LIMIT, async {
        let plane = FakePlane::start().await;
        let vllm = VllmStandIn::serving().await;
        let agent = start_vllm_agent(&plane, &vllm).await;
        wait_for("a heartbeat", WAIT, || !plane.heartbeats().is_empty()).await;
        plane.set(|s| s.order = Order::Exit);
        assert_eq!(agent.exit(WAIT).await.unwrap(), Exit::Ordered);
    })
    .await;
}

#[tokio::test]
async fn the_control_plane_away_and_back_gets_the_latest_state_and_nothing_crashes() {
    within(LIMIT, async {
        // Down before the agent starts: registering is retried.
        let mut plane = FakePlane::reserved().await;
        let vllm = VllmStandIn::serving().await;
        let agent = start_vllm_agent(&plane, &vllm).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!agent.task.is_finished());
        plane.up().await;
        wait_for("the register after the outage", WAIT, || {
            plane.registers() == 1
        })
        .await;
        wait_for("a heartbeat", WAIT, || !plane.heartbeats().is_empty()).await;

        // Refusing connections, then answering 503: the agent keeps its state and retries.
        plane.down().await;
        vllm.set(|n| {
            n.running = 4.0;
            n.generation_tokens = 99.0;
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        plane.set(|s| s.mode = PlaneMode::Unavailable);
        plane.up().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!agent.task.is_finished());
        let page = agent.metrics_page().await;
        let failed = page
            .lines()
            .find(|l| l.starts_with("skydeck_agent_reports_total{result=\"failed\"}"))
            .unwrap_or_else(|| panic!("no failed reports counted in\n{page}"));
        assert!(!failed.ends_with(" 0"), "{failed}");
        // While away, the agent's own /metrics still shows the engine's latest numbers.
        assert!(
            page.contains("skydeck_agent_requests_running{engine=\"vllm\"} 4"),
            "{page}"
        );

        plane.set(|s| s.mode = PlaneMode::Up);
        wait_for("the state after the outage", WAIT, || {
            plane.saw(|h| h.engine.requests_running == Some(4.0))
        })
        .await;
        assert_eq!(
            plane.registers(),
            1,
            "a heartbeat is enough; no second register"
        );
        assert_eq!(
            plane
                .last_heartbeat()
                .unwrap()
                .engine
                .generation_tokens_total,
            Some(99.0)
        );
        assert!(!agent.task.is_finished());
        agent.task.abort();
    })
    .await;
}

#[tokio::test]
async fn a_dead_engine_is_reported_and_the_agent_keeps_going() {
    within(LIMIT, async {
        let plane = FakePlane::start().await;
        let mut vllm = VllmStandIn::serving().await;
        let agent = start_vllm_agent(&plane, &vllm).await;
        wait_for("a healthy heartbeat", WAIT, || {
            plane.saw(|h| h.engine.health == EngineHealth::Ok)
        })
        .await;
        vllm.kill().await;
        wait_for("a heartbeat saying the engine is down", WAIT, || {
            plane
                .last_heartbeat()
                .is_some_and(|h| h.engine.health == EngineHealth::Down)
        })
        .await;
        let hb = plane.last_heartbeat().unwrap();
        assert!(hb.engine.detail.is_some());
        assert_eq!(hb.engine.requests_running, None, "unknown, not 0");
        assert!(
            !agent.task.is_finished(),
            "the control plane decides, not the agent"
        );
        assert!(
            agent
                .metrics_page()
                .await
                .contains("skydeck_agent_engine_up{engine=\"vllm\"} 0")
        );
        // Restarted (by hand, say): reported healthy again.
        vllm.ready().await;
        wait_for("a healthy heartbeat again", WAIT, || {
            plane
                .last_heartbeat()
                .is_some_and(|h| h.engine.health == EngineHealth::Ok)
        })
        .await;
        agent.task.abort();
    })
    .await;
}

#[tokio::test]
async fn a_metrics_page_that_does_not_parse_costs_only_its_family() {
    within(LIMIT, async {
        let plane = FakePlane::start().await;
        let vllm = VllmStandIn::serving().await;
        vllm.set(|n| {
            n.broken_running_family = true;
            n.waiting = 5.0;
            n.generation_tokens = 10.0;
        });
        let agent = start_vllm_agent(&plane, &vllm).await;
        wait_for("a heartbeat", WAIT, || plane.heartbeats().len() >= 2).await;
        let hb = plane.last_heartbeat().unwrap();
        assert_eq!(hb.engine.health, EngineHealth::Ok);
        assert_eq!(hb.engine.requests_running, None);
        assert_eq!(hb.engine.requests_waiting, Some(5.0));
        assert_eq!(hb.engine.generation_tokens_total, Some(10.0));
        let detail = hb.engine.detail.clone().unwrap();
        assert!(detail.contains("vllm:num_requests_running"), "{detail}");
        hb.validate().unwrap();
        // Fixed: the field comes back.
        vllm.set(|n| n.broken_running_family = false);
        wait_for("the running count back", WAIT, || {
            plane
                .last_heartbeat()
                .is_some_and(|h| h.engine.requests_running == Some(0.0))
        })
        .await;
        assert!(!agent.task.is_finished());
        agent.task.abort();
    })
    .await;
}

#[tokio::test]
async fn a_refused_token_stops_with_an_error_that_does_not_show_it() {
    within(LIMIT, async {
        let plane = FakePlane::start().await;
        let vllm = VllmStandIn::serving().await;
        let mut cfg = config(&plane.url(), &vllm.url(), Engine::Vllm);
        cfg.token = "someone-elses-token-77".into();
        let err = Running::spawn(Agent::new(cfg).await.unwrap())
            .exit(WAIT)
            .await
            .unwrap_err();
        assert!(matches!(err, AgentError::TokenRefused(_)), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("SKYDECK_AGENT_TOKEN") && text.contains("401"),
            "{text}"
        );
        assert!(!text.contains("someone-elses-token-77"), "{text}");
        assert_eq!(
            plane.state.lock().unwrap().refused,
            1,
            "no retry of a refused token"
        );
    })
    .await;
}

#[tokio::test]
async fn a_node_the_control_plane_no_longer_has_exits_cleanly() {
    within(LIMIT, async {
        let plane = FakePlane::start().await;
        plane.set(|s| s.mode = PlaneMode::Gone);
        let vllm = VllmStandIn::serving().await;
        let agent = start_vllm_agent(&plane, &vllm).await;
        assert_eq!(agent.exit(WAIT).await.unwrap(), Exit::NodeGone);
    })
    .await;
}

#[tokio::test]
async fn a_gpu_read_that_never_returns_does_not_stall_the_heartbeats() {
    within(LIMIT, async {
        let plane = FakePlane::start().await;
        let vllm = VllmStandIn::serving().await;
        let mut first = true;
        // The first read answers an H100; every later one hangs, as a sick GPU's NVML call does.
        let gpu = GpuReader::with_reader(Duration::from_millis(150), move || {
            if first {
                first = false;
                return GpuState {
                    gpus: vec![GpuReport {
                        index: 0,
                        uuid: Some("GPU-6f1f2a9e".into()),
                        name: Some("NVIDIA H100 80GB HBM3".into()),
                        utilization_percent: Some(87.0),
                        memory_used_bytes: Some(7.0e10),
                        memory_total_bytes: Some(8.0e10),
                        temperature_celsius: Some(61.0),
                        power_watts: Some(540.0),
                    }],
                    error: None,
                };
            }
            std::thread::sleep(Duration::from_secs(3600));
            GpuState::default()
        });
        let cfg = config(&plane.url(), &vllm.url(), Engine::Vllm);
        let agent = Running::spawn(Agent::with_gpu(cfg, gpu).await.unwrap());
        wait_for("five heartbeats", WAIT, || plane.heartbeats().len() >= 5).await;
        let beats = plane.heartbeats();
        assert_eq!(beats[0].gpus.len(), 1);
        assert_eq!(beats[0].gpus[0].utilization_percent, Some(87.0));
        let page_during = agent.metrics_page().await;
        assert!(
            page_during.contains("skydeck_agent_engine_up"),
            "{page_during}"
        );
        let last = beats.last().unwrap();
        assert!(last.gpus.is_empty());
        assert!(last.gpu_error.is_some(), "{last:?}");
        agent.task.abort();
    })
    .await;
}
