//! `Store`: one pool, one schema, the session operations.
//!
//! Each operation takes one pooled connection and, in the common case, runs one statement (the
//! append's probe runs only when an append was refused; a coalesced flight of appends sends
//! several in one round trip, see `coalesce.rs`). How statements are sent — prepared and
//! cached, or unnamed for PgBouncer — is `statement.rs`'s business.

use std::sync::Arc;

use deadpool_postgres::{Object, Pool};
use tokio::sync::OnceCell;
use tokio_postgres::Row;

use crate::coalesce::{Coalescer, OwnedAppend};
use crate::config::StoreConfig;
use crate::error::{ErrorKind, Result, StoreError};
use crate::migrations;
use crate::pool::{self, PoolStatus};
use crate::sessions::AppendOutcome;
use crate::sql::SessionSql;
use crate::statement::{Param, Statements};

/// Whether a statement may be repeated after a connection failure: reads and deletes may, and
/// appends may (a repeat of an append that committed is recognised by its event id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    Yes,
    No,
}

pub struct Store {
    pool: Pool,
    config: StoreConfig,
    pub(crate) sql: SessionSql,
    /// The process that built the pool: its sockets must not be used from a forked child.
    owner_pid: u32,
    /// Schema version after the first successful migration by this store.
    migrated: OnceCell<i32>,
    /// The queue that coalesces concurrent appends into shared commits (started on first use).
    coalescer: std::sync::OnceLock<Coalescer>,
}

impl Store {
    /// Builds the store; nothing is connected yet.
    pub fn new(config: StoreConfig) -> Result<Self> {
        let pool = pool::build_pool(&config)?;
        let sql = SessionSql::new(&config.options.schema);
        Ok(Store {
            pool,
            config,
            sql,
            owner_pid: std::process::id(),
            migrated: OnceCell::new(),
            coalescer: std::sync::OnceLock::new(),
        })
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// How this store sends statements (prepared and cached, or unnamed).
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

    /// Applies pending migrations (once per store) and returns the schema version.
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

    pub(crate) async fn connection_unmigrated(&self) -> Result<Object> {
        if self.pool.is_closed() {
            return Err(StoreError::new(ErrorKind::Closed, "the store is closed"));
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

    /// Appends an event (see [`Store::append_event`]); with `coalesce_appends` on, concurrent
    /// appends share commits (see `coalesce.rs`). Must run on a tokio runtime.
    pub async fn append_event_coalesced(
        self: &Arc<Self>,
        append: OwnedAppend,
    ) -> Result<AppendOutcome> {
        self.check_process()?;
        // Only appends to app state coalesce: every session of an app updates that one row,
        // so they wait for each other's commits anyway. Others run alone, in parallel.
        if !self.config.options.coalesce_appends || append.app_delta.is_none() {
            return self
                .append_event(append.key(), append.expected, append.event())
                .await;
        }
        let coalescer = self
            .coalescer
            .get_or_init(|| Coalescer::start(Arc::downgrade(self)));
        coalescer
            .append(append, self.config.options.acquire_timeout)
            .await
    }

    /// Runs one statement on a pooled connection. A connection found broken (the server
    /// restarted or terminated it) is dropped from the pool rather than handed out again; if
    /// `retry` allows it — the statement is safe to repeat — it runs again on another
    /// connection. Every pooled connection may have been broken at once (a server restart), so
    /// this goes on until a freshly opened one answers; failing to open one ends it.
    pub(crate) async fn fetch(
        &self,
        sql: &str,
        params: &[&dyn Param],
        retry: Retry,
    ) -> Result<Vec<Row>> {
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

    /// [`Store::fetch`] for statements returning at most one row.
    pub(crate) async fn fetch_opt(
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
