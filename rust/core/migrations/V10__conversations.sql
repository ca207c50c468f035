-- Conversations: a user's sessions listed newest activity first, titles, archive/restore,
-- full-text search over what was said, and state queries (rust/core/src/conversations/).
--
-- conversations holds what ADK's tables have no place for: an explicit title and the archive
--   time (a soft delete). A row exists only for sessions that have either; a session deleted
--   for good takes its row with it. Kept out of the sessions row so that setting a title or
--   archiving is no change of the session (its revision and update time stay, and copies
--   read before can still append).
CREATE TABLE IF NOT EXISTS {schema}.conversations (
    app_name    varchar(128) NOT NULL,
    user_id     varchar(128) NOT NULL,
    session_id  varchar(128) NOT NULL,
    title       text,
    archived_at timestamptz,
    PRIMARY KEY (app_name, user_id, session_id),
    FOREIGN KEY (app_name, user_id, session_id)
        REFERENCES {schema}.sessions (app_name, user_id, id) ON DELETE CASCADE
);
-- `prune --archived-for`: archived conversations of every app, oldest first.
CREATE INDEX IF NOT EXISTS conversations_archived
    ON {schema}.conversations (archived_at) WHERE archived_at IS NOT NULL;

-- A session's last activity, exact (update_ts) or from ADK's microsecond column for rows ADK's
-- own service wrote before V2. Listing 50 of a user's sessions walks this index from the newest
-- end. The cost: every append changes the key, so appends are no longer HOT updates (a new
-- entry in this index and the primary key per append); measured in benches/conversations.py.
CREATE INDEX IF NOT EXISTS idx_sessions_activity
    ON {schema}.sessions (app_name, user_id,
                          (COALESCE(update_ts, extract(epoch FROM update_time)::float8)), id);

-- The text of an event: its content's text parts (thoughts left out), one per line; NULL when
-- it has none (function calls and responses, state-only events). IMMUTABLE so that a search
-- index can be built on it (`adk-postgres conversations index --search LANGUAGE`).
CREATE OR REPLACE FUNCTION {schema}.adk_postgres_event_text(event_data jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT string_agg(p.part ->> 'text', E'\n' ORDER BY p.n)
    FROM jsonb_array_elements(
             CASE WHEN jsonb_typeof(event_data -> 'content' -> 'parts') = 'array'
                  THEN event_data -> 'content' -> 'parts' ELSE '[]'::jsonb END
         ) WITH ORDINALITY AS p(part, n)
    WHERE jsonb_typeof(p.part -> 'text') = 'string'
      AND (p.part -> 'thought') IS DISTINCT FROM 'true'::jsonb
$$;

-- Tenancy (V5): a tenant sees only its own conversations. RLS itself is switched on and off
-- with the other tenant tables (`adk-postgres tenancy enable`); when it is on already, the new
-- table starts with it on.
DROP POLICY IF EXISTS tenant_rows ON {schema}.conversations;
CREATE POLICY tenant_rows ON {schema}.conversations
    USING ({schema}.adk_postgres_tenant_sees(current_user, app_name, user_id))
    WITH CHECK ({schema}.adk_postgres_tenant_sees(current_user, app_name, user_id));
DO $$
BEGIN
    -- The sessions table found through its row type: no string literal of the schema name.
    IF (SELECT c.relrowsecurity FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_type t ON t.typrelid = c.oid
         WHERE t.oid = pg_typeof(NULL::{schema}.sessions)) THEN
        ALTER TABLE {schema}.conversations ENABLE ROW LEVEL SECURITY;
    END IF;
END
$$;
