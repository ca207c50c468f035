-- Memory (PostgresMemoryService). Our own tables; ADK has no SQL memory schema.
--
-- memory_entries: one row per memory, keyed by (app, user, memory_id). Entries made from
--   events use the event id as memory_id, so adding a session or its events again updates the
--   rows in place (upsert) instead of duplicating them.
--   session_id: the session an event came from (NULL: explicit add_memory entries, or events
--     added without a session id).
--   event_ts: the exact event time (float epoch; ordering and ADK's timestamp formatting);
--     timestamp_text: MemoryEntry.timestamp exactly as given to add_memory.
--   content / custom_metadata: JSON text exactly as pydantic wrote it (json, not jsonb: never
--     queried inside, and read back without conversion).
--   search_text: the searchable text (text parts, thoughts excluded, script runs split);
--   tsv: its tsvector, computed in the upsert with the service's text search configuration.
-- memory_tombstones: ids deleted with delete_memory, so re-adding the session they came from
--   does not bring them back (InMemoryMemoryService's rule). Explicit add_memory clears them.
--
-- Extension-dependent parts are not created here (the extension may be missing or not
-- creatable by this role): the trigram index and the embedding column and its HNSW indexes
-- are added by the memory store's ensure step after detecting pg_trgm / vector.
CREATE TABLE IF NOT EXISTS {schema}.memory_entries (
    app_name        text             NOT NULL,
    user_id         text             NOT NULL,
    memory_id       text             NOT NULL,
    session_id      text,
    author          text,
    event_ts        double precision,
    timestamp_text  text,
    content         json             NOT NULL,
    custom_metadata json,
    search_text     text             NOT NULL,
    tsv             tsvector         NOT NULL,
    created_at      timestamptz      NOT NULL DEFAULT now(),
    updated_at      timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (app_name, user_id, memory_id)
);

CREATE INDEX IF NOT EXISTS idx_memory_entries_tsv
    ON {schema}.memory_entries USING gin (tsv);
-- add_session_to_memory replaces the entries of one session.
CREATE INDEX IF NOT EXISTS idx_memory_entries_session
    ON {schema}.memory_entries (app_name, user_id, session_id);

CREATE TABLE IF NOT EXISTS {schema}.memory_tombstones (
    app_name   text        NOT NULL,
    user_id    text        NOT NULL,
    memory_id  text        NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_name, user_id, memory_id)
);
