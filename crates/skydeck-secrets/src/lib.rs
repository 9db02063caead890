//! Credential sources: the one place that reads every secret skydeck uses (the Datadog API key,
//! the SkyPilot token, later the control plane's keys).
//!
//! Each credential is described by a [`CredentialSpec`] and looked up by [`Credentials::get`] in
//! the order of the seed deployment's `get_credential()`: environment variable(s), then a file,
//! then AWS Secrets Manager (a secret, or one field of a JSON secret: `name#field`). The first
//! non-empty value wins. A credential is either `required` (missing everywhere → [`Error::Missing`]
//! naming every place looked) or optional (missing everywhere → one `WARN` log line naming every
//! place looked, and `Ok(None)`: the job goes on without it, seed 000's defensive pattern).
//!
//! Misconfigurations are errors even for optional credentials: a file that exists but cannot be
//! read, an environment variable that is not UTF-8, an AWS error other than "not found"
//! (access denied, bad endpoint, timeout), a JSON secret without the named field.
//!
//! AWS Secrets Manager is reached through the official AWS SDK with the standard chains for
//! region and credentials (environment, profile, IRSA web identity, container and instance
//! metadata). The SDK is loaded lazily, once, and only when a spec that names an AWS secret
//! gets that far: a run whose credentials all come from the environment or files never touches
//! the AWS credential chain (no IMDS probe, no delay). Results are cached for the life of the
//! [`Credentials`] value (one run), so a second lookup never calls AWS again.
//!
//! No secret value is ever part of an error, a log line, or a `Debug`/`Display` output: values
//! are [`secrecy::SecretString`]s, and every message names *where* a value came from
//! ([`Source`]), never what it is.
//!
//! ```no_run
//! # async fn demo() -> Result<(), skydeck_secrets::Error> {
//! use skydeck_secrets::{AwsOptions, AwsSecret, CredentialSpec, Credentials};
//!
//! let credentials = Credentials::new(AwsOptions::default());
//! let token = CredentialSpec::new("SkyPilot token")
//!     .env("SKYPILOT_SERVICE_ACCOUNT_TOKEN")
//!     .env("SKYPILOT_API_KEY")
//!     .aws_secret("skypilot/api-key".parse::<AwsSecret>()?);
//! match credentials.get(&token).await? {
//!     Some(resolved) => println!("token from {}", resolved.source),
//!     None => println!("no token; the local API server will be used"),
//! }
//! # Ok(())
//! # }
//! ```

mod aws;
mod credentials;
mod error;
mod source;
mod spec;

pub use credentials::{AwsOptions, Credentials, DEFAULT_AWS_TIMEOUT, Resolved, StaticCredentials};
pub use error::Error;
pub use source::{LookedIn, Miss, MissReason, Source};
pub use spec::{AwsSecret, CredentialSpec};
