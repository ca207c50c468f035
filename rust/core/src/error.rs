//! Store errors, classified so the bindings can map each to one Python exception class.
//!
//! Classification is by SQLSTATE class (see PostgreSQL's "Appendix A. Error Codes") for server
//! errors, and by failure kind for client-side ones. Messages never contain a password: server
//! messages do not echo it and configuration errors are built from redacted parts only.

use std::fmt;

/// What went wrong, coarse enough to pick an exception class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad URL or option; nothing was sent.
    Config,
    /// Server unreachable, login refused, connection dropped or server shutting down.
    Connection,
    /// No pooled connection became available within the acquire timeout.
    PoolTimeout,
    /// The server cancelled the statement (statement_timeout, cancel request).
    StatementTimeout,
    /// A value the server cannot store (SQLSTATE class 22).
    Data,
    /// Constraint violation (SQLSTATE class 23).
    Integrity,
    /// Serialization failure or deadlock (SQLSTATE class 40).
    Serialization,
    /// Missing relation/column, or a failed migration (SQLSTATE class 42 except 42501).
    Schema,
    /// The role lacks a privilege (42501).
    Privilege,
    /// The store was created in another process (the caller forked).
    Forked,
    /// The store was closed.
    Closed,
    /// Any other server error.
    Database,
    /// A bug on our side (a Rust task panicked); the message says what is known.
    Internal,
}

/// An error from the store: a kind, a human message and, for server errors, the SQLSTATE.
#[derive(Debug, Clone)]
pub struct StoreError {
    pub kind: ErrorKind,
    pub message: String,
    pub sqlstate: Option<String>,
}

pub type Result<T> = std::result::Result<T, StoreError>;

impl StoreError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        StoreError {
            kind,
            message: message.into(),
            sqlstate: None,
        }
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sqlstate {
            Some(code) => write!(f, "{} (SQLSTATE {code})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for StoreError {}

/// Maps a SQLSTATE code to an error kind.
pub fn kind_for_sqlstate(code: &str) -> ErrorKind {
    match code {
        "57014" => ErrorKind::StatementTimeout,
        "42501" => ErrorKind::Privilege,
        // admin_shutdown, crash_shutdown, cannot_connect_now, idle_session_timeout
        "57P01" | "57P02" | "57P03" | "57P05" => ErrorKind::Connection,
        // the database named in the URL does not exist
        "3D000" => ErrorKind::Connection,
        _ => match &code[..2.min(code.len())] {
            "08" | "28" => ErrorKind::Connection,
            "22" => ErrorKind::Data,
            // program_limit_exceeded: e.g. a jsonb string over 256 MiB
            "54" => ErrorKind::Data,
            "23" => ErrorKind::Integrity,
            "40" => ErrorKind::Serialization,
            "42" | "3F" => ErrorKind::Schema,
            _ => ErrorKind::Database,
        },
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        if let Some(db) = err.as_db_error() {
            let code = db.code().code().to_string();
            let mut message = db.message().to_string();
            if let Some(detail) = db.detail() {
                message.push_str(": ");
                message.push_str(detail);
            }
            return StoreError {
                kind: kind_for_sqlstate(&code),
                message,
                sqlstate: Some(code),
            };
        }
        // Not a server error: I/O, closed connection, TLS, connect timeout, protocol.
        // tokio-postgres' Display names the cause and never includes the password.
        let mut message = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        StoreError::new(ErrorKind::Connection, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstate_classes_map_to_kinds() {
        assert_eq!(kind_for_sqlstate("22P05"), ErrorKind::Data);
        assert_eq!(kind_for_sqlstate("22001"), ErrorKind::Data);
        assert_eq!(kind_for_sqlstate("23505"), ErrorKind::Integrity);
        assert_eq!(kind_for_sqlstate("40001"), ErrorKind::Serialization);
        assert_eq!(kind_for_sqlstate("40P01"), ErrorKind::Serialization);
        assert_eq!(kind_for_sqlstate("57014"), ErrorKind::StatementTimeout);
        assert_eq!(kind_for_sqlstate("57P01"), ErrorKind::Connection);
        assert_eq!(kind_for_sqlstate("08006"), ErrorKind::Connection);
        assert_eq!(kind_for_sqlstate("28P01"), ErrorKind::Connection);
        assert_eq!(kind_for_sqlstate("42P01"), ErrorKind::Schema);
        assert_eq!(kind_for_sqlstate("42501"), ErrorKind::Privilege);
        assert_eq!(kind_for_sqlstate("53300"), ErrorKind::Database);
    }

    #[test]
    fn display_includes_sqlstate() {
        let err = StoreError {
            kind: ErrorKind::Data,
            message: "bad".into(),
            sqlstate: Some("22P05".into()),
        };
        assert_eq!(err.to_string(), "bad (SQLSTATE 22P05)");
    }
}
