//! Tasks: save with a version check, get, list, delete.
//!
//! A save names the version of the stored task it is based on (`None`: it believes the task
//! is new). If the row has moved on, nothing is written and the stored task comes back, for
//! the caller to merge with and save again: concurrent saves from several processes are
//! serialised without holding a lock across round trips, and none is lost.

use super::{check_size, A2a};
use crate::db::Retry;
use crate::error::Result;

/// A task as it is saved: the serialized task and the fields queries use.
#[derive(Debug, Clone, Copy)]
pub struct TaskWrite<'a> {
    pub owner: &'a str,
    pub task_id: &'a str,
    pub context_id: &'a str,
    /// The TaskState name (`TASK_STATE_WORKING`, ...).
    pub state: &'a str,
    /// The status timestamp, nanoseconds since the epoch.
    pub status_ts_ns: Option<i64>,
    pub task: &'a [u8],
}

/// A stored task: its version and its serialized bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTask {
    pub version: i64,
    pub task: Vec<u8>,
}

/// How a save ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveOutcome {
    /// Written; the task's version now.
    Saved { version: i64 },
    /// Not written: the stored task is not the version the save was based on (`None`: there is
    /// no stored task any more, it was deleted).
    Conflict { current: Option<StoredTask> },
}

/// A ListTasks query (the SDK's `ListTasksRequest` after validation).
#[derive(Debug, Clone, Default)]
pub struct TaskQuery<'a> {
    pub owner: &'a str,
    pub context_id: Option<&'a str>,
    pub state: Option<&'a str>,
    /// Only tasks whose status time is at or after this (ns).
    pub status_after_ns: Option<i64>,
    /// Tasks strictly after this `(status time, task id)` in list order.
    pub cursor: Option<(Option<i64>, &'a str)>,
    pub limit: i64,
}

/// One listed task: its sort key (for the next page's cursor) and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTask {
    pub status_ts_ns: Option<i64>,
    pub task_id: String,
    pub task: Vec<u8>,
}

/// A page of tasks and how many match the query in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskList {
    pub total: i64,
    pub tasks: Vec<ListedTask>,
}

impl A2a {
    /// Saves `task` if the stored one is still version `expected` (`None`: if there is none).
    /// Safe to retry: a repeated save finds the row at a newer version and reports a conflict,
    /// and merging a task with itself changes nothing.
    pub async fn save_task(
        &self,
        task: TaskWrite<'_>,
        expected: Option<i64>,
    ) -> Result<SaveOutcome> {
        check_size("the task", task.task)?;
        let t = &task;
        match expected {
            None => {
                let row = self
                    .db
                    .fetch_opt(
                        &self.sql.insert_task,
                        &[
                            &t.owner,
                            &t.task_id,
                            &t.context_id,
                            &t.state,
                            &t.status_ts_ns,
                            &t.task,
                        ],
                        Retry::Yes,
                    )
                    .await?;
                match row {
                    Some(row) if row.get::<_, bool>(0) => Ok(SaveOutcome::Saved {
                        version: row.get(1),
                    }),
                    Some(row) => Ok(SaveOutcome::Conflict {
                        current: Some(StoredTask {
                            version: row.get(1),
                            task: row.get(2),
                        }),
                    }),
                    // Inserted by another transaction after this statement's snapshot: read it.
                    None => self.conflict(t.owner, t.task_id).await,
                }
            }
            Some(version) => {
                let row = self
                    .db
                    .fetch_opt(
                        &self.sql.update_task,
                        &[
                            &t.owner,
                            &t.task_id,
                            &t.context_id,
                            &t.state,
                            &t.status_ts_ns,
                            &t.task,
                            &version,
                        ],
                        Retry::Yes,
                    )
                    .await?;
                match row {
                    Some(row) => Ok(SaveOutcome::Saved {
                        version: row.get(0),
                    }),
                    None => self.conflict(t.owner, t.task_id).await,
                }
            }
        }
    }

    async fn conflict(&self, owner: &str, task_id: &str) -> Result<SaveOutcome> {
        Ok(SaveOutcome::Conflict {
            current: self.get_task(owner, task_id).await?,
        })
    }

    pub async fn get_task(&self, owner: &str, task_id: &str) -> Result<Option<StoredTask>> {
        let row = self
            .db
            .fetch_opt(&self.sql.get_task, &[&owner, &task_id], Retry::Yes)
            .await?;
        Ok(row.map(|row| StoredTask {
            version: row.get(0),
            task: row.get(1),
        }))
    }

    pub async fn list_tasks(&self, query: &TaskQuery<'_>) -> Result<TaskList> {
        let sql = if query.context_id.is_some() {
            &self.sql.list_context_tasks
        } else {
            &self.sql.list_tasks
        };
        let (cursor_ts, cursor_id) = match query.cursor {
            Some((ts, id)) => (ts, Some(id)),
            None => (None, None),
        };
        let has_cursor = query.cursor.is_some();
        let rows = self
            .db
            .fetch(
                sql,
                &[
                    &query.owner,
                    &query.context_id,
                    &query.state,
                    &query.status_after_ns,
                    &cursor_ts,
                    &cursor_id,
                    &has_cursor,
                    &query.limit,
                ],
                Retry::Yes,
            )
            .await?;
        let total = rows.first().map_or(0, |row| row.get(0));
        let tasks = rows
            .into_iter()
            .filter_map(|row| {
                let task_id: Option<String> = row.get(2);
                task_id.map(|task_id| ListedTask {
                    status_ts_ns: row.get(1),
                    task_id,
                    task: row.get(3),
                })
            })
            .collect();
        Ok(TaskList { total, tasks })
    }

    /// Deletes a task (and its feedback); `false` if there was none.
    pub async fn delete_task(&self, owner: &str, task_id: &str) -> Result<bool> {
        let rows = self
            .db
            .fetch(&self.sql.delete_task, &[&owner, &task_id], Retry::Yes)
            .await?;
        Ok(!rows.is_empty())
    }

    /// Deletes every task of a context (an ADK session id): of one owner, or of all. Returns
    /// how many.
    pub async fn delete_context(&self, context_id: &str, owner: Option<&str>) -> Result<u64> {
        let rows = self
            .db
            .fetch(&self.sql.delete_context, &[&context_id, &owner], Retry::Yes)
            .await?;
        Ok(rows.len() as u64)
    }
}
