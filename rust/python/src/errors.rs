//! Store errors → the exception classes defined in Python (`adk_postgres.errors`).
//!
//! The classes live in Python so they can subclass builtins (ValueError, TimeoutError, …) and
//! be documented with the package; Rust picks the class by error kind.

use adk_postgres_core::{ErrorKind, StoreError};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

fn class_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Config => "ConfigurationError",
        ErrorKind::Connection => "DatabaseConnectionError",
        ErrorKind::PoolTimeout => "PoolTimeoutError",
        ErrorKind::StatementTimeout => "StatementTimeoutError",
        ErrorKind::Data => "DataError",
        ErrorKind::Integrity => "IntegrityError",
        ErrorKind::Serialization => "SerializationFailure",
        ErrorKind::Schema => "SchemaError",
        ErrorKind::Privilege => "InsufficientPrivilegeError",
        ErrorKind::Forked => "ProcessForkedError",
        ErrorKind::Closed => "ClosedError",
        ErrorKind::Database => "DatabaseError",
        ErrorKind::Internal => "InternalError",
    }
}

/// Builds the Python exception for a store error.
pub fn to_pyerr(err: StoreError) -> PyErr {
    Python::attach(|py| {
        let built = py
            .import("adk_postgres.errors")
            .and_then(|m| m.getattr(class_name(err.kind)))
            .and_then(|cls| cls.call1((err.to_string(), err.sqlstate.clone())));
        match built {
            Ok(instance) => PyErr::from_value(instance),
            // Only if the package itself is broken; still never a panic.
            Err(_) => PyRuntimeError::new_err(err.to_string()),
        }
    })
}
