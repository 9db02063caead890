//! `skydeck control`: the control plane server (admin API, agent API, reconciler).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use secrecy::ExposeSecret;
use skydeck_control::http::{AgentBinary, AppState};
use skydeck_control::node_config::Rules;
use skydeck_control::pools::controller::PoolController;
use skydeck_control::pools::decide::Timing;
use skydeck_control::reconcile::{Observed, Reconciler, ReconcilerConfig};
use skydeck_control::store::Store;
use skydeck_control::token::AdminKeys;
use skydeck_skypilot::target::{CredentialSource, Inputs, resolve, token};
use skydeck_skypilot::{Client, ClientOptions};

use crate::config::AwsSection;
use crate::{credentials, duration};

/// Options of `skydeck control`.
#[derive(Debug, Args)]
pub struct ControlArgs {
    /// Address to listen on.
    #[arg(long, env = "SKYDECK_CONTROL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Database: a SQLite file path (created and migrated on start) or postgres://… .
    /// May hold a password, so its value is never printed.
    #[arg(
        long,
        env = "SKYDECK_DATABASE_URL",
        hide_env_values = true,
        default_value = "skydeck-control.db"
    )]
    pub database_url: String,
    /// SkyPilot API server URL (default: SKYPILOT_API_SERVER_ENDPOINT, then
    /// ~/.sky/config.yaml, then http://127.0.0.1:46580).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// File holding a SkyPilot service-account token (after SKYPILOT_SERVICE_ACCOUNT_TOKEN).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// AWS Secrets Manager secret holding the SkyPilot token (NAME or NAME#json_field), read last.
    #[arg(long, value_name = "SECRET")]
    pub token_aws_secret: Option<String>,
    /// File holding the admin API keys (one per line or comma-separated), read when
    /// SKYDECK_ADMIN_API_KEY is not set.
    #[arg(long, value_name = "PATH")]
    pub admin_key_file: Option<PathBuf>,
    /// AWS Secrets Manager secret holding the admin keys (NAME or NAME#json_field), read last.
    #[arg(long, value_name = "SECRET")]
    pub admin_key_aws_secret: Option<String>,
    /// AWS region for Secrets Manager (default: the SDK's chain).
    #[arg(long)]
    pub aws_region: Option<String>,
    /// URL nodes reach this control plane at (default: http://<listen>).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// The agent binary served to nodes (default: this executable; the agent is `skydeck agent`).
    #[arg(long, value_name = "PATH")]
    pub agent_binary: Option<PathBuf>,
    /// Cluster names are <prefix>-<node id>; clusters with the prefix unknown to the table are
    /// reported.
    #[arg(long, default_value = "skydeck")]
    pub cluster_prefix: String,
    /// Kubernetes contexts nodes may use (repeatable; default: any well-formed name).
    #[arg(long = "kubernetes-context", value_name = "CONTEXT")]
    pub kubernetes_contexts: Vec<String>,
    /// Agents heartbeat this often; three missed make a node unhealthy.
    #[arg(long, value_parser = duration::parse, default_value = "30s")]
    pub heartbeat_interval: Duration,
    /// Reconciler tick.
    #[arg(long, value_parser = duration::parse, default_value = "2s")]
    pub tick: Duration,
    /// Reconciler lease period (failover time of a dead leader).
    #[arg(long, value_parser = duration::parse, default_value = "15s")]
    pub lease_ttl: Duration,
    /// How often a running SkyPilot request of a node is looked at.
    #[arg(long, value_parser = duration::parse, default_value = "5s")]
    pub poll_interval: Duration,
    /// How often SkyPilot's /status is compared with the table.
    #[arg(long, value_parser = duration::parse, default_value = "30s")]
    pub drift_interval: Duration,
    /// Graceful termination waits at most this long for the agent to drain.
    #[arg(long, value_parser = duration::parse, default_value = "2m")]
    pub drain_timeout: Duration,
    /// A node whose agent has not registered this long after its cluster came up is unhealthy.
    #[arg(long, value_parser = duration::parse, default_value = "30m")]
    pub register_timeout: Duration,
    /// Deadline of each call to SkyPilot.
    #[arg(long, value_parser = duration::parse, default_value = "30s")]
    pub skypilot_timeout: Duration,
    /// Nodes the reconciler handles at once.
    #[arg(long, default_value_t = 16)]
    pub max_parallel: usize,
    /// Database connections of this replica.
    #[arg(long, default_value_t = 16)]
    pub db_connections: u32,
    /// Serve the API only; never run the reconciler.
    #[arg(long)]
    pub no_reconciler: bool,
    /// A pool's unhealthy node is terminated and replaced after this long.
    #[arg(long, value_parser = duration::parse, default_value = "2m")]
    pub pool_replace_after: Duration,
    /// A pool skips a placement that ran out of capacity for this long.
    #[arg(long, value_parser = duration::parse, default_value = "10m")]
    pub pool_capacity_backoff: Duration,
    /// This replica's name in the reconciler lease (default: host, pid and a random suffix).
    #[arg(long)]
    pub replica_id: Option<String>,
}

/// Runs the control plane until SIGINT or SIGTERM.
pub async fn run(args: ControlArgs) -> anyhow::Result<ExitCode> {
    let creds = credentials::reader(&AwsSection {
        region: args.aws_region.clone(),
        timeout: None,
    });
    let spec = credentials::admin_api_key(
        args.admin_key_file.as_deref(),
        args.admin_key_aws_secret.as_deref(),
    )?;
    let keys = creds
        .get(&spec)
        .await?
        .map(|r| AdminKeys::parse(r.value.expose_secret()))
        .filter(|k| !k.is_empty())
        .context("the admin API key is empty")?;

    let sky_spec = credentials::skypilot_token(
        args.token_file.as_deref(),
        args.token_aws_secret.as_deref(),
        "--token-aws-secret",
    )?;
    let credential = creds.get(&sky_spec).await?.map(|r| {
        token(
            r.value.expose_secret().to_string(),
            CredentialSource::Provided(r.source.to_string()),
        )
    });
    let target = resolve(&Inputs::from_process(args.endpoint.as_deref(), credential))
        .context("resolving the SkyPilot API server")?;
    tracing::info!(endpoint = %target.endpoint, credential = %target.credential_source(), "SkyPilot API server");
    let sky = Client::new(
        target,
        ClientOptions {
            call_timeout: args.skypilot_timeout,
            ..ClientOptions::default()
        },
    )?;

    let agent_path = match &args.agent_binary {
        Some(p) => p.clone(),
        None => {
            std::env::current_exe().context("locating this executable to serve as the agent")?
        }
    };
    let agent_sha = sha256_file(&agent_path)
        .with_context(|| format!("reading the agent binary {}", agent_path.display()))?;

    let db = Store::connect(&args.database_url, args.db_connections)
        .await
        .context("opening the database (--database-url)")?;
    tracing::info!(kind = ?db.kind(), "database ready");

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr()?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{local}"));
    let public_url = public_url.trim_end_matches('/').to_string();
    url::Url::parse(&public_url).with_context(|| format!("--public-url {public_url:?}"))?;

    let observed = Arc::new(Mutex::new(Observed::default()));
    let wake = Arc::new(tokio::sync::Notify::new());
    let rules = Arc::new(Rules {
        kubernetes_contexts: args.kubernetes_contexts.clone(),
    });
    let state = AppState {
        db: db.clone(),
        admin_keys: Arc::new(keys),
        rules: Arc::clone(&rules),
        cluster_prefix: args.cluster_prefix.clone().into(),
        agent: Arc::new(AgentBinary {
            path: agent_path,
            sha256: agent_sha.clone(),
        }),
        observed: Arc::clone(&observed),
        heartbeat_interval: args.heartbeat_interval,
        wake: Arc::clone(&wake),
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reconciler = if args.no_reconciler {
        None
    } else {
        let holder = args.replica_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "host".into());
            format!("{host}-{}-{:08x}", std::process::id(), fastrand::u32(..))
        });
        let cfg = ReconcilerConfig {
            tick: args.tick,
            lease_ttl: args.lease_ttl,
            heartbeat_interval: args.heartbeat_interval,
            poll_interval: args.poll_interval,
            drift_interval: args.drift_interval,
            drain_timeout: args.drain_timeout,
            register_timeout: args.register_timeout,
            abandoned_after: args.skypilot_timeout * 2,
            max_parallel: args.max_parallel,
            cluster_prefix: args.cluster_prefix.clone(),
            public_url: public_url.clone(),
            agent_sha256: agent_sha,
        };
        let r = Reconciler::new(
            db.clone(),
            sky,
            cfg,
            holder,
            Arc::clone(&observed),
            Arc::clone(&wake),
        )
        .with_pools(PoolController::new(
            db.clone(),
            rules,
            args.cluster_prefix.clone(),
            Timing {
                replace_unhealthy_after_ms: args.pool_replace_after.as_millis() as i64,
                capacity_backoff_ms: args.pool_capacity_backoff.as_millis() as i64,
                ..Timing::default()
            },
        ));
        let mut rx = stop_rx.clone();
        Some(tokio::spawn(r.run(async move {
            let _ = rx.wait_for(|s| *s).await;
        })))
    };

    // One write, so a supervisor reading the line never sees half of it.
    let banner =
        format!("skydeck control listening on http://{local} (nodes reach it at {public_url})\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), banner.as_bytes());
    let app = skydeck_control::http::router(state);
    let mut rx = stop_rx.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = rx.wait_for(|s| *s).await;
    });
    let signals = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    };
    let (served, ()) = tokio::join!(server, signals);
    served.context("serving HTTP")?;
    if let Some(r) = reconciler {
        let _ = tokio::time::timeout(Duration::from_secs(10), r).await;
    }
    db.close().await;
    Ok(ExitCode::SUCCESS)
}

fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(skydeck_control::token::hex(&h.finalize()))
}
