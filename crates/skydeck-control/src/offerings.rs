//! What a node may be launched on: providers, their regions, their GPUs and whether they sell
//! spot capacity. This table is the one source of truth for validation, for the OpenAPI
//! document's enums and for the test that loads every allowed task with SkyPilot's own loader.
//!
//! Names are SkyPilot's (`A100-80GB`, `us-central1`, `k8s`). The lists are the common GPU
//! regions of each provider, not every region it has: a request outside them is far more often a
//! typo than a deliberate choice, and SkyPilot would only fail it minutes later, after the
//! optimizer ran. Kubernetes "regions" are kubeconfig contexts, which belong to the deployment,
//! so they are checked for shape (and against `--kubernetes-context` when that is given).

use serde::Serialize;

/// A cloud (or Kubernetes) SkyPilot can launch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Amazon Web Services.
    Aws,
    /// Google Cloud.
    Gcp,
    /// Microsoft Azure.
    Azure,
    /// Lambda Cloud.
    Lambda,
    /// Oracle Cloud Infrastructure.
    Oci,
    /// A Kubernetes cluster SkyPilot can reach (region = kubeconfig context).
    Kubernetes,
}

/// One provider's offerings.
#[derive(Debug, Serialize)]
pub struct Offering {
    /// The provider.
    pub provider: Provider,
    /// Known regions (empty for Kubernetes: contexts are checked for shape).
    pub regions: &'static [&'static str],
    /// GPU names SkyPilot knows for this provider.
    pub gpus: &'static [&'static str],
    /// Whether SkyPilot can request spot (preemptible) capacity here.
    pub spot: bool,
}

/// GPU counts a node may ask for (`A100:2`).
pub const GPU_COUNTS: [u32; 5] = [1, 2, 4, 8, 16];

/// GPU counts SkyPilot can place on one node where they are fewer than [`GPU_COUNTS`]:
/// GCP attaches these GPUs only in the listed counts (rules in SkyPilot's GCP cloud, not in its
/// catalog; a real launch of another count fails in the optimizer). Found by loading every
/// generated task with SkyPilot 0.14.1 (`crates/skydeck-control/tests/skypilot_loader.rs`).
const COUNT_LIMITS: &[(Provider, &str, &[u32])] = &[
    (Provider::Gcp, "A100-80GB", &[1, 2, 4, 8]),
    (Provider::Gcp, "H100", &[1, 2, 4, 8]),
    (Provider::Gcp, "H200", &[8]),
    (Provider::Gcp, "L4", &[1, 2, 4, 8]),
    (Provider::Gcp, "V100", &[1, 2, 4, 8]),
    (Provider::Gcp, "T4", &[1, 2, 4]),
];

/// The GPU counts `provider` offers for `gpu` (a name from its offering).
pub fn gpu_counts(provider: Provider, gpu: &str) -> &'static [u32] {
    COUNT_LIMITS
        .iter()
        .find(|(p, g, _)| *p == provider && *g == gpu)
        .map_or(&GPU_COUNTS[..], |(_, _, c)| c)
}

/// Every provider, in a stable order.
pub const PROVIDERS: [Provider; 6] = [
    Provider::Aws,
    Provider::Gcp,
    Provider::Azure,
    Provider::Lambda,
    Provider::Oci,
    Provider::Kubernetes,
];

impl Provider {
    /// The lowercase name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Gcp => "gcp",
            Provider::Azure => "azure",
            Provider::Lambda => "lambda",
            Provider::Oci => "oci",
            Provider::Kubernetes => "kubernetes",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Provider> {
        PROVIDERS.into_iter().find(|p| p.as_str() == s)
    }

    /// The name SkyPilot's `infra:` field uses.
    pub fn infra_name(self) -> &'static str {
        match self {
            Provider::Kubernetes => "k8s",
            other => other.as_str(),
        }
    }

    /// This provider's offerings.
    pub fn offering(self) -> &'static Offering {
        OFFERINGS
            .iter()
            .find(|o| o.provider == self)
            .expect("every provider has an offering")
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The table.
pub static OFFERINGS: [Offering; 6] = [
    Offering {
        provider: Provider::Aws,
        regions: &[
            "us-east-1",
            "us-east-2",
            "us-west-1",
            "us-west-2",
            "ca-central-1",
            "eu-west-1",
            "eu-west-2",
            "eu-central-1",
            "eu-north-1",
            "ap-northeast-1",
            "ap-south-1",
            "ap-southeast-1",
            "ap-southeast-2",
            "sa-east-1",
        ],
        gpus: &[
            "A100",
            "A100-80GB",
            "H100",
            "H200",
            "L4",
            "L40S",
            "A10G",
            "V100",
            "T4",
        ],
        spot: true,
    },
    Offering {
        provider: Provider::Gcp,
        regions: &[
            "us-central1",
            "us-east1",
            "us-east4",
            "us-east5",
            "us-west1",
            "us-west4",
            "europe-west1",
            "europe-west4",
            "asia-east1",
            "asia-northeast1",
            "asia-southeast1",
        ],
        gpus: &["A100", "A100-80GB", "H100", "H200", "L4", "V100", "T4"],
        spot: true,
    },
    Offering {
        provider: Provider::Azure,
        regions: &[
            "eastus",
            "eastus2",
            "westus2",
            "westus3",
            "southcentralus",
            "northeurope",
            "westeurope",
            "uksouth",
            "japaneast",
        ],
        gpus: &["A100", "A100-80GB", "H100", "A10", "V100", "T4"],
        spot: true,
    },
    Offering {
        provider: Provider::Lambda,
        regions: &[
            "us-east-1",
            "us-east-3",
            "us-west-1",
            "us-west-2",
            "us-west-3",
            "us-south-1",
            "us-midwest-1",
            "europe-central-1",
            "asia-northeast-1",
        ],
        gpus: &["A100", "A100-80GB", "H100", "A10", "A6000", "V100"],
        spot: false,
    },
    Offering {
        provider: Provider::Oci,
        regions: &[
            "us-ashburn-1",
            "us-phoenix-1",
            "us-sanjose-1",
            "eu-frankfurt-1",
            "uk-london-1",
            "ap-tokyo-1",
        ],
        gpus: &["A100", "A100-80GB", "H100", "A10", "V100"],
        spot: false,
    },
    Offering {
        provider: Provider::Kubernetes,
        regions: &[],
        gpus: &[
            "A100",
            "A100-80GB",
            "H100",
            "H200",
            "L4",
            "L40S",
            "A10G",
            "A10",
            "V100",
            "T4",
        ],
        spot: false,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_has_one_offering() {
        for p in PROVIDERS {
            assert_eq!(OFFERINGS.iter().filter(|o| o.provider == p).count(), 1);
            assert_eq!(Provider::parse(p.as_str()), Some(p));
        }
    }
}
