//! Appending events: the revision-gated append statement (alone), the probe that explains a
//! refused append, and the coalesced flight (several appends in one pipelined transaction; the
//! queue that forms flights is `coalesce.rs`).

use std::sync::Arc;

use deadpool_postgres::Object;
use futures_util::future::join_all;

use super::coalesce::{Coalescer, Flight, Queued, QUEUE_LIMIT};
use super::seen::Known;
use super::{AppendOutcome, Expected, NewEvent, OwnedAppend, SessionKey, Sessions};
use crate::codec::JsonParam;
use crate::db::Retry;
use crate::error::{ErrorKind, Result};
use crate::statement::{On, Param, Step};

/// SQLSTATE of a unique violation: an append whose event id is already stored.
const UNIQUE_VIOLATION: &str = "23505";

impl Sessions {
    /// Appends an event: with `coalesce_appends` on, an append that changes app state goes
    /// through the coalescing queue (see `coalesce.rs`) and may share its commit; any other
    /// append runs alone. Must run on a tokio runtime.
    pub async fn append_event(self: &Arc<Self>, append: OwnedAppend) -> Result<AppendOutcome> {
        self.db.check_process()?;
        // With a replica, what this append teaches about the session (see `seen.rs`).
        let noted = self
            .db
            .has_replica()
            .then(|| {
                (
                    append.app_name.clone(),
                    append.user_id.clone(),
                    append.session_id.clone(),
                )
            })
            .zip(append.expected.incarnation);
        // Only appends to app state coalesce: every session of an app updates that one row,
        // so they wait for each other's commits anyway. Others run alone, in parallel.
        let outcome = if !self.db.config().options.coalesce_appends || append.app_delta.is_none() {
            self.append_alone(append.key(), append.expected, append.event())
                .await?
        } else {
            let coalescer = self.coalescer.get_or_init(|| self.start_coalescer());
            // Queued as long as a connection could take to come free — plus a failover,
            // during which the flight ahead may be waiting for a writable node.
            let options = &self.db.config().options;
            coalescer
                .append(append, options.acquire_timeout + options.failover_timeout)
                .await?
        };
        if let (
            AppendOutcome::Appended(revision) | AppendOutcome::AlreadyStored(revision),
            Some((key, incarnation)),
        ) = (outcome, noted)
        {
            let key = SessionKey {
                app_name: &key.0,
                user_id: &key.1,
                session_id: &key.2,
            };
            self.note(
                key,
                Known::At {
                    incarnation,
                    revision,
                },
            );
        }
        Ok(outcome)
    }

    /// The queue of this handle's appends; its flights hold the handle weakly (it owns them).
    fn start_coalescer(self: &Arc<Self>) -> Coalescer {
        let sessions = Arc::downgrade(self);
        let flight: Flight = Arc::new(move |batch| {
            let sessions = sessions.clone();
            Box::pin(async move {
                if let Some(sessions) = sessions.upgrade() {
                    sessions.fly(batch).await;
                } // else: dropping the batch tells its callers
            })
        });
        Coalescer::with_flight(flight, QUEUE_LIMIT)
    }

    /// Appends an event alone (no coalescing) if the session is still the `expected` one,
    /// merging the state deltas in the same statement.
    pub async fn append_alone(
        &self,
        key: SessionKey<'_>,
        expected: Expected,
        event: NewEvent<'_>,
    ) -> Result<AppendOutcome> {
        let row = self
            .db
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
                    &expected.fence,
                    &expected.note_invocation,
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
    /// the caller's run lease was taken over (fenced), or the caller is stale (behind, or
    /// holding a deleted session's earlier incarnation).
    pub(super) async fn refused_append(
        &self,
        key: SessionKey<'_>,
        expected: Expected,
        event: &NewEvent<'_>,
    ) -> Result<AppendOutcome> {
        let probe = self
            .db
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
        let fence: Option<i64> = row.get(3);
        Ok(match stored_at {
            _ if expected.incarnation.is_some_and(|held| held != incarnation) => {
                AppendOutcome::Stale(revision)
            }
            Some(seq) => AppendOutcome::AlreadyStored(seq),
            None if expected.fence.is_some_and(|held| Some(held) != fence) => AppendOutcome::Fenced,
            None => AppendOutcome::Stale(revision),
        })
    }

    /// Runs one flight of the coalescing queue and answers each of its appends.
    async fn fly(&self, batch: Vec<Queued>) {
        if batch.len() > 1 {
            if let Ok(rows) = self.append_together(&batch).await {
                for (queued, row) in batch.into_iter().zip(rows) {
                    let outcome = match row {
                        Some(revision) => Ok(AppendOutcome::Appended(revision)),
                        None => {
                            let append = &queued.append;
                            self.refused_append(append.key(), append.expected, &append.event())
                                .await
                        }
                    };
                    queued.answer(outcome);
                }
                return;
            }
        }
        // One append, or a flight that failed as a whole: each alone, concurrently.
        join_all(batch.into_iter().map(|queued| async move {
            let append = &queued.append;
            let outcome = self
                .append_alone(append.key(), append.expected, append.event())
                .await;
            queued.answer(outcome);
        }))
        .await;
    }
}

/// The parameters of `SessionSql::append` for one append.
struct AppendParams<'a> {
    append: &'a OwnedAppend,
    event: NewEvent<'a>,
    session_delta: Option<JsonParam<'a>>,
    event_json: JsonParam<'a>,
    app_delta: Option<JsonParam<'a>>,
    user_delta: Option<JsonParam<'a>>,
}

impl<'a> AppendParams<'a> {
    fn of(append: &'a OwnedAppend) -> Self {
        let event = append.event();
        AppendParams {
            append,
            event,
            session_delta: event.session_delta.map(JsonParam),
            event_json: JsonParam(event.event_json),
            app_delta: event.app_delta.map(JsonParam),
            user_delta: event.user_delta.map(JsonParam),
        }
    }

    fn refs(&self) -> [&dyn Param; 14] {
        let a = self.append;
        [
            &a.app_name,
            &a.user_id,
            &a.session_id,
            &a.expected.revision,
            &self.session_delta,
            &self.event.timestamp,
            &self.event.event_id,
            &self.event.invocation_id,
            &self.event_json,
            &self.app_delta,
            &self.user_delta,
            &a.expected.incarnation,
            &a.expected.fence,
            &a.expected.note_invocation,
        ]
    }
}

impl Sessions {
    /// Runs a flight in one transaction; the revision each append produced, or `None` where
    /// the session's revision did not match (or the session is gone). `Err` means nothing of
    /// the flight was committed (or, for a dropped connection, that this is unknown).
    async fn append_together(&self, batch: &[Queued]) -> Result<Vec<Option<i64>>> {
        let conn = self.db.connection().await?;
        let result = self.pipeline(&conn, batch).await;
        if let Err(err) = &result {
            if err.kind == ErrorKind::Connection {
                let _ = Object::take(conn);
            }
        }
        result
    }

    async fn pipeline(&self, conn: &Object, batch: &[Queued]) -> Result<Vec<Option<i64>>> {
        let sql = &self.sql;
        let on = On::from(conn);
        let column = |pick: fn(&OwnedAppend) -> &str, with: fn(&OwnedAppend) -> bool| {
            batch
                .iter()
                .map(|q| &q.append)
                .filter(|a| with(a))
                .map(pick)
                .collect::<Vec<&str>>()
        };
        let session_apps = column(|a| a.app_name.as_str(), |_| true);
        let session_users = column(|a| a.user_id.as_str(), |_| true);
        let session_ids = column(|a| a.session_id.as_str(), |_| true);
        let app_names = column(|a| a.app_name.as_str(), |a| a.app_delta.is_some());
        let user_apps = column(|a| a.app_name.as_str(), |a| a.user_delta.is_some());
        let user_ids = column(|a| a.user_id.as_str(), |a| a.user_delta.is_some());

        let params: Vec<AppendParams<'_>> =
            batch.iter().map(|q| AppendParams::of(&q.append)).collect();

        // Made ready before the pipeline (prepared, in cached mode: a cache hit after the
        // first flight on a connection), so that each step below is sent on its first poll.
        let statements = self.db.statements();
        let append = statements.ready(on, &sql.append, &params[0].refs()).await?;
        let lock_sessions = statements
            .ready(
                on,
                &sql.lock_sessions,
                &[&session_apps, &session_users, &session_ids],
            )
            .await?;
        let lock_apps = statements
            .ready(on, &sql.lock_app_states, &[&app_names])
            .await?;
        let lock_users = statements
            .ready(on, &sql.lock_user_states, &[&user_apps, &user_ids])
            .await?;

        let mut steps: Vec<Step<'_>> = vec![on.simple("BEGIN")];
        steps.push(lock_sessions.step(on, vec![&session_apps, &session_users, &session_ids]));
        if !app_names.is_empty() {
            steps.push(lock_apps.step(on, vec![&app_names]));
        }
        if !user_ids.is_empty() {
            steps.push(lock_users.step(on, vec![&user_apps, &user_ids]));
        }
        let first_append = steps.len();
        for args in &params {
            steps.push(append.step(on, args.refs().to_vec()));
        }
        steps.push(on.simple("COMMIT"));
        let commit_step = steps.len() - 1;

        let mut results = statements.pipeline(steps).await?;
        // After an error PostgreSQL fails the rest and answers COMMIT with ROLLBACK, so any
        // error means nothing was committed (or, for a connection lost during COMMIT, that
        // this is unknown — the appends re-run alone then recognise their own event ids).
        if let Some(position) = results.iter().position(|r| r.is_err()) {
            return Err(results.swap_remove(position).unwrap_err());
        }
        Ok(results
            .drain(first_append..commit_step)
            .map(|rows| {
                rows.ok()
                    .and_then(|rows| rows.first().map(|row| row.get::<_, i64>(0)))
            })
            .collect())
    }
}
