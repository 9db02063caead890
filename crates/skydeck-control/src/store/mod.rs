//! The store: the `nodes` and `leases` tables in SQLite (a file, the default) or PostgreSQL, through sqlx's Any driver so both
//! run the same migrations and the same queries (`$1` placeholders, which SQLite accepts too).
//!
//! Every state change is one conditional `UPDATE … WHERE status = <expected>`: two replicas or
//! an API call racing the reconciler cannot both win, and nothing is read, changed in memory
//! and written back. Times are integer milliseconds since the epoch, the one time type both
//! databases store the same way.

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use skydeck_contract::{Engine, Heartbeat};

use crate::clock::SharedClock;
use crate::status::{NodeStatus, timestamp_column};

/// A database error, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("database: {action}: {source}")]
pub struct StoreError {
    action: &'static str,
    #[source]
    source: sqlx::Error,
}

fn ctx(action: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError { action, source }
}

/// Result of database calls.
pub type Result<T> = std::result::Result<T, StoreError>;

/// The migrations, in order. Each runs once, inside a transaction, recorded in
/// `skydeck_migrations`. Types are the ones both databases understand alike.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE nodes (
        id TEXT PRIMARY KEY,
        cluster_name TEXT NOT NULL UNIQUE,
        provider TEXT NOT NULL,
        region TEXT NOT NULL,
        gpu_type TEXT NOT NULL,
        gpu_count BIGINT NOT NULL,
        model_name TEXT NOT NULL,
        use_spot BIGINT NOT NULL,
        disk_size BIGINT NOT NULL,
        vllm_args TEXT NOT NULL,
        status TEXT NOT NULL,
        status_reason TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        launch_intent_at BIGINT,
        launch_request_id TEXT,
        launching_at BIGINT,
        initializing_at BIGINT,
        active_at BIGINT,
        unhealthy_at BIGINT,
        draining_at BIGINT,
        terminated_at BIGINT,
        failed_at BIGINT,
        drain_force BIGINT NOT NULL DEFAULT 0,
        down_intent_at BIGINT,
        down_request_id TEXT,
        hourly_price DOUBLE PRECISION,
        last_heartbeat_at BIGINT,
        agent_token_hash TEXT NOT NULL UNIQUE,
        attempts BIGINT NOT NULL DEFAULT 0,
        next_attempt_at BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX nodes_by_status ON nodes (status, next_attempt_at);
    CREATE INDEX nodes_by_created ON nodes (created_at, id);
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at BIGINT NOT NULL
    );",
    ),
    (
        2,
        // The engine a node runs, the container image it may name, and the agent's latest
        // heartbeat report (JSON of `skydeck_contract::Heartbeat`).
        "ALTER TABLE nodes RENAME COLUMN vllm_args TO engine_args;
    ALTER TABLE nodes ADD COLUMN engine TEXT NOT NULL DEFAULT 'vllm';
    ALTER TABLE nodes ADD COLUMN image TEXT;
    ALTER TABLE nodes ADD COLUMN heartbeat TEXT;",
    ),
];

/// All columns of `nodes`, in [`Node::from_row`]'s order.
const COLUMNS: &str = "id, cluster_name, provider, region, gpu_type, gpu_count, model_name, \
    use_spot, disk_size, engine_args, status, status_reason, created_at, updated_at, \
    launch_intent_at, launch_request_id, launching_at, initializing_at, active_at, unhealthy_at, \
    draining_at, terminated_at, failed_at, drain_force, down_intent_at, down_request_id, \
    hourly_price, last_heartbeat_at, attempts, next_attempt_at, engine, image, heartbeat";

/// [`COLUMNS`] without the heartbeat report (lists do not show it), same positions.
const LIST_COLUMNS: &str = "id, cluster_name, provider, region, gpu_type, gpu_count, model_name, \
    use_spot, disk_size, engine_args, status, status_reason, created_at, updated_at, \
    launch_intent_at, launch_request_id, launching_at, initializing_at, active_at, unhealthy_at, \
    draining_at, terminated_at, failed_at, drain_force, down_intent_at, down_request_id, \
    hourly_price, last_heartbeat_at, attempts, next_attempt_at, engine, image, CAST(NULL AS TEXT)";

/// One row of `nodes` (the agent token hash is never read back out).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Node {
    /// UUID.
    pub id: String,
    /// SkyPilot cluster name.
    pub cluster_name: String,
    /// Provider.
    pub provider: String,
    /// Region or Kubernetes context.
    pub region: String,
    /// GPU name.
    pub gpu_type: String,
    /// GPUs per node.
    pub gpu_count: i64,
    /// Model id.
    pub model_name: String,
    /// Spot capacity.
    pub use_spot: bool,
    /// Disk GB.
    pub disk_size: i64,
    /// The engine's extra arguments.
    pub engine_args: Vec<String>,
    /// Lifecycle state.
    pub status: NodeStatus,
    /// Why it is in that state (SkyPilot's error for `failed`).
    pub status_reason: Option<String>,
    /// ms since epoch.
    pub created_at: i64,
    /// ms since epoch.
    pub updated_at: i64,
    /// When the launch was about to be submitted (set before the request).
    pub launch_intent_at: Option<i64>,
    /// SkyPilot's request id of the launch.
    pub launch_request_id: Option<String>,
    /// Entered `launching`.
    pub launching_at: Option<i64>,
    /// Entered `initializing`.
    pub initializing_at: Option<i64>,
    /// Entered `active` (first time).
    pub active_at: Option<i64>,
    /// Entered `unhealthy` (last time).
    pub unhealthy_at: Option<i64>,
    /// Entered `draining`.
    pub draining_at: Option<i64>,
    /// Entered `terminated`.
    pub terminated_at: Option<i64>,
    /// Entered `failed`.
    pub failed_at: Option<i64>,
    /// Terminate without waiting for in-flight work.
    pub drain_force: bool,
    /// When `/down` was about to be submitted.
    pub down_intent_at: Option<i64>,
    /// SkyPilot's request id of the teardown.
    pub down_request_id: Option<String>,
    /// USD per hour, from SkyPilot's cost report.
    pub hourly_price: Option<f64>,
    /// Last heartbeat, ms since epoch.
    pub last_heartbeat_at: Option<i64>,
    /// Consecutive failed attempts of the reconciler (backoff).
    pub attempts: i64,
    /// The reconciler leaves the node alone until then.
    pub next_attempt_at: i64,
    /// The inference server.
    pub engine: Engine,
    /// The engine's container image (`docker:…`).
    pub image: Option<String>,
    /// The agent's latest heartbeat report (read by single-node reads only).
    pub heartbeat: Option<Heartbeat>,
}

impl Node {
    fn from_row(r: &AnyRow) -> std::result::Result<Node, sqlx::Error> {
        let status: String = r.try_get(10)?;
        let args: String = r.try_get(9)?;
        Ok(Node {
            id: r.try_get(0)?,
            cluster_name: r.try_get(1)?,
            provider: r.try_get(2)?,
            region: r.try_get(3)?,
            gpu_type: r.try_get(4)?,
            gpu_count: r.try_get(5)?,
            model_name: r.try_get(6)?,
            use_spot: r.try_get::<i64, _>(7)? != 0,
            disk_size: r.try_get(8)?,
            engine_args: serde_json::from_str(&args).unwrap_or_default(),
            status: NodeStatus::parse(&status).ok_or_else(|| sqlx::Error::ColumnDecode {
                index: "status".into(),
                source: format!("unknown node status {status:?}").into(),
            })?,
            status_reason: r.try_get(11)?,
            created_at: r.try_get(12)?,
            updated_at: r.try_get(13)?,
            launch_intent_at: r.try_get(14)?,
            launch_request_id: r.try_get(15)?,
            launching_at: r.try_get(16)?,
            initializing_at: r.try_get(17)?,
            active_at: r.try_get(18)?,
            unhealthy_at: r.try_get(19)?,
            draining_at: r.try_get(20)?,
            terminated_at: r.try_get(21)?,
            failed_at: r.try_get(22)?,
            drain_force: r.try_get::<i64, _>(23)? != 0,
            down_intent_at: r.try_get(24)?,
            down_request_id: r.try_get(25)?,
            hourly_price: r.try_get(26)?,
            last_heartbeat_at: r.try_get(27)?,
            attempts: r.try_get(28)?,
            next_attempt_at: r.try_get(29)?,
            engine: {
                let e: String = r.try_get(30)?;
                Engine::parse(&e).ok_or_else(|| sqlx::Error::ColumnDecode {
                    index: "engine".into(),
                    source: format!("unknown engine {e:?}").into(),
                })?
            },
            image: r.try_get(31)?,
            heartbeat: r
                .try_get::<Option<String>, _>(32)?
                // A report that no longer parses (an older agent's) is shown as absent rather
                // than failing every read of the node.
                .and_then(|j| serde_json::from_str(&j).ok()),
        })
    }
}

impl Node {
    /// The validated spec the row was created from.
    pub fn spec(&self) -> Option<crate::node_config::NodeSpec> {
        Some(crate::node_config::NodeSpec {
            node_id: uuid::Uuid::try_parse(&self.id).ok()?,
            provider: crate::offerings::Provider::parse(&self.provider)?,
            region: self.region.clone(),
            gpu: self.gpu_type.clone(),
            gpu_count: u32::try_from(self.gpu_count).ok()?,
            model: self.model_name.clone(),
            use_spot: self.use_spot,
            disk_size: u32::try_from(self.disk_size).ok()?,
            engine: self.engine,
            image: self.image.clone(),
            engine_args: self.engine_args.clone(),
        })
    }
}

/// A new node as the API stores it.
#[derive(Debug, Clone)]
pub struct NewNode<'a> {
    /// UUID.
    pub id: &'a str,
    /// Cluster name.
    pub cluster_name: &'a str,
    /// Provider.
    pub provider: &'a str,
    /// Region.
    pub region: &'a str,
    /// GPU.
    pub gpu_type: &'a str,
    /// GPU count.
    pub gpu_count: i64,
    /// Model.
    pub model_name: &'a str,
    /// Spot.
    pub use_spot: bool,
    /// Disk.
    pub disk_size: i64,
    /// The engine.
    pub engine: Engine,
    /// The engine's container image.
    pub image: Option<&'a str>,
    /// The engine's extra arguments.
    pub engine_args: &'a [String],
    /// sha256 of the agent token (hex).
    pub agent_token_hash: &'a str,
}

/// Filters and page of `GET /admin/nodes`.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only these statuses (empty = all).
    pub status: Vec<NodeStatus>,
    /// Only this provider.
    pub provider: Option<String>,
    /// Only this GPU.
    pub gpu: Option<String>,
    /// Only this model.
    pub model: Option<String>,
    /// Rows after this `(created_at, id)`.
    pub after: Option<(i64, String)>,
    /// Page size.
    pub limit: i64,
}

/// The database handle. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    kind: Kind,
    clock: SharedClock,
}

/// Which database is behind the handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Store {
    /// Connects (creating a SQLite file if needed) and migrates. `url` is `sqlite://PATH`,
    /// a plain path, or `postgres://…`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store> {
        Store::connect_with_clock(url, max_connections, crate::clock::system()).await
    }

    /// [`Store::connect`] with the clock every stored time is read from.
    pub async fn connect_with_clock(
        url: &str,
        max_connections: u32,
        clock: SharedClock,
    ) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (url, kind) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (url.to_string(), Kind::Postgres)
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            let sep = if path.contains('?') { '&' } else { '?' };
            (format!("sqlite://{path}{sep}mode=rwc"), Kind::Sqlite)
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if kind == Kind::Sqlite {
                        // WAL: readers do not block the writer; a busy writer is waited for,
                        // not failed; NORMAL is durable across a process crash in WAL mode.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(ctx("connect"))?;
        let db = Store { pool, kind, clock };
        db.migrate().await?;
        Ok(db)
    }

    /// Now, by the store's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The store's clock.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Which database this is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS skydeck_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .execute(&self.pool)
        .await
        .map_err(ctx("create the migrations table"))?;
        for (version, sql) in MIGRATIONS {
            let mut tx = self.pool.begin().await.map_err(ctx("begin a migration"))?;
            // Replicas starting together: the insert of one waits for the other's commit and
            // then does nothing, so each migration runs exactly once.
            let claimed = sqlx::query(
                "INSERT INTO skydeck_migrations (version, applied_at) VALUES ($1, $2) ON CONFLICT (version) DO NOTHING",
            )
            .bind(version)
            .bind(self.now_ms())
            .execute(&mut *tx)
            .await
            .map_err(ctx("record a migration"))?
            .rows_affected();
            if claimed == 1 {
                for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                    sqlx::query(stmt)
                        .execute(&mut *tx)
                        .await
                        .map_err(ctx("run a migration"))?;
                }
                tracing::info!(version, "database migrated");
            }
            tx.commit().await.map_err(ctx("commit a migration"))?;
        }
        Ok(())
    }

    /// Stores a new node in `requested`. Fails on a duplicate id or cluster name.
    pub async fn insert(&self, n: &NewNode<'_>) -> Result<Node> {
        let now = self.now_ms();
        let args = serde_json::to_string(n.engine_args).expect("strings serialize");
        let sql = format!(
            "INSERT INTO nodes (id, cluster_name, provider, region, gpu_type, gpu_count, model_name, \
             use_spot, disk_size, engine_args, status, created_at, updated_at, agent_token_hash, \
             engine, image) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'requested', $11, $11, $12, $13, $14) \
             RETURNING {COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(n.id)
            .bind(n.cluster_name)
            .bind(n.provider)
            .bind(n.region)
            .bind(n.gpu_type)
            .bind(n.gpu_count)
            .bind(n.model_name)
            .bind(n.use_spot as i64)
            .bind(n.disk_size)
            .bind(args)
            .bind(now)
            .bind(n.agent_token_hash)
            .bind(n.engine.as_str())
            .bind(n.image)
            .fetch_one(&self.pool)
            .await
            .map_err(ctx("insert a node"))?;
        Node::from_row(&row).map_err(ctx("decode a node"))
    }

    /// A node by cluster name.
    pub async fn get(&self, cluster_name: &str) -> Result<Option<Node>> {
        self.one_by("cluster_name", cluster_name).await
    }

    /// The node whose `column` (a unique one) is `value`.
    async fn one_by(&self, column: &'static str, value: &str) -> Result<Option<Node>> {
        let sql = format!("SELECT {COLUMNS} FROM nodes WHERE {column} = $1");
        let row = sqlx::query(&sql)
            .bind(value)
            .fetch_optional(&self.pool)
            .await
            .map_err(ctx("read a node"))?;
        row.map(|r| Node::from_row(&r))
            .transpose()
            .map_err(ctx("decode a node"))
    }

    /// The node whose agent token hashes to `hash`.
    pub async fn by_token_hash(&self, hash: &str) -> Result<Option<Node>> {
        self.one_by("agent_token_hash", hash).await
    }

    /// One page of nodes, oldest first.
    pub async fn list(&self, q: &ListQuery) -> Result<Vec<Node>> {
        let mut sql = format!("SELECT {LIST_COLUMNS} FROM nodes WHERE 1 = 1");
        let mut binds: Vec<Bind> = Vec::new();
        if !q.status.is_empty() {
            sql.push_str(" AND status IN (");
            for (i, s) in q.status.iter().enumerate() {
                binds.push(Bind::Text(s.as_str().to_string()));
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${}", binds.len()));
            }
            sql.push(')');
        }
        for (col, v) in [
            ("provider", &q.provider),
            ("gpu_type", &q.gpu),
            ("model_name", &q.model),
        ] {
            if let Some(v) = v {
                binds.push(Bind::Text(v.clone()));
                sql.push_str(&format!(" AND {col} = ${}", binds.len()));
            }
        }
        if let Some((at, id)) = &q.after {
            binds.push(Bind::Int(*at));
            let a = binds.len();
            binds.push(Bind::Text(id.clone()));
            let b = binds.len();
            sql.push_str(&format!(
                " AND (created_at > ${a} OR (created_at = ${a} AND id > ${b}))"
            ));
        }
        binds.push(Bind::Int(q.limit));
        sql.push_str(&format!(" ORDER BY created_at, id LIMIT ${}", binds.len()));
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = match b {
                Bind::Text(s) => query.bind(s),
                Bind::Int(i) => query.bind(i),
            };
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(ctx("list nodes"))?;
        decode_all(&rows)
    }

    /// Nodes the reconciler should step now: those with SkyPilot work under way, not backing
    /// off. Active and unhealthy nodes are checked in bulk (heartbeats, drift), not one by one.
    pub async fn due(&self, now: i64, limit: i64) -> Result<Vec<Node>> {
        let sql = format!(
            "SELECT {LIST_COLUMNS} FROM nodes \
             WHERE status IN ('requested', 'launching', 'initializing', 'draining') \
             AND next_attempt_at <= $1 ORDER BY next_attempt_at, created_at LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(ctx("read due nodes"))?;
        decode_all(&rows)
    }

    /// Every node that is not final (for drift checks and metrics).
    pub async fn live(&self) -> Result<Vec<Node>> {
        let sql = format!(
            "SELECT {LIST_COLUMNS} FROM nodes WHERE status NOT IN ('terminated', 'failed')"
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(ctx("read live nodes"))?;
        decode_all(&rows)
    }

    /// Moves `id` from `from` to `to` (stamping `to`'s time column and the reason) when it is
    /// still in `from`. Returns whether it moved.
    pub async fn transition(
        &self,
        id: &str,
        from: &[NodeStatus],
        to: NodeStatus,
        reason: Option<&str>,
    ) -> Result<bool> {
        let now = self.now_ms();
        let col = timestamp_column(to);
        let mut sql = format!(
            "UPDATE nodes SET status = $1, {col} = $2, status_reason = $3, updated_at = $2, \
             attempts = 0, next_attempt_at = 0 WHERE id = $4 AND status IN ("
        );
        for i in 0..from.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", 5 + i));
        }
        sql.push(')');
        let mut q = sqlx::query(&sql)
            .bind(to.as_str())
            .bind(now)
            .bind(reason)
            .bind(id);
        for s in from {
            q = q.bind(s.as_str());
        }
        let n = q
            .execute(&self.pool)
            .await
            .map_err(ctx("change a node's status"))?
            .rows_affected();
        Ok(n == 1)
    }

    /// Marks that the launch of `id` is about to be submitted, with the hash of the agent token
    /// the task will carry. Only one caller wins: the claim must still be `prev` (none, or an
    /// abandoned earlier claim).
    pub async fn claim_launch(
        &self,
        id: &str,
        prev: Option<i64>,
        token_hash: &str,
    ) -> Result<bool> {
        let now = self.now_ms();
        let q = match prev {
            Some(prev) => sqlx::query(
                "UPDATE nodes SET launch_intent_at = $1, updated_at = $1, agent_token_hash = $2 \
                 WHERE id = $3 AND status = 'requested' AND launch_request_id IS NULL \
                 AND launch_intent_at = $4",
            )
            .bind(now)
            .bind(token_hash)
            .bind(id)
            .bind(prev),
            None => sqlx::query(
                "UPDATE nodes SET launch_intent_at = $1, updated_at = $1, agent_token_hash = $2 \
                 WHERE id = $3 AND status = 'requested' AND launch_request_id IS NULL \
                 AND launch_intent_at IS NULL",
            )
            .bind(now)
            .bind(token_hash)
            .bind(id),
        };
        let n = q
            .execute(&self.pool)
            .await
            .map_err(ctx("claim a launch"))?
            .rows_affected();
        Ok(n == 1)
    }

    /// Drops a claim whose launch SkyPilot certainly refused, so the next attempt starts clean.
    pub async fn release_launch(&self, id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE nodes SET launch_intent_at = NULL WHERE id = $1 AND status = 'requested' AND launch_request_id IS NULL",
        )
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(ctx("release a launch claim"))?;
        Ok(())
    }

    /// Stores the launch's request id and moves a `requested` node to `launching`.
    pub async fn launch_submitted(&self, id: &str, request_id: &str) -> Result<bool> {
        let now = self.now_ms();
        let n = sqlx::query(
            // A terminate may have moved the node to draining while the launch was being
            // sent: the id is stored all the same, so the teardown waits for that launch.
            "UPDATE nodes SET launch_request_id = $1, \
             launching_at = CASE WHEN status = 'requested' THEN $2 ELSE launching_at END, \
             status = CASE WHEN status = 'requested' THEN 'launching' ELSE status END, \
             updated_at = $2, attempts = 0, next_attempt_at = 0 \
             WHERE id = $3 AND status IN ('requested', 'draining') AND launch_request_id IS NULL",
        )
        .bind(request_id)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(ctx("store a launch request id"))?
        .rows_affected();
        Ok(n == 1)
    }

    /// Marks that `/down` of `id` is about to be submitted. Only one caller wins.
    pub async fn claim_down(&self, id: &str) -> Result<bool> {
        let now = self.now_ms();
        let n = sqlx::query(
            "UPDATE nodes SET down_intent_at = $1, updated_at = $1 \
             WHERE id = $2 AND status = 'draining' AND down_intent_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(ctx("claim a teardown"))?
        .rows_affected();
        Ok(n == 1)
    }

    /// Stores the teardown's request id.
    pub async fn down_submitted(&self, id: &str, request_id: &str) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE nodes SET down_request_id = $1, updated_at = $2 \
             WHERE id = $3 AND status = 'draining' AND down_request_id IS NULL",
        )
        .bind(request_id)
        .bind(self.now_ms())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(ctx("store a teardown request id"))?
        .rows_affected();
        Ok(n == 1)
    }

    /// Forgets a teardown attempt that SkyPilot did not complete, so it is tried again.
    pub async fn reset_down(&self, id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE nodes SET down_intent_at = NULL, down_request_id = NULL, updated_at = $1 \
             WHERE id = $2 AND status = 'draining'",
        )
        .bind(self.now_ms())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(ctx("reset a teardown"))?;
        Ok(())
    }

    /// Asks for termination: any live state moves to `draining` (with `force`). Returns
    /// whether it moved.
    pub async fn request_terminate(&self, id: &str, force: bool) -> Result<bool> {
        let now = self.now_ms();
        let n = sqlx::query(
            "UPDATE nodes SET status = 'draining', draining_at = $1, updated_at = $1, \
             drain_force = $2, status_reason = $3, attempts = 0, next_attempt_at = 0 \
             WHERE id = $4 AND status IN ('requested', 'launching', 'initializing', 'active', 'unhealthy')",
        )
        .bind(now)
        .bind(force as i64)
        .bind(if force {
            "terminate requested (force)"
        } else {
            "terminate requested"
        })
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(ctx("request a termination"))?
        .rows_affected();
        Ok(n == 1)
    }

    /// Makes a draining node's termination immediate.
    pub async fn force_drain(&self, id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE nodes SET drain_force = 1, next_attempt_at = 0 WHERE id = $1 AND status = 'draining'",
        )
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(ctx("force a termination"))?;
        Ok(())
    }

    /// Backs off `id` after a failed attempt: retried after `delay_ms`.
    pub async fn back_off(&self, id: &str, delay_ms: i64, reason: &str) -> Result<()> {
        sqlx::query(
            "UPDATE nodes SET attempts = attempts + 1, next_attempt_at = $1, status_reason = $2 WHERE id = $3",
        )
        .bind(self.now_ms() + delay_ms)
        .bind(reason)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(ctx("back off a node"))?;
        Ok(())
    }

    /// Leaves `id` alone until `at` (a node that is only waiting).
    pub async fn wait_until(&self, id: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE nodes SET next_attempt_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(ctx("schedule a node"))?;
        Ok(())
    }

    /// Records a heartbeat; an `unhealthy` node becomes `active` again, an `initializing` one
    /// `active` for the first time. Returns the node after the change.
    pub async fn heartbeat(&self, id: &str, report: Option<&Heartbeat>) -> Result<Option<Node>> {
        let now = self.now_ms();
        let report = report.map(|r| serde_json::to_string(r).expect("a report serializes"));
        sqlx::query(
            "UPDATE nodes SET last_heartbeat_at = $1, updated_at = $1, \
             heartbeat = COALESCE($3, heartbeat), \
             active_at = CASE WHEN status IN ('initializing', 'launching') THEN $1 ELSE active_at END, \
             status_reason = CASE WHEN status IN ('initializing', 'launching', 'unhealthy') THEN NULL ELSE status_reason END, \
             status = CASE WHEN status IN ('initializing', 'launching', 'unhealthy') THEN 'active' ELSE status END \
             WHERE id = $2 AND status IN ('launching', 'initializing', 'active', 'unhealthy', 'draining')",
        )
        .bind(now)
        .bind(id)
        .bind(report)
        .execute(&self.pool)
        .await
        .map_err(ctx("record a heartbeat"))?;
        self.one_by("id", id).await
    }

    /// Active nodes whose last heartbeat is older than `before` become `unhealthy`.
    pub async fn mark_silent_unhealthy(&self, before: i64) -> Result<u64> {
        let now = self.now_ms();
        let n = sqlx::query(
            "UPDATE nodes SET status = 'unhealthy', unhealthy_at = $1, updated_at = $1, \
             status_reason = 'no heartbeat for three intervals' \
             WHERE status = 'active' AND COALESCE(last_heartbeat_at, active_at) < $2",
        )
        .bind(now)
        .bind(before)
        .execute(&self.pool)
        .await
        .map_err(ctx("mark silent nodes"))?
        .rows_affected();
        Ok(n)
    }

    /// Stores a node's hourly price.
    pub async fn set_price(&self, id: &str, price: f64) -> Result<()> {
        sqlx::query("UPDATE nodes SET hourly_price = $1 WHERE id = $2")
            .bind(price)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(ctx("store a price"))?;
        Ok(())
    }

    /// Takes or renews the lease `name` for `holder` for `ttl_ms`. Returns whether `holder`
    /// holds it now.
    pub async fn acquire_lease(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<bool> {
        let now = self.now_ms();
        let n = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
        )
        .bind(name)
        .bind(holder)
        .bind(now + ttl_ms)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(ctx("take the reconciler lease"))?
        .rows_affected();
        Ok(n == 1)
    }

    /// Gives the lease up (on shutdown), so another replica takes over at once.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(ctx("release the reconciler lease"))?;
        Ok(())
    }

    /// Counts by (status, provider, gpu) and the data the metrics need, in one pass.
    pub async fn metric_rows(&self) -> Result<Vec<MetricRow>> {
        let rows = sqlx::query(
            "SELECT status, provider, gpu_type, launching_at, initializing_at, active_at, \
             last_heartbeat_at, hourly_price, cluster_name, engine, \
             CASE WHEN status IN ('active', 'unhealthy', 'draining') THEN heartbeat END FROM nodes",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(ctx("read metrics"))?;
        rows.iter()
            .map(|r| {
                Ok(MetricRow {
                    status: r.try_get(0)?,
                    provider: r.try_get(1)?,
                    gpu: r.try_get(2)?,
                    launching_at: r.try_get(3)?,
                    initializing_at: r.try_get(4)?,
                    active_at: r.try_get(5)?,
                    last_heartbeat_at: r.try_get(6)?,
                    hourly_price: r.try_get(7)?,
                    cluster_name: r.try_get(8)?,
                    engine: r.try_get(9)?,
                    heartbeat: r
                        .try_get::<Option<String>, _>(10)?
                        .and_then(|j| serde_json::from_str(&j).ok()),
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(ctx("decode metrics"))
    }

    /// Checks the database answers (readiness).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(ctx("ping"))?;
        Ok(())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// What metrics need of one node.
#[derive(Debug, Clone)]
pub struct MetricRow {
    /// Status name.
    pub status: String,
    /// Provider.
    pub provider: String,
    /// GPU.
    pub gpu: String,
    /// Entered launching.
    pub launching_at: Option<i64>,
    /// Entered initializing.
    pub initializing_at: Option<i64>,
    /// Entered active.
    pub active_at: Option<i64>,
    /// Last heartbeat.
    pub last_heartbeat_at: Option<i64>,
    /// USD per hour.
    pub hourly_price: Option<f64>,
    /// Cluster name.
    pub cluster_name: String,
    /// Engine name.
    pub engine: String,
    /// The latest heartbeat report of a node that is serving (active, unhealthy, draining).
    pub heartbeat: Option<Heartbeat>,
}

fn decode_all(rows: &[AnyRow]) -> Result<Vec<Node>> {
    rows.iter()
        .map(Node::from_row)
        .collect::<std::result::Result<_, _>>()
        .map_err(ctx("decode a node"))
}

enum Bind {
    Text(String),
    Int(i64),
}

impl StoreError {
    /// Whether the error is a unique-constraint violation (a duplicate id or name).
    pub fn is_unique_violation(&self) -> bool {
        match &self.source {
            sqlx::Error::Database(e) => {
                e.is_unique_violation()
                    || e.message().contains("UNIQUE constraint failed")
                    || e.code().as_deref() == Some("23505")
            }
            _ => false,
        }
    }
}
