//! A2A (Agent2Agent) tasks, push-notification configs and feedback (V9, `migrations/V9__a2a.sql`).
//!
//! [`A2a`] is the handle; each operation is one SQL statement on one pooled connection:
//!
//! * `tasks.rs` — save (insert, or compare-and-swap on the row's version), get, list in the
//!   SDK's order with keyset cursors, delete, delete a context's tasks
//! * `push.rs` — push-notification configs per task and owner
//! * `feedback.rs` — ratings and text on a task
//! * `sql.rs` — the text of every statement, per schema
//!
//! Tasks and configs arrive as the a2a-sdk's serialized protobuf messages and are stored as
//! `bytea` untouched: Rust never decodes them. Merging two saves of one task (so neither is
//! lost) happens in Python, which has the SDK's types (`adk_postgres/a2a.py`).

mod feedback;
mod push;
mod sql;
mod tasks;

use std::sync::Arc;

pub use feedback::{Feedback, NewFeedback};
pub use tasks::{ListedTask, SaveOutcome, StoredTask, TaskList, TaskQuery, TaskWrite};

use crate::db::Database;
use sql::A2aSql;

/// The largest serialized task or config accepted (PostgreSQL's own limit for a value is
/// 1 GiB; a task this large is a runaway history, refused before it is sent).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The A2A operations on one database handle.
pub struct A2a {
    db: Arc<Database>,
    sql: A2aSql,
}

impl A2a {
    pub fn new(db: Arc<Database>) -> Self {
        let sql = A2aSql::new(db.schema());
        A2a { db, sql }
    }

    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }
}

/// A `DataError` unless `data` fits [`MAX_MESSAGE_BYTES`].
fn check_size(what: &str, data: &[u8]) -> crate::Result<()> {
    if data.len() > MAX_MESSAGE_BYTES {
        return Err(crate::StoreError::new(
            crate::ErrorKind::Data,
            format!(
                "{what} is {} bytes; the limit is {MAX_MESSAGE_BYTES}",
                data.len()
            ),
        ));
    }
    Ok(())
}
