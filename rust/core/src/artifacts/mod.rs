//! Artifacts: versioned, content-addressed payloads ([`Artifacts`] is the handle).
//!
//! Tables (migration V3): `artifact_files` (one row per artifact: the version counter),
//! `artifact_versions` (per-version metadata and the Part JSON without its payload),
//! `artifact_contents` (one row per distinct SHA-256 payload) and `artifact_chunks` (the bytes
//! of contents kept in PostgreSQL, 1 MiB per row). Contents can instead live in a directory
//! (`content_dir`): files named by their hash, written atomically (temp file, fsync, rename,
//! fsync of the directory) before the version row that points at them is inserted.
//!
//! * **Gap-free versions.** A save upserts the artifact's counter row (`next_version + 1`, a row
//!   lock held until commit) and inserts the version row in the same statement/transaction, so
//!   concurrent saves get consecutive versions and a failed save rolls its increment back.
//! * **One round trip** for a save of at most one chunk (`save` does the content upsert, its
//!   chunk, the counter and the version row in one statement) and for a load of at most one
//!   chunk (`load` returns the chunk with the metadata). Larger payloads stream chunk by chunk
//!   inside one transaction; a large load is a second call that writes the chunks straight
//!   into a caller-provided buffer (the binding's preallocated `bytes`).
//! * **Dedup and orphans.** A save locks its content row first (`ON CONFLICT DO UPDATE`), and
//!   learns whether it created it (`xmax = 0`): only then are the bytes written. A statement
//!   trigger on `artifact_versions` deletes contents no version references any more, skipping
//!   rows a concurrent save holds. Files of deleted `fs` contents are queued in
//!   `artifact_fs_garbage` and unlinked under an exclusive advisory lock on the hash, which
//!   savers of that hash hold shared from before their file write until commit.
//!
//! ADK semantics (scoping rules, validation, `artifact://` references, Part encoding) stay in
//! Python.
//!
//! Files: `sql.rs` (the statements), `save.rs`, `load.rs` (and the chunked read of large
//! contents), `garbage.rs` (delete, and removing unused contents' files), `files.rs` (the
//! content directory: atomic writes, reads, finding old files).

mod files;
mod garbage;
mod load;
mod save;
mod sql;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deadpool_postgres::Object;
use tokio_postgres::Row;

pub use files::{content_path, hex, write_content_file};
pub use sql::ArtifactSql;

use crate::codec::JsonText;
use crate::db::Database;
use crate::error::{ErrorKind, Result, StoreError};
use crate::replica::{ScopePositions, SEEN_LIMIT};
use crate::statement::Param;

/// Bytes per `artifact_chunks` row, and the largest payload saved or loaded in one statement.
pub const CHUNK_SIZE: usize = 1 << 20;

/// How old an unreferenced file in the content directory must be before garbage collection
/// removes it, by default (seconds).
pub const DEFAULT_FILE_GRACE_S: f64 = 3600.0;

/// First key of the two-key advisory locks taken on a content hash ("ADKA").
pub(super) const LOCK_CLASS: i32 = 0x4144_4B41;

/// Identifies an artifact. `session_id` is `""` for user-scoped (`user:`) artifacts.
#[derive(Debug, Clone, Copy)]
pub struct ArtifactKey<'a> {
    pub app_name: &'a str,
    pub user_id: &'a str,
    pub session_id: &'a str,
    pub filename: &'a str,
}

/// Where a content's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// `artifact_chunks` rows.
    Db,
    /// A file under the content directory.
    Fs,
}

impl Storage {
    pub fn as_str(self) -> &'static str {
        match self {
            Storage::Db => "db",
            Storage::Fs => "fs",
        }
    }

    pub fn parse(s: &str) -> Result<Storage> {
        match s {
            "db" => Ok(Storage::Db),
            "fs" => Ok(Storage::Fs),
            other => Err(StoreError::new(
                ErrorKind::Schema,
                format!("unknown artifact content storage {other:?}"),
            )),
        }
    }
}

/// The metadata of a version to save (the payload is passed separately).
#[derive(Debug, Clone, Copy)]
pub struct NewVersion<'a> {
    /// The Part as JSON, without the payload.
    pub part_json: &'a [u8],
    /// 0: the Part JSON is complete; 1: the payload is `inline_data.data`; 2: it is `text`.
    pub payload_kind: i16,
    pub mime_type: Option<&'a str>,
    pub custom_metadata: Option<&'a [u8]>,
    pub create_time: f64,
}

/// A stored payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Read with the metadata (small payloads).
    Inline(Vec<u8>),
    /// Too large to return in one message: read it with [`Store::read_artifact_content`].
    Stream {
        sha256: Vec<u8>,
        size: u64,
        storage: Storage,
    },
    /// The bytes are gone (deleted by a concurrent `delete_artifact`).
    Missing,
}

/// A version as read by `load_artifact`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedVersion {
    pub version: i64,
    pub part_json: Vec<u8>,
    pub payload_kind: i16,
    pub content: Content,
}

/// The metadata of one version.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionInfo {
    pub version: i64,
    pub mime_type: Option<String>,
    pub custom_metadata: Option<Vec<u8>>,
    pub create_time: f64,
}

/// The artifact operations on one database handle: their statements and where `fs` contents
/// live.
pub struct Artifacts {
    db: Arc<Database>,
    sql: ArtifactSql,
    content_dir: Option<PathBuf>,
    /// With a replica: per (app, user), the log position reads must see (`replica.rs`).
    positions: ScopePositions,
}

impl Artifacts {
    /// Contents go to PostgreSQL unless `content_dir` is given.
    pub fn new(db: Arc<Database>, content_dir: Option<PathBuf>) -> Self {
        let sql = ArtifactSql::new(db.schema());
        Artifacts {
            db,
            sql,
            content_dir,
            positions: ScopePositions::new(SEEN_LIMIT),
        }
    }

    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    pub fn content_dir(&self) -> Option<&Path> {
        self.content_dir.as_deref()
    }

    pub(super) fn storage(&self) -> Storage {
        if self.content_dir.is_some() {
            Storage::Fs
        } else {
            Storage::Db
        }
    }

    pub(super) fn dir_for_writing(&self) -> Result<&Path> {
        self.content_dir
            .as_deref()
            .ok_or_else(|| StoreError::config("no content directory configured"))
    }

    pub(super) fn dir_for_reading(&self) -> Result<&Path> {
        self.content_dir.as_deref().ok_or_else(|| {
            StoreError::config(
                "this artifact's content is stored in a content directory; create the service \
                 with content_dir= pointing at that directory",
            )
        })
    }

    /// Runs one statement in a transaction (see `statement.rs`).
    async fn run(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        sql: &str,
        params: &[&dyn Param],
    ) -> Result<Vec<Row>> {
        self.db.statements().query(tx, sql, params).await
    }
}

pub(super) fn version_info(row: &Row) -> VersionInfo {
    VersionInfo {
        version: row.get(0),
        mime_type: row.get(1),
        custom_metadata: row.get::<_, Option<JsonText>>(2).map(|t| t.0.to_vec()),
        create_time: row.get(3),
    }
}

/// Drops a connection that failed with a connection error instead of returning it to the pool.
pub(super) fn release_on_failure<T>(conn: Object, result: &Result<T>) {
    if matches!(result, Err(e) if e.kind == ErrorKind::Connection) {
        let _ = Object::take(conn);
    }
}
