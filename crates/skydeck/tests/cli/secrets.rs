//! `skydeck collect` reading its secrets from AWS Secrets Manager (moto on 127.0.0.1, started
//! by scripts/test.sh) through the real AWS SDK.

use skydeck_testkit::datadog::{FakeDatadog, GOOD_KEY};
use skydeck_testkit::{Behavior, FakeSkypilot};

use crate::util::{run, skydeck};

fn moto() -> String {
    std::env::var("SKYDECK_TEST_MOTO_URL").unwrap_or_else(|_| {
        panic!(
            "SKYDECK_TEST_MOTO_URL is not set: this test needs moto's Secrets Manager that \
             scripts/test.sh starts (run the tests with scripts/test.sh)"
        )
    })
}

/// Creates a secret in moto with boto3 from the tools venv (moto[server] brings it).
fn create_secret(name: &str, value: &str) {
    let python = std::env::var("SKYDECK_TEST_PYTOOLS_PYTHON").expect("scripts/test.sh sets it");
    let code = "import sys, boto3\n\
        c = boto3.client('secretsmanager', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
                         aws_access_key_id='test', aws_secret_access_key='test')\n\
        c.create_secret(Name=sys.argv[2], SecretString=sys.argv[3])\n";
    let out = std::process::Command::new(python)
        .args(["-c", code, &moto(), name, value])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn aws_env(cmd: &mut assert_cmd::Command) -> &mut assert_cmd::Command {
    cmd.env("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("DD_API_KEY")
}

#[test]
fn datadog_key_from_a_json_secret_and_a_missing_optional_token() {
    let unique = format!("skydeck-test-{}", std::process::id());
    create_secret(
        &format!("{unique}/datadog"),
        &format!("{{\"api_key\": \"{GOOD_KEY}\"}}"),
    );
    let dd = FakeDatadog::start();
    let sky = FakeSkypilot::start(Behavior::Healthy);
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().join("skydeck.toml");
    std::fs::write(
        &cfg,
        format!(
            "[skypilot]\nendpoint = \"{}\"\ntoken_aws_secret = \"{unique}/skypilot\"\n\
             [[sinks]]\ntype = \"datadog\"\nsite = \"{}\"\n\
             api_key_aws_secret = \"{unique}/datadog#api_key\"\n",
            sky.url(),
            dd.url()
        ),
    )
    .unwrap();
    let mut cmd = skydeck(home.path());
    let r = run(aws_env(&mut cmd).args(["collect", "--config"]).arg(&cfg));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("✓ skypilot:"), "{}", r.stderr);
    assert!(r.stderr.contains("✓ datadog:"), "{}", r.stderr);
    assert!(dd.series().iter().all(|q| q.key_ok));
    // The optional SkyPilot token is missing: one warning naming where it looked.
    let warnings: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("SkyPilot token"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", r.stderr);
    assert!(
        warnings[0].contains(&format!("{unique}/skypilot")),
        "{}",
        warnings[0]
    );
    assert!(!r.all_output().contains(GOOD_KEY));
}

#[test]
fn a_required_key_missing_from_secrets_manager_names_secret_and_region() {
    let dd = FakeDatadog::start();
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().join("skydeck.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[sinks]]\ntype = \"datadog\"\nsite = \"{}\"\napi_key_aws_secret = \"nope/none\"\n\
             [[collectors]]\nname = \"probe\"\ncommand = [\"sh\", \"-c\", \"echo ok 1\"]\n",
            dd.url()
        ),
    )
    .unwrap();
    let mut cmd = skydeck(home.path());
    let r = run(aws_env(&mut cmd)
        .args(["collect", "--no-skypilot", "--config"])
        .arg(&cfg));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("nope/none") && r.stderr.contains("us-east-1"),
        "{}",
        r.stderr
    );
    assert!(dd.series().is_empty());
}
