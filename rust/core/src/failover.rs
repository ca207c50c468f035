//! Riding out a failover. When a connection is lost (the server went away) or turns out to be
//! a read-only standby (a demoted primary, or a multi-host URL that reached a standby), a call
//! whose statement is safe to repeat waits for a writable node and runs again there — for at
//! most `failover_timeout` after its first such failure, then the last error reaches the
//! caller. With `failover_timeout` zero (the default) nothing waits: errors reach the caller at
//! once, as during a plain outage one wants.
//!
//! Safe to repeat: reads; appends (a repeat that finds its own event stored is a success, see
//! `sessions/append.rs`); creates and artifact saves, which first check whether the attempt
//! whose answer was lost committed (`sessions/write.rs`, `artifacts/save.rs`).

use std::time::Duration;

use tokio::time::Instant;

use crate::error::{ErrorKind, Result, StoreError};

/// SQLSTATE read_only_sql_transaction: the connection reached a standby.
const READ_ONLY: &str = "25006";

/// First pause between attempts; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Whether `err` means "this connection (or node) cannot take the statement; another may".
pub fn is_lost(err: &StoreError) -> bool {
    err.kind == ErrorKind::Connection || err.sqlstate.as_deref() == Some(READ_ONLY)
}

/// The waiting state of one call.
#[derive(Debug)]
pub struct Failover {
    timeout: Duration,
    deadline: Option<Instant>,
    pause: Duration,
}

impl Failover {
    pub fn new(timeout: Duration) -> Self {
        Failover {
            timeout,
            deadline: None,
            pause: FIRST_PAUSE,
        }
    }

    /// After a lost connection: pauses and returns `Ok` when another attempt fits before the
    /// deadline (counted from the first failure), else returns `err`.
    pub async fn pause(&mut self, err: StoreError) -> Result<()> {
        if self.timeout.is_zero() {
            return Err(err);
        }
        let deadline = *self
            .deadline
            .get_or_insert_with(|| Instant::now() + self.timeout);
        let now = Instant::now();
        if now >= deadline {
            return Err(err);
        }
        tokio::time::sleep(self.pause.min(deadline - now)).await;
        self.pause = (self.pause * 2).min(MAX_PAUSE);
        Ok(())
    }

    /// Whether a failure has been ridden out already (the call's outcome may be unknown).
    pub fn waited(&self) -> bool {
        self.deadline.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost() -> StoreError {
        StoreError::new(ErrorKind::Connection, "connection closed")
    }

    #[tokio::test]
    async fn zero_timeout_never_waits() {
        let mut failover = Failover::new(Duration::ZERO);
        assert!(failover.pause(lost()).await.is_err());
        assert!(!failover.waited());
    }

    #[tokio::test(start_paused = true)]
    async fn waits_with_growing_pauses_until_the_deadline() {
        let mut failover = Failover::new(Duration::from_secs(3));
        let started = Instant::now();
        let mut attempts = 0;
        while failover.pause(lost()).await.is_ok() {
            attempts += 1;
        }
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(3) && waited < Duration::from_millis(3100));
        // 50, 100, 200, 400, 800 ms, then 1 s pauses: about seven attempts in 3 s.
        assert!((6..=8).contains(&attempts), "{attempts} attempts");
    }

    #[test]
    fn read_only_standbys_count_as_lost() {
        let mut err = StoreError::new(ErrorKind::Database, "read-only transaction");
        err.sqlstate = Some(READ_ONLY.to_string());
        assert!(is_lost(&err));
        assert!(is_lost(&lost()));
        assert!(!is_lost(&StoreError::new(ErrorKind::PoolTimeout, "busy")));
    }
}
