//! `adk_postgres._native.A2a`: argument conversion around `adk_postgres_core::a2a`.
//!
//! Built from a `Database` (`A2a(database)`), sharing its pool. Tasks and push configs are
//! the a2a-sdk's serialized protobuf messages, borrowed from Python `bytes`; results come back
//! as tuples of `bytes` and numbers (documented in `_native.pyi`).

use std::sync::Arc;

use adk_postgres_core::a2a::{A2a, NewFeedback, SaveOutcome, TaskQuery, TaskWrite};
use adk_postgres_core::db::Database;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;

use crate::call::{call, to_py, Bytes, Service};
use crate::database::PyDatabase;

#[pyclass(module = "adk_postgres._native", name = "A2a", frozen)]
pub struct PyA2a {
    inner: Arc<A2a>,
}

impl Service for A2a {
    fn database(&self) -> &Arc<Database> {
        A2a::database(self)
    }
}

/// `(saved, version, current_task)`: `(True, version, None)` when written; `(False, version,
/// bytes)` or `(False, None, None)` (the task was deleted) when the stored task moved on.
type SaveResult = (bool, Option<i64>, Option<Bytes>);

/// `(feedback_id, rating, text, metadata_json, created_at)`
type FeedbackRow = (String, i16, Option<String>, Option<Bytes>, f64);

fn byte_list(items: Vec<Vec<u8>>) -> Vec<Bytes> {
    items.into_iter().map(Bytes).collect()
}

#[pymethods]
impl PyA2a {
    #[new]
    fn new(database: Bound<'_, PyDatabase>) -> Self {
        PyA2a {
            inner: Arc::new(A2a::new(PyDatabase::handle(&database))),
        }
    }

    /// Returns a `SaveResult`.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (owner, task_id, context_id, state, status_ts_ns, task, expected_version))]
    fn save_task<'py>(
        &self,
        py: Python<'py>,
        owner: String,
        task_id: String,
        context_id: String,
        state: String,
        status_ts_ns: Option<i64>,
        task: PyBackedBytes,
        expected_version: Option<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move {
                let write = TaskWrite {
                    owner: &owner,
                    task_id: &task_id,
                    context_id: &context_id,
                    state: &state,
                    status_ts_ns,
                    task: &task,
                };
                let result: SaveResult = match a.save_task(write, expected_version).await? {
                    SaveOutcome::Saved { version } => (true, Some(version), None),
                    SaveOutcome::Conflict { current: Some(t) } => {
                        (false, Some(t.version), Some(Bytes(t.task)))
                    }
                    SaveOutcome::Conflict { current: None } => (false, None, None),
                };
                Ok(result)
            },
            to_py,
        )
    }

    /// `(version, task_bytes)` or None.
    fn get_task<'py>(
        &self,
        py: Python<'py>,
        owner: String,
        task_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move {
                let task = a.get_task(&owner, &task_id).await?;
                Ok(task.map(|t| (t.version, Bytes(t.task))))
            },
            to_py,
        )
    }

    /// `(total, [(status_ts_ns, task_id, task_bytes)])`
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (owner, context_id, state, status_after_ns, cursor, limit))]
    fn list_tasks<'py>(
        &self,
        py: Python<'py>,
        owner: String,
        context_id: Option<String>,
        state: Option<String>,
        status_after_ns: Option<i64>,
        cursor: Option<(Option<i64>, String)>,
        limit: i64,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move {
                let query = TaskQuery {
                    owner: &owner,
                    context_id: context_id.as_deref(),
                    state: state.as_deref(),
                    status_after_ns,
                    cursor: cursor.as_ref().map(|(ts, id)| (*ts, id.as_str())),
                    limit,
                };
                let page = a.list_tasks(&query).await?;
                let tasks: Vec<(Option<i64>, String, Bytes)> = page
                    .tasks
                    .into_iter()
                    .map(|t| (t.status_ts_ns, t.task_id, Bytes(t.task)))
                    .collect();
                Ok((page.total, tasks))
            },
            to_py,
        )
    }

    fn delete_task<'py>(
        &self,
        py: Python<'py>,
        owner: String,
        task_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move { a.delete_task(&owner, &task_id).await },
            to_py,
        )
    }

    #[pyo3(signature = (context_id, owner=None))]
    fn delete_context<'py>(
        &self,
        py: Python<'py>,
        context_id: String,
        owner: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move { a.delete_context(&context_id, owner.as_deref()).await },
            to_py,
        )
    }

    fn set_push_config<'py>(
        &self,
        py: Python<'py>,
        owner: String,
        task_id: String,
        config_id: String,
        config: PyBackedBytes,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move {
                a.set_push_config(&owner, &task_id, &config_id, &config)
                    .await
            },
            to_py,
        )
    }

    /// `[config_bytes]`, oldest first.
    fn push_configs<'py>(
        &self,
        py: Python<'py>,
        owner: String,
        task_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move { Ok(byte_list(a.push_configs(&owner, &task_id).await?)) },
            to_py,
        )
    }

    fn push_configs_for_dispatch<'py>(
        &self,
        py: Python<'py>,
        task_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move { Ok(byte_list(a.push_configs_for_dispatch(&task_id).await?)) },
            to_py,
        )
    }

    #[pyo3(signature = (owner, task_id, config_id=None))]
    fn delete_push_configs<'py>(
        &self,
        py: Python<'py>,
        owner: String,
        task_id: String,
        config_id: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move {
                a.delete_push_configs(&owner, &task_id, config_id.as_deref())
                    .await
            },
            to_py,
        )
    }

    /// `created_at` or None when the owner has no such task.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (feedback_id, owner, task_id, rating, text=None, metadata=None))]
    fn add_feedback<'py>(
        &self,
        py: Python<'py>,
        feedback_id: String,
        owner: String,
        task_id: String,
        rating: i16,
        text: Option<String>,
        metadata: Option<PyBackedBytes>,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move {
                a.add_feedback(NewFeedback {
                    feedback_id: &feedback_id,
                    owner: &owner,
                    task_id: &task_id,
                    rating,
                    text: text.as_deref(),
                    metadata: metadata.as_deref(),
                })
                .await
            },
            to_py,
        )
    }

    /// `[FeedbackRow]`, oldest first.
    fn list_feedback<'py>(
        &self,
        py: Python<'py>,
        owner: String,
        task_id: String,
        after: Option<String>,
        limit: i64,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move {
                let rows: Vec<FeedbackRow> = a
                    .list_feedback(&owner, &task_id, after.as_deref(), limit)
                    .await?
                    .into_iter()
                    .map(|f| {
                        (
                            f.feedback_id,
                            f.rating,
                            f.text,
                            f.metadata.map(Bytes),
                            f.created_at,
                        )
                    })
                    .collect();
                Ok(rows)
            },
            to_py,
        )
    }
}
