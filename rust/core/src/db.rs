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

    /// A pooled connection to a migrated schema.
    pub async fn connection(&self) -> Result<Object> {
        self.check_process()?;
        if self.migrated.get().is_none() {
            self.migrate().await?;
        }
        self.connection_unmigrated().await
    }

    /// Runs one statement on a pooled connection. A connection found broken (the server
    /// restarted or terminated it) is dropped from the pool rather than handed out again; if
    /// `retry` allows it — the statement is safe to repeat — it runs again on another
    /// connection. Every pooled connection may have been broken at once (a server restart), so
    /// this goes on until a freshly opened one answers; failing to open one ends it.
    pub async fn fetch(&self, sql: &str, params: &[&dyn Param], retry: Retry) -> Result<Vec<Row>> {
        let mut attempts_left = self.config.options.pool_size + 1;
        loop {
            let conn = self.connection().await?;
            match self.statements().query(&conn, sql, params).await {
                Err(err) if err.kind == ErrorKind::Connection => {
                    let _ = Object::take(conn);
                    attempts_left -= 1;
                    if retry == Retry::No || attempts_left == 0 {
                        return Err(err);
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
