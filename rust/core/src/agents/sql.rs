//! The text of every agent-registry statement, with the schema filled in once.

use crate::ident::quote_ident;

/// The columns of an agent as listed: name, current version, archived, usage count, and the
/// times (epoch seconds) last used, created, updated.
const AGENT_COLUMNS: &str = "a.name::text, a.current_version, \
     extract(epoch FROM a.archived_at)::float8, a.usage_count, \
     extract(epoch FROM a.last_used_at)::float8, extract(epoch FROM a.created_at)::float8, \
     extract(epoch FROM a.updated_at)::float8";

/// The agent row of a put: a new agent at version 1, or the next version of an existing one
/// (the row's lock, taken by ON CONFLICT DO UPDATE or UPDATE, orders concurrent puts).
const UPSERT: &str = "INSERT INTO {s}.agents AS a (name, current_version) VALUES ($1::text, 1) \
     ON CONFLICT (name) DO UPDATE \
     SET current_version = a.current_version + 1, updated_at = clock_timestamp() \
     RETURNING a.name, a.current_version";
/// Only a new agent (no row back when the name exists).
const CREATE: &str = "INSERT INTO {s}.agents AS a (name, current_version) VALUES ($1::text, 1) \
     ON CONFLICT (name) DO NOTHING RETURNING a.name, a.current_version";
/// Only an existing agent (no row back when there is none).
const UPDATE: &str = "UPDATE {s}.agents AS a \
     SET current_version = a.current_version + 1, updated_at = clock_timestamp() \
     WHERE a.name = $1::text RETURNING a.name, a.current_version";

/// A put: the agent row (`agent_row`), then the version row in the same statement. Returns
/// the new version; no row when `agent_row` wrote none.
fn put(s: &str, agent_row: &str) -> String {
    let agent_row = agent_row.replace("{s}", s);
    format!(
        "WITH a AS ({agent_row}) \
         INSERT INTO {s}.agent_versions (name, version, yaml) \
         SELECT a.name, a.current_version, $2::text FROM a RETURNING version"
    )
}

pub(super) struct AgentSql {
    /// New agent or next version: returns the version.
    pub put: String,
    /// New agent only: no row if it exists.
    pub create: String,
    /// Next version of an existing agent only: no row if there is none.
    pub update: String,
    pub list: String,
    /// One version (`$2`, NULL: the current one) with the agent's columns.
    pub show: String,
    /// Every version of an agent, newest first; no rows for an unknown agent.
    pub history: String,
    pub archive: String,
    pub restore: String,
    /// What a server needs on each load: the current version, whether archived, and the YAML
    /// only when the current version is not `$2` (the one the server already has).
    pub current: String,
    /// Adds `$2[i]` uses to agent `$1[i]`.
    pub record_usage: String,
}

impl AgentSql {
    pub fn new(schema: &str) -> Self {
        let s = quote_ident(schema);
        AgentSql {
            put: put(&s, UPSERT),
            create: put(&s, CREATE),
            update: put(&s, UPDATE),
            list: format!(
                "SELECT {AGENT_COLUMNS} FROM {s}.agents a \
                 WHERE $1::bool OR a.archived_at IS NULL ORDER BY a.name"
            ),
            show: format!(
                "SELECT {AGENT_COLUMNS}, v.version, v.yaml, extract(epoch FROM v.created_at)::float8 \
                 FROM {s}.agents a JOIN {s}.agent_versions v \
                   ON v.name = a.name AND v.version = COALESCE($2::int4, a.current_version) \
                 WHERE a.name = $1::text"
            ),
            history: format!(
                "SELECT v.version, extract(epoch FROM v.created_at)::float8, \
                        octet_length(v.yaml)::int8 \
                 FROM {s}.agent_versions v WHERE v.name = $1::text ORDER BY v.version DESC"
            ),
            archive: format!(
                "UPDATE {s}.agents SET archived_at = COALESCE(archived_at, clock_timestamp()), \
                     updated_at = clock_timestamp() \
                 WHERE name = $1::text RETURNING 1"
            ),
            restore: format!(
                "UPDATE {s}.agents SET archived_at = NULL, updated_at = clock_timestamp() \
                 WHERE name = $1::text RETURNING 1"
            ),
            current: format!(
                "SELECT a.current_version, a.archived_at IS NOT NULL, \
                        CASE WHEN a.archived_at IS NULL \
                              AND a.current_version IS DISTINCT FROM $2::int4 \
                             THEN (SELECT v.yaml FROM {s}.agent_versions v \
                                    WHERE v.name = a.name AND v.version = a.current_version) \
                        END \
                 FROM {s}.agents a WHERE a.name = $1::text"
            ),
            record_usage: format!(
                "UPDATE {s}.agents a SET usage_count = a.usage_count + u.uses, \
                     last_used_at = clock_timestamp() \
                 FROM unnest($1::text[], $2::int8[]) AS u(name, uses) WHERE a.name = u.name \
                 RETURNING 1"
            ),
        }
    }
}
