-- sessions.incarnation: a session deleted and re-created under the same key is a different
--   session, and every gate must tell them apart (an append from a holder of the old one must
--   be refused, a cached history of the old one must not be extended). Revisions restart at 0
--   on re-creation, so the revision alone cannot; the create time cannot either (clocks repeat,
--   differ between machines, and tests fix them).
--
-- A random 52-bit tag (random() has that much entropy), drawn at every insert by the column
-- default, so ADK's own service (which does not name the column) gets one too. Added with a
-- constant default first, which PostgreSQL stores in the catalog instead of rewriting the
-- table; existing rows read 0, and they are unique by construction: any re-creation of their
-- key is a new insert that draws a fresh tag.
ALTER TABLE {schema}.sessions ADD COLUMN IF NOT EXISTS incarnation bigint NOT NULL DEFAULT 0;
ALTER TABLE {schema}.sessions
    ALTER COLUMN incarnation SET DEFAULT (1 + floor(random() * 4503599627370495))::bigint;
