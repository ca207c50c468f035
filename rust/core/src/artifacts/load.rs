//! Loading: a version with its payload when small (one statement), larger contents chunk by
//! chunk into a caller-provided buffer, version metadata and listings.

use futures_util::{pin_mut, TryStreamExt};

use super::files::read_content_file;
use super::{
    release_on_failure, version_info, ArtifactKey, Artifacts, Content, LoadedVersion, Storage,
    VersionInfo, CHUNK_SIZE,
};
use crate::codec::JsonText;
use crate::error::Result;
use crate::failover::is_lost;

impl Artifacts {
    /// Reads a version (the latest when `version` is `None`) with its payload when small.
    pub async fn load_artifact(
        &self,
        key: ArtifactKey<'_>,
        version: Option<i64>,
    ) -> Result<Option<LoadedVersion>> {
        let limit = CHUNK_SIZE as i64;
        let rows = self
            .db
            .read_scope(
                &self.positions,
                (key.app_name, key.user_id),
                &self.sql.load,
                &[
                    &key.app_name,
                    &key.user_id,
                    &key.session_id,
                    &key.filename,
                    &version,
                    &limit,
                ],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let sha: Vec<u8> = row.get(3);
        let size: i64 = row.get(4);
        let storage = Storage::parse(row.get(5))?;
        let inline: Option<Vec<u8>> = row.get(6);
        let content = if size == 0 {
            Content::Inline(Vec::new())
        } else if let Some(bytes) = inline {
            Content::Inline(bytes)
        } else if storage == Storage::Fs && size as usize <= CHUNK_SIZE {
            let mut buf = vec![0u8; size as usize];
            if read_content_file(self.dir_for_reading()?, &sha, &mut buf).await? {
                Content::Inline(buf)
            } else {
                Content::Missing
            }
        } else {
            Content::Stream {
                sha256: sha,
                size: size as u64,
                storage,
            }
        };
        Ok(Some(LoadedVersion {
            version: row.get(0),
            part_json: row.get::<_, JsonText>(1).0.to_vec(),
            payload_kind: row.get(2),
            content,
        }))
    }

    /// Reads a content into `out` (exactly its size), chunk by chunk; `false` when the content
    /// is gone or incomplete (deleted by a concurrent `delete_artifact`). A read cut short by a
    /// broken connection starts again once on a new one.
    pub async fn read_artifact_content(
        &self,
        sha256: &[u8],
        storage: Storage,
        out: &mut [u8],
    ) -> Result<bool> {
        if out.is_empty() {
            return Ok(true);
        }
        if storage == Storage::Fs {
            self.db.check_process()?;
            return read_content_file(self.dir_for_reading()?, sha256, out).await;
        }
        // A read cut short by a lost connection starts again on a new one: at once (pooled
        // connections may all be broken), then as long as a failover lasts.
        let mut failover = self.db.failover();
        let mut again_at_once = true;
        loop {
            match self.read_chunks(sha256, out).await {
                Err(e) if is_lost(&e) && std::mem::take(&mut again_at_once) => {}
                Err(e) if is_lost(&e) => failover.pause(e).await?,
                other => return other,
            }
        }
    }

    async fn read_chunks(&self, sha256: &[u8], out: &mut [u8]) -> Result<bool> {
        let conn = self.db.connection().await?;
        let result = async {
            let stream = self
                .db
                .statements()
                .stream(&conn, &self.sql.read_chunks, &[&sha256])
                .await?;
            pin_mut!(stream);
            let mut filled = 0usize;
            // Rows arrive as the server sends them (tokio-postgres' response channel holds a
            // message at a time), each copied into place.
            while let Some(row) = stream.try_next().await? {
                let data: &[u8] = row.get(0);
                let end = filled + data.len();
                if end > out.len() {
                    return Ok(false);
                }
                out[filled..end].copy_from_slice(data);
                filled = end;
            }
            Ok(filled == out.len())
        }
        .await;
        release_on_failure(conn, &result);
        result
    }

    /// Metadata of a version (the latest when `version` is `None`).
    pub async fn artifact_version(
        &self,
        key: ArtifactKey<'_>,
        version: Option<i64>,
    ) -> Result<Option<VersionInfo>> {
        let rows = self
            .db
            .read_scope(
                &self.positions,
                (key.app_name, key.user_id),
                &self.sql.version_info,
                &[
                    &key.app_name,
                    &key.user_id,
                    &key.session_id,
                    &key.filename,
                    &version,
                ],
            )
            .await?;
        Ok(rows.first().map(version_info))
    }

    /// Metadata of every version, oldest first.
    pub async fn list_artifact_versions(&self, key: ArtifactKey<'_>) -> Result<Vec<VersionInfo>> {
        let rows = self
            .db
            .read_scope(
                &self.positions,
                (key.app_name, key.user_id),
                &self.sql.list_versions,
                &[&key.app_name, &key.user_id, &key.session_id, &key.filename],
            )
            .await?;
        Ok(rows.iter().map(version_info).collect())
    }

    /// Filenames of the user-scoped artifacts, plus the session's when `session_id` is given.
    pub async fn list_artifact_keys(
        &self,
        app_name: &str,
        user_id: &str,
        session_id: Option<&str>,
    ) -> Result<Vec<String>> {
        let rows = self
            .db
            .read_scope(
                &self.positions,
                (app_name, user_id),
                &self.sql.list_keys,
                &[&app_name, &user_id, &session_id],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}
