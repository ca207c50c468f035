//! Statistics: counts per app and the size of each of our tables. Changes nothing.

use super::{rows, Admin, OUR_TABLES};
use crate::error::Result;

/// Counts for one app (or, in [`Stats::totals`], for every selected app).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AppStats {
    pub app_name: String,
    pub users: i64,
    pub sessions: i64,
    pub events: i64,
    pub artifact_files: i64,
    pub artifact_versions: i64,
    /// Bytes of the distinct contents the artifact versions use (shared contents count once).
    pub artifact_bytes: i64,
    pub memory_entries: i64,
}

/// Size of one table, with its indexes and TOAST.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSize {
    pub name: String,
    pub bytes: i64,
    /// The planner's row estimate (`pg_class.reltuples`); `None` until the table was first
    /// analyzed (PostgreSQL 14+ keeps -1 there; printing 0 would read like an empty table).
    pub rows_estimate: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub apps: Vec<AppStats>,
    /// Sums over `apps`, except `users` (distinct user ids) and `artifact_bytes` (distinct
    /// contents).
    pub totals: AppStats,
    /// Distinct contents the selected apps' versions use.
    pub artifact_contents: i64,
    /// Every stored content (all apps, and orphans), and their bytes.
    pub stored_contents: i64,
    pub stored_content_bytes: i64,
    /// A2A tasks (all apps: tasks are not stored per app) per state name, and feedback.
    pub a2a_tasks: Vec<(String, i64)>,
    pub a2a_feedback: i64,
    pub tables: Vec<TableSize>,
}

impl Admin {
    /// Counts per app (`app_name`: only that one) and totals, and the size of every table.
    pub async fn stats(&self, app_name: Option<&str>) -> Result<Stats> {
        let (sql, mut conn) = self.checked_connection(true).await?;
        let schema = self.db.schema();
        // One snapshot for both statements, so totals agree with the per-app rows.
        let tx = conn
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let mut apps = Vec::new();
        let mut totals = AppStats {
            app_name: "*".into(),
            ..AppStats::default()
        };
        for row in rows(&*tx, &sql.stats_apps, &[&app_name]).await? {
            let app = AppStats {
                app_name: row.get(0),
                users: row.get(1),
                sessions: row.get(2),
                events: row.get(3),
                artifact_files: row.get(4),
                artifact_versions: row.get(5),
                artifact_bytes: row.get(6),
                memory_entries: row.get(7),
            };
            totals.sessions += app.sessions;
            totals.events += app.events;
            totals.artifact_files += app.artifact_files;
            totals.artifact_versions += app.artifact_versions;
            totals.memory_entries += app.memory_entries;
            apps.push(app);
        }
        let tables: Vec<&str> = OUR_TABLES.to_vec();
        let mut stats = Stats {
            apps,
            totals,
            artifact_contents: 0,
            stored_contents: 0,
            stored_content_bytes: 0,
            a2a_tasks: Vec::new(),
            a2a_feedback: 0,
            tables: Vec::new(),
        };
        for row in rows(&*tx, &sql.stats_a2a, &[]).await? {
            if row.get::<_, i16>(0) == 0 {
                stats.a2a_tasks.push((row.get(1), row.get(2)));
            } else {
                stats.a2a_feedback = row.get(2);
            }
        }
        stats.a2a_tasks.sort();
        for row in rows(&*tx, &sql.stats_totals, &[&app_name, &tables, &schema]).await? {
            if row.get::<_, i16>(0) == 0 {
                stats.totals.users = row.get(2);
                stats.artifact_contents = row.get(3);
                stats.totals.artifact_bytes = row.get(4);
                stats.stored_contents = row.get(5);
                stats.stored_content_bytes = row.get(6);
            } else {
                stats.tables.push(TableSize {
                    name: row.get(1),
                    bytes: row.get(2),
                    rows_estimate: row.get(3),
                });
            }
        }
        tx.commit().await?;
        stats
            .tables
            .sort_by_key(|t| OUR_TABLES.iter().position(|name| *name == t.name));
        Ok(stats)
    }
}
