//! Pruning: idle sessions, old events and orphaned artifacts, in batches, each batch its own
//! transaction (see the module docs of `admin`).

use std::path::PathBuf;
use std::time::Duration;

use super::{one, rows, Admin, AdminSql, DEFAULT_BATCH_SIZE};
use crate::artifacts::Artifacts;
use crate::error::{Result, StoreError};

/// What to prune. At least one of `idle_for_s`, `keep_events`, `orphaned_artifacts`,
/// `tasks_finished_for_s`.
#[derive(Debug, Clone, PartialEq)]
pub struct PruneOptions {
    /// Only this app (`None`: every app).
    pub app_name: Option<String>,
    /// Delete sessions whose update time is older than this many seconds.
    pub idle_for_s: Option<f64>,
    /// Keep only the newest N events of each session.
    pub keep_events: Option<i64>,
    /// Delete artifacts of sessions that no longer exist, contents no version uses, and (with
    /// `content_dir`) the files of deleted contents.
    pub orphaned_artifacts: bool,
    /// Directory of `fs` contents (the artifact service's `content_dir`).
    pub content_dir: Option<PathBuf>,
    /// With `content_dir`: files no content uses (left by failed or cancelled saves) are
    /// removed once at least this many seconds old.
    pub file_grace_s: f64,
    /// Delete A2A tasks that finished (completed, failed, canceled, rejected) and were not
    /// saved for this many seconds, with their feedback. Tasks are not stored per app, so
    /// this cannot be combined with `app_name`.
    pub tasks_finished_for_s: Option<f64>,
    /// Delete conversations (sessions, with their events) archived longer ago than this many
    /// seconds.
    pub archived_for_s: Option<f64>,
    /// Count only; change nothing.
    pub dry_run: bool,
    /// Sessions (artifact files, contents) per transaction.
    pub batch_size: i64,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            app_name: None,
            idle_for_s: None,
            keep_events: None,
            orphaned_artifacts: false,
            content_dir: None,
            file_grace_s: crate::artifacts::DEFAULT_FILE_GRACE_S,
            tasks_finished_for_s: None,
            archived_for_s: None,
            dry_run: false,
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }
}

impl PruneOptions {
    fn validate(&self) -> Result<()> {
        if self.idle_for_s.is_none()
            && self.keep_events.is_none()
            && !self.orphaned_artifacts
            && self.tasks_finished_for_s.is_none()
            && self.archived_for_s.is_none()
        {
            return Err(StoreError::config(
                "nothing to prune: give idle_for, keep_events, orphaned_artifacts, \
                 tasks_finished_before or archived_for",
            ));
        }
        if let Some(s) = self.archived_for_s {
            if !s.is_finite() || s <= 0.0 {
                return Err(StoreError::config(
                    "archived_for must be a positive duration",
                ));
            }
        }
        if let Some(s) = self.tasks_finished_for_s {
            if !s.is_finite() || s <= 0.0 {
                return Err(StoreError::config(
                    "tasks_finished_before must be a positive duration",
                ));
            }
            if self.app_name.is_some() {
                return Err(StoreError::config(
                    "A2A tasks are not stored per app: prune them without an app name",
                ));
            }
        }
        if let Some(s) = self.idle_for_s {
            if !s.is_finite() || s <= 0.0 {
                return Err(StoreError::config("idle_for must be a positive duration"));
            }
        }
        if self.keep_events.is_some_and(|n| n < 0) {
            return Err(StoreError::config("keep_events must be >= 0"));
        }
        if !self.file_grace_s.is_finite() || self.file_grace_s < 0.0 {
            return Err(StoreError::config("file_grace must be a duration >= 0"));
        }
        if self.batch_size < 1 {
            return Err(StoreError::config("batch_size must be >= 1"));
        }
        Ok(())
    }
}

/// What was (or, in a dry run, would be) deleted in one app.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AppPruned {
    pub app_name: String,
    /// Idle sessions.
    pub sessions: i64,
    /// Events of those sessions.
    pub session_events: i64,
    /// Events beyond `keep_events` in the remaining sessions.
    pub events: i64,
    /// Artifacts (all versions) of sessions that no longer exist.
    pub artifact_files: i64,
    pub artifact_versions: i64,
    /// Sessions archived longer ago than `archived_for`, and their events.
    pub archived_sessions: i64,
    pub archived_events: i64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct PruneReport {
    pub dry_run: bool,
    /// Sessions updated before this time (epoch seconds, server clock) counted as idle.
    pub cutoff: Option<f64>,
    pub apps: Vec<AppPruned>,
    /// Artifact contents (deduplicated payloads) no version uses any more, and their bytes.
    pub contents: i64,
    pub content_bytes: i64,
    /// Content files unlinked (dry run: to unlink; needs `content_dir`).
    pub files: i64,
    /// Content files still queued in `artifact_fs_garbage` (no `content_dir` given).
    pub files_queued: i64,
    /// A2A tasks finished before this time (epoch seconds, server clock) were pruned.
    pub tasks_cutoff: Option<f64>,
    /// A2A tasks deleted, and the feedback that went with them.
    pub tasks: i64,
    pub task_feedback: i64,
    /// Conversations archived before this time (epoch seconds, server clock) were pruned.
    pub archived_cutoff: Option<f64>,
    /// Transactions committed.
    pub batches: i64,
}

impl PruneReport {
    fn app(&mut self, name: &str) -> &mut AppPruned {
        let pos = match self.apps.iter().position(|a| a.app_name == name) {
            Some(pos) => pos,
            None => {
                self.apps.push(AppPruned {
                    app_name: name.to_string(),
                    ..AppPruned::default()
                });
                self.apps.len() - 1
            }
        };
        &mut self.apps[pos]
    }
}

impl Admin {
    /// Deletes idle sessions, old events and orphaned artifacts (see [`PruneOptions`]), in
    /// batches of `batch_size`, each its own transaction; or, with `dry_run`, counts them.
    ///
    /// Never changes a session's `revision`: a `Session` object a running agent holds stays
    /// appendable. Processes with a warm session cache keep the pruned events of sessions
    /// they already read until the entry is evicted or the process restarts; reads with
    /// `num_recent_events <= keep_events` return the same events either way.
    pub async fn prune(&self, options: &PruneOptions) -> Result<PruneReport> {
        options.validate()?;
        let (sql, mut conn) = self.checked_connection(false).await?;
        let app = options.app_name.as_deref();
        let mut report = PruneReport {
            dry_run: options.dry_run,
            ..PruneReport::default()
        };
        if options.idle_for_s.is_some()
            || options.tasks_finished_for_s.is_some()
            || options.archived_for_s.is_some()
        {
            let row = one(
                &conn,
                "SELECT extract(epoch FROM clock_timestamp())::float8",
                &[],
            )
            .await?;
            let now = row.get::<_, f64>(0);
            report.cutoff = options.idle_for_s.map(|s| now - s);
            report.tasks_cutoff = options.tasks_finished_for_s.map(|s| now - s);
            report.archived_cutoff = options.archived_for_s.map(|s| now - s);
        }
        let archived_cutoff = report.archived_cutoff;
        let tasks_cutoff = report.tasks_cutoff;
        let cutoff = report.cutoff;
        let batch = options.batch_size;
        if options.dry_run {
            // One read-only snapshot, so the counts add up as a real run would see them.
            let tx = conn
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            if archived_cutoff.is_some() {
                for row in rows(&*tx, &sql.dry_archived, &[&app, &archived_cutoff]).await? {
                    let a = report.app(row.get(0));
                    a.archived_sessions = row.get(1);
                    a.archived_events = row.get(2);
                }
            }
            if cutoff.is_some() {
                for row in rows(&*tx, &sql.dry_idle, &[&app, &cutoff]).await? {
                    let a = report.app(row.get(0));
                    a.sessions = row.get(1);
                    a.session_events = row.get(2);
                }
            }
            if let Some(keep) = options.keep_events {
                for row in rows(&*tx, &sql.dry_events, &[&app, &cutoff, &keep]).await? {
                    report.app(row.get(0)).events = row.get(1);
                }
            }
            if options.orphaned_artifacts {
                for row in rows(&*tx, &sql.dry_artifacts, &[&app, &cutoff]).await? {
                    let a = report.app(row.get(0));
                    a.artifact_files = row.get(1);
                    a.artifact_versions = row.get(2);
                }
                let unreferenced_too = app.is_none();
                let row = one(&tx, &sql.dry_contents, &[&app, &cutoff, &unreferenced_too]).await?;
                report.contents = row.get(0);
                report.content_bytes = row.get(1);
                let new_files: i64 = row.get(2);
                let queued: i64 = one(&tx, &sql.fs_queued, &[]).await?.get(0);
                if let Some(dir) = &options.content_dir {
                    let backend = Artifacts::new(self.db.clone(), Some(dir.clone()));
                    let grace = Duration::from_secs_f64(options.file_grace_s);
                    let orphans = backend.collect_orphan_files(grace, true).await?;
                    report.files = queued + new_files + orphans as i64;
                } else {
                    report.files_queued = queued + new_files;
                }
            }
            if tasks_cutoff.is_some() {
                let row = one(&tx, &sql.dry_tasks, &[&tasks_cutoff]).await?;
                report.tasks = row.get(0);
                report.task_feedback = row.get(1);
            }
            tx.commit().await?;
            report.apps.sort_by(|a, b| a.app_name.cmp(&b.app_name));
            return Ok(report);
        }

        if archived_cutoff.is_some() {
            loop {
                let found = rows(
                    &**conn,
                    &sql.prune_archived,
                    &[&app, &archived_cutoff, &batch],
                )
                .await?;
                if found.is_empty() {
                    break;
                }
                report.batches += 1;
                for row in found {
                    let a = report.app(row.get(0));
                    a.archived_sessions += row.get::<_, i64>(1);
                    a.archived_events += row.get::<_, i64>(2);
                }
            }
        }
        if cutoff.is_some() {
            loop {
                let found = rows(&**conn, &sql.prune_idle, &[&app, &cutoff, &batch]).await?;
                if found.is_empty() {
                    break;
                }
                report.batches += 1;
                for row in found {
                    let a = report.app(row.get(0));
                    a.sessions += row.get::<_, i64>(1);
                    a.session_events += row.get::<_, i64>(2);
                }
            }
        }
        if let Some(keep) = options.keep_events {
            let mut last: Option<(String, String, String)> = None;
            loop {
                let (la, lu, li) = match &last {
                    Some((a, u, i)) => (Some(a.as_str()), Some(u.as_str()), Some(i.as_str())),
                    None => (None, None, None),
                };
                let found = rows(
                    &**conn,
                    &sql.prune_events,
                    &[&app, &keep, &batch, &la, &lu, &li],
                )
                .await?;
                report.batches += 1;
                let mut next = None;
                for row in found {
                    if row.get::<_, i16>(0) == 0 {
                        report.app(row.get(1)).events += row.get::<_, i64>(2);
                    } else {
                        next = Some((row.get(1), row.get(3), row.get(4)));
                    }
                }
                if next.is_none() {
                    break;
                }
                last = next;
            }
        }
        if options.orphaned_artifacts {
            self.prune_orphaned_artifacts(&mut conn, &sql, options, &mut report)
                .await?;
        }
        if tasks_cutoff.is_some() {
            loop {
                let row = one(&**conn, &sql.prune_tasks, &[&tasks_cutoff, &batch]).await?;
                let (tasks, feedback): (i64, i64) = (row.get(0), row.get(1));
                if tasks == 0 {
                    break;
                }
                report.batches += 1;
                report.tasks += tasks;
                report.task_feedback += feedback;
            }
        }
        report.apps.sort_by(|a, b| a.app_name.cmp(&b.app_name));
        Ok(report)
    }

    async fn prune_orphaned_artifacts(
        &self,
        conn: &mut deadpool_postgres::Object,
        sql: &AdminSql,
        options: &PruneOptions,
        report: &mut PruneReport,
    ) -> Result<()> {
        let app = options.app_name.as_deref();
        let batch = options.batch_size;
        // Artifacts of sessions that are gone. The contents their versions used go with them
        // (V3 trigger) unless another version still uses them.
        loop {
            let tx = conn.transaction().await?;
            let found = rows(&*tx, &sql.prune_artifacts, &[&app, &batch]).await?;
            let mut deleted_any = false;
            let mut candidates: Option<(i64, i64, Vec<Vec<u8>>)> = None;
            for row in found {
                if row.get::<_, i16>(0) == 0 {
                    deleted_any = true;
                    let a = report.app(row.get(1));
                    a.artifact_files += row.get::<_, i64>(2);
                    a.artifact_versions += row.get::<_, i64>(3);
                } else {
                    let hashes: Option<Vec<Vec<u8>>> = row.get(4);
                    candidates = Some((row.get(2), row.get(3), hashes.unwrap_or_default()));
                }
            }
            if let Some((count, bytes, hashes)) = candidates.filter(|c| !c.2.is_empty()) {
                let left = one(&tx, &sql.contents_left, &[&hashes]).await?;
                report.contents += count - left.get::<_, i64>(0);
                report.content_bytes += bytes - left.get::<_, i64>(1);
            }
            tx.commit().await?;
            if !deleted_any {
                break;
            }
            report.batches += 1;
        }
        // Contents no version uses (left behind by a trigger that skipped a row a failed save
        // held, a TRUNCATE, a restore without triggers…). Not app-scoped: only without --app.
        if app.is_none() {
            let mut last: Option<Vec<u8>> = None;
            loop {
                let tx = conn.transaction().await?;
                let locked = rows(&*tx, &sql.orphan_contents, &[&last, &batch]).await?;
                if locked.is_empty() {
                    tx.commit().await?;
                    break;
                }
                let hashes: Vec<Vec<u8>> = locked.iter().map(|r| r.get(0)).collect();
                let row = one(&tx, &sql.delete_contents, &[&hashes]).await?;
                report.contents += row.get::<_, i64>(0);
                report.content_bytes += row.get::<_, i64>(1);
                tx.commit().await?;
                report.batches += 1;
                last = hashes.last().cloned();
            }
        }
        // Files of deleted `fs` contents.
        let queued: i64 = one(&**conn, &sql.fs_queued, &[]).await?.get(0);
        match &options.content_dir {
            Some(dir) if queued > 0 => {
                let backend = Artifacts::new(self.db.clone(), Some(dir.clone()));
                // Each call takes up to 1,000 queued hashes off the queue.
                for _ in 0..(queued / 1000 + 2) {
                    report.files += backend.collect_artifact_garbage().await? as i64;
                    let left: i64 = one(&**conn, &sql.fs_queued, &[]).await?.get(0);
                    if left == 0 {
                        break;
                    }
                }
                report.files_queued = one(&**conn, &sql.fs_queued, &[]).await?.get(0);
            }
            _ => report.files_queued = queued,
        }
        // Files no content uses (saves that failed or were cancelled after writing them).
        if let Some(dir) = &options.content_dir {
            let backend = Artifacts::new(self.db.clone(), Some(dir.clone()));
            let grace = Duration::from_secs_f64(options.file_grace_s);
            report.files += backend.collect_orphan_files(grace, false).await? as i64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn prune_options_need_a_criterion_and_sane_values() {
        let none = PruneOptions::default();
        assert_eq!(none.validate().unwrap_err().kind, ErrorKind::Config);
        let ok = PruneOptions {
            keep_events: Some(0),
            ..PruneOptions::default()
        };
        assert!(ok.validate().is_ok());
        for bad in [
            PruneOptions {
                idle_for_s: Some(0.0),
                ..PruneOptions::default()
            },
            PruneOptions {
                keep_events: Some(-1),
                ..PruneOptions::default()
            },
            PruneOptions {
                orphaned_artifacts: true,
                batch_size: 0,
                ..PruneOptions::default()
            },
        ] {
            assert_eq!(bad.validate().unwrap_err().kind, ErrorKind::Config);
        }
    }
}
