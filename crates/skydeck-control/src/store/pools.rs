//! The `pools` and `pool_events` tables. A pool's spec and its controller's state are JSON
//! text the [`crate::pools`] room owns; the store keeps them with a version that every change
//! bumps, and every change is conditional on the version it read, so an admin's `PATCH` and
//! the controller's decision (or two replicas' controllers) cannot overwrite each other.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Result, Store, ctx, on_db};

/// Records `events` inside the transaction `tx` (of either driver).
macro_rules! insert_events {
    ($tx:ident, $events:expr) => {
        for e in $events {
            sqlx::query(INSERT_EVENT)
                .bind(&e.id)
                .bind(&e.pool)
                .bind(e.at)
                .bind(&e.kind)
                .bind(&e.reason)
                .bind(&e.inputs)
                .bind(e.cluster_name.as_deref())
                .execute(&mut *$tx)
                .await
                .map_err(ctx("record a pool event"))?;
        }
    };
}

/// The statement that records one event.
const INSERT_EVENT: &str = "INSERT INTO pool_events (id, pool, at, kind, reason, inputs, cluster_name) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// One row of `pools`.
#[derive(Debug, Clone)]
pub struct PoolRow {
    /// The pool's name.
    pub name: String,
    /// `skydeck_contract::PoolSpec` as JSON.
    pub spec: String,
    /// The controller's state as JSON.
    pub state: String,
    /// Bumped by every change.
    pub version: i64,
    /// Deletion was asked.
    pub deleting: bool,
    /// ms since epoch.
    pub created_at: i64,
    /// ms since epoch.
    pub updated_at: i64,
}

/// One row of `pool_events`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Ordered id (see [`event_id`]).
    pub id: String,
    /// The pool.
    pub pool: String,
    /// ms since epoch.
    pub at: i64,
    /// `skydeck_contract::DecisionKind` name.
    pub kind: String,
    /// For people.
    pub reason: String,
    /// JSON object of the decision's inputs.
    pub inputs: String,
    /// The node acted on.
    pub cluster_name: Option<String>,
}

static EVENT_SEQ: AtomicU64 = AtomicU64::new(0);

/// A new event id: the time (15 digits), this process's sequence (10) and 8 random hex digits,
/// so ids sort by time, then by the order one replica wrote them, and two replicas never
/// collide.
pub fn event_id(at_ms: i64) -> String {
    let seq = EVENT_SEQ.fetch_add(1, Ordering::Relaxed) % 10_000_000_000;
    let mut rnd = [0u8; 4];
    getrandom::fill(&mut rnd).expect("the OS has randomness");
    format!(
        "{:015}-{seq:010}-{:08x}",
        at_ms.max(0),
        u32::from_be_bytes(rnd)
    )
}

const POOL_COLUMNS: &str = "name, spec, state, version, deleting, created_at, updated_at";

fn decode_pool<'r, R>(r: &'r R) -> std::result::Result<PoolRow, sqlx::Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(PoolRow {
        name: r.try_get(0)?,
        spec: r.try_get(1)?,
        state: r.try_get(2)?,
        version: r.try_get(3)?,
        deleting: r.try_get::<i64, _>(4)? != 0,
        created_at: r.try_get(5)?,
        updated_at: r.try_get(6)?,
    })
}

fn decode_event<'r, R>(r: &'r R) -> std::result::Result<EventRow, sqlx::Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(EventRow {
        id: r.try_get(0)?,
        pool: r.try_get(1)?,
        at: r.try_get(2)?,
        kind: r.try_get(3)?,
        reason: r.try_get(4)?,
        inputs: r.try_get(5)?,
        cluster_name: r.try_get(6)?,
    })
}

impl Store {
    /// Stores a new pool (version 1) and its first events, in one transaction. Fails with a
    /// unique violation when the name is taken.
    pub async fn insert_pool(
        &self,
        name: &str,
        spec: &str,
        state: &str,
        events: &[EventRow],
    ) -> Result<PoolRow> {
        let now = self.now_ms();
        on_db!(self, write, |pool| {
            let mut tx = pool.begin().await.map_err(ctx("begin a pool insert"))?;
            let sql = format!(
                "INSERT INTO pools (name, spec, state, version, deleting, created_at, updated_at) \
                 VALUES ($1, $2, $3, 1, 0, $4, $4) RETURNING {POOL_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(name)
                .bind(spec)
                .bind(state)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(ctx("insert a pool"))?;
            let row = decode_pool(&row).map_err(ctx("decode a pool"))?;
            insert_events!(tx, events);
            tx.commit().await.map_err(ctx("commit a pool insert"))?;
            Ok(row)
        })
    }

    /// The pool called `name`.
    pub async fn get_pool(&self, name: &str) -> Result<Option<PoolRow>> {
        let sql = format!("SELECT {POOL_COLUMNS} FROM pools WHERE name = $1");
        on_db!(self, read, |pool| {
            let row = sqlx::query(&sql)
                .bind(name)
                .fetch_optional(pool)
                .await
                .map_err(ctx("read a pool"))?;
            row.map(|r| decode_pool(&r))
                .transpose()
                .map_err(ctx("decode a pool"))
        })
    }

    /// Every pool, by name.
    pub async fn pools(&self) -> Result<Vec<PoolRow>> {
        let sql = format!("SELECT {POOL_COLUMNS} FROM pools ORDER BY name");
        on_db!(self, read, |pool| {
            let rows = sqlx::query(&sql)
                .fetch_all(pool)
                .await
                .map_err(ctx("read pools"))?;
            rows.iter()
                .map(decode_pool)
                .collect::<std::result::Result<_, _>>()
                .map_err(ctx("decode a pool"))
        })
    }

    /// Replaces the spec (when given), the state and the deletion flag of `name` if its
    /// version is still `version`, and records `events`, in one transaction. Returns whether
    /// it changed (false: someone else changed the pool since it was read, or it is gone).
    pub async fn update_pool(
        &self,
        name: &str,
        version: i64,
        spec: Option<&str>,
        state: &str,
        deleting: bool,
        events: &[EventRow],
    ) -> Result<bool> {
        let now = self.now_ms();
        on_db!(self, write, |pool| {
            let mut tx = pool.begin().await.map_err(ctx("begin a pool update"))?;
            let n = sqlx::query(
                "UPDATE pools SET spec = COALESCE($1, spec), state = $2, deleting = $3, \
                 version = version + 1, updated_at = $4 WHERE name = $5 AND version = $6",
            )
            .bind(spec)
            .bind(state)
            .bind(deleting as i64)
            .bind(now)
            .bind(name)
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(ctx("update a pool"))?
            .rows_affected();
            if n != 1 {
                return Ok(false);
            }
            insert_events!(tx, events);
            tx.commit().await.map_err(ctx("commit a pool update"))?;
            Ok(true)
        })
    }

    /// Removes `name` and its events if its version is still `version`.
    pub async fn delete_pool(&self, name: &str, version: i64) -> Result<bool> {
        on_db!(self, write, |pool| {
            let mut tx = pool.begin().await.map_err(ctx("begin a pool delete"))?;
            let n = sqlx::query("DELETE FROM pools WHERE name = $1 AND version = $2")
                .bind(name)
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(ctx("delete a pool"))?
                .rows_affected();
            if n != 1 {
                return Ok(false);
            }
            sqlx::query("DELETE FROM pool_events WHERE pool = $1")
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(ctx("delete a pool's events"))?;
            tx.commit().await.map_err(ctx("commit a pool delete"))?;
            Ok(true)
        })
    }

    /// Up to `limit` events of `pool`, newest first, older than the event `before` when given.
    pub async fn pool_events(
        &self,
        pool_name: &str,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EventRow>> {
        const COLS: &str = "id, pool, at, kind, reason, inputs, cluster_name";
        let sql = match before {
            Some(_) => format!(
                "SELECT {COLS} FROM pool_events WHERE pool = $1 AND id < $2 \
                 ORDER BY id DESC LIMIT $3"
            ),
            None => {
                format!("SELECT {COLS} FROM pool_events WHERE pool = $1 ORDER BY id DESC LIMIT $2")
            }
        };
        on_db!(self, read, |pool| {
            let mut q = sqlx::query(&sql).bind(pool_name);
            if let Some(b) = before {
                q = q.bind(b);
            }
            let rows = q
                .bind(limit)
                .fetch_all(pool)
                .await
                .map_err(ctx("read pool events"))?;
            rows.iter()
                .map(decode_event)
                .collect::<std::result::Result<_, _>>()
                .map_err(ctx("decode a pool event"))
        })
    }
}
