//! Ranked search, one statement (see the module docs of `memory`): full text, trigram
//! fallback, vector candidates, fused by reciprocal rank.

use deadpool_postgres::Object;
use tokio_postgres::Row;

use super::vector::{check_vector, VectorParam};
use super::{Capabilities, Memory, MemoryHit, MemoryQuery, RRF_K};
use crate::codec::JsonText;
use crate::error::{Result, StoreError};
use crate::failover::is_lost;
use crate::ident::quote_ident;
use crate::replica::{behind_on_schema, parse_lsn, POSITION_SQL};
use crate::statement::{On, Param, WithType};

/// A lexeme as a quoted tsquery operand (quotes and backslashes doubled): SQL over column `l`.
const QUOTED_LEXEME: &str = r"'''' || replace(replace(l, '\', '\\'), '''', '''''') || ''''";

/// Candidates per method, before fusion.
fn candidates(limit: i64) -> i64 {
    (limit.saturating_mul(4)).clamp(40, 1000)
}

/// The search statement for the capabilities and, for vector search, the dimension
/// (a literal: the partial index predicate must be provable when planning).
pub(super) fn search_sql(schema: &str, caps: &Capabilities, vector_dim: Option<i32>) -> String {
    let s = quote_ident(schema);
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

impl Memory {
    /// Ranked search (see the module docs), one statement.
    pub async fn search_memory(&self, query: MemoryQuery<'_>) -> Result<Vec<MemoryHit>> {
        let prepared = self.prepared().await?;
        let caps = &prepared.caps;
        let limit = query.limit.max(1);
        let cand = candidates(limit);
        let vector = match query.vector {
            Some(v) if self.options.vector && caps.vector_ready() && check_vector(v)? => Some(v),
            _ => None,
        };
        let dim = match vector {
            Some(v) => Some(i32::try_from(v.len()).map_err(|_| StoreError::config("dim"))?),
            None => None,
        };
        if let (Some(dim), Some(v)) = (dim, &caps.vector_schema) {
            self.ensure_hnsw(v, dim).await?;
        }
        let sql = search_sql(&self.schema, caps, dim);
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
            &self.options.text_search_config,
        ];
        let scope = (query.app_name, query.user_id);
        let rows = match vector {
            None => {
                self.db
                    .read_scope(&self.positions, scope, &sql, &base)
                    .await?
            }
            Some(v) => {
                let (vector_type, _) = caps.vector_types().expect("vector_ready");
                let param = WithType(VectorParam(v), vector_type);
                let mut params: Vec<&dyn Param> = base.to_vec();
                params.push(&param);
                self.vector_search(scope, &sql, &params, cand).await?
            }
        };
        Ok(rows.iter().map(hit_from_row).collect())
    }

    /// A vector search: on the replica when there is one and it has replayed what this process
    /// wrote or saw in the scope (as `Database::read_scope`), else on the primary, retried on a
    /// lost connection like `fetch`.
    async fn vector_search(
        &self,
        (app, user): (&str, &str),
        sql: &str,
        params: &[&dyn Param],
        candidates: i64,
    ) -> Result<Vec<Row>> {
        let positioned = self.db.has_replica();
        if let Some(conn) = self.db.replica_connection().await? {
            match self
                .vector_search_on(&conn, sql, params, candidates, true)
                .await
            {
                Ok((rows, Some(at))) if self.positions.is_current(app, user, at) => {
                    self.positions.advance(app, user, at);
                    return Ok(rows);
                }
                Err(err) if is_lost(&err) => self.db.replica_failed(Some(conn)),
                Err(err) if !behind_on_schema(&err) => return Err(err),
                _ => {} // behind: the primary answers
            }
        }
        let mut failover = self.db.failover();
        let mut again_at_once = true;
        loop {
            let conn: Object = self.db.connection().await?;
            let result = self
                .vector_search_on(&conn, sql, params, candidates, positioned)
                .await;
            match result {
                Err(err) if is_lost(&err) => {
                    let _ = Object::take(conn);
                    if !std::mem::take(&mut again_at_once) {
                        failover.pause(err).await?;
                    }
                }
                Ok((rows, at)) => {
                    if let Some(at) = at {
                        self.positions.reset(app, user, at);
                    }
                    return Ok(rows);
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// One vector search on `conn`, with pgvector's iterative HNSW scan switched on (so
    /// filtering by app and user cannot starve the index scan of results) for its transaction
    /// only — a setting on the session would outlive the call on a pooled or PgBouncer-shared
    /// connection — pipelined, with the node's log position when `positioned`: one round trip.
    async fn vector_search_on(
        &self,
        conn: &Object,
        sql: &str,
        params: &[&dyn Param],
        candidates: i64,
        positioned: bool,
    ) -> Result<(Vec<Row>, Option<u64>)> {
        let ef_search = candidates.clamp(40, 1000).to_string();
        let setup = "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),
                            set_config('hnsw.ef_search', $1::text, true)";
        let statements = self.db.statements();
        let on = On::from(conn);
        let setup = statements.ready(on, setup, &[&ef_search]).await?;
        let search = statements.ready(on, sql, params).await?;
        let position = statements.ready(on, POSITION_SQL, &[]).await?;
        let mut steps = vec![
            on.simple("BEGIN"),
            setup.step(on, vec![&ef_search]),
            search.step(on, params.to_vec()),
            on.simple("COMMIT"),
        ];
        if positioned {
            steps.push(position.step(on, vec![]));
        }
        let mut results = statements.pipeline(steps).await?;
        // After an error PostgreSQL answers the COMMIT with ROLLBACK: nothing stays open.
        if let Some(failed) = results.iter().position(|r| r.is_err()) {
            return Err(results.swap_remove(failed).unwrap_err());
        }
        let at = if positioned {
            let rows = results.pop().expect("the position step")?;
            rows.first()
                .and_then(|row| row.get::<_, Option<&str>>(0))
                .and_then(parse_lsn)
        } else {
            None
        };
        Ok((results.swap_remove(2)?, at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn search_variants_qualify_schema_and_extensions() {
        let plain = search_sql("ten\"ant", &caps(false, false), None);
        assert!(plain.contains("\"ten\"\"ant\".memory_entries"));
        assert!(!plain.contains("word_similarity") && !plain.contains("<=>"));
        assert!(plain.contains("$9::text::regconfig") && plain.contains("websearch_to_tsquery"));
        let full = search_sql("ten\"ant", &caps(true, true), Some(8));
        assert!(full.contains("\"ext s\".word_similarity"));
        assert!(full.contains("OPERATOR(\"ext s\".%>) ANY"));
        assert!(full.contains("OPERATOR(\"vec\".<=>) $10::\"vec\".vector(8)"));
        assert!(full.contains("\"vec\".vector_dims(m.embedding) = 8"));
        // Without a query vector, no vector list even where pgvector exists.
        assert!(!search_sql("ten\"ant", &caps(true, true), None).contains("<=>"));
        for text in [&plain, &full] {
            assert!(!text.contains("FROM memory_entries"));
        }
    }
}
