//! Memory operations on a [`Store`]: upsert, delete and ranked search of memory entries.
//!
//! Tables (migration V4): `memory_entries` (one row per memory, keyed by app, user and memory
//! id — the event id for entries made from events) and `memory_tombstones` (ids removed with
//! `delete_memory`, so re-adding their session does not bring them back).
//!
//! The plain migration holds only what needs no extension. The rest depends on the server and
//! is set up by [`MemoryBackend`]'s ensure step, once per backend, under an advisory lock:
//!
//! * **pg_trgm** (trigram fallback for short or misspelled queries): created if available and
//!   permitted; a GIN `gin_trgm_ops` index on `search_text`.
//! * **vector** (pgvector; only when an embedder is configured): created if available and
//!   permitted; an untyped `embedding vector` column, and per embedding dimension N an HNSW
//!   index on the expression `embedding::vector(N)` (cosine), partial on
//!   `vector_dims(embedding) = N`. The dimension is therefore not fixed per table: the index
//!   for an embedder's dimension is created the first time vectors of that dimension are
//!   written or searched, and entries embedded by an embedder of another dimension simply do
//!   not take part in vector search until they are added again.
//!
//! Missing or forbidden extensions degrade the search (recorded in [`Capabilities::notes`]);
//! they never fail a call. Extension objects are always schema-qualified with the schema the
//! extension lives in, so the caller's `search_path` does not matter.
//!
//! **Search** is one statement: full-text candidates (`tsv @@ query`, GIN), trigram candidates
//! when full text found fewer than `limit` and the query does not use search-engine syntax
//! (a one-time filter: the trigram scan is skipped otherwise; it knows no phrases or
//! exclusions), vector candidates (HNSW) when a query vector is given; the text list (full-text
//! hits, then trigram-only hits) and the vector list are fused by reciprocal rank fusion
//! (k = 60). Each candidate carries a score in 0..1 compared with `min_score`: the share of
//! query words it contains (full text), the mean word similarity (trigram), or the cosine
//! similarity (vector).
//!
//! **Embeddings** travel as pgvector's binary format (`int16` dimension, `int16` unused,
//! big-endian `float4`s), not as text literals: exact (no float printing and re-parsing), a
//! third of the size, and no parsing on the server.

use std::collections::HashSet;
use std::sync::Mutex;

use bytes::{BufMut, BytesMut};
use deadpool_postgres::Object;
use postgres_types::{to_sql_checked, IsNull, Kind, ToSql, Type};
use tokio::sync::OnceCell;
use tokio_postgres::Row;

use crate::codec::{JsonText, JsonTextParam};
use crate::error::{ErrorKind, Result, StoreError};
use crate::sql::quote_ident;
use crate::statement::{in_order, On, Param, WithType};
use crate::store::{Retry, Store};

/// Reciprocal rank fusion constant (the usual 60).
pub const RRF_K: i32 = 60;

/// Largest dimension pgvector's HNSW index accepts for `vector`; larger embeddings are searched
/// exactly (no index).
pub const HNSW_MAX_DIM: i32 = 2000;

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// A pgvector `vector` parameter, sent in pgvector's binary format.
#[derive(Debug, Clone, Copy)]
pub struct VectorParam<'a>(pub &'a [f32]);

impl ToSql for VectorParam<'_> {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, BoxError> {
        encode_vector(self.0, out)?;
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "vector"
    }

    to_sql_checked!();
}

/// pgvector's binary `vector` format: dimension (int16), unused (int16), big-endian floats.
pub fn encode_vector(v: &[f32], out: &mut BytesMut) -> std::result::Result<(), BoxError> {
    let dim = i16::try_from(v.len()).map_err(|_| "vector has too many dimensions")?;
    out.reserve(4 + 4 * v.len());
    out.put_i16(dim);
    out.put_i16(0);
    for x in v {
        out.put_f32(*x);
    }
    Ok(())
}

/// Checks an embedding before it is sent: pgvector rejects NaN and infinities; a zero vector
/// has no direction (its cosine distance is NaN), so it is stored as "no embedding".
pub fn check_vector(v: &[f32]) -> Result<bool> {
    if v.is_empty() || v.len() > 16000 {
        return Err(StoreError::new(
            ErrorKind::Data,
            format!(
                "an embedding must have 1 to 16000 dimensions, not {}",
                v.len()
            ),
        ));
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(StoreError::new(
            ErrorKind::Data,
            "an embedding contains NaN or an infinity",
        ));
    }
    Ok(v.iter().any(|x| *x != 0.0))
}

/// Which optional search features a backend asks for.
#[derive(Debug, Clone)]
pub struct MemoryOptions {
    /// PostgreSQL text search configuration (`english`, `simple`, …).
    pub text_search_config: String,
    /// Use pg_trgm (creating it if possible) for the trigram fallback.
    pub trigram: bool,
    /// Use pgvector (creating it if possible): an embedder is configured.
    pub vector: bool,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        MemoryOptions {
            text_search_config: "english".into(),
            trigram: true,
            vector: false,
        }
    }
}

/// What the server offers, found by the ensure step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Schema of pg_trgm, when installed and its index exists (trigram fallback in use).
    pub trigram_schema: Option<String>,
    /// Schema of pgvector, when installed.
    pub vector_schema: Option<String>,
    /// OIDs of pgvector's `vector` type and of its array type (they differ per database, and
    /// unnamed statements declare their parameter types: see `statement.rs`).
    pub vector_oids: Option<(u32, u32)>,
    /// `memory_entries.embedding` exists (possibly added by another service).
    pub embedding_column: bool,
    /// Why a feature is unavailable, one sentence each.
    pub notes: Vec<String>,
}

impl Capabilities {
    /// Vector search can run for a backend that wants it.
    pub fn vector_ready(&self) -> bool {
        self.vector_schema.is_some() && self.vector_oids.is_some() && self.embedding_column
    }

    /// pgvector's `vector` type and its array type, as parameters declare them.
    fn vector_types(&self) -> Option<(Type, Type)> {
        let (schema, (oid, array_oid)) = (self.vector_schema.as_ref()?, self.vector_oids?);
        let vector = Type::new("vector".into(), oid, Kind::Simple, schema.clone());
        let array = Type::new(
            "_vector".into(),
            array_oid,
            Kind::Array(vector.clone()),
            schema.clone(),
        );
        Some((vector, array))
    }
}

/// The memory statements of one store, built after the ensure step.
#[derive(Debug)]
struct Prepared {
    caps: Capabilities,
    upsert: String,
    delete: String,
    set_embeddings: Option<String>,
}

/// Memory operations' state for one store: options, what the ensure step found, the HNSW
/// indexes known to exist.
pub struct MemoryBackend {
    schema: String,
    options: MemoryOptions,
    prepared: OnceCell<Prepared>,
    hnsw_dims: Mutex<HashSet<i32>>,
    notes: Mutex<Vec<String>>,
}

/// One entry to store.
#[derive(Debug, Clone, Copy)]
pub struct NewMemory<'a> {
    pub memory_id: &'a str,
    pub session_id: Option<&'a str>,
    pub author: Option<&'a str>,
    pub event_ts: Option<f64>,
    pub timestamp_text: Option<&'a str>,
    /// `types.Content` JSON.
    pub content: &'a [u8],
    pub custom_metadata: Option<&'a [u8]>,
    pub search_text: &'a str,
}

/// An upsert of entries of one (app, user).
#[derive(Debug, Clone, Copy)]
pub struct MemoryUpsert<'a> {
    pub app_name: &'a str,
    pub user_id: &'a str,
    pub entries: &'a [NewMemory<'a>],
    /// Replace this session's entries: entries of it not in `entries` are deleted
    /// (`add_session_to_memory`).
    pub replace_session: Option<&'a str>,
    /// Entries made from events: ids deleted with `delete_memory` are skipped. Otherwise
    /// (explicit `add_memory`) they are stored and their tombstones removed.
    pub from_events: bool,
    /// The embedder's dimension when known: entries embedded with another one are returned as
    /// needing an embedding.
    pub embedding_dim: Option<i32>,
}

/// Embeddings for entries of one (app, user): `dim` floats per id, for entries whose search
/// text is still `texts[i]` (a concurrent change of the text wins).
#[derive(Debug, Clone, Copy)]
pub struct EmbeddingBatch<'a> {
    pub app_name: &'a str,
    pub user_id: &'a str,
    pub ids: &'a [String],
    pub texts: &'a [String],
    pub dim: usize,
    pub vectors: &'a [f32],
}

/// A search request.
#[derive(Debug, Clone, Copy)]
pub struct MemoryQuery<'a> {
    pub app_name: &'a str,
    pub user_id: &'a str,
    /// The query text (for `websearch_to_tsquery` / `to_tsvector`).
    pub text: &'a str,
    /// Search-engine syntax (quotes, `-word`): every part must match. Otherwise any query
    /// word matches and entries with more of them rank higher.
    pub strict: bool,
    /// Query words for the trigram fallback (stop words are dropped in SQL).
    pub words: &'a [String],
    pub limit: i64,
    pub min_score: f64,
    /// The query embedding (vector search runs when given and the server supports it).
    pub vector: Option<&'a [f32]>,
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryHit {
    pub memory_id: String,
    pub session_id: Option<String>,
    pub author: Option<String>,
    pub event_ts: Option<f64>,
    pub timestamp_text: Option<String>,
    pub content: Vec<u8>,
    pub custom_metadata: Option<Vec<u8>>,
    /// Best per-method relevance, 0..1 (see the module docs).
    pub score: f64,
}

/// A lexeme as a quoted tsquery operand (quotes and backslashes doubled): SQL over column `l`.
const QUOTED_LEXEME: &str = r"'''' || replace(replace(l, '\', '\\'), '''', '''''') || ''''";

/// Candidates per method, before fusion.
fn candidates(limit: i64) -> i64 {
    (limit.saturating_mul(4)).clamp(40, 1000)
}

impl MemoryBackend {
    pub fn new(store: &Store, options: MemoryOptions) -> Self {
        MemoryBackend {
            schema: store.config().options.schema.clone(),
            options,
            prepared: OnceCell::new(),
            hnsw_dims: Mutex::new(HashSet::new()),
            notes: Mutex::new(Vec::new()),
        }
    }

    pub fn options(&self) -> &MemoryOptions {
        &self.options
    }

    fn note(&self, note: String) {
        let mut notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        if !notes.contains(&note) {
            notes.push(note);
        }
    }

    async fn prepared(&self, store: &Store) -> Result<&Prepared> {
        self.prepared
            .get_or_try_init(|| async {
                let caps = self.ensure(store).await?;
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
    async fn ensure(&self, store: &Store) -> Result<Capabilities> {
        let s = quote_ident(&self.schema);
        let statements = store.statements();
        let mut conn = store.connection().await?;
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
            let mut schema = extension_schema(store, (&tx).into(), ext).await?;
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
                        schema = extension_schema(store, (&tx).into(), ext).await?;
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
    async fn ensure_hnsw(&self, store: &Store, v: &str, dim: i32) -> Result<()> {
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
            let mut conn = store.connection().await?;
            let mut tx = conn.transaction().await?;
            store
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

    /// The search statement for the capabilities and, for vector search, the dimension
    /// (a literal: the partial index predicate must be provable when planning).
    fn search_sql(&self, caps: &Capabilities, vector_dim: Option<i32>) -> String {
        let s = quote_ident(&self.schema);
        let mut sql = format!(
            "WITH lex AS (
                SELECT tsvector_to_array(to_tsvector($9::text::regconfig, $3)) AS lexemes
             ), q AS (
                SELECT CASE WHEN $4 THEN websearch_to_tsquery($9::text::regconfig, $3)
                            WHEN cardinality(lex.lexemes) > 0 THEN
                                array_to_string(ARRAY(SELECT {QUOTED_LEXEME}
                                                        FROM unnest(lex.lexemes) l), ' | ')::tsquery
                       END AS any_q,
                       ARRAY(SELECT ({QUOTED_LEXEME})::tsquery FROM unnest(lex.lexemes) l) AS each_q
                  FROM lex
             ), fts AS (
                SELECT c.memory_id, c.score,
                       row_number() OVER (ORDER BY c.score DESC, c.rank DESC,
                                          c.event_ts DESC NULLS LAST, c.memory_id) AS pos
                  FROM (SELECT m.memory_id, m.event_ts,
                               CASE WHEN $4 OR cardinality(q.each_q) = 0 THEN 1.0::float8
                                    ELSE (SELECT count(*) FROM unnest(q.each_q) e
                                           WHERE m.tsv @@ e)::float8 / cardinality(q.each_q)
                               END AS score,
                               ts_rank(m.tsv, q.any_q, 1) AS rank
                          FROM {s}.memory_entries m, q
                         WHERE m.app_name = $1 AND m.user_id = $2
                           AND m.tsv @@ (SELECT any_q FROM q)) c
                 WHERE c.score >= $7
                 ORDER BY pos
                 LIMIT $8
             )"
        );
        let mut text_hits = "SELECT memory_id, score, pos FROM fts".to_string();
        if let Some(t) = &caps.trigram_schema {
            let t = quote_ident(t);
            sql.push_str(&format!(
                ", tw AS (
                    SELECT ARRAY(SELECT w FROM unnest($5::text[]) w
                                  WHERE to_tsvector($9::text::regconfig, w) <> ''::tsvector) AS words
                 ), trgm AS (
                    SELECT c.memory_id, c.score,
                           row_number() OVER (ORDER BY c.score DESC, c.event_ts DESC NULLS LAST,
                                              c.memory_id) AS pos
                      FROM (SELECT m.memory_id, m.event_ts,
                                   (SELECT avg({t}.word_similarity(w, m.search_text))
                                      FROM unnest(tw.words) w)::float8 AS score
                              FROM {s}.memory_entries m, tw
                             WHERE NOT $4 AND (SELECT count(*) FROM fts) < $6
                               AND m.app_name = $1 AND m.user_id = $2
                               AND m.search_text OPERATOR({t}.%>) ANY (tw.words)
                               AND NOT EXISTS (SELECT 1 FROM fts f
                                                WHERE f.memory_id = m.memory_id)) c
                     WHERE c.score >= $7
                     ORDER BY pos
                     LIMIT $8
                 )"
            ));
            text_hits.push_str(
                " UNION ALL SELECT memory_id, score, (SELECT count(*) FROM fts) + pos FROM trgm",
            );
        } else {
            // Keep $5 and $6 referenced so every variant takes the same parameters.
            sql.push_str(", tw AS (SELECT $5::text[] AS words, $6::int8 AS lim)");
        }
        let mut all_hits = "SELECT memory_id, score, pos FROM text_hits".to_string();
        if let (Some(v), Some(dim)) = (
            caps.vector_schema
                .as_deref()
                .filter(|_| caps.embedding_column),
            vector_dim,
        ) {
            let v = quote_ident(v);
            sql.push_str(&format!(
                ", vec AS (
                    SELECT c.memory_id, 1 - c.dist AS score,
                           row_number() OVER (ORDER BY c.dist, c.memory_id) AS pos
                      FROM (SELECT m.memory_id,
                                   (m.embedding::{v}.vector({dim}))
                                       OPERATOR({v}.<=>) $10::{v}.vector({dim}) AS dist
                              FROM {s}.memory_entries m
                             WHERE m.app_name = $1 AND m.user_id = $2
                               AND {v}.vector_dims(m.embedding) = {dim}
                             ORDER BY dist
                             LIMIT $8) c
                     WHERE 1 - c.dist >= $7
                 )"
            ));
            all_hits.push_str(" UNION ALL SELECT memory_id, score, pos FROM vec");
        }
        sql.push_str(&format!(
            ", text_hits AS ({text_hits}),
             hits AS (
                SELECT memory_id, sum(1.0::float8 / ({RRF_K} + pos)) AS rrf,
                       max(score)::float8 AS score
                  FROM ({all_hits}) a
                 GROUP BY memory_id
             )
             SELECT m.memory_id, m.session_id, m.author, m.event_ts, m.timestamp_text,
                    m.content, m.custom_metadata, h.score
               FROM hits h
               JOIN {s}.memory_entries m
                 ON m.app_name = $1 AND m.user_id = $2 AND m.memory_id = h.memory_id
              ORDER BY h.rrf DESC, m.event_ts DESC NULLS LAST, m.memory_id
              LIMIT $6"
        ));
        sql
    }
}

/// The schema an extension is installed in, if it is.
async fn extension_schema(store: &Store, on: On<'_>, ext: &str) -> Result<Option<String>> {
    let row = store
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

fn hit_from_row(row: &Row) -> MemoryHit {
    MemoryHit {
        memory_id: row.get(0),
        session_id: row.get(1),
        author: row.get(2),
        event_ts: row.get(3),
        timestamp_text: row.get(4),
        content: row
            .get::<_, Option<JsonText>>(5)
            .map_or_else(|| b"{}".to_vec(), |t| t.0.to_vec()),
        custom_metadata: row.get::<_, Option<JsonText>>(6).map(|t| t.0.to_vec()),
        score: row.get(7),
    }
}

impl Store {
    /// What the server offers for memory search (runs the ensure step on first use), with
    /// every degradation noted so far.
    pub async fn memory_capabilities(&self, backend: &MemoryBackend) -> Result<Capabilities> {
        let mut caps = backend.prepared(self).await?.caps.clone();
        caps.notes = backend
            .notes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok(caps)
    }

    /// Stores entries (one statement); returns the ids that need an embedding, in id order
    /// (always empty without an embedding column).
    pub async fn upsert_memories(
        &self,
        backend: &MemoryBackend,
        upsert: MemoryUpsert<'_>,
    ) -> Result<Vec<String>> {
        let prepared = backend.prepared(self).await?;
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
        let dim = backend
            .options
            .vector
            .then(|| upsert.embedding_dim.unwrap_or(0));
        let rows = self
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
                    &backend.options.text_search_config,
                    &dim,
                ],
                Retry::Yes,
            )
            .await?;
        if !backend.options.vector || !prepared.caps.vector_ready() {
            return Ok(Vec::new());
        }
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Stores embeddings (`vectors`: `dim` floats per id) for entries whose search text is
    /// still `texts[i]`. Zero vectors are stored as no embedding. Returns the rows updated.
    pub async fn set_memory_embeddings(
        &self,
        backend: &MemoryBackend,
        batch: EmbeddingBatch<'_>,
    ) -> Result<u64> {
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
        let prepared = backend.prepared(self).await?;
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
        backend.ensure_hnsw(self, v, dim_i32).await?;
        let vectors = WithType(params, array_type);
        let rows = self
            .fetch(
                &format!("{sql} RETURNING 1"),
                &[&app_name, &user_id, &ids, &texts, &vectors],
                Retry::Yes,
            )
            .await?;
        Ok(rows.len() as u64)
    }

    /// Deletes one entry and remembers its id; `false` if there was none.
    pub async fn delete_memory(
        &self,
        backend: &MemoryBackend,
        app_name: &str,
        user_id: &str,
        memory_id: &str,
    ) -> Result<bool> {
        let prepared = backend.prepared(self).await?;
        let row = self
            .fetch_opt(
                &prepared.delete,
                &[&app_name, &user_id, &memory_id],
                Retry::Yes,
            )
            .await?
            .expect("count(*) returns one row");
        Ok(row.get::<_, i64>(0) > 0)
    }

    /// Ranked search (see the module docs), one statement.
    pub async fn search_memory(
        &self,
        backend: &MemoryBackend,
        query: MemoryQuery<'_>,
    ) -> Result<Vec<MemoryHit>> {
        let prepared = backend.prepared(self).await?;
        let caps = &prepared.caps;
        let limit = query.limit.max(1);
        let cand = candidates(limit);
        let vector = match query.vector {
            Some(v) if backend.options.vector && caps.vector_ready() && check_vector(v)? => Some(v),
            _ => None,
        };
        let dim = match vector {
            Some(v) => Some(i32::try_from(v.len()).map_err(|_| StoreError::config("dim"))?),
            None => None,
        };
        if let (Some(dim), Some(v)) = (dim, &caps.vector_schema) {
            backend.ensure_hnsw(self, v, dim).await?;
        }
        let sql = backend.search_sql(caps, dim);
        let words: Vec<&str> = query.words.iter().map(String::as_str).collect();
        let base: [&dyn Param; 9] = [
            &query.app_name,
            &query.user_id,
            &query.text,
            &query.strict,
            &words,
            &limit,
            &query.min_score,
            &cand,
            &backend.options.text_search_config,
        ];
        let rows = match vector {
            None => self.fetch(&sql, &base, Retry::Yes).await?,
            Some(v) => {
                let (vector_type, _) = caps.vector_types().expect("vector_ready");
                let param = WithType(VectorParam(v), vector_type);
                let mut params: Vec<&dyn Param> = base.to_vec();
                params.push(&param);
                self.fetch_vector_search(&sql, &params, cand).await?
            }
        };
        Ok(rows.iter().map(hit_from_row).collect())
    }

    /// Runs a vector search with pgvector's iterative HNSW scan switched on (so filtering by
    /// app and user cannot starve the index scan of results) for its transaction only — a
    /// setting on the session would outlive the call on a pooled or PgBouncer-shared
    /// connection — pipelined: one round trip. Retried once on a broken connection.
    async fn fetch_vector_search(
        &self,
        sql: &str,
        params: &[&dyn Param],
        candidates: i64,
    ) -> Result<Vec<Row>> {
        let ef_search = candidates.clamp(40, 1000).to_string();
        let setup = "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),
                            set_config('hnsw.ef_search', $1::text, true)";
        let statements = self.statements();
        let mut attempt = 0;
        loop {
            let conn: Object = self.connection().await?;
            let on = On::from(&conn);
            let result = async {
                let setup = statements.ready(on, setup, &[&ef_search]).await?;
                let search = statements.ready(on, sql, params).await?;
                let mut results = in_order(vec![
                    on.simple("BEGIN"),
                    setup.step(on, vec![&ef_search]),
                    search.step(on, params.to_vec()),
                    on.simple("COMMIT"),
                ])
                .await;
                // After an error PostgreSQL answers the COMMIT with ROLLBACK: nothing stays open.
                if let Some(failed) = results.iter().position(|r| r.is_err()) {
                    return Err(results.swap_remove(failed).unwrap_err());
                }
                results.swap_remove(2)
            }
            .await;
            match result {
                Err(err) if err.kind == ErrorKind::Connection => {
                    let _ = Object::take(conn);
                    attempt += 1;
                    if attempt > 1 {
                        return Err(err);
                    }
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_use_pgvector_binary_format() {
        let mut out = BytesMut::new();
        encode_vector(&[1.0, -2.5], &mut out).unwrap();
        assert_eq!(
            &out[..],
            &[0, 2, 0, 0, 0x3f, 0x80, 0, 0, 0xc0, 0x20, 0, 0][..]
        );
        assert!(<VectorParam as ToSql>::accepts(&Type::new(
            "vector".into(),
            99999,
            postgres_types::Kind::Simple,
            "public".into()
        )));
        assert!(!<VectorParam as ToSql>::accepts(&Type::FLOAT4_ARRAY));
    }

    #[test]
    fn bad_vectors_are_rejected_and_zero_vectors_flagged() {
        assert!(check_vector(&[f32::NAN]).is_err());
        assert!(check_vector(&[f32::INFINITY, 1.0]).is_err());
        assert!(check_vector(&[]).is_err());
        assert!(!check_vector(&[0.0, 0.0]).unwrap());
        assert!(check_vector(&[0.0, 0.1]).unwrap());
    }

    #[test]
    fn candidate_depth_is_bounded() {
        assert_eq!(candidates(1), 40);
        assert_eq!(candidates(50), 200);
        assert_eq!(candidates(i64::MAX), 1000);
    }

    fn caps(trigram: bool, vector: bool) -> Capabilities {
        Capabilities {
            trigram_schema: trigram.then(|| "ext s".to_string()),
            vector_schema: vector.then(|| "vec".to_string()),
            vector_oids: vector.then_some((99999, 99998)),
            embedding_column: vector,
            notes: Vec::new(),
        }
    }

    fn backend(schema: &str) -> MemoryBackend {
        MemoryBackend {
            schema: schema.into(),
            options: MemoryOptions::default(),
            prepared: OnceCell::new(),
            hnsw_dims: Mutex::new(HashSet::new()),
            notes: Mutex::new(Vec::new()),
        }
    }

    #[test]
    fn search_variants_qualify_schema_and_extensions() {
        let b = backend("ten\"ant");
        let plain = b.search_sql(&caps(false, false), None);
        assert!(plain.contains("\"ten\"\"ant\".memory_entries"));
        assert!(!plain.contains("word_similarity") && !plain.contains("<=>"));
        assert!(plain.contains("$9::text::regconfig") && plain.contains("websearch_to_tsquery"));
        let full = b.search_sql(&caps(true, true), Some(8));
        assert!(full.contains("\"ext s\".word_similarity"));
        assert!(full.contains("OPERATOR(\"ext s\".%>) ANY"));
        assert!(full.contains("OPERATOR(\"vec\".<=>) $10::\"vec\".vector(8)"));
        assert!(full.contains("\"vec\".vector_dims(m.embedding) = 8"));
        // Without a query vector, no vector list even where pgvector exists.
        assert!(!b.search_sql(&caps(true, true), None).contains("<=>"));
        for text in [&plain, &full] {
            assert!(!text.contains("FROM memory_entries"));
        }
    }

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
