//! `Database`: one pool on one schema — the handle every service borrows.
//!
//! It owns what the services share: the connection pool and its configuration, the migrations
//! (run once per handle, before the first statement), how statements are sent
//! ([`Statements`]: prepared and cached, or unnamed for PgBouncer) and the retry of a
//! statement on a broken connection. The services — [`crate::sessions::Sessions`],
//! [`crate::artifacts::Artifacts`], [`crate::memory::Memory`], [`crate::admin::Admin`],
//! [`crate::tenancy::Tenancy`] — each hold an `Arc<Database>` and their own SQL.

use deadpool_postgres::{Object, Pool};
use tokio::sync::OnceCell;
use tokio_postgres::Row;

use crate::config::StoreConfig;
use crate::error::{ErrorKind, Result, StoreError};
use crate::failover::{is_lost, Failover};
use crate::migrations;
use crate::pool::{self, PoolStatus};
use crate::statement::{Param, Statements};

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
    /// The process that built the pool: its sockets must not be used from a forked child.
    owner_pid: u32,
    /// Schema version after the first successful migration by this handle.
    migrated: OnceCell<i32>,
}

impl Database {
    /// Builds the pool; nothing is connected yet.
    pub fn new(config: StoreConfig) -> Result<Self> {
        let pool = pool::build_pool(&config)?;
        Ok(Database {
            pool,
            config,
            owner_pid: std::process::id(),
            migrated: OnceCell::new(),
        })
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
        }
    }

    pub fn pool_status(&self) -> PoolStatus {
        pool::status(&self.pool)
    }

    /// Closes the pool: idle connections are dropped now, busy ones when returned.
    pub fn close(&self) {
        self.pool.close();
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
        pool::acquire(&self.pool, || self.config.describe()).await
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
                    self.migrate().await?;
                }
                self.connection_unmigrated().await
            };
            match attempt.await {
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
            match self.statements().query(&conn, sql, params).await {
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
}
