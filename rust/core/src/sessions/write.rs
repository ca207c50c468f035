//! Creating and deleting sessions: one statement each.

use tokio_postgres::Row;

use super::read::json_opt;
use super::seen::Known;
use super::sql::SessionSql;
use super::{Created, SessionKey, Sessions};
use crate::codec::JsonParam;
use crate::db::Retry;
use crate::error::Result;
use crate::failover::is_lost;
use crate::statement::Param;

impl Sessions {
    /// Creates a session with its initial state; `None` if the id already exists.
    pub async fn create_session(
        &self,
        key: SessionKey<'_>,
        state: &[u8],
        app_delta: Option<&[u8]>,
        user_delta: Option<&[u8]>,
        create_time: f64,
    ) -> Result<Option<Created>> {
        let sql =
            &self.sql.create[SessionSql::create_index(app_delta.is_some(), user_delta.is_some())];
        let empty = JsonParam(b"{}");
        let app = app_delta.map_or(empty, JsonParam);
        let user = user_delta.map_or(empty, JsonParam);
        let params: [&dyn Param; 7] = [
            &key.app_name,
            &key.user_id,
            &key.session_id,
            &JsonParam(state),
            &create_time,
            &app,
            &user,
        ];
        // Not simply repeated after a lost connection: a create that committed would look like
        // a duplicate id the second time. While a failover is ridden out, the next attempt
        // first asks whether the stored session is the one the lost attempt made.
        let mut failover = self.db.failover();
        loop {
            if failover.waited() {
                if let Some(row) = self
                    .db
                    .fetch_opt(&self.sql.create_probe, &params[..5], Retry::Yes)
                    .await?
                {
                    return Ok(Some(self.created(key, &row, 0)));
                }
            }
            let row = match self.db.fetch_opt(sql, &params, Retry::No).await {
                Err(err) if is_lost(&err) => {
                    failover.pause(err).await?;
                    continue;
                }
                other => other?.expect("a SELECT without FROM returns one row"),
            };
            let created: Option<i64> = row.get(0);
            return Ok(created.map(|_| self.created(key, &row, 1)));
        }
    }

    /// A created session from a row holding (incarnation, app state, user state) at `from`.
    fn created(&self, key: SessionKey<'_>, row: &Row, from: usize) -> Created {
        let incarnation = row.get(from);
        self.note(
            key,
            Known::At {
                incarnation,
                revision: 0,
            },
        );
        Created {
            revision: 0,
            incarnation,
            app_state: json_opt(row, from + 1),
            user_state: json_opt(row, from + 2),
        }
    }

    /// Deletes a session and its events; deleting a missing session is not an error.
    pub async fn delete_session(&self, key: SessionKey<'_>) -> Result<bool> {
        let deleted = self
            .db
            .fetch(
                &self.sql.delete,
                &[&key.app_name, &key.user_id, &key.session_id],
                Retry::Yes,
            )
            .await?;
        self.note(key, Known::Gone);
        Ok(!deleted.is_empty())
    }
}
