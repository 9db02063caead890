//! Credential lookup through the real AWS SDK: against moto's Secrets Manager on 127.0.0.1
//! (`scripts/peers/moto.sh start`, URL in `SKYDECK_TEST_MOTO_URL`), and against a scripted
//! socket for the answers moto does not give (access denied, a server that never answers).
//!
//! Each test creates its own randomly named secrets, so tests run in parallel against one moto.
//! Nothing mutates the process environment: the SDK gets region, endpoint and static
//! credentials through `AwsOptions`, except in the child-process tests, which check that the
//! SDK's own environment variables (`AWS_ENDPOINT_URL_SECRETS_MANAGER`, `AWS_REGION`, …) work.
//! Every endpoint is on 127.0.0.1 and credentials are always static or from the child's
//! environment, so the SDK never probes the instance metadata service.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials as AwsCredentials, Region};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use secrecy::{ExposeSecret, SecretString};
use skydeck_secrets::{
    AwsOptions, AwsSecret, CredentialSpec, Credentials, Error, MissReason, Source,
    StaticCredentials,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const VALUE: &str = "s3cr3t-from-moto-0012345";

fn moto_url() -> String {
    std::env::var("SKYDECK_TEST_MOTO_URL").unwrap_or_else(|_| {
        panic!(
            "SKYDECK_TEST_MOTO_URL is not set: run the tests with scripts/test.sh (it starts \
             moto with scripts/peers/moto.sh and sets it)"
        )
    })
}

/// A name no other test (or earlier run against the same moto) uses.
fn unique_name(test: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("skydeck-test/{test}-{}-{nanos}-{n}", std::process::id())
}

fn options(endpoint: &str, region: &str) -> AwsOptions {
    AwsOptions {
        region: Some(region.to_owned()),
        timeout: Duration::from_secs(10),
        endpoint_url: Some(endpoint.to_owned()),
        static_credentials: Some(StaticCredentials {
            access_key_id: "testing".to_owned(),
            secret_access_key: SecretString::from("testing"),
        }),
    }
}

/// Credentials against moto in `region`, with an empty environment for the specs' variables.
fn moto_credentials(region: &str) -> Credentials {
    Credentials::with_env(options(&moto_url(), region), |_| None)
}

/// A Secrets Manager client for setting up moto, configured entirely in code.
fn admin(region: &str) -> Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(moto_url())
        .credentials_provider(AwsCredentials::new(
            "testing", "testing", None, None, "test",
        ))
        .http_client(http)
        .build();
    Client::from_conf(config)
}

async fn create_secret(region: &str, name: &str, value: &str) {
    admin(region)
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating {name} in moto: {e:?}"));
}

async fn delete_secret(region: &str, name: &str, force: bool) {
    admin(region)
        .delete_secret()
        .secret_id(name)
        .force_delete_without_recovery(force)
        .send()
        .await
        .unwrap_or_else(|e| panic!("deleting {name} in moto: {e:?}"));
}

fn spec(name: &str) -> CredentialSpec {
    CredentialSpec::new("Datadog API key").aws_secret(name.parse().unwrap())
}

fn aws_source(name: &str, field: Option<&str>, region: &str) -> Source {
    Source::AwsSecretsManager {
        name: name.to_owned(),
        field: field.map(str::to_owned),
        region: region.to_owned(),
    }
}

// ---------------------------------------------------------------------------- moto --

#[tokio::test]
async fn reads_a_secret_through_the_sdk() {
    let name = unique_name("plain");
    create_secret("us-east-1", &name, &format!("{VALUE}\n")).await;

    let creds = moto_credentials("us-east-1");
    let got = creds
        .get(&spec(&name).required(true))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.value.expose_secret(), VALUE, "value trimmed");
    assert_eq!(got.source, aws_source(&name, None, "us-east-1"));
    assert_eq!(
        got.source.to_string(),
        format!("AWS Secrets Manager secret `{name}` in us-east-1")
    );
}

#[tokio::test]
async fn env_and_file_come_before_aws() {
    let name = unique_name("order");
    create_secret("us-east-1", &name, "from-aws").await;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "from-file").unwrap();
    let spec = spec(&name).env("DD_API_KEY").file(file.path());

    let creds = Credentials::with_env(options(&moto_url(), "us-east-1"), |name| {
        (name == "DD_API_KEY").then(|| "from-env".into())
    });
    let got = creds.get(&spec).await.unwrap().unwrap();
    assert_eq!(got.value.expose_secret(), "from-env");

    let creds = moto_credentials("us-east-1");
    let got = creds.get(&spec).await.unwrap().unwrap();
    assert_eq!(got.value.expose_secret(), "from-file");

    std::fs::write(file.path(), "\n").unwrap();
    let creds = moto_credentials("us-east-1");
    let got = creds.get(&spec).await.unwrap().unwrap();
    assert_eq!(
        got.value.expose_secret(),
        "from-aws",
        "the empty file was skipped"
    );
}

#[tokio::test]
async fn reads_a_field_of_a_json_secret() {
    let name = unique_name("json");
    let json = format!(r#"{{"api_key": "{VALUE}", "app_key": "app-0042"}}"#);
    create_secret("us-east-1", &name, &json).await;

    let creds = moto_credentials("us-east-1");
    let api = creds
        .get(&spec(&format!("{name}#api_key")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(api.value.expose_secret(), VALUE);
    assert_eq!(api.source, aws_source(&name, Some("api_key"), "us-east-1"));
    assert_eq!(
        api.source.to_string(),
        format!("AWS Secrets Manager secret `{name}` (field `api_key`) in us-east-1")
    );

    // The secret is fetched once per run, whatever the number of fields read from it: with
    // the secret gone from moto, the second field still resolves.
    delete_secret("us-east-1", &name, true).await;
    let app = creds
        .get(
            &CredentialSpec::new("Datadog application key")
                .aws_secret(AwsSecret::json_field(&name, "app_key")),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(app.value.expose_secret(), "app-0042");

    // A field the secret does not have is a misconfiguration, even for an optional credential;
    // the message lists the fields there are, never a value.
    let err = creds
        .get(&spec(&format!("{name}#apikey")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AwsSecretFormat { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("no field `apikey`"), "{msg}");
    assert!(msg.contains("`api_key`, `app_key`"), "{msg}");
    assert!(!msg.contains(VALUE), "{msg}");
}

#[tokio::test]
async fn missing_optional_secret_warns_once_and_gives_none() {
    let name = unique_name("absent");
    let logs = LogCapture::start();
    let creds = moto_credentials("us-east-1");
    let spec = CredentialSpec::new("SkyPilot token")
        .env("SKYPILOT_API_KEY")
        .aws_secret(name.parse().unwrap());
    assert!(creds.get(&spec).await.unwrap().is_none());
    assert!(creds.get(&spec).await.unwrap().is_none());

    let warnings = logs.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let w = &warnings[0];
    for needle in [
        "SkyPilot token",
        "$SKYPILOT_API_KEY (not set)",
        &format!("AWS Secrets Manager secret `{name}` in us-east-1 (not found in that region)"),
    ] {
        assert!(w.contains(needle), "missing {needle:?} in {w}");
    }
}

#[tokio::test]
async fn missing_required_secret_is_an_error_naming_secret_and_region() {
    let name = unique_name("absent-required");
    let creds = moto_credentials("us-east-1");
    let err = creds
        .get(&spec(&name).env("DD_API_KEY").required(true))
        .await
        .unwrap_err();
    let Error::Missing { looked_in, .. } = &err else {
        panic!("expected Missing, got {err:?}");
    };
    assert_eq!(looked_in.0.last().unwrap().reason, MissReason::NotFound);
    let msg = err.to_string();
    assert!(
        msg.starts_with("Datadog API key is required but was not found"),
        "{msg}"
    );
    assert!(msg.contains("$DD_API_KEY (not set)"), "{msg}");
    assert!(
        msg.contains(&format!("`{name}` in us-east-1 (not found in that region)")),
        "{msg}"
    );
}

/// Documented behaviour: secrets are regional and the SDK asks one region, so a secret kept
/// in another region is "not found" — a warning and `None` when optional, an error naming the
/// region asked (with a hint that secrets are regional) when required.
#[tokio::test]
async fn secret_in_another_region_is_not_found_in_this_one() {
    let name = unique_name("regional");
    create_secret("us-east-1", &name, VALUE).await;

    let logs = LogCapture::start();
    let eu = moto_credentials("eu-west-1");
    assert!(eu.get(&spec(&name)).await.unwrap().is_none());
    let warnings = logs.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains(&format!("`{name}` in eu-west-1 (not found in that region)")));
    assert!(
        warnings[0].contains("secrets are regional"),
        "{}",
        warnings[0]
    );

    let err = eu.get(&spec(&name).required(true)).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Missing { .. }), "{err:?}");
    assert!(msg.contains(&format!("`{name}` in eu-west-1")), "{msg}");
    assert!(
        msg.contains("secrets are regional: check the region"),
        "{msg}"
    );

    // The same lookup in the secret's own region finds it.
    let us = moto_credentials("us-east-1");
    let got = us.get(&spec(&name).required(true)).await.unwrap().unwrap();
    assert_eq!(got.value.expose_secret(), VALUE);
}

#[tokio::test]
async fn second_get_does_not_call_aws_again() {
    let name = unique_name("cached");
    create_secret("us-east-1", &name, VALUE).await;
    let creds = moto_credentials("us-east-1");
    let first = creds.get(&spec(&name)).await.unwrap().unwrap();

    delete_secret("us-east-1", &name, true).await;
    let second = creds.get(&spec(&name)).await.unwrap().unwrap();
    assert_eq!(first.value.expose_secret(), second.value.expose_secret());

    // And the secret really is gone: a new run (new cache) does not find it.
    let fresh = moto_credentials("us-east-1");
    assert!(fresh.get(&spec(&name)).await.unwrap().is_none());
}

#[tokio::test]
async fn secret_scheduled_for_deletion_counts_as_missing() {
    let name = unique_name("deleting");
    create_secret("us-east-1", &name, VALUE).await;
    delete_secret("us-east-1", &name, false).await;

    let creds = moto_credentials("us-east-1");
    let logs = LogCapture::start();
    assert!(creds.get(&spec(&name)).await.unwrap().is_none());
    let warnings = logs.warnings();
    assert!(
        warnings.len() == 1 && warnings[0].contains("(scheduled for deletion)"),
        "{warnings:#?}"
    );
    let err = creds.get(&spec(&name).required(true)).await.unwrap_err();
    assert!(
        err.to_string().contains("(scheduled for deletion)"),
        "{err}"
    );
}

// --------------------------------------------------- answers moto does not give --

/// What the scripted endpoint does with every request.
#[derive(Clone, Copy)]
enum Script {
    /// Answers 400 `AccessDeniedException`, as AWS does without `secretsmanager:GetSecretValue`.
    AccessDenied,
    /// Reads the request and never answers.
    Stall,
    /// Answers 200 with a `GetSecretValue` body cut short: the SDK cannot parse it, and the
    /// error must not carry the part of the secret it did receive.
    Truncated,
}

/// A one-purpose HTTP endpoint on 127.0.0.1; returns its URL. Lives as long as the runtime.
async fn scripted_endpoint(script: Script) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                read_request(&mut sock).await;
                let (status, body) = match script {
                    Script::Stall => {
                        tokio::time::sleep(Duration::from_secs(300)).await;
                        return;
                    }
                    Script::AccessDenied => (
                        "400 Bad Request",
                        r#"{"__type":"AccessDeniedException","message":"User: arn:aws:sts::123456789012:assumed-role/skydeck/ci is not authorized to perform: secretsmanager:GetSecretValue on resource: datadog/api-key because no identity-based policy allows the secretsmanager:GetSecretValue action"}"#.to_owned(),
                    ),
                    Script::Truncated => (
                        "200 OK",
                        format!(r#"{{"Name":"datadog/api-key","SecretString":"{VALUE}"#),
                    ),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.1\r\n\
                     x-amzn-RequestId: 00000000-0000-0000-0000-000000000000\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(response.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    url
}

/// Reads one HTTP/1.1 request (headers, then `Content-Length` bytes of body).
async fn read_request(sock: &mut tokio::net::TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = sock.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return;
            }
        }
    }
}

#[tokio::test]
async fn access_denied_is_an_error_even_for_an_optional_credential() {
    let url = scripted_endpoint(Script::AccessDenied).await;
    let creds = Credentials::with_env(options(&url, "eu-central-1"), |_| None);
    let err = creds.get(&spec("datadog/api-key")).await.unwrap_err();
    assert!(matches!(err, Error::Aws { .. }), "{err:?}");
    let msg = err.to_string();
    for needle in [
        "Datadog API key",
        "`datadog/api-key` in eu-central-1",
        "AccessDeniedException: User: arn:aws:sts::123456789012:assumed-role/skydeck/ci is not \
         authorized",
        "HTTP 400",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in {msg}");
    }
}

#[tokio::test]
async fn an_unparsable_answer_is_an_error_without_the_secret_in_it() {
    let url = scripted_endpoint(Script::Truncated).await;
    let creds = Credentials::with_env(options(&url, "us-east-1"), |_| None);
    let err = creds.get(&spec("datadog/api-key")).await.unwrap_err();
    assert!(matches!(err, Error::Aws { .. }), "{err:?}");
    assert!(!err.to_string().contains(VALUE), "{err}");
    assert!(!format!("{err:?}").contains(VALUE), "{err:?}");
}

#[tokio::test]
async fn an_endpoint_that_is_not_aws_is_an_error() {
    // moto's root answers AWS calls; a path under it is an ordinary 404 page.
    let creds = Credentials::with_env(
        options(&format!("{}/not-aws", moto_url()), "us-east-1"),
        |_| None,
    );
    let err = creds.get(&spec("datadog/api-key")).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("HTTP 404 that is not an AWS error response (is the endpoint right?)"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_stalled_endpoint_times_out_within_the_bound() {
    let url = scripted_endpoint(Script::Stall).await;
    let mut opts = options(&url, "us-east-1");
    opts.timeout = Duration::from_secs(1);
    let creds = Credentials::with_env(opts, |_| None);
    let started = std::time::Instant::now();
    let err = creds.get(&spec("datadog/api-key")).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, Error::AwsTimeout { .. }), "{err:?}");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert_eq!(
        err.to_string(),
        "Datadog API key: reading AWS Secrets Manager secret `datadog/api-key` in us-east-1 \
         timed out after 1s"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_an_error() {
    // A port that was free a moment ago: connection refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut opts = options(&format!("http://127.0.0.1:{port}"), "us-east-1");
    opts.timeout = Duration::from_secs(5);
    let creds = Credentials::with_env(opts, |_| None);
    let err = creds.get(&spec("datadog/api-key")).await.unwrap_err();
    // Connection refused is retried by the SDK; within 5 s it either gives up (Aws, naming
    // the transport error) or runs out of time.
    match &err {
        Error::Aws { message, .. } => assert!(message.contains("onnect"), "{message}"),
        Error::AwsTimeout { .. } => {}
        other => panic!("unexpected {other:?}"),
    }
}

// ------------------------------------------- the SDK's own environment variables --

/// Runs `child_resolves_through_the_sdk_environment` in a child process (this test binary)
/// with exactly `env` as its environment, and returns whether it passed plus its output.
fn run_child(env: &[(&str, String)]) -> (bool, String) {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_resolves_through_the_sdk_environment",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env_clear()
    // No profile files: the child sees only what we give it.
    .env("HOME", home.path())
    .env("AWS_CONFIG_FILE", home.path().join("config"))
    .env(
        "AWS_SHARED_CREDENTIALS_FILE",
        home.path().join("credentials"),
    )
    // Never probe the instance metadata service (169.254.169.254) from a test.
    .env("AWS_EC2_METADATA_DISABLED", "true")
    .env("SKYDECK_TEST_CHILD", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The child half of the environment tests; does nothing unless started by `run_child`.
#[tokio::test]
#[ignore = "started in a child process by the sdk_environment tests"]
async fn child_resolves_through_the_sdk_environment() {
    if std::env::var_os("SKYDECK_TEST_CHILD").is_none() {
        return;
    }
    let name = std::env::var("SKYDECK_TEST_CHILD_SECRET").unwrap();
    let expect = std::env::var("SKYDECK_TEST_CHILD_EXPECT").unwrap();
    // Everything from the standard chains: no region, endpoint or credentials in code.
    let creds = Credentials::new(AwsOptions {
        timeout: Duration::from_secs(5),
        ..AwsOptions::default()
    });
    let result = creds.get(&spec(&name).required(true)).await;
    match expect.as_str() {
        "value" => {
            let got = result.unwrap().unwrap();
            assert_eq!(got.value.expose_secret(), VALUE);
            assert_eq!(got.source, aws_source(&name, None, "us-east-1"));
        }
        "no-region" => {
            let err = result.unwrap_err();
            assert!(matches!(err, Error::NoAwsRegion { .. }), "{err:?}");
            assert!(
                err.to_string().contains("no AWS region configured"),
                "{err}"
            );
        }
        other => panic!("unknown SKYDECK_TEST_CHILD_EXPECT {other}"),
    }
}

#[tokio::test]
async fn sdk_environment_endpoint_region_and_keys_are_honoured() {
    let name = unique_name("sdk-env");
    create_secret("us-east-1", &name, VALUE).await;
    for endpoint_var in ["AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL"] {
        let (ok, output) = run_child(&[
            (endpoint_var, moto_url()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("SKYDECK_TEST_CHILD_SECRET", name.clone()),
            ("SKYDECK_TEST_CHILD_EXPECT", "value".into()),
        ]);
        assert!(ok, "child with {endpoint_var} failed:\n{output}");
        assert!(
            output.contains("1 passed"),
            "the child test did not run:\n{output}"
        );
    }
}

#[tokio::test]
async fn sdk_environment_without_a_region_is_an_error() {
    let (ok, output) = run_child(&[
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_url()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("SKYDECK_TEST_CHILD_SECRET", unique_name("no-region")),
        ("SKYDECK_TEST_CHILD_EXPECT", "no-region".into()),
    ]);
    assert!(ok, "child failed:\n{output}");
    assert!(
        output.contains("1 passed"),
        "the child test did not run:\n{output}"
    );
}

// ---------------------------------------------------------------------- logs --

/// Collects the log lines emitted on this thread (`#[tokio::test]` runs on one) while it
/// lives.
struct LogCapture {
    buf: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl LogCapture {
    fn start() -> Self {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer_buf = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || CaptureWriter(writer_buf.clone()))
            .finish();
        LogCapture {
            buf,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    fn warnings(&self) -> Vec<String> {
        let text = String::from_utf8(self.buf.lock().unwrap().clone()).unwrap();
        assert!(!text.contains(VALUE), "a secret value was logged: {text}");
        text.lines()
            .filter(|l| l.contains(" WARN ") && l.contains("skydeck_secrets"))
            .map(str::to_owned)
            .collect()
    }
}

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
