//! Storing entries (one statement), their embeddings, and deleting one entry (remembered, so
//! re-adding its session does not bring it back).

use super::vector::{check_vector, VectorParam};
use super::{EmbeddingBatch, Memory, MemoryUpsert};
use crate::codec::JsonTextParam;
use crate::db::Retry;
use crate::error::{ErrorKind, Result, StoreError};
use crate::statement::WithType;

impl Memory {
    /// Stores entries (one statement); returns the ids that need an embedding, in id order
    /// (always empty without an embedding column).
    pub async fn upsert_memories(&self, upsert: MemoryUpsert<'_>) -> Result<Vec<String>> {
        let prepared = self.prepared().await?;
        let e = upsert.entries;
        let ids: Vec<&str> = e.iter().map(|m| m.memory_id).collect();
        let sessions: Vec<Option<&str>> = e.iter().map(|m| m.session_id).collect();
        let authors: Vec<Option<&str>> = e.iter().map(|m| m.author).collect();
        let times: Vec<Option<f64>> = e.iter().map(|m| m.event_ts).collect();
        let stamps: Vec<Option<&str>> = e.iter().map(|m| m.timestamp_text).collect();
        let contents: Vec<JsonTextParam> = e.iter().map(|m| JsonTextParam(m.content)).collect();
        let metadata: Vec<Option<JsonTextParam>> = e
            .iter()
            .map(|m| m.custom_metadata.map(JsonTextParam))
            .collect();
        let texts: Vec<&str> = e.iter().map(|m| m.search_text).collect();
        let dim = self
            .options
            .vector
            .then(|| upsert.embedding_dim.unwrap_or(0));
        let rows = self
            .db
            .fetch(
                &prepared.upsert,
                &[
                    &upsert.app_name,
                    &upsert.user_id,
                    &ids,
                    &sessions,
                    &authors,
                    &times,
                    &stamps,
                    &contents,
                    &metadata,
                    &texts,
                    &upsert.replace_session,
                    &upsert.from_events,
                    &self.options.text_search_config,
                    &dim,
                ],
                Retry::Yes,
            )
            .await?;
        let scope = (upsert.app_name, upsert.user_id);
        self.db.wrote_scope(&self.positions, scope).await;
        if !self.options.vector || !prepared.caps.vector_ready() {
            return Ok(Vec::new());
        }
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Stores embeddings (`vectors`: `dim` floats per id) for entries whose search text is
    /// still `texts[i]`. Zero vectors are stored as no embedding. Returns the rows updated.
    pub async fn set_memory_embeddings(&self, batch: EmbeddingBatch<'_>) -> Result<u64> {
        let EmbeddingBatch {
            app_name,
            user_id,
            ids,
            texts,
            dim,
            vectors,
        } = batch;
        if ids.len() != texts.len() || dim == 0 || vectors.len() != ids.len() * dim {
            return Err(StoreError::new(
                ErrorKind::Data,
                format!(
                    "{} embeddings of dimension {dim} expected, got {} floats",
                    ids.len(),
                    vectors.len()
                ),
            ));
        }
        let prepared = self.prepared().await?;
        let caps = &prepared.caps;
        let (Some(sql), Some(v), Some((_, array_type))) = (
            &prepared.set_embeddings,
            &caps.vector_schema,
            caps.vector_types(),
        ) else {
            return Ok(0);
        };
        let dim_i32 = i32::try_from(dim).map_err(|_| StoreError::config("dimension too large"))?;
        let mut params: Vec<Option<VectorParam>> = Vec::with_capacity(ids.len());
        for chunk in vectors.chunks_exact(dim) {
            params.push(check_vector(chunk)?.then_some(VectorParam(chunk)));
        }
        self.ensure_hnsw(v, dim_i32).await?;
        let vectors = WithType(params, array_type);
        let rows = self
            .db
            .fetch(
                &format!("{sql} RETURNING 1"),
                &[&app_name, &user_id, &ids, &texts, &vectors],
                Retry::Yes,
            )
            .await?;
        self.db
            .wrote_scope(&self.positions, (app_name, user_id))
            .await;
        Ok(rows.len() as u64)
    }

    /// Deletes one entry and remembers its id; `false` if there was none.
    pub async fn delete_memory(
        &self,
        app_name: &str,
        user_id: &str,
        memory_id: &str,
    ) -> Result<bool> {
        let prepared = self.prepared().await?;
        let row = self
            .db
            .fetch_opt(
                &prepared.delete,
                &[&app_name, &user_id, &memory_id],
                Retry::Yes,
            )
            .await?
            .expect("count(*) returns one row");
        self.db
            .wrote_scope(&self.positions, (app_name, user_id))
            .await;
        Ok(row.get::<_, i64>(0) > 0)
    }
}
