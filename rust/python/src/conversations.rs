//! `adk_postgres._native.Conversations`: argument conversion around
//! `adk_postgres_core::conversations`.
//!
//! Built from a `Database` (`Conversations(database)`), sharing its pool. Results come back as
//! tuples (documented in `_native.pyi`).

use std::sync::Arc;

use adk_postgres_core::conversations::{Conversations, SearchQuery, StateQuery};
use adk_postgres_core::db::Database;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;

use crate::call::{call, to_py, Service};
use crate::database::PyDatabase;

#[pyclass(module = "adk_postgres._native", name = "Conversations", frozen)]
pub struct PyConversations {
    inner: Arc<Conversations>,
}

impl Service for Conversations {
    fn database(&self) -> &Arc<Database> {
        Conversations::database(self)
    }
}

/// `(session_id, key, title, first_text, last_text, message_count, created_at, archived_at)`
type ConversationRow = (
    String,
    f64,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    f64,
    Option<f64>,
);

/// `(session_id, event_id, timestamp, rank, author, snippet)`
type HitRow = (String, String, f64, f32, Option<String>, String);

#[pymethods]
impl PyConversations {
    #[new]
    fn new(database: Bound<'_, PyDatabase>) -> Self {
        PyConversations {
            inner: Arc::new(Conversations::new(PyDatabase::handle(&database))),
        }
    }

    /// The database's clock, epoch seconds.
    fn now<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        call(py, &self.inner, |c| async move { c.now().await }, to_py)
    }

    /// A list of `ConversationRow`.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (app_name, user_id, archived, t0, after, limit))]
    fn list<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: String,
        archived: bool,
        t0: f64,
        after: Option<(f64, String)>,
        limit: i64,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |c| async move {
                let cursor = after.as_ref().map(|(k, id)| (*k, id.as_str()));
                let page = c
                    .list(&app_name, &user_id, archived, t0, cursor, limit)
                    .await?;
                let rows: Vec<ConversationRow> = page
                    .into_iter()
                    .map(|c| {
                        (
                            c.session_id,
                            c.key,
                            c.title,
                            c.first_text,
                            c.last_text,
                            c.message_count,
                            c.created_at,
                            c.archived_at,
                        )
                    })
                    .collect();
                Ok(rows)
            },
            to_py,
        )
    }

    #[pyo3(signature = (app_name, user_id, session_id, title))]
    fn set_title<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: String,
        session_id: String,
        title: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |c| async move {
                c.set_title(&app_name, &user_id, &session_id, title.as_deref())
                    .await
            },
            to_py,
        )
    }

    fn set_archived<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: String,
        session_id: String,
        archived: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |c| async move {
                c.set_archived(&app_name, &user_id, &session_id, archived)
                    .await
            },
            to_py,
        )
    }

    /// A list of `HitRow`; `after` is `(rank, timestamp, session_id, event_id)`.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (app_name, user_id, query, language, after, limit, include_archived))]
    fn search<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: String,
        query: String,
        language: String,
        after: Option<(f32, f64, String, String)>,
        limit: i64,
        include_archived: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |c| async move {
                let q = SearchQuery {
                    app_name: &app_name,
                    user_id: &user_id,
                    query: &query,
                    language: &language,
                    after: after
                        .as_ref()
                        .map(|(r, t, s, e)| (*r, *t, s.as_str(), e.as_str())),
                    limit,
                    include_archived,
                };
                let hits: Vec<HitRow> = c
                    .search(q)
                    .await?
                    .into_iter()
                    .map(|h| {
                        (
                            h.session_id,
                            h.event_id,
                            h.timestamp,
                            h.rank,
                            h.author,
                            h.snippet,
                        )
                    })
                    .collect();
                Ok(hits)
            },
            to_py,
        )
    }

    /// A list of `(user_id, session_id, last_activity)`; `after` is one of those.
    #[pyo3(signature = (app_name, user_id, contains, after, limit))]
    fn find_by_state<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: Option<String>,
        contains: PyBackedBytes,
        after: Option<(f64, String, String)>,
        limit: i64,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |c| async move {
                let q = StateQuery {
                    app_name: &app_name,
                    user_id: user_id.as_deref(),
                    contains: &contains,
                    after: after.as_ref().map(|(k, u, s)| (*k, u.as_str(), s.as_str())),
                    limit,
                };
                let rows: Vec<(String, String, f64)> = c
                    .find_by_state(q)
                    .await?
                    .into_iter()
                    .map(|m| (m.user_id, m.session_id, m.last_activity))
                    .collect();
                Ok(rows)
            },
            to_py,
        )
    }

    /// The search index for `language`, or (`None`) the state index.
    #[pyo3(signature = (language=None))]
    fn create_index<'py>(
        &self,
        py: Python<'py>,
        language: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |c| async move { c.create_index(language.as_deref()).await },
            to_py,
        )
    }

    #[pyo3(signature = (language=None))]
    fn drop_index<'py>(
        &self,
        py: Python<'py>,
        language: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |c| async move { c.drop_index(language.as_deref()).await },
            to_py,
        )
    }

    fn indexes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        call(py, &self.inner, |c| async move { c.indexes().await }, to_py)
    }
}
