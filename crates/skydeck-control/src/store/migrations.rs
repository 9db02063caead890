//! The schema: one list of migrations both databases run, each once, in a transaction,
//! recorded in `skydeck_migrations`. Types are the ones both databases understand alike
//! (`TEXT`, `BIGINT`, `DOUBLE PRECISION`; booleans are `BIGINT` 0/1).

use super::{Result, Store, ctx, on_db};

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
    (
        3,
        // Pools: the spec and the controller's state as JSON (`skydeck_contract::PoolSpec`,
        // `crate::pools::PoolState`), a version every change bumps (changes are conditional
        // on it), the decision log, the pool each node belongs to, and whether a drain ends
        // in SkyPilot's stop (a warm node) rather than its down.
        "ALTER TABLE nodes ADD COLUMN pool TEXT;
    ALTER TABLE nodes ADD COLUMN stop_on_drain BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE nodes ADD COLUMN stopped_at BIGINT;
    CREATE INDEX nodes_by_pool ON nodes (pool, status);
    CREATE TABLE pools (
        name TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        state TEXT NOT NULL,
        version BIGINT NOT NULL,
        deleting BIGINT NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE TABLE pool_events (
        id TEXT PRIMARY KEY,
        pool TEXT NOT NULL,
        at BIGINT NOT NULL,
        kind TEXT NOT NULL,
        reason TEXT NOT NULL,
        inputs TEXT NOT NULL,
        cluster_name TEXT
    );
    CREATE INDEX pool_events_by_pool ON pool_events (pool, id);",
    ),
];

impl Store {
    /// Runs every migration this database has not run yet.
    pub(super) async fn migrate(&self) -> Result<()> {
        self.migrate_to(i64::MAX).await
    }

    /// Runs the migrations up to `last` (tests build older databases with it).
    pub(super) async fn migrate_to(&self, last: i64) -> Result<()> {
        on_db!(self, write, |pool| {
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS skydeck_migrations \
                 (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .execute(pool)
            .await
            .map_err(ctx("create the migrations table"))?;
            for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= last) {
                let mut tx = pool.begin().await.map_err(ctx("begin a migration"))?;
                // Replicas starting together: the insert of one waits for the other's commit
                // and then does nothing, so each migration runs exactly once.
                let claimed = sqlx::query(
                    "INSERT INTO skydeck_migrations (version, applied_at) VALUES ($1, $2) \
                     ON CONFLICT (version) DO NOTHING",
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
        })
    }
}
