//! Push-notification configs: the SDK's `TaskPushNotificationConfig`s, serialized, per task
//! and owner, keyed by config id.

use super::{check_size, A2a};
use crate::db::Retry;
use crate::error::Result;

impl A2a {
    /// Stores a config (replacing one with the same id; it then counts as the newest).
    pub async fn set_push_config(
        &self,
        owner: &str,
        task_id: &str,
        config_id: &str,
        config: &[u8],
    ) -> Result<()> {
        check_size("the push notification config", config)?;
        self.db
            .fetch(
                &self.sql.set_push,
                &[&owner, &task_id, &config_id, &config],
                Retry::Yes,
            )
            .await?;
        Ok(())
    }

    /// An owner's configs of a task, oldest first.
    pub async fn push_configs(&self, owner: &str, task_id: &str) -> Result<Vec<Vec<u8>>> {
        let rows = self
            .db
            .fetch(&self.sql.get_push, &[&owner, &task_id], Retry::Yes)
            .await?;
        Ok(rows.into_iter().map(|row| row.get(0)).collect())
    }

    /// Every owner's configs of a task (the dispatch of a notification).
    pub async fn push_configs_for_dispatch(&self, task_id: &str) -> Result<Vec<Vec<u8>>> {
        let rows = self
            .db
            .fetch(&self.sql.get_push_for_dispatch, &[&task_id], Retry::Yes)
            .await?;
        Ok(rows.into_iter().map(|row| row.get(0)).collect())
    }

    /// Deletes one config of a task, or all of the owner's (`config_id` None); how many.
    pub async fn delete_push_configs(
        &self,
        owner: &str,
        task_id: &str,
        config_id: Option<&str>,
    ) -> Result<u64> {
        let rows = self
            .db
            .fetch(
                &self.sql.delete_push,
                &[&owner, &task_id, &config_id],
                Retry::Yes,
            )
            .await?;
        Ok(rows.len() as u64)
    }
}
