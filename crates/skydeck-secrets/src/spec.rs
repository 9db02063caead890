//! What to look up: [`CredentialSpec`] (a label, the places to look, required or not) and
//! [`AwsSecret`] (a Secrets Manager secret, or one field of a JSON secret: `name#field`).
//!
//! Specs are plain data, built in code or from the config file, and hashable: the
//! [`Credentials`](crate::Credentials) cache is keyed by the whole spec.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::Error;

/// How to find one credential, and whether the job can go on without it.
///
/// Sources are tried in this order, the first non-empty value winning (the order of the seed
/// deployment's `get_credential()`): every name in [`env`](Self::env) in turn, then
/// [`file`](Self::file), then [`aws_secret`](Self::aws_secret).
///
/// ```
/// use skydeck_secrets::CredentialSpec;
///
/// let spec = CredentialSpec::new("Datadog API key")
///     .env("DD_API_KEY")
///     .file("/var/run/secrets/skydeck/dd-api-key")
///     .aws_secret("datadog/api-key".parse()?)
///     .required(true);
/// # Ok::<(), skydeck_secrets::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CredentialSpec {
    /// What the credential is, for messages ("Datadog API key").
    pub label: &'static str,
    /// Environment variables to read, in order (e.g. `SKYPILOT_SERVICE_ACCOUNT_TOKEN`, then
    /// `SKYPILOT_API_KEY`, the seed deployment's name).
    pub env: Vec<String>,
    /// A file holding the value (a mounted Kubernetes secret, a `*_file` config key).
    /// Leading and trailing whitespace (the usual trailing newline) is ignored.
    pub file: Option<PathBuf>,
    /// An AWS Secrets Manager secret, or a field of a JSON secret.
    pub aws_secret: Option<AwsSecret>,
    /// Whether a credential found nowhere is an error (`true`) or a warning (`false`).
    pub required: bool,
}

impl CredentialSpec {
    /// An optional credential with no sources yet; add them with the builder methods.
    pub fn new(label: &'static str) -> Self {
        CredentialSpec {
            label,
            env: Vec::new(),
            file: None,
            aws_secret: None,
            required: false,
        }
    }

    /// Adds an environment variable to read (after the ones added before).
    pub fn env(mut self, name: impl Into<String>) -> Self {
        self.env.push(name.into());
        self
    }

    /// Sets the file to read after the environment variables.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// Sets the AWS Secrets Manager secret to read last.
    pub fn aws_secret(mut self, secret: AwsSecret) -> Self {
        self.aws_secret = Some(secret);
        self
    }

    /// Makes the credential required (`true`) or optional (`false`, the default).
    pub fn required(mut self, required: bool) -> Self {
        self.required = required;
        self
    }
}

/// A secret in AWS Secrets Manager: its name (or ARN), and optionally the field to take from
/// a JSON secret.
///
/// Written `name` or `name#field`, e.g. `skypilot/api-key` or `skydeck/prod#datadog_api_key`.
/// `#` cannot occur in a Secrets Manager secret name or ARN (names allow only letters, digits
/// and `/_+=.@-`), so the first `#` always separates the name from the field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AwsSecret {
    /// Secret name or full ARN, passed to `GetSecretValue` as `SecretId`.
    pub name: String,
    /// For a JSON secret: the top-level field whose string value is the credential.
    pub field: Option<String>,
}

impl AwsSecret {
    /// The whole value of secret `name` is the credential.
    pub fn new(name: impl Into<String>) -> Self {
        AwsSecret {
            name: name.into(),
            field: None,
        }
    }

    /// Field `field` of the JSON object stored in secret `name` is the credential.
    pub fn json_field(name: impl Into<String>, field: impl Into<String>) -> Self {
        AwsSecret {
            name: name.into(),
            field: Some(field.into()),
        }
    }
}

impl FromStr for AwsSecret {
    type Err = Error;

    /// Parses `name` or `name#field`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidAwsSecret`] when the name or the field is empty, or the name contains
    /// whitespace.
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |problem: &'static str| Error::InvalidAwsSecret {
            reference: s.to_owned(),
            problem,
        };
        let (name, field) = match s.split_once('#') {
            Some((name, field)) => (name, Some(field)),
            None => (s, None),
        };
        if name.is_empty() {
            return Err(invalid("the secret name is empty"));
        }
        if name.chars().any(char::is_whitespace) {
            return Err(invalid("the secret name contains whitespace"));
        }
        if field.is_some_and(str::is_empty) {
            return Err(invalid("the field after `#` is empty"));
        }
        Ok(AwsSecret {
            name: name.to_owned(),
            field: field.map(str::to_owned),
        })
    }
}

impl fmt::Display for AwsSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}#{field}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_and_field() {
        assert_eq!(
            "skypilot/api-key".parse::<AwsSecret>().unwrap(),
            AwsSecret::new("skypilot/api-key")
        );
        assert_eq!(
            "skydeck/prod#datadog_api_key".parse::<AwsSecret>().unwrap(),
            AwsSecret::json_field("skydeck/prod", "datadog_api_key")
        );
        // Only the first `#` separates: JSON keys may contain `#`.
        assert_eq!(
            "a#b#c".parse::<AwsSecret>().unwrap(),
            AwsSecret::json_field("a", "b#c")
        );
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:skypilot/api-key-AbCdEf";
        assert_eq!(arn.parse::<AwsSecret>().unwrap(), AwsSecret::new(arn));
    }

    #[test]
    fn display_round_trips() {
        for s in ["skypilot/api-key", "skydeck/prod#datadog_api_key"] {
            assert_eq!(s.parse::<AwsSecret>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn rejects_empty_parts() {
        for (s, problem) in [
            ("", "empty"),
            ("#field", "empty"),
            ("name#", "field"),
            ("my secret", "whitespace"),
        ] {
            let err = s.parse::<AwsSecret>().unwrap_err();
            assert!(
                matches!(err, Error::InvalidAwsSecret { .. }),
                "{s:?}: {err:?}"
            );
            assert!(err.to_string().contains(problem), "{s:?}: {err}");
        }
    }

    #[test]
    fn builder_keeps_env_order() {
        let spec = CredentialSpec::new("SkyPilot token")
            .env("SKYPILOT_SERVICE_ACCOUNT_TOKEN")
            .env("SKYPILOT_API_KEY")
            .required(true);
        assert_eq!(
            spec.env,
            ["SKYPILOT_SERVICE_ACCOUNT_TOKEN", "SKYPILOT_API_KEY"]
        );
        assert!(spec.required);
        assert!(spec.file.is_none() && spec.aws_secret.is_none());
    }
}
