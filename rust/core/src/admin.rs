//! Operations on a store's schema: migration status, health checks (doctor), statistics and
//! pruning. Used by the `adk-postgres migrate|doctor|stats|prune` commands.
//!
//! Statements are built per schema like `sql.rs` does (the schema quoted, values as
//! parameters). None of these runs on a hot path, so they are sent unnamed and never cached
//! (`statement::UNNAMED`: one-off, PgBouncer-safe).
//!
//! Pruning deletes in batches, each batch one transaction, so a crash mid-run leaves
//! consistent data and appenders wait at most for one batch. It never changes a session's
//! `revision`: pruning events is not an append, so sessions held by running agents stay
//! writable (see [`Store::prune`]).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio_postgres::config::Host;
use tokio_postgres::Row;

use crate::artifacts::ArtifactBackend;
use crate::config::StoreConfig;
use crate::error::{ErrorKind, Result, StoreError};
use crate::migrations::{latest_version, MIGRATIONS};
use crate::pool::PoolStatus;
use crate::sql::{quote_ident, NEWEST_FIRST};
use crate::statement::{On, Param, UNNAMED};
use crate::store::Store;

/// Every table the migrations create (and so every table `stats` sizes).
pub const OUR_TABLES: &[&str] = &[
    "adk_internal_metadata",
    "adk_postgres_migrations",
    "sessions",
    "events",
    "app_states",
    "user_states",
    "artifact_files",
    "artifact_versions",
    "artifact_contents",
    "artifact_chunks",
    "artifact_fs_garbage",
    "memory_entries",
    "memory_tombstones",
    "tenants",
];

/// The tables the services read and write at run time (a runtime role needs DML on these).
const DATA_TABLES: &[&str] = &[
    "sessions",
    "events",
    "app_states",
    "user_states",
    "artifact_files",
    "artifact_versions",
    "artifact_contents",
    "artifact_chunks",
    "artifact_fs_garbage",
    "memory_entries",
    "memory_tombstones",
];

/// Extensions the memory service uses when present.
const EXTENSIONS: &[&str] = &["pg_trgm", "vector"];

/// Default number of sessions (or artifacts, or contents) per prune batch.
pub const DEFAULT_BATCH_SIZE: i64 = 1000;

// ---------------------------------------------------------------------------------------------
// SQL

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
                        GREATEST(c.reltuples, 0)::int8, NULL, NULL, NULL
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
            prune_idle: format!(
                "WITH victims AS (
                    SELECT s.app_name, s.user_id, s.id FROM {s}.sessions s
                     WHERE {app} AND {idle}
                     ORDER BY s.app_name, s.user_id, s.id
                     LIMIT $3::int8
                     FOR UPDATE SKIP LOCKED
                 ), gone AS (
                    DELETE FROM {s}.sessions s USING victims v
                     WHERE s.app_name = v.app_name AND s.user_id = v.user_id AND s.id = v.id
                    RETURNING s.app_name, s.user_id, s.id
                 )
                 SELECT g.app_name::text, count(*), COALESCE(sum({events}), 0)::int8
                   FROM gone g GROUP BY 1",
                app = app_filter("s"),
                idle = idle("s", "$2"),
                events = session_events("g"),
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
        }
    }
}

async fn rows<'a>(on: impl Into<On<'a>>, sql: &str, params: &[&dyn Param]) -> Result<Vec<Row>> {
    UNNAMED.query(on, sql, params).await
}

async fn one<'a>(on: impl Into<On<'a>>, sql: &str, params: &[&dyn Param]) -> Result<Row> {
    UNNAMED.query_one(on, sql, params).await
}

// ---------------------------------------------------------------------------------------------
// Migration status

/// A migration recorded in the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedMigration {
    pub version: i32,
    pub name: String,
    /// UTC, ISO 8601; `None` if not recorded.
    pub applied_at: Option<String>,
}

/// Which migrations a schema has and which this build would still apply.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationStatus {
    pub schema: String,
    /// Highest applied version; 0 when none (or no migrations table).
    pub current: i32,
    pub latest: i32,
    pub applied: Vec<AppliedMigration>,
    /// `(version, name)` of migrations not applied yet.
    pub pending: Vec<(i32, &'static str)>,
}

impl MigrationStatus {
    fn from_applied(schema: &str, applied: Vec<AppliedMigration>) -> Self {
        let current = applied.iter().map(|m| m.version).max().unwrap_or(0);
        let pending = MIGRATIONS
            .iter()
            .filter(|m| !applied.iter().any(|a| a.version == m.version))
            .map(|m| (m.version, m.name))
            .collect();
        MigrationStatus {
            schema: schema.to_string(),
            current,
            latest: latest_version(),
            applied,
            pending,
        }
    }
}

async fn read_migration_status(
    on: On<'_>,
    sql: &AdminSql,
    schema: &str,
) -> Result<MigrationStatus> {
    let exists = one(
        on,
        "SELECT to_regclass(format('%I.adk_postgres_migrations', $1::text)) IS NOT NULL",
        &[&schema],
    )
    .await?;
    let mut applied = Vec::new();
    if exists.get::<_, bool>(0) {
        for row in rows(on, &sql.applied_migrations, &[]).await? {
            applied.push(AppliedMigration {
                version: row.get(0),
                name: row.get(1),
                applied_at: row.get(2),
            });
        }
    }
    Ok(MigrationStatus::from_applied(schema, applied))
}

/// Fails unless the schema is exactly at this build's version (`or_newer`: or above it).
fn require_current(status: &MigrationStatus, or_newer: bool) -> Result<()> {
    let (current, latest, schema) = (status.current, status.latest, &status.schema);
    if current < latest {
        let what = if current == 0 {
            "has no adk-postgres tables".to_string()
        } else {
            format!("is at version {current}, this adk-postgres needs {latest}")
        };
        return Err(StoreError::new(
            ErrorKind::Schema,
            format!("schema {schema:?} {what}: run `adk-postgres migrate` first"),
        ));
    }
    if current > latest && !or_newer {
        return Err(StoreError::new(
            ErrorKind::Schema,
            format!(
                "schema {schema:?} is at version {current}, newer than this adk-postgres \
                 (version {latest}): upgrade adk-postgres"
            ),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Doctor

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    Ok,
    Warn,
    Fail,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Warn => "warn",
            CheckStatus::Fail => "fail",
        }
    }
}

/// One finding of the doctor: what was checked, how it went, what to do about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub status: CheckStatus,
    pub detail: String,
    pub advice: Option<String>,
}

impl Check {
    fn new(name: &'static str, status: CheckStatus, detail: impl Into<String>) -> Self {
        Check {
            name,
            status,
            detail: detail.into(),
            advice: None,
        }
    }

    fn advise(mut self, advice: impl Into<String>) -> Self {
        self.advice = Some(advice.into());
        self
    }
}

/// An extension as the server reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtensionInfo {
    pub name: String,
    /// Version installable on the server (`None`: not available).
    pub available: Option<String>,
    /// Version installed in this database (`None`: not installed).
    pub installed: Option<String>,
}

/// Pool configuration and counters.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolInfo {
    pub status: PoolStatus,
    pub connect_timeout_s: f64,
    pub acquire_timeout_s: f64,
    pub statement_cache: bool,
}

/// Everything the doctor found. Facts are `None` when the check could not run.
#[derive(Debug, Clone, PartialEq)]
pub struct DoctorReport {
    /// Where the store points (no password).
    pub target: String,
    pub checks: Vec<Check>,
    pub connect_ms: Option<f64>,
    pub round_trip_ms: Option<f64>,
    pub server_version: Option<String>,
    pub user: Option<String>,
    pub superuser: Option<bool>,
    /// TLS protocol and cipher, when the connection is encrypted.
    pub tls: Option<String>,
    pub extensions: Vec<ExtensionInfo>,
    pub pool: Option<PoolInfo>,
    pub migrations: Option<MigrationStatus>,
    pub can_create: Option<bool>,
}

impl DoctorReport {
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == CheckStatus::Fail)
    }
}

/// Why a connection attempt failed, as far as the advice is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    Refused,
    NoSocket,
    Timeout,
    Auth,
    NoDatabase,
    TooManyConnections,
    Starting,
    Tls,
    Other,
}

/// Classifies a failed connect by SQLSTATE, then by the I/O error underneath.
pub fn classify_connect_error(err: &tokio_postgres::Error) -> ConnectFailure {
    if let Some(db) = err.as_db_error() {
        return match db.code().code() {
            "28P01" | "28000" => ConnectFailure::Auth,
            "3D000" => ConnectFailure::NoDatabase,
            "53300" => ConnectFailure::TooManyConnections,
            "57P03" => ConnectFailure::Starting,
            _ => ConnectFailure::Other,
        };
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
                std::io::ErrorKind::NotFound => ConnectFailure::NoSocket,
                std::io::ErrorKind::TimedOut => ConnectFailure::Timeout,
                _ => ConnectFailure::Other,
            };
        }
        source = cause.source();
    }
    let text = err.to_string().to_ascii_lowercase();
    if text.contains("timeout") || text.contains("timed out") {
        ConnectFailure::Timeout
    } else if text.contains("tls") || text.contains("ssl") {
        ConnectFailure::Tls
    } else {
        ConnectFailure::Other
    }
}

/// Hosts (or socket directories), ports, database and user of a configuration.
struct Target {
    host: String,
    port: String,
    dbname: String,
    user: String,
}

impl Target {
    fn of(config: &StoreConfig) -> Self {
        let hosts: Vec<String> = config
            .pg
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let ports: Vec<String> = config.pg.get_ports().iter().map(u16::to_string).collect();
        let user = config.pg.get_user().unwrap_or("").to_string();
        Target {
            host: hosts.join(","),
            port: if ports.is_empty() {
                "5432".into()
            } else {
                ports.join(",")
            },
            dbname: config.pg.get_dbname().unwrap_or(&user).to_string(),
            user,
        }
    }

    fn is_local(config: &StoreConfig) -> bool {
        config.pg.get_hosts().iter().all(|h| match h {
            Host::Tcp(name) => matches!(name.as_str(), "localhost" | "127.0.0.1" | "::1"),
            #[cfg(unix)]
            Host::Unix(_) => true,
        })
    }
}

/// What to do about a failed connection.
fn connect_advice(failure: ConnectFailure, t: &Target) -> String {
    let (host, port, db, user) = (&t.host, &t.port, &t.dbname, &t.user);
    match failure {
        ConnectFailure::Refused => format!(
            "nothing accepts connections on {host}:{port}: is PostgreSQL running, and are host \
             and port in the URL right? (try `pg_isready -h {host} -p {port}`)"
        ),
        ConnectFailure::NoSocket => format!(
            "no PostgreSQL socket in {host} for port {port}: is the server running, and is \
             host= the directory it puts its socket in?"
        ),
        ConnectFailure::Timeout => format!(
            "{host}:{port} did not answer within the connect timeout: check the host name, \
             firewalls and the network path to the server"
        ),
        ConnectFailure::Auth => format!(
            "the server refused the login of user {user:?}: check user and password in the URL \
             (and the server's pg_hba.conf rules for this host and database)"
        ),
        ConnectFailure::NoDatabase => format!(
            "database {db:?} does not exist: create it (`createdb -h {host} -p {port} -U {user} \
             {db}` or `CREATE DATABASE \"{db}\"`) or fix the database name in the URL"
        ),
        ConnectFailure::TooManyConnections => "the server has no free connection slots: lower \
             pool sizes of the clients, or raise max_connections"
            .to_string(),
        ConnectFailure::Starting => {
            "the server is starting up or shutting down: try again in a moment".to_string()
        }
        ConnectFailure::Tls => "the TLS handshake failed: check sslmode and sslrootcert in the \
             URL (does the server have ssl = on? is its certificate signed by that root?)"
            .to_string(),
        ConnectFailure::Other => {
            format!("check host {host}, port {port}, database {db:?} and user {user:?} in the URL")
        }
    }
}

/// The schema check: current, pending migrations, or newer than this build.
fn schema_check(schema: &str, status: &MigrationStatus) -> Check {
    if status.current > status.latest {
        Check::new(
            "schema",
            CheckStatus::Fail,
            format!(
                "schema {schema:?} is at version {}, newer than this adk-postgres ({})",
                status.current, status.latest
            ),
        )
        .advise("upgrade adk-postgres to the version that migrated this schema")
    } else if !status.pending.is_empty() {
        let names: Vec<String> = status
            .pending
            .iter()
            .map(|(v, n)| format!("{v} {n}"))
            .collect();
        Check::new(
            "schema",
            CheckStatus::Fail,
            format!(
                "schema {schema:?} is at version {} of {}; pending: {}",
                status.current,
                status.latest,
                names.join(", ")
            ),
        )
        .advise("run `adk-postgres migrate` (with a role that may create in the schema)")
    } else {
        Check::new(
            "schema",
            CheckStatus::Ok,
            format!(
                "schema {schema:?} is at version {} (current)",
                status.current
            ),
        )
    }
}

fn millis(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

impl Store {
    /// Applied and pending migrations of this store's schema; changes nothing.
    pub async fn migration_status(&self) -> Result<MigrationStatus> {
        self.check_process()?;
        let conn = self.connection_unmigrated().await?;
        let sql = AdminSql::new(&self.config().options.schema);
        read_migration_status((&**conn).into(), &sql, &self.config().options.schema).await
    }

    /// Runs every health check; a failed check is reported, not raised. Changes nothing.
    pub async fn doctor(&self) -> Result<DoctorReport> {
        self.check_process()?;
        let config = self.config();
        let schema = &config.options.schema;
        let sql = AdminSql::new(schema);
        let mut report = DoctorReport {
            target: config.describe(),
            checks: Vec::new(),
            connect_ms: None,
            round_trip_ms: None,
            server_version: None,
            user: None,
            superuser: None,
            tls: None,
            extensions: Vec::new(),
            pool: None,
            migrations: None,
            can_create: None,
        };
        let target = Target::of(config);

        // Connectivity, on a connection of its own so the failure can be classified.
        let started = Instant::now();
        let tls = crate::tls::make_connector(config)?;
        let client = match config.pg.connect(tls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                client
            }
            Err(err) => {
                let failure = classify_connect_error(&err);
                let reason = StoreError::from(err);
                report.checks.push(
                    Check::new(
                        "connection",
                        CheckStatus::Fail,
                        format!("cannot connect ({}): {reason}", report.target),
                    )
                    .advise(connect_advice(failure, &target)),
                );
                return Ok(report);
            }
        };
        report.connect_ms = Some(millis(started));
        let mut trips = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            client.simple_query("SELECT 1").await?;
            trips.push(millis(t));
        }
        trips.sort_by(f64::total_cmp);
        let round_trip = trips[trips.len() / 2];
        report.round_trip_ms = Some(round_trip);
        report.checks.push(Check::new(
            "connection",
            CheckStatus::Ok,
            format!(
                "connected in {:.1} ms; round trip {round_trip:.2} ms (median of 5)",
                report.connect_ms.unwrap_or_default()
            ),
        ));

        // Server, role, TLS.
        let row = UNNAMED
            .query_one(
                &client,
                "SELECT current_setting('server_version'), current_user::text,
                        (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
                        (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()),
                        (SELECT version || ' ' || cipher FROM pg_stat_ssl
                          WHERE pid = pg_backend_pid() AND ssl)",
                &[],
            )
            .await?;
        let (version, user): (String, String) = (row.get(0), row.get(1));
        let superuser: Option<bool> = row.get(2);
        let ssl: Option<bool> = row.get(3);
        report.tls = row.get(4);
        let mut server = Check::new(
            "server",
            CheckStatus::Ok,
            format!(
                "PostgreSQL {version}; user {user:?}{}",
                if superuser == Some(true) {
                    " (superuser)"
                } else {
                    ""
                }
            ),
        );
        if superuser == Some(true) {
            server.status = CheckStatus::Warn;
            server = server.advise(
                "services run fine as a superuser, but a role with only the privileges it needs \
                 is safer (see the README's least-privilege section)",
            );
        }
        report.checks.push(server);
        report.server_version = Some(version);
        report.user = Some(user);
        report.superuser = superuser;
        report.checks.push(match (&report.tls, ssl) {
            (Some(tls), _) => Check::new("tls", CheckStatus::Ok, format!("in use: {tls}")),
            _ if Target::is_local(config) => {
                Check::new("tls", CheckStatus::Ok, "not in use (local connection)")
            }
            _ => Check::new(
                "tls",
                CheckStatus::Warn,
                "not in use: traffic is unencrypted",
            )
            .advise(
                "add sslmode=verify-full (with sslrootcert=… for a private CA) or at least \
                     sslmode=require to the URL",
            ),
        });

        // Extensions.
        let names: Vec<&str> = EXTENSIONS.to_vec();
        for row in UNNAMED
            .query(
                &client,
                "SELECT x.name, a.default_version::text, a.installed_version::text
                   FROM unnest($1::text[]) AS x(name)
                   LEFT JOIN pg_available_extensions a ON a.name = x.name
                  ORDER BY x.name",
                &[&names],
            )
            .await?
        {
            report.extensions.push(ExtensionInfo {
                name: row.get(0),
                available: row.get(1),
                installed: row.get(2),
            });
        }
        for ext in &report.extensions {
            let (purpose, install) = match ext.name.as_str() {
                "pg_trgm" => (
                    "fuzzy memory search",
                    "install the server's contrib package (e.g. `apt install postgresql-contrib`)",
                ),
                _ => (
                    "vector memory search",
                    "install pgvector (e.g. `apt install postgresql-<major>-pgvector`, or an \
                     image with it such as pgvector/pgvector)",
                ),
            };
            let name: &'static str = if ext.name == "pg_trgm" {
                "extension pg_trgm"
            } else {
                "extension vector"
            };
            report.checks.push(match (&ext.available, &ext.installed) {
                (_, Some(v)) => Check::new(name, CheckStatus::Ok, format!("installed ({v})")),
                (Some(v), None) => Check::new(
                    name,
                    CheckStatus::Ok,
                    format!(
                        "available ({v}), not installed: the memory service creates it when the \
                         role may, else run `CREATE EXTENSION {}` as an owner",
                        ext.name
                    ),
                ),
                (None, None) => Check::new(
                    name,
                    CheckStatus::Warn,
                    format!("not available on the server: no {purpose}"),
                )
                .advise(format!("{install}, then `CREATE EXTENSION {}`", ext.name)),
            });
        }

        // The pool: settings, and one connection taken through it.
        let pool_check = match self.connection_unmigrated().await {
            Ok(conn) => {
                drop(conn);
                let status = self.pool_status();
                let options = &config.options;
                report.pool = Some(PoolInfo {
                    status,
                    connect_timeout_s: options.connect_timeout.as_secs_f64(),
                    acquire_timeout_s: options.acquire_timeout.as_secs_f64(),
                    statement_cache: options.statement_cache,
                });
                Check::new(
                    "pool",
                    CheckStatus::Ok,
                    format!(
                        "max {} connections ({} open, {} idle, {} waiting); connect timeout {}s, \
                         acquire timeout {}s, statement cache {}",
                        status.max_size,
                        status.size,
                        status.available,
                        status.waiting,
                        options.connect_timeout.as_secs_f64(),
                        options.acquire_timeout.as_secs_f64(),
                        if options.statement_cache { "on" } else { "off" }
                    ),
                )
            }
            Err(err) => Check::new("pool", CheckStatus::Fail, err.to_string())
                .advise("the pool cannot open connections although a direct one worked"),
        };
        report.checks.push(pool_check);

        // Schema version and privileges.
        // A role without USAGE on the schema cannot even read the version: report, go on.
        let status = match read_migration_status((&client).into(), &sql, schema).await {
            Ok(status) => Some(status),
            Err(err) if err.kind == ErrorKind::Privilege => {
                report.checks.push(
                    Check::new(
                        "schema",
                        CheckStatus::Fail,
                        format!("cannot read the schema version of {schema:?}: {err}"),
                    )
                    .advise("grant the role access to the schema (see the privileges check)"),
                );
                None
            }
            Err(err) => return Err(err),
        };
        let pending = status.as_ref().is_some_and(|s| !s.pending.is_empty());
        if let Some(status) = &status {
            report.checks.push(schema_check(schema, status));
        }
        let tables: Vec<&str> = DATA_TABLES.to_vec();
        let row = UNNAMED
            .query_one(
                &client,
                "SELECT n.oid IS NOT NULL,
                        CASE WHEN n.oid IS NULL
                             THEN has_database_privilege(current_database(), 'CREATE')
                             ELSE has_schema_privilege(n.oid, 'CREATE') END,
                        COALESCE(has_schema_privilege(n.oid, 'USAGE'), false),
                        (SELECT bool_and(has_table_privilege(c.oid, 'SELECT')
                                         AND has_table_privilege(c.oid, 'INSERT')
                                         AND has_table_privilege(c.oid, 'UPDATE')
                                         AND has_table_privilege(c.oid, 'DELETE'))
                           FROM pg_class c
                          WHERE c.relnamespace = n.oid AND c.relname = ANY ($2::text[])
                            AND c.relkind IN ('r', 'p'))
                   FROM (SELECT $1::text AS name) x
                   LEFT JOIN pg_namespace n ON n.nspname = x.name",
                &[schema, &tables],
            )
            .await?;
        let (schema_exists, can_create, usage): (bool, bool, bool) =
            (row.get(0), row.get(1), row.get(2));
        let dml: Option<bool> = row.get(3);
        report.can_create = Some(can_create);
        let where_ = if schema_exists {
            format!("in schema {schema:?}")
        } else {
            format!("schema {schema:?} in this database")
        };
        report
            .checks
            .push(if schema_exists && (!usage || dml == Some(false)) {
                let quoted = quote_ident(schema);
                Check::new(
                    "privileges",
                    CheckStatus::Fail,
                    format!(
                    "role {:?} lacks USAGE on the schema or SELECT/INSERT/UPDATE/DELETE on its \
                     tables",
                    report.user.as_deref().unwrap_or("")
                ),
                )
                .advise(format!(
                "as the owner: GRANT USAGE ON SCHEMA {quoted} TO <role>; GRANT SELECT, INSERT, \
                 UPDATE, DELETE ON ALL TABLES IN SCHEMA {quoted} TO <role>"
            ))
            } else if can_create {
                Check::new(
                    "privileges",
                    CheckStatus::Ok,
                    format!("the role may create {where_} (migrations can run)"),
                )
            } else if pending || !schema_exists {
                Check::new(
                    "privileges",
                    CheckStatus::Fail,
                    format!("the role may not create {where_}, and migrations are pending"),
                )
                .advise("run `adk-postgres migrate` as the schema's owner (or grant CREATE)")
            } else {
                Check::new(
                    "privileges",
                    CheckStatus::Ok,
                    format!(
                    "the role may not create {where_}: fine for a runtime role while the schema \
                     is current (migrate with the owner role)"
                ),
                )
            });
        report.migrations = status;
        Ok(report)
    }
}

// ---------------------------------------------------------------------------------------------
// Stats

/// Counts for one app (or, in [`Stats::totals`], for every selected app).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AppStats {
    pub app_name: String,
    pub users: i64,
    pub sessions: i64,
    pub events: i64,
    pub artifact_files: i64,
    pub artifact_versions: i64,
    /// Bytes of the distinct contents the artifact versions use (shared contents count once).
    pub artifact_bytes: i64,
    pub memory_entries: i64,
}

/// Size of one table, with its indexes and TOAST.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSize {
    pub name: String,
    pub bytes: i64,
    /// The planner's row estimate (`pg_class.reltuples`).
    pub rows_estimate: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub apps: Vec<AppStats>,
    /// Sums over `apps`, except `users` (distinct user ids) and `artifact_bytes` (distinct
    /// contents).
    pub totals: AppStats,
    /// Distinct contents the selected apps' versions use.
    pub artifact_contents: i64,
    /// Every stored content (all apps, and orphans), and their bytes.
    pub stored_contents: i64,
    pub stored_content_bytes: i64,
    pub tables: Vec<TableSize>,
}

impl Store {
    /// Counts per app (`app_name`: only that one) and totals, and the size of every table.
    pub async fn stats(&self, app_name: Option<&str>) -> Result<Stats> {
        self.check_process()?;
        let schema = &self.config().options.schema;
        let sql = AdminSql::new(schema);
        let mut conn = self.connection_unmigrated().await?;
        require_current(
            &read_migration_status((&**conn).into(), &sql, schema).await?,
            true,
        )?;
        // One snapshot for both statements, so totals agree with the per-app rows.
        let tx = conn
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let mut apps = Vec::new();
        let mut totals = AppStats {
            app_name: "*".into(),
            ..AppStats::default()
        };
        for row in rows(&*tx, &sql.stats_apps, &[&app_name]).await? {
            let app = AppStats {
                app_name: row.get(0),
                users: row.get(1),
                sessions: row.get(2),
                events: row.get(3),
                artifact_files: row.get(4),
                artifact_versions: row.get(5),
                artifact_bytes: row.get(6),
                memory_entries: row.get(7),
            };
            totals.sessions += app.sessions;
            totals.events += app.events;
            totals.artifact_files += app.artifact_files;
            totals.artifact_versions += app.artifact_versions;
            totals.memory_entries += app.memory_entries;
            apps.push(app);
        }
        let tables: Vec<&str> = OUR_TABLES.to_vec();
        let mut stats = Stats {
            apps,
            totals,
            artifact_contents: 0,
            stored_contents: 0,
            stored_content_bytes: 0,
            tables: Vec::new(),
        };
        for row in rows(&*tx, &sql.stats_totals, &[&app_name, &tables, schema]).await? {
            if row.get::<_, i16>(0) == 0 {
                stats.totals.users = row.get(2);
                stats.artifact_contents = row.get(3);
                stats.totals.artifact_bytes = row.get(4);
                stats.stored_contents = row.get(5);
                stats.stored_content_bytes = row.get(6);
            } else {
                stats.tables.push(TableSize {
                    name: row.get(1),
                    bytes: row.get(2),
                    rows_estimate: row.get(3),
                });
            }
        }
        tx.commit().await?;
        stats
            .tables
            .sort_by_key(|t| OUR_TABLES.iter().position(|name| *name == t.name));
        Ok(stats)
    }
}

// ---------------------------------------------------------------------------------------------
// Prune

/// What to prune. At least one of `idle_for_s`, `keep_events`, `orphaned_artifacts`.
#[derive(Debug, Clone, PartialEq)]
pub struct PruneOptions {
    /// Only this app (`None`: every app).
    pub app_name: Option<String>,
    /// Delete sessions whose update time is older than this many seconds.
    pub idle_for_s: Option<f64>,
    /// Keep only the newest N events of each session.
    pub keep_events: Option<i64>,
    /// Delete artifacts of sessions that no longer exist, contents no version uses, and (with
    /// `content_dir`) the files of deleted contents.
    pub orphaned_artifacts: bool,
    /// Directory of `fs` contents (the artifact service's `content_dir`).
    pub content_dir: Option<PathBuf>,
    /// With `content_dir`: files no content uses (left by failed or cancelled saves) are
    /// removed once at least this many seconds old.
    pub file_grace_s: f64,
    /// Count only; change nothing.
    pub dry_run: bool,
    /// Sessions (artifact files, contents) per transaction.
    pub batch_size: i64,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            app_name: None,
            idle_for_s: None,
            keep_events: None,
            orphaned_artifacts: false,
            content_dir: None,
            file_grace_s: crate::artifacts::DEFAULT_FILE_GRACE_S,
            dry_run: false,
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }
}

impl PruneOptions {
    fn validate(&self) -> Result<()> {
        if self.idle_for_s.is_none() && self.keep_events.is_none() && !self.orphaned_artifacts {
            return Err(StoreError::config(
                "nothing to prune: give idle_for, keep_events or orphaned_artifacts",
            ));
        }
        if let Some(s) = self.idle_for_s {
            if !s.is_finite() || s <= 0.0 {
                return Err(StoreError::config("idle_for must be a positive duration"));
            }
        }
        if self.keep_events.is_some_and(|n| n < 0) {
            return Err(StoreError::config("keep_events must be >= 0"));
        }
        if !self.file_grace_s.is_finite() || self.file_grace_s < 0.0 {
            return Err(StoreError::config("file_grace must be a duration >= 0"));
        }
        if self.batch_size < 1 {
            return Err(StoreError::config("batch_size must be >= 1"));
        }
        Ok(())
    }
}

/// What was (or, in a dry run, would be) deleted in one app.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AppPruned {
    pub app_name: String,
    /// Idle sessions.
    pub sessions: i64,
    /// Events of those sessions.
    pub session_events: i64,
    /// Events beyond `keep_events` in the remaining sessions.
    pub events: i64,
    /// Artifacts (all versions) of sessions that no longer exist.
    pub artifact_files: i64,
    pub artifact_versions: i64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct PruneReport {
    pub dry_run: bool,
    /// Sessions updated before this time (epoch seconds, server clock) counted as idle.
    pub cutoff: Option<f64>,
    pub apps: Vec<AppPruned>,
    /// Artifact contents (deduplicated payloads) no version uses any more, and their bytes.
    pub contents: i64,
    pub content_bytes: i64,
    /// Content files unlinked (dry run: to unlink; needs `content_dir`).
    pub files: i64,
    /// Content files still queued in `artifact_fs_garbage` (no `content_dir` given).
    pub files_queued: i64,
    /// Transactions committed.
    pub batches: i64,
}

impl PruneReport {
    fn app(&mut self, name: &str) -> &mut AppPruned {
        let pos = match self.apps.iter().position(|a| a.app_name == name) {
            Some(pos) => pos,
            None => {
                self.apps.push(AppPruned {
                    app_name: name.to_string(),
                    ..AppPruned::default()
                });
                self.apps.len() - 1
            }
        };
        &mut self.apps[pos]
    }
}

impl Store {
    /// Deletes idle sessions, old events and orphaned artifacts (see [`PruneOptions`]), in
    /// batches of `batch_size`, each its own transaction; or, with `dry_run`, counts them.
    ///
    /// Never changes a session's `revision`: a `Session` object a running agent holds stays
    /// appendable. Processes with a warm session cache keep the pruned events of sessions
    /// they already read until the entry is evicted or the process restarts; reads with
    /// `num_recent_events <= keep_events` return the same events either way.
    pub async fn prune(&self, options: &PruneOptions) -> Result<PruneReport> {
        self.check_process()?;
        options.validate()?;
        let schema = &self.config().options.schema;
        let sql = AdminSql::new(schema);
        let mut conn = self.connection_unmigrated().await?;
        require_current(
            &read_migration_status((&**conn).into(), &sql, schema).await?,
            false,
        )?;
        let app = options.app_name.as_deref();
        let mut report = PruneReport {
            dry_run: options.dry_run,
            ..PruneReport::default()
        };
        if let Some(idle_for) = options.idle_for_s {
            let row = UNNAMED
                .query_one(
                    &conn,
                    "SELECT extract(epoch FROM clock_timestamp())::float8",
                    &[],
                )
                .await?;
            report.cutoff = Some(row.get::<_, f64>(0) - idle_for);
        }
        let cutoff = report.cutoff;
        let batch = options.batch_size;
        if options.dry_run {
            // One read-only snapshot, so the counts add up as a real run would see them.
            let tx = conn
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            if cutoff.is_some() {
                for row in rows(&*tx, &sql.dry_idle, &[&app, &cutoff]).await? {
                    let a = report.app(row.get(0));
                    a.sessions = row.get(1);
                    a.session_events = row.get(2);
                }
            }
            if let Some(keep) = options.keep_events {
                for row in rows(&*tx, &sql.dry_events, &[&app, &cutoff, &keep]).await? {
                    report.app(row.get(0)).events = row.get(1);
                }
            }
            if options.orphaned_artifacts {
                for row in rows(&*tx, &sql.dry_artifacts, &[&app, &cutoff]).await? {
                    let a = report.app(row.get(0));
                    a.artifact_files = row.get(1);
                    a.artifact_versions = row.get(2);
                }
                let unreferenced_too = app.is_none();
                let row = UNNAMED
                    .query_one(&tx, &sql.dry_contents, &[&app, &cutoff, &unreferenced_too])
                    .await?;
                report.contents = row.get(0);
                report.content_bytes = row.get(1);
                let new_files: i64 = row.get(2);
                let queued: i64 = UNNAMED.query_one(&tx, &sql.fs_queued, &[]).await?.get(0);
                if let Some(dir) = &options.content_dir {
                    let backend = ArtifactBackend::new(self, Some(dir.clone()));
                    let grace = Duration::from_secs_f64(options.file_grace_s);
                    let orphans = self.collect_orphan_files(&backend, grace, true).await?;
                    report.files = queued + new_files + orphans as i64;
                } else {
                    report.files_queued = queued + new_files;
                }
            }
            tx.commit().await?;
            report.apps.sort_by(|a, b| a.app_name.cmp(&b.app_name));
            return Ok(report);
        }

        if cutoff.is_some() {
            loop {
                let found = rows(&**conn, &sql.prune_idle, &[&app, &cutoff, &batch]).await?;
                if found.is_empty() {
                    break;
                }
                report.batches += 1;
                for row in found {
                    let a = report.app(row.get(0));
                    a.sessions += row.get::<_, i64>(1);
                    a.session_events += row.get::<_, i64>(2);
                }
            }
        }
        if let Some(keep) = options.keep_events {
            let mut last: Option<(String, String, String)> = None;
            loop {
                let (la, lu, li) = match &last {
                    Some((a, u, i)) => (Some(a.as_str()), Some(u.as_str()), Some(i.as_str())),
                    None => (None, None, None),
                };
                let found = rows(
                    &**conn,
                    &sql.prune_events,
                    &[&app, &keep, &batch, &la, &lu, &li],
                )
                .await?;
                report.batches += 1;
                let mut next = None;
                for row in found {
                    if row.get::<_, i16>(0) == 0 {
                        report.app(row.get(1)).events += row.get::<_, i64>(2);
                    } else {
                        next = Some((row.get(1), row.get(3), row.get(4)));
                    }
                }
                if next.is_none() {
                    break;
                }
                last = next;
            }
        }
        if options.orphaned_artifacts {
            self.prune_orphaned_artifacts(&mut conn, &sql, options, &mut report)
                .await?;
        }
        report.apps.sort_by(|a, b| a.app_name.cmp(&b.app_name));
        Ok(report)
    }

    async fn prune_orphaned_artifacts(
        &self,
        conn: &mut deadpool_postgres::Object,
        sql: &AdminSql,
        options: &PruneOptions,
        report: &mut PruneReport,
    ) -> Result<()> {
        let app = options.app_name.as_deref();
        let batch = options.batch_size;
        // Artifacts of sessions that are gone. The contents their versions used go with them
        // (V3 trigger) unless another version still uses them.
        loop {
            let tx = conn.transaction().await?;
            let found = rows(&*tx, &sql.prune_artifacts, &[&app, &batch]).await?;
            let mut deleted_any = false;
            let mut candidates: Option<(i64, i64, Vec<Vec<u8>>)> = None;
            for row in found {
                if row.get::<_, i16>(0) == 0 {
                    deleted_any = true;
                    let a = report.app(row.get(1));
                    a.artifact_files += row.get::<_, i64>(2);
                    a.artifact_versions += row.get::<_, i64>(3);
                } else {
                    let hashes: Option<Vec<Vec<u8>>> = row.get(4);
                    candidates = Some((row.get(2), row.get(3), hashes.unwrap_or_default()));
                }
            }
            if let Some((count, bytes, hashes)) = candidates.filter(|c| !c.2.is_empty()) {
                let left = UNNAMED
                    .query_one(&tx, &sql.contents_left, &[&hashes])
                    .await?;
                report.contents += count - left.get::<_, i64>(0);
                report.content_bytes += bytes - left.get::<_, i64>(1);
            }
            tx.commit().await?;
            if !deleted_any {
                break;
            }
            report.batches += 1;
        }
        // Contents no version uses (left behind by a trigger that skipped a row a failed save
        // held, a TRUNCATE, a restore without triggers…). Not app-scoped: only without --app.
        if app.is_none() {
            let mut last: Option<Vec<u8>> = None;
            loop {
                let tx = conn.transaction().await?;
                let locked = rows(&*tx, &sql.orphan_contents, &[&last, &batch]).await?;
                if locked.is_empty() {
                    tx.commit().await?;
                    break;
                }
                let hashes: Vec<Vec<u8>> = locked.iter().map(|r| r.get(0)).collect();
                let row = UNNAMED
                    .query_one(&tx, &sql.delete_contents, &[&hashes])
                    .await?;
                report.contents += row.get::<_, i64>(0);
                report.content_bytes += row.get::<_, i64>(1);
                tx.commit().await?;
                report.batches += 1;
                last = hashes.last().cloned();
            }
        }
        // Files of deleted `fs` contents.
        let queued: i64 = UNNAMED
            .query_one(&**conn, &sql.fs_queued, &[])
            .await?
            .get(0);
        match &options.content_dir {
            Some(dir) if queued > 0 => {
                let backend = ArtifactBackend::new(self, Some(dir.clone()));
                // Each call takes up to 1,000 queued hashes off the queue.
                for _ in 0..(queued / 1000 + 2) {
                    report.files += self.collect_artifact_garbage(&backend).await? as i64;
                    let left: i64 = UNNAMED
                        .query_one(&**conn, &sql.fs_queued, &[])
                        .await?
                        .get(0);
                    if left == 0 {
                        break;
                    }
                }
                report.files_queued = UNNAMED
                    .query_one(&**conn, &sql.fs_queued, &[])
                    .await?
                    .get(0);
            }
            _ => report.files_queued = queued,
        }
        // Files no content uses (saves that failed or were cancelled after writing them).
        if let Some(dir) = &options.content_dir {
            let backend = ArtifactBackend::new(self, Some(dir.clone()));
            let grace = Duration::from_secs_f64(options.file_grace_s);
            report.files += self.collect_orphan_files(&backend, grace, false).await? as i64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::{render, MIGRATIONS};

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
    fn our_tables_are_exactly_the_tables_the_migrations_create() {
        let mut created: Vec<String> = MIGRATIONS
            .iter()
            .flat_map(|m| {
                render(m.sql, "s")
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("CREATE TABLE IF NOT EXISTS \"s\"."))
                    .map(|rest| rest.split([' ', '(']).next().unwrap_or("").to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        created.push("adk_postgres_migrations".into()); // created by the runner itself
        created.sort();
        let mut ours: Vec<String> = OUR_TABLES.iter().map(|t| t.to_string()).collect();
        ours.sort();
        assert_eq!(created, ours);
        for table in DATA_TABLES {
            assert!(OUR_TABLES.contains(table));
        }
    }

    #[test]
    fn events_are_pruned_in_the_order_num_recent_events_reads() {
        let sql = AdminSql::new("public");
        assert!(sql.prune_events.contains(NEWEST_FIRST));
        assert!(sql.dry_events.contains(NEWEST_FIRST));
        assert!(crate::sql::SessionSql::new("public")
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

    #[test]
    fn prune_options_need_a_criterion_and_sane_values() {
        let none = PruneOptions::default();
        assert_eq!(none.validate().unwrap_err().kind, ErrorKind::Config);
        let ok = PruneOptions {
            keep_events: Some(0),
            ..PruneOptions::default()
        };
        assert!(ok.validate().is_ok());
        for bad in [
            PruneOptions {
                idle_for_s: Some(0.0),
                ..PruneOptions::default()
            },
            PruneOptions {
                keep_events: Some(-1),
                ..PruneOptions::default()
            },
            PruneOptions {
                orphaned_artifacts: true,
                batch_size: 0,
                ..PruneOptions::default()
            },
        ] {
            assert_eq!(bad.validate().unwrap_err().kind, ErrorKind::Config);
        }
    }

    #[test]
    fn migration_status_lists_pending_after_the_applied() {
        let applied = vec![AppliedMigration {
            version: 1,
            name: "adk_v1_tables".into(),
            applied_at: None,
        }];
        let status = MigrationStatus::from_applied("s", applied);
        assert_eq!(status.current, 1);
        assert_eq!(status.pending.len(), MIGRATIONS.len() - 1);
        assert_eq!(status.pending[0].0, 2);
        assert!(require_current(&status, true).is_err());
        let empty = MigrationStatus::from_applied("s", Vec::new());
        let err = require_current(&empty, true).unwrap_err();
        assert!(
            err.message.contains("adk-postgres migrate"),
            "{}",
            err.message
        );
    }

    #[test]
    fn connect_advice_names_the_fix() {
        let t = Target {
            host: "db.example".into(),
            port: "6543".into(),
            dbname: "agents".into(),
            user: "app".into(),
        };
        let refused = connect_advice(ConnectFailure::Refused, &t);
        assert!(refused.contains("is PostgreSQL running") && refused.contains("db.example:6543"));
        assert!(connect_advice(ConnectFailure::Auth, &t).contains("password"));
        assert!(connect_advice(ConnectFailure::NoDatabase, &t).contains("createdb"));
        assert!(connect_advice(ConnectFailure::NoDatabase, &t).contains("agents"));
        assert!(connect_advice(ConnectFailure::Tls, &t).contains("sslmode"));
    }
}
