//! The SQL text of the operations, built per schema (the schema quoted, values as parameters).

use crate::ident::quote_ident;
use crate::sessions::sql::NEWEST_FIRST;

/// `x.app_name` restricted to `$1` (NULL: every app).
fn app_filter(alias: &str) -> String {
    format!("($1::text IS NULL OR {alias}.app_name = $1::text)")
}

/// Session `alias` idle since before the epoch `cutoff` (a parameter, or `NULL`: never).
fn idle(alias: &str, cutoff: &str) -> String {
    format!(
        "({cutoff}::float8 IS NOT NULL
          AND {alias}.update_time < (to_timestamp({cutoff}::float8) AT TIME ZONE 'UTC'))"
    )
}

/// Artifact file `f` is session-scoped and its session is gone (or idle before `cutoff`,
/// which a dry run counts as gone).
fn orphan_file(s: &str, cutoff: &str) -> String {
    format!(
        "f.session_id <> '' AND {app}
         AND NOT EXISTS (SELECT 1 FROM {s}.sessions s
                          WHERE s.app_name = f.app_name AND s.user_id = f.user_id
                            AND s.id = f.session_id AND NOT {idle})",
        app = app_filter("f"),
        idle = idle("s", cutoff),
    )
}

/// Every admin statement, with the schema filled in.
#[derive(Debug, Clone)]
pub struct AdminSql {
    pub applied_migrations: String,
    pub stats_apps: String,
    pub stats_totals: String,
    pub dry_idle: String,
    pub dry_events: String,
    pub dry_artifacts: String,
    pub dry_contents: String,
    pub fs_queued: String,
    pub prune_idle: String,
    pub prune_events: String,
    pub prune_artifacts: String,
    pub contents_left: String,
    pub orphan_contents: String,
    pub delete_contents: String,
    /// A2A tasks per state `(0, state, n)` and feedback `(1, NULL, n)`.
    pub stats_a2a: String,
    /// `$1` cutoff (epoch s): finished tasks not updated since, and their feedback.
    pub dry_tasks: String,
    /// `$1` cutoff, `$2` batch size: one batch of those deleted; `(tasks, feedback)`.
    pub prune_tasks: String,
    /// `$1` app, `$2` cutoff: per app, conversations archived before it and their events.
    pub dry_archived: String,
    /// `$1` app, `$2` cutoff, `$3` batch size: one batch of those sessions deleted; per app,
    /// sessions and events.
    pub prune_archived: String,
}

/// One batch of a prune: the sessions `victims` selects (app_name, user_id, id, with its own
/// LIMIT and row locks) deleted, their events going with them (ON DELETE CASCADE); per app,
/// the sessions deleted and the events they had (`events`, a count for session `g`).
fn delete_sessions(s: &str, victims: &str, events: &str) -> String {
    format!(
        "WITH victims AS ({victims}), gone AS (
            DELETE FROM {s}.sessions s USING victims v
             WHERE s.app_name = v.app_name AND s.user_id = v.user_id AND s.id = v.id
            RETURNING s.app_name, s.user_id, s.id
         )
         SELECT g.app_name::text, count(*), COALESCE(sum({events}), 0)::int8
           FROM gone g GROUP BY 1"
    )
}

/// Conversation `alias` was archived before the epoch `cutoff`.
fn archived_before(alias: &str, cutoff: &str) -> String {
    format!("{alias}.archived_at < to_timestamp({cutoff}::float8)")
}

/// A2A task `t` is finished (it never changes again) and was last saved before `cutoff`.
fn finished_task(cutoff: &str) -> String {
    format!(
        "t.state IN ('TASK_STATE_COMPLETED', 'TASK_STATE_FAILED', 'TASK_STATE_CANCELED',
                     'TASK_STATE_REJECTED')
         AND t.updated_at < to_timestamp({cutoff}::float8)"
    )
}

impl AdminSql {
    pub fn new(schema: &str) -> Self {
        let s = quote_ident(schema);
        let window = format!(
            "row_number() OVER (PARTITION BY e.app_name, e.user_id, e.session_id {NEWEST_FIRST})"
        );
        let session_events = |alias: &str| {
            format!(
                "(SELECT count(*) FROM {s}.events e WHERE e.app_name = {alias}.app_name
                    AND e.user_id = {alias}.user_id AND e.session_id = {alias}.id)"
            )
        };
        let unreferenced = format!(
            "NOT EXISTS (SELECT 1 FROM {s}.artifact_versions v WHERE v.content_sha256 = c.sha256)"
        );
        AdminSql {
            applied_migrations: format!(
                "SELECT version, name,
                        to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
                   FROM {s}.adk_postgres_migrations ORDER BY version"
            ),
            // $1 app (NULL: all). Per app: users (any table naming them), sessions, events,
            // artifact files, versions, bytes of the distinct contents its versions use,
            // memory entries.
            stats_apps: format!(
                "WITH users AS (
                    SELECT app_name::text, user_id::text FROM {s}.sessions
                    UNION SELECT app_name::text, user_id::text FROM {s}.user_states
                    UNION SELECT app_name, user_id FROM {s}.artifact_files
                    UNION SELECT app_name, user_id FROM {s}.memory_entries
                 ), apps AS (
                    SELECT app_name FROM users UNION SELECT app_name::text FROM {s}.app_states
                 ), ss AS (SELECT app_name::text, count(*) AS n FROM {s}.sessions GROUP BY 1
                 ), ev AS (SELECT app_name::text, count(*) AS n FROM {s}.events GROUP BY 1
                 ), af AS (SELECT app_name, count(*) AS n FROM {s}.artifact_files GROUP BY 1
                 ), av AS (SELECT app_name, count(*) AS n FROM {s}.artifact_versions GROUP BY 1
                 ), ab AS (
                    SELECT u.app_name, sum(c.size) AS n
                      FROM (SELECT DISTINCT app_name, content_sha256 FROM {s}.artifact_versions) u
                      JOIN {s}.artifact_contents c ON c.sha256 = u.content_sha256
                     GROUP BY 1
                 ), me AS (SELECT app_name, count(*) AS n FROM {s}.memory_entries GROUP BY 1)
                 SELECT a.app_name,
                        (SELECT count(*) FROM users u WHERE u.app_name = a.app_name),
                        COALESCE(ss.n, 0), COALESCE(ev.n, 0), COALESCE(af.n, 0), COALESCE(av.n, 0),
                        COALESCE(ab.n, 0)::int8, COALESCE(me.n, 0)
                   FROM apps a
                   LEFT JOIN ss USING (app_name) LEFT JOIN ev USING (app_name)
                   LEFT JOIN af USING (app_name) LEFT JOIN av USING (app_name)
                   LEFT JOIN ab USING (app_name) LEFT JOIN me USING (app_name)
                  WHERE {app}
                  ORDER BY a.app_name",
                app = app_filter("a"),
            ),
            // $1 app (NULL: all), $2 table names. Distinct user ids, the distinct contents
            // the selected apps use (count, bytes), every stored content (count, bytes), and
            // one row per existing table: (name, total bytes, estimated rows).
            stats_totals: format!(
                "SELECT 0::int2 AS kind, NULL::text AS name,
                        (SELECT count(DISTINCT user_id) FROM (
                            SELECT user_id::text FROM {s}.sessions f WHERE {app}
                            UNION SELECT user_id::text FROM {s}.user_states f WHERE {app}
                            UNION SELECT user_id FROM {s}.artifact_files f WHERE {app}
                            UNION SELECT user_id FROM {s}.memory_entries f WHERE {app}) u) AS a,
                        (SELECT count(*) FROM {s}.artifact_contents c WHERE c.sha256 IN
                            (SELECT content_sha256 FROM {s}.artifact_versions f WHERE {app})) AS b,
                        (SELECT COALESCE(sum(c.size), 0)::int8 FROM {s}.artifact_contents c
                          WHERE c.sha256 IN
                            (SELECT content_sha256 FROM {s}.artifact_versions f WHERE {app})) AS c,
                        (SELECT count(*) FROM {s}.artifact_contents) AS d,
                        (SELECT COALESCE(sum(size), 0)::int8 FROM {s}.artifact_contents) AS e
                 UNION ALL
                 SELECT 1::int2, t.name, pg_total_relation_size(c.oid),
                        CASE WHEN c.reltuples >= 0 THEN c.reltuples::int8 END, NULL, NULL, NULL
                   FROM unnest($2::text[]) AS t(name)
                   JOIN pg_class c ON c.oid = to_regclass(format('%I.%I', {schema_lit}, t.name))
                  ORDER BY 1",
                app = app_filter("f"),
                schema_lit = "$3::text",
            ),
            // $1 app, $2 cutoff: per app, idle sessions and their events.
            dry_idle: format!(
                "SELECT s.app_name::text, count(*), COALESCE(sum({events}), 0)::int8
                   FROM {s}.sessions s
                  WHERE {app} AND {idle}
                  GROUP BY 1 ORDER BY 1",
                events = session_events("s"),
                app = app_filter("s"),
                idle = idle("s", "$2"),
            ),
            // $1 app, $2 cutoff, $3 events to keep: per app, events beyond the newest $3 of
            // each session that the idle criterion keeps.
            dry_events: format!(
                "SELECT r.app_name::text, count(*)
                   FROM (SELECT e.app_name, {window} AS rn
                           FROM {s}.events e
                           JOIN {s}.sessions s ON s.app_name = e.app_name
                                AND s.user_id = e.user_id AND s.id = e.session_id
                          WHERE {app} AND NOT {idle}) r
                  WHERE r.rn > $3::int8
                  GROUP BY 1 ORDER BY 1",
                app = app_filter("s"),
                idle = idle("s", "$2"),
            ),
            // $1 app, $2 cutoff: per app, orphaned artifact files and their versions.
            dry_artifacts: format!(
                "WITH orphan AS (
                    SELECT f.app_name, f.user_id, f.session_id, f.filename
                      FROM {s}.artifact_files f WHERE {orphan}
                 )
                 SELECT o.app_name, count(*),
                        (SELECT count(*) FROM {s}.artifact_versions v
                          WHERE v.app_name = o.app_name AND (v.user_id, v.session_id, v.filename)
                                IN (SELECT user_id, session_id, filename FROM orphan x
                                     WHERE x.app_name = o.app_name))
                   FROM orphan o GROUP BY 1 ORDER BY 1",
                orphan = orphan_file(&s, "$2"),
            ),
            // $1 app, $2 cutoff, $3 also count contents no version uses now: the contents a
            // run would delete (count, bytes, how many are files).
            dry_contents: format!(
                "WITH orphan AS (
                    SELECT f.app_name, f.user_id, f.session_id, f.filename
                      FROM {s}.artifact_files f WHERE {orphan}
                 ), freed AS (
                    SELECT c.sha256, c.size, c.storage FROM {s}.artifact_contents c
                     WHERE c.sha256 IN (SELECT v.content_sha256 FROM {s}.artifact_versions v
                                          JOIN orphan o USING (app_name, user_id, session_id,
                                                               filename))
                       AND NOT EXISTS (
                           SELECT 1 FROM {s}.artifact_versions v
                            WHERE v.content_sha256 = c.sha256
                              AND NOT EXISTS (SELECT 1 FROM orphan o
                                               WHERE o.app_name = v.app_name
                                                 AND o.user_id = v.user_id
                                                 AND o.session_id = v.session_id
                                                 AND o.filename = v.filename))
                    UNION
                    SELECT c.sha256, c.size, c.storage FROM {s}.artifact_contents c
                     WHERE $3::bool AND {unreferenced}
                 )
                 SELECT count(*), COALESCE(sum(size), 0)::int8,
                        count(*) FILTER (WHERE storage = 'fs')
                   FROM freed",
                orphan = orphan_file(&s, "$2"),
            ),
            fs_queued: format!("SELECT count(*) FROM {s}.artifact_fs_garbage"),
            // $1 app, $2 cutoff, $3 batch size. One batch: sessions idle since before the
            // cutoff (rows an appender holds are skipped; a row updated meanwhile is
            // re-checked), their events going with them (ON DELETE CASCADE).
            // Per app: sessions deleted, events they had.
            prune_idle: delete_sessions(
                &s,
                &format!(
                    "SELECT s.app_name, s.user_id, s.id FROM {s}.sessions s
                      WHERE {app} AND {idle}
                      ORDER BY s.app_name, s.user_id, s.id
                      LIMIT $3::int8
                      FOR UPDATE SKIP LOCKED",
                    app = app_filter("s"),
                    idle = idle("s", "$2"),
                ),
                &session_events("g"),
            ),
            // $1 app, $2 events to keep, $3 batch size, $4..$6 the last session of the
            // previous batch (NULL: start). One batch of sessions in key order: delete their
            // events beyond the newest $2, in exactly the order `num_recent_events` reads.
            // Rows: (0, app, events deleted) per app, and (1, last session key).
            prune_events: format!(
                "WITH batch AS (
                    SELECT s.app_name, s.user_id, s.id FROM {s}.sessions s
                     WHERE {app}
                       AND ($4::text IS NULL
                            OR (s.app_name, s.user_id, s.id) > ($4::text, $5::text, $6::text))
                     ORDER BY s.app_name, s.user_id, s.id
                     LIMIT $3::int8
                 ), ranked AS (
                    SELECT e.app_name, e.user_id, e.session_id, e.id, {window} AS rn
                      FROM {s}.events e
                      JOIN batch b ON e.app_name = b.app_name AND e.user_id = b.user_id
                                  AND e.session_id = b.id
                 ), gone AS (
                    DELETE FROM {s}.events e USING ranked r
                     WHERE r.rn > $2::int8 AND e.id = r.id AND e.app_name = r.app_name
                       AND e.user_id = r.user_id AND e.session_id = r.session_id
                    RETURNING e.app_name
                 )
                 SELECT 0::int2, app_name::text, count(*), NULL::text, NULL::text
                   FROM gone GROUP BY 2
                 UNION ALL
                 (SELECT 1::int2, app_name::text, NULL, user_id::text, id::text FROM batch
                   ORDER BY app_name DESC, user_id DESC, id DESC LIMIT 1)",
                app = app_filter("s"),
            ),
            // $1 app, $2 batch size. One batch of artifact files whose session is gone; their
            // versions cascade and the V3 trigger deletes contents no version uses any more.
            // Rows: (0, app, files, versions) per app, and (1, …, hashes the versions used,
            // their count and bytes) to tell afterwards which contents went.
            prune_artifacts: format!(
                "WITH victims AS (
                    SELECT f.app_name, f.user_id, f.session_id, f.filename
                      FROM {s}.artifact_files f WHERE {orphan}
                     ORDER BY 1, 2, 3, 4
                     LIMIT $2::int8
                     FOR UPDATE SKIP LOCKED
                 ), vers AS (
                    SELECT v.app_name, v.content_sha256 FROM {s}.artifact_versions v
                      JOIN victims USING (app_name, user_id, session_id, filename)
                 ), gone AS (
                    DELETE FROM {s}.artifact_files f USING victims x
                     WHERE f.app_name = x.app_name AND f.user_id = x.user_id
                       AND f.session_id = x.session_id AND f.filename = x.filename
                    RETURNING f.app_name
                 )
                 SELECT 0::int2, g.app_name, count(*),
                        (SELECT count(*) FROM vers WHERE vers.app_name = g.app_name),
                        NULL::bytea[]
                   FROM gone g GROUP BY 2
                 UNION ALL
                 SELECT 1::int2, NULL, c.n, c.b, c.h
                   FROM (SELECT count(*) AS n, COALESCE(sum(size), 0)::int8 AS b,
                                array_agg(sha256) AS h
                           FROM {s}.artifact_contents
                          WHERE sha256 IN (SELECT content_sha256 FROM vers)) c",
                orphan = orphan_file(&s, "NULL"),
            ),
            // $1 hashes: how many of them are still stored, and their bytes.
            contents_left: format!(
                "SELECT count(*), COALESCE(sum(size), 0)::int8 FROM {s}.artifact_contents
                  WHERE sha256 = ANY ($1::bytea[])"
            ),
            // $1 the last hash of the previous batch (NULL: start), $2 batch size: contents no
            // version uses, locked (skipping those a concurrent save holds).
            orphan_contents: format!(
                "SELECT c.sha256 FROM {s}.artifact_contents c
                  WHERE ($1::bytea IS NULL OR c.sha256 > $1::bytea) AND {unreferenced}
                  ORDER BY c.sha256 LIMIT $2::int8
                  FOR UPDATE SKIP LOCKED"
            ),
            // $1 locked hashes: delete those still unused (checked again with a snapshot taken
            // after the locks, as the V3 trigger does); queue the files of `fs` ones.
            delete_contents: format!(
                "WITH d AS (
                    DELETE FROM {s}.artifact_contents c
                     WHERE c.sha256 = ANY ($1::bytea[]) AND {unreferenced}
                    RETURNING c.sha256, c.size, c.storage
                 ), g AS (
                    INSERT INTO {s}.artifact_fs_garbage (sha256)
                    SELECT sha256 FROM d WHERE storage = 'fs'
                    ON CONFLICT (sha256) DO NOTHING
                 )
                 SELECT count(*), COALESCE(sum(size), 0)::int8 FROM d"
            ),
            stats_a2a: format!(
                "SELECT 0::int2, state, count(*) FROM {s}.a2a_tasks GROUP BY state
                 UNION ALL
                 SELECT 1::int2, NULL::text, count(*) FROM {s}.a2a_task_feedback"
            ),
            dry_tasks: format!(
                "SELECT count(*),
                        (SELECT count(*) FROM {s}.a2a_task_feedback f JOIN {s}.a2a_tasks t
                            ON t.owner = f.owner AND t.task_id = f.task_id WHERE {finished})
                   FROM {s}.a2a_tasks t WHERE {finished}",
                finished = finished_task("$1"),
            ),
            prune_tasks: format!(
                "WITH victims AS (
                    SELECT t.owner, t.task_id FROM {s}.a2a_tasks t WHERE {finished}
                     ORDER BY t.updated_at LIMIT $2::int8 FOR UPDATE SKIP LOCKED
                 ), feedback AS (
                    SELECT count(*) AS n FROM {s}.a2a_task_feedback f JOIN victims v
                        ON v.owner = f.owner AND v.task_id = f.task_id
                 ), gone AS (
                    DELETE FROM {s}.a2a_tasks t USING victims v
                     WHERE t.owner = v.owner AND t.task_id = v.task_id RETURNING 1
                 )
                 SELECT (SELECT count(*) FROM gone), (SELECT n FROM feedback)",
                finished = finished_task("$1"),
            ),
            dry_archived: format!(
                "SELECT c.app_name::text, count(*), COALESCE(sum({events}), 0)::int8
                   FROM {s}.conversations c
                  WHERE {app} AND {archived}
                  GROUP BY 1 ORDER BY 1",
                events = session_events("c").replace("= c.id)", "= c.session_id)"),
                app = app_filter("c"),
                archived = archived_before("c", "$2"),
            ),
            // Like prune_idle: rows an appender holds are skipped until the next batch.
            prune_archived: delete_sessions(
                &s,
                &format!(
                    "SELECT s.app_name, s.user_id, s.id FROM {s}.conversations c
                       JOIN {s}.sessions s ON s.app_name = c.app_name AND s.user_id = c.user_id
                                          AND s.id = c.session_id
                      WHERE {app} AND {archived}
                      ORDER BY c.archived_at
                      LIMIT $3::int8
                      FOR UPDATE OF s SKIP LOCKED",
                    app = app_filter("c"),
                    archived = archived_before("c", "$2"),
                ),
                &session_events("g"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::OUR_TABLES;

    fn all_statements(sql: &AdminSql) -> Vec<&String> {
        vec![
            &sql.applied_migrations,
            &sql.stats_apps,
            &sql.stats_totals,
            &sql.dry_idle,
            &sql.dry_events,
            &sql.dry_artifacts,
            &sql.dry_contents,
            &sql.fs_queued,
            &sql.prune_idle,
            &sql.prune_events,
            &sql.prune_artifacts,
            &sql.contents_left,
            &sql.orphan_contents,
            &sql.delete_contents,
            &sql.dry_tasks,
            &sql.prune_tasks,
            &sql.dry_archived,
            &sql.prune_archived,
        ]
    }

    #[test]
    fn statements_qualify_every_table_with_the_quoted_schema() {
        let sql = AdminSql::new("ten\"ant");
        for text in all_statements(&sql) {
            assert!(text.contains("\"ten\"\"ant\"."), "{text}");
            for table in OUR_TABLES {
                for verb in ["FROM", "INTO", "JOIN"] {
                    assert!(!text.contains(&format!("{verb} {table} ")), "{text}");
                }
            }
        }
    }

    #[test]
    fn events_are_pruned_in_the_order_num_recent_events_reads() {
        let sql = AdminSql::new("public");
        assert!(sql.prune_events.contains(NEWEST_FIRST));
        assert!(sql.dry_events.contains(NEWEST_FIRST));
        assert!(crate::sessions::sql::SessionSql::new("public")
            .get_recent
            .contains(NEWEST_FIRST));
    }

    #[test]
    fn pruning_locks_nothing_an_appender_holds_and_never_touches_revision() {
        let sql = AdminSql::new("public");
        assert!(sql.prune_idle.contains("FOR UPDATE SKIP LOCKED"));
        assert!(sql.prune_artifacts.contains("FOR UPDATE SKIP LOCKED"));
        assert!(sql.orphan_contents.contains("FOR UPDATE SKIP LOCKED"));
        for text in all_statements(&sql) {
            assert!(!text.contains("revision"), "{text}");
            assert!(!text.contains("UPDATE public"), "{text}");
        }
        // A real run never treats an idle-but-present session's artifacts as orphaned.
        assert!(sql.prune_artifacts.contains("NULL::float8 IS NOT NULL"));
    }
}
