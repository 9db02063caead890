//! Where a credential came from ([`Source`]) and where it was looked for in vain ([`Miss`],
//! collected in [`LookedIn`]).
//!
//! These are what messages print: a log line or an error says "from $DD_API_KEY" or "looked in
//! $DD_API_KEY (not set), file /etc/skydeck/dd-api-key (does not exist), …", never the value.

use std::fmt;
use std::path::PathBuf;

/// One place a credential can come from. `Display` names the place, never the value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// This environment variable.
    Env(String),
    /// This file.
    File(PathBuf),
    /// A secret in AWS Secrets Manager, read in this region.
    AwsSecretsManager {
        /// Secret name or ARN.
        name: String,
        /// The field of the JSON secret, when only a field was used.
        field: Option<String>,
        /// The region the secret was read from (secrets are regional).
        region: String,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Env(name) => write!(f, "${name}"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::AwsSecretsManager {
                name,
                field,
                region,
            } => {
                write!(f, "AWS Secrets Manager secret `{name}`")?;
                if let Some(field) = field {
                    write!(f, " (field `{field}`)")?;
                }
                write!(f, " in {region}")
            }
        }
    }
}

/// Why a place held no usable value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MissReason {
    /// The environment variable is not set.
    Unset,
    /// The file does not exist.
    NoSuchFile,
    /// The secret does not exist in the region looked in. Secrets Manager secrets are
    /// regional, so this is also what a secret kept in another region looks like.
    NotFound,
    /// The secret exists but is scheduled for deletion (AWS refuses to read it).
    ScheduledForDeletion,
    /// The value is there but empty (or only whitespace): treated as missing.
    Empty,
}

impl fmt::Display for MissReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MissReason::Unset => "not set",
            MissReason::NoSuchFile => "does not exist",
            MissReason::NotFound => "not found in that region",
            MissReason::ScheduledForDeletion => "scheduled for deletion",
            MissReason::Empty => "empty",
        })
    }
}

/// One place looked in, and why it gave nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Miss {
    /// The place.
    pub source: Source,
    /// Why it gave nothing.
    pub reason: MissReason,
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.source, self.reason) {
            // "empty" alone could read as "unset" for a variable.
            (Source::Env(_), MissReason::Empty) => write!(f, "{} (set but empty)", self.source),
            _ => write!(f, "{} ({})", self.source, self.reason),
        }
    }
}

/// Every place looked in, in order, for a credential found nowhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookedIn(pub Vec<Miss>);

impl fmt::Display for LookedIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("nowhere (no environment variable, file or AWS secret configured)");
        }
        for (i, miss) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{miss}")?;
        }
        // Secrets Manager is regional; a secret created in another region answers "not found"
        // exactly like a missing one, so say so where it matters.
        if self.0.iter().any(|m| m.reason == MissReason::NotFound) {
            f.write_str(
                "; Secrets Manager secrets are regional: check the region (AWS_REGION, the \
                 profile, or the config's AWS region)",
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_places_not_values() {
        let looked = LookedIn(vec![
            Miss {
                source: Source::Env("DD_API_KEY".into()),
                reason: MissReason::Unset,
            },
            Miss {
                source: Source::Env("DATADOG_API_KEY".into()),
                reason: MissReason::Empty,
            },
            Miss {
                source: Source::File("/etc/skydeck/dd".into()),
                reason: MissReason::Empty,
            },
            Miss {
                source: Source::AwsSecretsManager {
                    name: "skydeck/prod".into(),
                    field: Some("dd".into()),
                    region: "eu-west-1".into(),
                },
                reason: MissReason::NotFound,
            },
        ]);
        assert_eq!(
            looked.to_string(),
            "$DD_API_KEY (not set), $DATADOG_API_KEY (set but empty), file /etc/skydeck/dd (empty), AWS Secrets Manager \
             secret `skydeck/prod` (field `dd`) in eu-west-1 (not found in that region); \
             Secrets Manager secrets are regional: check the region (AWS_REGION, the profile, \
             or the config's AWS region)"
        );
        assert!(LookedIn::default().to_string().starts_with("nowhere"));
    }
}
