//! Run leases (V8): at most one invocation of a session runs at a time across processes.
//!
//! A run joins the session's queue with a claim, polls with the same claim until it is granted,
//! heartbeats while it holds the session and releases it at the end. The claim is one call of
//! `adk_postgres_claim_run` (see `V8__session_run_leases.sql`); the granted run's id becomes
//! the session's fence, which the append statement checks (see `append.rs`). Waiting, timeouts
//! and the strategies live in the Python layer (`adk_postgres/runs.py`).

use super::{SessionKey, Sessions};
use crate::db::Retry;
use crate::error::{ErrorKind, Result, StoreError};

/// What a run does when the session is busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Wait in arrival order.
    Enqueue,
    /// Give up at once (nothing is stored).
    Reject,
    /// Stop the running run (its next append is refused) and take its place.
    Interrupt,
}

impl RunMode {
    pub fn parse(mode: &str) -> Result<Self> {
        match mode {
            "enqueue" => Ok(RunMode::Enqueue),
            "reject" => Ok(RunMode::Reject),
            "interrupt" => Ok(RunMode::Interrupt),
            other => Err(StoreError::new(
                ErrorKind::Data,
                format!("unknown run strategy {other:?}: use enqueue, reject or interrupt"),
            )),
        }
    }

    fn as_sql(self) -> &'static str {
        match self {
            RunMode::Enqueue => "enqueue",
            RunMode::Reject => "reject",
            RunMode::Interrupt => "interrupt",
        }
    }
}

/// How a claim ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The run holds the session; the invocation it interrupted, if any.
    Granted { interrupted: Option<String> },
    /// A live run is ahead (the invocation this claim interrupted, if any, to mark later).
    Waiting { interrupted: Option<String> },
    /// Reject mode and a live run is ahead: the run was not queued.
    Busy,
    /// The run is no longer queued: its heartbeats stopped for longer than the expiry, or a
    /// newer run interrupted it.
    Lost,
    /// No such session.
    NoSession,
}

impl Sessions {
    /// Joins the queue of a session (`new`) or polls a place in it. Safe to repeat: a retried
    /// claim finds its own row.
    pub async fn claim_run(
        &self,
        key: SessionKey<'_>,
        run_id: i64,
        new: bool,
        mode: RunMode,
        expiry_ms: i64,
    ) -> Result<Claim> {
        let row = self
            .db
            .fetch_opt(
                &self.sql.claim_run,
                &[
                    &key.app_name,
                    &key.user_id,
                    &key.session_id,
                    &run_id,
                    &new,
                    &mode.as_sql(),
                    &expiry_ms,
                ],
                Retry::Yes,
            )
            .await?
            .expect("the claim function returns one row");
        let status: &str = row.get(0);
        let interrupted: Option<String> = row.get(1);
        Ok(match status {
            "granted" => Claim::Granted { interrupted },
            "waiting" => Claim::Waiting { interrupted },
            "busy" => Claim::Busy,
            "lost" => Claim::Lost,
            "no_session" => Claim::NoSession,
            other => {
                return Err(StoreError::new(
                    ErrorKind::Internal,
                    format!("unexpected claim status {other:?}"),
                ))
            }
        })
    }

    /// Shows the run is alive (and records its invocation id once known); `false` if it is no
    /// longer queued (it lost the session).
    pub async fn heartbeat_run(
        &self,
        key: SessionKey<'_>,
        run_id: i64,
        invocation_id: Option<&str>,
    ) -> Result<bool> {
        let row = self
            .db
            .fetch_opt(
                &self.sql.heartbeat_run,
                &[
                    &key.app_name,
                    &key.user_id,
                    &key.session_id,
                    &run_id,
                    &invocation_id,
                ],
                Retry::Yes,
            )
            .await?;
        Ok(row.is_some())
    }

    /// Leaves the queue (or gives the session up). The fence stays: a later claim replaces it.
    pub async fn release_run(&self, key: SessionKey<'_>, run_id: i64) -> Result<()> {
        self.db
            .fetch(
                &self.sql.release_run,
                &[&key.app_name, &key.user_id, &key.session_id, &run_id],
                Retry::Yes,
            )
            .await?;
        Ok(())
    }
}
