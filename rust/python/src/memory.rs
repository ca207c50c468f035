//! `adk_postgres._native.MemoryStore`: argument conversion around the memory operations of
//! `adk_postgres_core::Store` (see `rust/core/src/memory.rs`).
//!
//! Built from a `Store` (`MemoryStore(store, text_search_config="english", trigram=True,
//! vector=False)`), sharing its pool. Content and metadata JSON are borrowed from Python
//! `bytes`; embeddings arrive as one `bytes` of packed native-endian float32 (an
//! `array('f')`), converted to pgvector's binary format in Rust.

use std::sync::Arc;

use adk_postgres_core::memory::{
    Capabilities, EmbeddingBatch, MemoryBackend, MemoryHit, MemoryOptions, MemoryQuery,
    MemoryUpsert, NewMemory,
};
use adk_postgres_core::{Store, StoreError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::runtime::{bytes_opt, spawn};
use crate::store::PyStore;

#[pyclass(module = "adk_postgres._native", name = "MemoryStore", frozen)]
pub struct PyMemoryStore {
    store: Py<PyStore>,
    backend: Arc<MemoryBackend>,
}

/// `(memory_id, session_id, author, event_ts, timestamp_text, content, custom_metadata,
/// search_text)` as Python passes it.
type EntryTuple = (
    String,
    Option<String>,
    Option<String>,
    Option<f64>,
    Option<String>,
    PyBackedBytes,
    Option<PyBackedBytes>,
    String,
);

/// Native-endian packed float32s → floats.
fn floats(data: &[u8]) -> Result<Vec<f32>, StoreError> {
    if data.len() % 4 != 0 {
        return Err(StoreError::new(
            adk_postgres_core::ErrorKind::Data,
            "packed float32 data must be a multiple of 4 bytes long",
        ));
    }
    Ok(data
        .chunks_exact(4)
        .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn capabilities_to_py(py: Python<'_>, caps: Capabilities) -> PyResult<Py<PyAny>> {
    let d = PyDict::new(py);
    d.set_item("trigram_schema", caps.trigram_schema)?;
    d.set_item("vector_schema", caps.vector_schema)?;
    d.set_item("embedding_column", caps.embedding_column)?;
    d.set_item("notes", PyList::new(py, caps.notes)?)?;
    Ok(d.into_any().unbind())
}

fn hit_to_py<'py>(py: Python<'py>, h: &MemoryHit) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(
        py,
        [
            h.memory_id.as_str().into_pyobject(py)?.into_any(),
            h.session_id.as_deref().into_pyobject(py)?.into_any(),
            h.author.as_deref().into_pyobject(py)?.into_any(),
            h.event_ts.into_pyobject(py)?.into_any(),
            h.timestamp_text.as_deref().into_pyobject(py)?.into_any(),
            PyBytes::new(py, &h.content).into_any(),
            bytes_opt(py, h.custom_metadata.as_deref()),
            h.score.into_pyobject(py)?.into_any(),
        ],
    )
}

impl PyMemoryStore {
    fn checked(&self) -> PyResult<Arc<Store>> {
        self.store.get().checked()
    }
}

#[pymethods]
impl PyMemoryStore {
    #[new]
    #[pyo3(signature = (store, text_search_config="english".to_string(), trigram=true, vector=false))]
    fn new(
        store: Bound<'_, PyStore>,
        text_search_config: String,
        trigram: bool,
        vector: bool,
    ) -> Self {
        let options = MemoryOptions {
            text_search_config,
            trigram,
            vector,
        };
        let backend = MemoryBackend::new(&store.get().inner, options);
        PyMemoryStore {
            store: store.unbind(),
            backend: Arc::new(backend),
        }
    }

    /// `{"trigram_schema", "vector_schema", "embedding_column", "notes"}`; the first call
    /// detects (and where possible creates) the extensions.
    fn capabilities<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let store = self.checked()?;
        let backend = self.backend.clone();
        spawn(
            py,
            async move { store.memory_capabilities(&backend).await },
            capabilities_to_py,
        )
    }

    /// Upserts entries; returns the ids needing an embedding.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (app_name, user_id, entries, replace_session=None, from_events=true, embedding_dim=None))]
    fn upsert<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: String,
        entries: Vec<EntryTuple>,
        replace_session: Option<String>,
        from_events: bool,
        embedding_dim: Option<i32>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.checked()?;
        let backend = self.backend.clone();
        spawn(
            py,
            async move {
                let new: Vec<NewMemory<'_>> = entries
                    .iter()
                    .map(|e| NewMemory {
                        memory_id: &e.0,
                        session_id: e.1.as_deref(),
                        author: e.2.as_deref(),
                        event_ts: e.3,
                        timestamp_text: e.4.as_deref(),
                        content: &e.5,
                        custom_metadata: e.6.as_deref(),
                        search_text: &e.7,
                    })
                    .collect();
                store
                    .upsert_memories(
                        &backend,
                        MemoryUpsert {
                            app_name: &app_name,
                            user_id: &user_id,
                            entries: &new,
                            replace_session: replace_session.as_deref(),
                            from_events,
                            embedding_dim,
                        },
                    )
                    .await
            },
            |py, ids| Ok(PyList::new(py, ids)?.into_any().unbind()),
        )
    }

    /// Stores embeddings: `vectors` is `len(ids) * dim` packed native-endian float32s.
    #[allow(clippy::too_many_arguments)]
    fn set_embeddings<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: String,
        ids: Vec<String>,
        texts: Vec<String>,
        dim: usize,
        vectors: PyBackedBytes,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.checked()?;
        let backend = self.backend.clone();
        spawn(
            py,
            async move {
                let vectors = floats(&vectors)?;
                let batch = EmbeddingBatch {
                    app_name: &app_name,
                    user_id: &user_id,
                    ids: &ids,
                    texts: &texts,
                    dim,
                    vectors: &vectors,
                };
                store.set_memory_embeddings(&backend, batch).await
            },
            |py, n| Ok(n.into_pyobject(py)?.into_any().unbind()),
        )
    }

    fn delete<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: String,
        memory_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.checked()?;
        let backend = self.backend.clone();
        spawn(
            py,
            async move {
                store
                    .delete_memory(&backend, &app_name, &user_id, &memory_id)
                    .await
            },
            |py, deleted| {
                Ok(pyo3::types::PyBool::new(py, deleted)
                    .to_owned()
                    .into_any()
                    .unbind())
            },
        )
    }

    /// Ranked search; returns `[(memory_id, session_id, author, event_ts, timestamp_text,
    /// content_json, custom_metadata_json, score)]`. `vector`: the query embedding as packed
    /// native-endian float32s.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (app_name, user_id, text, strict, words, limit, min_score, vector=None))]
    fn search<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: String,
        text: String,
        strict: bool,
        words: Vec<String>,
        limit: i64,
        min_score: f64,
        vector: Option<PyBackedBytes>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.checked()?;
        let backend = self.backend.clone();
        spawn(
            py,
            async move {
                let vector = vector.as_deref().map(floats).transpose()?;
                store
                    .search_memory(
                        &backend,
                        MemoryQuery {
                            app_name: &app_name,
                            user_id: &user_id,
                            text: &text,
                            strict,
                            words: &words,
                            limit,
                            min_score,
                            vector: vector.as_deref(),
                        },
                    )
                    .await
            },
            |py, hits| {
                let list = PyList::empty(py);
                for h in &hits {
                    list.append(hit_to_py(py, h)?)?;
                }
                Ok(list.into_any().unbind())
            },
        )
    }
}
