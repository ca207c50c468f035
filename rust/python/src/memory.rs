//! `adk_postgres._native.Memory`: argument conversion around `adk_postgres_core::memory`.
//!
//! Built from a `Database` (`Memory(database, text_search_config="english", trigram=True,
//! vector=False)`), sharing its pool. Content and metadata JSON are borrowed from Python
//! `bytes`; embeddings arrive as one `bytes` of packed native-endian float32 (an
//! `array('f')`), converted to pgvector's binary format in Rust.

use std::sync::Arc;

use adk_postgres_core::db::Database;
use adk_postgres_core::memory::{
    Capabilities, EmbeddingBatch, Memory, MemoryHit, MemoryOptions, MemoryQuery, MemoryUpsert,
    NewMemory,
};
use adk_postgres_core::{ErrorKind, StoreError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyDict, PyList};

use crate::call::{bytes_opt, call, to_py, Bytes, Service};
use crate::database::PyDatabase;

#[pyclass(module = "adk_postgres._native", name = "Memory", frozen)]
pub struct PyMemory {
    inner: Arc<Memory>,
}

impl Service for Memory {
    fn database(&self) -> &Arc<Database> {
        Memory::database(self)
    }
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
            ErrorKind::Data,
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

/// `(memory_id, session_id, author, event_ts, timestamp_text, content_json,
/// custom_metadata_json, score)`
type HitRow = (
    String,
    Option<String>,
    Option<String>,
    Option<f64>,
    Option<String>,
    Bytes,
    Option<Bytes>,
    f64,
);

fn hit_row(h: MemoryHit) -> HitRow {
    let (content, metadata) = (Bytes(h.content), bytes_opt(h.custom_metadata));
    let (id, session, author) = (h.memory_id, h.session_id, h.author);
    (
        id,
        session,
        author,
        h.event_ts,
        h.timestamp_text,
        content,
        metadata,
        h.score,
    )
}

#[pymethods]
impl PyMemory {
    #[new]
    #[pyo3(signature = (database, text_search_config="english".to_string(), trigram=true, vector=false))]
    fn new(
        database: Bound<'_, PyDatabase>,
        text_search_config: String,
        trigram: bool,
        vector: bool,
    ) -> Self {
        let options = MemoryOptions {
            text_search_config,
            trigram,
            vector,
        };
        PyMemory {
            inner: Arc::new(Memory::new(PyDatabase::handle(&database), options)),
        }
    }

    /// `{"trigram_schema", "vector_schema", "embedding_column", "notes"}`; the first call
    /// detects (and where possible creates) the extensions.
    fn capabilities<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |m| async move { m.memory_capabilities().await },
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
        call(
            py,
            &self.inner,
            |m| async move {
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
                let upsert = MemoryUpsert {
                    app_name: &app_name,
                    user_id: &user_id,
                    entries: &new,
                    replace_session: replace_session.as_deref(),
                    from_events,
                    embedding_dim,
                };
                m.upsert_memories(upsert).await
            },
            to_py,
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
        call(
            py,
            &self.inner,
            |m| async move {
                let vectors = floats(&vectors)?;
                let batch = EmbeddingBatch {
                    app_name: &app_name,
                    user_id: &user_id,
                    ids: &ids,
                    texts: &texts,
                    dim,
                    vectors: &vectors,
                };
                m.set_memory_embeddings(batch).await
            },
            to_py,
        )
    }

    fn delete<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: String,
        memory_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |m| async move { m.delete_memory(&app_name, &user_id, &memory_id).await },
            to_py,
        )
    }

    /// Ranked search; returns `[hit_row]`. `vector`: the query embedding as packed
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
        call(
            py,
            &self.inner,
            |m| async move {
                let vector = vector.as_deref().map(floats).transpose()?;
                let query = MemoryQuery {
                    app_name: &app_name,
                    user_id: &user_id,
                    text: &text,
                    strict,
                    words: &words,
                    limit,
                    min_score,
                    vector: vector.as_deref(),
                };
                let hits = m.search_memory(query).await?;
                Ok(hits.into_iter().map(hit_row).collect::<Vec<_>>())
            },
            to_py,
        )
    }
}
