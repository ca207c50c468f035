//! Row-level security by tenant (see `migrations/V5__tenancy.sql`, hardened by V7): turning it
//! on and off, and the role → app (→ user) grants. These are owner operations: the runtime
//! roles they constrain cannot run them.

use std::sync::Arc;

use crate::db::Database;
use crate::error::{ErrorKind, Result, StoreError};
use crate::ident::quote_ident;
use crate::statement::UNNAMED;

/// The tables whose rows belong to an app (and user), in the order RLS is switched.
pub const TENANT_TABLES: &[&str] = &[
    "sessions",
    "events",
    "app_states",
    "user_states",
    "artifact_files",
    "artifact_versions",
    "memory_entries",
    "memory_tombstones",
    "session_runs",
    "conversations",
];

/// One grant: `role` may see `app_name`, for every user (`user_id` None) or one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantGrant {
    pub role: String,
    pub app_name: String,
    pub user_id: Option<String>,
}

/// The row checks the policies call, as a GRANT/REVOKE target list.
fn check_functions(s: &str) -> String {
    format!(
        "{s}.adk_postgres_tenant_sees(name, text, text), {s}.adk_postgres_tenant_sees_app(name, text)"
    )
}

/// The tenancy operations on one database handle.
pub struct Tenancy {
    db: Arc<Database>,
}

impl Tenancy {
    pub fn new(db: Arc<Database>) -> Self {
        Tenancy { db }
    }

    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// The quoted schema name.
    fn schema(&self) -> String {
        quote_ident(self.db.schema())
    }

    /// Enables (or disables) row-level security on every tenant table, all or none.
    pub async fn set_row_level_security(&self, enabled: bool) -> Result<()> {
        let s = self.schema();
        let action = if enabled { "ENABLE" } else { "DISABLE" };
        let statements: String = TENANT_TABLES
            .iter()
            .map(|t| format!("ALTER TABLE {s}.{t} {action} ROW LEVEL SECURITY;"))
            .collect();
        // One simple-protocol message: PostgreSQL runs it as one implicit transaction.
        let conn = self.db.connection().await?;
        Ok(conn.batch_execute(&statements).await?)
    }

    /// Whether row-level security is on (all tenant tables agree, or it is reported off).
    pub async fn row_level_security(&self) -> Result<bool> {
        let conn = self.db.connection().await?;
        let row = UNNAMED
            .query_one(
                &conn,
                "SELECT bool_and(c.relrowsecurity) FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $1 AND c.relname = ANY($2::text[])",
                &[&self.db.schema(), &TENANT_TABLES],
            )
            .await?;
        Ok(row.get::<_, Option<bool>>(0).unwrap_or(false))
    }

    /// Lets `grant.role` (an existing role) see one app, or one user of it. Idempotent.
    pub async fn grant_tenant(&self, grant: &TenantGrant) -> Result<()> {
        let mut conn = self.db.connection().await?;
        let exists = UNNAMED
            .query_opt(
                &conn,
                "SELECT 1 FROM pg_roles WHERE rolname = $1",
                &[&grant.role],
            )
            .await?;
        if exists.is_none() {
            return Err(StoreError::new(
                ErrorKind::Data,
                format!("no database role named {:?}", grant.role),
            ));
        }
        let s = self.schema();
        let tx = conn.transaction().await?;
        UNNAMED
            .execute(
                &tx,
                &format!(
                    "INSERT INTO {s}.tenants (role_name, app_name, user_id) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING"
                ),
                &[&grant.role, &grant.app_name, &grant.user_id],
            )
            .await?;
        // The policies call the check functions as the querying role (PUBLIC may not, V7).
        tx.batch_execute(&format!(
            "GRANT EXECUTE ON FUNCTION {} TO {}",
            check_functions(&s),
            quote_ident(&grant.role)
        ))
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a grant; `true` if there was one.
    pub async fn revoke_tenant(&self, grant: &TenantGrant) -> Result<bool> {
        let s = self.schema();
        let mut conn = self.db.connection().await?;
        let tx = conn.transaction().await?;
        let n = UNNAMED
            .execute(
                &tx,
                &format!(
                    "DELETE FROM {s}.tenants WHERE role_name = $1 AND app_name = $2
                       AND user_id IS NOT DISTINCT FROM $3"
                ),
                &[&grant.role, &grant.app_name, &grant.user_id],
            )
            .await?;
        let left = UNNAMED
            .query_opt(
                &tx,
                &format!("SELECT 1 FROM {s}.tenants WHERE role_name = $1 LIMIT 1"),
                &[&grant.role],
            )
            .await?;
        let role_exists = UNNAMED
            .query_opt(
                &tx,
                "SELECT 1 FROM pg_roles WHERE rolname = $1",
                &[&grant.role],
            )
            .await?;
        if left.is_none() && role_exists.is_some() {
            tx.batch_execute(&format!(
                "REVOKE EXECUTE ON FUNCTION {} FROM {}",
                check_functions(&s),
                quote_ident(&grant.role)
            ))
            .await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Every grant, by role, app and user.
    pub async fn list_tenants(&self) -> Result<Vec<TenantGrant>> {
        let s = self.schema();
        let conn = self.db.connection().await?;
        let rows = UNNAMED
            .query(
                &conn,
                &format!(
                    "SELECT role_name::text, app_name, user_id FROM {s}.tenants
                      ORDER BY 1, 2, 3 NULLS FIRST"
                ),
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| TenantGrant {
                role: r.get(0),
                app_name: r.get(1),
                user_id: r.get(2),
            })
            .collect())
    }
}
