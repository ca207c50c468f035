//! The content directory: files named by their SHA-256 (`ab/ab/<hex>`), written atomically
//! (temp file, fsync, rename, fsync of the directory), read into a caller's buffer, and found
//! when old and unreferenced (see `garbage.rs`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::CHUNK_SIZE;
use crate::error::{ErrorKind, Result, StoreError};

/// SHA-256 of `data`, off the async worker's hot path when the payload is large.
pub(super) fn sha256(data: &[u8]) -> [u8; 32] {
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
pub(super) fn lock_key(sha: &[u8]) -> i32 {
    i32::from_be_bytes([sha[0], sha[1], sha[2], sha[3]])
}

/// `{dir}/ab/cd/abcd…`: the file of a content hash.
pub fn content_path(dir: &Path, sha: &[u8]) -> PathBuf {
    let h = hex(sha);
    dir.join(&h[0..2]).join(&h[2..4]).join(&h)
}

pub(super) fn io_error(what: &str, path: &Path, err: std::io::Error) -> StoreError {
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
pub(super) fn blocking<T>(f: impl FnOnce() -> T) -> T {
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
pub(super) fn content_groups(dir: &Path) -> Result<Vec<PathBuf>> {
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
pub(super) fn old_files(
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

pub(super) fn remove_if_present(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("cannot remove", path, e)),
    }
}

/// Reads the file of `sha` into `out`; `false` if it is missing or not `out.len()` bytes long.
pub(super) async fn read_content_file(dir: &Path, sha: &[u8], out: &mut [u8]) -> Result<bool> {
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
