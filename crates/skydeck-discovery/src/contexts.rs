//! Which Kubernetes contexts to watch and with which credentials ([`ContextSet`]).
//!
//! The kubeconfig files are read and merged the way kubectl merges `$KUBECONFIG` (first file
//! to define a name wins, missing files are skipped), through kube's own loader, so exec
//! plugins, `token`, `tokenFile` and client certificates all work as they do for kubectl; no
//! subprocess is started here (exec plugins run when a request needs a credential). A context
//! SkyPilot allows but the kubeconfig lacks is not an error for the others: it is kept as
//! *unavailable* with the reason, reported by `status()` / `samples()` and logged once.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use secrecy::ExposeSecret;

use crate::error::Error;

/// The pseudo-context SkyPilot uses for the cluster it runs in.
pub const IN_CLUSTER: &str = "in-cluster";

/// The contexts discovery watches, each with its credentials or the reason it cannot be used.
#[derive(Clone)]
pub struct ContextSet {
    pub(crate) entries: Vec<ContextEntry>,
    pub(crate) files: Vec<PathBuf>,
}

#[derive(Clone)]
pub(crate) struct ContextEntry {
    pub(crate) name: String,
    pub(crate) source: ContextSource,
}

#[derive(Clone)]
pub(crate) enum ContextSource {
    /// A usable client configuration.
    Ready {
        config: Box<kube::Config>,
        /// Static credentials of this context, removed from any error text we keep or log.
        secrets: Vec<String>,
    },
    /// Why the context cannot be watched (credential-free text).
    Unavailable(String),
}

impl std::fmt::Debug for ContextSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut l = f.debug_list();
        for e in &self.entries {
            match &e.source {
                ContextSource::Ready { config, .. } => {
                    l.entry(&format_args!("{} ({})", e.name, config.cluster_url))
                }
                ContextSource::Unavailable(why) => {
                    l.entry(&format_args!("{} (unavailable: {why})", e.name))
                }
            };
        }
        l.finish()
    }
}

/// The kubeconfig files kubectl would read: `$KUBECONFIG` (a path list, `:`-separated on
/// Unix) when set and not empty, else `~/.kube/config`. Given as inputs so that tests never
/// read the real `~/.kube`.
pub fn default_kubeconfig_paths(kubeconfig_env: Option<&str>, home: Option<&Path>) -> Vec<PathBuf> {
    if let Some(k) = kubeconfig_env.filter(|k| !k.trim().is_empty()) {
        return std::env::split_paths(k)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
    }
    home.map(|h| vec![h.join(".kube").join("config")])
        .unwrap_or_default()
}

impl ContextSet {
    /// Loads the contexts named in `wanted` (or the current context when `wanted` is empty)
    /// from the kubeconfig files `kubeconfig_paths`, merged in order (first wins).
    ///
    /// `in-cluster`, when wanted and not defined by the kubeconfig, uses the pod's service
    /// account as SkyPilot does (`KUBERNETES_SERVICE_HOST` and the mounted token).
    ///
    /// # Errors
    ///
    /// [`Error::ReadKubeconfig`] when a file exists but cannot be read, and
    /// [`Error::ParseKubeconfig`] when one does not parse; a wanted context that is missing or
    /// whose credentials cannot be loaded is not an error but an unavailable entry.
    pub fn load(kubeconfig_paths: &[PathBuf], wanted: &[String]) -> Result<ContextSet, Error> {
        let mut merged = Kubeconfig::default();
        let mut files = Vec::new();
        for path in kubeconfig_paths
            .iter()
            .filter(|p| !p.as_os_str().is_empty())
        {
            if !path.exists() {
                // kubectl skips listed files that do not exist.
                continue;
            }
            let one = Kubeconfig::read_from(path).map_err(|e| kubeconfig_error(path, e))?;
            merged = merged.merge(one).map_err(|e| kubeconfig_error(path, e))?;
            files.push(path.clone());
        }
        let mut names: Vec<String> = Vec::new();
        if wanted.is_empty() {
            names.extend(merged.current_context.clone().filter(|c| !c.is_empty()));
        } else {
            for w in wanted {
                if !names.contains(w) {
                    names.push(w.clone());
                }
            }
        }
        let entries = names
            .into_iter()
            .map(|name| {
                let source = source_of(&merged, &files, &name);
                ContextEntry { name, source }
            })
            .collect();
        Ok(ContextSet { entries, files })
    }

    /// The names of every context, usable or not, in the order given.
    pub fn names(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.name.clone()).collect()
    }

    /// The contexts that cannot be watched, with the reason.
    pub fn unavailable(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .filter_map(|e| match &e.source {
                ContextSource::Unavailable(why) => Some((e.name.clone(), why.clone())),
                ContextSource::Ready { .. } => None,
            })
            .collect()
    }

    /// The kubeconfig files that were read (listed files that do not exist are skipped).
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

fn files_text(files: &[PathBuf]) -> String {
    if files.is_empty() {
        "no kubeconfig file found".to_string()
    } else {
        format!(
            "files {}",
            files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

fn source_of(merged: &Kubeconfig, files: &[PathBuf], name: &str) -> ContextSource {
    if !merged.contexts.iter().any(|c| c.name == name) {
        if name == IN_CLUSTER && std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
            return match kube::Config::incluster() {
                Ok(config) => ContextSource::Ready {
                    config: Box::new(config),
                    secrets: Vec::new(),
                },
                Err(e) => ContextSource::Unavailable(format!(
                    "context {name}: the in-cluster service account cannot be used: {e}"
                )),
            };
        }
        return ContextSource::Unavailable(format!(
            "context {name} is not in the kubeconfig ({})",
            files_text(files)
        ));
    }
    let options = KubeConfigOptions {
        context: Some(name.to_string()),
        ..Default::default()
    };
    // The loader is async in signature only (it reads files and builds structs), so it can be
    // driven here without a runtime; exec plugins run later, per request.
    match futures::executor::block_on(kube::Config::from_custom_kubeconfig(
        merged.clone(),
        &options,
    )) {
        Ok(config) => {
            let mut secrets = Vec::new();
            if let Some(t) = &config.auth_info.token {
                secrets.push(t.expose_secret().to_string());
            }
            if let Some(p) = &config.auth_info.password {
                secrets.push(p.expose_secret().to_string());
            }
            secrets.retain(|s| s.len() >= 4);
            ContextSource::Ready {
                config: Box::new(config),
                secrets,
            }
        }
        Err(e) => ContextSource::Unavailable(format!(
            "context {name} cannot be loaded from the kubeconfig ({}): {}",
            files_text(files),
            kubeconfig_reason(&e)
        )),
    }
}

/// Text of a per-context loading error; parse errors (which can quote values) are reduced to
/// their position.
fn kubeconfig_reason(e: &KubeconfigError) -> String {
    match e {
        KubeconfigError::Parse(p) => format!("does not parse{}", location(p)),
        other => crate::refresh::error_chain(other),
    }
}

fn location(e: &serde_saphyr::Error) -> String {
    e.without_snippet()
        .location()
        .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
        .unwrap_or_default()
}

fn kubeconfig_error(path: &Path, e: KubeconfigError) -> Error {
    match e {
        KubeconfigError::ReadConfig(io, _) => Error::ReadKubeconfig {
            path: path.to_path_buf(),
            reason: io.to_string(),
        },
        KubeconfigError::Parse(p) => Error::ParseKubeconfig {
            path: path.to_path_buf(),
            location: location(&p),
        },
        KubeconfigError::KindMismatch | KubeconfigError::ApiVersionMismatch => {
            Error::ParseKubeconfig {
                path: path.to_path_buf(),
                location: " (its kind or apiVersion differs from the files before it)".into(),
            }
        }
        _ => Error::ParseKubeconfig {
            path: path.to_path_buf(),
            location: String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KC: &str = "apiVersion: v1\nkind: Config\ncurrent-context: a\n\
clusters:\n- name: ca\n  cluster: {server: 'https://10.0.0.1:6443', insecure-skip-tls-verify: true}\n\
- name: cb\n  cluster: {server: 'http://127.0.0.1:1'}\n\
users:\n- name: ua\n  user: {token: supersecrettoken}\n\
contexts:\n- name: a\n  context: {cluster: ca, user: ua}\n- name: b\n  context: {cluster: cb, user: ua}\n\
- name: broken\n  context: {cluster: missing, user: ua}\n";

    fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn current_context_when_nothing_wanted() {
        let d = tempfile::tempdir().unwrap();
        let p = file(d.path(), "kc", KC);
        let set = ContextSet::load(&[p], &[]).unwrap();
        assert_eq!(set.names(), ["a"]);
        assert!(set.unavailable().is_empty());
        assert!(!format!("{set:?}").contains("supersecret"));
    }

    #[test]
    fn missing_context_is_unavailable_not_an_error() {
        let d = tempfile::tempdir().unwrap();
        let p = file(d.path(), "kc", KC);
        let wanted = ["b", "nope", "a", "b", "broken"].map(String::from);
        let set = ContextSet::load(&[d.path().join("absent"), p.clone()], &wanted).unwrap();
        assert_eq!(set.names(), ["b", "nope", "a", "broken"]);
        assert_eq!(set.files(), std::slice::from_ref(&p));
        let un = set.unavailable();
        assert_eq!(un.len(), 2, "{un:?}");
        assert_eq!(un[0].0, "nope");
        assert!(
            un[0]
                .1
                .contains("context nope is not in the kubeconfig (files ")
                && un[0].1.contains(&p.display().to_string()),
            "{}",
            un[0].1
        );
        assert_eq!(un[1].0, "broken");
        assert!(!un[1].1.contains("supersecret"), "{}", un[1].1);
    }

    #[test]
    fn first_file_wins() {
        let d = tempfile::tempdir().unwrap();
        let first = file(
            d.path(),
            "one",
            "apiVersion: v1\nkind: Config\nclusters:\n- name: ca\n  cluster: {server: 'https://first:1'}\n\
             contexts:\n- name: a\n  context: {cluster: ca, user: u}\nusers:\n- name: u\n  user: {token: t1234}\n",
        );
        let second = file(d.path(), "two", KC);
        let set = ContextSet::load(&[first, second], &["a".into(), "b".into()]).unwrap();
        let ContextSource::Ready { config, secrets } = &set.entries[0].source else {
            panic!("a unavailable")
        };
        assert_eq!(config.cluster_url.to_string(), "https://first:1/");
        assert_eq!(secrets, &["t1234".to_string()]);
        assert!(matches!(set.entries[1].source, ContextSource::Ready { .. }));
    }

    #[test]
    fn unparsable_kubeconfig_names_the_file_not_the_content() {
        let d = tempfile::tempdir().unwrap();
        let p = file(
            d.path(),
            "bad",
            "users:\n- name: u\n  user: {token: leakedtoken\ncontexts: [\n",
        );
        let e = ContextSet::load(std::slice::from_ref(&p), &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&p.display().to_string()) && e.contains("does not parse"),
            "{e}"
        );
        assert!(!e.contains("leakedtoken"), "{e}");
        let p = file(d.path(), "shape", "clusters: 12\n");
        let e = ContextSet::load(std::slice::from_ref(&p), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains(&p.display().to_string()), "{e}");
    }

    #[test]
    fn default_paths_follow_kubectl() {
        let home = Path::new("/home/u");
        assert_eq!(
            default_kubeconfig_paths(Some("/a:/b::/c"), Some(home)),
            [
                PathBuf::from("/a"),
                PathBuf::from("/b"),
                PathBuf::from("/c")
            ]
        );
        assert_eq!(
            default_kubeconfig_paths(Some(" "), Some(home)),
            [PathBuf::from("/home/u/.kube/config")]
        );
        assert!(default_kubeconfig_paths(None, None).is_empty());
    }
}
