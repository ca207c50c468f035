//! Memory: entries per (app, user) and their ranked search ([`Memory`] is the handle).
//!
//! Tables (migration V4): `memory_entries` (one row per memory, keyed by app, user and memory
//! id — the event id for entries made from events) and `memory_tombstones` (ids removed with
//! `delete_memory`, so re-adding their session does not bring them back).
//!
//! The plain migration holds only what needs no extension. The rest depends on the server and
//! is set up by the handle's ensure step (`schema.rs`), once per handle, under an advisory lock:
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
//!
//! Files: `schema.rs` (the ensure step and runtime DDL), `write.rs` (upsert, embeddings,
//! delete), `search.rs` (the search statement), `vector.rs` (pgvector's binary format).

mod schema;
mod search;
mod vector;
mod write;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use postgres_types::{Kind, Type};
use tokio::sync::OnceCell;

pub use vector::{check_vector, encode_vector, VectorParam};

use crate::db::Database;
use crate::error::Result;
use crate::replica::{ScopePositions, SEEN_LIMIT};

/// Reciprocal rank fusion constant (the usual 60).
pub const RRF_K: i32 = 60;

/// Largest dimension pgvector's HNSW index accepts for `vector`; larger embeddings are searched
/// exactly (no index).
pub const HNSW_MAX_DIM: i32 = 2000;

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

/// The memory operations on one database handle: options, what the ensure step found, the
/// HNSW indexes known to exist.
pub struct Memory {
    db: Arc<Database>,
    schema: String,
    options: MemoryOptions,
    prepared: OnceCell<schema::Prepared>,
    hnsw_dims: Mutex<HashSet<i32>>,
    notes: Mutex<Vec<String>>,
    /// With a replica: per (app, user), the log position reads must see (`replica.rs`).
    positions: ScopePositions,
}

impl Memory {
    pub fn new(db: Arc<Database>, options: MemoryOptions) -> Self {
        Memory {
            schema: db.schema().to_string(),
            db,
            options,
            prepared: OnceCell::new(),
            hnsw_dims: Mutex::new(HashSet::new()),
            notes: Mutex::new(Vec::new()),
            positions: ScopePositions::new(SEEN_LIMIT),
        }
    }

    pub fn database(&self) -> &Arc<Database> {
        &self.db
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

    /// What the server offers for memory search (runs the ensure step on first use), with
    /// every degradation noted so far.
    pub async fn memory_capabilities(&self) -> Result<Capabilities> {
        let mut caps = self.prepared().await?.caps.clone();
        caps.notes = self.notes.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Ok(caps)
    }
}
