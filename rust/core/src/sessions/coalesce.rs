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
//!
//! The queue is bounded ([`QUEUE_LIMIT`] appends waiting or flying per store) and a queued
//! append waits no longer than the pool's `acquire_timeout`, as it would for a connection: a
//! caller whose time runs out before a flight took its append gets a `PoolTimeout` error and
//! the append is never sent. A flight that fails or panics still lands, so its app is never
//! left marked as in the air.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::{AppendOutcome, OwnedAppend};
use crate::error::{ErrorKind, Result, StoreError};

/// Most appends in one flight: more would hold the app's row lock longer for little gain (the
/// commit is shared already), and keeps one flight's pipeline a few dozen messages.
pub const MAX_BATCH: usize = 24;

/// Most appends waiting or flying in one store's queue; more callers wait for room (within
/// their `acquire_timeout`), so a burst cannot grow the queue without bound.
pub const QUEUE_LIMIT: usize = 16 * MAX_BATCH;
/// Who decides a queued append's fate first: a flight taking it, or its caller giving up.
const QUEUED: u8 = 0;
const TAKEN: u8 = 1;
const WITHDRAWN: u8 = 2;

pub struct Queued {
    pub append: OwnedAppend,
    reply: oneshot::Sender<Result<AppendOutcome>>,
    claim: Arc<AtomicU8>,
    /// The append's place in the bounded queue, given back when it is answered.
    _room: OwnedSemaphorePermit,
}

impl Queued {
    /// Takes the append for a flight, unless its caller withdrew (or was cancelled) first.
    fn take(&self) -> bool {
        !self.reply.is_closed()
            && self
                .claim
                .compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    pub fn answer(self, outcome: Result<AppendOutcome>) {
        let _ = self.reply.send(outcome);
    }
}

enum Message {
    Append(Box<Queued>),
    /// A flight of this app has ended (committed, failed or panicked): the next may leave.
    Landed(String),
}

/// Runs one flight: answers every append of the batch (dropping one unanswered tells its
/// caller the flight was lost).
pub type Flight =
    Arc<dyn Fn(Vec<Queued>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The queue in front of one store's appends.
pub struct Coalescer {
    queue: mpsc::UnboundedSender<Message>,
    room: Arc<Semaphore>,
}

impl Coalescer {
    /// Starts the dispatcher on the current tokio runtime; `flight` runs each flight. The
    /// dispatcher ends when the coalescer (which owns the queue's sender) is dropped.
    pub fn with_flight(flight: Flight, limit: usize) -> Self {
        let (queue, receiver) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(flight, queue.downgrade(), receiver));
        Coalescer {
            queue,
            room: Arc::new(Semaphore::new(limit)),
        }
    }

    /// Queues an append and waits for its outcome. Waiting for room in the queue and for a
    /// flight to take the append together last at most `timeout`; once taken, the flight
    /// answers (its connection has its own timeouts).
    pub async fn append(&self, append: OwnedAppend, timeout: Duration) -> Result<AppendOutcome> {
        let deadline = Instant::now() + timeout;
        let room = match tokio::time::timeout_at(deadline, self.room.clone().acquire_owned()).await
        {
            Ok(Ok(room)) => room,
            Ok(Err(_)) => return Err(closed()),
            Err(_) => return Err(queue_timeout(timeout)),
        };
        let claim = Arc::new(AtomicU8::new(QUEUED));
        let (reply, mut answer) = oneshot::channel();
        let queued = Queued {
            append,
            reply,
            claim: claim.clone(),
            _room: room,
        };
        self.queue
            .send(Message::Append(Box::new(queued)))
            .map_err(|_| closed())?;
        tokio::select! {
            outcome = &mut answer => outcome.map_err(|_| flight_lost())?,
            () = tokio::time::sleep_until(deadline) => {
                if claim
                    .compare_exchange(QUEUED, WITHDRAWN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return Err(queue_timeout(timeout));
                }
                // A flight took it just now: its outcome stands.
                answer.await.map_err(|_| flight_lost())?
            }
        }
    }
}

fn closed() -> StoreError {
    StoreError::new(ErrorKind::Closed, "the store is closed")
}

fn queue_timeout(timeout: Duration) -> StoreError {
    StoreError::new(
        ErrorKind::PoolTimeout,
        format!(
            "the append waited {:.1} s (the acquire timeout) in the queue of appends to its app's \
             state without being sent; nothing was written (raise pool_size or acquire_timeout)",
            timeout.as_secs_f64()
        ),
    )
}

fn flight_lost() -> StoreError {
    StoreError::new(
        ErrorKind::Internal,
        "the append's flight ended without an answer (an internal error or the store closing); \
         whether it was stored is unknown: reload the session",
    )
}

/// Sends `Landed` when dropped: after the flight returns, fails or panics.
struct Landing {
    app: Option<String>,
    queue: mpsc::WeakUnboundedSender<Message>,
}

impl Drop for Landing {
    fn drop(&mut self) {
        if let (Some(app), Some(queue)) = (self.app.take(), self.queue.upgrade()) {
            let _ = queue.send(Message::Landed(app));
        }
    }
}

/// One flight per app at a time: its appends would queue on the app's row lock anyway. An
/// append whose app has no flight in the air leaves at once (alone); the others wait for that
/// flight to land and then leave together.
async fn dispatch(
    flight: Flight,
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
                    waiting.entry(app).or_default().push(*queued);
                    continue;
                }
                (app, vec![*queued])
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
        // Appends whose callers withdrew or were cancelled while queued are not sent.
        let batch: Vec<Queued> = batch.into_iter().filter(Queued::take).collect();
        flying.insert(app.clone());
        let landing = Landing {
            app: Some(app),
            queue: landed.clone(),
        };
        let run = flight.clone();
        tokio::spawn(async move {
            let _landing = landing;
            if !batch.is_empty() {
                run(batch).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::Expected;
    use std::sync::Mutex;

    fn append(app: &str, n: i64) -> OwnedAppend {
        OwnedAppend {
            app_name: app.into(),
            user_id: "u".into(),
            session_id: format!("s{n}"),
            expected: Expected {
                revision: n,
                incarnation: None,
                fence: None,
                note_invocation: false,
            },
            event_id: format!("e{n}"),
            invocation_id: "i".into(),
            timestamp: 0.0,
            event_json: Box::new(b"{}".to_vec()),
            session_delta: None,
            app_delta: Some(Box::new(b"{}".to_vec())),
            user_delta: None,
        }
    }

    /// A flight that answers each append with its expected revision + 1 after `delay`, and
    /// panics on the first flight of app "boom".
    fn fake_flight(delay: Duration, flown: Arc<Mutex<Vec<String>>>) -> Flight {
        let boomed = Arc::new(AtomicU8::new(0));
        Arc::new(move |batch: Vec<Queued>| {
            let flown = flown.clone();
            let boomed = boomed.clone();
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                for queued in batch {
                    let app = queued.append.app_name.clone();
                    if app == "boom" && boomed.swap(1, Ordering::SeqCst) == 0 {
                        panic!("a flight panicked");
                    }
                    flown.lock().unwrap().push(queued.append.event_id.clone());
                    let revision = queued.append.expected.revision + 1;
                    queued.answer(Ok(AppendOutcome::Appended(revision)));
                }
            })
        })
    }

    #[tokio::test]
    async fn a_panicking_flight_answers_with_an_error_and_its_app_flies_again() {
        let flown = Arc::new(Mutex::new(Vec::new()));
        let queue = Coalescer::with_flight(fake_flight(Duration::ZERO, flown.clone()), 100);
        let wait = Duration::from_secs(5);
        let first = queue.append(append("boom", 1), wait).await.unwrap_err();
        assert_eq!(first.kind, ErrorKind::Internal);
        // Had the panic left "boom" marked as flying, this would wait forever.
        let second = tokio::time::timeout(wait, queue.append(append("boom", 2), wait))
            .await
            .expect("the app's next append was not stuck behind the panicked flight");
        assert_eq!(second.unwrap(), AppendOutcome::Appended(3));
    }

    #[tokio::test]
    async fn a_queued_append_honours_the_timeout_and_is_never_sent() {
        let flown = Arc::new(Mutex::new(Vec::new()));
        let queue = Arc::new(Coalescer::with_flight(
            fake_flight(Duration::from_millis(400), flown.clone()),
            100,
        ));
        let long = Duration::from_secs(5);
        let first = tokio::spawn({
            let queue = queue.clone();
            async move { queue.append(append("slow", 1), long).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await; // the first flight is in the air
        let started = Instant::now();
        let err = queue
            .append(append("slow", 2), Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::PoolTimeout);
        assert!(started.elapsed() < Duration::from_millis(350));
        assert_eq!(first.await.unwrap().unwrap(), AppendOutcome::Appended(2));
        // The next flight leaves without the withdrawn append.
        assert_eq!(
            queue.append(append("slow", 3), long).await.unwrap(),
            AppendOutcome::Appended(4)
        );
        assert_eq!(*flown.lock().unwrap(), vec!["e1", "e3"]);
    }

    #[tokio::test]
    async fn the_queue_is_bounded() {
        let flown = Arc::new(Mutex::new(Vec::new()));
        let queue = Arc::new(Coalescer::with_flight(
            fake_flight(Duration::from_millis(300), flown.clone()),
            2,
        ));
        let long = Duration::from_secs(5);
        let held: Vec<_> = (1..=2)
            .map(|n| {
                let queue = queue.clone();
                tokio::spawn(async move { queue.append(append("full", n), long).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let err = queue
            .append(append("other", 9), Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::PoolTimeout);
        for task in held {
            assert!(task.await.unwrap().is_ok());
        }
        assert!(queue.append(append("other", 9), long).await.is_ok());
    }
}
