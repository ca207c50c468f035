//! Session operations on a [`Store`]: the SQL in `sql.rs`, the row decoding here.
//!
//! JSON travels as bytes both ways (see `codec.rs`); ADK semantics such as prefix splitting
//! and temp-state trimming stay in Python, which has ADK's types.

use crate::codec::{JsonParam, JsonText};
use crate::error::Result;
use crate::sql::SessionSql;
use crate::statement::Param;
use crate::store::{Retry, Store};

/// Identifies a session: ADK's composite primary key.
#[derive(Debug, Clone, Copy)]
pub struct SessionKey<'a> {
    pub app_name: &'a str,
    pub user_id: &'a str,
    pub session_id: &'a str,
}

/// SQLSTATE of a unique violation: an append whose event id is already stored.
const UNIQUE_VIOLATION: &str = "23505";

/// JSON text owned by a result.
pub type Json = Vec<u8>;

/// What `create_session` stored. `None` from [`Store::create_session`] means the id is taken.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub revision: i64,
    pub incarnation: i64,
    pub app_state: Option<Json>,
    pub user_state: Option<Json>,
}

/// A session as read by `get_session`, in one snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionData {
    pub state: Json,
    pub revision: i64,
    pub last_update_time: f64,
    /// Tells a session from one deleted and re-created under the same id (whose revisions
    /// start again at 0).
    pub incarnation: i64,
    /// Some returned event has no revision (written by ADK's own service).
    pub unsequenced: bool,
    pub app_state: Option<Json>,
    pub user_state: Option<Json>,
    /// Event JSON, oldest first.
    pub events: Vec<Json>,
}

/// One row of `list_sessions`.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSummary {
    pub user_id: String,
    pub session_id: String,
    pub state: Json,
    pub revision: i64,
    pub last_update_time: f64,
    pub incarnation: i64,
}

/// The result of `list_sessions`: app state, each listed user's state, the sessions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SessionList {
    pub app_state: Option<Json>,
    pub user_states: Vec<(String, Json)>,
    pub sessions: Vec<SessionSummary>,
}

/// An event to append and the state deltas that go with it (already split by prefix).
#[derive(Debug, Clone, Copy)]
pub struct NewEvent<'a> {
    pub event_id: &'a str,
    pub invocation_id: &'a str,
    pub timestamp: f64,
    pub event_json: &'a [u8],
    pub session_delta: Option<&'a [u8]>,
    pub app_delta: Option<&'a [u8]>,
    pub user_delta: Option<&'a [u8]>,
}

/// The session an append expects to extend: the revision the caller holds and, when known,
/// the incarnation (see `V6__session_incarnation.sql`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub revision: i64,
    pub incarnation: Option<i64>,
}

/// How an append ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored; the session is now at this revision.
    Appended(i64),
    /// The event, with the same content, was already stored by an earlier attempt that
    /// committed (a retry after a dropped connection) at this revision. Later appends by others
    /// may follow it: the caller's copy is then stale for its next append, not for this one.
    AlreadyStored(i64),
    /// The caller's revision is behind the stored one, or the session it holds was deleted and
    /// re-created under the same id: nothing was written. The stored revision.
    Stale(i64),
    /// No such session.
    SessionNotFound,
}

/// The stored revision marker of a session, for callers without one.
#[derive(Debug, Clone, PartialEq)]
pub struct RevisionInfo {
    pub revision: i64,
    pub last_update_time: f64,
    pub incarnation: i64,
    pub last_event_id: Option<String>,
}

fn json_opt(row: &tokio_postgres::Row, idx: usize) -> Option<Json> {
    row.get::<_, Option<JsonText>>(idx).map(|t| t.0.to_vec())
}

/// Decodes the rows of `SessionSql::get` / `get_since` (see `sql::read_sql`).
fn session_from_rows(rows: &[tokio_postgres::Row]) -> Option<SessionData> {
    let mut data: Option<SessionData> = None;
    let (mut app_state, mut user_state) = (None, None);
    let mut events = Vec::new();
    let mut unsequenced = false;
    for row in rows {
        let kind: i16 = row.get(0);
        match kind {
            0 => {
                data = Some(SessionData {
                    state: json_opt(row, 1).unwrap_or_else(|| b"{}".to_vec()),
                    revision: row.get(2),
                    last_update_time: row.get(3),
                    incarnation: row
                        .get::<_, Option<String>>(5)
                        .and_then(|text| text.parse().ok())
                        .unwrap_or_default(),
                    unsequenced: false,
                    app_state: None,
                    user_state: None,
                    events: Vec::new(),
                })
            }
            1 => app_state = json_opt(row, 1),
            2 => user_state = json_opt(row, 1),
            _ => {
                unsequenced |= row.get::<_, Option<i64>>(2).is_none();
                // An event row with NULL event_data (allowed by ADK's schema, never written by
                // ADK v1 or by us) has nothing to restore.
                events.extend(json_opt(row, 1));
            }
        }
    }
    data.map(|mut d| {
        d.app_state = app_state;
        d.user_state = user_state;
        d.events = events;
        d.unsequenced = unsequenced;
        d
    })
}

impl Store {
    /// Creates a session with its initial state; `None` if the id already exists.
    pub async fn create_session(
        &self,
        key: SessionKey<'_>,
        state: &[u8],
        app_delta: Option<&[u8]>,
        user_delta: Option<&[u8]>,
        create_time: f64,
    ) -> Result<Option<Created>> {
        let sql =
            &self.sql.create[SessionSql::create_index(app_delta.is_some(), user_delta.is_some())];
        let empty = JsonParam(b"{}");
        let app = app_delta.map_or(empty, JsonParam);
        let user = user_delta.map_or(empty, JsonParam);
        // Not repeated on a connection failure: a create that committed would look like a
        // duplicate id the second time.
        let row = self
            .fetch_opt(
                sql,
                &[
                    &key.app_name,
                    &key.user_id,
                    &key.session_id,
                    &JsonParam(state),
                    &create_time,
                    &app,
                    &user,
                ],
                Retry::No,
            )
            .await?
            .expect("a SELECT without FROM returns one row");
        let revision: Option<i64> = row.get(0);
        Ok(revision.map(|revision| Created {
            revision,
            incarnation: row.get(1),
            app_state: json_opt(&row, 2),
            user_state: json_opt(&row, 3),
        }))
    }

    /// Reads a session with the selected events; `None` if it does not exist.
    pub async fn get_session(
        &self,
        key: SessionKey<'_>,
        after_timestamp: Option<f64>,
        num_recent_events: Option<i64>,
    ) -> Result<Option<SessionData>> {
        let k: [&dyn Param; 3] = [&key.app_name, &key.user_id, &key.session_id];
        // A statement per filter shape, so each prepared plan can use the index fully.
        let rows = match (after_timestamp, num_recent_events) {
            (None, None) => self.fetch(&self.sql.get_all, &k, Retry::Yes).await?,
            (None, Some(n)) => {
                self.fetch(&self.sql.get_recent, &[k[0], k[1], k[2], &n], Retry::Yes)
                    .await?
            }
            (Some(after), n) => {
                self.fetch(
                    &self.sql.get_after,
                    &[k[0], k[1], k[2], &after, &n],
                    Retry::Yes,
                )
                .await?
            }
        };
        Ok(session_from_rows(&rows))
    }

    /// Reads a session with only the events stored after `revision` (and any event without a
    /// revision): the cheap refresh of a session this process already holds.
    pub async fn get_session_since(
        &self,
        key: SessionKey<'_>,
        revision: i64,
    ) -> Result<Option<SessionData>> {
        let rows = self
            .fetch(
                &self.sql.get_since,
                &[&key.app_name, &key.user_id, &key.session_id, &revision],
                Retry::Yes,
            )
            .await?;
        Ok(session_from_rows(&rows))
    }

    /// Lists the sessions of one user, or of every user of the app when `user_id` is `None`.
    pub async fn list_sessions(
        &self,
        app_name: &str,
        user_id: Option<&str>,
    ) -> Result<SessionList> {
        let rows = match user_id {
            Some(user) => {
                self.fetch(&self.sql.list_user, &[&app_name, &user], Retry::Yes)
                    .await?
            }
            None => {
                self.fetch(&self.sql.list_app, &[&app_name], Retry::Yes)
                    .await?
            }
        };
        let mut list = SessionList::default();
        for row in &rows {
            let kind: i16 = row.get(0);
            match kind {
                0 => list.app_state = json_opt(row, 3),
                1 => list
                    .user_states
                    .push((row.get(1), json_opt(row, 3).unwrap_or_default())),
                _ => list.sessions.push(SessionSummary {
                    user_id: row.get(1),
                    session_id: row.get(2),
                    state: json_opt(row, 3).unwrap_or_else(|| b"{}".to_vec()),
                    revision: row.get(4),
                    last_update_time: row.get(5),
                    incarnation: row.get(7),
                }),
            }
        }
        Ok(list)
    }

    /// Deletes a session and its events; deleting a missing session is not an error.
    pub async fn delete_session(&self, key: SessionKey<'_>) -> Result<bool> {
        let deleted = self
            .fetch(
                &self.sql.delete,
                &[&key.app_name, &key.user_id, &key.session_id],
                Retry::Yes,
            )
            .await?;
        Ok(!deleted.is_empty())
    }

    /// Appends an event if the session is still the `expected` one, merging the state deltas
    /// in the same statement.
    pub async fn append_event(
        &self,
        key: SessionKey<'_>,
        expected: Expected,
        event: NewEvent<'_>,
    ) -> Result<AppendOutcome> {
        let row = self
            .fetch_opt(
                &self.sql.append,
                &[
                    &key.app_name,
                    &key.user_id,
                    &key.session_id,
                    &expected.revision,
                    &event.session_delta.map(JsonParam),
                    &event.timestamp,
                    &event.event_id,
                    &event.invocation_id,
                    &JsonParam(event.event_json),
                    &event.app_delta.map(JsonParam),
                    &event.user_delta.map(JsonParam),
                    &expected.incarnation,
                ],
                Retry::Yes,
            )
            .await;
        match row {
            Ok(Some(row)) => Ok(AppendOutcome::Appended(row.get(0))),
            Ok(None) => self.refused_append(key, expected, &event).await,
            // The event id is taken in this session: stored by an earlier attempt of this
            // append (success) or a different event under the same id (the error stands).
            Err(err) if err.sqlstate.as_deref() == Some(UNIQUE_VIOLATION) => {
                match self.refused_append(key, expected, &event).await? {
                    stored @ AppendOutcome::AlreadyStored(_) => Ok(stored),
                    _ => Err(err),
                }
            }
            Err(err) => Err(err),
        }
    }

    /// Why an append found no session at the expected revision: the session is gone, the
    /// event is already stored (an earlier attempt committed, whatever was appended after it),
    /// or the caller is stale (behind, or holding a deleted session's earlier incarnation).
    pub(crate) async fn refused_append(
        &self,
        key: SessionKey<'_>,
        expected: Expected,
        event: &NewEvent<'_>,
    ) -> Result<AppendOutcome> {
        let probe = self
            .fetch_opt(
                &self.sql.append_probe,
                &[
                    &key.app_name,
                    &key.user_id,
                    &key.session_id,
                    &event.event_id,
                    &JsonParam(event.event_json),
                ],
                Retry::Yes,
            )
            .await?;
        let Some(row) = probe else {
            return Ok(AppendOutcome::SessionNotFound);
        };
        let revision: i64 = row.get(0);
        let incarnation: i64 = row.get(1);
        let stored_at: Option<i64> = row.get(2);
        Ok(match stored_at {
            _ if expected.incarnation.is_some_and(|held| held != incarnation) => {
                AppendOutcome::Stale(revision)
            }
            Some(seq) => AppendOutcome::AlreadyStored(seq),
            None => AppendOutcome::Stale(revision),
        })
    }

    /// The stored revision of a session, for session objects that carry no marker.
    pub async fn session_revision(&self, key: SessionKey<'_>) -> Result<Option<RevisionInfo>> {
        let row = self
            .fetch_opt(
                &self.sql.revision_probe,
                &[&key.app_name, &key.user_id, &key.session_id],
                Retry::Yes,
            )
            .await?;
        Ok(row.map(|row| RevisionInfo {
            revision: row.get(0),
            last_update_time: row.get(1),
            incarnation: row.get(2),
            last_event_id: row.get(3),
        }))
    }

    /// The user-scoped state of `(app_name, user_id)`, `None` if none was stored.
    pub async fn get_user_state(&self, app_name: &str, user_id: &str) -> Result<Option<Json>> {
        let row = self
            .fetch_opt(&self.sql.get_user_state, &[&app_name, &user_id], Retry::Yes)
            .await?;
        Ok(row.and_then(|r| json_opt(&r, 0)))
    }
}
