//! Connection and pool configuration, parsed from a libpq-style URL or key=value string.
//!
//! tokio-postgres parses the URL itself (unix-socket `host=` paths, multi-host lists,
//! `application_name`, `connect_timeout`, …). We pre-process only what it does not know:
//! SQLAlchemy-style driver suffixes (`postgresql+asyncpg://`), libpq's `verify-ca` /
//! `verify-full` sslmodes, `sslrootcert`, and the client certificate `sslcert` / `sslkey`
//! (which, as in libpq, may also come from `PGSSLCERT` / `PGSSLKEY`).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use tokio_postgres::config::{Host, SslMode};

use crate::error::{Result, StoreError};

/// How the server certificate is checked when TLS is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsVerify {
    /// libpq `prefer` / `require`: encrypt, do not verify the certificate.
    None,
    /// libpq `verify-ca`: the chain must lead to a trusted root; any host name.
    Ca,
    /// libpq `verify-full`: trusted chain and matching host name.
    Full,
}

/// A TLS client certificate (PEM, chain allowed) and its private key (PEM: PKCS#8, PKCS#1 or
/// SEC1), as files: libpq's `sslcert` / `sslkey`. Only the paths are kept here; `tls.rs` reads
/// the files when the pool is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Pool and store options that are not part of the URL.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub acquire_timeout: Duration,
    pub statement_cache: bool,
    /// Let concurrent appends share one transaction and commit (off behind a pooler that
    /// forbids multi-statement transactions, e.g. PgBouncer in statement mode).
    pub coalesce_appends: bool,
    pub schema: String,
    pub application_name: Option<String>,
    /// How long a call that lost its connection (or met a read-only standby) waits for a
    /// writable node and tries again; zero: not at all (see `failover.rs`).
    pub failover_timeout: Duration,
    /// How long to wait for the server's answer to a statement before giving its connection
    /// up as hung (a lost connection then); `None`: as long as it takes.
    pub response_timeout: Option<Duration>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            pool_size: 10,
            connect_timeout: Duration::from_secs(10),
            acquire_timeout: Duration::from_secs(30),
            statement_cache: true,
            coalesce_appends: true,
            schema: "public".to_string(),
            application_name: Some("adk-postgres".to_string()),
            failover_timeout: Duration::ZERO,
            response_timeout: None,
        }
    }
}

/// Everything needed to build a pool.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub pg: tokio_postgres::Config,
    pub tls_verify: TlsVerify,
    pub ssl_root_cert: Option<PathBuf>,
    /// Sent when the server asks for a client certificate; `None` under `sslmode=disable`.
    pub client_cert: Option<ClientCert>,
    pub options: StoreOptions,
    /// Asked for the password at each new connection (instead of the URL's).
    pub password_source: Option<crate::password::PasswordSource>,
}

const MAX_IDENTIFIER_LEN: usize = 63;

impl StoreConfig {
    /// Parses `url` and validates `options`.
    pub fn parse(url: &str, options: StoreOptions) -> Result<Self> {
        validate_options(&options)?;
        let pre = preprocess(url)?;
        let mut pg = tokio_postgres::Config::from_str(&pre.url).map_err(|e| {
            StoreError::config(format!("invalid PostgreSQL URL ({}): {e}", redact(url)))
        })?;
        if pg.get_hosts().is_empty() {
            return Err(StoreError::config(format!(
                "the PostgreSQL URL names no host or socket directory ({})",
                redact(url)
            )));
        }
        if pg.get_user().is_none() {
            pg.user(default_user());
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(options.connect_timeout);
        }
        if pg.get_application_name().is_none() {
            if let Some(name) = &options.application_name {
                pg.application_name(name);
            }
        }
        if pre.tls_verify != TlsVerify::None {
            pg.ssl_mode(SslMode::Require);
        }
        // As libpq: without TLS the certificate files are not looked at (a PGSSLCERT set for
        // other servers does not break a `sslmode=disable` URL).
        let client_cert = if pg.get_ssl_mode() == SslMode::Disable {
            None
        } else {
            client_cert(pre.ssl_cert, pre.ssl_key, |name| {
                std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
            })?
        };
        Ok(StoreConfig {
            pg,
            tls_verify: pre.tls_verify,
            ssl_root_cert: pre.ssl_root_cert,
            client_cert,
            options,
            password_source: None,
        })
    }

    /// The hosts (or socket directories), comma-separated.
    pub fn hosts(&self) -> String {
        let hosts: Vec<String> = self
            .pg
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        hosts.join(",")
    }

    /// The ports, comma-separated (PostgreSQL's default when none is given).
    pub fn ports(&self) -> String {
        let ports: Vec<String> = self.pg.get_ports().iter().map(u16::to_string).collect();
        if ports.is_empty() {
            "5432".to_string()
        } else {
            ports.join(",")
        }
    }

    /// Where the server listens: `host=… port=…` for TCP; for unix sockets the socket files,
    /// since `host=/some/dir port=5432` reads like a TCP port that could clash with a local
    /// server (the port only names the socket file).
    fn location(&self) -> String {
        let hosts = self.pg.get_hosts();
        let ports = self.pg.get_ports();
        let sockets: Option<Vec<String>> = hosts
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                socket_file(host, port)
            })
            .collect();
        match sockets {
            Some(files) if !files.is_empty() => format!("unix socket {}", files.join(",")),
            _ => format!("host={} port={}", self.hosts(), self.ports()),
        }
    }

    /// A description of the target that is safe to print: hosts, ports, database, user —
    /// never the password.
    pub fn describe(&self) -> String {
        format!(
            "{} dbname={} user={} schema={}",
            self.location(),
            self.pg.get_dbname().or(self.pg.get_user()).unwrap_or(""),
            self.pg.get_user().unwrap_or(""),
            self.options.schema
        )
    }
}

/// The socket file of a unix-socket host (`None` for TCP).
fn socket_file(host: &Host, port: u16) -> Option<String> {
    match host {
        Host::Tcp(_) => None,
        #[cfg(unix)]
        Host::Unix(dir) => Some(dir.join(format!(".s.PGSQL.{port}")).display().to_string()),
    }
}

/// The client certificate from the URL's `sslcert` / `sslkey`, each falling back to its libpq
/// environment variable (`PGSSLCERT` / `PGSSLKEY`) when the URL does not name it. An empty
/// value (in the URL or the environment) means none; an empty URL value also hides the
/// variable. Both or neither must be given. `~/.postgresql/postgresql.crt` is not read.
fn client_cert(
    url_cert: Option<String>,
    url_key: Option<String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<ClientCert>> {
    let pick = |from_url: Option<String>, variable: &'static str| match from_url {
        Some(value) => (Some(value).filter(|v| !v.is_empty()), "the URL"),
        None => (env(variable).filter(|v| !v.is_empty()), variable),
    };
    let (cert, cert_from) = pick(url_cert, "PGSSLCERT");
    let (key, key_from) = pick(url_key, "PGSSLKEY");
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(ClientCert {
            cert: PathBuf::from(cert),
            key: PathBuf::from(key),
        })),
        (Some(cert), None) => Err(StoreError::config(format!(
            "sslcert {cert} (from {cert_from}) is given without its private key: add \
             sslkey=/path/to/key to the URL or set PGSSLKEY"
        ))),
        (None, Some(key)) => Err(StoreError::config(format!(
            "sslkey {key} (from {key_from}) is given without its certificate: add \
             sslcert=/path/to/cert to the URL or set PGSSLCERT"
        ))),
    }
}

fn default_user() -> String {
    std::env::var("PGUSER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "postgres".to_string())
}

fn validate_options(options: &StoreOptions) -> Result<()> {
    if options.pool_size == 0 {
        return Err(StoreError::config("pool_size must be at least 1"));
    }
    if options.connect_timeout.is_zero() || options.acquire_timeout.is_zero() {
        return Err(StoreError::config(
            "connect_timeout and acquire_timeout must be positive",
        ));
    }
    validate_schema_name(&options.schema)
}

/// Checks a schema name before anything reaches the server.
///
/// Every statement quotes the name (`quote_ident`), but the migrations also paste it into
/// dollar-quoted function bodies (`$$ … $$`), where quoting does not protect: a `$$` in the
/// name would end the body and run the rest as SQL with the migrating role's rights. Shipped
/// migrations cannot be rewritten to build those bodies with `format('%I')`, so `$` is refused.
/// `pg_` is reserved by PostgreSQL, and longer names would be truncated silently.
pub fn validate_schema_name(schema: &str) -> Result<()> {
    let problem = if schema.is_empty() {
        Some("must not be empty".to_string())
    } else if schema.len() > MAX_IDENTIFIER_LEN {
        Some(format!(
            "is {} bytes long; PostgreSQL names hold at most {MAX_IDENTIFIER_LEN} bytes (UTF-8)",
            schema.len()
        ))
    } else if schema.contains('\0') {
        Some("must not contain NUL characters".to_string())
    } else if schema.contains('$') {
        Some(
            "must not contain '$' (it would be unsafe inside the schema's function bodies)"
                .to_string(),
        )
    } else if schema.starts_with("pg_") {
        Some("must not start with pg_ (reserved for PostgreSQL's system schemas)".to_string())
    } else {
        None
    };
    match problem {
        Some(p) => Err(StoreError::config(format!("schema name {schema:?} {p}"))),
        None => Ok(()),
    }
}

struct Preprocessed {
    url: String,
    tls_verify: TlsVerify,
    ssl_root_cert: Option<PathBuf>,
    /// `sslcert` / `sslkey` as the URL gives them (`Some("")`: given empty).
    ssl_cert: Option<String>,
    ssl_key: Option<String>,
}

/// Rewrites the parts of a libpq URL that tokio-postgres does not accept.
fn preprocess(url: &str) -> Result<Preprocessed> {
    let url = url.trim();
    let mut tls_verify = TlsVerify::None;
    let mut ssl_root_cert = None;
    let mut ssl_cert = None;
    let mut ssl_key = None;
    let mut handle = |key: &str, value: &str| -> Result<Option<String>> {
        match key {
            "sslmode" => match value {
                "verify-full" => {
                    tls_verify = TlsVerify::Full;
                    Ok(Some("require".to_string()))
                }
                "verify-ca" => {
                    tls_verify = TlsVerify::Ca;
                    Ok(Some("require".to_string()))
                }
                "allow" => Ok(Some("prefer".to_string())),
                "disable" | "prefer" | "require" => Ok(Some(value.to_string())),
                other => Err(StoreError::config(format!(
                    "unknown sslmode {other:?} (use disable, prefer, require, verify-ca or verify-full)"
                ))),
            },
            "sslrootcert" => {
                ssl_root_cert = Some(PathBuf::from(value));
                Ok(None)
            }
            "sslcert" => {
                ssl_cert = Some(value.to_string());
                Ok(None)
            }
            "sslkey" => {
                ssl_key = Some(value.to_string());
                Ok(None)
            }
            _ => Ok(Some(value.to_string())),
        }
    };

    if let Some((scheme, rest)) = url.split_once("://") {
        let base = scheme.split('+').next().unwrap_or(scheme);
        if base != "postgresql" && base != "postgres" {
            return Err(StoreError::config(format!(
                "unsupported URL scheme {scheme:?}: use postgresql://"
            )));
        }
        check_user_info(rest)?;
        let (head, query) = match rest.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (rest, None),
        };
        let mut kept = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode_str(k).decode_utf8_lossy().to_string();
            let value = percent_decode_str(v).decode_utf8_lossy().to_string();
            if key == "host" && value.contains(',') {
                // libpq splits a `host` list on commas; tokio-postgres takes the URL parameter
                // as one path, but accepts the parameter repeated.
                kept.extend(v.split(',').map(|h| format!("host={h}")));
                continue;
            }
            if let Some(new_value) = handle(&key, &value)? {
                if new_value == value {
                    kept.push(pair.to_string());
                } else {
                    kept.push(format!("{k}={new_value}"));
                }
            }
        }
        let mut out = format!("postgresql://{head}");
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
        Ok(Preprocessed {
            url: out,
            tls_verify,
            ssl_root_cert,
            ssl_cert,
            ssl_key,
        })
    } else {
        // key=value form; values containing spaces must be quoted and are passed through.
        let mut kept = Vec::new();
        for token in url.split_whitespace() {
            match token.split_once('=') {
                Some((k, v)) if !v.starts_with('\'') => {
                    if let Some(new_value) = handle(k, v)? {
                        kept.push(format!("{k}={new_value}"));
                    }
                }
                _ => kept.push(token.to_string()),
            }
        }
        Ok(Preprocessed {
            url: kept.join(" "),
            tls_verify,
            ssl_root_cert,
            ssl_cert,
            ssl_key,
        })
    }
}

/// Refuses a URL whose user-info cannot be told apart from the rest: an unencoded `@` in the
/// password (`u:p@ss@host`) makes libpq-style parsers take part of the password for the host,
/// and a `/`, `?` or `#` in it ends the authority early (`u:pa/ss@host`). Nothing of the URL
/// is repeated in the message: any part of it may be the password.
fn check_user_info(after_scheme: &str) -> Result<()> {
    let authority_end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    let (authority, rest) = after_scheme.split_at(authority_end);
    let ats = authority.matches('@').count();
    if ats > 1 || (ats == 0 && rest.contains('@')) {
        return Err(StoreError::config(
            "the URL's user name or password holds a character that must be percent-encoded \
             there: '@' as %40, '/' as %2F, '?' as %3F, '#' as %23 (and ':' in the user name \
             as %3A); the URL is not repeated here because it holds a password",
        ));
    }
    Ok(())
}

/// Replaces the password in a URL or key=value string with `***`.
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority_and_path, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let mut out = format!("{scheme}://");
        match authority_and_path.rsplit_once('@') {
            Some((userinfo, hostpart)) => {
                let user = userinfo.split(':').next().unwrap_or("");
                if userinfo.contains(':') {
                    out.push_str(&format!("{user}:***@{hostpart}"));
                } else {
                    out.push_str(&format!("{user}@{hostpart}"));
                }
            }
            None => out.push_str(authority_and_path),
        }
        if let Some(q) = query {
            let pairs: Vec<String> = q
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some(("password", _)) => "password=***".to_string(),
                    _ => p.to_string(),
                })
                .collect();
            out.push('?');
            out.push_str(&pairs.join("&"));
        }
        out
    } else {
        url.split_whitespace()
            .map(|t| {
                if t.starts_with("password=") {
                    "password=***"
                } else {
                    t
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<StoreConfig> {
        StoreConfig::parse(url, StoreOptions::default())
    }

    #[test]
    fn unencoded_user_info_is_refused_without_repeating_it() {
        for url in [
            "postgresql://postgres:p@s3cr3t@127.0.0.1/db",
            "postgresql://postgres:pa/s3cr3t@127.0.0.1/db",
            "postgresql://postgres:pa?s3cr3t@127.0.0.1/db",
            "postgresql://postgres:pa#s3cr3t@127.0.0.1/db",
        ] {
            let err = StoreConfig::parse(url, StoreOptions::default()).unwrap_err();
            assert_eq!(err.kind, crate::error::ErrorKind::Config);
            assert!(err.message.contains("percent-encoded"), "{}", err.message);
            assert!(!err.message.contains("s3cr3t"), "{}", err.message);
        }
        for url in [
            "postgresql://postgres:p%40ss@127.0.0.1/db",
            "postgresql://u@h/db?application_name=a@b",
            "postgresql://h/db",
        ] {
            assert!(
                StoreConfig::parse(url, StoreOptions::default()).is_ok(),
                "{url}"
            );
        }
    }

    #[test]
    fn parses_tcp_url_with_options() {
        let cfg = parse("postgresql://bob:secret@db.example:6543/app?application_name=x").unwrap();
        assert_eq!(cfg.pg.get_hosts(), &[Host::Tcp("db.example".into())]);
        assert_eq!(cfg.pg.get_ports(), &[6543]);
        assert_eq!(cfg.pg.get_dbname(), Some("app"));
        assert_eq!(cfg.pg.get_user(), Some("bob"));
        assert_eq!(cfg.pg.get_application_name(), Some("x"));
        assert!(!cfg.describe().contains("secret"));
    }

    #[test]
    fn parses_unix_socket_host_param() {
        let cfg = parse("postgresql://postgres:@/postgres?host=/var/lib/pg/data").unwrap();
        assert_eq!(cfg.pg.get_hosts(), &[Host::Unix("/var/lib/pg/data".into())]);
        assert_eq!(cfg.pg.get_dbname(), Some("postgres"));
    }

    #[test]
    fn a_unix_socket_is_described_by_its_socket_file_not_as_a_port() {
        let cfg = parse("postgresql://postgres:pw@/postgres?host=/var/lib/pg/data").unwrap();
        assert_eq!(
            cfg.describe(),
            "unix socket /var/lib/pg/data/.s.PGSQL.5432 dbname=postgres user=postgres schema=public"
        );
        let two = parse("postgresql://u@/d?host=/run/a,/run/b&port=6000").unwrap();
        assert!(two
            .describe()
            .starts_with("unix socket /run/a/.s.PGSQL.6000,/run/b/.s.PGSQL.6000 "));
        let tcp = parse("postgresql://u:pw@db.example:6543/app").unwrap();
        assert!(tcp
            .describe()
            .starts_with("host=db.example port=6543 dbname=app "));
    }

    #[test]
    fn splits_a_list_of_socket_directories() {
        let cfg = parse("postgresql://u@/d?host=/run/a,/run/b&application_name=x").unwrap();
        assert_eq!(
            cfg.pg.get_hosts(),
            &[Host::Unix("/run/a".into()), Host::Unix("/run/b".into())]
        );
    }

    #[test]
    fn parses_multi_host_and_key_value_form() {
        let cfg = parse("postgresql://u@a:5432,b:5433/db").unwrap();
        assert_eq!(cfg.pg.get_hosts().len(), 2);
        assert_eq!(cfg.pg.get_ports(), &[5432, 5433]);
        let kv = parse("host=h1,h2 user=u dbname=d sslmode=disable").unwrap();
        assert_eq!(kv.pg.get_hosts().len(), 2);
        assert_eq!(kv.pg.get_ssl_mode(), SslMode::Disable);
    }

    #[test]
    fn driver_suffix_and_sslmodes() {
        let cfg =
            parse("postgresql+asyncpg://u@h/d?sslmode=verify-full&sslrootcert=/ca.pem").unwrap();
        assert_eq!(cfg.tls_verify, TlsVerify::Full);
        assert_eq!(cfg.pg.get_ssl_mode(), SslMode::Require);
        assert_eq!(cfg.ssl_root_cert, Some(PathBuf::from("/ca.pem")));
        let req = parse("postgres://u@h/d?sslmode=require").unwrap();
        assert_eq!(req.tls_verify, TlsVerify::None);
        assert_eq!(req.pg.get_ssl_mode(), SslMode::Require);
        assert!(parse("postgresql://u@h/d?sslmode=bogus").is_err());
    }

    #[test]
    fn client_certificate_from_the_url_in_both_forms() {
        let url = parse(
            "postgresql://u@h/d?sslmode=verify-full&sslcert=%2Fetc%2Fc.crt&sslkey=/etc/c.key\
             &application_name=x",
        )
        .unwrap();
        assert_eq!(
            url.client_cert,
            Some(ClientCert {
                cert: PathBuf::from("/etc/c.crt"),
                key: PathBuf::from("/etc/c.key"),
            })
        );
        // tokio-postgres never sees the two options (it would refuse them as unknown).
        assert_eq!(url.pg.get_application_name(), Some("x"));
        let kv = parse("host=h user=u sslcert=/a/c.pem sslkey=/a/k.pem sslmode=require").unwrap();
        assert_eq!(
            kv.client_cert,
            Some(ClientCert {
                cert: PathBuf::from("/a/c.pem"),
                key: PathBuf::from("/a/k.pem"),
            })
        );
    }

    #[test]
    fn client_certificate_is_ignored_without_tls() {
        let cfg = parse("postgresql://u@h/d?sslmode=disable&sslcert=/c.crt").unwrap();
        assert_eq!(cfg.client_cert, None);
    }

    #[test]
    fn client_certificate_and_key_come_in_pairs() {
        // The empty other option keeps PGSSLCERT/PGSSLKEY of the environment out of the test.
        for url in [
            "postgresql://u@h/d?sslcert=/only/c.crt&sslkey=",
            "postgresql://u@h/d?sslkey=/only/c.key&sslcert=",
            "host=h sslcert=/only/c.crt sslkey=",
        ] {
            let err = parse(url).unwrap_err();
            assert_eq!(err.kind, crate::error::ErrorKind::Config, "{url}");
            assert!(err.message.contains("/only/c."), "{}", err.message);
            assert!(err.message.contains("from the URL"), "{}", err.message);
        }
    }

    #[test]
    fn client_certificate_falls_back_to_the_libpq_variables() {
        let env = |name: &str| match name {
            "PGSSLCERT" => Some("/env/c.crt".to_string()),
            "PGSSLKEY" => Some("/env/c.key".to_string()),
            _ => None,
        };
        let both = |cert: &str, key: &str| {
            Some(ClientCert {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            })
        };
        assert_eq!(
            client_cert(None, None, env).unwrap(),
            both("/env/c.crt", "/env/c.key")
        );
        // The URL wins, one option at a time.
        assert_eq!(
            client_cert(Some("/url/c.crt".into()), None, env).unwrap(),
            both("/url/c.crt", "/env/c.key")
        );
        assert_eq!(
            client_cert(Some("/u.crt".into()), Some("/u.key".into()), env).unwrap(),
            both("/u.crt", "/u.key")
        );
        // An empty URL value turns the certificate off, variables or not.
        assert_eq!(
            client_cert(Some(String::new()), Some(String::new()), env).unwrap(),
            None
        );
        let none = |_: &str| None;
        assert_eq!(client_cert(None, None, none).unwrap(), None);
        // Empty variables count as unset.
        let empty = |_: &str| Some(String::new());
        assert_eq!(client_cert(None, None, empty).unwrap(), None);
        // Only one of the two, wherever it comes from, is an error naming its source.
        let only_cert = |name: &str| (name == "PGSSLCERT").then(|| "/env/c.crt".to_string());
        let err = client_cert(None, None, only_cert).unwrap_err();
        assert_eq!(err.kind, crate::error::ErrorKind::Config);
        assert!(
            err.message.contains("/env/c.crt") && err.message.contains("from PGSSLCERT"),
            "{}",
            err.message
        );
        let only_key = |name: &str| (name == "PGSSLKEY").then(|| "/env/c.key".to_string());
        let err = client_cert(None, None, only_key).unwrap_err();
        assert!(err.message.contains("from PGSSLKEY"), "{}", err.message);
        let err = client_cert(Some(String::new()), None, env).unwrap_err();
        assert!(err.message.contains("sslkey /env/c.key"), "{}", err.message);
    }

    #[test]
    fn options_are_applied_and_validated() {
        let cfg = parse("postgresql://u@h/d").unwrap();
        assert_eq!(cfg.pg.get_application_name(), Some("adk-postgres"));
        assert_eq!(cfg.pg.get_connect_timeout(), Some(&Duration::from_secs(10)));
        let bad = StoreOptions {
            pool_size: 0,
            ..StoreOptions::default()
        };
        assert!(StoreConfig::parse("postgresql://u@h/d", bad).is_err());
        let bad_schema = StoreOptions {
            schema: "x".repeat(64),
            ..StoreOptions::default()
        };
        assert!(StoreConfig::parse("postgresql://u@h/d", bad_schema).is_err());
    }

    #[test]
    fn schema_names_that_are_unsafe_or_truncated_are_refused() {
        for bad in [
            "",
            "a$$b",
            "$",
            "x$y",
            "a\0b",
            "pg_mine",
            &"x".repeat(64),
            &"ü".repeat(32),
        ] {
            let err = validate_schema_name(bad).unwrap_err();
            assert_eq!(err.kind, crate::error::ErrorKind::Config, "{bad:?}");
        }
        for good in [
            "public",
            "we\"ird",
            "a;b",
            "a--b",
            "with space",
            "shop_ü",
            "日本",
            "Pg_upper",
            &"x".repeat(63),
            &format!("{}x", "ü".repeat(31)),
        ] {
            validate_schema_name(good).unwrap();
        }
    }

    #[test]
    fn rejects_other_schemes_and_hostless_urls() {
        assert!(parse("mysql://u@h/d").is_err());
        assert!(parse("postgresql:///d").is_err());
    }

    #[test]
    fn errors_and_redaction_hide_passwords() {
        let err = parse("postgresql://bob:hunter2@h:notaport/d").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert_eq!(
            redact("postgresql://bob:hunter2@h/d"),
            "postgresql://bob:***@h/d"
        );
        assert_eq!(
            redact("postgresql://h/d?password=hunter2&x=1"),
            "postgresql://h/d?password=***&x=1"
        );
        assert_eq!(redact("host=h password=hunter2"), "host=h password=***");
    }
}
