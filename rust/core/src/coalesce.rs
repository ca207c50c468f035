//! Commit coalescing for appends that touch app state.
//!
//! Every append that carries an `app:` delta updates its app's single `app_states` row, and
//! PostgreSQL holds that row's lock until commit: concurrent appends of one app, whatever their
//! sessions, commit one after another, one WAL flush each (measured on the 2-core machine with
//! 32 appenders: about 0.5k appends/s with an `app:` delta against 2k/s without). So such
//! appends go through a per-store queue: while a *flight* of an app is in the air, that app's
//! new appends wait; when it lands, all of them (up to [`MAX_BATCH`]) leave together in one
//! transaction on one connection, pipelined in one round trip:
//!
//! ```text
//! BEGIN; lock the flight's session rows, then app rows, then user rows (each sorted);
//! append statement × n; COMMIT
//! ```
//!
//! Durability is unchanged — no caller hears "appended" before its COMMIT returned — and so
//! is each append's meaning: every statement is the same revision-gated append as alone.
//! Taking all locks up front, in a fixed order (sessions, apps, users; each sorted), keeps
//! flights from deadlocking with each other and with single appends, which lock in the same
//! category order. An append whose app has no flight in the air leaves at once, alone, as the
//! plain single statement, so a lone caller (concurrency 1) sees no change. If anything in a
//! flight fails (a NUL character in one event, a deadlock with a foreign writer, a dropped
//! connection), PostgreSQL turns the COMMIT into a ROLLBACK and each append of the flight runs
//! again alone, so an error reaches only its own caller; appends are idempotent by event id,
//! so a repeat after an unknown commit outcome is recognised.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Weak;

use deadpool_postgres::Object;
use futures_util::future::join_all;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::codec::JsonParam;
use crate::error::{ErrorKind, Result, StoreError};
use crate::sessions::{AppendOutcome, NewEvent, SessionKey};
use crate::store::Store;

/// Most appends in one flight. `join_all` polls up to 30 futures in order on its first poll,
/// which is what sends the pipelined statements in order: 24 appends + BEGIN, three lock
/// statements and COMMIT stay under that.
pub const MAX_BATCH: usize = 24;

/// Bytes owned by an append in flight (the Python layer passes its `bytes` without copying).
pub type Blob = Box<dyn AsRef<[u8]> + Send + Sync>;

/// An append with everything it needs owned, so it can wait in the queue.
pub struct OwnedAppend {
    pub app_name: String,
    pub user_id: String,
    pub session_id: String,
    pub expected_revision: i64,
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

struct Queued {
    append: OwnedAppend,
    reply: oneshot::Sender<Result<AppendOutcome>>,
}

enum Message {
    Append(Queued),
    /// A flight of this app has committed (or failed): the next one may leave.
    Landed(String),
}

/// The queue in front of one store's appends.
pub(crate) struct Coalescer {
    queue: mpsc::UnboundedSender<Message>,
}

impl Coalescer {
    /// Starts the dispatcher on the current tokio runtime. It holds the store weakly and ends
    /// when the store (which owns the queue's sender) is dropped.
    pub(crate) fn start(store: Weak<Store>) -> Self {
        let (queue, receiver) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(store, queue.downgrade(), receiver));
        Coalescer { queue }
    }

    pub(crate) async fn append(&self, append: OwnedAppend) -> Result<AppendOutcome> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Message::Append(Queued { append, reply }))
            .map_err(|_| StoreError::new(ErrorKind::Closed, "the store is closed"))?;
        answer
            .await
            .map_err(|_| StoreError::new(ErrorKind::Closed, "the store is closed"))?
    }
}

/// One flight per app at a time: its appends would queue on the app's row lock anyway. An
/// append whose app has no flight in the air leaves at once (alone); the others wait for that
/// flight to land and then leave together.
async fn dispatch(
    store: Weak<Store>,
    landed: mpsc::WeakUnboundedSender<Message>,
    mut receiver: mpsc::UnboundedReceiver<Message>,
) {
    let mut waiting: HashMap<String, Vec<Queued>> = HashMap::new();
    let mut flying: HashSet<String> = HashSet::new();
    while let Some(message) = receiver.recv().await {
        let (app, batch) = match message {
            Message::Append(queued) => {
                let app = queued.append.app_name.clone();
                if flying.contains(&app) {
                    waiting.entry(app).or_default().push(queued);
                    continue;
                }
                (app, vec![queued])
            }
            Message::Landed(app) => match waiting.get_mut(&app) {
                Some(queue) if !queue.is_empty() => {
                    let rest = queue.split_off(queue.len().min(MAX_BATCH));
                    let batch = std::mem::replace(queue, rest);
                    (app, batch)
                }
                _ => {
                    waiting.remove(&app);
                    flying.remove(&app);
                    continue;
                }
            },
        };
        let (Some(store), Some(landed)) = (store.upgrade(), landed.upgrade()) else {
            return; // the store is gone: dropping the queues tells their callers
        };
        flying.insert(app.clone());
        tokio::spawn(async move {
            fly(&store, batch).await;
            let _ = landed.send(Message::Landed(app));
        });
    }
}

async fn fly(store: &Store, mut batch: Vec<Queued>) {
    // A caller that gave up (asyncio cancellation) before its flight left is not appended.
    batch.retain(|queued| !queued.reply.is_closed());
    if batch.len() > 1 {
        if let Ok(rows) = store.append_together(&batch).await {
            for (queued, row) in batch.into_iter().zip(rows) {
                let outcome = match row {
                    Some(revision) => Ok(AppendOutcome::Appended(revision)),
                    None => {
                        let append = &queued.append;
                        store.refused_append(append.key(), &append.event_id).await
                    }
                };
                let _ = queued.reply.send(outcome);
            }
            return;
        }
    }
    // One append, or a flight that failed as a whole: each alone, concurrently.
    join_all(batch.into_iter().map(|queued| async move {
        let append = &queued.append;
        let outcome = store
            .append_event(append.key(), append.expected_revision, append.event())
            .await;
        let _ = queued.reply.send(outcome);
    }))
    .await;
}

type RowsFuture<'a> = Pin<Box<dyn std::future::Future<Output = Result<Vec<Row>>> + Send + 'a>>;

/// A pipeline step: a statement without parameters or results (simple protocol).
fn simple<'a>(conn: &'a Object, text: &'static str) -> RowsFuture<'a> {
    Box::pin(async move {
        conn.batch_execute(text).await?;
        Ok(Vec::new())
    })
}

/// A pipeline step: a prepared statement; sent on its first poll.
fn query<'a>(
    conn: &'a Object,
    stmt: &tokio_postgres::Statement,
    args: Vec<&'a (dyn ToSql + Sync)>,
) -> RowsFuture<'a> {
    let stmt = stmt.clone();
    Box::pin(async move { Ok(conn.query(&stmt, &args).await?) })
}

impl Store {
    /// Runs a flight in one transaction; the revision each append produced, or `None` where
    /// the session's revision did not match (or the session is gone). `Err` means nothing of
    /// the flight was committed (or, for a dropped connection, that this is unknown).
    async fn append_together(&self, batch: &[Queued]) -> Result<Vec<Option<i64>>> {
        let conn = self.connection().await?;
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
        let cached = self.config().options.statement_cache;
        let prepare = |text: &str| {
            let text = text.to_owned();
            async move {
                if cached {
                    conn.prepare_cached(&text).await
                } else {
                    conn.prepare(&text).await
                }
            }
        };
        // Prepared before the pipeline (a cache hit after the first flight on a connection),
        // so that each statement below is sent on its first poll.
        let append = prepare(&sql.append).await?;
        let lock_sessions = prepare(&sql.lock_sessions).await?;
        let lock_apps = prepare(&sql.lock_app_states).await?;
        let lock_users = prepare(&sql.lock_user_states).await?;

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

        let params: Vec<[Box<dyn ToSql + Sync + Send + '_>; 11]> = batch
            .iter()
            .map(|q| {
                let a = &q.append;
                let e = a.event();
                [
                    Box::new(a.app_name.as_str()) as Box<dyn ToSql + Sync + Send>,
                    Box::new(a.user_id.as_str()),
                    Box::new(a.session_id.as_str()),
                    Box::new(a.expected_revision),
                    Box::new(e.session_delta.map(JsonParam)),
                    Box::new(e.timestamp),
                    Box::new(e.event_id),
                    Box::new(e.invocation_id),
                    Box::new(JsonParam(e.event_json)),
                    Box::new(e.app_delta.map(JsonParam)),
                    Box::new(e.user_delta.map(JsonParam)),
                ]
            })
            .collect();

        let mut steps: Vec<RowsFuture<'_>> = vec![simple(conn, "BEGIN")];
        steps.push(query(
            conn,
            &lock_sessions,
            vec![&session_apps, &session_users, &session_ids],
        ));
        if !app_names.is_empty() {
            steps.push(query(conn, &lock_apps, vec![&app_names]));
        }
        if !user_ids.is_empty() {
            steps.push(query(conn, &lock_users, vec![&user_apps, &user_ids]));
        }
        let first_append = steps.len();
        for args in &params {
            let refs: Vec<&(dyn ToSql + Sync)> =
                args.iter().map(|b| &**b as &(dyn ToSql + Sync)).collect();
            steps.push(query(conn, &append, refs));
        }
        steps.push(simple(conn, "COMMIT"));
        let commit_step = steps.len() - 1;

        let mut results = join_all(steps).await;
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
