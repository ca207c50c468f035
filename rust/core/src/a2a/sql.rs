//! The text of every A2A statement, with the schema filled in once.

use crate::ident::quote_ident;

/// Rows strictly after the cursor (`$ts`, `$id`) in ListTasks order: status time descending
/// with NULL times last, then task id descending.
fn after_cursor(ts: &str, id: &str) -> String {
    format!(
        "CASE WHEN {ts}::int8 IS NULL THEN t.status_ts_ns IS NULL AND t.task_id < {id}::text \
         ELSE t.status_ts_ns IS NULL OR (t.status_ts_ns, t.task_id) < ({ts}::int8, {id}::text) END"
    )
}

/// The ListTasks statement; `$1` owner, `$2` context id (only `by_context`), then state,
/// updated-after (ns), cursor time, cursor id (`$7` true when there is a cursor), limit.
/// One round trip: the count of the whole filtered set and the page.
fn list(s: &str, by_context: bool) -> String {
    let context = if by_context {
        "AND t.context_id = $2::text"
    } else {
        "AND $2::text IS NULL"
    };
    let filter = format!(
        "t.owner = $1::text {context} \
         AND ($3::text IS NULL OR t.state = $3::text) \
         AND ($4::int8 IS NULL OR t.status_ts_ns >= $4::int8)"
    );
    let after = after_cursor("$5", "$6");
    format!(
        "SELECT c.total, p.status_ts_ns, p.task_id, p.task \
         FROM (SELECT count(*) AS total FROM {s}.a2a_tasks t WHERE {filter}) c \
         LEFT JOIN LATERAL ( \
             SELECT t.status_ts_ns, t.task_id, t.task FROM {s}.a2a_tasks t \
             WHERE {filter} AND (NOT $7::bool OR ({after})) \
             ORDER BY t.status_ts_ns DESC NULLS LAST, t.task_id DESC LIMIT $8::int8 \
         ) p ON true"
    )
}

pub(super) struct A2aSql {
    /// Inserts a new task, or returns the stored one (its version and bytes) unchanged.
    pub insert_task: String,
    /// Replaces a task if its version is still the one given; returns the new version.
    pub update_task: String,
    pub get_task: String,
    pub list_tasks: String,
    pub list_context_tasks: String,
    pub delete_task: String,
    /// Every task of a context (all owners, or one), with their feedback.
    pub delete_context: String,
    pub set_push: String,
    pub get_push: String,
    pub get_push_for_dispatch: String,
    pub delete_push: String,
    pub add_feedback: String,
    pub list_feedback: String,
}

impl A2aSql {
    pub fn new(schema: &str) -> Self {
        let s = quote_ident(schema);
        A2aSql {
            insert_task: format!(
                "WITH ins AS ( \
                     INSERT INTO {s}.a2a_tasks \
                         (owner, task_id, context_id, state, status_ts_ns, task) \
                     VALUES ($1::text, $2::text, $3::text, $4::text, $5::int8, $6::bytea) \
                     ON CONFLICT (owner, task_id) DO NOTHING RETURNING version) \
                 SELECT true, version, NULL::bytea FROM ins \
                 UNION ALL \
                 SELECT false, version, task FROM {s}.a2a_tasks \
                 WHERE owner = $1::text AND task_id = $2::text AND NOT EXISTS (SELECT 1 FROM ins)"
            ),
            update_task: format!(
                "UPDATE {s}.a2a_tasks SET context_id = $3::text, state = $4::text, \
                     status_ts_ns = $5::int8, task = $6::bytea, version = version + 1, \
                     updated_at = clock_timestamp() \
                 WHERE owner = $1::text AND task_id = $2::text AND version = $7::int8 \
                 RETURNING version"
            ),
            get_task: format!(
                "SELECT version, task FROM {s}.a2a_tasks WHERE owner = $1::text AND task_id = $2::text"
            ),
            list_tasks: list(&s, false),
            list_context_tasks: list(&s, true),
            delete_task: format!(
                "DELETE FROM {s}.a2a_tasks WHERE owner = $1::text AND task_id = $2::text RETURNING 1"
            ),
            delete_context: format!(
                "DELETE FROM {s}.a2a_tasks \
                 WHERE context_id = $1::text AND ($2::text IS NULL OR owner = $2::text) RETURNING 1"
            ),
            set_push: format!(
                "INSERT INTO {s}.a2a_push_configs (owner, task_id, config_id, config) \
                 VALUES ($1::text, $2::text, $3::text, $4::bytea) \
                 ON CONFLICT (owner, task_id, config_id) DO UPDATE \
                 SET config = EXCLUDED.config, updated_at = clock_timestamp()"
            ),
            get_push: format!(
                "SELECT config FROM {s}.a2a_push_configs WHERE owner = $1::text AND task_id = $2::text \
                 ORDER BY updated_at, config_id"
            ),
            get_push_for_dispatch: format!(
                "SELECT config FROM {s}.a2a_push_configs WHERE task_id = $1::text \
                 ORDER BY owner, updated_at, config_id"
            ),
            delete_push: format!(
                "DELETE FROM {s}.a2a_push_configs WHERE owner = $1::text AND task_id = $2::text \
                 AND ($3::text IS NULL OR config_id = $3::text) RETURNING 1"
            ),
            add_feedback: format!(
                "INSERT INTO {s}.a2a_task_feedback \
                     (feedback_id, owner, task_id, rating, text, metadata) \
                 SELECT $6::text, owner, task_id, $3::int2, $4::text, $5::jsonb FROM {s}.a2a_tasks \
                 WHERE owner = $1::text AND task_id = $2::text \
                 RETURNING extract(epoch FROM created_at)::float8"
            ),
            list_feedback: format!(
                "SELECT feedback_id, rating, text, metadata, extract(epoch FROM created_at)::float8 \
                 FROM {s}.a2a_task_feedback \
                 WHERE owner = $1::text AND task_id = $2::text \
                   AND ($3::text IS NULL OR (created_at, feedback_id) > ( \
                        SELECT a.created_at, a.feedback_id FROM {s}.a2a_task_feedback a \
                         WHERE a.feedback_id = $3::text)) \
                 ORDER BY created_at, feedback_id LIMIT $4::int8"
            ),
        }
    }
}
