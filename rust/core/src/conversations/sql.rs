//! The text of every conversations statement, with the schema filled in once.

use crate::ident::quote_ident;

/// A session's last activity: the key of `idx_sessions_activity` (V10), exact for sessions we
/// wrote, from ADK's microsecond column for rows ADK's own service wrote before V2.
pub(super) const ACTIVITY: &str =
    "COALESCE(s.update_ts, extract(epoch FROM s.update_time)::float8)";

/// An event's exact time (ADK's microsecond column for events ADK wrote).
const EVENT_TIME: &str = "COALESCE(e.event_ts, extract(epoch FROM e.\"timestamp\")::float8)";

/// Whether session `s` is archived (`archived` true) or not.
fn archived_is(s: &str, archived: bool) -> String {
    let exists = format!(
        "EXISTS (SELECT 1 FROM {s}.conversations c WHERE c.app_name = s.app_name \
         AND c.user_id = s.user_id AND c.session_id = s.id AND c.archived_at IS NOT NULL)"
    );
    if archived {
        exists
    } else {
        format!("NOT {exists}")
    }
}

/// One page of a user's conversations as they were at `$3` (t0, epoch seconds), newest
/// activity first, after the cursor (`$4` key, `$5` session id; NULL: from the top), `$6` rows.
///
/// Why t0: the order is by last activity, which appends change while a client pages. A
/// conversation untouched since t0 is placed by its activity (the index range); one touched
/// after t0 is placed by its activity as of t0 — its newest event at or before t0, found by
/// one probe of the events index — so every page of one listing sees the same order, and
/// paging neither skips nor repeats a conversation that existed at t0.
pub(super) fn list(s: &str, archived: bool) -> String {
    let archive_filter = archived_is(s, archived);
    format!(
        "WITH untouched AS (
             SELECT s.id, {ACTIVITY} AS k, s.create_time
               FROM {s}.sessions s
              WHERE s.app_name = $1 AND s.user_id = $2 AND {ACTIVITY} <= $3::float8
                AND ($4::float8 IS NULL OR ({ACTIVITY}, s.id) < ($4::float8, $5::text))
                AND {archive_filter}
              ORDER BY {ACTIVITY} DESC, s.id DESC
              LIMIT $6::int8
         ), moved AS (
             SELECT s.id, m.k, s.create_time
               FROM {s}.sessions s
              CROSS JOIN LATERAL (
                  SELECT COALESCE(
                      (SELECT {EVENT_TIME} FROM {s}.events e
                        WHERE e.app_name = s.app_name AND e.user_id = s.user_id
                          AND e.session_id = s.id AND {EVENT_TIME} <= $3::float8
                        ORDER BY e.\"timestamp\" DESC, e.event_ts DESC NULLS LAST LIMIT 1),
                      CASE WHEN extract(epoch FROM s.create_time)::float8 <= $3::float8
                           THEN extract(epoch FROM s.create_time)::float8 END) AS k
              ) m
              WHERE s.app_name = $1 AND s.user_id = $2 AND {ACTIVITY} > $3::float8
                AND m.k IS NOT NULL
                AND ($4::float8 IS NULL OR (m.k, s.id) < ($4::float8, $5::text))
                AND {archive_filter}
         ), page AS (
             SELECT * FROM untouched UNION ALL SELECT * FROM moved
              ORDER BY k DESC, id DESC LIMIT $6::int8
         )
         SELECT p.id, p.k, c.title, first_text.text, last_text.text,
                (SELECT count(*) FROM {s}.events e
                  WHERE e.app_name = $1 AND e.user_id = $2 AND e.session_id = p.id
                    AND {s}.adk_postgres_event_text(e.event_data) IS NOT NULL),
                extract(epoch FROM p.create_time)::float8,
                extract(epoch FROM c.archived_at)::float8
           FROM page p
           LEFT JOIN {s}.conversations c
             ON c.app_name = $1 AND c.user_id = $2 AND c.session_id = p.id
           LEFT JOIN LATERAL (
               SELECT {s}.adk_postgres_event_text(e.event_data) AS text FROM {s}.events e
                WHERE e.app_name = $1 AND e.user_id = $2 AND e.session_id = p.id
                  AND c.title IS NULL AND e.event_data -> 'content' ->> 'role' = 'user'
                  AND {s}.adk_postgres_event_text(e.event_data) IS NOT NULL
                ORDER BY e.\"timestamp\", e.event_ts NULLS FIRST, e.id LIMIT 1
           ) first_text ON true
           LEFT JOIN LATERAL (
               SELECT {s}.adk_postgres_event_text(e.event_data) AS text FROM {s}.events e
                WHERE e.app_name = $1 AND e.user_id = $2 AND e.session_id = p.id
                  AND {s}.adk_postgres_event_text(e.event_data) IS NOT NULL
                ORDER BY e.\"timestamp\" DESC, e.event_ts DESC NULLS LAST, e.id DESC LIMIT 1
           ) last_text ON true
          ORDER BY p.k DESC, p.id DESC"
    )
}

/// Sessions of app `$1` (and user `$2`, or every user when `by_user` is false and `$2` is
/// NULL) whose state contains `$3`, newest activity first, after the cursor (`$4` key, `$5`
/// user, `$6` session id), `$7` rows.
fn by_state(s: &str, by_user: bool) -> String {
    let user = if by_user {
        "s.user_id = $2::text"
    } else {
        "$2::text IS NULL"
    };
    format!(
        "SELECT s.user_id, s.id, {ACTIVITY} AS k
           FROM {s}.sessions s
          WHERE s.app_name = $1 AND {user} AND s.state @> $3::jsonb
            AND ($4::float8 IS NULL
                 OR ({ACTIVITY}, s.user_id, s.id) < ($4::float8, $5::text, $6::text))
          ORDER BY {ACTIVITY} DESC, s.user_id DESC, s.id DESC
          LIMIT $7::int8"
    )
}

/// Full-text search of one user's events (`$1` app, `$2` user) for the web-search style query
/// `$3` in text search configuration `language` (a checked name, pasted as a literal so that
/// a search index built for it matches), best match first, after the cursor (`$4` rank, `$5`
/// time, `$6` session id, `$7` event id), `$8` rows. Archived conversations only when `$9`.
///
/// The snippet is made from the HTML-escaped text, so only its `<mark>` tags are markup.
pub(super) fn search(s: &str, language: &str) -> String {
    let doc =
        format!("to_tsvector('{language}'::regconfig, {s}.adk_postgres_event_text(e.event_data))");
    let escaped = format!(
        "replace(replace(replace({s}.adk_postgres_event_text(e.event_data), \
         '&', '&amp;'), '<', '&lt;'), '>', '&gt;')"
    );
    format!(
        "WITH q AS (SELECT websearch_to_tsquery('{language}'::regconfig, $3::text) AS q),
         hits AS (
             SELECT e.session_id, e.id, {EVENT_TIME} AS ts, ts_rank({doc}, q.q) AS rank,
                    e.event_data ->> 'author' AS author, e.event_data, q.q
               FROM {s}.events e, q
              WHERE e.app_name = $1 AND e.user_id = $2 AND {doc} @@ q.q
                AND ($9::bool OR NOT EXISTS (
                     SELECT 1 FROM {s}.conversations c WHERE c.app_name = $1
                        AND c.user_id = $2 AND c.session_id = e.session_id
                        AND c.archived_at IS NOT NULL))
         )
         SELECT e.session_id, e.id, e.ts, e.rank, e.author,
                ts_headline('{language}'::regconfig, {escaped}, e.q,
                            'StartSel=<mark>, StopSel=</mark>, MaxWords=24, MinWords=8, \
                             MaxFragments=2, FragmentDelimiter=\" … \"')
           FROM hits e
          WHERE $4::float4 IS NULL
             OR (e.rank, e.ts, e.session_id, e.id) < ($4::float4, $5::float8, $6::text, $7::text)
          ORDER BY e.rank DESC, e.ts DESC, e.session_id DESC, e.id DESC
          LIMIT $8::int8"
    )
}

pub(super) struct ConversationSql {
    pub list: String,
    pub list_archived: String,
    pub by_state_user: String,
    pub by_state_app: String,
    /// Sets (`$4` text) or clears (`$4` NULL) a title; no row when there is no such session.
    pub set_title: String,
    /// Archives (`$4` true, keeping an earlier archive time) or restores; no row when there is
    /// no such session.
    pub set_archived: String,
    pub language_exists: String,
}

impl ConversationSql {
    pub fn new(schema: &str) -> Self {
        let s = &quote_ident(schema);
        let upsert = |columns: &str, values: &str, update: &str| {
            format!(
                "INSERT INTO {s}.conversations AS t (app_name, user_id, session_id, {columns})
                 SELECT $1, $2, $3, {values} FROM {s}.sessions s
                  WHERE s.app_name = $1 AND s.user_id = $2 AND s.id = $3
                 ON CONFLICT (app_name, user_id, session_id) DO UPDATE SET {update}
                 RETURNING true"
            )
        };
        ConversationSql {
            list: list(s, false),
            list_archived: list(s, true),
            by_state_user: by_state(s, true),
            by_state_app: by_state(s, false),
            set_title: upsert("title", "$4::text", "title = EXCLUDED.title"),
            set_archived: upsert(
                "archived_at",
                "CASE WHEN $4::bool THEN now() END",
                "archived_at = CASE WHEN $4::bool THEN COALESCE(t.archived_at, now()) END",
            ),
            language_exists:
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_ts_config \
                              WHERE cfgname = $1::text AND pg_catalog.pg_ts_config_is_visible(oid))"
                    .to_string(),
        }
    }
}
