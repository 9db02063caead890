//! Errors of credential lookup. Every variant names the credential (its label) and the place
//! involved; none ever holds a secret value.
//!
//! A missing *optional* credential is not an error (it is a warning and `Ok(None)`); everything
//! here is either a missing *required* credential or a misconfiguration that would otherwise
//! hide one (an unreadable file, an AWS error other than "not found", a malformed JSON secret).

use std::path::PathBuf;
use std::time::Duration;

use crate::source::LookedIn;
use crate::spec::AwsSecret;

/// What went wrong looking up a credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A required credential was found nowhere. `looked_in` lists every place, in order, with
    /// the reason each gave nothing.
    #[error("{label} is required but was not found: looked in {looked_in}")]
    Missing {
        /// The credential's label.
        label: &'static str,
        /// Every place looked in.
        looked_in: LookedIn,
    },

    /// A `name#field` secret reference could not be parsed.
    #[error(
        "invalid AWS secret reference `{reference}`: {problem} (expected `name` or `name#field`)"
    )]
    InvalidAwsSecret {
        /// The reference as written.
        reference: String,
        /// What is wrong with it.
        problem: &'static str,
    },

    /// An environment variable is set but is not valid UTF-8.
    #[error("{label}: environment variable ${name} is not valid UTF-8")]
    EnvNotUnicode {
        /// The credential's label.
        label: &'static str,
        /// The variable's name.
        name: String,
    },

    /// The credential file exists but cannot be read (permissions, a directory, not UTF-8…).
    /// An error even for an optional credential: a file that was put there is meant to be used.
    #[error("{label}: cannot read file {}: {source}", path.display())]
    File {
        /// The credential's label.
        label: &'static str,
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },

    /// The credential file is larger than any credential (64 KiB, Secrets Manager's own limit):
    /// most likely the wrong path.
    #[error("{label}: file {} is larger than {limit} bytes; is it the right file?", path.display())]
    FileTooLarge {
        /// The credential's label.
        label: &'static str,
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },

    /// No AWS region could be found for reading an AWS secret.
    #[error(
        "{label}: cannot read AWS Secrets Manager secret `{secret}`: no AWS region configured \
         (set AWS_REGION, a region in the AWS profile, or the AWS region in skydeck's config)"
    )]
    NoAwsRegion {
        /// The credential's label.
        label: &'static str,
        /// The secret.
        secret: AwsSecret,
    },

    /// Loading the AWS configuration (the region chain, which may ask the instance metadata
    /// service) did not finish in time.
    #[error(
        "{label}: cannot read AWS Secrets Manager secret `{secret}`: loading the AWS \
         configuration timed out after {timeout:?}"
    )]
    AwsConfigTimeout {
        /// The credential's label.
        label: &'static str,
        /// The secret.
        secret: AwsSecret,
        /// The bound that was exceeded.
        timeout: Duration,
    },

    /// Reading the secret did not finish in time (including retries and resolving AWS
    /// credentials, e.g. an IRSA web-identity exchange).
    #[error(
        "{label}: reading AWS Secrets Manager secret `{secret}` in {region} timed out after \
         {timeout:?}"
    )]
    AwsTimeout {
        /// The credential's label.
        label: &'static str,
        /// The secret.
        secret: AwsSecret,
        /// The region asked.
        region: String,
        /// The bound that was exceeded.
        timeout: Duration,
    },

    /// AWS answered with an error other than "not found" (e.g. `AccessDeniedException`, an
    /// invalid signature from a wrong region's endpoint), or could not be reached, or AWS
    /// credentials could not be resolved. `message` is what the SDK and AWS said.
    #[error("{label}: cannot read AWS Secrets Manager secret `{secret}` in {region}: {message}")]
    Aws {
        /// The credential's label.
        label: &'static str,
        /// The secret.
        secret: AwsSecret,
        /// The region asked.
        region: String,
        /// The error chain from the SDK (code and message from AWS, or the transport error).
        message: String,
    },

    /// The secret exists but does not hold what the spec asks for: not a JSON object with the
    /// named string field, or a binary secret that is not UTF-8 text.
    #[error("{label}: AWS Secrets Manager secret `{secret}` in {region}: {problem}")]
    AwsSecretFormat {
        /// The credential's label.
        label: &'static str,
        /// The secret.
        secret: AwsSecret,
        /// The region it was read from.
        region: String,
        /// What is wrong (never quoting the value).
        problem: String,
    },
}
