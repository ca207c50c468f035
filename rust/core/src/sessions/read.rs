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
        let rows = match (after_timestamp, num_recent_events) {
            (None, None) => self.db.fetch(&self.sql.get_all, &k, Retry::Yes).await?,
            (None, Some(n)) => {
                self.db
                    .fetch(&self.sql.get_recent, &[k[0], k[1], k[2], &n], Retry::Yes)
                    .await?
            }
            (Some(after), n) => {
                self.db
                    .fetch(
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
            .db
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
                self.db
                    .fetch(&self.sql.list_user, &[&app_name, &user], Retry::Yes)
                    .await?
            }
            None => {
                self.db
                    .fetch(&self.sql.list_app, &[&app_name], Retry::Yes)
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
