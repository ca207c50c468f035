-- Our additions, invisible to ADK's ORM (it names its columns explicitly).
--
-- sessions.revision: the optimistic-concurrency marker. Every append does
--   UPDATE ... SET revision = revision + 1 WHERE ... AND revision = $expected.
-- sessions.update_ts: the exact float last_update_time (timestamp columns keep only microseconds,
--   and Session.__eq__ compares exact floats).
-- events.seq: the session revision an event was stored at; a retried append recognises its own
--   earlier success by it, and warm reads can fetch only newer events.
-- events.event_ts: the exact float event timestamp, for after_timestamp and ordering within a
--   microsecond (ADK compares exact floats). NULL for rows ADK wrote: readers fall back to the
--   timestamp column.
ALTER TABLE {schema}.sessions ADD COLUMN IF NOT EXISTS revision bigint NOT NULL DEFAULT 0;
ALTER TABLE {schema}.sessions ADD COLUMN IF NOT EXISTS update_ts double precision;
ALTER TABLE {schema}.events ADD COLUMN IF NOT EXISTS seq bigint;
ALTER TABLE {schema}.events ADD COLUMN IF NOT EXISTS event_ts double precision;

-- A writer that does not know these columns (ADK's own service during a rolling deploy) updates
-- a session without touching revision: bump it for them and derive update_ts from update_time,
-- so our stale-writer check sees their change.
CREATE OR REPLACE FUNCTION {schema}.adk_postgres_foreign_session_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.revision := OLD.revision + 1;
    NEW.update_ts := extract(epoch FROM NEW.update_time)::double precision;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS adk_postgres_foreign_session_update ON {schema}.sessions;
CREATE TRIGGER adk_postgres_foreign_session_update
    BEFORE UPDATE ON {schema}.sessions
    FOR EACH ROW WHEN (NEW.revision = OLD.revision)
    EXECUTE FUNCTION {schema}.adk_postgres_foreign_session_update();

-- Every append updates its session row. With room left on each page and no index on the
-- columns an append changes (update_time, state, revision), PostgreSQL can update the row in
-- place (a HOT update: no new index entries, less WAL). So no index on update_time here:
-- list_sessions finds a user's sessions through the primary key and sorts them.
ALTER TABLE {schema}.sessions SET (fillfactor = 80);

-- Warm reads fetch only the events stored after a revision (seq > $n OR seq IS NULL).
CREATE INDEX IF NOT EXISTS idx_events_app_user_session_seq
    ON {schema}.events (app_name, user_id, session_id, seq);

-- Reads order a session's events by time to the microsecond (ADK's column), then exact time,
-- then id; LIMIT n (num_recent_events) walks this index from the newest end and stops.
CREATE INDEX IF NOT EXISTS idx_events_session_order
    ON {schema}.events (app_name, user_id, session_id, "timestamp" DESC, event_ts DESC NULLS LAST, id DESC);
