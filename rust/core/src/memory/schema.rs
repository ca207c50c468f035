//! What the server offers and the runtime DDL that follows from it: the extensions (pg_trgm,
//! pgvector) when available and permitted, the trigram index, the embedding column and one
//! HNSW index per embedding dimension — each a savepoint that degrades the search (noted)
//! rather than failing. Then the statements that depend on it (`Prepared`).

use super::{Capabilities, Memory, HNSW_MAX_DIM};
use crate::db::Database;
use crate::error::{ErrorKind, Result, StoreError};
use crate::failover::is_lost;
use crate::ident::quote_ident;
use crate::statement::On;

/// The memory statements of one handle, built after the ensure step.
#[derive(Debug)]
pub(super) struct Prepared {
    pub(super) caps: Capabilities,
    pub(super) upsert: String,
    pub(super) delete: String,
    pub(super) set_embeddings: Option<String>,
}

impl Memory {
    pub(super) async fn prepared(&self) -> Result<&Prepared> {
        self.prepared
            .get_or_try_init(|| async {
                // The ensure step is idempotent: after a lost connection it runs again (at
                // once, then while a failover lasts); the transaction it was in rolled back.
                let mut failover = self.db.failover();
                let mut again_at_once = true;
                let caps = loop {
                    match self.ensure().await {
                        Err(err) if is_lost(&err) && std::mem::take(&mut again_at_once) => {}
                        Err(err) if is_lost(&err) => failover.pause(err).await?,
                        other => break other?,
                    }
                };
                for note in &caps.notes {
                    self.note(note.clone());
                }
                Ok::<_, StoreError>(self.build(caps))
            })
            .await
    }

    /// Detects (and where possible creates) the extensions, and adds the optional index and
    /// column. One transaction under an advisory lock shared by every adk-postgres process on
    /// the server (extensions are per database, so concurrent creators must not race).
    async fn ensure(&self) -> Result<Capabilities> {
        let s = quote_ident(&self.schema);
        let statements = self.db.statements();
        let mut conn = self.db.connection().await?;
        let mut tx = conn.transaction().await?;
        statements
            .execute(
                &tx,
                "SELECT pg_advisory_xact_lock(hashtext('adk_postgres:memory_extensions'))",
                &[],
            )
            .await?;
        let mut caps = Capabilities::default();
        let wanted: Vec<&str> = [
            self.options.trigram.then_some("pg_trgm"),
            self.options.vector.then_some("vector"),
        ]
        .into_iter()
        .flatten()
        .collect();
        for ext in ["pg_trgm", "vector"] {
            let mut schema = extension_schema(&self.db, (&tx).into(), ext).await?;
            if schema.is_none() && wanted.contains(&ext) {
                let available: bool = statements
                    .query_one(
                        &tx,
                        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = $1)",
                        &[&ext],
                    )
                    .await?
                    .get(0);
                if !available {
                    caps.notes.push(format!(
                        "the {ext} extension is not available on this PostgreSQL server"
                    ));
                } else {
                    let sql = format!("CREATE EXTENSION IF NOT EXISTS {ext}");
                    let what = format!("the {ext} extension is not installed and");
                    if optional_step(&mut tx, &sql, &what, &mut caps.notes).await? {
                        schema = extension_schema(&self.db, (&tx).into(), ext).await?;
                    }
                }
            }
            if ext == "vector" {
                if let Some(v) = &schema {
                    let row = statements
                        .query_one(
                            &tx,
                            "SELECT t.oid, t.typarray FROM pg_type t
                               JOIN pg_namespace n ON n.oid = t.typnamespace
                              WHERE t.typname = 'vector' AND n.nspname = $1",
                            &[v],
                        )
                        .await?;
                    caps.vector_oids = Some((row.get(0), row.get(1)));
                }
                caps.vector_schema = schema;
            } else if self.options.trigram {
                if let Some(t) = schema {
                    let sql = format!(
                        "CREATE INDEX IF NOT EXISTS idx_memory_entries_trgm
                             ON {s}.memory_entries USING gin (search_text {}.gin_trgm_ops)",
                        quote_ident(&t)
                    );
                    if optional_step(&mut tx, &sql, "the trigram index", &mut caps.notes).await? {
                        caps.trigram_schema = Some(t);
                    }
                }
            }
        }
        caps.embedding_column = statements
            .query_one(
                &tx,
                "SELECT EXISTS (SELECT 1 FROM information_schema.columns
                                 WHERE table_schema = $1 AND table_name = 'memory_entries'
                                   AND column_name = 'embedding')",
                &[&self.schema],
            )
            .await?
            .get(0);
        if self.options.vector && !caps.embedding_column {
            if let Some(v) = &caps.vector_schema {
                let sql = format!(
                    "ALTER TABLE {s}.memory_entries ADD COLUMN IF NOT EXISTS embedding {}.vector",
                    quote_ident(v)
                );
                caps.embedding_column =
                    optional_step(&mut tx, &sql, "the embedding column", &mut caps.notes).await?;
            }
        }
        tx.commit().await?;
        Ok(caps)
    }

    fn build(&self, caps: Capabilities) -> Prepared {
        let s = quote_ident(&self.schema);
        let v = caps
            .embedding_column
            .then(|| caps.vector_schema.as_deref().map(quote_ident))
            .flatten();
        Prepared {
            upsert: upsert_sql(&s, v.as_deref()),
            delete: format!(
                "WITH d AS (
                    DELETE FROM {s}.memory_entries
                     WHERE app_name = $1 AND user_id = $2 AND memory_id = $3
                    RETURNING memory_id
                 ), t AS (
                    INSERT INTO {s}.memory_tombstones (app_name, user_id, memory_id)
                    SELECT $1, $2, memory_id FROM d
                    ON CONFLICT (app_name, user_id, memory_id) DO NOTHING
                 )
                 SELECT count(*) FROM d"
            ),
            set_embeddings: v.as_ref().map(|v| {
                format!(
                    "UPDATE {s}.memory_entries m SET embedding = e.vec
                       FROM unnest($3::text[], $4::text[], $5::{v}.vector[])
                            AS e(memory_id, search_text, vec)
                      WHERE m.app_name = $1 AND m.user_id = $2 AND m.memory_id = e.memory_id
                        AND m.search_text = e.search_text"
                )
            }),
            caps,
        }
    }

    /// Creates the HNSW index for dimension `dim` unless known to exist. Failures degrade to
    /// exact search (noted), never fail the call.
    pub(super) async fn ensure_hnsw(&self, v: &str, dim: i32) -> Result<()> {
        if self
            .hnsw_dims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&dim)
        {
            return Ok(());
        }
        if dim > HNSW_MAX_DIM {
            self.note(format!(
                "embeddings of dimension {dim} are searched exactly: pgvector's HNSW index \
                 supports at most {HNSW_MAX_DIM} dimensions"
            ));
        } else {
            let s = quote_ident(&self.schema);
            let v = quote_ident(v);
            let mut conn = self.db.connection().await?;
            let mut tx = conn.transaction().await?;
            self.db
                .statements()
                .execute(
                    &tx,
                    "SELECT pg_advisory_xact_lock(hashtext('adk_postgres:memory:' || $1::text))",
                    &[&self.schema],
                )
                .await?;
            let sql = format!(
                "CREATE INDEX IF NOT EXISTS idx_memory_entries_hnsw_{dim}
                     ON {s}.memory_entries
                     USING hnsw ((embedding::{v}.vector({dim})) {v}.vector_cosine_ops)
                     WHERE {v}.vector_dims(embedding) = {dim}"
            );
            let mut notes = Vec::new();
            optional_step(&mut tx, &sql, "the HNSW index", &mut notes).await?;
            tx.commit().await?;
            for note in notes {
                self.note(note);
            }
        }
        self.hnsw_dims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(dim);
        Ok(())
    }
}

/// The schema an extension is installed in, if it is.
async fn extension_schema(db: &Database, on: On<'_>, ext: &str) -> Result<Option<String>> {
    let row = db
        .statements()
        .query_opt(
            on,
            "SELECT n.nspname::text FROM pg_extension e
               JOIN pg_namespace n ON n.oid = e.extnamespace
              WHERE e.extname = $1",
            &[&ext],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Runs `sql` in a savepoint; a failure (other than a lost connection) is noted and rolled
/// back. Returns whether it succeeded.
async fn optional_step(
    tx: &mut tokio_postgres::Transaction<'_>,
    sql: &str,
    what: &str,
    notes: &mut Vec<String>,
) -> Result<bool> {
    let savepoint = tx.transaction().await?;
    match savepoint.batch_execute(sql).await {
        Ok(()) => {
            savepoint.commit().await?;
            Ok(true)
        }
        Err(err) => {
            let err = StoreError::from(err);
            if err.kind == ErrorKind::Connection {
                return Err(err);
            }
            savepoint.rollback().await?;
            notes.push(format!("{what} could not be created ({err})"));
            Ok(false)
        }
    }
}

/// The upsert: $1 app, $2 user, $3 ids, $4 session ids, $5 authors, $6 event times,
/// $7 timestamp texts, $8 contents (json), $9 custom metadata (json), $10 search texts,
/// $11 session to replace, $12 entries come from events, $13 text search config,
/// $14 the embedder's dimension (0: not known yet; NULL: no embedder).
///
/// Rows whose content is unchanged are not rewritten (no dead tuples when a whole session is
/// added again after every turn). With an embedding column (`v`: pgvector's schema) a changed
/// search text clears the stale embedding, and the rows returned are those needing one.
fn upsert_sql(s: &str, v: Option<&str>) -> String {
    let (embedding_set, need_embedding, returning) = match v {
        Some(v) => {
            let need = format!(
                "$14::int4 IS NOT NULL AND t.search_text <> ''
                 AND (t.embedding IS NULL
                      OR ($14::int4 > 0 AND {v}.vector_dims(t.embedding) <> $14::int4))"
            );
            (
                ", embedding = CASE WHEN t.search_text IS DISTINCT FROM EXCLUDED.search_text
                               THEN NULL ELSE t.embedding END"
                    .to_string(),
                format!(" OR ({need})"),
                format!("t.memory_id, ({need}) AS need"),
            )
        }
        None => (
            String::new(),
            " OR ($14::int4 IS NOT NULL AND false)".to_string(),
            "t.memory_id, false AS need".to_string(),
        ),
    };
    format!(
        "WITH input AS (
            SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::float8[], $7::text[],
                                 $8::json[], $9::json[], $10::text[])
                AS i(memory_id, session_id, author, event_ts, timestamp_text, content,
                     custom_metadata, search_text)
         ), replaced AS (
            DELETE FROM {s}.memory_entries m
             WHERE $11::text IS NOT NULL
               AND m.app_name = $1 AND m.user_id = $2 AND m.session_id = $11::text
               AND m.memory_id <> ALL ($3::text[])
         ), revived AS (
            DELETE FROM {s}.memory_tombstones d
             WHERE NOT $12::bool AND d.app_name = $1 AND d.user_id = $2
               AND d.memory_id = ANY ($3::text[])
         ), ins AS (
            INSERT INTO {s}.memory_entries AS t
                (app_name, user_id, memory_id, session_id, author, event_ts, timestamp_text,
                 content, custom_metadata, search_text, tsv)
            SELECT $1, $2, i.memory_id, i.session_id, i.author, i.event_ts, i.timestamp_text,
                   i.content, i.custom_metadata, i.search_text,
                   to_tsvector($13::text::regconfig, i.search_text)
              FROM input i
             WHERE NOT ($12::bool AND EXISTS (
                       SELECT 1 FROM {s}.memory_tombstones d
                        WHERE d.app_name = $1 AND d.user_id = $2 AND d.memory_id = i.memory_id))
             ORDER BY i.memory_id
            ON CONFLICT (app_name, user_id, memory_id) DO UPDATE
               SET session_id = EXCLUDED.session_id, author = EXCLUDED.author,
                   event_ts = EXCLUDED.event_ts, timestamp_text = EXCLUDED.timestamp_text,
                   content = EXCLUDED.content, custom_metadata = EXCLUDED.custom_metadata,
                   search_text = EXCLUDED.search_text, tsv = EXCLUDED.tsv,
                   updated_at = now(){embedding_set}
             WHERE (t.session_id, t.author, t.event_ts, t.timestamp_text, t.content::text,
                    t.custom_metadata::text, t.search_text, t.tsv)
                   IS DISTINCT FROM
                   (EXCLUDED.session_id, EXCLUDED.author, EXCLUDED.event_ts,
                    EXCLUDED.timestamp_text, EXCLUDED.content::text,
                    EXCLUDED.custom_metadata::text, EXCLUDED.search_text, EXCLUDED.tsv)
                {need_embedding}
            RETURNING {returning}
         )
         SELECT memory_id FROM ins WHERE need ORDER BY memory_id"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_only_tracks_embeddings_with_a_column() {
        let with = upsert_sql("\"s\"", Some("\"v\""));
        assert!(with.contains("\"v\".vector_dims(t.embedding)"));
        assert!(with.contains("embedding = CASE"));
        let without = upsert_sql("\"s\"", None);
        assert!(!without.contains("embedding"));
        for text in [&with, &without] {
            assert!(text.contains("ON CONFLICT (app_name, user_id, memory_id) DO UPDATE"));
            assert!(text.contains("IS DISTINCT FROM"));
            assert!(text.contains("\"s\".memory_tombstones"));
        }
    }
}
