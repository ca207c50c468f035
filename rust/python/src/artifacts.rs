//! `adk_postgres._native.Artifacts`: argument conversion around `adk_postgres_core::artifacts`.
//!
//! Built from a `Database` (`Artifacts(database, content_dir=None)`), sharing its pool.
//! Payloads are borrowed from Python `bytes` (`PyBackedBytes`, no copy); a large payload is
//! read straight into one preallocated `bytes` object, so a 100 MB artifact costs 100 MB once.

use std::path::PathBuf;
use std::sync::Arc;

use adk_postgres_core::artifacts::{
    ArtifactKey, Artifacts, Content, LoadedVersion, NewVersion, Storage, VersionInfo,
    DEFAULT_FILE_GRACE_S,
};
use adk_postgres_core::db::Database;
use adk_postgres_core::StoreError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

use crate::call::{bytes_opt, call, seconds, to_py, Bytes, Service};
use crate::database::PyDatabase;
use crate::errors::to_pyerr;

#[pyclass(module = "adk_postgres._native", name = "Artifacts", frozen)]
pub struct PyArtifacts {
    inner: Arc<Artifacts>,
}

impl Service for Artifacts {
    fn database(&self) -> &Arc<Database> {
        Artifacts::database(self)
    }
}

/// An artifact key as Python passes it, `(app_name, user_id, session_id, filename)`; owned, so
/// it can move into the future.
#[derive(FromPyObject)]
struct Key(String, String, String, String);

impl Key {
    fn borrow(&self) -> ArtifactKey<'_> {
        ArtifactKey {
            app_name: &self.0,
            user_id: &self.1,
            session_id: &self.2,
            filename: &self.3,
        }
    }
}

/// The writable buffer of a `bytes` object that only the running call holds.
struct OutBuffer {
    ptr: *mut u8,
    len: usize,
    /// Keeps the object (and so the buffer) alive; handed back to Python when filled.
    bytes: Py<PyBytes>,
}

// SAFETY: the buffer belongs to a `bytes` object no Python code has seen yet; only the one
// future that owns this value writes to it, and the object stays alive through `bytes`.
unsafe impl Send for OutBuffer {}

impl OutBuffer {
    /// A zero-filled `bytes` of `len` bytes to fill outside the interpreter.
    fn new(py: Python<'_>, len: usize) -> PyResult<Self> {
        let bytes = PyBytes::new_with(py, len, |_| Ok(()))?;
        // SAFETY: `bytes` is a live bytes object; PyBytes_AsString returns its buffer, which
        // never moves.
        let ptr = unsafe { pyo3::ffi::PyBytes_AsString(bytes.as_ptr()) }.cast::<u8>();
        if ptr.is_null() {
            return Err(PyErr::fetch(py));
        }
        Ok(OutBuffer {
            ptr,
            len,
            bytes: bytes.unbind(),
        })
    }

    /// SAFETY: see the `Send` impl: this value is the only writer and the object is alive.
    fn slice(&mut self) -> &mut [u8] {
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// `(version, mime_type, custom_metadata_json, create_time)`
fn version_row(v: VersionInfo) -> (i64, Option<String>, Option<Bytes>, f64) {
    (
        v.version,
        v.mime_type,
        bytes_opt(v.custom_metadata),
        v.create_time,
    )
}

/// `(version, part_json, payload_kind, content, sha256, size, storage)`; `content` is `bytes`,
/// or `None` when it must be read with `read_content(sha256, size, storage)` (large) or is
/// gone (`size` is then `-1`).
type LoadedRow = (
    i64,
    Bytes,
    i16,
    Option<Bytes>,
    Option<Bytes>,
    i64,
    Option<&'static str>,
);

fn loaded_row(l: LoadedVersion) -> LoadedRow {
    let (content, sha, size, storage) = match l.content {
        Content::Inline(bytes) => {
            let size = bytes.len() as i64;
            (Some(Bytes(bytes)), None, size, None)
        }
        Content::Stream {
            sha256,
            size,
            storage,
        } => (
            None,
            Some(Bytes(sha256)),
            size as i64,
            Some(storage.as_str()),
        ),
        Content::Missing => (None, None, -1, None),
    };
    let part = Bytes(l.part_json);
    (l.version, part, l.payload_kind, content, sha, size, storage)
}

#[pymethods]
impl PyArtifacts {
    /// `content_dir`: keep payloads as files in this directory instead of in PostgreSQL.
    #[new]
    #[pyo3(signature = (database, content_dir=None))]
    fn new(database: Bound<'_, PyDatabase>, content_dir: Option<PathBuf>) -> Self {
        let artifacts = Artifacts::new(PyDatabase::handle(&database), content_dir);
        PyArtifacts {
            inner: Arc::new(artifacts),
        }
    }

    #[getter]
    fn content_dir(&self) -> Option<PathBuf> {
        self.inner.content_dir().map(PathBuf::from)
    }

    /// Saves a version; returns its number. `payload` is the content (`None`: empty).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (key, payload, part_json, payload_kind, mime_type, custom_metadata, create_time))]
    fn save<'py>(
        &self,
        py: Python<'py>,
        key: Key,
        payload: Option<PyBackedBytes>,
        part_json: PyBackedBytes,
        payload_kind: i16,
        mime_type: Option<String>,
        custom_metadata: Option<PyBackedBytes>,
        create_time: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move {
                let version = NewVersion {
                    part_json: &part_json,
                    payload_kind,
                    mime_type: mime_type.as_deref(),
                    custom_metadata: custom_metadata.as_deref(),
                    create_time,
                };
                let payload: &[u8] = payload.as_deref().unwrap_or(&[]);
                a.save_artifact(key.borrow(), payload, version).await
            },
            to_py,
        )
    }

    /// Reads a version (latest when `version` is None); see `loaded_row` for the result.
    #[pyo3(signature = (key, version=None))]
    fn load<'py>(
        &self,
        py: Python<'py>,
        key: Key,
        version: Option<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move {
                Ok(a.load_artifact(key.borrow(), version)
                    .await?
                    .map(loaded_row))
            },
            to_py,
        )
    }

    /// Reads a large content into one new `bytes` of `size` bytes; `None` if it is gone.
    fn read_content<'py>(
        &self,
        py: Python<'py>,
        sha256: Vec<u8>,
        size: usize,
        storage: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let storage = Storage::parse(storage).map_err(to_pyerr)?;
        let mut out = OutBuffer::new(py, size)?;
        call(
            py,
            &self.inner,
            |a| async move {
                let complete = a
                    .read_artifact_content(&sha256, storage, out.slice())
                    .await?;
                Ok::<_, StoreError>(complete.then_some(out))
            },
            |py, out| {
                Ok(match out {
                    Some(out) => out.bytes.into_any(),
                    None => py.None(),
                })
            },
        )
    }

    /// `[(version, mime_type, custom_metadata_json, create_time)]`, oldest first.
    fn list_versions<'py>(&self, py: Python<'py>, key: Key) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move {
                let versions = a.list_artifact_versions(key.borrow()).await?;
                Ok(versions.into_iter().map(version_row).collect::<Vec<_>>())
            },
            to_py,
        )
    }

    /// `(version, mime_type, custom_metadata_json, create_time)` or None.
    #[pyo3(signature = (key, version=None))]
    fn get_version<'py>(
        &self,
        py: Python<'py>,
        key: Key,
        version: Option<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move {
                Ok(a.artifact_version(key.borrow(), version)
                    .await?
                    .map(version_row))
            },
            to_py,
        )
    }

    /// Filenames of the user-scoped artifacts, plus the session's when given (unsorted).
    #[pyo3(signature = (app_name, user_id, session_id=None))]
    fn list_keys<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: String,
        session_id: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move {
                a.list_artifact_keys(&app_name, &user_id, session_id.as_deref())
                    .await
            },
            to_py,
        )
    }

    /// Deletes every version; True if there was any.
    fn delete<'py>(&self, py: Python<'py>, key: Key) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move { a.delete_artifact(key.borrow()).await },
            to_py,
        )
    }

    /// Unlinks the files of deleted contents, then files no content uses that are at least
    /// `grace_s` seconds old (content directory only); returns how many.
    #[pyo3(signature = (grace_s=DEFAULT_FILE_GRACE_S))]
    fn collect_garbage<'py>(&self, py: Python<'py>, grace_s: f64) -> PyResult<Bound<'py, PyAny>> {
        let grace = seconds("grace", grace_s)?;
        call(
            py,
            &self.inner,
            |a| async move {
                let queued = a.collect_artifact_garbage().await?;
                let orphans = a.collect_orphan_files(grace, false).await?;
                Ok::<_, StoreError>(queued + orphans)
            },
            to_py,
        )
    }
}
