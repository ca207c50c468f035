//! Reading sessions: one statement, one snapshot each (see `sql.rs`: `read_sql`), decoded here.

use super::{Json, RevisionInfo, SessionData, SessionKey, SessionList, SessionSummary, Sessions};
use crate::codec::JsonText;
use crate::db::Retry;
use crate::error::Result;
use crate::statement::Param;

pub(super) fn json_opt(row: &tokio_postgres::Row, idx: usize) -> Option<Json> {
    row.get::<_, Option<JsonText>>(idx).map(|t| t.0.to_vec())
}

/// Decodes the rows of `SessionSql::get_*` (see `sql::read_sql`).
fn session_from_rows(rows: &[tokio_postgres::Row]) -> Option<SessionData> {
    let mut data: Option<SessionData> = None;
    let (mut app_state, mut user_state) = (None, None);
    let mut events = Vec::new();
    let mut unsequenced = false;
    let mut anchor = None;
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
                    head: None,
                    anchor: None,
                })
            }
            1 => app_state = json_opt(row, 1),
            2 => user_state = json_opt(row, 1),
            3 => {
                unsequenced |= row.get::<_, Option<i64>>(2).is_none();
                // An event row with NULL event_data (allowed by ADK's schema, never written by
                // ADK v1 or by us) has nothing to restore.
                events.extend(json_opt(row, 1));
            }
            _ => anchor = row.get(5),
        }
    }
    data.map(|mut d| {
        // The id of the event at the session's revision, if read (usually the last row): only
        // that one is decoded.
        d.head = rows
            .iter()
            .rev()
            .find(|row| {
                row.get::<_, i16>(0) == 3 && row.get::<_, Option<i64>>(2) == Some(d.revision)
            })
            .map(|row| row.get(5));
        d.app_state = app_state;
        d.user_state = user_state;
        d.events = events;
        d.unsequenced = unsequenced;
        d.anchor = anchor;
        d
    })
}

/// Decodes the rows of `SessionSql::list_*` (see `sql::list_sql`).
fn list_from_rows(rows: &[tokio_postgres::Row]) -> SessionList {
    let mut list = SessionList::default();
    for row in rows {
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
    list
}

impl Sessions {
    /// Reads a session with the selected events; `None` if it does not exist.
    pub async fn get_session(
        &self,
        key: SessionKey<'_>,
        after_timestamp: Option<f64>,
        num_recent_events: Option<i64>,
    ) -> Result<Option<SessionData>> {
        let k: [&dyn Param; 3] = [&key.app_name, &key.user_id, &key.session_id];
        // A statement per filter shape, so each prepared plan can use the index fully.
        match (after_timestamp, num_recent_events) {
            (None, None) => self.read_session(key, &self.sql.get_all, &k).await,
            (None, Some(n)) => {
                self.read_session(key, &self.sql.get_recent, &[k[0], k[1], k[2], &n])
                    .await
            }
            (Some(after), n) => {
                let params: [&dyn Param; 5] = [k[0], k[1], k[2], &after, &n];
                self.read_session(key, &self.sql.get_after, &params).await
            }
        }
    }

    /// Reads a session with only the events stored after `revision` (and any event without a
    /// revision): the cheap refresh of a session this process already holds.
    pub async fn get_session_since(
        &self,
        key: SessionKey<'_>,
        revision: i64,
    ) -> Result<Option<SessionData>> {
        let params: [&dyn Param; 4] = [&key.app_name, &key.user_id, &key.session_id, &revision];
        self.read_session(key, &self.sql.get_since, &params).await
    }

    /// One session read: on the replica when there is one and it shows everything this process
    /// knows of the session (see `seen.rs`), else on the primary.
    async fn read_session(
        &self,
        key: SessionKey<'_>,
        sql: &str,
        params: &[&dyn Param],
    ) -> Result<Option<SessionData>> {
        if let Some((rows, _)) = self.db.read_on_replica(sql, params, false).await? {
            let data = session_from_rows(&rows);
            if self.replica_shows(key, data.as_ref()) {
                self.note_read(key, data.as_ref());
                return Ok(data);
            }
        }
        let data = session_from_rows(&self.db.fetch(sql, params, Retry::Yes).await?);
        self.note_read(key, data.as_ref());
        Ok(data)
    }

    /// Lists the sessions of one user, or of every user of the app when `user_id` is `None`:
    /// on the replica when it shows every listed session this process knows, else on the
    /// primary.
    pub async fn list_sessions(
        &self,
        app_name: &str,
        user_id: Option<&str>,
    ) -> Result<SessionList> {
        let (sql, params): (&str, Vec<&dyn Param>) = match &user_id {
            Some(user) => (&self.sql.list_user, vec![&app_name, user]),
            None => (&self.sql.list_app, vec![&app_name]),
        };
        if let Some((rows, _)) = self.db.read_on_replica(sql, &params, false).await? {
            let list = list_from_rows(&rows);
            if self.replica_lists(app_name, user_id, &list) {
                self.note_listed(app_name, &list);
                return Ok(list);
            }
        }
        let list = list_from_rows(&self.db.fetch(sql, &params, Retry::Yes).await?);
        self.note_listed(app_name, &list);
        Ok(list)
    }

    /// One page of `list_sessions`: up to `limit` sessions after `after` (last update, user
    /// id, session id), oldest update first, from the primary.
    pub async fn list_sessions_page(
        &self,
        app_name: &str,
        user_id: Option<&str>,
        after: Option<(f64, &str, &str)>,
        limit: i64,
    ) -> Result<SessionList> {
        let sql = match user_id {
            Some(_) => &self.sql.list_page_user,
            None => &self.sql.list_page_app,
        };
        let (ts, user, id) = match after {
            Some((ts, user, id)) => (Some(ts), Some(user), Some(id)),
            None => (None, None, None),
        };
        let params: [&dyn Param; 6] = [&app_name, &user_id, &ts, &user, &id, &limit];
        let list = list_from_rows(&self.db.fetch(sql, &params, Retry::Yes).await?);
        self.note_listed(app_name, &list);
        Ok(list)
    }

    /// The stored revision of a session, for session objects that carry no marker.
    pub async fn session_revision(&self, key: SessionKey<'_>) -> Result<Option<RevisionInfo>> {
        let row = self
            .db
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
            .db
            .fetch_opt(&self.sql.get_user_state, &[&app_name, &user_id], Retry::Yes)
            .await?;
        Ok(row.and_then(|r| json_opt(&r, 0)))
    }
}
