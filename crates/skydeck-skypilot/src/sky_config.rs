//! The Kubernetes contexts SkyPilot may use, read from the SkyPilot config file.
//!
//! SkyPilot lists them under `kubernetes.allowed_contexts`, and each workspace may add its own
//! under `workspaces.<name>.kubernetes.allowed_contexts`
//! (<https://docs.skypilot.co/en/latest/reference/config.html>). Discovery watches the union,
//! deduplicated, in the order they appear (global list first, then workspaces in file order).
//! The file is found the way [`crate::target`] finds it: `$SKYPILOT_GLOBAL_CONFIG`, else
//! `~/.sky/config.yaml`; both the environment and the home directory are inputs so tests never
//! read the real `~/.sky`. A missing file means no contexts. A file that does not parse is an
//! error naming the file and the key; no value from the file is ever quoted (the same file may
//! hold `api_server.service_account_token`).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::target::ENV_CONFIG;

/// The SkyPilot config file: `$SKYPILOT_GLOBAL_CONFIG` when set and not empty, else
/// `<home>/.sky/config.yaml`; `None` when neither is known.
pub fn config_path(env: &dyn Fn(&str) -> Option<String>, home: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = env(ENV_CONFIG).filter(|s| !s.is_empty()) {
        return Some(PathBuf::from(p));
    }
    home.map(|h| h.join(".sky").join("config.yaml"))
}

/// The Kubernetes contexts allowed by the SkyPilot config at `path`: `kubernetes.allowed_contexts`
/// followed by every `workspaces.<name>.kubernetes.allowed_contexts`, deduplicated, in order.
/// A missing (or empty) file yields an empty list.
///
/// # Errors
///
/// [`Error::Config`] when the file cannot be read, is not YAML, or one of those keys is not a
/// list of context names; the message names the file and the key.
pub fn allowed_kubernetes_contexts(path: &Path) -> Result<Vec<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Config {
                message: format!("cannot read SkyPilot config {}: {e}", path.display()),
            });
        }
    };
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let doc: Value = serde_saphyr::from_str(&text).map_err(|e| {
        // Only the position: serde messages can quote the offending value, and this file may
        // hold a service-account token.
        let at = e
            .without_snippet()
            .location()
            .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
            .unwrap_or_default();
        Error::Config {
            message: format!(
                "SkyPilot config {} is not valid YAML{at}; expected a mapping with e.g. \
                 `kubernetes.allowed_contexts: [ctx-a, ctx-b]`",
                path.display()
            ),
        }
    })?;
    let mut out: Vec<String> = Vec::new();
    let root = match &doc {
        Value::Null => return Ok(out),
        Value::Object(m) => m,
        other => {
            return Err(Error::Config {
                message: format!(
                    "SkyPilot config {} is {}, expected a mapping at the top level",
                    path.display(),
                    kind(other)
                ),
            });
        }
    };
    let mut add = |key: &str, v: Option<&Value>| -> Result<()> {
        for name in context_list(path, key, v)? {
            if !out.contains(&name) {
                out.push(name);
            }
        }
        Ok(())
    };
    let kube = section(path, "kubernetes", root.get("kubernetes"))?;
    add(
        "kubernetes.allowed_contexts",
        kube.and_then(|k| k.get("allowed_contexts")),
    )?;
    if let Some(ws) = section(path, "workspaces", root.get("workspaces"))? {
        for (name, w) in ws {
            let key = format!("workspaces.{name}");
            let Some(w) = section(path, &key, Some(w))? else {
                continue;
            };
            let kube_key = format!("{key}.kubernetes");
            let kube = section(path, &kube_key, w.get("kubernetes"))?;
            add(
                &format!("{kube_key}.allowed_contexts"),
                kube.and_then(|k| k.get("allowed_contexts")),
            )?;
        }
    }
    Ok(out)
}

/// A mapping under `key`, or `None` when absent or null.
fn section<'a>(
    path: &Path,
    key: &str,
    v: Option<&'a Value>,
) -> Result<Option<&'a serde_json::Map<String, Value>>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(other) => Err(Error::Config {
            message: format!(
                "SkyPilot config {}: `{key}` is {}, expected a mapping",
                path.display(),
                kind(other)
            ),
        }),
    }
}

fn context_list(path: &Path, key: &str, v: Option<&Value>) -> Result<Vec<String>> {
    let bad = |what: String| Error::Config {
        message: format!(
            "SkyPilot config {}: `{key}` {what}, expected a list of Kubernetes context names",
            path.display()
        ),
    };
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                Value::String(_) => Err(bad(format!("has an empty name at index {i}"))),
                other => Err(bad(format!("has {} at index {i}", kind(other)))),
            })
            .collect(),
        Some(other) => Err(bad(format!("is {}", kind(other)))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.yaml");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    #[test]
    fn global_then_workspaces_deduplicated_in_order() {
        let (_d, p) = write(
            "kubernetes:\n  allowed_contexts: [gke-a, eks-b]\n\
             workspaces:\n  team-x:\n    kubernetes:\n      allowed_contexts:\n        - eks-b\n        - onprem-c\n\
             \x20 team-y:\n    gcp: {}\n  team-z:\n    kubernetes:\n      allowed_contexts: [kind-d, gke-a]\n\
             api_server:\n  service_account_token: sky_secret\n",
        );
        assert_eq!(
            allowed_kubernetes_contexts(&p).unwrap(),
            ["gke-a", "eks-b", "onprem-c", "kind-d"]
        );
    }

    #[test]
    fn missing_or_empty_file_means_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            allowed_kubernetes_contexts(&dir.path().join("nope.yaml"))
                .unwrap()
                .is_empty()
        );
        let (_d, p) = write("\n");
        assert!(allowed_kubernetes_contexts(&p).unwrap().is_empty());
        let (_d, p) = write("api_server:\n  endpoint: http://x\n");
        assert!(allowed_kubernetes_contexts(&p).unwrap().is_empty());
    }

    #[test]
    fn bad_shapes_name_file_and_key_without_values() {
        let (_d, p) = write("kubernetes:\n  allowed_contexts: sky_secret_value\n");
        let e = allowed_kubernetes_contexts(&p).unwrap_err().to_string();
        assert!(
            e.contains("`kubernetes.allowed_contexts` is a string"),
            "{e}"
        );
        assert!(e.contains(&p.display().to_string()), "{e}");
        assert!(!e.contains("sky_secret_value"), "{e}");

        let (_d, p) =
            write("workspaces:\n  w1:\n    kubernetes:\n      allowed_contexts: [a, 3]\n");
        let e = allowed_kubernetes_contexts(&p).unwrap_err().to_string();
        assert!(
            e.contains("`workspaces.w1.kubernetes.allowed_contexts` has a number at index 1"),
            "{e}"
        );

        let (_d, p) = write("kubernetes: [a]\n");
        let e = allowed_kubernetes_contexts(&p).unwrap_err().to_string();
        assert!(
            e.contains("`kubernetes` is a list, expected a mapping"),
            "{e}"
        );

        let (_d, p) = write("kubernetes:\n  allowed_contexts: [a\napi_server: {token: sky_x}\n");
        let e = allowed_kubernetes_contexts(&p).unwrap_err().to_string();
        assert!(e.contains("is not valid YAML"), "{e}");
        assert!(!e.contains("sky_x"), "{e}");
    }

    #[test]
    fn path_from_env_then_home() {
        let env = |k: &str| (k == ENV_CONFIG).then(|| "/etc/sky.yaml".to_string());
        assert_eq!(
            config_path(&env, Some(Path::new("/home/u"))),
            Some(PathBuf::from("/etc/sky.yaml"))
        );
        let none = |_: &str| None;
        assert_eq!(
            config_path(&none, Some(Path::new("/home/u"))),
            Some(PathBuf::from("/home/u/.sky/config.yaml"))
        );
        assert_eq!(config_path(&none, None), None);
    }
}
