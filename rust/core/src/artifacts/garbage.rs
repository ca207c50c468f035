//! Deleting artifacts, and removing the files of contents nothing references any more:
//! those queued by the orphan trigger, and files left by saves that failed or crashed.

use std::time::Duration;

use super::files::{blocking, content_groups, content_path, io_error, lock_key, old_files};
use super::{release_on_failure, ArtifactKey, Artifacts, LOCK_CLASS};
use crate::db::Retry;
use crate::error::Result;

impl Artifacts {
    /// Deletes every version of an artifact (and contents no other version uses); `false` if
    /// there was none. With a content directory, the files of removed contents are unlinked.
    pub async fn delete_artifact(&self, key: ArtifactKey<'_>) -> Result<bool> {
        let rows = self
            .db
            .fetch(
                &self.sql.delete,
                &[&key.app_name, &key.user_id, &key.session_id, &key.filename],
                Retry::Yes,
            )
            .await?;
        self.db
            .wrote_scope(&self.positions, (key.app_name, key.user_id))
            .await;
        if self.content_dir.is_some() {
            self.collect_artifact_garbage().await?;
        }
        Ok(!rows.is_empty())
    }

    /// Unlinks the files of deleted `fs` contents (queued by the orphan trigger). Each hash is
    /// handled in its own transaction under an exclusive advisory lock, so no save of the same
    /// bytes is between its file check and its commit. Returns the number of files removed.
    pub async fn collect_artifact_garbage(&self) -> Result<usize> {
        let dir = self.dir_for_reading()?;
        let queued = self.db.fetch(&self.sql.garbage, &[], Retry::Yes).await?;
        if queued.is_empty() {
            return Ok(0);
        }
        let mut conn = self.db.connection().await?;
        let result = async {
            let mut removed = 0;
            for row in &queued {
                let sha: &[u8] = row.get(0);
                let tx = conn.transaction().await?;
                self.run(&tx, &self.sql.lock_content, &[&LOCK_CLASS, &lock_key(sha)])
                    .await?;
                let rows = self.run(&tx, &self.sql.collect_garbage, &[&sha]).await?;
                if rows.first().is_some_and(|r| r.get::<_, bool>(0)) {
                    let path = content_path(dir, sha);
                    match tokio::fs::remove_file(&path).await {
                        Ok(()) => removed += 1,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io_error("cannot remove", &path, e)),
                    }
                }
                tx.commit().await?;
            }
            Ok(removed)
        }
        .await;
        release_on_failure(conn, &result);
        result
    }

    /// Removes files in the content directory that no committed `fs` content uses: left by
    /// saves that failed, were cancelled or crashed after writing their file, and temp files
    /// of interrupted writes. Only files older than `grace` are considered (a margin on top
    /// of the lock protocol, e.g. for clocks of other hosts sharing the directory). Each file
    /// is removed under the exclusive lock on its hash after checking again (see
    /// [`Artifacts::save_artifact`]). `dry_run`: count only. Returns the number of files.
    pub async fn collect_orphan_files(&self, grace: Duration, dry_run: bool) -> Result<usize> {
        self.db.check_process()?;
        let dir = self.dir_for_reading()?.to_path_buf();
        let groups = blocking(|| content_groups(&dir))?;
        let mut conn = self.db.connection().await?;
        let result = async {
            let mut found = 0;
            for group in groups {
                let is_tmp = group.file_name().is_some_and(|n| n == "tmp");
                let now = std::time::SystemTime::now();
                let hashes = blocking(|| old_files(&group, is_tmp, grace, now))?;
                for batch in hashes.chunks(1000) {
                    let mut candidates: Vec<&[u8]> = batch.iter().map(|h| &h[..]).collect();
                    if !is_tmp {
                        // Most files are in use: one query per batch finds them.
                        let used = self
                            .db
                            .statements()
                            .query(&conn, &self.sql.fs_contents_among, &[&candidates])
                            .await?;
                        let used: std::collections::HashSet<Vec<u8>> =
                            used.iter().map(|r| r.get(0)).collect();
                        candidates.retain(|h| !used.contains(*h));
                    }
                    for sha in candidates {
                        found += if dry_run {
                            1
                        } else {
                            self.remove_unused_file(&mut conn, &dir, sha, true).await?
                        };
                    }
                }
            }
            Ok(found)
        }
        .await;
        release_on_failure(conn, &result);
        result
    }
}
