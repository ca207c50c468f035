-- Artifacts (PostgresArtifactService). Our own tables; ADK has no SQL artifact schema.
--
-- artifact_files: one row per artifact (app, user, scope, filename) while it has versions.
--   next_version is the per-filename counter: a save upserts it (row lock) and inserts its
--   version row in the same transaction, so concurrent saves get consecutive versions and a
--   failed save rolls its increment back (no gap). Deleting the row deletes every version.
--   session_id is '' for user-scoped (`user:`) artifacts (ADK rejects empty session ids).
-- artifact_versions: per-version metadata and the Part without its payload (JSON, exact text).
--   payload_kind: 0 = the Part JSON is complete, 1 = inline_data.data is the content,
--   2 = text is the content (UTF-8).
-- artifact_contents: content-addressed payloads (SHA-256), stored once however many versions
--   use them; storage 'db' (chunks below) or 'fs' (a file named by the hash under the
--   service's content directory). A committed row always has all its bytes in place.
-- artifact_chunks: the bytes of 'db' contents, in chunk rows (1 MiB) so neither side ever
--   holds a large artifact in one message.
-- artifact_fs_garbage: hashes of 'fs' contents whose row was deleted; the file is unlinked
--   afterwards under an exclusive advisory lock (savers of that hash hold it shared).
CREATE TABLE IF NOT EXISTS {schema}.artifact_contents (
    sha256     bytea       PRIMARY KEY CHECK (length(sha256) = 32),
    size       bigint      NOT NULL CHECK (size >= 0),
    storage    text        NOT NULL CHECK (storage IN ('db', 'fs')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS {schema}.artifact_chunks (
    sha256 bytea   NOT NULL REFERENCES {schema}.artifact_contents (sha256) ON DELETE CASCADE,
    seq    integer NOT NULL,
    data   bytea   NOT NULL,
    PRIMARY KEY (sha256, seq)
);
-- Artifacts are mostly compressed already (images, PDFs, archives): skip pglz, store
-- out of line.
ALTER TABLE {schema}.artifact_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

CREATE TABLE IF NOT EXISTS {schema}.artifact_files (
    app_name     text   NOT NULL,
    user_id      text   NOT NULL,
    session_id   text   NOT NULL,
    filename     text   NOT NULL,
    next_version bigint NOT NULL,
    PRIMARY KEY (app_name, user_id, session_id, filename)
);

CREATE TABLE IF NOT EXISTS {schema}.artifact_versions (
    app_name        text     NOT NULL,
    user_id         text     NOT NULL,
    session_id      text     NOT NULL,
    filename        text     NOT NULL,
    version         bigint   NOT NULL,
    content_sha256  bytea    NOT NULL REFERENCES {schema}.artifact_contents (sha256),
    payload_kind    smallint NOT NULL CHECK (payload_kind IN (0, 1, 2)),
    part            json     NOT NULL,
    mime_type       text,
    custom_metadata json,
    create_time     double precision NOT NULL,
    PRIMARY KEY (app_name, user_id, session_id, filename, version),
    FOREIGN KEY (app_name, user_id, session_id, filename)
        REFERENCES {schema}.artifact_files (app_name, user_id, session_id, filename)
        ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS idx_artifact_versions_content
    ON {schema}.artifact_versions (content_sha256);

CREATE TABLE IF NOT EXISTS {schema}.artifact_fs_garbage (
    sha256     bytea       PRIMARY KEY,
    queued_at  timestamptz NOT NULL DEFAULT now()
);

-- Orphan cleanup, however versions are deleted (delete_artifact, cascades, by hand): after each
-- statement, delete the contents of the removed versions that no version references any more.
-- Step 1 locks the candidates, skipping rows a concurrent save holds (a save locks its content
-- row first, with ON CONFLICT DO UPDATE, so its content is never removed under it); step 2 runs
-- with a snapshot taken after those locks, so every committed reference is visible.
CREATE OR REPLACE FUNCTION {schema}.adk_postgres_artifact_orphans() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    candidates bytea[];
BEGIN
    SELECT array_agg(l.sha256) INTO candidates
      FROM (SELECT c.sha256 FROM {schema}.artifact_contents c
             WHERE c.sha256 IN (SELECT DISTINCT g.content_sha256 FROM gone g)
             ORDER BY c.sha256
             FOR UPDATE SKIP LOCKED) l;
    IF candidates IS NULL THEN
        RETURN NULL;
    END IF;
    WITH d AS (
        DELETE FROM {schema}.artifact_contents c
         WHERE c.sha256 = ANY (candidates)
           AND NOT EXISTS (SELECT 1 FROM {schema}.artifact_versions v
                            WHERE v.content_sha256 = c.sha256)
        RETURNING c.sha256, c.storage
    )
    INSERT INTO {schema}.artifact_fs_garbage (sha256)
    SELECT d.sha256 FROM d WHERE d.storage = 'fs'
    ON CONFLICT (sha256) DO NOTHING;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS adk_postgres_artifact_orphans ON {schema}.artifact_versions;
CREATE TRIGGER adk_postgres_artifact_orphans
    AFTER DELETE ON {schema}.artifact_versions
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT
    EXECUTE FUNCTION {schema}.adk_postgres_artifact_orphans();
