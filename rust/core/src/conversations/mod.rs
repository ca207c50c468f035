//! Conversations (V10, `migrations/V10__conversations.sql`): what a chat product asks of its
//! sessions beyond ADK's calls.
//!
//! [`Conversations`] is the handle; each operation is one SQL statement:
//!
//! * listing a user's conversations newest activity first, with keyset cursors that stay
//!   stable while sessions are appended to (see `sql::list`), titles, archive and restore
//! * `search.rs` — full-text search over event text, state queries, and the opt-in indexes
//!   that make both fast
//! * `sql.rs` — the text of every statement, per schema

mod search;
mod sql;

use std::sync::Arc;

pub use search::{SearchHit, SearchQuery, StateMatch, StateQuery};

use crate::db::{Database, Retry};
use crate::error::{ErrorKind, Result, StoreError};
use sql::ConversationSql;

/// The text of the listing statement for `schema` (parameters as `Conversations::list` binds
/// them), for EXPLAIN in tests and by operators.
pub fn list_statement(schema: &str, archived: bool) -> String {
    sql::list(&crate::ident::quote_ident(schema), archived)
}

/// The most rows one call returns: a page of up to 1,000 plus the one more that tells the
/// caller whether there is a next page.
pub const MAX_PAGE: i64 = 1001;

/// One conversation of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub session_id: String,
    /// Its place in the listing (last activity as of the listing's start, epoch seconds):
    /// with `session_id` the cursor for the next page.
    pub key: f64,
    /// The explicit title, if one was set.
    pub title: Option<String>,
    /// The text of its first user message (a title when none was set).
    pub first_text: Option<String>,
    /// The text of its newest event that has text.
    pub last_text: Option<String>,
    /// Events with text (user and model messages).
    pub message_count: i64,
    pub created_at: f64,
    pub archived_at: Option<f64>,
}

/// Where a listing page starts.
#[derive(Debug, Clone, Copy)]
pub struct ListCursor<'a> {
    /// The listing's start (epoch seconds, the database's clock).
    pub t0: f64,
    pub key: f64,
    pub session_id: &'a str,
}

/// The conversation operations on one database handle.
pub struct Conversations {
    db: Arc<Database>,
    sql: ConversationSql,
    languages: search::KnownLanguages,
}

/// A `DataError` unless `limit` is a page size we serve.
fn check_limit(limit: i64) -> Result<()> {
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(StoreError::new(
            ErrorKind::Data,
            format!("the page size must be between 1 and {MAX_PAGE}, not {limit}"),
        ));
    }
    Ok(())
}

impl Conversations {
    pub fn new(db: Arc<Database>) -> Self {
        let sql = ConversationSql::new(db.schema());
        Conversations {
            db,
            sql,
            languages: Default::default(),
        }
    }

    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// The database's clock (epoch seconds): the start of a new listing.
    pub async fn now(&self) -> Result<f64> {
        let row = self
            .db
            .fetch_opt(
                "SELECT extract(epoch FROM clock_timestamp())::float8",
                &[],
                Retry::Yes,
            )
            .await?;
        Ok(row.map_or(0.0, |r| r.get(0)))
    }

    /// One page of a user's conversations (archived ones when `archived`), newest activity
    /// first, as they were at `t0`; after `cursor` (key, session id) when given.
    pub async fn list(
        &self,
        app_name: &str,
        user_id: &str,
        archived: bool,
        t0: f64,
        cursor: Option<(f64, &str)>,
        limit: i64,
    ) -> Result<Vec<Conversation>> {
        check_limit(limit)?;
        let sql = if archived {
            &self.sql.list_archived
        } else {
            &self.sql.list
        };
        let (key, id) = match cursor {
            Some((key, id)) => (Some(key), Some(id)),
            None => (None, None),
        };
        let rows = self
            .db
            .fetch(
                sql,
                &[&app_name, &user_id, &t0, &key, &id, &limit],
                Retry::Yes,
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| Conversation {
                session_id: row.get(0),
                key: row.get(1),
                title: row.get(2),
                first_text: row.get(3),
                last_text: row.get(4),
                message_count: row.get(5),
                created_at: row.get(6),
                archived_at: row.get(7),
            })
            .collect())
    }

    /// Sets (or with `None` clears) a conversation's title; `false` if there is no such
    /// session.
    pub async fn set_title(
        &self,
        app_name: &str,
        user_id: &str,
        session_id: &str,
        title: Option<&str>,
    ) -> Result<bool> {
        let row = self
            .db
            .fetch_opt(
                &self.sql.set_title,
                &[&app_name, &user_id, &session_id, &title],
                Retry::Yes,
            )
            .await?;
        Ok(row.is_some())
    }

    /// Archives (`true`) or restores (`false`) a conversation; `false` if there is no such
    /// session. Archiving twice keeps the first archive time.
    pub async fn set_archived(
        &self,
        app_name: &str,
        user_id: &str,
        session_id: &str,
        archived: bool,
    ) -> Result<bool> {
        let row = self
            .db
            .fetch_opt(
                &self.sql.set_archived,
                &[&app_name, &user_id, &session_id, &archived],
                Retry::Yes,
            )
            .await?;
        Ok(row.is_some())
    }
}
