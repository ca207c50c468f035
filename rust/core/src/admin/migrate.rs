//! The migration status of a schema: applied and pending migrations; changes nothing.

use deadpool_postgres::Object;

use super::{one, rows, Admin, AdminSql};
use crate::error::{ErrorKind, Result, StoreError};
use crate::migrations::{latest_version, MIGRATIONS};
use crate::statement::On;

/// A migration recorded in the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedMigration {
    pub version: i32,
    pub name: String,
    /// UTC, ISO 8601; `None` if not recorded.
    pub applied_at: Option<String>,
}

/// Which migrations a schema has and which this build would still apply.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationStatus {
    pub schema: String,
    /// Highest applied version; 0 when none (or no migrations table).
    pub current: i32,
    pub latest: i32,
    pub applied: Vec<AppliedMigration>,
    /// `(version, name)` of migrations not applied yet.
    pub pending: Vec<(i32, &'static str)>,
}

impl MigrationStatus {
    fn from_applied(schema: &str, applied: Vec<AppliedMigration>) -> Self {
        let current = applied.iter().map(|m| m.version).max().unwrap_or(0);
        let pending = MIGRATIONS
            .iter()
            .filter(|m| !applied.iter().any(|a| a.version == m.version))
            .map(|m| (m.version, m.name))
            .collect();
        MigrationStatus {
            schema: schema.to_string(),
            current,
            latest: latest_version(),
            applied,
            pending,
        }
    }
}

pub(super) async fn read_migration_status(
    on: On<'_>,
    sql: &AdminSql,
    schema: &str,
) -> Result<MigrationStatus> {
    let exists = one(
        on,
        "SELECT to_regclass(format('%I.adk_postgres_migrations', $1::text)) IS NOT NULL",
        &[&schema],
    )
    .await?;
    let mut applied = Vec::new();
    if exists.get::<_, bool>(0) {
        for row in rows(on, &sql.applied_migrations, &[]).await? {
            applied.push(AppliedMigration {
                version: row.get(0),
                name: row.get(1),
                applied_at: row.get(2),
            });
        }
    }
    Ok(MigrationStatus::from_applied(schema, applied))
}

/// Fails unless the schema is exactly at this build's version (`or_newer`: or above it).
fn require_current(status: &MigrationStatus, or_newer: bool) -> Result<()> {
    let (current, latest, schema) = (status.current, status.latest, &status.schema);
    if current < latest {
        let what = if current == 0 {
            "has no adk-postgres tables".to_string()
        } else {
            format!("is at version {current}, this adk-postgres needs {latest}")
        };
        return Err(StoreError::new(
            ErrorKind::Schema,
            format!("schema {schema:?} {what}: run `adk-postgres migrate` first"),
        ));
    }
    if current > latest && !or_newer {
        return Err(StoreError::new(
            ErrorKind::Schema,
            format!(
                "schema {schema:?} is at version {current}, newer than this adk-postgres \
                 (version {latest}): upgrade adk-postgres"
            ),
        ));
    }
    Ok(())
}

impl Admin {
    /// Applied and pending migrations of this store's schema; changes nothing.
    pub async fn migration_status(&self) -> Result<MigrationStatus> {
        self.db.check_process()?;
        let conn = self.db.connection_unmigrated().await?;
        let sql = AdminSql::new(&self.db.config().options.schema);
        read_migration_status((&**conn).into(), &sql, &self.db.config().options.schema).await
    }
}

impl Admin {
    /// A connection to a schema this build can operate on (`or_newer`: a read-only operation
    /// also accepts a newer one), and the statements for it.
    pub(super) async fn checked_connection(&self, or_newer: bool) -> Result<(AdminSql, Object)> {
        self.db.check_process()?;
        let schema = self.db.schema();
        let sql = AdminSql::new(schema);
        let conn = self.db.connection_unmigrated().await?;
        let status = read_migration_status((&**conn).into(), &sql, schema).await?;
        require_current(&status, or_newer)?;
        Ok((sql, conn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_status_lists_pending_after_the_applied() {
        let applied = vec![AppliedMigration {
            version: 1,
            name: "adk_v1_tables".into(),
            applied_at: None,
        }];
        let status = MigrationStatus::from_applied("s", applied);
        assert_eq!(status.current, 1);
        assert_eq!(status.pending.len(), MIGRATIONS.len() - 1);
        assert_eq!(status.pending[0].0, 2);
        assert!(require_current(&status, true).is_err());
        let empty = MigrationStatus::from_applied("s", Vec::new());
        let err = require_current(&empty, true).unwrap_err();
        assert!(
            err.message.contains("adk-postgres migrate"),
            "{}",
            err.message
        );
    }
}
