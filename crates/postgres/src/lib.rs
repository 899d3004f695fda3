//! graphloop's PostgreSQL store.
//!
//! - [`PgStoreConfig`]: where the database is, the pool's size and timeouts, an optional
//!   schema. Handed to the engine as its store factory, it is *opened on the
//!   ProgressPersister's arbiter*: the deadpool-postgres pool and every connection are
//!   created and driven by that one loop, never shared with another.
//! - Migrations (the SQL files in `migrations/`, applied by refinery at start-up under
//!   a PostgreSQL advisory lock, so that several processes starting at once apply them
//!   once).
//! - [`PgStore`]: the [`Store`] implementation. A batch is one transaction of bulk
//!   `UNNEST` statements; re-writing a batch is harmless (inserts are idempotent, run
//!   rows never leave a terminal status).
//!
//! This crate must never be used from another loop than the one that opened the store.
//!
//! # Example
//!
//! ```no_run
//! use graphloop_postgres::PgStoreConfig;
//! use graphloop_runtime::{Engine, EngineConfig};
//! # async fn start() -> Result<(), graphloop_runtime::EngineError> {
//! let store = PgStoreConfig::new("postgres://root@127.0.0.1:5432/test").pool_size(8);
//! let engine = Engine::start(EngineConfig::new().store(store)).await?;
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures_util::future::LocalBoxFuture;
use graphloop_core::{RunEvent, UserContext};
use graphloop_runtime::{
    Batch, CheckpointRecord, ErrorSource, EventRecord, PoolStatus, RunQuery, RunRecord, RunStatus, RunStorage, Store,
    StoreError, StoreFactory, Written,
};
use serde_json::Value;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;

mod faithful;

mod migrations {
    refinery::embed_migrations!("migrations");
}

/// How to reach PostgreSQL, and how to pool connections.
#[derive(Debug, Clone)]
pub struct PgStoreConfig {
    url: String,
    pool_size: usize,
    schema: Option<String>,
    connect_timeout: Duration,
    wait_timeout: Duration,
    create_timeout: Duration,
    recycle_timeout: Duration,
}

impl PgStoreConfig {
    /// A store at `url` (`postgres://user@host:port/db`), with a pool of 8 connections,
    /// a 5 s connect and create timeout, a 30 s wait for a free connection and a 5 s
    /// recycle timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 8,
            schema: None,
            connect_timeout: Duration::from_secs(5),
            wait_timeout: Duration::from_secs(30),
            create_timeout: Duration::from_secs(5),
            recycle_timeout: Duration::from_secs(5),
        }
    }

    /// Connections in the pool (at least 1). The persister writes one batch at a time,
    /// so a few connections serve writes and reads.
    #[must_use]
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Keeps graphloop's tables in this schema (created if missing): several engines, or
    /// tests, can share one database. Letters, digits and `_` only.
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// How long to wait for a free connection before a write fails (and is retried).
    #[must_use]
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// How long creating a connection may take.
    #[must_use]
    pub fn create_timeout(mut self, timeout: Duration) -> Self {
        self.create_timeout = timeout;
        self.connect_timeout = timeout;
        self
    }

    fn pg_config(&self) -> Result<tokio_postgres::Config, StoreError> {
        let mut config: tokio_postgres::Config =
            self.url.parse().map_err(|e| StoreError::Open(format!("invalid database url: {e}")))?;
        config.connect_timeout(self.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("graphloop");
        }
        if let Some(schema) = &self.schema {
            if schema.is_empty() || !schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(StoreError::Open(format!("invalid schema name `{schema}`: use letters, digits and _")));
            }
            config.options(format!("-c search_path={schema}"));
        }
        Ok(config)
    }
}

impl StoreFactory for PgStoreConfig {
    fn describe(&self) -> String {
        match self.pg_config() {
            Ok(config) => {
                let host = config.get_hosts().first().map_or_else(
                    || "localhost".to_owned(),
                    |h| match h {
                        tokio_postgres::config::Host::Tcp(name) => name.clone(),
                        tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                    },
                );
                let port = config.get_ports().first().copied().unwrap_or(5432);
                let db = config.get_dbname().unwrap_or("");
                let schema = self.schema.as_deref().map(|s| format!(" (schema {s})")).unwrap_or_default();
                format!("postgres://{host}:{port}/{db}{schema}")
            }
            Err(_) => "postgres (invalid url)".to_owned(),
        }
    }

    fn open(self: Box<Self>) -> LocalBoxFuture<'static, Result<Rc<dyn Store>, StoreError>> {
        Box::pin(async move {
            let config = self.pg_config()?;
            migrate(&config, self.schema.as_deref()).await?;
            let manager =
                Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
            let pool = Pool::builder(manager)
                .max_size(self.pool_size)
                .wait_timeout(Some(self.wait_timeout))
                .create_timeout(Some(self.create_timeout))
                .recycle_timeout(Some(self.recycle_timeout))
                .runtime(Runtime::Tokio1)
                .build()
                .map_err(|e| StoreError::Open(format!("cannot build the connection pool: {e}")))?;
            Ok(Rc::new(PgStore { pool }) as Rc<dyn Store>)
        })
    }
}

/// Applies the migrations, once, whoever else is starting at the same time: the
/// advisory lock (per schema) makes concurrent starts wait for each other.
async fn migrate(config: &tokio_postgres::Config, schema: Option<&str>) -> Result<(), StoreError> {
    let (mut client, connection) = config.connect(NoTls).await.map_err(|e| {
        StoreError::Open(format!("cannot connect to PostgreSQL: {e} (is it running? `just db-up` starts it)"))
    })?;
    // The connection is driven on this (the persister's) loop, and dropped with it.
    let driver = tokio::spawn(connection);
    let lock_key = format!("graphloop-migrations:{}", schema.unwrap_or("public"));
    let migrated = async {
        client.execute("SELECT pg_advisory_lock(hashtext($1))", &[&lock_key]).await.map_err(open_error)?;
        let outcome = async {
            if let Some(schema) = schema {
                client.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).await.map_err(open_error)?;
            }
            migrations::migrations::runner()
                .run_async(&mut client)
                .await
                .map_err(|e| StoreError::Open(format!("migration failed: {e}")))
        }
        .await;
        let unlocked = client.execute("SELECT pg_advisory_unlock(hashtext($1))", &[&lock_key]).await;
        outcome?;
        unlocked.map_err(open_error)?;
        Ok(())
    }
    .await;
    drop(client);
    let _ = driver.await;
    migrated
}

fn open_error(e: tokio_postgres::Error) -> StoreError {
    StoreError::Open(db_message(&e))
}

/// A pool error: no connection could be had (timeout, connection refused), or the
/// database refused the connection.
fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => db_error(e),
        other => StoreError::Unavailable { message: other.to_string(), code: None, source: Some(Arc::new(other)) },
    }
}

/// Tells an outage from data PostgreSQL refuses for good, by the error's SQLSTATE class:
/// data exceptions (22), integrity violations (23), syntax or access rule violations (42)
/// and program limits (54) fail the same way every time; connection failures (08),
/// rollbacks (40: serialization failures, deadlocks), insufficient resources (53),
/// operator intervention (57), system errors (58), internal errors (XX) and errors with
/// no database code (the connection broke) may pass on a retry.
fn db_error(e: tokio_postgres::Error) -> StoreError {
    let message = db_message(&e);
    let code = e.code().map(|code| code.code().to_owned());
    let permanent = code.as_deref().is_some_and(|code| ["22", "23", "42", "54"].contains(&&code[..2.min(code.len())]));
    let source: Option<ErrorSource> = Some(Arc::new(e));
    if permanent {
        StoreError::Refused { message, code, source }
    } else {
        StoreError::Unavailable { message, code, source }
    }
}

fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => e.to_string(),
    }
}

/// PostgreSQL's `text` and `jsonb` cannot hold NUL characters (text extracted from PDFs
/// often has them). Such a row would be refused on every retry and hold up every write
/// behind it, so NULs are replaced with U+FFFD when written.
fn clean_text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn clean_owned(value: Value) -> Value {
    match value {
        Value::String(s) if s.contains('\0') => Value::String(s.replace('\0', "\u{FFFD}")),
        Value::Array(items) => Value::Array(items.into_iter().map(clean_owned).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (clean_text(&k).into_owned(), clean_owned(v))).collect())
        }
        other => other,
    }
}

fn cleaned(value: Value) -> Value {
    if has_nul(&value) {
        clean_owned(value)
    } else {
        value
    }
}

fn clean_json(value: &Value) -> Cow<'_, Value> {
    if has_nul(value) {
        Cow::Owned(clean_owned(value.clone()))
    } else {
        Cow::Borrowed(value)
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative {what}: {n}")))
}

/// The PostgreSQL [`Store`]. Lives on the persister's arbiter, with its pool.
pub struct PgStore {
    pool: Pool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PgStore")
            .field("size", &status.size)
            .field("available", &status.available)
            .field("waiting", &status.waiting)
            .finish()
    }
}

const INSERT_RUNS: &str = "
    INSERT INTO runs (id, graph, graph_version, user_id, tenant, roles, status, input, output, error,
                      step, percent, created_at, updated_at, started_at, finished_at, durability, idempotency_key)
    SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int4[], $4::text[], $5::text[], $6::jsonb[], $7::text[],
                         $8::jsonb[], $9::jsonb[], $10::jsonb[], $11::int8[], $12::float8[], $13::timestamptz[],
                         $14::timestamptz[], $15::timestamptz[], $16::timestamptz[], $17::text[], $18::text[])
    ON CONFLICT DO NOTHING";

const UPDATE_RUNS: &str = "
    UPDATE runs AS r
       SET status = u.status, output = u.output, error = u.error, step = u.step,
           percent = GREATEST(r.percent, u.percent), updated_at = u.updated_at,
           started_at = COALESCE(r.started_at, u.started_at), finished_at = u.finished_at
      FROM UNNEST($1::uuid[], $2::text[], $3::jsonb[], $4::jsonb[], $5::int8[], $6::float8[],
                  $7::timestamptz[], $8::timestamptz[], $9::timestamptz[])
           AS u(id, status, output, error, step, percent, updated_at, started_at, finished_at)
     WHERE r.id = u.id AND r.status NOT IN ('completed', 'failed', 'cancelled')";

const INSERT_EVENTS: &str = "
    INSERT INTO events (run_id, seq, user_id, kind, step, node, percent, data, at)
    SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::text[], $4::text[], $5::int8[], $6::text[],
                         $7::float8[], $8::jsonb[], $9::timestamptz[])
    ON CONFLICT (run_id, seq) DO NOTHING";

const INSERT_CHECKPOINTS: &str = "
    INSERT INTO checkpoints (run_id, step, data, created_at)
    SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::jsonb[], $4::timestamptz[])
    ON CONFLICT (run_id, step) DO UPDATE SET data = EXCLUDED.data, created_at = EXCLUDED.created_at";

const PRUNE_TO_LAST: &str = "
    DELETE FROM checkpoints AS c
     USING (SELECT run_id, max(step) AS last FROM checkpoints WHERE run_id = ANY($1) GROUP BY run_id) AS m
     WHERE c.run_id = m.run_id AND c.step < m.last";

const RUN_COLUMNS: &str = "id, graph, graph_version, user_id, tenant, roles, status, input, output, error, \
                           step, percent, created_at, updated_at, started_at, finished_at, durability, idempotency_key";

impl PgStore {
    async fn write_batch(&self, batch: &Batch) -> Result<Written, StoreError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(db_error)?;
        // The statements are independent of each other's results: they are sent together
        // (tokio-postgres pipelines concurrent queries on one connection) and run in order.
        let (insert_runs, update_runs, insert_events, insert_checkpoints, prune_to_last) =
            futures_util::future::try_join5(
                tx.prepare_cached(INSERT_RUNS),
                tx.prepare_cached(UPDATE_RUNS),
                tx.prepare_cached(INSERT_EVENTS),
                tx.prepare_cached(INSERT_CHECKPOINTS),
                tx.prepare_cached(PRUNE_TO_LAST),
            )
            .await
            .map_err(db_error)?;

        let runs: Vec<&RunRecord> = batch.runs().collect();
        let run_ids: Vec<Uuid> = runs.iter().map(|r| r.id).collect();
        let graphs: Vec<Cow<'_, str>> = runs.iter().map(|r| clean_text(&r.graph)).collect();
        let graphs: Vec<&str> = graphs.iter().map(AsRef::as_ref).collect();
        let versions: Vec<i32> = runs.iter().map(|r| i32::try_from(r.graph_version).unwrap_or(i32::MAX)).collect();
        let run_users: Vec<Cow<'_, str>> = runs.iter().map(|r| clean_text(&r.user.user_id)).collect();
        let run_users: Vec<&str> = run_users.iter().map(AsRef::as_ref).collect();
        let tenants: Vec<Option<Cow<'_, str>>> =
            runs.iter().map(|r| r.user.tenant.as_deref().map(clean_text)).collect();
        let tenants: Vec<Option<&str>> = tenants.iter().map(|t| t.as_deref()).collect();
        let roles: Vec<Value> = runs.iter().map(|r| cleaned(Value::from(r.user.roles.clone()))).collect();
        let run_statuses: Vec<&str> = runs.iter().map(|r| r.status.as_str()).collect();
        let inputs: Vec<Cow<'_, Value>> = runs.iter().map(|r| clean_json(&r.input)).collect();
        let inputs: Vec<&Value> = inputs.iter().map(AsRef::as_ref).collect();
        let run_outputs: Vec<Option<Cow<'_, Value>>> = runs.iter().map(|r| r.output.as_ref().map(clean_json)).collect();
        let run_outputs: Vec<Option<&Value>> = run_outputs.iter().map(|o| o.as_deref()).collect();
        let run_errors: Vec<Option<Cow<'_, Value>>> = runs.iter().map(|r| r.error.as_ref().map(clean_json)).collect();
        let run_errors: Vec<Option<&Value>> = run_errors.iter().map(|e| e.as_deref()).collect();
        let run_steps: Vec<i64> = runs.iter().map(|r| to_i64(r.step)).collect();
        let run_percents: Vec<f64> = runs.iter().map(|r| r.percent).collect();
        let created: Vec<SystemTime> = runs.iter().map(|r| r.created_at).collect();
        let run_updated: Vec<SystemTime> = runs.iter().map(|r| r.updated_at).collect();
        let run_started: Vec<Option<SystemTime>> = runs.iter().map(|r| r.started_at).collect();
        let run_finished: Vec<Option<SystemTime>> = runs.iter().map(|r| r.finished_at).collect();
        let durabilities: Vec<&str> = runs.iter().map(|r| r.durability.as_str()).collect();
        let keys: Vec<Option<Cow<'_, str>>> =
            runs.iter().map(|r| r.idempotency_key.as_deref().map(clean_text)).collect();
        let keys: Vec<Option<&str>> = keys.iter().map(|k| k.as_deref()).collect();

        let updates = batch.run_updates();
        let update_ids: Vec<Uuid> = updates.iter().map(|u| u.id).collect();
        let update_statuses: Vec<&str> = updates.iter().map(|u| u.status.as_str()).collect();
        let update_outputs: Vec<Option<Cow<'_, Value>>> =
            updates.iter().map(|u| u.output.as_ref().map(clean_json)).collect();
        let update_outputs: Vec<Option<&Value>> = update_outputs.iter().map(|o| o.as_deref()).collect();
        let update_errors: Vec<Option<Cow<'_, Value>>> =
            updates.iter().map(|u| u.error.as_ref().map(clean_json)).collect();
        let update_errors: Vec<Option<&Value>> = update_errors.iter().map(|e| e.as_deref()).collect();
        let update_steps: Vec<i64> = updates.iter().map(|u| to_i64(u.step)).collect();
        let update_percents: Vec<f64> = updates.iter().map(|u| u.percent).collect();
        let update_updated: Vec<SystemTime> = updates.iter().map(|u| u.updated_at).collect();
        let update_started: Vec<Option<SystemTime>> = updates.iter().map(|u| u.started_at).collect();
        let update_finished: Vec<Option<SystemTime>> = updates.iter().map(|u| u.finished_at).collect();

        let events: Vec<&EventRecord> = batch.events().collect();
        let event_runs: Vec<Uuid> = events.iter().map(|e| e.run_id).collect();
        let seqs: Vec<i64> = events.iter().map(|e| to_i64(e.seq)).collect();
        let event_users: Vec<Cow<'_, str>> = events.iter().map(|e| clean_text(&e.user_id)).collect();
        let event_users: Vec<&str> = event_users.iter().map(AsRef::as_ref).collect();
        let kinds: Vec<&str> = events.iter().map(|e| e.event.kind.name()).collect();
        let event_steps: Vec<i64> = events.iter().map(|e| to_i64(e.event.step)).collect();
        let nodes: Vec<Option<Cow<'_, str>>> = events.iter().map(|e| e.event.kind.task().map(clean_text)).collect();
        let nodes: Vec<Option<&str>> = nodes.iter().map(|n| n.as_deref()).collect();
        let event_percents: Vec<f64> = events.iter().map(|e| e.event.percent).collect();
        let event_data: Vec<Value> = events
            .iter()
            .map(|e| serde_json::to_value(&e.event).map(cleaned))
            .collect::<Result<_, _>>()
            .map_err(|e| StoreError::refused(format!("cannot serialize: {e}")))?;
        let event_at: Vec<SystemTime> = events.iter().map(|e| e.at).collect();

        let checkpoints = batch.checkpoints();
        let checkpoint_runs: Vec<Uuid> = checkpoints.iter().map(|c| c.run_id).collect();
        let checkpoint_steps: Vec<i64> = checkpoints.iter().map(|c| to_i64(c.checkpoint.step)).collect();
        let checkpoint_data: Vec<Value> = checkpoints
            .iter()
            .map(|c| serde_json::to_value(&c.checkpoint).map(cleaned))
            .collect::<Result<_, _>>()
            .map_err(|e| StoreError::refused(format!("cannot serialize: {e}")))?;
        let checkpoint_at: Vec<SystemTime> = checkpoints.iter().map(|c| c.at).collect();

        let insert_runs = async {
            if runs.is_empty() {
                return Ok(0);
            }
            tx.execute(
                &insert_runs,
                &[
                    &run_ids,
                    &graphs,
                    &versions,
                    &run_users,
                    &tenants,
                    &roles,
                    &run_statuses,
                    &inputs,
                    &run_outputs,
                    &run_errors,
                    &run_steps,
                    &run_percents,
                    &created,
                    &run_updated,
                    &run_started,
                    &run_finished,
                    &durabilities,
                    &keys,
                ],
            )
            .await
        };
        let update_runs = async {
            if updates.is_empty() {
                return Ok(0);
            }
            tx.execute(
                &update_runs,
                &[
                    &update_ids,
                    &update_statuses,
                    &update_outputs,
                    &update_errors,
                    &update_steps,
                    &update_percents,
                    &update_updated,
                    &update_started,
                    &update_finished,
                ],
            )
            .await
        };
        let insert_events = async {
            if events.is_empty() {
                return Ok(0);
            }
            tx.execute(
                &insert_events,
                &[
                    &event_runs,
                    &seqs,
                    &event_users,
                    &kinds,
                    &event_steps,
                    &nodes,
                    &event_percents,
                    &event_data,
                    &event_at,
                ],
            )
            .await
        };
        let insert_checkpoints = async {
            if checkpoints.is_empty() {
                return Ok(0);
            }
            tx.execute(&insert_checkpoints, &[&checkpoint_runs, &checkpoint_steps, &checkpoint_data, &checkpoint_at])
                .await
        };
        // After the checkpoints: a run that ended in this batch keeps only its last one.
        let prune_runs = batch.prune_to_last();
        let prune = async {
            if prune_runs.is_empty() {
                return Ok(0);
            }
            tx.execute(&prune_to_last, &[&prune_runs]).await
        };
        // After the inserts, in the same transaction: the run each new keyed row's (user,
        // key) names. A row another transaction inserted first made ours a no-op (the
        // insert waited for it to commit), and this statement's snapshot sees it.
        let (key_users, key_values): (Vec<&str>, Vec<&str>) =
            run_users.iter().zip(&keys).filter_map(|(user, key)| Some((*user, (*key)?))).unzip();
        let keyed = async {
            if key_users.is_empty() {
                return Ok(Vec::new());
            }
            let sql = format!(
                "SELECT {RUN_COLUMNS} FROM runs
                  WHERE (user_id, idempotency_key) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))"
            );
            tx.query(&sql, &[&key_users, &key_values]).await
        };
        let ((_, _, _, _, _), keyed) = futures_util::future::try_join(
            futures_util::future::try_join5(insert_runs, update_runs, insert_events, insert_checkpoints, prune),
            keyed,
        )
        .await
        .map_err(db_error)?;
        let mut written = Written::default();
        for row in &keyed {
            let stored = run_from_row(row)?;
            let ours = runs
                .iter()
                .find(|r| r.user.user_id == stored.user.user_id && r.idempotency_key == stored.idempotency_key);
            if let Some(ours) = ours.filter(|ours| ours.id != stored.id) {
                written.existing.push((ours.id, stored));
            }
        }
        tx.commit().await.map_err(db_error)?;
        Ok(written)
    }

    async fn read_run_by_key(&self, user_id: &str, key: &str) -> Result<Option<RunRecord>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE user_id = $1 AND idempotency_key = $2");
        let row = client.query_opt(&sql, &[&clean_text(user_id), &clean_text(key)]).await.map_err(db_error)?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn read_run(&self, id: Uuid) -> Result<Option<RunRecord>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
        let row = client.query_opt(&sql, &[&id]).await.map_err(db_error)?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn read_events(&self, run_id: Uuid, from_seq: u64, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(
                "SELECT run_id, seq, user_id, data, at FROM events WHERE run_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
                &[&run_id, &to_i64(from_seq), &limit],
            )
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let seq = to_u64(row.try_get("seq").map_err(corrupt)?, "seq")?;
                let JsonText(data) = row.try_get("data").map_err(corrupt)?;
                let event: RunEvent = faithful::decode(data)
                    .and_then(|data| serde_json::from_value(data).map_err(|e| e.to_string()))
                    .map_err(|e| StoreError::Corrupt(format!("run {run_id}, event {seq}: {e}")))?;
                Ok(EventRecord {
                    run_id: row.try_get("run_id").map_err(corrupt)?,
                    seq,
                    user_id: row.try_get("user_id").map_err(corrupt)?,
                    at: row.try_get("at").map_err(corrupt)?,
                    event,
                })
            })
            .collect()
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<Vec<RunRecord>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs
              WHERE user_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR graph = $3)
                AND ($4::uuid IS NULL OR id < $4)
              ORDER BY id DESC LIMIT $5"
        );
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let status = query.status.map(RunStatus::as_str);
        let rows = client
            .query(&sql, &[&query.user_id, &status, &query.graph, &query.before, &limit])
            .await
            .map_err(db_error)?;
        Ok(runs_from_rows(&rows))
    }

    async fn delete_expired_checkpoints(&self, finished_before: SystemTime) -> Result<u64, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        client
            .execute(
                "DELETE FROM checkpoints AS c USING runs AS r
                  WHERE c.run_id = r.id AND r.status IN ('completed', 'failed', 'cancelled') AND r.finished_at < $1",
                &[&finished_before],
            )
            .await
            .map_err(db_error)
    }

    async fn read_storage(&self, run_id: Uuid) -> Result<RunStorage, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM events WHERE run_id = $1),
                        (SELECT coalesce(sum(pg_column_size(e.*)), 0)::int8 FROM events e WHERE run_id = $1),
                        (SELECT count(*) FROM checkpoints WHERE run_id = $1),
                        (SELECT coalesce(sum(pg_column_size(c.*)), 0)::int8 FROM checkpoints c WHERE run_id = $1)",
                &[&run_id],
            )
            .await
            .map_err(db_error)?;
        let get = |i: usize, what: &str| -> Result<u64, StoreError> { to_u64(row.try_get(i).map_err(corrupt)?, what) };
        Ok(RunStorage {
            events: get(0, "event count")?,
            event_bytes: get(1, "event bytes")?,
            checkpoints: get(2, "checkpoint count")?,
            checkpoint_bytes: get(3, "checkpoint bytes")?,
        })
    }

    async fn read_unfinished(&self) -> Result<Vec<RunRecord>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let sql =
            format!("SELECT {RUN_COLUMNS} FROM runs WHERE status IN ('queued', 'running', 'interrupted') ORDER BY id");
        let rows = client.query(&sql, &[]).await.map_err(db_error)?;
        Ok(runs_from_rows(&rows))
    }

    async fn read_last_seq(&self, run_id: Uuid) -> Result<u64, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client
            .query_one("SELECT coalesce(max(seq), 0) FROM events WHERE run_id = $1", &[&run_id])
            .await
            .map_err(db_error)?;
        to_u64(row.try_get(0).map_err(corrupt)?, "seq")
    }

    async fn read_latest_checkpoint(&self, run_id: Uuid) -> Result<Option<CheckpointRecord>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client
            .query_opt(
                "SELECT data, created_at FROM checkpoints WHERE run_id = $1 ORDER BY step DESC LIMIT 1",
                &[&run_id],
            )
            .await
            .map_err(db_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let JsonText(data) = row.try_get("data").map_err(corrupt)?;
        let checkpoint = faithful::decode(data)
            .and_then(|data| serde_json::from_value(data).map_err(|e| e.to_string()))
            .map_err(|e| StoreError::Corrupt(format!("run {run_id}, latest checkpoint: {e}")))?;
        Ok(Some(CheckpointRecord { run_id, checkpoint, at: row.try_get("created_at").map_err(corrupt)? }))
    }
}

fn corrupt(e: tokio_postgres::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A jsonb (or json) column's text as PostgreSQL sent it, parsed here with
/// [`faithful::decode`] rather than by tokio-postgres: one value serde_json cannot read
/// (a number out of its range, say) then costs that value, not the row.
struct JsonText<'a>(&'a [u8]);

impl<'a> FromSql<'a> for JsonText<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        if *ty != Type::JSONB {
            return Ok(Self(raw));
        }
        // jsonb's binary form: a version byte (1), then the text.
        match raw.split_first() {
            Some((1, text)) => Ok(Self(text)),
            _ => Err("unsupported jsonb binary format version".into()),
        }
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }
}

/// A run's jsonb column. A value that cannot be read back comes back as a string saying
/// so, why, and what is stored: the row still lists, and the run, resumed, fails with
/// that reason (a string is no graph's state), where an object might deserialize into
/// a state of defaults and run on it.
fn json_column(row: &Row, run_id: Uuid, column: &str) -> Result<Option<Value>, StoreError> {
    let Some(JsonText(text)) = row.try_get(column).map_err(corrupt)? else {
        return Ok(None);
    };
    Ok(Some(faithful::decode(text).unwrap_or_else(|reason| {
        tracing::warn!(%run_id, column, %reason, "a stored value cannot be read back");
        unreadable(column, &reason, text)
    })))
}

/// What stands for a stored value that cannot be read back (see [`json_column`]).
fn unreadable(column: &str, reason: &str, text: &[u8]) -> Value {
    const SHOWN: usize = 1000;
    let text = String::from_utf8_lossy(text);
    let shown = match text.char_indices().nth(SHOWN) {
        Some((at, _)) => format!("{}… ({} bytes in all)", &text[..at], text.len()),
        None => text.into_owned(),
    };
    Value::String(format!("graphloop cannot read back the stored {column} ({reason}); stored as: {shown}"))
}

/// The rows that make run records. A row that cannot (an unknown status, say) is left
/// out with a warning naming the run: one bad row never fails a listing or recovery.
fn runs_from_rows(rows: &[Row]) -> Vec<RunRecord> {
    rows.iter()
        .filter_map(|row| {
            run_from_row(row)
                .map_err(|error| tracing::warn!(%error, "a stored run cannot be read; left out of the listing"))
                .ok()
        })
        .collect()
}

fn run_from_row(row: &Row) -> Result<RunRecord, StoreError> {
    let id: Uuid = row.try_get("id").map_err(corrupt)?;
    run_fields_from_row(row, id).map_err(|e| match e {
        StoreError::Corrupt(reason) => StoreError::Corrupt(format!("run {id}: {reason}")),
        other => other,
    })
}

fn run_fields_from_row(row: &Row, id: Uuid) -> Result<RunRecord, StoreError> {
    // Fewer roles grant less: a list that cannot be read grants nothing.
    let roles = json_column(row, id, "roles")?.map_or_else(Vec::new, |roles| {
        serde_json::from_value(roles).unwrap_or_else(|error| {
            tracing::warn!(run_id = %id, %error, "a run's stored roles cannot be read; taken as none");
            Vec::new()
        })
    });
    let status: String = row.try_get("status").map_err(corrupt)?;
    let durability: String = row.try_get("durability").map_err(corrupt)?;
    let version: i32 = row.try_get("graph_version").map_err(corrupt)?;
    Ok(RunRecord {
        id,
        graph: row.try_get("graph").map_err(corrupt)?,
        graph_version: u32::try_from(version).map_err(|_| StoreError::Corrupt(format!("graph version {version}")))?,
        user: UserContext {
            user_id: row.try_get("user_id").map_err(corrupt)?,
            tenant: row.try_get("tenant").map_err(corrupt)?,
            roles,
        },
        durability: durability.parse().map_err(StoreError::Corrupt)?,
        status: status.parse()?,
        input: json_column(row, id, "input")?.unwrap_or(Value::Null),
        output: json_column(row, id, "output")?,
        error: json_column(row, id, "error")?,
        step: to_u64(row.try_get("step").map_err(corrupt)?, "step")?,
        percent: row.try_get("percent").map_err(corrupt)?,
        created_at: row.try_get("created_at").map_err(corrupt)?,
        updated_at: row.try_get("updated_at").map_err(corrupt)?,
        started_at: row.try_get("started_at").map_err(corrupt)?,
        finished_at: row.try_get("finished_at").map_err(corrupt)?,
        idempotency_key: row.try_get("idempotency_key").map_err(corrupt)?,
    })
}

impl Store for PgStore {
    fn write<'a>(&'a self, batch: &'a Batch) -> LocalBoxFuture<'a, Result<Written, StoreError>> {
        Box::pin(self.write_batch(batch))
    }

    fn run(&self, id: Uuid) -> LocalBoxFuture<'_, Result<Option<RunRecord>, StoreError>> {
        Box::pin(self.read_run(id))
    }

    /// Refuses what would not read back as given: NUL (which PostgreSQL's text and jsonb
    /// cannot hold) in the input, the graph, the user or the key; numbers PostgreSQL's
    /// numeric prints in a form serde_json reads as another number or not at all;
    /// nesting too deep to read. The message names the field as a JSON path.
    fn admit(&self, run: &RunRecord) -> Result<(), StoreError> {
        let refused = |e: faithful::Unfaithful| StoreError::refused(e.to_string());
        faithful::check_text("graph", &run.graph).map_err(refused)?;
        faithful::check_text("user.user_id", &run.user.user_id).map_err(refused)?;
        if let Some(tenant) = &run.user.tenant {
            faithful::check_text("user.tenant", tenant).map_err(refused)?;
        }
        for (i, role) in run.user.roles.iter().enumerate() {
            faithful::check_text(&format!("user.roles[{i}]"), role).map_err(refused)?;
        }
        if let Some(key) = &run.idempotency_key {
            faithful::check_text("idempotency_key", key).map_err(refused)?;
        }
        faithful::check("input", &run.input).map_err(refused)?;
        if let Some(output) = &run.output {
            faithful::check("output", output).map_err(refused)?;
        }
        if let Some(error) = &run.error {
            faithful::check("error", error).map_err(refused)?;
        }
        Ok(())
    }

    fn pool(&self) -> Option<PoolStatus> {
        let status = self.pool.status();
        Some(PoolStatus {
            max_size: status.max_size,
            size: status.size,
            available: status.available,
            waiting: status.waiting,
        })
    }

    fn events(
        &self,
        run_id: Uuid,
        from_seq: u64,
        limit: usize,
    ) -> LocalBoxFuture<'_, Result<Vec<EventRecord>, StoreError>> {
        Box::pin(self.read_events(run_id, from_seq, limit))
    }

    fn runs<'a>(&'a self, query: &'a RunQuery) -> LocalBoxFuture<'a, Result<Vec<RunRecord>, StoreError>> {
        Box::pin(self.list_runs(query))
    }

    fn latest_checkpoint(&self, run_id: Uuid) -> LocalBoxFuture<'_, Result<Option<CheckpointRecord>, StoreError>> {
        Box::pin(self.read_latest_checkpoint(run_id))
    }

    fn last_seq(&self, run_id: Uuid) -> LocalBoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(self.read_last_seq(run_id))
    }

    fn unfinished_runs(&self) -> LocalBoxFuture<'_, Result<Vec<RunRecord>, StoreError>> {
        Box::pin(self.read_unfinished())
    }

    fn run_by_key<'a>(
        &'a self,
        user_id: &'a str,
        key: &'a str,
    ) -> LocalBoxFuture<'a, Result<Option<RunRecord>, StoreError>> {
        Box::pin(self.read_run_by_key(user_id, key))
    }

    fn prune_checkpoints(&self, finished_before: SystemTime) -> LocalBoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(self.delete_expired_checkpoints(finished_before))
    }

    fn storage(&self, run_id: Uuid) -> LocalBoxFuture<'_, Result<RunStorage, StoreError>> {
        Box::pin(self.read_storage(run_id))
    }
}
