//! A tiny embedded migration runner.
//!
//! Why not refinery: our schema name is configurable (refinery's SQL is fixed text) and all
//! pending migrations must run in one transaction under our advisory lock, so several processes
//! starting at once migrate exactly once. The runner is ~60 lines; the SQL lives in
//! `rust/core/migrations/` with `{schema}` standing for the quoted schema name.

use tokio_postgres::Client;

use crate::error::{ErrorKind, Result, StoreError};
use crate::ident::quote_ident;
use crate::statement::UNNAMED;

/// One versioned migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// One `Migration` from `migrations/V<version>__<name>.sql`.
macro_rules! migration {
    ($version:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../migrations/V", $version, "__", $name, ".sql")),
        }
    };
}

/// All migrations, in order. Append only; never edit one that has shipped.
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "adk_v1_tables"),
    migration!(2, "revision_and_exact_times"),
    migration!(3, "artifacts"),
    migration!(4, "memory"),
    migration!(5, "tenancy"),
    migration!(6, "session_incarnation"),
    migration!(7, "tenancy_hardening"),
    migration!(8, "session_run_leases"),
    migration!(9, "a2a"),
    migration!(10, "conversations"),
    migration!(11, "agent_registry"),
];

/// The newest schema version this build knows.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Fills `{schema}` in a migration's SQL.
pub fn render(sql: &str, schema: &str) -> String {
    sql.replace("{schema}", &quote_ident(schema))
}

/// Applies every pending migration in one transaction under an advisory lock keyed by the
/// schema name. Returns the schema version afterwards.
pub async fn migrate(client: &mut Client, schema: &str) -> Result<i32> {
    // Also checked when the config is parsed; repeated here because `render` pastes the name
    // into function bodies, where only this check makes it safe.
    crate::config::validate_schema_name(schema)?;
    let s = quote_ident(schema);
    // Fast path, and what lets a runtime role without DDL rights start: an up-to-date schema
    // needs no lock and no DDL. (Any error here — no such table yet — means: migrate.)
    let applied = UNNAMED
        .query_one(
            &*client,
            &format!("SELECT COALESCE(max(version), 0) FROM {s}.adk_postgres_migrations"),
            &[],
        )
        .await;
    if let Ok(row) = applied {
        let version: i32 = row.get(0);
        if version >= latest_version() {
            return Ok(version);
        }
    }
    let tx = client.transaction().await?;
    // Serialise concurrent migrators of this schema (other processes starting at the same time).
    UNNAMED
        .execute(
            &tx,
            "SELECT pg_advisory_xact_lock(hashtext('adk_postgres:' || $1::text))",
            &[&schema],
        )
        .await?;
    // The lock may have waited for another migrator's commit. This backend's catalog cache can
    // still hold what it saw before (e.g. "no such schema", from the fast path above), and
    // taking an advisory lock does not refresh it: opening a catalog relation does. Without
    // this, `CREATE SCHEMA IF NOT EXISTS` can fail with a duplicate key on pg_namespace.
    tx.batch_execute(&format!(
        "SELECT FROM pg_catalog.pg_namespace LIMIT 0;
         CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.adk_postgres_migrations (
             version    integer     PRIMARY KEY,
             name       text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .await
    .map_err(|e| migration_error("preparing", e))?;
    let row = UNNAMED
        .query_one(
            &tx,
            &format!("SELECT COALESCE(max(version), 0) FROM {s}.adk_postgres_migrations"),
            &[],
        )
        .await?;
    let current: i32 = row.get(0);
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.batch_execute(&render(migration.sql, schema))
            .await
            .map_err(|e| migration_error(migration.name, e))?;
        UNNAMED
            .execute(
                &tx,
                &format!("INSERT INTO {s}.adk_postgres_migrations (version, name) VALUES ($1, $2)"),
                &[&migration.version, &migration.name],
            )
            .await?;
    }
    check_adk_schema(&tx, schema).await?;
    tx.commit().await?;
    Ok(current.max(latest_version()))
}

/// ADK's legacy v0 schema (pickled events, one column per field) has no `event_data`.
async fn check_adk_schema(tx: &tokio_postgres::Transaction<'_>, schema: &str) -> Result<()> {
    let row = UNNAMED
        .query_one(
            tx,
            "SELECT count(*) FROM information_schema.columns
              WHERE table_schema = $1 AND table_name = 'events' AND column_name = 'event_data'",
            &[&schema],
        )
        .await?;
    let found: i64 = row.get(0);
    if found == 0 {
        return Err(StoreError::new(
            ErrorKind::Schema,
            format!(
                "schema {schema:?} holds ADK's legacy v0 (pickle) session tables; migrate them \
                 with ADK's `adk migrate session` first"
            ),
        ));
    }
    Ok(())
}

fn migration_error(step: &str, err: tokio_postgres::Error) -> StoreError {
    let inner = StoreError::from(err);
    let kind = match inner.kind {
        ErrorKind::Connection | ErrorKind::Privilege | ErrorKind::StatementTimeout => inner.kind,
        _ => ErrorKind::Schema,
    };
    StoreError {
        kind,
        message: format!("migration {step} failed: {}", inner.message),
        sqlstate: inner.sqlstate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1, "{}", m.name);
        }
        assert_eq!(latest_version(), MIGRATIONS.len() as i32);
    }

    #[test]
    fn render_qualifies_every_table() {
        for m in MIGRATIONS {
            let sql = render(m.sql, "my schema");
            assert!(!sql.contains("{schema}"));
            assert!(sql.contains("\"my schema\"."), "{}", m.name);
        }
    }

    #[test]
    fn v1_keeps_adk_table_shapes() {
        let sql = MIGRATIONS[0].sql;
        for needle in [
            "adk_internal_metadata",
            "PRIMARY KEY (app_name, user_id, id)",
            "PRIMARY KEY (id, app_name, user_id, session_id)",
            "idx_events_app_user_session_ts_id",
            "('schema_version', '1')",
            "ON DELETE CASCADE",
        ] {
            assert!(sql.contains(needle), "{needle}");
        }
    }
}
