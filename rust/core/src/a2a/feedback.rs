//! Feedback on tasks: a rating from 1 to 5, optional text and JSON metadata.

use super::A2a;
use crate::codec::{JsonParam, JsonText};
use crate::db::Retry;
use crate::error::{ErrorKind, Result, StoreError};

/// Feedback to add to a task.
#[derive(Debug, Clone, Copy)]
pub struct NewFeedback<'a> {
    /// A new random id (a UUID), made by the caller.
    pub feedback_id: &'a str,
    pub owner: &'a str,
    pub task_id: &'a str,
    pub rating: i16,
    pub text: Option<&'a str>,
    /// JSON text of an object.
    pub metadata: Option<&'a [u8]>,
}

/// Stored feedback.
#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    pub feedback_id: String,
    pub rating: i16,
    pub text: Option<String>,
    pub metadata: Option<Vec<u8>>,
    /// Seconds since the epoch.
    pub created_at: f64,
}

impl A2a {
    /// Adds feedback; `None` if the owner has no such task (nothing is written). Returns its
    /// time (epoch seconds).
    pub async fn add_feedback(&self, feedback: NewFeedback<'_>) -> Result<Option<f64>> {
        if !(1..=5).contains(&feedback.rating) {
            return Err(StoreError::new(
                ErrorKind::Data,
                format!("rating must be between 1 and 5, not {}", feedback.rating),
            ));
        }
        let metadata = feedback.metadata.map(JsonParam);
        let row = self
            .db
            .fetch_opt(
                &self.sql.add_feedback,
                &[
                    &feedback.owner,
                    &feedback.task_id,
                    &feedback.rating,
                    &feedback.text,
                    &metadata,
                    &feedback.feedback_id,
                ],
                // A repeat after a lost commit would fail on the id: not retried.
                Retry::No,
            )
            .await?;
        Ok(row.map(|row| row.get(0)))
    }

    /// A task's feedback, oldest first, after the feedback with id `after` (`None`: from the
    /// start; an unknown id gives nothing).
    pub async fn list_feedback(
        &self,
        owner: &str,
        task_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Feedback>> {
        let rows = self
            .db
            .fetch(
                &self.sql.list_feedback,
                &[&owner, &task_id, &after, &limit],
                Retry::Yes,
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| Feedback {
                feedback_id: row.get(0),
                rating: row.get(1),
                text: row.get(2),
                metadata: row.get::<_, Option<JsonText>>(3).map(|j| j.0.to_vec()),
                created_at: row.get(4),
            })
            .collect())
    }
}
