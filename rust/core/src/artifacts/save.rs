//! Saving a version: one statement for a payload of at most one chunk in PostgreSQL, else one
//! transaction streaming chunk rows or writing the content file first.

use std::path::Path;

use deadpool_postgres::Object;

use super::files::write_content_file;
use super::files::{blocking, content_path, hex, io_error, lock_key, remove_if_present, sha256};
use super::LOCK_CLASS;
use super::{release_on_failure, ArtifactKey, Artifacts, NewVersion, Storage, CHUNK_SIZE};
use crate::codec::JsonTextParam;
use crate::db::Retry;
use crate::error::{ErrorKind, Result, StoreError};
use crate::failover::is_lost;
use crate::statement::Param;

/// The parameters of `ArtifactSql::save`.
struct SaveParams<'a> {
    key: ArtifactKey<'a>,
    sha: &'a [u8],
    size: i64,
    storage: &'static str,
    chunk0: Option<&'a [u8]>,
    kind: i16,
    part: JsonTextParam<'a>,
    mime: Option<&'a str>,
    meta: Option<JsonTextParam<'a>>,
    create_time: f64,
}

impl SaveParams<'_> {
    fn refs(&self) -> [&dyn Param; 13] {
        [
            &self.key.app_name,
            &self.key.user_id,
            &self.key.session_id,
            &self.key.filename,
            &self.sha,
            &self.size,
            &self.storage,
            &self.chunk0,
            &self.kind,
            &self.part,
            &self.mime,
            &self.meta,
            &self.create_time,
        ]
    }
}

impl Artifacts {
    /// Saves a new version of an artifact and returns its number (0 for the first).
    ///
    /// `payload` is the content (empty for payload kind 0). Payloads of at most [`CHUNK_SIZE`]
    /// bytes in PostgreSQL take one statement; larger ones stream in chunk rows within one
    /// transaction; with a content directory the file is written (atomically) before the
    /// version row is inserted.
    ///
    /// Not simply repeated after a lost connection: a save that committed before its answer
    /// was lost would be stored twice. While a failover is ridden out (`failover.rs`), the next
    /// attempt first looks for the version the lost one may have stored: same key, content
    /// and create time.
    pub async fn save_artifact(
        &self,
        key: ArtifactKey<'_>,
        payload: &[u8],
        version: NewVersion<'_>,
    ) -> Result<i64> {
        let sha = sha256(payload);
        let mut failover = self.db.failover();
        loop {
            if failover.waited() {
                let probe: [&dyn Param; 6] = [
                    &key.app_name,
                    &key.user_id,
                    &key.session_id,
                    &key.filename,
                    &&sha[..],
                    &version.create_time,
                ];
                let found = self
                    .db
                    .fetch_opt(&self.sql.saved_version, &probe, Retry::Yes);
                if let Some(row) = found.await? {
                    let scope = (key.app_name, key.user_id);
                    self.db.wrote_scope(&self.positions, scope).await;
                    return Ok(row.get(0));
                }
            }
            match self.save_once(key, payload, &sha, version).await {
                Err(err) if is_lost(&err) => failover.pause(err).await?,
                other => {
                    let saved = other?;
                    let scope = (key.app_name, key.user_id);
                    self.db.wrote_scope(&self.positions, scope).await;
                    return Ok(saved);
                }
            }
        }
    }

    async fn save_once(
        &self,
        key: ArtifactKey<'_>,
        payload: &[u8],
        sha: &[u8; 32],
        version: NewVersion<'_>,
    ) -> Result<i64> {
        let sha = *sha;
        let size = payload.len() as i64;
        // Empty payloads (file references, empty text) need no bytes anywhere.
        let storage = if payload.is_empty() {
            Storage::Db
        } else {
            self.storage()
        };
        let params = |with_chunk: bool, storage: Storage| SaveParams {
            key,
            sha: &sha,
            size,
            storage: storage.as_str(),
            chunk0: with_chunk.then_some(payload),
            kind: version.payload_kind,
            part: JsonTextParam(version.part_json),
            mime: version.mime_type,
            meta: version.custom_metadata.map(JsonTextParam),
            create_time: version.create_time,
        };
        if storage == Storage::Db && payload.len() <= CHUNK_SIZE {
            // One statement: content row, its chunk when new, counter, version row.
            let p = params(!payload.is_empty(), Storage::Db);
            let rows = self.db.fetch(&self.sql.save, &p.refs(), Retry::No).await?;
            return Ok(rows[0].get(0));
        }
        let mut conn = self.db.connection().await?;
        // Whether a file of this hash may exist because of this save (written now or found
        // there): if the save then fails, the file must not outlive it unreferenced.
        let mut touched_file = false;
        let result = async {
            let tx = conn.transaction().await?;
            let mut wrote = false;
            if storage == Storage::Db {
                let rows = self
                    .run(
                        &tx,
                        &self.sql.upsert_content,
                        &[&&sha[..], &size, &Storage::Db.as_str()],
                    )
                    .await?;
                if rows[0].get::<_, bool>(0) {
                    // One chunk in flight at a time: memory stays at about one chunk.
                    for (seq, chunk) in payload.chunks(CHUNK_SIZE).enumerate() {
                        let seq = seq as i32;
                        self.run(&tx, &self.sql.insert_chunk, &[&&sha[..], &seq, &chunk])
                            .await?;
                    }
                }
            } else {
                let rows = self
                    .run(
                        &tx,
                        &self.sql.lock_content_shared,
                        &[&LOCK_CLASS, &lock_key(&sha), &&sha[..]],
                    )
                    .await?;
                // A committed content row means its bytes are in place (a file, which our
                // shared lock keeps, or chunk rows, which the row lock taken by `save` keeps).
                // Otherwise write the file now, before any row points at it.
                if rows[0].get::<_, Option<&str>>(0).is_none() {
                    touched_file = true;
                    write_content_file(self.dir_for_writing()?, &sha, payload).await?;
                    wrote = true;
                }
            }
            let p = params(false, storage);
            let rows = self.run(&tx, &self.sql.save, &p.refs()).await?;
            let version: i64 = rows[0].get(0);
            let inserted: bool = rows[0].get(1);
            if storage == Storage::Fs && inserted && !wrote {
                // The row we saw was deleted meanwhile and ours replaces it: its bytes must be
                // on disk before our row commits.
                touched_file = true;
                write_content_file(self.dir_for_writing()?, &sha, payload).await?;
            }
            tx.commit().await?;
            Ok::<_, StoreError>(version)
        }
        .await;
        if result.is_err() && touched_file {
            // The transaction is gone (its ROLLBACK is queued on `conn`, ahead of anything we
            // send next); remove the file unless another save of the same bytes now uses it.
            // Best effort: whatever is left (a cancelled save, a lock still held, a dead
            // connection) is found later by `collect_orphan_files`.
            let dir = self.dir_for_writing()?;
            let _ = match &result {
                Err(e) if e.kind == ErrorKind::Connection => {
                    drop(Object::take(conn));
                    match self.db.connection().await {
                        Ok(mut fresh) => {
                            self.remove_unused_file(&mut fresh, dir, &sha, false).await
                        }
                        Err(e) => Err(e),
                    }
                }
                _ => self.remove_unused_file(&mut conn, dir, &sha, false).await,
            };
            return result;
        }
        release_on_failure(conn, &result);
        result
    }

    /// Unlinks the file of `sha` (and temp files of it) unless an `fs` content row uses it,
    /// under the exclusive advisory lock on the hash, so no save of the same bytes is between
    /// its file check and its commit. `wait`: wait for the lock (garbage collection) or give
    /// up at once (a failed save's own cleanup). Returns how many files were removed.
    pub(super) async fn remove_unused_file(
        &self,
        conn: &mut Object,
        dir: &Path,
        sha: &[u8],
        wait: bool,
    ) -> Result<usize> {
        let tx = conn.transaction().await?;
        let key = lock_key(sha);
        if wait {
            self.run(&tx, &self.sql.lock_content, &[&LOCK_CLASS, &key])
                .await?;
        } else {
            let rows = self
                .run(&tx, &self.sql.try_lock_content, &[&LOCK_CLASS, &key])
                .await?;
            if !rows[0].get::<_, bool>(0) {
                return Ok(0);
            }
        }
        // A new statement: its snapshot sees every save that held the lock before us.
        let rows = self.run(&tx, &self.sql.file_unused, &[&sha]).await?;
        let mut removed = 0;
        if rows[0].get::<_, bool>(0) {
            let path = content_path(dir, sha);
            removed += usize::from(blocking(|| remove_if_present(&path))?);
        }
        // Temp files of this hash belong to dead writers: live ones hold the shared lock.
        let prefix = format!("{}.", hex(sha));
        let tmp_dir = dir.join("tmp");
        removed += blocking(|| -> Result<usize> {
            let entries = match std::fs::read_dir(&tmp_dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(io_error("cannot list", &tmp_dir, e)),
            };
            let mut n = 0;
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    n += usize::from(remove_if_present(&entry.path())?);
                }
            }
            Ok(n)
        })?;
        tx.commit().await?;
        Ok(removed)
    }
}
