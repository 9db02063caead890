//! The `nodes` table: the rows, their decoding (one generic decoder both drivers share, by
//! column position), and every read and conditional state change the API and the reconciler
//! make.

use skydeck_contract::{Engine, Heartbeat};

use super::{Result, Store, ctx, on_db};
use crate::status::{NodeStatus, timestamp_column};

/// Every column of `nodes` but the heartbeat report, in [`decode_node`]'s order, as a literal
/// so that `concat!` builds each fixed query at compile time (one string, one cached prepared
/// statement per connection).
macro_rules! row_columns {
    () => {
        concat!(
            row_columns_before_price!(),
            "hourly_price",
            row_columns_after_price!()
        )
    };
}

/// [`row_columns!`] up to the price, which SQLite's JSON functions would print with 15
/// significant digits only ([`json_row_columns!`] prints it in full).
macro_rules! row_columns_before_price {
    () => {
        "id, cluster_name, provider, region, gpu_type, gpu_count, model_name, \
         use_spot, disk_size, engine_args, status, status_reason, created_at, updated_at, \
         launch_intent_at, launch_request_id, launching_at, initializing_at, active_at, \
         unhealthy_at, draining_at, terminated_at, failed_at, drain_force, down_intent_at, \
         down_request_id, "
    };
}

/// [`row_columns!`] after the price.
macro_rules! row_columns_after_price {
    () => {
        ", last_heartbeat_at, attempts, next_attempt_at, engine, image, pool, stop_on_drain, \
         stopped_at"
    };
}

/// The names of [`row_columns!`] as the outer query of a SQLite JSON page reads them: the
/// price as text with 17 significant digits (a double's full precision; `json_array` would
/// round it to 15), read back by [`price`].
macro_rules! json_row_columns {
    () => {
        concat!(
            row_columns_before_price!(),
            "CASE WHEN hourly_price IS NULL THEN NULL ELSE printf('%!.17g', hourly_price) END",
            row_columns_after_price!()
        )
    };
}

/// All columns of `nodes`, in [`decode_node`]'s order.
macro_rules! columns {
    () => {
        concat!(row_columns!(), ", heartbeat")
    };
}

/// [`columns!`] without the heartbeat report (lists do not show it), same positions.
macro_rules! list_columns {
    () => {
        concat!(row_columns!(), ", CAST(NULL AS TEXT)")
    };
}

/// The names of [`list_columns!`]'s columns as an outer query sees them (the last is the
/// absent report).
macro_rules! list_column_names {
    () => {
        concat!(json_row_columns!(), ", NULL")
    };
}

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
    /// The pool the node belongs to.
    pub pool: Option<String>,
    /// The drain ends in SkyPilot's stop (a pool's warm node), not its down.
    pub stop_on_drain: bool,
    /// Entered `stopped` (the last time).
    pub stopped_at: Option<i64>,
    /// The agent's latest heartbeat report (read by single-node reads only).
    pub heartbeat: Option<Heartbeat>,
}

/// One `nodes` row as stored, before its text columns are parsed: the form both decoders
/// produce, so that what a column means is converted in one place ([`RawNode::into_node`]).
/// Its fields are in [`columns!`]'s order, which is also the order of the JSON arrays of
/// [`Store::list`]'s SQLite path (serde reads a struct from an array by position).
#[derive(Debug, serde::Deserialize)]
struct RawNode {
    id: String,
    cluster_name: String,
    provider: String,
    region: String,
    gpu_type: String,
    gpu_count: i64,
    model_name: String,
    use_spot: i64,
    disk_size: i64,
    engine_args: String,
    status: String,
    status_reason: Option<String>,
    created_at: i64,
    updated_at: i64,
    launch_intent_at: Option<i64>,
    launch_request_id: Option<String>,
    launching_at: Option<i64>,
    initializing_at: Option<i64>,
    active_at: Option<i64>,
    unhealthy_at: Option<i64>,
    draining_at: Option<i64>,
    terminated_at: Option<i64>,
    failed_at: Option<i64>,
    drain_force: i64,
    down_intent_at: Option<i64>,
    down_request_id: Option<String>,
    #[serde(deserialize_with = "price")]
    hourly_price: Option<f64>,
    last_heartbeat_at: Option<i64>,
    attempts: i64,
    next_attempt_at: i64,
    engine: String,
    image: Option<String>,
    pool: Option<String>,
    stop_on_drain: i64,
    stopped_at: Option<i64>,
    heartbeat: Option<String>,
}

/// A price as a JSON page holds it: the text [`json_row_columns!`] printed (or a number).
fn price<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<f64>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Price {
        Number(f64),
        Text(String),
    }
    match <Option<Price> as serde::Deserialize>::deserialize(d)? {
        None => Ok(None),
        Some(Price::Number(n)) => Ok(Some(n)),
        Some(Price::Text(t)) => t.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

impl RawNode {
    /// Parses the text columns.
    fn into_node(self) -> std::result::Result<Node, sqlx::Error> {
        Ok(Node {
            status: NodeStatus::parse(&self.status).ok_or_else(|| sqlx::Error::ColumnDecode {
                index: "status".into(),
                source: format!("unknown node status {:?}", self.status).into(),
            })?,
            engine: Engine::parse(&self.engine).ok_or_else(|| sqlx::Error::ColumnDecode {
                index: "engine".into(),
                source: format!("unknown engine {:?}", self.engine).into(),
            })?,
            engine_args: serde_json::from_str(&self.engine_args).unwrap_or_default(),
            use_spot: self.use_spot != 0,
            drain_force: self.drain_force != 0,
            // A report that no longer parses (an older agent's) is shown as absent rather
            // than failing every read of the node.
            heartbeat: self.heartbeat.and_then(|j| serde_json::from_str(&j).ok()),
            id: self.id,
            cluster_name: self.cluster_name,
            provider: self.provider,
            region: self.region,
            gpu_type: self.gpu_type,
            gpu_count: self.gpu_count,
            model_name: self.model_name,
            disk_size: self.disk_size,
            status_reason: self.status_reason,
            created_at: self.created_at,
            updated_at: self.updated_at,
            launch_intent_at: self.launch_intent_at,
            launch_request_id: self.launch_request_id,
            launching_at: self.launching_at,
            initializing_at: self.initializing_at,
            active_at: self.active_at,
            unhealthy_at: self.unhealthy_at,
            draining_at: self.draining_at,
            terminated_at: self.terminated_at,
            failed_at: self.failed_at,
            down_intent_at: self.down_intent_at,
            down_request_id: self.down_request_id,
            hourly_price: self.hourly_price,
            last_heartbeat_at: self.last_heartbeat_at,
            attempts: self.attempts,
            next_attempt_at: self.next_attempt_at,
            image: self.image,
            pool: self.pool,
            stop_on_drain: self.stop_on_drain != 0,
            stopped_at: self.stopped_at,
        })
    }
}

/// Decodes one `nodes` row selected with [`columns!`] or [`list_columns!`], from either
/// driver's row type: positions, not names, so no column-name lookup per value.
fn decode_node<'r, R>(r: &'r R) -> std::result::Result<Node, sqlx::Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    RawNode {
        id: r.try_get(0)?,
        cluster_name: r.try_get(1)?,
        provider: r.try_get(2)?,
        region: r.try_get(3)?,
        gpu_type: r.try_get(4)?,
        gpu_count: r.try_get(5)?,
        model_name: r.try_get(6)?,
        use_spot: r.try_get(7)?,
        disk_size: r.try_get(8)?,
        engine_args: r.try_get(9)?,
        status: r.try_get(10)?,
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
        drain_force: r.try_get(23)?,
        down_intent_at: r.try_get(24)?,
        down_request_id: r.try_get(25)?,
        hourly_price: r.try_get(26)?,
        last_heartbeat_at: r.try_get(27)?,
        attempts: r.try_get(28)?,
        next_attempt_at: r.try_get(29)?,
        engine: r.try_get(30)?,
        image: r.try_get(31)?,
        pool: r.try_get(32)?,
        stop_on_drain: r.try_get(33)?,
        stopped_at: r.try_get(34)?,
        heartbeat: r.try_get(35)?,
    }
    .into_node()
}

/// Decodes a page SQLite built as one JSON array of rows (each an array in column order).
fn decode_json_page(json: &str) -> Result<Vec<Node>> {
    serde_json::from_str::<Vec<RawNode>>(json)
        .map_err(|e| sqlx::Error::Decode(e.into()))
        .and_then(|raw| raw.into_iter().map(RawNode::into_node).collect())
        .map_err(ctx("decode a node"))
}

/// Decodes every row, or says which read failed.
fn decode_nodes<'r, R>(rows: &'r [R]) -> Result<Vec<Node>>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    rows.iter()
        .map(decode_node)
        .collect::<std::result::Result<_, _>>()
        .map_err(ctx("decode a node"))
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
    /// The pool it belongs to.
    pub pool: Option<&'a str>,
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

/// A bound value of a query whose text is built at run time ([`Store::list`]).
enum Bind<'a> {
    Text(&'a str),
    Int(i64),
}

/// A node read by one unique column.
#[derive(Debug, Clone, Copy)]
enum Key {
    Id,
    ClusterName,
    TokenHash,
}

impl Store {
    /// Stores a new node in `requested`. Fails on a duplicate id or cluster name.
    pub async fn insert(&self, n: &NewNode<'_>) -> Result<Node> {
        const SQL: &str = concat!(
            "INSERT INTO nodes (id, cluster_name, provider, region, gpu_type, gpu_count, \
             model_name, use_spot, disk_size, engine_args, status, created_at, updated_at, \
             agent_token_hash, engine, image, pool) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'requested', $11, $11, $12, $13, $14, $15) \
             RETURNING ",
            columns!()
        );
        let now = self.now_ms();
        let args = serde_json::to_string(n.engine_args).expect("strings serialize");
        on_db!(self, write, |pool| {
            let row = sqlx::query(SQL)
                .bind(n.id)
                .bind(n.cluster_name)
                .bind(n.provider)
                .bind(n.region)
                .bind(n.gpu_type)
                .bind(n.gpu_count)
                .bind(n.model_name)
                .bind(n.use_spot as i64)
                .bind(n.disk_size)
                .bind(&args)
                .bind(now)
                .bind(n.agent_token_hash)
                .bind(n.engine.as_str())
                .bind(n.image)
                .bind(n.pool)
                .fetch_one(pool)
                .await
                .map_err(ctx("insert a node"))?;
            decode_node(&row).map_err(ctx("decode a node"))
        })
    }

    /// A node by cluster name.
    pub async fn get(&self, cluster_name: &str) -> Result<Option<Node>> {
        self.one_by(Key::ClusterName, cluster_name).await
    }

    /// The node whose agent token hashes to `hash`.
    pub async fn by_token_hash(&self, hash: &str) -> Result<Option<Node>> {
        self.one_by(Key::TokenHash, hash).await
    }

    /// The node whose unique `key` is `value`.
    async fn one_by(&self, key: Key, value: &str) -> Result<Option<Node>> {
        let sql = match key {
            Key::Id => concat!("SELECT ", columns!(), " FROM nodes WHERE id = $1"),
            Key::ClusterName => {
                concat!("SELECT ", columns!(), " FROM nodes WHERE cluster_name = $1")
            }
            Key::TokenHash => {
                concat!(
                    "SELECT ",
                    columns!(),
                    " FROM nodes WHERE agent_token_hash = $1"
                )
            }
        };
        on_db!(self, read, |pool| {
            let row = sqlx::query(sql)
                .bind(value)
                .fetch_optional(pool)
                .await
                .map_err(ctx("read a node"))?;
            row.map(|r| decode_node(&r))
                .transpose()
                .map_err(ctx("decode a node"))
        })
    }

    /// One page of nodes, oldest first.
    pub async fn list(&self, q: &ListQuery) -> Result<Vec<Node>> {
        use std::fmt::Write;
        let mut sql = String::with_capacity(768);
        sql.push_str(concat!(
            "SELECT ",
            list_columns!(),
            " FROM nodes WHERE 1 = 1"
        ));
        let mut binds: Vec<Bind<'_>> = Vec::new();
        if !q.status.is_empty() {
            sql.push_str(" AND status IN (");
            for (i, s) in q.status.iter().enumerate() {
                binds.push(Bind::Text(s.as_str()));
                if i > 0 {
                    sql.push_str(", ");
                }
                let _ = write!(sql, "${}", binds.len());
            }
            sql.push(')');
        }
        for (col, v) in [
            ("provider", &q.provider),
            ("gpu_type", &q.gpu),
            ("model_name", &q.model),
        ] {
            if let Some(v) = v {
                binds.push(Bind::Text(v));
                let _ = write!(sql, " AND {col} = ${}", binds.len());
            }
        }
        if let Some((at, id)) = &q.after {
            binds.push(Bind::Int(*at));
            let a = binds.len();
            binds.push(Bind::Text(id));
            let b = binds.len();
            // The row-value form `(created_at, id) > ($a, $b)` says the same; the expanded
            // form is the one both planners turn into a range scan of `nodes_by_created`.
            let _ = write!(
                sql,
                " AND (created_at > ${a} OR (created_at = ${a} AND id > ${b}))"
            );
        }
        binds.push(Bind::Int(q.limit));
        let _ = write!(sql, " ORDER BY created_at, id LIMIT ${}", binds.len());
        macro_rules! bound {
            ($sql:expr) => {{
                let mut query = sqlx::query($sql);
                for b in &binds {
                    query = match *b {
                        Bind::Text(s) => query.bind(s),
                        Bind::Int(i) => query.bind(i),
                    };
                }
                query
            }};
        }
        match &self.db {
            super::Db::Postgres(pool) => {
                let rows = bound!(&sql)
                    .fetch_all(pool)
                    .await
                    .map_err(ctx("list nodes"))?;
                decode_nodes(&rows)
            }
            // sqlx's SQLite driver hands every row from its worker thread to the async side
            // on its own, a thread wake-up per row: for a page of 100 that cost several times
            // the query (docs/benchmarks.md, control section). SQLite builds the page as one
            // JSON value instead (the same query inside, its rows as arrays in column order),
            // which crosses threads once.
            super::Db::Sqlite { read, .. } => {
                let page = format!(
                    concat!(
                        "SELECT json_group_array(json_array(",
                        list_column_names!(),
                        ") ORDER BY created_at, id) FROM ({})"
                    ),
                    sql
                );
                let json: String = bound!(&page)
                    .fetch_one(read)
                    .await
                    .and_then(|r| sqlx::Row::try_get(&r, 0))
                    .map_err(ctx("list nodes"))?;
                decode_json_page(&json)
            }
        }
    }

    /// Nodes the reconciler should step now: those with SkyPilot work under way, not backing
    /// off. Active and unhealthy nodes are checked in bulk (heartbeats, drift), not one by one.
    pub async fn due(&self, now: i64, limit: i64) -> Result<Vec<Node>> {
        const SQL: &str = concat!(
            "SELECT ",
            list_columns!(),
            " FROM nodes \
             WHERE status IN ('requested', 'launching', 'initializing', 'draining') \
             AND next_attempt_at <= $1 ORDER BY next_attempt_at, created_at LIMIT $2"
        );
        on_db!(self, read, |pool| {
            let rows = sqlx::query(SQL)
                .bind(now)
                .bind(limit)
                .fetch_all(pool)
                .await
                .map_err(ctx("read due nodes"))?;
            decode_nodes(&rows)
        })
    }

    /// Every node that is not final (for drift checks and metrics).
    pub async fn live(&self) -> Result<Vec<Node>> {
        const SQL: &str = concat!(
            "SELECT ",
            list_columns!(),
            " FROM nodes WHERE status NOT IN ('terminated', 'failed')"
        );
        on_db!(self, read, |pool| {
            let rows = sqlx::query(SQL)
                .fetch_all(pool)
                .await
                .map_err(ctx("read live nodes"))?;
            decode_nodes(&rows)
        })
    }

    /// Every node of a pool that is live, or ended at or after `ended_since` (the pool
    /// controller counts failures and losses from these), with its latest heartbeat report.
    pub async fn pool_nodes(&self, ended_since: i64) -> Result<Vec<Node>> {
        macro_rules! pool_nodes_sql {
            () => {
                concat!(
                    "SELECT ",
                    columns!(),
                    " FROM nodes WHERE pool IS NOT NULL \
                     AND (status NOT IN ('terminated', 'failed') OR updated_at >= $1) \
                     ORDER BY created_at, id"
                )
            };
        }
        match &self.db {
            super::Db::Postgres(pool) => {
                let rows = sqlx::query(pool_nodes_sql!())
                    .bind(ended_since)
                    .fetch_all(pool)
                    .await
                    .map_err(ctx("read the nodes of pools"))?;
                decode_nodes(&rows)
            }
            // As for list pages (see there): one JSON value instead of a thread hand-off per
            // row, which for the 2,000 nodes of the pool benchmark was most of a tick.
            super::Db::Sqlite { read, .. } => {
                const PAGE: &str = concat!(
                    "SELECT json_group_array(json_array(",
                    json_row_columns!(),
                    ", heartbeat) ORDER BY created_at, id) FROM (",
                    pool_nodes_sql!(),
                    ")"
                );
                let json: String = sqlx::query(PAGE)
                    .bind(ended_since)
                    .fetch_one(read)
                    .await
                    .and_then(|r| sqlx::Row::try_get(&r, 0))
                    .map_err(ctx("read the nodes of pools"))?;
                decode_json_page(&json)
            }
        }
    }

    /// Runs one `UPDATE` with its binds on the writer; returns the rows it changed.
    async fn update(&self, action: &'static str, sql: &str, binds: &[Bind<'_>]) -> Result<u64> {
        on_db!(self, write, |pool| {
            let mut query = sqlx::query(sql);
            for b in binds {
                query = match *b {
                    Bind::Text(s) => query.bind(s),
                    Bind::Int(i) => query.bind(i),
                };
            }
            query
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
                .map_err(ctx(action))
        })
    }

    /// Moves `id` from `from` to `to` (stamping `to`'s time column and the reason) when it is
    /// still in `from`. Returns whether it moved. A move the contract does not allow
    /// ([`NodeStatus::can_move_to`]) never happens: those states of `from` are ignored.
    pub async fn transition(
        &self,
        id: &str,
        from: &[NodeStatus],
        to: NodeStatus,
        reason: Option<&str>,
    ) -> Result<bool> {
        use std::fmt::Write;
        let from: Vec<NodeStatus> = from.iter().copied().filter(|f| f.can_move_to(to)).collect();
        if from.is_empty() {
            return Ok(false);
        }
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
            let _ = write!(sql, "${}", 5 + i);
        }
        sql.push(')');
        let n = on_db!(self, write, |pool| {
            let mut q = sqlx::query(&sql)
                .bind(to.as_str())
                .bind(now)
                .bind(reason)
                .bind(id);
            for s in &from {
                q = q.bind(s.as_str());
            }
            q.execute(pool).await.map(|r| r.rows_affected())
        })
        .map_err(ctx("change a node's status"))?;
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
        let n = match prev {
            Some(prev) => {
                self.update(
                    "claim a launch",
                    "UPDATE nodes SET launch_intent_at = $1, updated_at = $1, agent_token_hash = $2 \
                     WHERE id = $3 AND status = 'requested' AND launch_request_id IS NULL \
                     AND launch_intent_at = $4",
                    &[Bind::Int(now), Bind::Text(token_hash), Bind::Text(id), Bind::Int(prev)],
                )
                .await?
            }
            None => {
                self.update(
                    "claim a launch",
                    "UPDATE nodes SET launch_intent_at = $1, updated_at = $1, agent_token_hash = $2 \
                     WHERE id = $3 AND status = 'requested' AND launch_request_id IS NULL \
                     AND launch_intent_at IS NULL",
                    &[Bind::Int(now), Bind::Text(token_hash), Bind::Text(id)],
                )
                .await?
            }
        };
        Ok(n == 1)
    }

    /// Drops a claim whose launch SkyPilot certainly refused, so the next attempt starts clean.
    pub async fn release_launch(&self, id: &str) -> Result<()> {
        self.update(
            "release a launch claim",
            "UPDATE nodes SET launch_intent_at = NULL \
             WHERE id = $1 AND status = 'requested' AND launch_request_id IS NULL",
            &[Bind::Text(id)],
        )
        .await?;
        Ok(())
    }

    /// Stores the launch's request id and moves a `requested` node to `launching`.
    pub async fn launch_submitted(&self, id: &str, request_id: &str) -> Result<bool> {
        let n = self
            .update(
                "store a launch request id",
                // A terminate may have moved the node to draining while the launch was being
                // sent: the id is stored all the same, so the teardown waits for that launch.
                "UPDATE nodes SET launch_request_id = $1, \
                 launching_at = CASE WHEN status = 'requested' THEN $2 ELSE launching_at END, \
                 status = CASE WHEN status = 'requested' THEN 'launching' ELSE status END, \
                 updated_at = $2, attempts = 0, next_attempt_at = 0 \
                 WHERE id = $3 AND status IN ('requested', 'draining') AND launch_request_id IS NULL",
                &[Bind::Text(request_id), Bind::Int(self.now_ms()), Bind::Text(id)],
            )
            .await?;
        Ok(n == 1)
    }

    /// Marks that `/down` of `id` is about to be submitted. Only one caller wins.
    pub async fn claim_down(&self, id: &str) -> Result<bool> {
        let n = self
            .update(
                "claim a teardown",
                "UPDATE nodes SET down_intent_at = $1, updated_at = $1 \
                 WHERE id = $2 AND status = 'draining' AND down_intent_at IS NULL",
                &[Bind::Int(self.now_ms()), Bind::Text(id)],
            )
            .await?;
        Ok(n == 1)
    }

    /// Stores the teardown's request id.
    pub async fn down_submitted(&self, id: &str, request_id: &str) -> Result<bool> {
        let n = self
            .update(
                "store a teardown request id",
                "UPDATE nodes SET down_request_id = $1, updated_at = $2 \
                 WHERE id = $3 AND status = 'draining' AND down_request_id IS NULL",
                &[
                    Bind::Text(request_id),
                    Bind::Int(self.now_ms()),
                    Bind::Text(id),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// Forgets a teardown attempt that SkyPilot did not complete, so it is tried again.
    pub async fn reset_down(&self, id: &str) -> Result<()> {
        self.update(
            "reset a teardown",
            "UPDATE nodes SET down_intent_at = NULL, down_request_id = NULL, updated_at = $1 \
             WHERE id = $2 AND status = 'draining'",
            &[Bind::Int(self.now_ms()), Bind::Text(id)],
        )
        .await?;
        Ok(())
    }

    /// Asks for termination: any live state moves to `draining` (with `force`). Returns
    /// whether it moved.
    pub async fn request_terminate(&self, id: &str, force: bool) -> Result<bool> {
        let reason = if force {
            "terminate requested (force)"
        } else {
            "terminate requested"
        };
        let n = self
            .update(
                "request a termination",
                // A stopped node has no agent to drain: its teardown is immediate.
                "UPDATE nodes SET draining_at = $1, updated_at = $1, \
                 drain_force = CASE WHEN status = 'stopped' THEN 1 ELSE $2 END, \
                 status = 'draining', stop_on_drain = 0, \
                 status_reason = $3, attempts = 0, next_attempt_at = 0 \
                 WHERE id = $4 AND status IN \
                 ('requested', 'launching', 'initializing', 'active', 'unhealthy', 'stopped')",
                &[
                    Bind::Int(self.now_ms()),
                    Bind::Int(force as i64),
                    Bind::Text(reason),
                    Bind::Text(id),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// Asks for a running node to be stopped (a pool's warm node): it drains like a
    /// termination, and then SkyPilot stops its cluster instead of taking it down. Returns
    /// whether it moved.
    pub async fn request_stop(&self, id: &str) -> Result<bool> {
        let n = self
            .update(
                "request a stop",
                "UPDATE nodes SET status = 'draining', draining_at = $1, updated_at = $1, \
                 drain_force = 0, stop_on_drain = 1, status_reason = 'stop requested (warm pool)', \
                 attempts = 0, next_attempt_at = 0 \
                 WHERE id = $2 AND status IN ('initializing', 'active', 'unhealthy')",
                &[Bind::Int(self.now_ms()), Bind::Text(id)],
            )
            .await?;
        Ok(n == 1)
    }

    /// Starts a stopped node again: back to `requested` with its launch and teardown records
    /// cleared, so the reconciler launches the same cluster name anew (SkyPilot starts a
    /// stopped cluster on launch and runs the task again, with its disk as it was). Returns
    /// whether it moved.
    pub async fn restart(&self, id: &str) -> Result<bool> {
        let n = self
            .update(
                "restart a stopped node",
                "UPDATE nodes SET status = 'requested', status_reason = 'warm start', \
                 updated_at = $1, launch_intent_at = NULL, launch_request_id = NULL, \
                 launching_at = NULL, initializing_at = NULL, active_at = NULL, \
                 unhealthy_at = NULL, draining_at = NULL, down_intent_at = NULL, \
                 down_request_id = NULL, drain_force = 0, stop_on_drain = 0, \
                 last_heartbeat_at = NULL, heartbeat = NULL, attempts = 0, next_attempt_at = 0 \
                 WHERE id = $2 AND status = 'stopped'",
                &[Bind::Int(self.now_ms()), Bind::Text(id)],
            )
            .await?;
        Ok(n == 1)
    }

    /// Makes a draining node's termination immediate.
    pub async fn force_drain(&self, id: &str) -> Result<()> {
        self.update(
            "force a termination",
            "UPDATE nodes SET drain_force = 1, next_attempt_at = 0 \
             WHERE id = $1 AND status = 'draining'",
            &[Bind::Text(id)],
        )
        .await?;
        Ok(())
    }

    /// Backs off `id` after a failed attempt: retried after `delay_ms`.
    pub async fn back_off(&self, id: &str, delay_ms: i64, reason: &str) -> Result<()> {
        self.update(
            "back off a node",
            "UPDATE nodes SET attempts = attempts + 1, next_attempt_at = $1, status_reason = $2 \
             WHERE id = $3",
            &[
                Bind::Int(self.now_ms() + delay_ms),
                Bind::Text(reason),
                Bind::Text(id),
            ],
        )
        .await?;
        Ok(())
    }

    /// Leaves `id` alone until `at` (a node that is only waiting).
    pub async fn wait_until(&self, id: &str, at: i64) -> Result<()> {
        self.update(
            "schedule a node",
            "UPDATE nodes SET next_attempt_at = $1 WHERE id = $2",
            &[Bind::Int(at), Bind::Text(id)],
        )
        .await?;
        Ok(())
    }

    /// Records a heartbeat; an `unhealthy` node becomes `active` again, an `initializing` one
    /// `active` for the first time. Returns the node after the change.
    pub async fn heartbeat(&self, id: &str, report: Option<&Heartbeat>) -> Result<Option<Node>> {
        // One statement in the common case: the update returns the row it changed.
        const SQL: &str = concat!(
            "UPDATE nodes SET last_heartbeat_at = $1, updated_at = $1, \
             heartbeat = COALESCE($3, heartbeat), \
             active_at = CASE WHEN status IN ('initializing', 'launching') THEN $1 ELSE active_at END, \
             status_reason = CASE WHEN status IN ('initializing', 'launching', 'unhealthy') \
             THEN NULL ELSE status_reason END, \
             status = CASE WHEN status IN ('initializing', 'launching', 'unhealthy') \
             THEN 'active' ELSE status END \
             WHERE id = $2 AND status IN ('launching', 'initializing', 'active', 'unhealthy', 'draining') \
             RETURNING ",
            columns!()
        );
        let now = self.now_ms();
        let report = report.map(|r| serde_json::to_string(r).expect("a report serializes"));
        let changed = on_db!(self, write, |pool| {
            let row = sqlx::query(SQL)
                .bind(now)
                .bind(id)
                .bind(report.as_deref())
                .fetch_optional(pool)
                .await
                .map_err(ctx("record a heartbeat"))?;
            row.map(|r| decode_node(&r))
                .transpose()
                .map_err(ctx("decode a node"))
        })?;
        match changed {
            Some(node) => Ok(Some(node)),
            // Not in a state that heartbeats (requested, or final): the node as it is.
            None => self.one_by(Key::Id, id).await,
        }
    }

    /// Active nodes whose last heartbeat is older than `before` become `unhealthy`.
    pub async fn mark_silent_unhealthy(&self, before: i64) -> Result<u64> {
        self.update(
            "mark silent nodes",
            "UPDATE nodes SET status = 'unhealthy', unhealthy_at = $1, updated_at = $1, \
             status_reason = 'no heartbeat for three intervals' \
             WHERE status = 'active' AND COALESCE(last_heartbeat_at, active_at) < $2",
            &[Bind::Int(self.now_ms()), Bind::Int(before)],
        )
        .await
    }

    /// Stores a node's hourly price.
    pub async fn set_price(&self, id: &str, price: f64) -> Result<()> {
        on_db!(self, write, |pool| sqlx::query(
            "UPDATE nodes SET hourly_price = $1 WHERE id = $2"
        )
        .bind(price)
        .bind(id)
        .execute(pool)
        .await
        .map(drop))
        .map_err(ctx("store a price"))
    }

    /// Counts by (status, provider, gpu) and the data the metrics need, in one pass.
    pub async fn metric_rows(&self) -> Result<Vec<MetricRow>> {
        const SQL: &str = "SELECT status, provider, gpu_type, launching_at, initializing_at, \
             active_at, last_heartbeat_at, hourly_price, cluster_name, engine, \
             CASE WHEN status IN ('active', 'unhealthy', 'draining') THEN heartbeat END FROM nodes";
        on_db!(self, read, |pool| {
            let rows = sqlx::query(SQL)
                .fetch_all(pool)
                .await
                .map_err(ctx("read metrics"))?;
            rows.iter()
                .map(decode_metric_row)
                .collect::<std::result::Result<_, sqlx::Error>>()
                .map_err(ctx("decode metrics"))
        })
    }
}

/// Decodes one row of [`Store::metric_rows`]'s query, from either driver.
fn decode_metric_row<'r, R>(r: &'r R) -> std::result::Result<MetricRow, sqlx::Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
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
