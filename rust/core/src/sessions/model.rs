//! The values the session operations take and return. JSON travels as bytes both ways (see
//! `codec.rs`); ADK semantics such as prefix splitting and temp-state trimming stay in Python,
//! which has ADK's types.

/// Identifies a session: ADK's composite primary key.
#[derive(Debug, Clone, Copy)]
pub struct SessionKey<'a> {
    pub app_name: &'a str,
    pub user_id: &'a str,
    pub session_id: &'a str,
}

/// JSON text owned by a result.
pub type Json = Vec<u8>;

/// What `create_session` stored. `None` from [`super::Sessions::create_session`] means the id
/// is taken.
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
    /// The id of the event stored at `revision`, when it is among those returned: what a later
    /// refresh checks the history against (see `anchor`).
    pub head: Option<String>,
    /// `get_session_since(revision = r)` only: the id of the event stored at revision r now.
    pub anchor: Option<String>,
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
/// the incarnation (see `V6__session_incarnation.sql`), and the run lease it holds, if any
/// (see `V8__session_run_leases.sql`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub revision: i64,
    pub incarnation: Option<i64>,
    /// The caller's run id when it runs under the session's run lease: the append is refused
    /// once another run was granted the session.
    pub fence: Option<i64>,
    /// With `fence`: this is the run's first event; record its invocation id as the run's (so
    /// a run that interrupts this one can mark what it stopped), in the append's statement.
    pub note_invocation: bool,
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
    /// The caller's run lease was taken over by another run: nothing was written.
    Fenced,
}

/// The stored revision marker of a session, for callers without one.
#[derive(Debug, Clone, PartialEq)]
pub struct RevisionInfo {
    pub revision: i64,
    pub last_update_time: f64,
    pub incarnation: i64,
    pub last_event_id: Option<String>,
}

/// Bytes owned by an append in flight (the Python layer passes its `bytes` without copying).
pub type Blob = Box<dyn AsRef<[u8]> + Send + Sync>;

/// An append with everything it needs owned, so it can wait in the queue.
pub struct OwnedAppend {
    pub app_name: String,
    pub user_id: String,
    pub session_id: String,
    pub expected: Expected,
    pub event_id: String,
    pub invocation_id: String,
    pub timestamp: f64,
    pub event_json: Blob,
    pub session_delta: Option<Blob>,
    pub app_delta: Option<Blob>,
    pub user_delta: Option<Blob>,
}

impl OwnedAppend {
    pub fn key(&self) -> SessionKey<'_> {
        SessionKey {
            app_name: &self.app_name,
            user_id: &self.user_id,
            session_id: &self.session_id,
        }
    }

    pub fn event(&self) -> NewEvent<'_> {
        NewEvent {
            event_id: &self.event_id,
            invocation_id: &self.invocation_id,
            timestamp: self.timestamp,
            event_json: (*self.event_json).as_ref(),
            session_delta: self.session_delta.as_deref().map(|b| b.as_ref()),
            app_delta: self.app_delta.as_deref().map(|b| b.as_ref()),
            user_delta: self.user_delta.as_deref().map(|b| b.as_ref()),
        }
    }
}
