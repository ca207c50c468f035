//! `Database`: one pool on one schema — the handle every service borrows.
//!
//! It owns what the services share: the connection pool and its configuration, the migrations
//! (run once per handle, before the first statement), how statements are sent
//! ([`Statements`]: prepared and cached, or unnamed for PgBouncer) and the retry of a
//! statement on a broken connection. The services — [`crate::sessions::Sessions`],
//! [`crate::artifacts::Artifacts`], [`crate::memory::Memory`], [`crate::admin::Admin`],
//! [`crate::tenancy::Tenancy`] — each hold an `Arc<Database>` and their own SQL.

use std::sync::Mutex;
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tokio_postgres::Row;

use crate::config::StoreConfig;
use crate::error::{ErrorKind, Result, StoreError};
use crate::failover::{is_lost, Failover};
use crate::migrations;
use crate::pool::{self, PoolStatus};
use crate::replica::{behind_on_schema, parse_lsn, ScopePositions, POSITION_SQL, UNKNOWN_POSITION};
use crate::statement::{On, Param, Statements};

/// Whether a statement may be repeated after a connection failure: reads and deletes may, and
/// appends may (a repeat of an append that committed is recognised by its event id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    Yes,
    No,
}

pub struct Database {
    pool: Pool,
    config: StoreConfig,
    /// Where reads may go instead (see `replica.rs`).
    replica: Option<Replica>,
    /// The process that built the pool: its sockets must not be used from a forked child.
    owner_pid: u32,
    /// Schema version after the first successful migration by this handle.
    migrated: OnceCell<i32>,
}

/// The pool of a read URL, and until when it is skipped after failing.
struct Replica {
    pool: Pool,
    config: StoreConfig,
    skip_until: Mutex<Option<Instant>>,
}

/// How long reads skip a replica that could not be reached (they go to the primary).
const REPLICA_PAUSE: Duration = Duration::from_secs(5);

impl Database {
    /// Builds the pool; nothing is connected yet.
    pub fn new(config: StoreConfig) -> Result<Self> {
        Self::with_replica(config, None)
    }

    /// Builds the pool, and a second one for reads on `replica` (a standby's URL, with the
    /// same options); nothing is connected yet.
    pub fn with_replica(config: StoreConfig, replica: Option<StoreConfig>) -> Result<Self> {
        let pool = pool::build_pool(&config)?;
        let replica = match replica {
            Some(config) => Some(Replica {
                pool: pool::build_pool(&config)?,
                config,
                skip_until: Mutex::new(None),
            }),
            None => None,
        };
        Ok(Database {
            pool,
            config,
            replica,
            owner_pid: std::process::id(),
            migrated: OnceCell::new(),
        })
    }

    /// Whether reads may go to a replica.
    pub fn has_replica(&self) -> bool {
        self.replica.is_some()
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.config.options.schema
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// How this handle sends statements (prepared and cached, or unnamed).
    pub fn statements(&self) -> Statements {
        Statements {
            cached: self.config.options.statement_cache,
            response_timeout: self.config.options.response_timeout,
        }
    }

    pub fn pool_status(&self) -> PoolStatus {
        pool::status(&self.pool)
    }

    /// Closes the pools: idle connections are dropped now, busy ones when returned.
    pub fn close(&self) {
        self.pool.close();
        if let Some(replica) = &self.replica {
            replica.pool.close();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }

    /// Fails if called from a process other than the one that built the pool.
    pub fn check_process(&self) -> Result<()> {
        if std::process::id() != self.owner_pid {
            return Err(StoreError::new(
                ErrorKind::Forked,
                "this adk-postgres pool was created in a parent process and cannot be used after \
                 fork(); create a new service (or Database) in the child process",
            ));
        }
        Ok(())
    }

    /// Applies pending migrations (once per handle) and returns the schema version.
    pub async fn migrate(&self) -> Result<i32> {
        self.check_process()?;
        let version = self
            .migrated
            .get_or_try_init(|| async {
                let mut conn = self.connection_unmigrated().await?;
                migrations::migrate(&mut conn, &self.config.options.schema).await
            })
            .await?;
        Ok(*version)
    }

    pub async fn connection_unmigrated(&self) -> Result<Object> {
        if self.pool.is_closed() {
            return Err(StoreError::new(
                ErrorKind::Closed,
                "the database handle is closed",
            ));
        }
        pool::acquire(
            &self.pool,
            || self.config.describe(),
            self.config.password_source.as_ref(),
        )
        .await
    }

    /// A pooled connection to a migrated schema, waiting out a failover (see `failover.rs`).
    pub async fn connection(&self) -> Result<Object> {
        self.connection_riding(&mut self.failover()).await
    }

    /// The failover state of a new call.
    pub fn failover(&self) -> Failover {
        Failover::new(self.config.options.failover_timeout)
    }

    async fn connection_riding(&self, failover: &mut Failover) -> Result<Object> {
        loop {
            let attempt = async {
                self.check_process()?;
                if self.migrated.get().is_none() {
                    // Boxed: run once per handle, it would otherwise double the size of
                    // every call's future (copied on each poll of a spawned task).
                    Box::pin(self.migrate()).await?;
                }
                self.connection_unmigrated().await
            };
            // The result first: a future awaited in a `match` head would stay in this
            // future's state through the arms (which await a pause), doubling its size.
            let attempt = attempt.await;
            match attempt {
                Err(err) if is_lost(&err) => failover.pause(err).await?,
                other => return other,
            }
        }
    }

    /// Runs one statement on a pooled connection. A connection found broken (the server
    /// restarted or terminated it) or read-only (a standby) is dropped from the pool rather
    /// than handed out again; if `retry` allows it — the statement is safe to repeat — it runs
    /// again on another connection: at once while pooled connections may all have been broken
    /// together (a server restart), then after pauses while a failover lasts.
    pub async fn fetch(&self, sql: &str, params: &[&dyn Param], retry: Retry) -> Result<Vec<Row>> {
        let mut failover = self.failover();
        let mut broken_pooled = self.config.options.pool_size + 1;
        loop {
            let conn = self.connection_riding(&mut failover).await?;
            let result = self.statements().query(&conn, sql, params).await;
            match result {
                Err(err) if is_lost(&err) => {
                    let _ = Object::take(conn);
                    if retry == Retry::No {
                        return Err(err);
                    }
                    if broken_pooled > 0 {
                        broken_pooled -= 1;
                    } else {
                        failover.pause(err).await?;
                    }
                }
                other => return other,
            }
        }
    }

    /// [`Database::fetch`] for statements returning at most one row.
    pub async fn fetch_opt(
        &self,
        sql: &str,
        params: &[&dyn Param],
        retry: Retry,
    ) -> Result<Option<Row>> {
        let mut rows = self.fetch(sql, params, retry).await?;
        Ok(if rows.is_empty() {
            None
        } else {
            Some(rows.swap_remove(0))
        })
    }

    /// Runs a read on the replica, with the node's log position in the same round trip when
    /// `positioned`. `None` when there is no replica or it cannot be reached: the caller reads
    /// from the primary (and the replica is skipped for a few seconds).
    pub async fn read_on_replica(
        &self,
        sql: &str,
        params: &[&dyn Param],
        positioned: bool,
    ) -> Result<Option<(Vec<Row>, Option<u64>)>> {
        if self.replica.is_none() {
            return Ok(None);
        }
        // Boxed, so that without a replica every read's future stays as small as before.
        Box::pin(self.read_on_replica_now(sql, params, positioned)).await
    }

    async fn read_on_replica_now(
        &self,
        sql: &str,
        params: &[&dyn Param],
        positioned: bool,
    ) -> Result<Option<(Vec<Row>, Option<u64>)>> {
        let Some(conn) = self.replica_connection().await? else {
            return Ok(None);
        };
        match self
            .read_positioned_on(&conn, sql, params, positioned)
            .await
        {
            Ok(read) => Ok(Some(read)),
            Err(err) if is_lost(&err) => {
                self.replica_failed(Some(conn));
                Ok(None)
            }
            Err(err) if behind_on_schema(&err) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// A connection to the replica; `None` when there is none, or it was found unreachable
    /// (now, or in the last few seconds).
    pub async fn replica_connection(&self) -> Result<Option<Object>> {
        let Some(replica) = &self.replica else {
            return Ok(None);
        };
        let skipped = replica
            .skip_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|until| Instant::now() < until);
        if skipped {
            return Ok(None);
        }
        // The schema is created and upgraded on the primary.
        if self.migrated.get().is_none() {
            self.migrate().await?;
        }
        match pool::acquire(
            &replica.pool,
            || replica.config.describe(),
            replica.config.password_source.as_ref(),
        )
        .await
        {
            Ok(conn) => Ok(Some(conn)),
            Err(err) if is_lost(&err) || err.kind == ErrorKind::PoolTimeout => {
                self.replica_failed(None);
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// After a replica connection failed: drop it, and skip the replica for a few seconds.
    pub fn replica_failed(&self, conn: Option<Object>) {
        if let Some(conn) = conn {
            let _ = Object::take(conn);
        }
        if let Some(replica) = &self.replica {
            *replica.skip_until.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Instant::now() + REPLICA_PAUSE);
        }
    }

    /// A read on the primary with its log position in the same round trip (what the caller
    /// has then seen), retried like [`Database::fetch`].
    pub async fn read_on_primary(
        &self,
        sql: &str,
        params: &[&dyn Param],
    ) -> Result<(Vec<Row>, u64)> {
        let mut failover = self.failover();
        let mut broken_pooled = self.config.options.pool_size + 1;
        loop {
            let conn = self.connection_riding(&mut failover).await?;
            let result = self.read_positioned_on(&conn, sql, params, true).await;
            match result {
                Err(err) if is_lost(&err) => {
                    let _ = Object::take(conn);
                    if broken_pooled > 0 {
                        broken_pooled -= 1;
                    } else {
                        failover.pause(err).await?;
                    }
                }
                Ok((rows, position)) => return Ok((rows, position.unwrap_or(0))),
                Err(err) => return Err(err),
            }
        }
    }

    /// The primary's current log position: after a write, what a replica must have replayed
    /// to show it.
    pub async fn position(&self) -> Result<u64> {
        let rows = self.fetch(POSITION_SQL, &[], Retry::Yes).await?;
        Ok(rows
            .first()
            .and_then(|row| row.get::<_, Option<&str>>(0))
            .and_then(parse_lsn)
            .unwrap_or(0))
    }

    /// `sql` and, when `positioned`, the node's log position, pipelined on `conn`.
    pub async fn read_positioned_on(
        &self,
        conn: &Object,
        sql: &str,
        params: &[&dyn Param],
        positioned: bool,
    ) -> Result<(Vec<Row>, Option<u64>)> {
        if !positioned {
            return Ok((self.statements().query(conn, sql, params).await?, None));
        }
        let on = On::from(conn);
        let read = self.statements().ready(on, sql, params).await?;
        let position = self.statements().ready(on, POSITION_SQL, &[]).await?;
        let steps = vec![read.step(on, params.to_vec()), position.step(on, vec![])];
        let mut results = self.statements().pipeline(steps).await?.into_iter();
        let rows = results.next().expect("two steps")?;
        let at = results.next().expect("two steps")?;
        let lsn = at
            .first()
            .and_then(|row| row.get::<_, Option<&str>>(0))
            .and_then(parse_lsn);
        Ok((rows, lsn))
    }

    /// A read of one (app, user) scope of artifacts or memory: on the replica when it has
    /// replayed what this process wrote or saw there, else on the primary (see `replica.rs`).
    pub async fn read_scope(
        &self,
        positions: &ScopePositions,
        (app, user): (&str, &str),
        sql: &str,
        params: &[&dyn Param],
    ) -> Result<Vec<Row>> {
        if !self.has_replica() {
            return self.fetch(sql, params, Retry::Yes).await;
        }
        if let Some((rows, Some(at))) = self.read_on_replica(sql, params, true).await? {
            if positions.is_current(app, user, at) {
                positions.advance(app, user, at);
                return Ok(rows);
            }
        }
        let (rows, at) = self.read_on_primary(sql, params).await?;
        positions.reset(app, user, at);
        Ok(rows)
    }

    /// After a write to one (app, user) scope: with a replica, remember the primary's position,
    /// which later reads of the scope must see.
    pub async fn wrote_scope(&self, positions: &ScopePositions, (app, user): (&str, &str)) {
        if self.has_replica() {
            // The write succeeded: failing to learn its position must not undo that.
            let at = self.position().await.unwrap_or(UNKNOWN_POSITION);
            positions.advance(app, user, at);
        }
    }
}
