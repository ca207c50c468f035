//! Operations on a schema: migration status, health checks (doctor), statistics and
//! pruning. Used by the `adk-postgres migrate|doctor|stats|prune` commands.
//!
//! Statements are built per schema like `sql.rs` does (the schema quoted, values as
//! parameters). None of these runs on a hot path, so they are sent unnamed and never cached
//! (`statement::UNNAMED`: one-off, PgBouncer-safe).
//!
//! Pruning deletes in batches, each batch one transaction, so a crash mid-run leaves
//! consistent data and appenders wait at most for one batch. It never changes a session's
//! `revision`: pruning events is not an append, so sessions held by running agents stay
//! writable (see [`Store::prune`]).
//!
//! Files: `sql.rs` (the statements), `migrate.rs` (status), `doctor.rs` (health checks; the
//! advice for a failed connection is `advice.rs`), `stats.rs`, `prune.rs`, `backup.rs` (the
//! tables `export`/`restore` carry as rows).

mod advice;
mod backup;
mod doctor;
mod migrate;
mod prune;
mod sql;
mod stats;

use std::sync::Arc;
use std::time::Instant;

use tokio_postgres::Row;

pub use advice::{classify_connect_error, ConnectFailure};
pub use backup::{BackupReader, BackupTable, BACKUP_GROUPS, BACKUP_TABLES};
pub use doctor::{Check, CheckStatus, DoctorReport, ExtensionInfo, PoolInfo};
pub use migrate::{AppliedMigration, MigrationStatus};
pub use prune::{AppPruned, PruneOptions, PruneReport};
pub use sql::AdminSql;
pub use stats::{AppStats, Stats, TableSize};

use crate::db::Database;
use crate::error::Result;
use crate::statement::{On, Param, UNNAMED};

/// Every table the migrations create (and so every table `stats` sizes).
pub const OUR_TABLES: &[&str] = &[
    "adk_internal_metadata",
    "adk_postgres_migrations",
    "sessions",
    "events",
    "app_states",
    "user_states",
    "artifact_files",
    "artifact_versions",
    "artifact_contents",
    "artifact_chunks",
    "artifact_fs_garbage",
    "memory_entries",
    "memory_tombstones",
    "tenants",
    "session_runs",
    "a2a_tasks",
    "a2a_push_configs",
    "a2a_task_feedback",
    "conversations",
    "agents",
    "agent_versions",
];

/// The tables the services read and write at run time (a runtime role needs DML on these).
pub(super) const DATA_TABLES: &[&str] = &[
    "sessions",
    "events",
    "app_states",
    "user_states",
    "artifact_files",
    "artifact_versions",
    "artifact_contents",
    "artifact_chunks",
    "artifact_fs_garbage",
    "memory_entries",
    "memory_tombstones",
    "session_runs",
    "a2a_tasks",
    "a2a_push_configs",
    "a2a_task_feedback",
    "conversations",
    "agents",
    "agent_versions",
];

/// Extensions the memory service uses when present.
pub(super) const EXTENSIONS: &[&str] = &["pg_trgm", "vector"];

/// Default number of sessions (or artifacts, or contents) per prune batch.
pub const DEFAULT_BATCH_SIZE: i64 = 1000;

/// The operations on one database handle.
pub struct Admin {
    db: Arc<Database>,
}

impl Admin {
    pub fn new(db: Arc<Database>) -> Self {
        Admin { db }
    }

    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }
}

pub(super) async fn rows<'a>(
    on: impl Into<On<'a>>,
    sql: &str,
    params: &[&dyn Param],
) -> Result<Vec<Row>> {
    UNNAMED.query(on, sql, params).await
}

pub(super) async fn one<'a>(
    on: impl Into<On<'a>>,
    sql: &str,
    params: &[&dyn Param],
) -> Result<Row> {
    UNNAMED.query_one(on, sql, params).await
}

pub(super) fn millis(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::{render, MIGRATIONS};

    #[test]
    fn our_tables_are_exactly_the_tables_the_migrations_create() {
        let mut created: Vec<String> = MIGRATIONS
            .iter()
            .flat_map(|m| {
                render(m.sql, "s")
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("CREATE TABLE IF NOT EXISTS \"s\"."))
                    .map(|rest| rest.split([' ', '(']).next().unwrap_or("").to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        created.push("adk_postgres_migrations".into()); // created by the runner itself
        created.sort();
        let mut ours: Vec<String> = OUR_TABLES.iter().map(|t| t.to_string()).collect();
        ours.sort();
        assert_eq!(created, ours);
        for table in DATA_TABLES {
            assert!(OUR_TABLES.contains(table));
        }
    }
}
