//! Lookup order, required/optional, empty values, unreadable files and the cache, without AWS.
//! Environment variables come from a map through [`Credentials::with_env`] (tests run in
//! parallel and `set_var` is unsafe); AWS-backed cases are in `tests/moto.rs`.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::ffi::OsStringExt;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

const VALUE: &str = "s3cr3t-value-0012345";

/// Credentials whose environment is `vars`; the returned counter counts lookups.
fn creds_with(vars: &[(&str, &str)]) -> (Credentials, Arc<AtomicUsize>) {
    let vars: HashMap<String, OsString> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let creds = Credentials::with_env(AwsOptions::default(), move |name| {
        counter.fetch_add(1, Ordering::SeqCst);
        vars.get(name).cloned()
    });
    (creds, calls)
}

/// Collects the log lines emitted on this thread while the guard lives.
struct LogCapture {
    buf: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl LogCapture {
    fn start() -> Self {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer_buf = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || CaptureWriter(writer_buf.clone()))
            .finish();
        LogCapture {
            buf,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    fn text(&self) -> String {
        String::from_utf8(self.buf.lock().unwrap().clone()).unwrap()
    }

    fn warnings(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(" WARN "))
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

fn file_with(contents: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(contents).unwrap();
    f
}

#[tokio::test]
async fn env_names_are_tried_in_order() {
    let spec = CredentialSpec::new("SkyPilot token")
        .env("SKYPILOT_SERVICE_ACCOUNT_TOKEN")
        .env("SKYPILOT_API_KEY");

    let (creds, _) = creds_with(&[
        ("SKYPILOT_API_KEY", "second"),
        ("SKYPILOT_SERVICE_ACCOUNT_TOKEN", "first"),
    ]);
    let got = creds.get(&spec).await.unwrap().unwrap();
    assert_eq!(got.value.expose_secret(), "first");
    assert_eq!(
        got.source,
        Source::Env("SKYPILOT_SERVICE_ACCOUNT_TOKEN".into())
    );

    let (creds, _) = creds_with(&[("SKYPILOT_API_KEY", "second")]);
    let got = creds.get(&spec).await.unwrap().unwrap();
    assert_eq!(got.value.expose_secret(), "second");
    assert_eq!(got.source.to_string(), "$SKYPILOT_API_KEY");
}

#[tokio::test]
async fn empty_env_counts_as_missing() {
    let spec = CredentialSpec::new("SkyPilot token").env("A").env("B");
    let (creds, _) = creds_with(&[("A", " \n"), ("B", "  from-b\n")]);
    let got = creds.get(&spec).await.unwrap().unwrap();
    assert_eq!(
        got.value.expose_secret(),
        "from-b",
        "trimmed, and the empty A skipped"
    );
}

#[tokio::test]
async fn env_wins_over_file_and_file_over_nothing() {
    let file = file_with(b"from-file\n");
    let spec = CredentialSpec::new("Datadog API key")
        .env("DD_API_KEY")
        .file(file.path());

    let (creds, _) = creds_with(&[("DD_API_KEY", "from-env")]);
    let got = creds.get(&spec).await.unwrap().unwrap();
    assert_eq!(got.value.expose_secret(), "from-env");

    let (creds, _) = creds_with(&[]);
    let got = creds.get(&spec).await.unwrap().unwrap();
    assert_eq!(
        got.value.expose_secret(),
        "from-file",
        "trailing newline trimmed"
    );
    assert_eq!(got.source, Source::File(file.path().to_owned()));
    assert_eq!(
        got.source.to_string(),
        format!("file {}", file.path().display())
    );
}

#[tokio::test]
async fn an_earlier_source_hides_a_broken_later_one() {
    // The order is the contract: once a value is found nothing later is read, so a broken
    // file (here a directory) behind a set variable is never an error.
    let dir = tempfile::tempdir().unwrap();
    let spec = CredentialSpec::new("Datadog API key")
        .env("DD_API_KEY")
        .file(dir.path())
        .required(true);
    let (creds, _) = creds_with(&[("DD_API_KEY", VALUE)]);
    assert!(creds.get(&spec).await.unwrap().is_some());
}

#[tokio::test]
async fn optional_missing_everywhere_warns_once_and_returns_none() {
    let logs = LogCapture::start();
    let spec = CredentialSpec::new("SkyPilot token")
        .env("SKYPILOT_SERVICE_ACCOUNT_TOKEN")
        .env("SKYPILOT_API_KEY")
        .file("/nonexistent/skydeck/token");
    let (creds, _) = creds_with(&[("SKYPILOT_API_KEY", "")]);

    assert!(creds.get(&spec).await.unwrap().is_none());
    assert!(
        creds.get(&spec).await.unwrap().is_none(),
        "cached: no second warning"
    );

    let warnings = logs.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let w = &warnings[0];
    for needle in [
        "SkyPilot token",
        "$SKYPILOT_SERVICE_ACCOUNT_TOKEN (not set)",
        "$SKYPILOT_API_KEY (set but empty)",
        "file /nonexistent/skydeck/token (does not exist)",
        "continuing without it",
    ] {
        assert!(w.contains(needle), "missing {needle:?} in {w}");
    }
}

#[tokio::test]
async fn required_missing_everywhere_is_an_error_naming_every_place() {
    let file = file_with(b"  \n\n");
    let spec = CredentialSpec::new("Datadog API key")
        .env("DD_API_KEY")
        .file(file.path())
        .required(true);
    let (creds, _) = creds_with(&[]);
    let err = creds.get(&spec).await.unwrap_err();
    let Error::Missing { label, looked_in } = &err else {
        panic!("expected Missing, got {err:?}");
    };
    assert_eq!(*label, "Datadog API key");
    assert_eq!(
        looked_in.0.iter().map(|m| m.reason).collect::<Vec<_>>(),
        [MissReason::Unset, MissReason::Empty]
    );
    assert_eq!(
        err.to_string(),
        format!(
            "Datadog API key is required but was not found: looked in $DD_API_KEY (not set), \
             file {} (empty)",
            file.path().display()
        )
    );
}

#[tokio::test]
async fn required_with_no_sources_says_so() {
    let (creds, _) = creds_with(&[]);
    let err = creds
        .get(&CredentialSpec::new("control-plane admin token").required(true))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("looked in nowhere"), "{err}");
}

#[tokio::test]
async fn unreadable_file_is_an_error_even_when_optional() {
    let dir = tempfile::tempdir().unwrap();
    let spec = CredentialSpec::new("SkyPilot token").file(dir.path());
    let (creds, _) = creds_with(&[]);
    let err = creds.get(&spec).await.unwrap_err();
    assert!(matches!(err, Error::File { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("SkyPilot token: cannot read file "),
        "{msg}"
    );
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
}

#[tokio::test]
async fn non_utf8_file_is_an_error() {
    let file = file_with(&[0xff, 0xfe, b'k', b'e', b'y']);
    let spec = CredentialSpec::new("SkyPilot token").file(file.path());
    let (creds, _) = creds_with(&[]);
    let err = creds.get(&spec).await.unwrap_err();
    assert!(err.to_string().contains("not UTF-8"), "{err}");
}

#[tokio::test]
async fn oversized_file_is_an_error() {
    let file = file_with(&vec![b'a'; MAX_FILE_BYTES as usize + 1]);
    let spec = CredentialSpec::new("SkyPilot token").file(file.path());
    let (creds, _) = creds_with(&[]);
    let err = creds.get(&spec).await.unwrap_err();
    assert!(matches!(err, Error::FileTooLarge { .. }), "{err:?}");

    // Exactly at the limit is fine.
    let file = file_with(&vec![b'a'; MAX_FILE_BYTES as usize]);
    let spec = CredentialSpec::new("SkyPilot token").file(file.path());
    assert!(creds.get(&spec).await.unwrap().is_some());
}

#[tokio::test]
async fn non_utf8_env_is_an_error() {
    let creds = Credentials::with_env(AwsOptions::default(), |_| {
        Some(OsString::from_vec(vec![0xff, b'x']))
    });
    let err = creds
        .get(&CredentialSpec::new("SkyPilot token").env("SKYPILOT_API_KEY"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "SkyPilot token: environment variable $SKYPILOT_API_KEY is not valid UTF-8"
    );
}

#[tokio::test]
async fn second_get_is_served_from_the_cache() {
    let spec = CredentialSpec::new("Datadog API key").env("DD_API_KEY");
    let (creds, calls) = creds_with(&[("DD_API_KEY", VALUE)]);
    let first = creds.get(&spec).await.unwrap().unwrap();
    let second = creds.clone().get(&spec).await.unwrap().unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the environment was read once"
    );
    assert_eq!(first.value.expose_secret(), second.value.expose_secret());

    // A different spec is a different cache entry.
    let other = spec.clone().required(true);
    creds.get(&other).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn errors_are_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::create_dir(&path).unwrap();
    let spec = CredentialSpec::new("SkyPilot token").file(&path);
    let (creds, _) = creds_with(&[]);
    assert!(creds.get(&spec).await.is_err());
    std::fs::remove_dir(&path).unwrap();
    std::fs::write(&path, "fixed\n").unwrap();
    let got = creds.get(&spec).await.unwrap().unwrap();
    assert_eq!(got.value.expose_secret(), "fixed");
}

#[tokio::test]
async fn aws_is_never_touched_without_an_aws_secret_in_the_way() {
    // No AWS secret named: the AWS client is never built (no credential chain, no IMDS).
    let (creds, _) = creds_with(&[("DD_API_KEY", VALUE)]);
    creds
        .get(&CredentialSpec::new("Datadog API key").env("DD_API_KEY"))
        .await
        .unwrap();
    creds
        .get(&CredentialSpec::new("SkyPilot token").env("SKYPILOT_API_KEY"))
        .await
        .unwrap();
    // An AWS secret named, but an earlier source has the value: still not built.
    creds
        .get(
            &CredentialSpec::new("Datadog API key")
                .env("DD_API_KEY")
                .aws_secret("datadog/api-key".parse().unwrap()),
        )
        .await
        .unwrap();
    assert!(!creds.inner.aws_client.initialized());
}

#[tokio::test]
async fn values_never_show_in_debug_output() {
    let (creds, _) = creds_with(&[("DD_API_KEY", VALUE)]);
    let logs = LogCapture::start();
    let got = creds
        .get(&CredentialSpec::new("Datadog API key").env("DD_API_KEY"))
        .await
        .unwrap()
        .unwrap();
    assert!(!format!("{got:?}").contains(VALUE));
    assert!(!format!("{creds:?}").contains(VALUE));
    let text = logs.text();
    assert!(text.contains("Credential resolved."), "{text}");
    assert!(text.contains("$DD_API_KEY"), "{text}");
    assert!(!text.contains(VALUE), "{text}");
}

#[test]
fn json_field_problems_never_quote_the_secret() {
    let ok = json_field(&format!(r#"{{"api_key": "{VALUE}"}}"#), "api_key").unwrap();
    assert_eq!(ok.expose_secret(), VALUE);

    let cases = [
        (
            format!(r#"{{"app_key": "{VALUE}"}}"#),
            "no field `api_key` (its fields: `app_key`)",
        ),
        (
            format!(r#"{{"api_key": {{"v": "{VALUE}"}}}}"#),
            "is not a string",
        ),
        (format!(r#"["{VALUE}"]"#), "not a JSON object"),
        (VALUE.to_owned(), "not JSON"),
        (format!(r#"{{"api_key": "{VALUE}"#), "not JSON"),
    ];
    for (text, expected) in cases {
        let problem = json_field(&text, "api_key").unwrap_err();
        assert!(problem.contains(expected), "{text}: {problem}");
        assert!(!problem.contains(VALUE), "{problem}");
    }
}
