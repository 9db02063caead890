//! The store: the `nodes`, `pools`, `pool_events` and `leases` tables in SQLite (a file, the default) or PostgreSQL.
//!
//! Both databases run the same migrations ([`migrations`]) and the same SQL text (`$1`
//! placeholders, which SQLite reads by number too), each through sqlx's own driver for that
//! database rather than the `Any` driver: the `Any` driver copies every value of every row into
//! an intermediate `AnyValue` and then decodes it again, which made a page of 100 nodes cost
//! several times the query itself (docs/benchmarks.md, control section, has the measurements).
//! [`on_db!`] writes each query once and expands it for both drivers, so the two cannot drift.
//! One exception: on SQLite a list page is read as one JSON value built by SQLite around the
//! same query ([`Store::list`] says why), decoded into the same rows.
//!
//! SQLite has one writer at a time however many connections try: the store keeps a pool of
//! reader connections and a pool of exactly one writer, so concurrent writes queue in the pool
//! (first come, first served) instead of spinning in SQLite's busy handler, and reads never
//! wait for a write (WAL).
//!
//! Every state change is one conditional `UPDATE … WHERE status = <expected>`: two replicas or
//! an API call racing the reconciler cannot both win, and nothing is read, changed in memory
//! and written back. Times are integer milliseconds since the epoch, the one time type both
//! databases store the same way.

mod leases;
mod migrations;
mod nodes;
mod pools;
#[cfg(test)]
mod tests;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::clock::SharedClock;

pub use nodes::{ListQuery, MetricRow, NewNode, Node};
pub use pools::{EventRow, PoolRow, event_id};

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

/// The database handle. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    clock: SharedClock,
}

/// The pools behind a [`Store`], one variant per database.
#[derive(Debug, Clone)]
enum Db {
    /// SQLite: readers, and the one writer.
    Sqlite { read: SqlitePool, write: SqlitePool },
    /// PostgreSQL: one pool, the server orders concurrent writers itself.
    Postgres(PgPool),
}

/// Which database is behind the handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Runs `$body` with `$pool` bound to the store's pool for reads (`read`) or writes (`write`),
/// once per database driver: the same tokens compile against `SqlitePool` and `PgPool`, so
/// every query is written once and decoded by its own driver.
macro_rules! on_db {
    ($store:expr, read, |$pool:ident| $body:expr) => {
        match &$store.db {
            $crate::store::Db::Sqlite { read: $pool, .. } => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
    ($store:expr, write, |$pool:ident| $body:expr) => {
        match &$store.db {
            $crate::store::Db::Sqlite { write: $pool, .. } => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_db;

/// How long a caller waits for a free connection before the request fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

impl Store {
    /// Connects (creating a SQLite file if needed) and migrates. `url` is `sqlite://PATH`,
    /// a plain path, or `postgres://…`; `max_connections` sizes the pool (SQLite: the readers;
    /// it always has one writer besides).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store> {
        Store::connect_with_clock(url, max_connections, crate::clock::system()).await
    }

    /// [`Store::connect`] with the clock every stored time is read from.
    pub async fn connect_with_clock(
        url: &str,
        max_connections: u32,
        clock: SharedClock,
    ) -> Result<Store> {
        let store = Store::open(url, max_connections, clock).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens the pools without migrating.
    async fn open(url: &str, max_connections: u32, clock: SharedClock) -> Result<Store> {
        let max_connections = max_connections.max(1);
        let db = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url).map_err(ctx("read the PostgreSQL URL"))?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(opts)
                .await
                .map_err(ctx("connect to PostgreSQL"))?;
            Db::Postgres(pool)
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            let opts = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
                .map_err(ctx("read the SQLite path"))?
                .create_if_missing(true)
                // WAL: readers do not block the writer; NORMAL is durable across a process
                // crash in WAL mode; a writer held up by another process is waited for.
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10));
            // The writer first: it creates the file and switches it to WAL before any reader
            // opens it.
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(opts.clone())
                .await
                .map_err(ctx("open the SQLite database"))?;
            let read = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(opts)
                .await
                .map_err(ctx("open the SQLite database for reading"))?;
            Db::Sqlite { read, write }
        };
        Ok(Store { db, clock })
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
        match self.db {
            Db::Sqlite { .. } => Kind::Sqlite,
            Db::Postgres(_) => Kind::Postgres,
        }
    }

    /// Checks the database answers (readiness).
    pub async fn ping(&self) -> Result<()> {
        on_db!(self, read, |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(drop))
        .map_err(ctx("ping"))
    }

    /// Closes the pools.
    pub async fn close(&self) {
        match &self.db {
            Db::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Db::Postgres(pool) => pool.close().await,
        }
    }
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
