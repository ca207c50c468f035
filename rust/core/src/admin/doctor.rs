//! The doctor: every health check, each reported (ok, warning, failed, with advice) rather
//! than raised. Changes nothing.

use std::time::Instant;

use super::advice::{classify_connect_error, connect_advice, Target};
use super::migrate::{read_migration_status, MigrationStatus};
use super::{millis, one, rows, Admin, AdminSql, DATA_TABLES, EXTENSIONS};
use crate::error::{ErrorKind, Result, StoreError};
use crate::ident::quote_ident;
use crate::pool::PoolStatus;

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
    /// The schema its objects live in when installed. Extensions are per database, not per
    /// schema: dropping adk-postgres's schema leaves them.
    pub schema: Option<String>,
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

/// The schema check: current, pending migrations, or newer than this build. Pending
/// migrations are a warning, not a failure: the services apply them on first use, provided
/// the role may create in the schema (`can_create`; the privileges check fails otherwise).
fn schema_check(schema: &str, status: &MigrationStatus, can_create: bool) -> Check {
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
        let who = if can_create {
            "the services apply them on first use (this role may)"
        } else {
            "this role may not apply them: the services will fail until the owner migrates"
        };
        Check::new(
            "schema",
            CheckStatus::Warn,
            format!(
                "schema {schema:?} is at version {} of {}; pending: {}; {who}",
                status.current,
                status.latest,
                names.join(", ")
            ),
        )
        .advise(if can_create {
            "run `adk-postgres migrate` to apply them now, before the first request waits for them"
        } else {
            "run `adk-postgres migrate` as the schema's owner (or grant CREATE to this role)"
        })
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

impl Admin {
    /// Runs every health check; a failed check is reported, not raised. Changes nothing.
    pub async fn doctor(&self) -> Result<DoctorReport> {
        self.db.check_process()?;
        let config = self.db.config();
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
        let mut pg = config.pg.clone();
        if let Some(source) = &config.password_source {
            match source.fetch().await {
                Some(password) => {
                    pg.password(password);
                }
                None => {
                    let reason = source.take_error().unwrap_or_default();
                    report.checks.push(
                        Check::new(
                            "connection",
                            CheckStatus::Fail,
                            format!("the password function failed: {reason}"),
                        )
                        .advise("check the credentials the password function fetches"),
                    );
                    return Ok(report);
                }
            }
        }
        let client = match pg.connect(tls).await {
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
        let row = one(
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
        for row in rows(
            &client,
            "SELECT x.name, a.default_version::text, a.installed_version::text, n.nspname::text
                   FROM unnest($1::text[]) AS x(name)
                   LEFT JOIN pg_available_extensions a ON a.name = x.name
                   LEFT JOIN pg_extension e ON e.extname = x.name
                   LEFT JOIN pg_namespace n ON n.oid = e.extnamespace
                  ORDER BY x.name",
            &[&names],
        )
        .await?
        {
            report.extensions.push(ExtensionInfo {
                name: row.get(0),
                available: row.get(1),
                installed: row.get(2),
                schema: row.get(3),
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
                (_, Some(v)) => Check::new(
                    name,
                    CheckStatus::Ok,
                    format!(
                        "installed ({v}) in schema {:?} (for the whole database: dropping \
                         adk-postgres's schema keeps it)",
                        ext.schema.as_deref().unwrap_or("?")
                    ),
                ),
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
        let pool_check = match self.db.connection_unmigrated().await {
            Ok(conn) => {
                drop(conn);
                let status = self.db.pool_status();
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
        let tables: Vec<&str> = DATA_TABLES.to_vec();
        let row = one(
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
        if let Some(status) = &status {
            report.checks.push(schema_check(schema, status, can_create));
        }
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
