//! Backups of everything but sessions and events, as table rows: `adk-postgres export` writes
//! each row of the tables below as the server's own JSON of it (`to_jsonb`), and `restore`
//! inserts it back with `jsonb_populate_recordset`, so every column (timestamps, exact
//! floats, `bytea`, `tsvector`, pgvector embeddings) survives the round trip unchanged, and a
//! table a later migration adds is backed up by adding it to [`BACKUP_TABLES`].
//!
//! Sessions and events are not rows here: restoring them must merge with sessions that
//! already exist (new events appended, revisions kept), which `sessions::import` does.
//!
//! Reading happens in one REPEATABLE READ READ ONLY transaction through a cursor per table
//! ([`BackupReader`]), so a backup is one consistent snapshot (every artifact version's
//! content is in it) and is read a batch at a time, never whole. Restoring follows import's
//! rules: what the target already has wins (see each table's conflict clause).

use std::sync::Arc;

use deadpool_postgres::Object;
use tokio::sync::Mutex;

use super::{one, rows, Admin};
use crate::db::Database;
use crate::error::{ErrorKind, Result, StoreError};
use crate::ident::quote_ident;

/// One table of the backup.
pub struct BackupTable {
    pub name: &'static str,
    /// What the user names in `--only`.
    pub group: &'static str,
    /// The table's key, for a stable order (`export` twice gives the same file).
    order_by: &'static str,
    /// Rows of one app (`{app}`); `t` is the table, `{s}` the schema.
    app_filter: &'static str,
    /// What a restore does when the target already has the row.
    on_conflict: &'static str,
    /// Restores only rows `r` this accepts (`TRUE`: all).
    restore_filter: &'static str,
    /// Rows per fetch: artifact chunks are up to 1 MiB each (2 MiB as JSON hex).
    fetch_rows: i64,
    /// Columns that describe this server, not the data: left out of the export, and set by
    /// the target on restore.
    local_columns: &'static [&'static str],
}

/// Every table a backup holds besides sessions and events, in restore order (referenced
/// tables first). Left out: `adk_internal_metadata` and `adk_postgres_migrations` (the
/// target's own migrations make them), `sessions`/`events` (see the module comment) and
/// `artifact_fs_garbage` (a work queue of files to unlink on this machine) and `session_runs`
/// (the runs in progress right now).
pub const BACKUP_TABLES: &[BackupTable] = &[
    BackupTable {
        name: "app_states",
        group: "sessions",
        order_by: "app_name",
        app_filter: "t.app_name = {app}",
        // Keys the target already has win; its update time stays.
        on_conflict: "ON CONFLICT (app_name) DO UPDATE SET state = EXCLUDED.state || t.state",
        restore_filter: "TRUE",
        fetch_rows: 500,
        local_columns: &[],
    },
    BackupTable {
        name: "user_states",
        group: "sessions",
        order_by: "app_name, user_id",
        app_filter: "t.app_name = {app}",
        on_conflict:
            "ON CONFLICT (app_name, user_id) DO UPDATE SET state = EXCLUDED.state || t.state",
        restore_filter: "TRUE",
        fetch_rows: 500,
        local_columns: &[],
    },
    // Restored after the session lines (its own part, later in the file): a title or archive
    // mark of a session the target does not have is skipped.
    BackupTable {
        name: "conversations",
        group: "conversations",
        order_by: "app_name, user_id, session_id",
        app_filter: "t.app_name = {app}",
        on_conflict: "ON CONFLICT (app_name, user_id, session_id) DO NOTHING",
        restore_filter: "EXISTS (SELECT 1 FROM {s}.sessions k WHERE k.app_name = r.app_name \
                         AND k.user_id = r.user_id AND k.id = r.session_id)",
        fetch_rows: 500,
        local_columns: &[],
    },
    BackupTable {
        name: "artifact_contents",
        group: "artifacts",
        order_by: "sha256",
        app_filter: "t.sha256 IN (SELECT v.content_sha256 FROM {s}.artifact_versions v \
                     WHERE v.app_name = {app})",
        on_conflict: "ON CONFLICT (sha256) DO NOTHING",
        restore_filter: "TRUE",
        fetch_rows: 500,
        // The inserting transaction's id (V7), set by a trigger whatever the row says.
        local_columns: &["created_xid"],
    },
    BackupTable {
        name: "artifact_chunks",
        group: "artifacts",
        order_by: "sha256, seq",
        app_filter: "t.sha256 IN (SELECT v.content_sha256 FROM {s}.artifact_versions v \
                     WHERE v.app_name = {app})",
        on_conflict: "ON CONFLICT (sha256, seq) DO NOTHING",
        // A content the target keeps in files (or not at all) gets no chunk rows.
        restore_filter: "EXISTS (SELECT 1 FROM {s}.artifact_contents c \
                         WHERE c.sha256 = r.sha256 AND c.storage = 'db')",
        fetch_rows: 8,
        local_columns: &[],
    },
    BackupTable {
        name: "artifact_files",
        group: "artifacts",
        order_by: "app_name, user_id, session_id, filename",
        app_filter: "t.app_name = {app}",
        // The version counter must pass every version either side has.
        on_conflict: "ON CONFLICT (app_name, user_id, session_id, filename) DO UPDATE \
                      SET next_version = GREATEST(t.next_version, EXCLUDED.next_version)",
        restore_filter: "TRUE",
        fetch_rows: 500,
        local_columns: &[],
    },
    BackupTable {
        name: "artifact_versions",
        group: "artifacts",
        order_by: "app_name, user_id, session_id, filename, version",
        app_filter: "t.app_name = {app}",
        on_conflict: "ON CONFLICT (app_name, user_id, session_id, filename, version) DO NOTHING",
        restore_filter: "TRUE",
        fetch_rows: 500,
        local_columns: &[],
    },
    BackupTable {
        name: "memory_entries",
        group: "memory",
        order_by: "app_name, user_id, memory_id",
        app_filter: "t.app_name = {app}",
        on_conflict: "ON CONFLICT (app_name, user_id, memory_id) DO NOTHING",
        restore_filter: "TRUE",
        fetch_rows: 500,
        local_columns: &[],
    },
    BackupTable {
        name: "memory_tombstones",
        group: "memory",
        order_by: "app_name, user_id, memory_id",
        app_filter: "t.app_name = {app}",
        on_conflict: "ON CONFLICT (app_name, user_id, memory_id) DO NOTHING",
        restore_filter: "TRUE",
        fetch_rows: 500,
        local_columns: &[],
    },
    // A2A tasks are not stored per app: a backup of one app leaves them out.
    BackupTable {
        name: "a2a_tasks",
        group: "a2a",
        order_by: "owner, task_id",
        app_filter: "FALSE",
        on_conflict: "ON CONFLICT (owner, task_id) DO NOTHING",
        restore_filter: "TRUE",
        fetch_rows: 200,
        local_columns: &[],
    },
    BackupTable {
        name: "a2a_push_configs",
        group: "a2a",
        order_by: "owner, task_id, config_id",
        app_filter: "FALSE",
        on_conflict: "ON CONFLICT (owner, task_id, config_id) DO NOTHING",
        restore_filter: "TRUE",
        fetch_rows: 500,
        local_columns: &[],
    },
    BackupTable {
        name: "a2a_task_feedback",
        group: "a2a",
        order_by: "feedback_id",
        app_filter: "FALSE",
        on_conflict: "ON CONFLICT (feedback_id) DO NOTHING",
        // Feedback on a task the target does not have (restored with --only) is skipped.
        restore_filter: "EXISTS (SELECT 1 FROM {s}.a2a_tasks k \
                         WHERE k.owner = r.owner AND k.task_id = r.task_id)",
        fetch_rows: 500,
        local_columns: &[],
    },
    // The agent registry is not per app either: a backup of one app leaves it out.
    BackupTable {
        name: "agents",
        group: "agents",
        order_by: "name",
        app_filter: "FALSE",
        // An agent the target has keeps its own row (and versions: see below).
        on_conflict: "ON CONFLICT (name) DO NOTHING",
        restore_filter: "TRUE",
        fetch_rows: 500,
        local_columns: &[],
    },
    BackupTable {
        name: "agent_versions",
        group: "agents",
        order_by: "name, version",
        app_filter: "FALSE",
        on_conflict: "ON CONFLICT (name, version) DO NOTHING",
        // Never a version beyond the target agent's own counter (an agent the target already
        // had keeps its own history; a put there would otherwise collide).
        restore_filter: "EXISTS (SELECT 1 FROM {s}.agents k \
                         WHERE k.name = r.name AND k.current_version >= r.version)",
        fetch_rows: 100,
        local_columns: &[],
    },
    BackupTable {
        name: "tenants",
        group: "tenancy",
        order_by: "role_name, app_name, user_id NULLS FIRST",
        app_filter: "t.app_name = {app}",
        on_conflict: "ON CONFLICT DO NOTHING",
        restore_filter: "TRUE",
        fetch_rows: 500,
        local_columns: &[],
    },
];

/// The `--only` groups, in file order; `sessions` also covers the session lines.
pub const BACKUP_GROUPS: &[&str] = &[
    "sessions",
    "conversations",
    "artifacts",
    "memory",
    "a2a",
    "agents",
    "tenancy",
];

fn table(name: &str) -> Result<&'static BackupTable> {
    BACKUP_TABLES
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| {
            StoreError::new(
                ErrorKind::Data,
                format!("{name:?} is not a table a backup holds"),
            )
        })
}

/// A snapshot of the backup tables of some groups, read a batch at a time. Holds one pooled
/// connection in a read-only transaction until [`BackupReader::close`] (or drop, which
/// detaches the connection from the pool so no open transaction ever returns to it).
pub struct BackupReader {
    db: Arc<Database>,
    state: Mutex<ReaderState>,
}

struct ReaderState {
    conn: Option<Object>,
    tables: Vec<&'static BackupTable>,
    /// Index into `tables` of the table being read; its cursor is open when `cursor_open`.
    next: usize,
    cursor_open: bool,
    /// Whether the reader selects one app (its name is in [`APP_SETTING`]).
    one_app: bool,
}

impl Admin {
    /// Opens a snapshot of the tables of `groups` (of one app when `app_name` is given).
    pub async fn open_backup(
        &self,
        groups: &[String],
        app_name: Option<String>,
    ) -> Result<BackupReader> {
        for group in groups {
            if !BACKUP_GROUPS.contains(&group.as_str()) {
                return Err(StoreError::config(format!(
                    "unknown backup part {group:?}: choose from {}",
                    BACKUP_GROUPS.join(", ")
                )));
            }
        }
        let (_sql, conn) = self.checked_connection(false).await?;
        conn.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        if let Some(app) = &app_name {
            rows(
                &conn,
                "SELECT set_config('adk_postgres.backup_app', $1, true)",
                &[app],
            )
            .await?;
        }
        let tables = BACKUP_TABLES
            .iter()
            .filter(|t| groups.iter().any(|g| g == t.group))
            .collect();
        Ok(BackupReader {
            db: self.db.clone(),
            state: Mutex::new(ReaderState {
                conn: Some(conn),
                tables,
                next: 0,
                cursor_open: false,
                one_app: app_name.is_some(),
            }),
        })
    }

    /// Inserts backed-up rows of `table` (JSON objects, as [`BackupReader::next_batch`]
    /// returned them) in one transaction; returns how many were new. A row the target already
    /// has is merged by the table's conflict rule. Unknown tables and rows that do not fit the
    /// table are refused (`DataError`) with nothing of the batch written. (`xmax = 0` tells an
    /// inserted row from one a conflict clause updated.)
    pub async fn restore_rows(&self, table_name: &str, rows: &[Vec<u8>]) -> Result<u64> {
        let spec = table(table_name)?;
        let (_sql, mut conn) = self.checked_connection(false).await?;
        let schema = quote_ident(self.db.schema());
        let mut array = Vec::with_capacity(rows.iter().map(|r| r.len() + 1).sum::<usize>() + 2);
        array.push(b'[');
        for (i, row) in rows.iter().enumerate() {
            if i > 0 {
                array.push(b',');
            }
            array.extend_from_slice(row);
        }
        array.push(b']');
        let array = String::from_utf8(array)
            .map_err(|_| StoreError::new(ErrorKind::Data, "a backup row is not UTF-8"))?;
        let name = quote_ident(spec.name);
        let statement = format!(
            "WITH added AS (
                 INSERT INTO {schema}.{name} AS t
                 SELECT r.* FROM jsonb_populate_recordset(NULL::{schema}.{name}, $1::text::jsonb) r
                  WHERE {filter}
                 {conflict}
                 RETURNING xmax = 0 AS inserted)
             SELECT count(*) FILTER (WHERE inserted) FROM added",
            filter = spec.restore_filter.replace("{s}", &schema),
            conflict = spec.on_conflict,
        );
        let tx = conn.transaction().await?;
        let added: i64 = one(&tx, &statement, &[&array]).await?.get(0);
        tx.commit().await?;
        Ok(added as u64)
    }
}

impl BackupReader {
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// The next rows, as `(table, JSON objects)`; `None` when every table was read. A batch
    /// never mixes tables.
    pub async fn next_batch(&self) -> Result<Option<(&'static str, Vec<Vec<u8>>)>> {
        let mut state = self.state.lock().await;
        let state = &mut *state;
        let schema = quote_ident(self.db.schema());
        loop {
            let Some(spec) = state.tables.get(state.next).copied() else {
                return Ok(None);
            };
            let conn = state.conn.as_ref().ok_or_else(closed)?;
            if !state.cursor_open {
                let filter = if state.one_app {
                    spec.app_filter
                        .replace("{s}", &schema)
                        .replace("{app}", APP_SETTING)
                } else {
                    "TRUE".to_string()
                };
                let without: String = spec
                    .local_columns
                    .iter()
                    .map(|column| format!(" - '{column}'"))
                    .collect();
                let declare = format!(
                    "DECLARE backup_rows NO SCROLL CURSOR FOR
                     SELECT (to_jsonb(t){without})::text FROM {schema}.{name} t
                      WHERE {filter} ORDER BY {order}",
                    name = quote_ident(spec.name),
                    order = spec.order_by,
                );
                conn.batch_execute(&declare).await?;
                state.cursor_open = true;
            }
            let fetch = format!("FETCH {} FROM backup_rows", spec.fetch_rows);
            let rows = rows(conn, &fetch, &[]).await?;
            if (rows.len() as i64) < spec.fetch_rows {
                conn.batch_execute("CLOSE backup_rows").await?;
                state.cursor_open = false;
                state.next += 1;
            }
            if !rows.is_empty() {
                let batch = rows
                    .iter()
                    .map(|row| row.get::<_, String>(0).into_bytes())
                    .collect();
                return Ok(Some((spec.name, batch)));
            }
        }
    }

    /// Ends the snapshot and returns the connection to the pool.
    pub async fn close(&self) -> Result<()> {
        let mut state = self.state.lock().await;
        if let Some(conn) = state.conn.take() {
            conn.batch_execute("ROLLBACK").await?;
        }
        Ok(())
    }
}

/// The app a reader selects, as a transaction-local setting: `DECLARE` is a utility
/// statement and takes no parameters, and the app name must never be pasted into SQL.
const APP_SETTING: &str = "current_setting('adk_postgres.backup_app')";

fn closed() -> StoreError {
    StoreError::new(ErrorKind::Closed, "the backup reader is closed")
}

impl Drop for BackupReader {
    fn drop(&mut self) {
        // Not closed: the connection is still in its transaction, so it must not go back to
        // the pool. Taking it out closes it when dropped here.
        if let Ok(mut state) = self.state.try_lock() {
            if let Some(conn) = state.conn.take() {
                drop(Object::take(conn));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backup_covers_every_table_but_the_ones_it_must_not() {
        let left_out = [
            "adk_internal_metadata",
            "adk_postgres_migrations",
            "sessions",
            "events",
            "artifact_fs_garbage",
            "session_runs",
        ];
        for name in super::super::OUR_TABLES {
            let backed_up = BACKUP_TABLES.iter().any(|t| t.name == *name);
            assert_ne!(backed_up, left_out.contains(name), "{name}");
        }
        for spec in BACKUP_TABLES {
            assert!(BACKUP_GROUPS.contains(&spec.group), "{}", spec.name);
        }
    }

    #[test]
    fn unknown_tables_are_refused() {
        assert!(table("pg_authid").is_err());
        assert!(table("sessions").is_err());
        assert!(table("artifact_versions").is_ok());
    }
}
