//! Artifact operations on a [`Store`]: versioned, content-addressed payloads.
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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::Object;
use futures_util::{pin_mut, TryStreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio_postgres::Row;

use crate::codec::{JsonText, JsonTextParam};
use crate::error::{ErrorKind, Result, StoreError};
use crate::sql::quote_ident;
use crate::statement::Param;
use crate::store::{Retry, Store};

/// Bytes per `artifact_chunks` row, and the largest payload saved or loaded in one statement.
pub const CHUNK_SIZE: usize = 1 << 20;

/// How old an unreferenced file in the content directory must be before garbage collection
/// removes it, by default (seconds).
pub const DEFAULT_FILE_GRACE_S: f64 = 3600.0;

/// First key of the two-key advisory locks taken on a content hash ("ADKA").
const LOCK_CLASS: i32 = 0x4144_4B41;

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

/// Every statement of the artifact operations, with the schema filled in.
#[derive(Debug, Clone)]
pub struct ArtifactSql {
    pub save: String,
    pub upsert_content: String,
    pub insert_chunk: String,
    pub lock_content_shared: String,
    pub load: String,
    pub read_chunks: String,
    pub version_info: String,
    pub list_versions: String,
    pub list_keys: String,
    pub delete: String,
    pub garbage: String,
    pub lock_content: String,
    pub try_lock_content: String,
    pub collect_garbage: String,
    pub file_unused: String,
    pub fs_contents_among: String,
}

impl ArtifactSql {
    pub fn new(schema: &str) -> Self {
        let s = quote_ident(schema);
        let key = "app_name = $1 AND user_id = $2 AND session_id = $3 AND filename = $4";
        let upsert = format!(
            "INSERT INTO {s}.artifact_contents AS t (sha256, size, storage)
             VALUES ($5, $6, $7)
             ON CONFLICT (sha256) DO UPDATE SET size = t.size
             RETURNING (t.xmax = 0) AS inserted, t.storage"
        );
        ArtifactSql {
            // $1..$4 key, $5 sha256, $6 size, $7 storage, $8 chunk 0 (NULL: written separately
            // or not in the database), $9 payload kind, $10 part JSON, $11 mime type,
            // $12 custom metadata JSON, $13 create time.
            // `c` runs first (the others read from it): the content row is locked before the
            // counter row, in every save, so two saves never wait on each other in a cycle.
            save: format!(
                "WITH c AS ({upsert}
                 ), ch AS (
                    INSERT INTO {s}.artifact_chunks (sha256, seq, data)
                    SELECT $5, 0, $8::bytea FROM c WHERE c.inserted AND $8::bytea IS NOT NULL
                 ), f AS (
                    INSERT INTO {s}.artifact_files AS t
                        (app_name, user_id, session_id, filename, next_version)
                    SELECT $1, $2, $3, $4, 1 FROM c
                    ON CONFLICT (app_name, user_id, session_id, filename)
                    DO UPDATE SET next_version = t.next_version + 1
                    RETURNING t.next_version - 1 AS version
                 ), v AS (
                    INSERT INTO {s}.artifact_versions
                        (app_name, user_id, session_id, filename, version, content_sha256,
                         payload_kind, part, mime_type, custom_metadata, create_time)
                    SELECT $1, $2, $3, $4, f.version, $5, $9, $10, $11, $12, $13 FROM f
                    RETURNING version
                 )
                 SELECT v.version, c.inserted FROM v, c"
            ),
            upsert_content: format!(
                "INSERT INTO {s}.artifact_contents AS t (sha256, size, storage)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (sha256) DO UPDATE SET size = t.size
                 RETURNING (t.xmax = 0) AS inserted"
            ),
            insert_chunk: format!(
                "INSERT INTO {s}.artifact_chunks (sha256, seq, data) VALUES ($1, $2, $3)"
            ),
            // Held until commit: the garbage collector cannot unlink this hash's file between
            // our check, our file write and our commit.
            lock_content_shared: format!(
                "SELECT c.storage
                   FROM (SELECT pg_advisory_xact_lock_shared($1::int4, $2::int4)) l
                   LEFT JOIN {s}.artifact_contents c ON c.sha256 = $3"
            ),
            // $5 version (NULL: latest), $6 the largest payload returned inline.
            load: format!(
                "SELECT v.version, v.part, v.payload_kind, v.content_sha256, c.size, c.storage,
                        CASE WHEN c.storage = 'db' AND c.size > 0 AND c.size <= $6 THEN
                            (SELECT ch.data FROM {s}.artifact_chunks ch
                              WHERE ch.sha256 = v.content_sha256 AND ch.seq = 0
                                AND length(ch.data) = c.size)
                        END
                   FROM {s}.artifact_versions v
                   JOIN {s}.artifact_contents c ON c.sha256 = v.content_sha256
                  WHERE v.{key_v} AND ($5::int8 IS NULL OR v.version = $5::int8)
                  ORDER BY v.version DESC
                  LIMIT 1",
                key_v = key.replace(" AND ", " AND v."),
            ),
            read_chunks: format!(
                "SELECT data FROM {s}.artifact_chunks WHERE sha256 = $1 ORDER BY seq"
            ),
            version_info: format!(
                "SELECT version, mime_type, custom_metadata, create_time
                   FROM {s}.artifact_versions
                  WHERE {key} AND ($5::int8 IS NULL OR version = $5::int8)
                  ORDER BY version DESC
                  LIMIT 1"
            ),
            list_versions: format!(
                "SELECT version, mime_type, custom_metadata, create_time
                   FROM {s}.artifact_versions
                  WHERE {key}
                  ORDER BY version"
            ),
            // $3 the session (NULL: user-scoped artifacts only).
            list_keys: format!(
                "SELECT filename FROM {s}.artifact_files
                  WHERE app_name = $1 AND user_id = $2
                    AND (session_id = '' OR session_id = $3::text)"
            ),
            // Versions go with the counter row (ON DELETE CASCADE); the trigger on
            // artifact_versions removes contents left without a version.
            delete: format!("DELETE FROM {s}.artifact_files WHERE {key} RETURNING 1"),
            garbage: format!(
                "SELECT sha256 FROM {s}.artifact_fs_garbage ORDER BY queued_at LIMIT 1000"
            ),
            lock_content: "SELECT 1 FROM (SELECT pg_advisory_xact_lock($1::int4, $2::int4)) l"
                .to_string(),
            try_lock_content: "SELECT pg_try_advisory_xact_lock($1::int4, $2::int4)".to_string(),
            // Run after taking the exclusive lock on the hash (a new statement, so a new
            // snapshot): true when no `fs` content row needs the file.
            collect_garbage: format!(
                "DELETE FROM {s}.artifact_fs_garbage WHERE sha256 = $1
                 RETURNING NOT EXISTS (SELECT 1 FROM {s}.artifact_contents
                                        WHERE sha256 = $1 AND storage = 'fs')"
            ),
            // Same question for a file found in the directory (not queued).
            file_unused: format!(
                "SELECT NOT EXISTS (SELECT 1 FROM {s}.artifact_contents
                                     WHERE sha256 = $1 AND storage = 'fs')"
            ),
            fs_contents_among: format!(
                "SELECT sha256 FROM {s}.artifact_contents
                  WHERE storage = 'fs' AND sha256 = ANY($1::bytea[])"
            ),
        }
    }
}

/// The artifact side of a store: its statements and where `fs` contents live.
#[derive(Debug, Clone)]
pub struct ArtifactBackend {
    sql: ArtifactSql,
    content_dir: Option<PathBuf>,
}

impl ArtifactBackend {
    /// Contents go to PostgreSQL unless `content_dir` is given.
    pub fn new(store: &Store, content_dir: Option<PathBuf>) -> Self {
        ArtifactBackend {
            sql: ArtifactSql::new(&store.config().options.schema),
            content_dir,
        }
    }

    pub fn sql(&self) -> &ArtifactSql {
        &self.sql
    }

    pub fn content_dir(&self) -> Option<&Path> {
        self.content_dir.as_deref()
    }

    fn storage(&self) -> Storage {
        if self.content_dir.is_some() {
            Storage::Fs
        } else {
            Storage::Db
        }
    }

    fn dir_for_writing(&self) -> Result<&Path> {
        self.content_dir
            .as_deref()
            .ok_or_else(|| StoreError::config("no content directory configured"))
    }

    fn dir_for_reading(&self) -> Result<&Path> {
        self.content_dir.as_deref().ok_or_else(|| {
            StoreError::config(
                "this artifact's content is stored in a content directory; create the service \
                 with content_dir= pointing at that directory",
            )
        })
    }
}

/// SHA-256 of `data`, off the async worker's hot path when the payload is large.
fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = || -> [u8; 32] { Sha256::digest(data).into() };
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if data.len() > CHUNK_SIZE && multi_thread {
        tokio::task::block_in_place(digest)
    } else {
        digest()
    }
}

/// Lowercase hex of a hash.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// The second key of the advisory locks on a content hash.
fn lock_key(sha: &[u8]) -> i32 {
    i32::from_be_bytes([sha[0], sha[1], sha[2], sha[3]])
}

/// `{dir}/ab/cd/abcd…`: the file of a content hash.
pub fn content_path(dir: &Path, sha: &[u8]) -> PathBuf {
    let h = hex(sha);
    dir.join(&h[0..2]).join(&h[2..4]).join(&h)
}

fn io_error(what: &str, path: &Path, err: std::io::Error) -> StoreError {
    let kind = if err.kind() == std::io::ErrorKind::PermissionDenied {
        ErrorKind::Privilege
    } else {
        ErrorKind::Database
    };
    StoreError::new(
        kind,
        format!(
            "artifact content directory: {what} {}: {err}",
            path.display()
        ),
    )
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Runs blocking file work without stalling the runtime's other tasks (on a multi-threaded
/// runtime), and without an await point inside: a cancelled save never leaves it half done.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// The name of a temp file of `sha` (in `{dir}/tmp`): the hash, then what makes it unique.
fn temp_name(sha: &[u8]) -> String {
    format!(
        "{}.{}.{}.tmp",
        hex(sha),
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Writes `data` as the file of `sha`: temp file, fsync, rename, fsync of the directory. A
/// complete file already there (renames are atomic, so any file at the final path is) is kept.
///
/// Synchronous on purpose: tokio's file operations run on blocking threads that carry on
/// after their future is dropped, so a cancelled save could rename its file into place after
/// its transaction ended and a garbage collection had looked. Here the write happens whole
/// (or fails and removes its temp file) before the caller's next await point.
pub async fn write_content_file(dir: &Path, sha: &[u8], data: &[u8]) -> Result<()> {
    blocking(|| write_content_file_sync(dir, sha, data))
}

fn write_content_file_sync(dir: &Path, sha: &[u8], data: &[u8]) -> Result<()> {
    use std::io::Write;
    let path = content_path(dir, sha);
    if let Ok(meta) = std::fs::metadata(&path) {
        if meta.is_file() && meta.len() == data.len() as u64 {
            return Ok(());
        }
    }
    let parent = path.parent().expect("content paths have a parent");
    std::fs::create_dir_all(parent).map_err(|e| io_error("cannot create", parent, e))?;
    let tmp_dir = dir.join("tmp");
    std::fs::create_dir_all(&tmp_dir).map_err(|e| io_error("cannot create", &tmp_dir, e))?;
    let tmp = tmp_dir.join(temp_name(sha));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| io_error("cannot create", &tmp, e))?;
        f.write_all(data)
            .map_err(|e| io_error("cannot write", &tmp, e))?;
        f.sync_all()
            .map_err(|e| io_error("cannot fsync", &tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(|e| io_error("cannot rename into place", &path, e))?;
        let d = std::fs::File::open(parent)
            .map_err(|e| io_error("cannot open directory", parent, e))?;
        d.sync_all()
            .map_err(|e| io_error("cannot fsync directory", parent, e))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The directories to sweep: `{dir}/ab` for each two-hex-digit prefix, and `{dir}/tmp`.
fn content_groups(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("cannot list", dir, e)),
    };
    let mut groups: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name == "tmp" || (name.len() == 2 && is_lower_hex(&name))
        })
        .map(|e| e.path())
        .collect();
    groups.sort();
    Ok(groups)
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !is_lower_hex(s) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Hashes of the content files (`ab/cd/abcd…`) or temp files (`abcd….pid.n.tmp`) in one
/// group whose last change is at least `grace` old. Names that are not ours are ignored.
fn old_files(
    group: &Path,
    is_tmp: bool,
    grace: Duration,
    now: std::time::SystemTime,
) -> Result<Vec<[u8; 32]>> {
    let old_enough = |path: &Path| {
        std::fs::symlink_metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .and_then(|m| m.modified().ok())
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age >= grace)
    };
    let list = |d: &Path| -> Result<Vec<std::fs::DirEntry>> {
        match std::fs::read_dir(d) {
            Ok(entries) => Ok(entries.flatten().collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io_error("cannot list", d, e)),
        }
    };
    let mut out = Vec::new();
    if is_tmp {
        for entry in list(group)? {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(sha) = name.split('.').next().and_then(parse_hex32) {
                if name.ends_with(".tmp") && old_enough(&entry.path()) && !out.contains(&sha) {
                    out.push(sha);
                }
            }
        }
        return Ok(out);
    }
    let prefix1 = group.file_name().map(|n| n.to_string_lossy().into_owned());
    for sub in list(group)? {
        let sub_name = sub.file_name().to_string_lossy().into_owned();
        if sub_name.len() != 2 || !is_lower_hex(&sub_name) {
            continue;
        }
        for entry in list(&sub.path())? {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Some(sha) = parse_hex32(&name) else {
                continue;
            };
            let in_place = prefix1.as_deref() == Some(&name[0..2]) && sub_name == name[2..4];
            if in_place && old_enough(&entry.path()) {
                out.push(sha);
            }
        }
    }
    Ok(out)
}

fn remove_if_present(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("cannot remove", path, e)),
    }
}

/// Reads the file of `sha` into `out`; `false` if it is missing or not `out.len()` bytes long.
async fn read_content_file(dir: &Path, sha: &[u8], out: &mut [u8]) -> Result<bool> {
    let path = content_path(dir, sha);
    let mut f = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error("cannot open", &path, e)),
    };
    let len = f
        .metadata()
        .await
        .map_err(|e| io_error("cannot stat", &path, e))?
        .len();
    if len != out.len() as u64 {
        return Ok(false);
    }
    let mut filled = 0;
    while filled < out.len() {
        let n = f
            .read(&mut out[filled..])
            .await
            .map_err(|e| io_error("cannot read", &path, e))?;
        if n == 0 {
            return Ok(false);
        }
        filled += n;
    }
    Ok(true)
}

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

fn version_info(row: &Row) -> VersionInfo {
    VersionInfo {
        version: row.get(0),
        mime_type: row.get(1),
        custom_metadata: row.get::<_, Option<JsonText>>(2).map(|t| t.0.to_vec()),
        create_time: row.get(3),
    }
}

/// Drops a connection that failed with a connection error instead of returning it to the pool.
fn release_on_failure<T>(conn: Object, result: &Result<T>) {
    if matches!(result, Err(e) if e.kind == ErrorKind::Connection) {
        let _ = Object::take(conn);
    }
}

impl Store {
    /// Runs one statement in a transaction (see `statement.rs`).
    async fn run(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        sql: &str,
        params: &[&dyn Param],
    ) -> Result<Vec<Row>> {
        self.statements().query(tx, sql, params).await
    }

    /// Saves a new version of an artifact and returns its number (0 for the first).
    ///
    /// `payload` is the content (empty for payload kind 0). Payloads of at most [`CHUNK_SIZE`]
    /// bytes in PostgreSQL take one statement; larger ones stream in chunk rows within one
    /// transaction; with a content directory the file is written (atomically) before the
    /// version row is inserted. Never retried: a save that committed before its connection
    /// broke would be stored twice.
    pub async fn save_artifact(
        &self,
        backend: &ArtifactBackend,
        key: ArtifactKey<'_>,
        payload: &[u8],
        version: NewVersion<'_>,
    ) -> Result<i64> {
        let sha = sha256(payload);
        let size = payload.len() as i64;
        // Empty payloads (file references, empty text) need no bytes anywhere.
        let storage = if payload.is_empty() {
            Storage::Db
        } else {
            backend.storage()
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
            let rows = self.fetch(&backend.sql.save, &p.refs(), Retry::No).await?;
            return Ok(rows[0].get(0));
        }
        let mut conn = self.connection().await?;
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
                        &backend.sql.upsert_content,
                        &[&&sha[..], &size, &Storage::Db.as_str()],
                    )
                    .await?;
                if rows[0].get::<_, bool>(0) {
                    // One chunk in flight at a time: memory stays at about one chunk.
                    for (seq, chunk) in payload.chunks(CHUNK_SIZE).enumerate() {
                        let seq = seq as i32;
                        self.run(&tx, &backend.sql.insert_chunk, &[&&sha[..], &seq, &chunk])
                            .await?;
                    }
                }
            } else {
                let rows = self
                    .run(
                        &tx,
                        &backend.sql.lock_content_shared,
                        &[&LOCK_CLASS, &lock_key(&sha), &&sha[..]],
                    )
                    .await?;
                // A committed content row means its bytes are in place (a file, which our
                // shared lock keeps, or chunk rows, which the row lock taken by `save` keeps).
                // Otherwise write the file now, before any row points at it.
                if rows[0].get::<_, Option<&str>>(0).is_none() {
                    touched_file = true;
                    write_content_file(backend.dir_for_writing()?, &sha, payload).await?;
                    wrote = true;
                }
            }
            let p = params(false, storage);
            let rows = self.run(&tx, &backend.sql.save, &p.refs()).await?;
            let version: i64 = rows[0].get(0);
            let inserted: bool = rows[0].get(1);
            if storage == Storage::Fs && inserted && !wrote {
                // The row we saw was deleted meanwhile and ours replaces it: its bytes must be
                // on disk before our row commits.
                touched_file = true;
                write_content_file(backend.dir_for_writing()?, &sha, payload).await?;
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
            let dir = backend.dir_for_writing()?;
            let _ = match &result {
                Err(e) if e.kind == ErrorKind::Connection => {
                    drop(Object::take(conn));
                    match self.connection().await {
                        Ok(mut fresh) => {
                            self.remove_unused_file(&mut fresh, backend, dir, &sha, false)
                                .await
                        }
                        Err(e) => Err(e),
                    }
                }
                _ => {
                    self.remove_unused_file(&mut conn, backend, dir, &sha, false)
                        .await
                }
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
    async fn remove_unused_file(
        &self,
        conn: &mut Object,
        backend: &ArtifactBackend,
        dir: &Path,
        sha: &[u8],
        wait: bool,
    ) -> Result<usize> {
        let tx = conn.transaction().await?;
        let key = lock_key(sha);
        if wait {
            self.run(&tx, &backend.sql.lock_content, &[&LOCK_CLASS, &key])
                .await?;
        } else {
            let rows = self
                .run(&tx, &backend.sql.try_lock_content, &[&LOCK_CLASS, &key])
                .await?;
            if !rows[0].get::<_, bool>(0) {
                return Ok(0);
            }
        }
        // A new statement: its snapshot sees every save that held the lock before us.
        let rows = self.run(&tx, &backend.sql.file_unused, &[&sha]).await?;
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

    /// Removes files in the content directory that no committed `fs` content uses: left by
    /// saves that failed, were cancelled or crashed after writing their file, and temp files
    /// of interrupted writes. Only files older than `grace` are considered (a margin on top
    /// of the lock protocol, e.g. for clocks of other hosts sharing the directory). Each file
    /// is removed under the exclusive lock on its hash after checking again (see
    /// [`Store::save_artifact`]). `dry_run`: count only. Returns the number of files.
    pub async fn collect_orphan_files(
        &self,
        backend: &ArtifactBackend,
        grace: Duration,
        dry_run: bool,
    ) -> Result<usize> {
        self.check_process()?;
        let dir = backend.dir_for_reading()?.to_path_buf();
        let groups = blocking(|| content_groups(&dir))?;
        let mut conn = self.connection().await?;
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
                            .statements()
                            .query(&conn, &backend.sql.fs_contents_among, &[&candidates])
                            .await?;
                        let used: std::collections::HashSet<Vec<u8>> =
                            used.iter().map(|r| r.get(0)).collect();
                        candidates.retain(|h| !used.contains(*h));
                    }
                    for sha in candidates {
                        found += if dry_run {
                            1
                        } else {
                            self.remove_unused_file(&mut conn, backend, &dir, sha, true)
                                .await?
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

    /// Reads a version (the latest when `version` is `None`) with its payload when small.
    pub async fn load_artifact(
        &self,
        backend: &ArtifactBackend,
        key: ArtifactKey<'_>,
        version: Option<i64>,
    ) -> Result<Option<LoadedVersion>> {
        let limit = CHUNK_SIZE as i64;
        let rows = self
            .fetch(
                &backend.sql.load,
                &[
                    &key.app_name,
                    &key.user_id,
                    &key.session_id,
                    &key.filename,
                    &version,
                    &limit,
                ],
                Retry::Yes,
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
            if read_content_file(backend.dir_for_reading()?, &sha, &mut buf).await? {
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
        backend: &ArtifactBackend,
        sha256: &[u8],
        storage: Storage,
        out: &mut [u8],
    ) -> Result<bool> {
        if out.is_empty() {
            return Ok(true);
        }
        if storage == Storage::Fs {
            self.check_process()?;
            return read_content_file(backend.dir_for_reading()?, sha256, out).await;
        }
        match self.read_chunks(backend, sha256, out).await {
            Err(e) if e.kind == ErrorKind::Connection => {
                self.read_chunks(backend, sha256, out).await
            }
            other => other,
        }
    }

    async fn read_chunks(
        &self,
        backend: &ArtifactBackend,
        sha256: &[u8],
        out: &mut [u8],
    ) -> Result<bool> {
        let conn = self.connection().await?;
        let result = async {
            let stream = self
                .statements()
                .stream(&conn, &backend.sql.read_chunks, &[&sha256])
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
        backend: &ArtifactBackend,
        key: ArtifactKey<'_>,
        version: Option<i64>,
    ) -> Result<Option<VersionInfo>> {
        let rows = self
            .fetch(
                &backend.sql.version_info,
                &[
                    &key.app_name,
                    &key.user_id,
                    &key.session_id,
                    &key.filename,
                    &version,
                ],
                Retry::Yes,
            )
            .await?;
        Ok(rows.first().map(version_info))
    }

    /// Metadata of every version, oldest first.
    pub async fn list_artifact_versions(
        &self,
        backend: &ArtifactBackend,
        key: ArtifactKey<'_>,
    ) -> Result<Vec<VersionInfo>> {
        let rows = self
            .fetch(
                &backend.sql.list_versions,
                &[&key.app_name, &key.user_id, &key.session_id, &key.filename],
                Retry::Yes,
            )
            .await?;
        Ok(rows.iter().map(version_info).collect())
    }

    /// Filenames of the user-scoped artifacts, plus the session's when `session_id` is given.
    pub async fn list_artifact_keys(
        &self,
        backend: &ArtifactBackend,
        app_name: &str,
        user_id: &str,
        session_id: Option<&str>,
    ) -> Result<Vec<String>> {
        let rows = self
            .fetch(
                &backend.sql.list_keys,
                &[&app_name, &user_id, &session_id],
                Retry::Yes,
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Deletes every version of an artifact (and contents no other version uses); `false` if
    /// there was none. With a content directory, the files of removed contents are unlinked.
    pub async fn delete_artifact(
        &self,
        backend: &ArtifactBackend,
        key: ArtifactKey<'_>,
    ) -> Result<bool> {
        let rows = self
            .fetch(
                &backend.sql.delete,
                &[&key.app_name, &key.user_id, &key.session_id, &key.filename],
                Retry::Yes,
            )
            .await?;
        if backend.content_dir.is_some() {
            self.collect_artifact_garbage(backend).await?;
        }
        Ok(!rows.is_empty())
    }

    /// Unlinks the files of deleted `fs` contents (queued by the orphan trigger). Each hash is
    /// handled in its own transaction under an exclusive advisory lock, so no save of the same
    /// bytes is between its file check and its commit. Returns the number of files removed.
    pub async fn collect_artifact_garbage(&self, backend: &ArtifactBackend) -> Result<usize> {
        let dir = backend.dir_for_reading()?;
        let queued = self.fetch(&backend.sql.garbage, &[], Retry::Yes).await?;
        if queued.is_empty() {
            return Ok(0);
        }
        let mut conn = self.connection().await?;
        let result = async {
            let mut removed = 0;
            for row in &queued {
                let sha: &[u8] = row.get(0);
                let tx = conn.transaction().await?;
                self.run(
                    &tx,
                    &backend.sql.lock_content,
                    &[&LOCK_CLASS, &lock_key(sha)],
                )
                .await?;
                let rows = self.run(&tx, &backend.sql.collect_garbage, &[&sha]).await?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_paths() {
        assert_eq!(hex(&[0x00, 0xab, 0x10]), "00ab10");
        let sha = [0xabu8; 32];
        let p = content_path(Path::new("/d"), &sha);
        assert_eq!(p, Path::new("/d/ab/ab").join(hex(&sha)));
        assert_eq!(lock_key(&[0, 0, 1, 2]), 258);
    }

    #[test]
    fn sha256_matches_known_vector() {
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn statements_use_the_quoted_schema() {
        let sql = ArtifactSql::new("tenant\"a");
        for text in [
            &sql.save,
            &sql.upsert_content,
            &sql.insert_chunk,
            &sql.load,
            &sql.read_chunks,
            &sql.version_info,
            &sql.list_versions,
            &sql.list_keys,
            &sql.delete,
            &sql.garbage,
            &sql.collect_garbage,
        ] {
            assert!(text.contains("\"tenant\"\"a\".artifact_"), "{text}");
            assert!(!text.contains("FROM artifact_"), "{text}");
            assert!(!text.contains("INTO artifact_"), "{text}");
        }
        assert!(sql.load.contains("v.app_name = $1 AND v.user_id = $2"));
    }

    #[test]
    fn save_locks_content_before_counter() {
        let sql = ArtifactSql::new("public");
        // The counter upsert reads from the content upsert, so it runs after it.
        assert!(sql.save.contains("SELECT $1, $2, $3, $4, 1 FROM c"));
        assert!(sql.save.contains("next_version = t.next_version + 1"));
        assert!(sql.save.contains("(t.xmax = 0) AS inserted"));
    }

    #[tokio::test]
    async fn content_files_are_written_atomically_and_read_back() {
        let dir = std::env::temp_dir().join(format!("adkpg-art-{}", std::process::id()));
        let data: Vec<u8> = (0..3 * CHUNK_SIZE + 17).map(|i| (i % 251) as u8).collect();
        let sha = sha256(&data);
        write_content_file(&dir, &sha, &data).await.unwrap();
        // A second write of the same bytes keeps the file.
        write_content_file(&dir, &sha, &data).await.unwrap();
        let mut out = vec![0u8; data.len()];
        assert!(read_content_file(&dir, &sha, &mut out).await.unwrap());
        assert_eq!(out, data);
        let mut short = vec![0u8; 10];
        assert!(!read_content_file(&dir, &sha, &mut short).await.unwrap());
        let leftovers = std::fs::read_dir(dir.join("tmp")).unwrap().count();
        assert_eq!(leftovers, 0, "no temp files left behind");
        let mut missing = vec![0u8; 4];
        assert!(!read_content_file(&dir, &[0u8; 32], &mut missing)
            .await
            .unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
