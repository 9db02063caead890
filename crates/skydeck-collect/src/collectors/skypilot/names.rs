//! The cluster name SkyPilot gives a managed job's cluster, to join jobs with cost records.

use md5::{Digest, Md5};

/// Length of the task-name prefix (`sky/jobs/constants.py:JOBS_CLUSTER_NAME_PREFIX_LENGTH`).
const PREFIX_LENGTH: usize = 25;
/// Characters of the name hash kept (`sky/utils/common_utils.py:CLUSTER_NAME_HASH_LENGTH`).
const HASH_LENGTH: usize = 2;

/// `sky.jobs.utils.generate_managed_job_cluster_name(task_name, job_id)`: the task name
/// lower-cased with `.`/`_` as `-`, cut to 25 characters with a base-36 md5 suffix when longer,
/// then `-<job_id>`.
pub fn managed_job_cluster_name(task_name: &str, job_id: i64) -> String {
    let on_cloud: String = task_name
        .chars()
        .map(|c| if c == '.' || c == '_' { '-' } else { c })
        .collect::<String>()
        .to_lowercase();
    let base = if on_cloud.chars().count() <= PREFIX_LENGTH {
        on_cloud
    } else {
        let keep = PREFIX_LENGTH - HASH_LENGTH - 1;
        let cut: String = on_cloud.chars().take(keep).collect();
        let cut = cut.trim_end_matches('-');
        let digest = Md5::digest(task_name.as_bytes());
        let hash = base36(u128::from_be_bytes(digest.into()));
        format!("{cut}-{}", &hash[..HASH_LENGTH.min(hash.len())])
    };
    format!("{base}-{job_id}")
}

fn base36(mut n: u128) -> String {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    if n == 0 {
        return "0".into();
    }
    let mut out = Vec::new();
    while n > 0 {
        out.push(ALPHABET[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_skypilot() {
        // Values printed by skypilot 0.14.1's generate_managed_job_cluster_name.
        assert_eq!(
            managed_job_cluster_name("llama-finetune-3", 12),
            "llama-finetune-3-12"
        );
        assert_eq!(
            managed_job_cluster_name("Qwen_GRPO.run", 3),
            "qwen-grpo-run-3"
        );
        assert_eq!(
            managed_job_cluster_name("a-very-long-task-name-for-training_llama.v2", 7),
            "a-very-long-task-name-e3-7"
        );
    }
}
