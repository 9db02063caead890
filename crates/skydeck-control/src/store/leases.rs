//! The `leases` table: a named lease one holder has until it expires (the reconciler runs on
//! one replica at a time). Taking, renewing and stealing an expired lease are one statement.

use super::{Result, Store, ctx, on_db};

impl Store {
    /// Takes or renews the lease `name` for `holder` for `ttl_ms`. Returns whether `holder`
    /// holds it now.
    pub async fn acquire_lease(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<bool> {
        let now = self.now_ms();
        let n = on_db!(self, write, |pool| sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
        )
        .bind(name)
        .bind(holder)
        .bind(now + ttl_ms)
        .bind(now)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(ctx("take the reconciler lease"))?;
        Ok(n == 1)
    }

    /// Gives the lease up (on shutdown), so another replica takes over at once.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        on_db!(self, write, |pool| sqlx::query(
            "DELETE FROM leases WHERE name = $1 AND holder = $2"
        )
        .bind(name)
        .bind(holder)
        .execute(pool)
        .await
        .map(drop))
        .map_err(ctx("release the reconciler lease"))
    }
}
