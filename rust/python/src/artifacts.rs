//! `adk_postgres._native.ArtifactStore`: argument conversion around the artifact operations of
//! `adk_postgres_core::Store` (see `rust/core/src/artifacts.rs`).
//!
//! Built from a `Store` (`ArtifactStore(store, content_dir=None)`), sharing its pool. Payloads
//! are borrowed from Python `bytes` (`PyBackedBytes`, no copy); a large payload is read straight
//! into one preallocated `bytes` object, so a 100 MB artifact costs 100 MB once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use adk_postgres_core::artifacts::{
    ArtifactBackend, ArtifactKey, Content, LoadedVersion, NewVersion, Storage, VersionInfo,
    DEFAULT_FILE_GRACE_S,
};
use adk_postgres_core::{Store, StoreError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::errors::to_pyerr;
use crate::runtime::{bytes_opt, spawn};
use crate::store::PyStore;

#[pyclass(module = "adk_postgres._native", name = "ArtifactStore", frozen)]
pub struct PyArtifactStore {
    store: Py<PyStore>,
    backend: Arc<ArtifactBackend>,
}

/// Owned copies of an artifact key, moved into the future.
struct Key {
    app_name: String,
    user_id: String,
    session_id: String,
    filename: String,
}

impl Key {
    fn borrow(&self) -> ArtifactKey<'_> {
        ArtifactKey {
            app_name: &self.app_name,
            user_id: &self.user_id,
            session_id: &self.session_id,
            filename: &self.filename,
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

fn version_info_to_py(py: Python<'_>, v: &VersionInfo) -> PyResult<Py<PyAny>> {
    Ok(PyTuple::new(
        py,
        [
            v.version.into_pyobject(py)?.into_any(),
            v.mime_type.as_deref().into_pyobject(py)?.into_any(),
            bytes_opt(py, v.custom_metadata.as_deref()),
            v.create_time.into_pyobject(py)?.into_any(),
        ],
    )?
    .into_any()
    .unbind())
}

/// `(version, part_json, payload_kind, content, sha256, size, storage)`; `content` is `bytes`,
/// or `None` when it must be read with `read_content(sha256, size, storage)` (large) or is
/// gone (`size` is then `-1`).
fn loaded_to_py(py: Python<'_>, loaded: Option<LoadedVersion>) -> PyResult<Py<PyAny>> {
    let Some(l) = loaded else {
        return Ok(py.None());
    };
    let (content, sha, size, storage) = match &l.content {
        Content::Inline(bytes) => (Some(&bytes[..]), None, bytes.len() as i64, None),
        Content::Stream {
            sha256,
            size,
            storage,
        } => (
            None,
            Some(&sha256[..]),
            *size as i64,
            Some(storage.as_str()),
        ),
        Content::Missing => (None, None, -1, None),
    };
    Ok(PyTuple::new(
        py,
        [
            l.version.into_pyobject(py)?.into_any(),
            PyBytes::new(py, &l.part_json).into_any(),
            l.payload_kind.into_pyobject(py)?.into_any(),
            bytes_opt(py, content),
            bytes_opt(py, sha),
            size.into_pyobject(py)?.into_any(),
            storage.into_pyobject(py)?.into_any(),
        ],
    )?
    .into_any()
    .unbind())
}

impl PyArtifactStore {
    fn checked(&self) -> PyResult<Arc<Store>> {
        self.store.get().checked()
    }
}

#[pymethods]
impl PyArtifactStore {
    /// `content_dir`: keep payloads as files in this directory instead of in PostgreSQL.
    #[new]
    #[pyo3(signature = (store, content_dir=None))]
    fn new(store: Bound<'_, PyStore>, content_dir: Option<PathBuf>) -> Self {
        let backend = ArtifactBackend::new(&store.get().inner, content_dir);
        PyArtifactStore {
            store: store.unbind(),
            backend: Arc::new(backend),
        }
    }

    #[getter]
    fn content_dir(&self) -> Option<PathBuf> {
        self.backend.content_dir().map(PathBuf::from)
    }

    /// Saves a version; returns its number. `payload` is the content (`None`: empty).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (app_name, user_id, session_id, filename, payload, part_json, payload_kind, mime_type, custom_metadata, create_time))]
    fn save<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: String,
        session_id: String,
        filename: String,
        payload: Option<PyBackedBytes>,
        part_json: PyBackedBytes,
        payload_kind: i16,
        mime_type: Option<String>,
        custom_metadata: Option<PyBackedBytes>,
        create_time: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.checked()?;
        let backend = self.backend.clone();
        let key = Key {
            app_name,
            user_id,
            session_id,
            filename,
        };
        spawn(
            py,
            async move {
                let version = NewVersion {
                    part_json: &part_json,
                    payload_kind,
                    mime_type: mime_type.as_deref(),
                    custom_metadata: custom_metadata.as_deref(),
                    create_time,
                };
                let payload: &[u8] = payload.as_deref().unwrap_or(&[]);
                store
                    .save_artifact(&backend, key.borrow(), payload, version)
                    .await
            },
            |py, v| Ok(v.into_pyobject(py)?.into_any().unbind()),
        )
    }

    /// Reads a version (latest when `version` is None); see `loaded_to_py` for the result.
    #[pyo3(signature = (app_name, user_id, session_id, filename, version=None))]
    fn load<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: String,
        session_id: String,
        filename: String,
        version: Option<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.checked()?;
        let backend = self.backend.clone();
        let key = Key {
            app_name,
            user_id,
            session_id,
            filename,
        };
        spawn(
            py,
            async move { store.load_artifact(&backend, key.borrow(), version).await },
            loaded_to_py,
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
        let store = self.checked()?;
        let backend = self.backend.clone();
        let storage = Storage::parse(storage).map_err(to_pyerr)?;
        let mut out = OutBuffer::new(py, size)?;
        spawn(
            py,
            async move {
                let complete = store
                    .read_artifact_content(&backend, &sha256, storage, out.slice())
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
    fn list_versions<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: String,
        session_id: String,
        filename: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.checked()?;
        let backend = self.backend.clone();
        let key = Key {
            app_name,
            user_id,
            session_id,
            filename,
        };
        spawn(
            py,
            async move { store.list_artifact_versions(&backend, key.borrow()).await },
            |py, versions| {
                let list = PyList::empty(py);
                for v in &versions {
                    list.append(version_info_to_py(py, v)?)?;
                }
                Ok(list.into_any().unbind())
            },
        )
    }

    /// `(version, mime_type, custom_metadata_json, create_time)` or None.
    #[pyo3(signature = (app_name, user_id, session_id, filename, version=None))]
    fn get_version<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: String,
        session_id: String,
        filename: String,
        version: Option<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.checked()?;
        let backend = self.backend.clone();
        let key = Key {
            app_name,
            user_id,
            session_id,
            filename,
        };
        spawn(
            py,
            async move {
                store
                    .artifact_version(&backend, key.borrow(), version)
                    .await
            },
            |py, info| match info {
                Some(v) => version_info_to_py(py, &v),
                None => Ok(py.None()),
            },
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
        let store = self.checked()?;
        let backend = self.backend.clone();
        spawn(
            py,
            async move {
                store
                    .list_artifact_keys(&backend, &app_name, &user_id, session_id.as_deref())
                    .await
            },
            |py, keys| Ok(PyList::new(py, keys)?.into_any().unbind()),
        )
    }

    /// Deletes every version; True if there was any.
    fn delete<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: String,
        session_id: String,
        filename: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.checked()?;
        let backend = self.backend.clone();
        let key = Key {
            app_name,
            user_id,
            session_id,
            filename,
        };
        spawn(
            py,
            async move { store.delete_artifact(&backend, key.borrow()).await },
            |py, deleted| {
                Ok(pyo3::types::PyBool::new(py, deleted)
                    .to_owned()
                    .into_any()
                    .unbind())
            },
        )
    }

    /// Unlinks the files of deleted contents, then files no content uses that are at least
    /// `grace_s` seconds old (content directory only); returns how many.
    #[pyo3(signature = (grace_s=DEFAULT_FILE_GRACE_S))]
    fn collect_garbage<'py>(&self, py: Python<'py>, grace_s: f64) -> PyResult<Bound<'py, PyAny>> {
        let grace = Duration::try_from_secs_f64(grace_s).map_err(|_| {
            to_pyerr(StoreError::config(
                "grace must be a finite number of seconds >= 0",
            ))
        })?;
        let store = self.checked()?;
        let backend = self.backend.clone();
        spawn(
            py,
            async move {
                let queued = store.collect_artifact_garbage(&backend).await?;
                let orphans = store.collect_orphan_files(&backend, grace, false).await?;
                Ok::<_, StoreError>(queued + orphans)
            },
            |py, n| Ok(n.into_pyobject(py)?.into_any().unbind()),
        )
    }
}
