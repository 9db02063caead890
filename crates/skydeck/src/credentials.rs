//! Where each secret skydeck reads may come from, in the seed deployment's order (environment,
//! then file, then AWS Secrets Manager), through the one credential reader of
//! `skydeck-secrets`. Nothing here reads a value; it only says where to look.

use std::path::Path;

use anyhow::Context as _;
use skydeck_secrets::{AwsOptions, CredentialSpec, Credentials, DEFAULT_AWS_TIMEOUT};

use crate::config::{AwsSection, DatadogSection};

/// The reader for one run (it caches what it read).
pub fn reader(aws: &AwsSection) -> Credentials {
    Credentials::new(AwsOptions {
        region: aws.region.clone(),
        timeout: aws.timeout.unwrap_or(DEFAULT_AWS_TIMEOUT),
        ..AwsOptions::default()
    })
}

fn with_file_and_secret(
    mut spec: CredentialSpec,
    file: Option<&Path>,
    aws_secret: Option<&str>,
    what: &str,
) -> anyhow::Result<CredentialSpec> {
    if let Some(f) = file {
        spec = spec.file(f);
    }
    if let Some(name) = aws_secret {
        spec = spec.aws_secret(
            name.parse()
                .with_context(|| format!("{what}: AWS secret {name:?}"))?,
        );
    }
    Ok(spec)
}

/// The SkyPilot service-account token: optional (a server without auth needs none; SkyPilot's
/// own config file is the last fallback).
pub fn skypilot_token(
    token_file: Option<&Path>,
    aws_secret: Option<&str>,
    what: &str,
) -> anyhow::Result<CredentialSpec> {
    let spec = CredentialSpec::new("SkyPilot token")
        .env(skydeck_skypilot::target::ENV_SA_TOKEN)
        .env(skydeck_skypilot::target::ENV_API_KEY)
        .required(false);
    with_file_and_secret(spec, token_file, aws_secret, what)
}

/// The control plane's admin API keys: required by `skydeck control`.
pub fn admin_api_key(
    key_file: Option<&Path>,
    aws_secret: Option<&str>,
) -> anyhow::Result<CredentialSpec> {
    let spec = CredentialSpec::new("admin API key")
        .env("SKYDECK_ADMIN_API_KEY")
        .required(true);
    with_file_and_secret(spec, key_file, aws_secret, "--admin-key-aws-secret")
}

/// The Datadog API key: required by the Datadog sink.
pub fn datadog_api_key(dd: &DatadogSection) -> anyhow::Result<CredentialSpec> {
    let spec = CredentialSpec::new("Datadog API key")
        .env("DD_API_KEY")
        .required(true);
    with_file_and_secret(
        spec,
        dd.api_key_file.as_deref(),
        dd.api_key_aws_secret.as_deref(),
        "[[sinks]] api_key_aws_secret",
    )
}

/// The Datadog application key: required by `datadog sync-metadata` only.
pub fn datadog_app_key(dd: &DatadogSection) -> anyhow::Result<CredentialSpec> {
    let spec = CredentialSpec::new("Datadog application key")
        .env("DD_APP_KEY")
        .env("DD_APPLICATION_KEY")
        .required(true);
    with_file_and_secret(
        spec,
        dd.app_key_file.as_deref(),
        dd.app_key_aws_secret.as_deref(),
        "[[sinks]] app_key_aws_secret",
    )
}
