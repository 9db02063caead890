//! The AWS Secrets Manager client: built from the standard AWS configuration chain, with an
//! HTTPS client on rustls + ring, and `GetSecretValue` with its errors sorted into "not found"
//! (a miss) and everything else (an error).
//!
//! Why a hand-built HTTP client: the SDK's default (`default-https-client`) is rustls with
//! aws-lc-rs, a second crypto library with a C build, and the service crate's default `rustls`
//! feature adds a legacy hyper 0.14 / rustls 0.21 stack on top. The rest of skydeck uses rustls
//! with ring, so the SDK gets the same (`aws-smithy-http-client`'s `rustls-ring` mode). That
//! client verifies servers against the system's root certificates (`rustls-native-certs`): the
//! runtime image needs CA certificates installed. It does not use HTTP(S) proxies.
//!
//! Credential chain: environment keys, profile files (static keys, `role_arn` with
//! `source_profile`, `credential_process`), IRSA web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` +
//! `AWS_ROLE_ARN`, exchanged through STS), EKS Pod Identity / ECS container credentials, then
//! the instance metadata service. Not included: AWS IAM Identity Center (SSO) profiles, which
//! need aws-config's `sso` feature and two more generated SDK crates; they are for people at a
//! terminal, not for the CronJob.
//!
//! Endpoint overrides go through the SDK's own mechanism: `AWS_ENDPOINT_URL_SECRETS_MANAGER`
//! or `AWS_ENDPOINT_URL` in the environment (or `endpoint_url` in the profile), which the SDK
//! reads by itself, or [`AwsOptions::endpoint_url`], which sets the same thing in code.
//!
//! Secret values stay out of logs here too: `GetSecretValue` is marked as having sensitive
//! output, so the SDK's own debug/trace logging redacts the response body (unless someone sets
//! `LOG_SENSITIVE_BODIES=true`), and error messages are built from `Display` texts only (see
//! `error_chain`).

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{Credentials as AwsCredentials, Region};
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use secrecy::{ExposeSecret, SecretString};
use tracing::debug;

use crate::credentials::AwsOptions;
use crate::source::MissReason;

/// A Secrets Manager client and the region it talks to.
pub(crate) struct AwsClient {
    client: Client,
    region: String,
    timeout: Duration,
}

/// Why no client could be built.
#[derive(Debug)]
pub(crate) enum LoadFailure {
    /// Neither the options nor the region chain gave a region.
    NoRegion,
    /// Loading the configuration took longer than the timeout.
    Timeout(Duration),
}

/// The outcome of reading a secret that is not an error.
#[derive(Clone)]
pub(crate) enum Fetched {
    /// The secret's text (its `SecretString`, or its `SecretBinary` when that is UTF-8).
    Value(SecretString),
    /// AWS says there is no readable secret by that name in this region.
    Missing(MissReason),
}

/// Why reading a secret failed.
#[derive(Debug, Clone)]
pub(crate) enum FetchFailure {
    /// Not finished within the timeout.
    Timeout(Duration),
    /// AWS or the transport said no; the message says what.
    Aws(String),
    /// A binary secret that is not UTF-8 text.
    NotText,
}

impl AwsClient {
    /// Loads the AWS configuration (region and credentials chains, profile files, endpoint
    /// overrides from the environment) and builds the client. Credentials themselves are
    /// resolved on the first call, inside that call's timeout.
    pub(crate) async fn load(options: &AwsOptions) -> Result<AwsClient, LoadFailure> {
        let https = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(https)
            .timeout_config(
                // The whole operation (retries and credential resolution included) is bounded;
                // the connect timeout keeps the SDK default (3.1 s) unless ours is shorter.
                TimeoutConfig::builder()
                    .operation_timeout(options.timeout)
                    .connect_timeout(options.timeout.min(Duration::from_millis(3100)))
                    .build(),
            );
        if let Some(region) = &options.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &options.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        if let Some(creds) = &options.static_credentials {
            loader = loader.credentials_provider(AwsCredentials::new(
                creds.access_key_id.clone(),
                creds.secret_access_key.expose_secret().to_owned(),
                None,
                None,
                "skydeck-static",
            ));
        }
        // The region chain can end at the instance metadata service; never wait on it longer
        // than on a call.
        let config = tokio::time::timeout(options.timeout, loader.load())
            .await
            .map_err(|_| LoadFailure::Timeout(options.timeout))?;
        let region = config.region().ok_or(LoadFailure::NoRegion)?.to_string();
        debug!(
            region = %region,
            endpoint_override = options.endpoint_url.as_deref(),
            "AWS Secrets Manager client configured."
        );
        Ok(AwsClient {
            client: Client::new(&config),
            region,
            timeout: options.timeout,
        })
    }

    /// The region every call goes to.
    pub(crate) fn region(&self) -> &str {
        &self.region
    }

    /// Reads secret `name` (its current version).
    pub(crate) async fn fetch(&self, name: &str) -> Result<Fetched, FetchFailure> {
        let call = self.client.get_secret_value().secret_id(name).send();
        // The SDK's operation timeout should fire first; this one also bounds anything the SDK
        // does outside it.
        let result = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| FetchFailure::Timeout(self.timeout))?;
        match result {
            Ok(output) => {
                let text = match (output.secret_string, output.secret_binary) {
                    (Some(text), _) => text,
                    (None, Some(blob)) => {
                        String::from_utf8(blob.into_inner()).map_err(|_| FetchFailure::NotText)?
                    }
                    (None, None) => String::new(),
                };
                Ok(Fetched::Value(SecretString::from(text)))
            }
            Err(err) => classify(err, self.timeout),
        }
    }
}

/// Sorts an SDK error into a miss (the secret is not there to read) or a failure.
fn classify(
    err: SdkError<GetSecretValueError, aws_sdk_secretsmanager::config::http::HttpResponse>,
    timeout: Duration,
) -> Result<Fetched, FetchFailure> {
    match &err {
        SdkError::TimeoutError(_) => Err(FetchFailure::Timeout(timeout)),
        SdkError::ServiceError(ctx) => {
            let service = ctx.err();
            let message = service.message().unwrap_or("");
            if service.is_resource_not_found_exception() {
                return Ok(Fetched::Missing(MissReason::NotFound));
            }
            // A secret scheduled for deletion is on its way out: for the job it is missing, not
            // broken (otherwise an optional credential would fail every run for the 7-30 days
            // of the recovery window). AWS signals it only through the message text
            // ("...because it was marked for deletion"; moto: "...currently marked deleted").
            if service.is_invalid_request_exception()
                && (message.contains("marked for deletion") || message.contains("marked deleted"))
            {
                return Ok(Fetched::Missing(MissReason::ScheduledForDeletion));
            }
            let status = ctx.raw().status().as_u16();
            Err(FetchFailure::Aws(match service.code() {
                Some(code) if message.is_empty() => format!("{code} (HTTP {status})"),
                Some(code) => format!("{code}: {message} (HTTP {status})"),
                // Not an AWS-shaped answer: a wrong endpoint, a proxy page.
                None => format!(
                    "HTTP {status} that is not an AWS error response (is the endpoint right?): {}",
                    error_chain(&err)
                ),
            }))
        }
        _ => Err(FetchFailure::Aws(error_chain(&err))),
    }
}

/// The `Display` texts of an error and its sources, joined with ": ".
///
/// Not the SDK's `DisplayErrorContext`: that appends the error's `Debug` form, which holds the
/// raw HTTP response, body included — for a `GetSecretValue` answer that failed to parse, the
/// secret itself.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let part = e.to_string();
        // hyper and the SDK often repeat their source's text in their own.
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}
