//! The SQL text of every session statement, built once per handle for its schema.

use crate::ident::quote_ident;

/// Converts a float epoch parameter to ADK's naive-UTC `timestamp` column type.
fn ts(param: &str) -> String {
    format!("(to_timestamp({param}::float8) AT TIME ZONE 'UTC')")
}

/// Every statement the session operations run, with the schema filled in.
#[derive(Debug, Clone)]
pub struct SessionSql {
    /// Indexed by [`SessionSql::create_index`]: which of app/user state get a delta.
    pub create: [String; 4],
    /// A session with all its events.
    pub get_all: String,
    /// A session with its $4 most recent events.
    pub get_recent: String,
    /// A session with its events at or after $4 (exact float, inclusive), at most $5 of the
    /// most recent (NULL: all).
    pub get_after: String,
    /// A session with only the events stored after revision $4 (plus any without a revision,
    /// written by ADK's own service): the refresh of a cached session.
    pub get_since: String,
    pub list_user: String,
    pub list_app: String,
    pub list_page_user: String,
    pub list_page_app: String,
    pub delete: String,
    pub append: String,
    pub append_probe: String,
    /// Row locks a coalesced append flight takes first, each in key order (see coalesce.rs).
    pub lock_sessions: String,
    pub lock_app_states: String,
    pub lock_user_states: String,
    pub revision_probe: String,
    /// After a create whose answer was lost: is the stored session the one this create made
    /// ($4 state, $5 create time), with the app/user state it returned.
    pub create_probe: String,
    pub get_user_state: String,
    /// Run leases (V8): a claim (join the queue or poll it), a holder's heartbeat, a release.
    pub claim_run: String,
    pub heartbeat_run: String,
    pub release_run: String,
}

impl SessionSql {
    pub fn new(schema: &str) -> Self {
        let s = quote_ident(schema);
        let now = "(now() AT TIME ZONE 'UTC')";
        let last_update = "COALESCE(s.update_ts, extract(epoch FROM s.update_time)::float8)";
        SessionSql {
            create: [(false, false), (true, false), (false, true), (true, true)]
                .map(|(app, user)| create_sql(&s, app, user)),
            get_all: read_sql(&s, &[events_where(&s, "TRUE", "")]),
            get_recent: read_sql(&s, &[events_where(&s, "TRUE", &format!("{NEWEST_FIRST} LIMIT $4::int8"))]),
            get_after: read_sql(
                &s,
                &[events_where(
                    &s,
                    &format!(
                        "e.\"timestamp\" >= {t4} - interval '1 microsecond'
                         AND COALESCE(e.event_ts, extract(epoch FROM e.\"timestamp\")::float8)
                             >= $4::float8",
                        t4 = ts("$4")
                    ),
                    &format!("{NEWEST_FIRST} LIMIT $5::int8"),
                )],
            ),
            // Two selections so each is one index range (an OR would filter every event).
            get_since: read_sql(&s, &[since_sql(&s), events_where(&s, "e.seq IS NULL", "")]),
            list_user: list_sql(&s, " AND {t}.user_id = $2"),
            list_app: list_sql(&s, ""),
            list_page_user: list_page_sql(&s, true),
            list_page_app: list_page_sql(&s, false),
            // Events go with the session through the foreign key's ON DELETE CASCADE.
            delete: format!(
                "DELETE FROM {s}.sessions WHERE app_name = $1 AND user_id = $2 AND id = $3
                 RETURNING 1"
            ),
            // The whole append in one statement, gated on the revision and incarnation the
            // caller holds: $1 app, $2 user, $3 id, $4 expected revision, $5 session-state
            // delta (NULL: none), $6 event timestamp, $7 event id, $8 invocation id, $9 event
            // JSON, $10 app-state delta, $11 user-state delta (NULL: none), $12 incarnation
            // (NULL: not known to the caller, e.g. a marker from an older version), $13 the
            // caller's run id when it holds the session's run lease (NULL: not leased): the
            // fence of V8, which a run that lost its lease no longer matches; $14 true: record
            // $8 as that run's invocation (its first event; see runs.rs).
            // No row back → the revision did not match or the session is gone (probe decides).
            append: format!(
                "WITH s AS (
                    UPDATE {s}.sessions
                       SET state = CASE WHEN $5::jsonb IS NULL THEN state ELSE state || $5::jsonb END,
                           revision = revision + 1,
                           update_time = {t6},
                           update_ts = $6::float8
                     WHERE app_name = $1 AND user_id = $2 AND id = $3 AND revision = $4
                       AND ($12::int8 IS NULL OR incarnation = $12::int8)
                       AND ($13::int8 IS NULL OR run_fence = $13::int8)
                     RETURNING revision
                ), ev AS (
                    INSERT INTO {s}.events
                        (id, app_name, user_id, session_id, invocation_id, \"timestamp\", event_data, seq,
                         event_ts)
                    SELECT $7, $1, $2, $3, $8, {t6}, $9, s.revision, $6::float8 FROM s
                ), app AS (
                    INSERT INTO {s}.app_states AS t (app_name, state, update_time)
                    SELECT $1, $10::jsonb, {now} FROM s WHERE $10::jsonb IS NOT NULL
                    ON CONFLICT (app_name) DO UPDATE
                        SET state = t.state || EXCLUDED.state, update_time = EXCLUDED.update_time
                ), usr AS (
                    INSERT INTO {s}.user_states AS t (app_name, user_id, state, update_time)
                    SELECT $1, $2, $11::jsonb, {now} FROM s WHERE $11::jsonb IS NOT NULL
                    ON CONFLICT (app_name, user_id) DO UPDATE
                        SET state = t.state || EXCLUDED.state, update_time = EXCLUDED.update_time
                ), run AS (
                    UPDATE {s}.session_runs r SET invocation_id = $8, heartbeat_at = clock_timestamp()
                      FROM s
                     WHERE $14::bool AND r.app_name = $1 AND r.user_id = $2 AND r.session_id = $3
                       AND r.run_id = $13::int8
                )
                SELECT revision FROM s",
                t6 = ts("$6"),
            ),
            lock_sessions: format!(
                "SELECT 1 FROM {s}.sessions
                  WHERE (app_name, user_id, id) IN
                        (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))
                  ORDER BY app_name, user_id, id
                  FOR NO KEY UPDATE"
            ),
            lock_app_states: format!(
                "SELECT 1 FROM {s}.app_states WHERE app_name = ANY($1::text[])
                  ORDER BY app_name FOR NO KEY UPDATE"
            ),
            lock_user_states: format!(
                "SELECT 1 FROM {s}.user_states
                  WHERE (app_name, user_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
                  ORDER BY app_name, user_id
                  FOR NO KEY UPDATE"
            ),
            // After a refused append: does the session exist, which incarnation and revision is
            // it at, and is this very event ($4 id, $5 JSON) already stored — a retry of an
            // append that committed — at which revision? Events of an earlier incarnation went
            // with it (ON DELETE CASCADE), so a stored event belongs to the current one.
            append_probe: format!(
                "SELECT s.revision, s.incarnation,
                        (SELECT e.seq FROM {s}.events e
                          WHERE e.app_name = $1 AND e.user_id = $2 AND e.session_id = $3
                            AND e.id = $4 AND e.event_data = $5::jsonb),
                        s.run_fence
                   FROM {s}.sessions s
                  WHERE s.app_name = $1 AND s.user_id = $2 AND s.id = $3"
            ),
            // For session objects without a marker (built by hand): the stored revision, exact
            // update time and latest event id, so the caller can apply ADK's fallback rule.
            revision_probe: format!(
                "SELECT s.revision, {last_update}, s.incarnation,
                        (SELECT e.id FROM {s}.events e
                          WHERE e.app_name = $1 AND e.user_id = $2 AND e.session_id = $3
                          ORDER BY e.\"timestamp\" DESC, e.event_ts DESC NULLS LAST, e.id DESC
                          LIMIT 1)
                   FROM {s}.sessions s
                  WHERE s.app_name = $1 AND s.user_id = $2 AND s.id = $3"
            ),
            create_probe: format!(
                "SELECT s.incarnation,
                        (SELECT a.state FROM {s}.app_states a WHERE a.app_name = $1),
                        (SELECT u.state FROM {s}.user_states u
                          WHERE u.app_name = $1 AND u.user_id = $2)
                   FROM {s}.sessions s
                  WHERE s.app_name = $1 AND s.user_id = $2 AND s.id = $3 AND s.revision = 0
                    AND s.update_ts = $5::float8 AND s.state = $4::jsonb"
            ),
            get_user_state: format!(
                "SELECT state FROM {s}.user_states WHERE app_name = $1 AND user_id = $2"
            ),
            // Claims, heartbeats and releases commit without waiting for the WAL flush
            // (`synchronous_commit` off for their own transaction only): they are
            // coordination, not data. Safe because WAL is flushed in order: the run's first
            // append (a normal commit) makes its claim durable with it, and a claim lost in a
            // crash before that leaves the fence at its old value, so the run's appends are
            // refused, never misordered; a lost release or heartbeat only runs into the expiry.
            claim_run: format!(
                "SELECT c.status, c.interrupted_invocation
                   FROM {s}.adk_postgres_claim_run($1, $2, $3, $4::int8, $5::bool, $6, $7::int8) c,
                        {ASYNC_COMMIT} AS async_commit"
            ),
            // Also records the run's invocation id once known ($5, NULL: unchanged), so that
            // a run interrupting this one can mark it. No row back: the run lost its lease.
            heartbeat_run: format!(
                "UPDATE {s}.session_runs
                    SET heartbeat_at = clock_timestamp(),
                        invocation_id = COALESCE($5, invocation_id)
                   FROM {ASYNC_COMMIT} AS async_commit
                  WHERE app_name = $1 AND user_id = $2 AND session_id = $3 AND run_id = $4::int8
                 RETURNING 1"
            ),
            release_run: format!(
                "DELETE FROM {s}.session_runs USING {ASYNC_COMMIT} AS async_commit
                  WHERE app_name = $1 AND user_id = $2 AND session_id = $3 AND run_id = $4::int8"
            ),
        }
    }
}

/// A FROM item that turns `synchronous_commit` off for the statement's own transaction.
const ASYNC_COMMIT: &str = "set_config('synchronous_commit', 'off', true)";

/// `list_sessions` in one statement: app state (kind 0), each listed user's state (1), the
/// sessions (2) oldest update first. `user_filter` narrows to one user (`$2`); `{t}` in it
/// stands for the table alias.
fn list_sql(s: &str, user_filter: &str) -> String {
    let last_update = "COALESCE(s.update_ts, extract(epoch FROM s.update_time)::float8)";
    let (users, sessions) = (
        user_filter.replace("{t}", "u"),
        user_filter.replace("{t}", "s"),
    );
    format!(
        "SELECT 0::int2 AS kind, NULL::varchar AS user_id, NULL::varchar AS id,
                a.state AS data, NULL::int8 AS num, NULL::float8 AS ts,
                NULL::timestamp AS ut, NULL::int8 AS inc
           FROM {s}.app_states a WHERE a.app_name = $1
         UNION ALL
         SELECT 1::int2, u.user_id, NULL, u.state, NULL, NULL, NULL, NULL
           FROM {s}.user_states u WHERE u.app_name = $1{users}
         UNION ALL
         SELECT 2::int2, s.user_id, s.id, s.state, s.revision, {last_update}, s.update_time,
                s.incarnation
           FROM {s}.sessions s WHERE s.app_name = $1{sessions}
         ORDER BY kind, ut, user_id, id"
    )
}

/// `list_sessions` one page at a time (newer ADK's `page_size`/`page_token`): the sessions of
/// app `$1` (user `$2`, or every user when `by_user` is false and `$2` is NULL) after the
/// cursor (`$3` last update, `$4` user, `$5` id; NULL: from the start), oldest update first,
/// `$6` of them; with the app state and the states of the users on the page. Rows as in
/// [`list_sql`].
fn list_page_sql(s: &str, by_user: bool) -> String {
    let last_update = "COALESCE(s.update_ts, extract(epoch FROM s.update_time)::float8)";
    let user = if by_user {
        "s.user_id = $2::text"
    } else {
        "$2::text IS NULL"
    };
    format!(
        "WITH page AS (
             SELECT s.user_id, s.id, s.state, s.revision, {last_update} AS ts, s.update_time,
                    s.incarnation
               FROM {s}.sessions s
              WHERE s.app_name = $1 AND {user}
                AND ($3::float8 IS NULL
                     OR ({last_update}, s.user_id, s.id) > ($3::float8, $4::text, $5::text))
              ORDER BY {last_update}, s.user_id, s.id
              LIMIT $6::int8)
         SELECT 0::int2 AS kind, NULL::varchar AS user_id, NULL::varchar AS id,
                a.state AS data, NULL::int8 AS num, NULL::float8 AS ts,
                NULL::timestamp AS ut, NULL::int8 AS inc
           FROM {s}.app_states a WHERE a.app_name = $1
         UNION ALL
         SELECT 1::int2, u.user_id, NULL, u.state, NULL, NULL, NULL, NULL
           FROM {s}.user_states u
          WHERE u.app_name = $1 AND u.user_id IN (SELECT p.user_id FROM page p)
         UNION ALL
         SELECT 2::int2, p.user_id, p.id, p.state, p.revision, p.ts, p.update_time, p.incarnation
           FROM page p
         ORDER BY kind, ts, user_id, id"
    )
}

/// Event order, newest first, as the `idx_events_session_order` index stores it: ADK's
/// microsecond timestamp, then the exact float time (NULL for events ADK wrote), then id.
pub(crate) const NEWEST_FIRST: &str =
    "ORDER BY e.\"timestamp\" DESC, e.event_ts DESC NULLS LAST, e.id DESC";

/// One selection of a session's events as rows of kind 3 (see [`read_sql`]).
fn events_where(s: &str, condition: &str, order_and_limit: &str) -> String {
    format!(
        "(SELECT 3::int2 AS kind, e.event_data AS data, e.seq AS num, e.event_ts AS ts,
                e.\"timestamp\" AS ets, e.id AS eid
            FROM {s}.events e
           WHERE e.app_name = $1 AND e.user_id = $2 AND e.session_id = $3 AND {condition}
           {order_and_limit})"
    )
}

/// The events stored after revision $4 (kind 3), and — from the same index range, so at no
/// extra cost — the id of the event at $4 itself (kind 4, without its data), the newest the
/// caller holds. Another id there means the history up to $4 changed under the same
/// incarnation (an asynchronous standby promoted before it had all of it): the caller's copy
/// cannot be extended.
fn since_sql(s: &str) -> String {
    format!(
        "(SELECT CASE WHEN e.seq = $4::int8 THEN 4::int2 ELSE 3::int2 END AS kind,
                CASE WHEN e.seq = $4::int8 THEN NULL ELSE e.event_data END AS data,
                e.seq AS num, e.event_ts AS ts, e.\"timestamp\" AS ets, e.id AS eid
            FROM {s}.events e
           WHERE e.app_name = $1 AND e.user_id = $2 AND e.session_id = $3
             -- The upper bound is redundant but makes the generic plan's estimate a narrow
             -- range (one-sided `>=` is guessed at a third of the rows), so the seq index is
             -- used however large the session is.
             AND e.seq >= $4::int8 AND e.seq <= 9223372036854775807)"
    )
}

/// A session read in one statement, one snapshot: the session row (kind 0: state, revision,
/// exact update time, and its incarnation as text), app state (1), user state (2)
/// and the events of `event_selections` (3), oldest first.
fn read_sql(s: &str, event_selections: &[String]) -> String {
    let last_update = "COALESCE(s.update_ts, extract(epoch FROM s.update_time)::float8)";
    let events = event_selections.join("\n UNION ALL\n ");
    format!(
        "SELECT 0::int2 AS kind, s.state AS data, s.revision AS num,
                {last_update} AS ts, NULL::timestamp AS ets, s.incarnation::text AS eid
           FROM {s}.sessions s
          WHERE s.app_name = $1 AND s.user_id = $2 AND s.id = $3
         UNION ALL
         SELECT 1::int2, a.state, NULL, NULL, NULL, NULL
           FROM {s}.app_states a WHERE a.app_name = $1
         UNION ALL
         SELECT 2::int2, u.state, NULL, NULL, NULL, NULL
           FROM {s}.user_states u WHERE u.app_name = $1 AND u.user_id = $2
         UNION ALL
         {events}
         ORDER BY kind, ets, ts NULLS FIRST, eid"
    )
}

impl SessionSql {
    /// Which `create` variant to run for the given non-empty deltas.
    pub fn create_index(app_delta: bool, user_delta: bool) -> usize {
        usize::from(app_delta) + 2 * usize::from(user_delta)
    }
}

/// `create_session` in one statement: $1 app, $2 user, $3 id, $4 session state, $5 create time
/// (float epoch), $6 app-state delta, $7 user-state delta.
///
/// ADK expects both state rows to exist after a create, so they are always inserted. Without a
/// delta a conflict does nothing (`DO NOTHING` takes no row lock, so creates in one app do not
/// queue behind each other); with one, the delta is merged with `||` (ADK's `dict.update`).
/// No row from `ins` (the id is taken) → revision NULL → AlreadyExistsError. The incarnation is
/// drawn by the column default.
fn create_sql(s: &str, app_delta: bool, user_delta: bool) -> String {
    let now = "(now() AT TIME ZONE 'UTC')";
    let on_conflict = |delta: bool| {
        if delta {
            "DO UPDATE SET state = t.state || EXCLUDED.state, update_time = EXCLUDED.update_time"
        } else {
            "DO NOTHING"
        }
    };
    format!(
        "WITH ins AS (
            INSERT INTO {s}.sessions
                (app_name, user_id, id, state, create_time, update_time, revision, update_ts)
            VALUES ($1, $2, $3, $4, {t5}, {t5}, 0, $5::float8)
            ON CONFLICT DO NOTHING
            RETURNING revision, incarnation
        ), app AS (
            INSERT INTO {s}.app_states AS t (app_name, state, update_time)
            SELECT $1, $6::jsonb, {now} FROM ins
            ON CONFLICT (app_name) {app_conflict}
            RETURNING state
        ), usr AS (
            INSERT INTO {s}.user_states AS t (app_name, user_id, state, update_time)
            SELECT $1, $2, $7::jsonb, {now} FROM ins
            ON CONFLICT (app_name, user_id) {user_conflict}
            RETURNING state
        )
        SELECT (SELECT revision FROM ins), (SELECT incarnation FROM ins),
               COALESCE((SELECT state FROM app),
                        (SELECT state FROM {s}.app_states WHERE app_name = $1)),
               COALESCE((SELECT state FROM usr),
                        (SELECT state FROM {s}.user_states WHERE app_name = $1 AND user_id = $2))",
        t5 = ts("$5"),
        app_conflict = on_conflict(app_delta),
        user_conflict = on_conflict(user_delta),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_use_the_quoted_schema_everywhere() {
        let sql = SessionSql::new("tenant\"a");
        for text in [
            &sql.create[0],
            &sql.create[3],
            &sql.get_all,
            &sql.get_recent,
            &sql.get_after,
            &sql.get_since,
            &sql.list_user,
            &sql.list_app,
            &sql.list_page_user,
            &sql.list_page_app,
            &sql.delete,
            &sql.append,
            &sql.append_probe,
            &sql.revision_probe,
            &sql.get_user_state,
        ] {
            assert!(text.contains("\"tenant\"\"a\"."), "{text}");
            // Every table reference is qualified: no bare `FROM sessions` etc.
            for table in ["sessions", "events", "app_states", "user_states"] {
                assert!(!text.contains(&format!("FROM {table}")), "{text}");
                assert!(!text.contains(&format!("INTO {table}")), "{text}");
            }
        }
    }

    #[test]
    fn append_is_gated_on_revision_and_merges_state_in_sql() {
        let sql = SessionSql::new("public");
        assert!(sql.append.contains("AND revision = $4"));
        assert!(sql.append.contains("state || $5::jsonb"));
        assert!(sql.append.contains("t.state || EXCLUDED.state"));
        assert!(sql.append.contains("FROM s"));
    }
}
