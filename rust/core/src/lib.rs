//! adk-postgres core: a pooled async PostgreSQL store for Google ADK sessions.
//!
//! Pure Rust (no Python): the PyO3 layer in `rust/python` only converts arguments and maps
//! errors. Modules, in the order a request meets them:
//!
//! * [`config`] — URL and options → [`config::StoreConfig`]
//! * [`tls`] — rustls connector for `sslmode`
//! * [`pool`] — deadpool-postgres pool, acquire errors
//! * [`migrations`] — versioned SQL, applied under an advisory lock
//! * [`sql`] — statement text per schema
//! * [`codec`] — raw JSON/JSONB pass-through
//! * [`store`] / [`sessions`] — the operations
//! * [`error`] — SQLSTATE → error kind

pub mod admin;
pub mod artifacts;
pub mod coalesce;
pub mod codec;
pub mod config;
pub mod error;
pub mod memory;
pub mod migrations;
pub mod pool;
pub mod sessions;
pub mod sql;
pub mod statement;
pub mod store;
pub mod tenancy;
pub mod tls;
pub mod transfer;

pub use config::{StoreConfig, StoreOptions};
pub use error::{ErrorKind, Result, StoreError};
pub use sessions::{AppendOutcome, NewEvent, SessionKey};
pub use store::Store;
