//! Bulk writes for `adk-postgres import` and `restore`: one whole session per transaction.
//!
//! A session arrives with its final state and all its events (ids, timestamps and JSON exactly
//! as the source had them). Re-running is safe: events already present (by id) are skipped, so
//! a second import copies nothing and a later one copies only what the source gained since.
//! New events get the next `seq` values and the session's `revision` grows by their number —
//! exactly what appending them would have done — so warm caches in running processes fetch
//! them. The session's state follows the source only while the source is the newer side (its
//! last update is later than the stored one); once the target has moved on, its state stays.
//! App and user state are merged with the target's keys winning over the source's.

use super::Sessions;
use crate::codec::JsonParam;
use crate::error::Result;
use crate::ident::quote_ident;

/// An event to copy, as stored by the source.
#[derive(Debug, Clone)]
pub struct TransferEvent {
    pub id: String,
    pub invocation_id: String,
    pub timestamp: f64,
    pub json: Vec<u8>,
}

/// A session to copy, with its final (session-scoped) state and every event.
#[derive(Debug, Clone)]
pub struct TransferSession {
    pub app_name: String,
    pub user_id: String,
    pub session_id: String,
    pub state: Vec<u8>,
    pub create_time: f64,
    pub update_time: f64,
    pub events: Vec<TransferEvent>,
    /// The app's and the user's state as the source has them (merged in, target wins).
    pub app_state: Option<Vec<u8>>,
    pub user_state: Option<Vec<u8>>,
}

/// What writing one session did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferOutcome {
    /// The session did not exist before.
    pub created: bool,
    /// Events written now.
    pub events_added: i64,
    /// Of the session's events, how many the target holds afterwards (the count check).
    pub events_present: i64,
    /// The session's state was taken from the source.
    pub state_taken: bool,
}

/// Statement text for the bulk writes, per schema.
#[derive(Debug, Clone)]
pub struct TransferSql {
    insert_session: String,
    lock_session: String,
    existing_events: String,
    insert_events: String,
    update_session: String,
    merge_app_state: String,
    merge_user_state: String,
}

impl TransferSql {
    pub fn new(schema: &str) -> Self {
        let s = quote_ident(schema);
        let key = "app_name = $1 AND user_id = $2";
        let utc = |expr: &str| format!("(to_timestamp({expr}) AT TIME ZONE 'UTC')");
        TransferSql {
            insert_session: format!(
                "INSERT INTO {s}.sessions
                    (app_name, user_id, id, state, create_time, update_time, revision, update_ts)
                 VALUES ($1, $2, $3, $4::jsonb, {c}, {u}, $7, $6::float8)
                 ON CONFLICT DO NOTHING
                 RETURNING 1",
                c = utc("$5::float8"),
                u = utc("$6::float8"),
            ),
            lock_session: format!(
                "SELECT revision, COALESCE(update_ts, extract(epoch FROM update_time)::float8)
                   FROM {s}.sessions WHERE {key} AND id = $3
                    FOR UPDATE"
            ),
            existing_events: format!(
                "SELECT id FROM {s}.events
                  WHERE {key} AND session_id = $3 AND id = ANY($4::text[])"
            ),
            insert_events: format!(
                "INSERT INTO {s}.events
                    (id, app_name, user_id, session_id, invocation_id, \"timestamp\", event_data,
                     seq, event_ts)
                 SELECT e.id, $1, $2, $3, e.inv, {t}, e.data, e.seq, e.ts
                   FROM unnest($4::text[], $5::text[], $6::float8[], $7::jsonb[], $8::int8[])
                        AS e(id, inv, ts, data, seq)
                 ON CONFLICT DO NOTHING",
                t = utc("e.ts"),
            ),
            update_session: format!(
                "UPDATE {s}.sessions
                    SET revision = revision + $4,
                        state = CASE WHEN $5 THEN $6::jsonb ELSE state END,
                        update_time = CASE WHEN $5 THEN {u} ELSE update_time END,
                        update_ts = CASE WHEN $5 THEN $7::float8 ELSE update_ts END
                  WHERE {key} AND id = $3",
                u = utc("$7::float8"),
            ),
            merge_app_state: format!(
                "INSERT INTO {s}.app_states AS t (app_name, state, update_time)
                 VALUES ($1, $2::jsonb, now() AT TIME ZONE 'UTC')
                 ON CONFLICT (app_name) DO UPDATE SET state = EXCLUDED.state || t.state"
            ),
            merge_user_state: format!(
                "INSERT INTO {s}.user_states AS t (app_name, user_id, state, update_time)
                 VALUES ($1, $2, $3::jsonb, now() AT TIME ZONE 'UTC')
                 ON CONFLICT (app_name, user_id) DO UPDATE SET state = EXCLUDED.state || t.state"
            ),
        }
    }
}

impl Sessions {
    /// Writes one session (see the module comment) in one transaction.
    pub async fn write_transferred_session(
        &self,
        session: &TransferSession,
    ) -> Result<TransferOutcome> {
        let sql = TransferSql::new(self.db.schema());
        let st = self.db.statements();
        let mut conn = self.db.connection().await?;
        let tx = conn.transaction().await?;
        let (app, user, id) = (&session.app_name, &session.user_id, &session.session_id);

        // The source may list an event twice; the first occurrence counts.
        let mut seen = std::collections::HashSet::new();
        let events: Vec<&TransferEvent> = session
            .events
            .iter()
            .filter(|e| seen.insert(e.id.as_str()))
            .collect();
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();

        let created = !st
            .query(
                &tx,
                &sql.insert_session,
                &[
                    app,
                    user,
                    id,
                    &JsonParam(&session.state),
                    &session.create_time,
                    &session.update_time,
                    &(events.len() as i64),
                ],
            )
            .await?
            .is_empty();
        let (revision, new_events, state_taken) = if created {
            (0i64, events, true)
        } else {
            let row = st
                .query_one(&tx, &sql.lock_session, &[app, user, id])
                .await?;
            let revision: i64 = row.get(0);
            let stored_update: f64 = row.get(1);
            let present: std::collections::HashSet<String> = st
                .query(&tx, &sql.existing_events, &[app, user, id, &ids])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let new_events: Vec<&TransferEvent> = events
                .into_iter()
                .filter(|e| !present.contains(&e.id))
                .collect();
            (revision, new_events, session.update_time > stored_update)
        };

        if !new_events.is_empty() {
            let new_ids: Vec<&str> = new_events.iter().map(|e| e.id.as_str()).collect();
            let invocations: Vec<&str> = new_events
                .iter()
                .map(|e| e.invocation_id.as_str())
                .collect();
            let times: Vec<f64> = new_events.iter().map(|e| e.timestamp).collect();
            let bodies: Vec<JsonParam<'_>> =
                new_events.iter().map(|e| JsonParam(&e.json)).collect();
            let seqs: Vec<i64> = (1..=new_events.len() as i64)
                .map(|n| revision + n)
                .collect();
            st.execute(
                &tx,
                &sql.insert_events,
                &[
                    app,
                    user,
                    id,
                    &new_ids,
                    &invocations,
                    &times,
                    &bodies,
                    &seqs,
                ],
            )
            .await?;
        }
        if !created {
            // Each new event is one revision, as if appended; a state change alone is one more.
            let bump = new_events.len() as i64 + i64::from(state_taken && new_events.is_empty());
            if bump > 0 {
                st.execute(
                    &tx,
                    &sql.update_session,
                    &[
                        app,
                        user,
                        id,
                        &bump,
                        &state_taken,
                        &JsonParam(&session.state),
                        &session.update_time,
                    ],
                )
                .await?;
            }
        }
        if let Some(state) = &session.app_state {
            st.execute(&tx, &sql.merge_app_state, &[app, &JsonParam(state)])
                .await?;
        }
        if let Some(state) = &session.user_state {
            st.execute(&tx, &sql.merge_user_state, &[app, user, &JsonParam(state)])
                .await?;
        }
        let present: i64 = st
            .query(&tx, &sql.existing_events, &[app, user, id, &ids])
            .await?
            .len() as i64;
        tx.commit().await?;
        Ok(TransferOutcome {
            created,
            events_added: new_events.len() as i64,
            events_present: present,
            state_taken,
        })
    }
}
