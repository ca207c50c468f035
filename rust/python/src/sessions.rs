//! `adk_postgres._native.Sessions`: argument conversion around `adk_postgres_core::sessions`.
//!
//! Built from a `Database` (`Sessions(database)`); one per `Database` in Python, so that every
//! service on a pool shares its append-coalescing queue. JSON arguments are borrowed from
//! Python `bytes` (`PyBackedBytes`, no copy); results come back as tuples of `bytes` and
//! numbers (documented in `_native.pyi`).

use std::sync::Arc;

use adk_postgres_core::db::Database;
use adk_postgres_core::sessions::{
    AppendOutcome, Blob, Claim, Expected, OwnedAppend, RunMode, SessionData, SessionKey,
    SessionList, Sessions, TransferEvent, TransferSession,
};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;

use crate::call::{bytes_opt, call, to_py, Bytes, Service};
use crate::database::PyDatabase;

#[pyclass(module = "adk_postgres._native", name = "Sessions", frozen)]
pub struct PySessions {
    inner: Arc<Sessions>,
}

impl Service for Sessions {
    fn database(&self) -> &Arc<Database> {
        Sessions::database(self)
    }
}

/// A session key as Python passes it, `(app_name, user_id, session_id)`; owned, so it can move
/// into the future.
#[derive(FromPyObject)]
struct Key(String, String, String);

impl Key {
    fn borrow(&self) -> SessionKey<'_> {
        SessionKey {
            app_name: &self.0,
            user_id: &self.1,
            session_id: &self.2,
        }
    }
}

/// `(state, revision, last_update_time, app_state, user_state, events, incarnation,
/// unsequenced, head, anchor)`
type SessionRow = (
    Bytes,
    i64,
    f64,
    Option<Bytes>,
    Option<Bytes>,
    Vec<Bytes>,
    i64,
    bool,
    Option<String>,
    Option<String>,
);

fn session_row(data: Option<SessionData>) -> Option<SessionRow> {
    data.map(|d| {
        (
            Bytes(d.state),
            d.revision,
            d.last_update_time,
            bytes_opt(d.app_state),
            bytes_opt(d.user_state),
            d.events.into_iter().map(Bytes).collect(),
            d.incarnation,
            d.unsequenced,
            d.head,
            d.anchor,
        )
    })
}

/// `(app_state, [(user_id, user_state)], [(user_id, id, state, revision, last_update_time,
/// incarnation)])`
type ListRow = (
    Option<Bytes>,
    Vec<(String, Bytes)>,
    Vec<(String, String, Bytes, i64, f64, i64)>,
);

fn list_row(list: SessionList) -> ListRow {
    (
        bytes_opt(list.app_state),
        list.user_states
            .into_iter()
            .map(|(user, state)| (user, Bytes(state)))
            .collect(),
        list.sessions
            .into_iter()
            .map(|s| {
                let state = Bytes(s.state);
                (
                    s.user_id,
                    s.session_id,
                    state,
                    s.revision,
                    s.last_update_time,
                    s.incarnation,
                )
            })
            .collect(),
    )
}

/// `(outcome, revision)`: "appended", "already_stored", "stale" or "not_found" (revision None).
fn outcome_row(outcome: AppendOutcome) -> (&'static str, Option<i64>) {
    match outcome {
        AppendOutcome::Appended(r) => ("appended", Some(r)),
        AppendOutcome::AlreadyStored(r) => ("already_stored", Some(r)),
        AppendOutcome::Stale(r) => ("stale", Some(r)),
        AppendOutcome::SessionNotFound => ("not_found", None),
        AppendOutcome::Fenced => ("fenced", None),
    }
}

/// The `bytes` objects are kept alive by the append, not copied.
fn blob(bytes: PyBackedBytes) -> Blob {
    Box::new(bytes)
}

#[pymethods]
impl PySessions {
    #[new]
    fn new(database: Bound<'_, PyDatabase>) -> Self {
        PySessions {
            inner: Arc::new(Sessions::new(PyDatabase::handle(&database))),
        }
    }

    /// `(revision, incarnation, app_state, user_state)`, or None if the id is taken.
    #[allow(clippy::too_many_arguments)]
    fn create_session<'py>(
        &self,
        py: Python<'py>,
        key: Key,
        state: PyBackedBytes,
        app_delta: Option<PyBackedBytes>,
        user_delta: Option<PyBackedBytes>,
        create_time: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |s| async move {
                let (app, user) = (app_delta.as_deref(), user_delta.as_deref());
                let created = s
                    .create_session(key.borrow(), &state, app, user, create_time)
                    .await?;
                Ok(created.map(|c| {
                    let (app, user) = (bytes_opt(c.app_state), bytes_opt(c.user_state));
                    (c.revision, c.incarnation, app, user)
                }))
            },
            to_py,
        )
    }

    #[pyo3(signature = (key, after_timestamp=None, num_recent_events=None))]
    fn get_session<'py>(
        &self,
        py: Python<'py>,
        key: Key,
        after_timestamp: Option<f64>,
        num_recent_events: Option<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |s| async move {
                let data = s
                    .get_session(key.borrow(), after_timestamp, num_recent_events)
                    .await?;
                Ok(session_row(data))
            },
            to_py,
        )
    }

    /// Like `get_session`, with only the events stored after `revision`.
    fn get_session_since<'py>(
        &self,
        py: Python<'py>,
        key: Key,
        revision: i64,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |s| async move {
                Ok(session_row(
                    s.get_session_since(key.borrow(), revision).await?,
                ))
            },
            to_py,
        )
    }

    #[pyo3(signature = (app_name, user_id=None))]
    fn list_sessions<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |s| async move {
                Ok(list_row(
                    s.list_sessions(&app_name, user_id.as_deref()).await?,
                ))
            },
            to_py,
        )
    }

    /// `list_sessions` one page at a time: `after` is `(last_update, user_id, session_id)` of
    /// the previous page's last session.
    #[pyo3(signature = (app_name, user_id, after, limit))]
    fn list_sessions_page<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: Option<String>,
        after: Option<(f64, String, String)>,
        limit: i64,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |s| async move {
                let after = after.as_ref().map(|(t, u, i)| (*t, u.as_str(), i.as_str()));
                let page = s
                    .list_sessions_page(&app_name, user_id.as_deref(), after, limit)
                    .await?;
                Ok(list_row(page))
            },
            to_py,
        )
    }

    fn delete_session<'py>(&self, py: Python<'py>, key: Key) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |s| async move { s.delete_session(key.borrow()).await },
            to_py,
        )
    }

    /// Resolves to `(outcome, revision)`, see `outcome_row`.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (key, expected_revision, incarnation, event_id, invocation_id, timestamp, event_json, session_delta, app_delta, user_delta, fence=None, note_invocation=false))]
    fn append_event<'py>(
        &self,
        py: Python<'py>,
        key: Key,
        expected_revision: i64,
        incarnation: Option<i64>,
        event_id: String,
        invocation_id: String,
        timestamp: f64,
        event_json: PyBackedBytes,
        session_delta: Option<PyBackedBytes>,
        app_delta: Option<PyBackedBytes>,
        user_delta: Option<PyBackedBytes>,
        fence: Option<i64>,
        note_invocation: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let Key(app_name, user_id, session_id) = key;
        let append = OwnedAppend {
            app_name,
            user_id,
            session_id,
            expected: Expected {
                revision: expected_revision,
                incarnation,
                fence,
                note_invocation: note_invocation && fence.is_some(),
            },
            event_id,
            invocation_id,
            timestamp,
            event_json: blob(event_json),
            session_delta: session_delta.map(blob),
            app_delta: app_delta.map(blob),
            user_delta: user_delta.map(blob),
        };
        call(
            py,
            &self.inner,
            |s| async move { Ok(outcome_row(s.append_event(append).await?)) },
            to_py,
        )
    }

    /// `(revision, last_update_time, incarnation, last_event_id)` or None.
    fn session_revision<'py>(&self, py: Python<'py>, key: Key) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |s| async move {
                let info = s.session_revision(key.borrow()).await?;
                Ok(info.map(|i| {
                    (
                        i.revision,
                        i.last_update_time,
                        i.incarnation,
                        i.last_event_id,
                    )
                }))
            },
            to_py,
        )
    }

    fn get_user_state<'py>(
        &self,
        py: Python<'py>,
        app_name: String,
        user_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |s| async move { Ok(bytes_opt(s.get_user_state(&app_name, &user_id).await?)) },
            to_py,
        )
    }

    /// Copies one whole session (import/restore): `events` are
    /// `(id, invocation_id, timestamp, json)`. Resolves to
    /// `(created, events_added, events_present, state_taken)`.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (key, state, create_time, update_time, events, app_state=None, user_state=None))]
    fn write_transferred_session<'py>(
        &self,
        py: Python<'py>,
        key: Key,
        state: Vec<u8>,
        create_time: f64,
        update_time: f64,
        events: Vec<(String, String, f64, Vec<u8>)>,
        app_state: Option<Vec<u8>>,
        user_state: Option<Vec<u8>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let events = events
            .into_iter()
            .map(|(id, invocation_id, timestamp, json)| TransferEvent {
                id,
                invocation_id,
                timestamp,
                json,
            })
            .collect();
        let Key(app_name, user_id, session_id) = key;
        let session = TransferSession {
            app_name,
            user_id,
            session_id,
            state,
            create_time,
            update_time,
            events,
            app_state,
            user_state,
        };
        call(
            py,
            &self.inner,
            |s| async move {
                let o = s.write_transferred_session(&session).await?;
                Ok((o.created, o.events_added, o.events_present, o.state_taken))
            },
            to_py,
        )
    }

    /// Joins (`new`) or polls the session's run queue. Resolves to `(status, interrupted)`:
    /// status "granted", "waiting", "busy", "lost" or "no_session"; `interrupted` the
    /// invocation id a claim in "interrupt" mode stopped, if any.
    fn claim_run<'py>(
        &self,
        py: Python<'py>,
        key: Key,
        run_id: i64,
        new: bool,
        mode: String,
        expiry_ms: i64,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |s| async move {
                let mode = RunMode::parse(&mode)?;
                Ok(
                    match s
                        .claim_run(key.borrow(), run_id, new, mode, expiry_ms)
                        .await?
                    {
                        Claim::Granted { interrupted } => ("granted", interrupted),
                        Claim::Waiting { interrupted } => ("waiting", interrupted),
                        Claim::Busy => ("busy", None),
                        Claim::Lost => ("lost", None),
                        Claim::NoSession => ("no_session", None),
                    },
                )
            },
            to_py,
        )
    }

    /// Resolves to `False` if the run is no longer queued (it lost the session).
    #[pyo3(signature = (key, run_id, invocation_id=None))]
    fn heartbeat_run<'py>(
        &self,
        py: Python<'py>,
        key: Key,
        run_id: i64,
        invocation_id: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |s| async move {
                s.heartbeat_run(key.borrow(), run_id, invocation_id.as_deref())
                    .await
            },
            to_py,
        )
    }

    fn release_run<'py>(
        &self,
        py: Python<'py>,
        key: Key,
        run_id: i64,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |s| async move { s.release_run(key.borrow(), run_id).await },
            to_py,
        )
    }
}
