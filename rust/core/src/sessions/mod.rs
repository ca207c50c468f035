//! Sessions: ADK's sessions, their events and the app/user state they share.
//!
//! [`Sessions`] is the handle; each operation is one call and, in the common case, one SQL
//! statement on one pooled connection of the [`Database`] it borrows:
//!
//! * `write.rs` — create (session row plus app/user state upserts) and delete
//! * `read.rs` — get (session, app/user state and events in one snapshot), the warm refresh
//!   (only events after a revision), list, the user state, the revision probe
//! * `append.rs` — the revision-gated append, the probe behind a refused append, and the
//!   pipelined transaction of a coalesced flight
//! * `coalesce.rs` — the queue that groups concurrent appends to one app's state into flights
//! * `import.rs` — a whole session in one transaction (import and restore)
//! * `seen.rs` — with a read replica: what this process knows of each session
//! * `runs.rs` — run leases: one invocation of a session at a time, across processes
//! * `sql.rs` — the text of every statement, per schema; `model.rs` — the values
//!
//! Correctness rests on the session row's `revision` and `incarnation`: an append succeeds
//! only on the session (and revision) its caller read; see `append.rs`.

mod append;
mod coalesce;
mod import;
mod model;
mod read;
mod runs;
mod seen;
pub mod sql;
mod write;

use std::sync::{Arc, OnceLock};

pub use coalesce::{MAX_BATCH, QUEUE_LIMIT};
pub use import::{TransferEvent, TransferOutcome, TransferSession};
pub use model::*;
pub use runs::{Claim, RunMode};

use crate::db::Database;
use sql::SessionSql;

/// The session operations on one database handle.
pub struct Sessions {
    db: Arc<Database>,
    sql: SessionSql,
    /// The queue that coalesces concurrent appends into shared commits (started on first use).
    coalescer: OnceLock<coalesce::Coalescer>,
    /// With a replica: what this process knows of each session (see `seen.rs`).
    seen: seen::SeenSessions,
}

impl Sessions {
    pub fn new(db: Arc<Database>) -> Self {
        let sql = SessionSql::new(db.schema());
        Sessions {
            db,
            sql,
            coalescer: OnceLock::new(),
            seen: seen::new_seen(),
        }
    }

    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }
}
