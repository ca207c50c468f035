//! `adk_postgres._native.Store`: argument conversion around `adk_postgres_core::Store`.
//!
//! Every I/O method returns an awaitable that runs on the shared tokio runtime without holding
//! the interpreter; Python objects are built only when the result is handed back. JSON
//! arguments are borrowed from Python `bytes` (`PyBackedBytes`, no copy).

use std::sync::Arc;
use std::time::Duration;

use adk_postgres_core::coalesce::{Blob, OwnedAppend};
use adk_postgres_core::sessions::{AppendOutcome, Expected, SessionData, SessionKey};
use adk_postgres_core::transfer::{TransferEvent, TransferSession, TransferSql};
use adk_postgres_core::{Store, StoreConfig, StoreError, StoreOptions};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::errors::to_pyerr;
use crate::runtime::{bytes_opt, spawn};

#[pyclass(module = "adk_postgres._native", name = "Store", frozen)]
pub struct PyStore {
    pub(crate) inner: Arc<Store>,
}

/// Owned copies of a session key, moved into the future.
struct Key {
    app_name: String,
    user_id: String,
    session_id: String,
}

impl Key {
    fn borrow(&self) -> SessionKey<'_> {
        SessionKey {
            app_name: &self.app_name,
            user_id: &self.user_id,
            session_id: &self.session_id,
        }
    }
}

fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        to_pyerr(StoreError::config(format!(
            "{name} must be a positive number of seconds"
        )))
    })
}

impl PyStore {
    /// The store, after checking that this process created it. The check runs before anything
    /// is scheduled: in a forked child the runtime's worker threads do not exist, so a future
    /// handed to them would never finish.
    pub(crate) fn checked(&self) -> PyResult<Arc<Store>> {
        self.inner.check_process().map_err(to_pyerr)?;
        Ok(self.inner.clone())
    }
}

/// `(state, revision, last_update_time, app_state, user_state, events, incarnation,
/// unsequenced)` or `None`.
fn session_data_to_py(py: Python<'_>, data: Option<SessionData>) -> PyResult<Py<PyAny>> {
    let Some(d) = data else { return Ok(py.None()) };
    let events = PyList::new(py, d.events.iter().map(|e| PyBytes::new(py, e)))?;
    Ok(PyTuple::new(
        py,
        [
            PyBytes::new(py, &d.state).into_any(),
            d.revision.into_pyobject(py)?.into_any(),
            d.last_update_time.into_pyobject(py)?.into_any(),
            bytes_opt(py, d.app_state.as_deref()),
            bytes_opt(py, d.user_state.as_deref()),
            events.into_any(),
            d.incarnation.into_pyobject(py)?.into_any(),
            pyo3::types::PyBool::new(py, d.unsequenced)
                .to_owned()
                .into_any(),
        ],
    )?
    .into_any()
    .unbind())
}

#[pymethods]
impl PyStore {
    #[new]
    #[pyo3(signature = (url, *, schema, pool_size, connect_timeout, acquire_timeout, statement_cache, application_name, coalesce_appends=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        url: &str,
        schema: String,
        pool_size: usize,
        connect_timeout: f64,
        acquire_timeout: f64,
        statement_cache: bool,
        application_name: Option<String>,
        coalesce_appends: bool,
    ) -> PyResult<Self> {
        let options = StoreOptions {
            pool_size,
            connect_timeout: seconds("connect_timeout", connect_timeout)?,
            acquire_timeout: seconds("acquire_timeout", acquire_timeout)?,
            statement_cache,
            coalesce_appends,
            schema,
            application_name,
        };
        let config = StoreConfig::parse(url, options).map_err(to_pyerr)?;
        // The pool needs the runtime's context to be created.
        let runtime = crate::runtime::runtime();
        let _guard = runtime.enter();
        let store = Store::new(config).map_err(to_pyerr)?;
        Ok(PyStore {
            inner: Arc::new(store),
        })
    }

    /// Host, port, database, user and schema; never the password.
    fn describe(&self) -> String {
        self.inner.config().describe()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn close(&self) {
        self.inner.close();
    }

    /// Raises ProcessForkedError when called in a process other than the creator.
    fn check_process(&self) -> PyResult<()> {
        self.inner.check_process().map_err(to_pyerr)
    }

    fn pool_status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.pool_status();
        let d = PyDict::new(py);
        d.set_item("max_size", s.max_size)?;
        d.set_item("size", s.size)?;
        d.set_item("available", s.available)?;
        d.set_item("waiting", s.waiting)?;
        Ok(d)
    }

    fn migrate<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let store = self.checked()?;
        spawn(py, async move { store.migrate().await }, |py, v| {
            Ok(v.into_pyobject(py)?.into_any().unbind())
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn create_session<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: String,
        session_id: String,
        state: PyBackedBytes,
        app_delta: Option<PyBackedBytes>,
        user_delta: Option<PyBackedBytes>,
        create_time: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.checked()?;
        let key = Key {
            app_name,
            user_id,
            session_id,
        };
        spawn(
            py,
            async move {
                store
                    .create_session(
                        key.borrow(),
                        &state,
                        app_delta.as_deref(),
                        user_delta.as_deref(),
                        create_time,
                    )
                    .await
            },
            |py, created| {
                Ok(match created {
                    None => py.None(),
                    Some(c) => PyTuple::new(
                        py,
                        [
                            c.revision.into_pyobject(py)?.into_any(),
                            c.incarnation.into_pyobject(py)?.into_any(),
                            bytes_opt(py, c.app_state.as_deref()),
                            bytes_opt(py, c.user_state.as_deref()),
                        ],
                    )?
                    .into_any()
                    .unbind(),
                })
            },
        )
    }

    #[pyo3(signature = (app_name, user_id, session_id, after_timestamp=None, num_recent_events=None))]
    fn get_session<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: String,
        session_id: String,
        after_timestamp: Option<f64>,
        num_recent_events: Option<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.checked()?;
        let key = Key {
            app_name,
            user_id,
            session_id,
        };
        spawn(
            py,
            async move {
                store
                    .get_session(key.borrow(), after_timestamp, num_recent_events)
                    .await
            },
            session_data_to_py,
        )
    }

    /// Like `get_session`, with only the events stored after `revision`.
    fn get_session_since<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: String,
        session_id: String,
        revision: i64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.checked()?;
        let key = Key {
            app_name,
            user_id,
            session_id,
        };
        spawn(
            py,
            async move { store.get_session_since(key.borrow(), revision).await },
            session_data_to_py,
        )
    }

    #[pyo3(signature = (app_name, user_id=None))]
    fn list_sessions<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.checked()?;
        spawn(
            py,
            async move { store.list_sessions(&app_name, user_id.as_deref()).await },
            |py, list| {
                let user_states = PyList::empty(py);
                for (user, state) in &list.user_states {
                    user_states.append((user.as_str(), PyBytes::new(py, state)))?;
                }
                let sessions = PyList::empty(py);
                for s in &list.sessions {
                    sessions.append((
                        s.user_id.as_str(),
                        s.session_id.as_str(),
                        PyBytes::new(py, &s.state),
                        s.revision,
                        s.last_update_time,
                        s.incarnation,
                    ))?;
                }
                Ok(PyTuple::new(
                    py,
                    [
                        bytes_opt(py, list.app_state.as_deref()),
                        user_states.into_any(),
                        sessions.into_any(),
                    ],
                )?
                .into_any()
                .unbind())
            },
        )
    }

    fn delete_session<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: String,
        session_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.checked()?;
        let key = Key {
            app_name,
            user_id,
            session_id,
        };
        spawn(
            py,
            async move { store.delete_session(key.borrow()).await },
            |py, deleted| {
                Ok(pyo3::types::PyBool::new(py, deleted)
                    .to_owned()
                    .into_any()
                    .unbind())
            },
        )
    }

    /// Returns `(outcome, revision)`: outcome is "appended", "already_stored", "stale" or
    /// "not_found" (revision None).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (app_name, user_id, session_id, expected_revision, incarnation, event_id, invocation_id, timestamp, event_json, session_delta, app_delta, user_delta))]
    fn append_event<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: String,
        session_id: String,
        expected_revision: i64,
        incarnation: Option<i64>,
        event_id: String,
        invocation_id: String,
        timestamp: f64,
        event_json: PyBackedBytes,
        session_delta: Option<PyBackedBytes>,
        app_delta: Option<PyBackedBytes>,
        user_delta: Option<PyBackedBytes>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.checked()?;
        // The `bytes` objects are kept alive by the append, not copied.
        let blob = |b: PyBackedBytes| -> Blob { Box::new(b) };
        let append = OwnedAppend {
            app_name,
            user_id,
            session_id,
            expected: Expected {
                revision: expected_revision,
                incarnation,
            },
            event_id,
            invocation_id,
            timestamp,
            event_json: blob(event_json),
            session_delta: session_delta.map(blob),
            app_delta: app_delta.map(blob),
            user_delta: user_delta.map(blob),
        };
        spawn(
            py,
            async move { store.append_event_coalesced(append).await },
            |py, outcome| {
                let (name, revision) = match outcome {
                    AppendOutcome::Appended(r) => ("appended", Some(r)),
                    AppendOutcome::AlreadyStored(r) => ("already_stored", Some(r)),
                    AppendOutcome::Stale(r) => ("stale", Some(r)),
                    AppendOutcome::SessionNotFound => ("not_found", None),
                };
                Ok((name, revision).into_pyobject(py)?.into_any().unbind())
            },
        )
    }

    /// Copies one whole session (import/restore): `events` are
    /// `(id, invocation_id, timestamp, json)`. Resolves to
    /// `(created, events_added, events_present, state_taken)`.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (app_name, user_id, session_id, state, create_time, update_time, events, app_state=None, user_state=None))]
    fn write_transferred_session<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: String,
        session_id: String,
        state: Vec<u8>,
        create_time: f64,
        update_time: f64,
        events: Vec<(String, String, f64, Vec<u8>)>,
        app_state: Option<Vec<u8>>,
        user_state: Option<Vec<u8>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.checked()?;
        let session = TransferSession {
            app_name,
            user_id,
            session_id,
            state,
            create_time,
            update_time,
            events: events
                .into_iter()
                .map(|(id, invocation_id, timestamp, json)| TransferEvent {
                    id,
                    invocation_id,
                    timestamp,
                    json,
                })
                .collect(),
            app_state,
            user_state,
        };
        spawn(
            py,
            async move {
                let sql = TransferSql::new(&store.config().options.schema);
                store.write_transferred_session(&sql, &session).await
            },
            |py, o| {
                Ok((o.created, o.events_added, o.events_present, o.state_taken)
                    .into_pyobject(py)?
                    .into_any()
                    .unbind())
            },
        )
    }

    fn session_revision<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: String,
        session_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.checked()?;
        let key = Key {
            app_name,
            user_id,
            session_id,
        };
        spawn(
            py,
            async move { store.session_revision(key.borrow()).await },
            |py, info| {
                Ok(match info {
                    None => py.None(),
                    Some(i) => (
                        i.revision,
                        i.last_update_time,
                        i.incarnation,
                        i.last_event_id,
                    )
                        .into_pyobject(py)?
                        .into_any()
                        .unbind(),
                })
            },
        )
    }

    fn get_user_state<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.checked()?;
        spawn(
            py,
            async move { store.get_user_state(&app_name, &user_id).await },
            |py, state| Ok(bytes_opt(py, state.as_deref()).unbind()),
        )
    }
}
