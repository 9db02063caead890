//! The discovery crate's error type: what an operator must fix before discovery can start.
//!
//! Failures of a running context (a hung, 403ing or vanished API server) are not errors of
//! this type: they are recorded per context, reported by `status()` / `samples()` and logged,
//! while the other contexts go on. No variant ever carries a token or other credential; the
//! kubeconfig parse error names the file and the position only, because the parser's messages
//! can quote the offending value.

use std::path::PathBuf;

/// Errors from loading contexts or starting discovery.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A kubeconfig file exists but cannot be read.
    #[error("cannot read kubeconfig {path}: {reason}")]
    ReadKubeconfig {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// A kubeconfig file is not a kubeconfig (YAML syntax, wrong shape, or files that cannot
    /// be merged).
    #[error(
        "kubeconfig {path} does not parse{location}; expected a kubeconfig YAML document \
         (apiVersion: v1, kind: Config, clusters, contexts, users)"
    )]
    ParseKubeconfig {
        /// The file.
        path: PathBuf,
        /// ` (line L, column C)` when known, else empty.
        location: String,
    },
    /// A discovery option is out of range or inconsistent.
    #[error("invalid discovery option {option}: {message}")]
    Option {
        /// The option's name (`refresh_interval`, `proxy_base`, …).
        option: &'static str,
        /// What is wrong and what was expected.
        message: String,
    },
    /// `Discovery::start` was called outside a tokio runtime.
    #[error("discovery needs a tokio runtime (Discovery::start was called outside one)")]
    NoRuntime,
}
