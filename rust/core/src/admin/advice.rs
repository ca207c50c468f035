//! Advice for a failed connection, by SQLSTATE and then by the I/O error underneath: the
//! doctor's most useful output (refused port, bad password, missing database, ...).

use tokio_postgres::config::Host;

use crate::config::StoreConfig;

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
pub(super) struct Target {
    host: String,
    port: String,
    dbname: String,
    user: String,
}

impl Target {
    pub(super) fn of(config: &StoreConfig) -> Self {
        let user = config.pg.get_user().unwrap_or("").to_string();
        Target {
            host: config.hosts(),
            port: config.ports(),
            dbname: config.pg.get_dbname().unwrap_or(&user).to_string(),
            user,
        }
    }

    pub(super) fn is_local(config: &StoreConfig) -> bool {
        config.pg.get_hosts().iter().all(|h| match h {
            Host::Tcp(name) => matches!(name.as_str(), "localhost" | "127.0.0.1" | "::1"),
            #[cfg(unix)]
            Host::Unix(_) => true,
        })
    }
}

/// What to do about a failed connection.
pub(super) fn connect_advice(failure: ConnectFailure, t: &Target) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
