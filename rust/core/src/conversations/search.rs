//! Full-text search over what was said, state queries, and their opt-in indexes.
//!
//! Both work without an index (a scan of the user's events, or of the app's sessions) and
//! become index lookups once `create_index` has built one. The indexes are opt-in because of
//! what they cost the hot path: a search index is one more GIN entry per appended event with
//! text, a state index a GIN entry per append that changes state (measured in
//! `benches/conversations.py`).

use std::collections::HashSet;
use std::sync::Mutex;

use super::sql::search as search_sql;
use super::{check_limit, Conversations};
use crate::codec::JsonParam;
use crate::db::Retry;
use crate::error::{ErrorKind, Result, StoreError};
use crate::ident::quote_ident;

/// A search of one user's events.
#[derive(Debug, Clone, Copy)]
pub struct SearchQuery<'a> {
    pub app_name: &'a str,
    pub user_id: &'a str,
    /// Web-search syntax: words, "quoted phrases", `or`, `-word`.
    pub query: &'a str,
    /// A text search configuration (`english`, `simple`, `german`, …).
    pub language: &'a str,
    /// After this hit: (rank, time, session id, event id).
    pub after: Option<(f32, f64, &'a str, &'a str)>,
    pub limit: i64,
    pub include_archived: bool,
}

/// One event that matches.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub session_id: String,
    pub event_id: String,
    /// The event's time (epoch seconds).
    pub timestamp: f64,
    pub rank: f32,
    pub author: Option<String>,
    /// Fragments of the text around the matches, HTML-escaped, matches in `<mark>` tags.
    pub snippet: String,
}

/// Sessions whose state contains a JSON object.
#[derive(Debug, Clone, Copy)]
pub struct StateQuery<'a> {
    pub app_name: &'a str,
    /// One user's sessions, or (`None`) every user's.
    pub user_id: Option<&'a str>,
    /// JSON text of an object.
    pub contains: &'a [u8],
    /// After this match: (last activity, user id, session id).
    pub after: Option<(f64, &'a str, &'a str)>,
    pub limit: i64,
}

/// One session a state query found.
#[derive(Debug, Clone, PartialEq)]
pub struct StateMatch {
    pub user_id: String,
    pub session_id: String,
    pub last_activity: f64,
}

/// The index names (fixed, so that creating twice is a no-op and `drop` finds them).
const STATE_INDEX: &str = "idx_sessions_state";

fn search_index(language: &str) -> String {
    format!("idx_events_text_{language}")
}

/// A `DataError` unless `language` can be a text search configuration name pasted into SQL.
fn check_language_name(language: &str) -> Result<()> {
    let ok = !language.is_empty()
        && language.len() <= 63
        && language.starts_with(|c: char| c.is_ascii_lowercase())
        && language
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::new(
            ErrorKind::Data,
            format!(
                "{language:?} is not a text search configuration name \
                 (lower-case letters, digits and _, such as english or simple)"
            ),
        ))
    }
}

/// Languages (text search configurations) seen to exist, so each is checked once.
#[derive(Default)]
pub(super) struct KnownLanguages(Mutex<HashSet<String>>);

impl Conversations {
    /// A `DataError` unless the database has text search configuration `language`.
    async fn check_language(&self, language: &str) -> Result<()> {
        check_language_name(language)?;
        if self.languages.0.lock().unwrap().contains(language) {
            return Ok(());
        }
        let row = self
            .db
            .fetch_opt(&self.sql.language_exists, &[&language], Retry::Yes)
            .await?;
        if !row.is_some_and(|r| r.get::<_, bool>(0)) {
            return Err(StoreError::new(
                ErrorKind::Data,
                format!(
                    "the database has no text search configuration {language:?} \
                     (SELECT cfgname FROM pg_ts_config lists them)"
                ),
            ));
        }
        self.languages.0.lock().unwrap().insert(language.to_owned());
        Ok(())
    }

    /// Events of one user whose text matches, best first.
    pub async fn search(&self, q: SearchQuery<'_>) -> Result<Vec<SearchHit>> {
        check_limit(q.limit)?;
        if q.query.trim().is_empty() {
            return Err(StoreError::new(
                ErrorKind::Data,
                "the search query is empty",
            ));
        }
        self.check_language(q.language).await?;
        let sql = search_sql(&quote_ident(self.db.schema()), q.language);
        let (rank, ts, session, event) = match q.after {
            Some((r, t, s, e)) => (Some(r), Some(t), Some(s), Some(e)),
            None => (None, None, None, None),
        };
        let rows = self
            .db
            .fetch(
                &sql,
                &[
                    &q.app_name,
                    &q.user_id,
                    &q.query,
                    &rank,
                    &ts,
                    &session,
                    &event,
                    &q.limit,
                    &q.include_archived,
                ],
                Retry::Yes,
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| SearchHit {
                session_id: row.get(0),
                event_id: row.get(1),
                timestamp: row.get(2),
                rank: row.get(3),
                author: row.get(4),
                snippet: row.get(5),
            })
            .collect())
    }

    /// Sessions whose state contains `q.contains`, newest activity first.
    pub async fn find_by_state(&self, q: StateQuery<'_>) -> Result<Vec<StateMatch>> {
        check_limit(q.limit)?;
        let sql = if q.user_id.is_some() {
            &self.sql.by_state_user
        } else {
            &self.sql.by_state_app
        };
        let (key, user, id) = match q.after {
            Some((k, u, s)) => (Some(k), Some(u), Some(s)),
            None => (None, None, None),
        };
        let contains = JsonParam(q.contains);
        let rows = self
            .db
            .fetch(
                sql,
                &[
                    &q.app_name,
                    &q.user_id,
                    &contains,
                    &key,
                    &user,
                    &id,
                    &q.limit,
                ],
                Retry::Yes,
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| StateMatch {
                user_id: row.get(0),
                session_id: row.get(1),
                last_activity: row.get(2),
            })
            .collect())
    }

    /// Builds the search index for `language` (`Some`) or the state index (`None`) without
    /// blocking appends (`CREATE INDEX CONCURRENTLY`); a no-op when it exists. An index left
    /// invalid by an interrupted build is dropped and built again.
    pub async fn create_index(&self, language: Option<&str>) -> Result<()> {
        let s = quote_ident(self.db.schema());
        let (name, definition) = match language {
            Some(language) => {
                self.check_language(language).await?;
                (
                    search_index(language),
                    format!(
                        "{s}.events USING gin (to_tsvector('{language}'::regconfig, \
                         {s}.adk_postgres_event_text(event_data)))"
                    ),
                )
            }
            None => (
                STATE_INDEX.to_owned(),
                format!("{s}.sessions USING gin (state jsonb_path_ops)"),
            ),
        };
        let conn = self.db.connection().await?;
        let invalid = conn
            .query_opt(
                "SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND NOT i.indisvalid",
                &[&self.db.schema(), &name],
            )
            .await?;
        let index = quote_ident(&name);
        if invalid.is_some() {
            conn.batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {s}.{index}"))
                .await?;
        }
        conn.batch_execute(&format!(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS {index} ON {definition}"
        ))
        .await?;
        Ok(())
    }

    /// Drops the search index for `language` (`Some`) or the state index; `false` if there was
    /// none.
    pub async fn drop_index(&self, language: Option<&str>) -> Result<bool> {
        let name = match language {
            Some(language) => {
                check_language_name(language)?;
                search_index(language)
            }
            None => STATE_INDEX.to_owned(),
        };
        let existed = self.indexes().await?.contains(&name);
        let s = quote_ident(self.db.schema());
        let conn = self.db.connection().await?;
        conn.batch_execute(&format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {s}.{}",
            quote_ident(&name)
        ))
        .await?;
        Ok(existed)
    }

    /// The opt-in indexes that exist (valid ones): `idx_sessions_state`,
    /// `idx_events_text_<language>`.
    pub async fn indexes(&self) -> Result<Vec<String>> {
        let rows = self
            .db
            .fetch(
                "SELECT c.relname::text FROM pg_catalog.pg_index i \
                 JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1::text AND i.indisvalid \
                   AND (c.relname = 'idx_sessions_state' OR c.relname LIKE 'idx\\_events\\_text\\_%') \
                 ORDER BY 1",
                &[&self.db.schema()],
                Retry::Yes,
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::check_language_name;

    #[test]
    fn language_names_are_checked_before_they_reach_sql() {
        for ok in ["english", "simple", "german", "my_config2"] {
            assert!(check_language_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "English",
            "english'); DROP TABLE x; --",
            "1abc",
            "a b",
            "ä",
        ] {
            assert!(check_language_name(bad).is_err(), "{bad}");
        }
        assert!(check_language_name(&"a".repeat(64)).is_err());
    }
}
