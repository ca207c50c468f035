//! The agent registry (V11, `migrations/V11__agent_registry.sql`): versioned ADK agent configs.
//!
//! [`Agents`] is the handle; each operation is one SQL statement on one pooled connection
//! (`sql.rs` holds their text). A config is YAML text, stored as given: whether ADK can load
//! it is checked in Python (`adk_postgres/agent_registry.py`), which has ADK.

mod sql;

use std::sync::Arc;

use crate::db::{Database, Retry};
use crate::error::{ErrorKind, Result, StoreError};
use sql::AgentSql;

/// The longest agent name (the column is `varchar(128)`, like ADK's app names).
pub const MAX_NAME_LENGTH: usize = 128;
/// The largest config accepted, in bytes of UTF-8.
pub const MAX_YAML_BYTES: usize = 1024 * 1024;

/// An agent as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentInfo {
    pub name: String,
    pub current_version: i32,
    /// When it was archived (epoch seconds); `None`: served.
    pub archived_at: Option<f64>,
    pub usage_count: i64,
    pub last_used_at: Option<f64>,
    pub created_at: f64,
    pub updated_at: f64,
}

/// One version of an agent, with the agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentVersion {
    pub agent: AgentInfo,
    pub version: i32,
    pub yaml: String,
    pub created_at: f64,
}

/// One line of an agent's history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VersionInfo {
    pub version: i32,
    pub created_at: f64,
    /// The config's size in bytes.
    pub size: i64,
}

/// What a server needs to serve an agent: its current version, whether it is archived, and
/// its YAML unless the server already has that version (or the agent is archived).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub version: i32,
    pub archived: bool,
    pub yaml: Option<String>,
}

/// Which agents a put may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// A new agent, or the next version of an existing one.
    Any,
    /// Only a new agent.
    Create,
    /// Only the next version of an existing agent.
    Update,
}

/// The agent-registry operations on one database handle.
pub struct Agents {
    db: Arc<Database>,
    sql: AgentSql,
}

fn data_error(message: String) -> StoreError {
    StoreError::new(ErrorKind::Data, message)
}

/// A `DataError` unless `name` is an agent name: 1-128 ASCII letters, digits and
/// underscores, starting with a letter (what ADK's loader and app names both accept).
pub fn check_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LENGTH
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        // ADK reserves the app name "user" for end-user input.
        && name != "user";
    if valid {
        Ok(())
    } else {
        Err(data_error(format!(
            "invalid agent name {name:?}: use 1-{MAX_NAME_LENGTH} letters, digits and \
             underscores, starting with a letter (not \"user\")"
        )))
    }
}

fn check_yaml(yaml: &str) -> Result<()> {
    if yaml.len() > MAX_YAML_BYTES {
        return Err(data_error(format!(
            "the agent config is {} bytes; the limit is {MAX_YAML_BYTES}",
            yaml.len()
        )));
    }
    if yaml.contains('\0') {
        return Err(data_error(
            "the agent config contains a NUL character, which PostgreSQL cannot store".into(),
        ));
    }
    Ok(())
}

fn agent_info(row: &tokio_postgres::Row) -> AgentInfo {
    AgentInfo {
        name: row.get(0),
        current_version: row.get(1),
        archived_at: row.get(2),
        usage_count: row.get(3),
        last_used_at: row.get(4),
        created_at: row.get(5),
        updated_at: row.get(6),
    }
}

impl Agents {
    pub fn new(db: Arc<Database>) -> Self {
        let sql = AgentSql::new(db.schema());
        Agents { db, sql }
    }

    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// Stores `yaml` as the next version of `name` (1 for a new agent) and returns it, or
    /// `None` when `mode` refused (`Create`: the agent exists; `Update`: it does not).
    /// Concurrent puts of one name, from any process, get distinct versions. An archived
    /// agent stays archived.
    pub async fn put(&self, name: &str, yaml: &str, mode: PutMode) -> Result<Option<i32>> {
        check_name(name)?;
        check_yaml(yaml)?;
        let sql = match mode {
            PutMode::Any => &self.sql.put,
            PutMode::Create => &self.sql.create,
            PutMode::Update => &self.sql.update,
        };
        let row = self
            .db
            // A repeat after a lost commit would store a second version: not retried.
            .fetch_opt(sql, &[&name, &yaml], Retry::No)
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Every agent by name; archived ones too when `include_archived`.
    pub async fn list(&self, include_archived: bool) -> Result<Vec<AgentInfo>> {
        let rows = self
            .db
            .fetch(&self.sql.list, &[&include_archived], Retry::Yes)
            .await?;
        Ok(rows.iter().map(agent_info).collect())
    }

    /// Version `version` of `name` (`None`: the current one); `None` if there is no such
    /// agent or version.
    pub async fn show(&self, name: &str, version: Option<i32>) -> Result<Option<AgentVersion>> {
        check_name(name)?;
        let row = self
            .db
            .fetch_opt(&self.sql.show, &[&name, &version], Retry::Yes)
            .await?;
        Ok(row.map(|row| AgentVersion {
            agent: agent_info(&row),
            version: row.get(7),
            yaml: row.get(8),
            created_at: row.get(9),
        }))
    }

    /// Every version of `name`, newest first (empty: no such agent).
    pub async fn history(&self, name: &str) -> Result<Vec<VersionInfo>> {
        check_name(name)?;
        let rows = self
            .db
            .fetch(&self.sql.history, &[&name], Retry::Yes)
            .await?;
        Ok(rows
            .iter()
            .map(|row| VersionInfo {
                version: row.get(0),
                created_at: row.get(1),
                size: row.get(2),
            })
            .collect())
    }

    /// Archives `name` (no longer served; its versions are kept). `false`: no such agent.
    pub async fn archive(&self, name: &str) -> Result<bool> {
        check_name(name)?;
        let row = self
            .db
            .fetch_opt(&self.sql.archive, &[&name], Retry::Yes)
            .await?;
        Ok(row.is_some())
    }

    /// Serves `name` again. `false`: no such agent.
    pub async fn restore(&self, name: &str) -> Result<bool> {
        check_name(name)?;
        let row = self
            .db
            .fetch_opt(&self.sql.restore, &[&name], Retry::Yes)
            .await?;
        Ok(row.is_some())
    }

    /// The current version of `name` (and its YAML unless it is `known`); `None`: no such
    /// agent.
    pub async fn current(&self, name: &str, known: Option<i32>) -> Result<Option<Current>> {
        check_name(name)?;
        let row = self
            .db
            .fetch_opt(&self.sql.current, &[&name, &known], Retry::Yes)
            .await?;
        Ok(row.map(|row| Current {
            version: row.get(0),
            archived: row.get(1),
            yaml: row.get(2),
        }))
    }

    /// Adds `uses[i]` to the usage count of `names[i]` and sets their last-used time; unknown
    /// names are skipped. Returns how many agents were updated.
    pub async fn record_usage(&self, names: &[String], uses: &[i64]) -> Result<u64> {
        if names.len() != uses.len() {
            return Err(data_error("names and uses differ in length".into()));
        }
        if names.is_empty() {
            return Ok(0);
        }
        let rows = self
            .db
            // Counts are best effort: a lost commit is not repeated (no double count).
            .fetch(&self.sql.record_usage, &[&names, &uses], Retry::No)
            .await?;
        Ok(rows.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "weather_agent", "A1_b2", &"x".repeat(128)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "_x",
            "__special",
            "a-b",
            "a.b",
            "../etc",
            "a b",
            "é",
            "a\0",
            "user",
            &"x".repeat(129),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn yaml_limits() {
        assert!(check_yaml("name: a").is_ok());
        assert!(check_yaml("a\0").is_err());
        assert!(check_yaml(&"x".repeat(MAX_YAML_BYTES + 1)).is_err());
    }
}
