//! adk-postgres core: PostgreSQL persistence for Google ADK (sessions, artifacts, memory).
//!
//! Pure Rust (no Python): the PyO3 layer in `rust/python` only converts arguments and maps
//! errors. A [`db::Database`] is one pool on one schema; each service is a handle that
//! borrows it and keeps its SQL beside its code:
//!
//! * [`sessions`] — sessions, events, app/user state ([`sessions::Sessions`])
//! * [`artifacts`] — versioned artifacts, content by SHA-256 ([`artifacts::Artifacts`])
//! * [`memory`] — memory entries and their ranked search ([`memory::Memory`])
//! * [`a2a`] — A2A tasks, push-notification configs, feedback ([`a2a::A2a`])
//! * [`conversations`] — conversation lists, titles, archive, search, state queries
//!   ([`conversations::Conversations`])
//! * [`agents`] — the agent registry: versioned ADK agent configs ([`agents::Agents`])
//! * [`admin`] — migration status, doctor, stats, prune ([`admin::Admin`])
//! * [`tenancy`] — row-level security by tenant ([`tenancy::Tenancy`])
//!
//! What they share, in the order a request meets it:
//!
//! * [`config`] — URL and options → [`config::StoreConfig`]
//! * [`tls`] — rustls connector for `sslmode`
//! * [`pool`] — deadpool-postgres pool, acquire errors
//! * [`connect`] — opening a connection host by host, each within `connect_timeout`
//! * [`db`] — the handle: pool, migrations on first use, retry on a broken connection
//! * [`failover`] — waiting for a writable node after a lost connection
//! * [`replica`] — reads from standbys, never older than what this process wrote or saw
//! * [`migrations`] — versioned SQL, applied under an advisory lock
//! * [`statement`] — typed parameters; statements prepared and cached, or sent unnamed
//! * [`ident`] — quoting the schema name into SQL text
//! * [`codec`] — raw JSON/JSONB pass-through
//! * [`error`] — SQLSTATE → error kind

pub mod a2a;
pub mod admin;
pub mod agents;
pub mod artifacts;
pub mod codec;
pub mod config;
pub mod connect;
pub mod conversations;
pub mod db;
pub mod error;
pub mod failover;
pub mod ident;
pub mod memory;
pub mod migrations;
pub mod password;
pub mod pool;
pub mod replica;
pub mod sessions;
pub mod statement;
pub mod tenancy;
pub mod tls;

pub use config::{StoreConfig, StoreOptions};
pub use db::Database;
pub use error::{ErrorKind, Result, StoreError};
