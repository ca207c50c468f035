//! The SQL text of every artifact statement, built once per handle for its schema.

use crate::ident::quote_ident;

/// Every statement of the artifact operations, with the schema filled in.
#[derive(Debug, Clone)]
pub struct ArtifactSql {
    pub save: String,
    pub upsert_content: String,
    pub insert_chunk: String,
    pub lock_content_shared: String,
    pub load: String,
    pub read_chunks: String,
    pub version_info: String,
    /// A version of the key with this content ($5) and create time ($6): found after a save
    /// whose answer was lost, it is that save's.
    pub saved_version: String,
    pub list_versions: String,
    pub list_keys: String,
    pub delete: String,
    pub garbage: String,
    pub lock_content: String,
    pub try_lock_content: String,
    pub collect_garbage: String,
    pub file_unused: String,
    pub fs_contents_among: String,
}

impl ArtifactSql {
    pub fn new(schema: &str) -> Self {
        let s = quote_ident(schema);
        let key = "app_name = $1 AND user_id = $2 AND session_id = $3 AND filename = $4";
        let upsert = format!(
            "INSERT INTO {s}.artifact_contents AS t (sha256, size, storage)
             VALUES ($5, $6, $7)
             ON CONFLICT (sha256) DO UPDATE SET size = t.size
             RETURNING (t.xmax = 0) AS inserted, t.storage"
        );
        ArtifactSql {
            // $1..$4 key, $5 sha256, $6 size, $7 storage, $8 chunk 0 (NULL: written separately
            // or not in the database), $9 payload kind, $10 part JSON, $11 mime type,
            // $12 custom metadata JSON, $13 create time.
            // `c` runs first (the others read from it): the content row is locked before the
            // counter row, in every save, so two saves never wait on each other in a cycle.
            save: format!(
                "WITH c AS ({upsert}
                 ), ch AS (
                    INSERT INTO {s}.artifact_chunks (sha256, seq, data)
                    SELECT $5, 0, $8::bytea FROM c WHERE c.inserted AND $8::bytea IS NOT NULL
                 ), f AS (
                    INSERT INTO {s}.artifact_files AS t
                        (app_name, user_id, session_id, filename, next_version)
                    SELECT $1, $2, $3, $4, 1 FROM c
                    ON CONFLICT (app_name, user_id, session_id, filename)
                    DO UPDATE SET next_version = t.next_version + 1
                    RETURNING t.next_version - 1 AS version
                 ), v AS (
                    INSERT INTO {s}.artifact_versions
                        (app_name, user_id, session_id, filename, version, content_sha256,
                         payload_kind, part, mime_type, custom_metadata, create_time)
                    SELECT $1, $2, $3, $4, f.version, $5, $9, $10, $11, $12, $13 FROM f
                    RETURNING version
                 )
                 SELECT v.version, c.inserted FROM v, c"
            ),
            upsert_content: format!(
                "INSERT INTO {s}.artifact_contents AS t (sha256, size, storage)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (sha256) DO UPDATE SET size = t.size
                 RETURNING (t.xmax = 0) AS inserted"
            ),
            insert_chunk: format!(
                "INSERT INTO {s}.artifact_chunks (sha256, seq, data) VALUES ($1, $2, $3)"
            ),
            // Held until commit: the garbage collector cannot unlink this hash's file between
            // our check, our file write and our commit.
            lock_content_shared: format!(
                "SELECT c.storage
                   FROM (SELECT pg_advisory_xact_lock_shared($1::int4, $2::int4)) l
                   LEFT JOIN {s}.artifact_contents c ON c.sha256 = $3"
            ),
            // $5 version (NULL: latest), $6 the largest payload returned inline.
            load: format!(
                "SELECT v.version, v.part, v.payload_kind, v.content_sha256, c.size, c.storage,
                        CASE WHEN c.storage = 'db' AND c.size > 0 AND c.size <= $6 THEN
                            (SELECT ch.data FROM {s}.artifact_chunks ch
                              WHERE ch.sha256 = v.content_sha256 AND ch.seq = 0
                                AND length(ch.data) = c.size)
                        END
                   FROM {s}.artifact_versions v
                   JOIN {s}.artifact_contents c ON c.sha256 = v.content_sha256
                  WHERE v.{key_v} AND ($5::int8 IS NULL OR v.version = $5::int8)
                  ORDER BY v.version DESC
                  LIMIT 1",
                key_v = key.replace(" AND ", " AND v."),
            ),
            read_chunks: format!(
                "SELECT data FROM {s}.artifact_chunks WHERE sha256 = $1 ORDER BY seq"
            ),
            version_info: format!(
                "SELECT version, mime_type, custom_metadata, create_time
                   FROM {s}.artifact_versions
                  WHERE {key} AND ($5::int8 IS NULL OR version = $5::int8)
                  ORDER BY version DESC
                  LIMIT 1"
            ),
            saved_version: format!(
                "SELECT version FROM {s}.artifact_versions
                  WHERE {key} AND content_sha256 = $5 AND create_time = $6::float8
                  ORDER BY version DESC
                  LIMIT 1"
            ),
            list_versions: format!(
                "SELECT version, mime_type, custom_metadata, create_time
                   FROM {s}.artifact_versions
                  WHERE {key}
                  ORDER BY version"
            ),
            // $3 the session (NULL: user-scoped artifacts only).
            list_keys: format!(
                "SELECT filename FROM {s}.artifact_files
                  WHERE app_name = $1 AND user_id = $2
                    AND (session_id = '' OR session_id = $3::text)"
            ),
            // Versions go with the counter row (ON DELETE CASCADE); the trigger on
            // artifact_versions removes contents left without a version.
            delete: format!("DELETE FROM {s}.artifact_files WHERE {key} RETURNING 1"),
            garbage: format!(
                "SELECT sha256 FROM {s}.artifact_fs_garbage ORDER BY queued_at LIMIT 1000"
            ),
            lock_content: "SELECT 1 FROM (SELECT pg_advisory_xact_lock($1::int4, $2::int4)) l"
                .to_string(),
            try_lock_content: "SELECT pg_try_advisory_xact_lock($1::int4, $2::int4)".to_string(),
            // Run after taking the exclusive lock on the hash (a new statement, so a new
            // snapshot): true when no `fs` content row needs the file.
            collect_garbage: format!(
                "DELETE FROM {s}.artifact_fs_garbage WHERE sha256 = $1
                 RETURNING NOT EXISTS (SELECT 1 FROM {s}.artifact_contents
                                        WHERE sha256 = $1 AND storage = 'fs')"
            ),
            // Same question for a file found in the directory (not queued).
            file_unused: format!(
                "SELECT NOT EXISTS (SELECT 1 FROM {s}.artifact_contents
                                     WHERE sha256 = $1 AND storage = 'fs')"
            ),
            fs_contents_among: format!(
                "SELECT sha256 FROM {s}.artifact_contents
                  WHERE storage = 'fs' AND sha256 = ANY($1::bytea[])"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_use_the_quoted_schema() {
        let sql = ArtifactSql::new("tenant\"a");
        for text in [
            &sql.save,
            &sql.upsert_content,
            &sql.insert_chunk,
            &sql.load,
            &sql.read_chunks,
            &sql.version_info,
            &sql.list_versions,
            &sql.list_keys,
            &sql.delete,
            &sql.garbage,
            &sql.collect_garbage,
        ] {
            assert!(text.contains("\"tenant\"\"a\".artifact_"), "{text}");
            assert!(!text.contains("FROM artifact_"), "{text}");
            assert!(!text.contains("INTO artifact_"), "{text}");
        }
        assert!(sql.load.contains("v.app_name = $1 AND v.user_id = $2"));
    }

    #[test]
    fn save_locks_content_before_counter() {
        let sql = ArtifactSql::new("public");
        // The counter upsert reads from the content upsert, so it runs after it.
        assert!(sql.save.contains("SELECT $1, $2, $3, $4, 1 FROM c"));
        assert!(sql.save.contains("next_version = t.next_version + 1"));
        assert!(sql.save.contains("(t.xmax = 0) AS inserted"));
    }
}
