//! [`Credentials`]: resolves [`CredentialSpec`]s in order (environment, file, AWS Secrets
//! Manager) and caches the results for the run.
//!
//! Two caches, both filled at most once per key even under concurrent lookups (a
//! [`tokio::sync::OnceCell`] per key): resolved specs (so a second `get` neither reads again
//! nor warns again) and fetched AWS secrets (so two specs naming fields of one JSON secret cost
//! one call). Failures are not cached: a timed-out lookup may be retried by the caller. The AWS
//! client itself is a third lazily filled cell, touched only by a spec that gets as far as its
//! AWS secret.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::io::AsyncReadExt;
use tokio::sync::OnceCell;
use tracing::{debug, warn};

use crate::aws::{AwsClient, FetchFailure, Fetched, LoadFailure};
use crate::error::Error;
use crate::source::{LookedIn, Miss, MissReason, Source};
use crate::spec::{AwsSecret, CredentialSpec};

/// Default bound on loading the AWS configuration and on each Secrets Manager call.
pub const DEFAULT_AWS_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest credential file read (Secrets Manager's own limit for a secret value). Also keeps a
/// wrong path such as `/dev/zero` from reading forever.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// How to reach AWS Secrets Manager. Everything left `None` comes from the standard AWS chains
/// (environment, profile, IRSA web identity, container/instance metadata).
#[derive(Debug, Clone)]
pub struct AwsOptions {
    /// Region to read secrets from; `None`: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile,
    /// then the instance metadata service.
    pub region: Option<String>,
    /// Bound on loading the AWS configuration and on each `GetSecretValue` call, retries and
    /// credential resolution included.
    pub timeout: Duration,
    /// Endpoint override, e.g. a VPC endpoint or a local test server. Same effect as
    /// `AWS_ENDPOINT_URL_SECRETS_MANAGER`, which the SDK also reads by itself; set here, it
    /// wins over the environment.
    pub endpoint_url: Option<String>,
    /// Fixed credentials instead of the credential chain: for tests against a local server
    /// (which must not fall through to the chain and its metadata-service probes). Production
    /// leaves this `None`.
    pub static_credentials: Option<StaticCredentials>,
}

impl Default for AwsOptions {
    fn default() -> Self {
        AwsOptions {
            region: None,
            timeout: DEFAULT_AWS_TIMEOUT,
            endpoint_url: None,
            static_credentials: None,
        }
    }
}

/// An AWS access key pair used instead of the credential chain (see
/// [`AwsOptions::static_credentials`]).
#[derive(Debug, Clone)]
pub struct StaticCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: SecretString,
}

/// A credential's value and where it came from.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The value, trimmed of leading and trailing whitespace.
    pub value: SecretString,
    /// Where it came from (for messages; never the value).
    pub source: Source,
}

/// How environment variables are read: the process environment, or a test's map.
type EnvLookup = dyn Fn(&str) -> Option<OsString> + Send + Sync;

/// Looks up credentials and remembers them for the run. Cheap to clone (the caches are
/// shared).
#[derive(Clone)]
pub struct Credentials {
    inner: Arc<Inner>,
}

struct Inner {
    aws_options: AwsOptions,
    env: Box<EnvLookup>,
    resolved: Mutex<HashMap<CredentialSpec, Arc<OnceCell<Option<Resolved>>>>>,
    aws_client: OnceCell<AwsClient>,
    aws_secrets: Mutex<HashMap<String, Arc<OnceCell<Fetched>>>>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("aws_options", &self.inner.aws_options)
            .field("aws_client_loaded", &self.inner.aws_client.initialized())
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Credentials read from the process environment, files, and AWS as configured by
    /// `aws`. Does no I/O: nothing is read before the first [`get`](Self::get).
    pub fn new(aws: AwsOptions) -> Self {
        Self::with_env(aws, |name| std::env::var_os(name))
    }

    /// Like [`new`](Self::new), but environment variables are read through `lookup` instead of
    /// the process environment (for tests, which cannot set process variables safely while
    /// other tests run, and for embedding). Only the spec's variables go through `lookup`; the
    /// AWS SDK reads its own (`AWS_REGION`, …) from the process environment.
    pub fn with_env(
        aws: AwsOptions,
        lookup: impl Fn(&str) -> Option<OsString> + Send + Sync + 'static,
    ) -> Self {
        Credentials {
            inner: Arc::new(Inner {
                aws_options: aws,
                env: Box::new(lookup),
                resolved: Mutex::default(),
                aws_client: OnceCell::new(),
                aws_secrets: Mutex::default(),
            }),
        }
    }

    /// Looks up one credential: each of `spec.env` in order, then `spec.file`, then
    /// `spec.aws_secret`; the first non-empty value wins (values are trimmed; an empty or
    /// whitespace-only value counts as missing). Cached: a second call with an equal spec
    /// returns the first result without reading anything.
    ///
    /// Found nowhere: `Ok(None)` and one `WARN` line naming every place looked for an optional
    /// credential; [`Error::Missing`] for a required one (a required spec never gives
    /// `Ok(None)`).
    ///
    /// A secret that does not exist in the AWS region asked (including one kept in another
    /// region: secrets are regional and the SDK asks one region) is "not found" like any other
    /// miss: a warning for an optional credential, an error naming the region for a required
    /// one.
    ///
    /// # Errors
    ///
    /// [`Error::Missing`] for a required credential found nowhere; and, even for an optional
    /// one, any misconfiguration met on the way: an unreadable or oversized file
    /// ([`Error::File`], [`Error::FileTooLarge`]), a non-UTF-8 variable
    /// ([`Error::EnvNotUnicode`]), no AWS region ([`Error::NoAwsRegion`]), an AWS error other
    /// than "not found" ([`Error::Aws`]), a timeout ([`Error::AwsTimeout`],
    /// [`Error::AwsConfigTimeout`]), or a JSON secret without the named string field
    /// ([`Error::AwsSecretFormat`]).
    pub async fn get(&self, spec: &CredentialSpec) -> Result<Option<Resolved>, Error> {
        let cell = {
            let mut map = lock(&self.inner.resolved);
            map.entry(spec.clone()).or_default().clone()
        };
        cell.get_or_try_init(|| self.resolve(spec)).await.cloned()
    }

    async fn resolve(&self, spec: &CredentialSpec) -> Result<Option<Resolved>, Error> {
        let label = spec.label;
        let mut looked = Vec::new();
        let mut miss = |source: Source, reason: MissReason| looked.push(Miss { source, reason });

        for name in &spec.env {
            let source = Source::Env(name.clone());
            match (self.inner.env)(name) {
                None => miss(source, MissReason::Unset),
                Some(raw) => {
                    let text = raw.into_string().map_err(|_| Error::EnvNotUnicode {
                        label,
                        name: name.clone(),
                    })?;
                    match non_empty(&text) {
                        Some(value) => return Ok(Some(found(spec, value, source))),
                        None => miss(source, MissReason::Empty),
                    }
                }
            }
        }

        if let Some(path) = &spec.file {
            let source = Source::File(path.clone());
            match read_file(label, path).await? {
                None => miss(source, MissReason::NoSuchFile),
                Some(text) => match non_empty(&text) {
                    Some(value) => return Ok(Some(found(spec, value, source))),
                    None => miss(source, MissReason::Empty),
                },
            }
        }

        if let Some(secret) = &spec.aws_secret {
            let (outcome, region) = self.fetch_aws(label, secret).await?;
            let source = Source::AwsSecretsManager {
                name: secret.name.clone(),
                field: secret.field.clone(),
                region: region.clone(),
            };
            match outcome {
                Fetched::Missing(reason) => miss(source, reason),
                Fetched::Value(text) => {
                    let text = match &secret.field {
                        None => text,
                        Some(field) => {
                            json_field(text.expose_secret(), field).map_err(|problem| {
                                Error::AwsSecretFormat {
                                    label,
                                    secret: secret.clone(),
                                    region,
                                    problem,
                                }
                            })?
                        }
                    };
                    match non_empty(text.expose_secret()) {
                        Some(value) => return Ok(Some(found(spec, value, source))),
                        None => miss(source, MissReason::Empty),
                    }
                }
            }
        }

        let looked_in = LookedIn(looked);
        if spec.required {
            return Err(Error::Missing { label, looked_in });
        }
        warn!(
            credential = label,
            looked_in = %looked_in,
            "Optional credential not found; continuing without it."
        );
        Ok(None)
    }

    /// Reads an AWS secret through the per-run cache, loading the client on first use.
    /// Returns the outcome and the region asked.
    async fn fetch_aws(
        &self,
        label: &'static str,
        secret: &AwsSecret,
    ) -> Result<(Fetched, String), Error> {
        let client = self
            .inner
            .aws_client
            .get_or_try_init(|| AwsClient::load(&self.inner.aws_options))
            .await
            .map_err(|failure| match failure {
                LoadFailure::NoRegion => Error::NoAwsRegion {
                    label,
                    secret: secret.clone(),
                },
                LoadFailure::Timeout(timeout) => Error::AwsConfigTimeout {
                    label,
                    secret: secret.clone(),
                    timeout,
                },
            })?;
        let region = client.region().to_owned();
        let cell = {
            let mut map = lock(&self.inner.aws_secrets);
            map.entry(secret.name.clone()).or_default().clone()
        };
        let fetched = cell
            .get_or_try_init(|| client.fetch(&secret.name))
            .await
            .map_err(|failure| match failure {
                FetchFailure::Timeout(timeout) => Error::AwsTimeout {
                    label,
                    secret: secret.clone(),
                    region: region.clone(),
                    timeout,
                },
                FetchFailure::Aws(message) => Error::Aws {
                    label,
                    secret: secret.clone(),
                    region: region.clone(),
                    message,
                },
                FetchFailure::NotText => Error::AwsSecretFormat {
                    label,
                    secret: secret.clone(),
                    region: region.clone(),
                    problem: "it is a binary secret that is not UTF-8 text".to_owned(),
                },
            })?;
        Ok((fetched.clone(), region))
    }
}

/// Locks a cache map. The maps are only ever touched for an `entry().or_default()`, which
/// cannot leave them inconsistent, so a poisoned lock is safe to use.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The trimmed value, or `None` when it is empty or whitespace only.
fn non_empty(text: &str) -> Option<SecretString> {
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| SecretString::from(trimmed))
}

fn found(spec: &CredentialSpec, value: SecretString, source: Source) -> Resolved {
    debug!(credential = spec.label, source = %source, "Credential resolved.");
    Resolved { value, source }
}

/// Reads a credential file: `Ok(None)` when it does not exist, an error for anything else that
/// stops it being read (a misconfiguration, even for an optional credential).
async fn read_file(label: &'static str, path: &Path) -> Result<Option<String>, Error> {
    let file_error = |source: io::Error| Error::File {
        label,
        path: path.to_owned(),
        source,
    };
    let file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_error(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(file_error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::FileTooLarge {
            label,
            path: path.to_owned(),
            limit: MAX_FILE_BYTES,
        });
    }
    String::from_utf8(bytes).map(Some).map_err(|_| {
        file_error(io::Error::new(
            io::ErrorKind::InvalidData,
            "the file is not UTF-8 text",
        ))
    })
}

/// Takes string field `field` from a JSON object. The problem text never quotes the secret
/// (serde_json's syntax errors name only a position).
fn json_field(text: &str, field: &str) -> Result<SecretString, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "field `{field}` asked for, but the secret is not JSON ({:?} error at line {} \
             column {})",
            e.classify(),
            e.line(),
            e.column()
        )
    })?;
    let object = value.as_object().ok_or_else(|| {
        format!("field `{field}` asked for, but the secret is JSON, not a JSON object")
    })?;
    match object.get(field) {
        Some(serde_json::Value::String(s)) => Ok(SecretString::from(s.as_str())),
        Some(_) => Err(format!("field `{field}` is not a string")),
        // Field names are not secret, and the list shows a typo at a glance.
        None => Err(format!(
            "the JSON object has no field `{field}` (its fields: {})",
            object
                .keys()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests;
