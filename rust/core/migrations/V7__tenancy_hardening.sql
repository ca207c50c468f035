-- Tenancy hardening. Artifact contents are shared by SHA-256 across tenants, so a tenant role
-- must not be able to change or forge what another tenant's versions point at, and the
-- grant checks must not answer questions about other roles.
--
-- 1. The check functions answer only for a role the session may act as (`SET ROLE` needs
--    membership, so `current_user` in the policies always qualifies), and only roles granted
--    by `tenancy grant` may run them at all (`Store::grant_tenant` grants EXECUTE).
CREATE OR REPLACE FUNCTION {schema}.adk_postgres_tenant_sees(role_name name, app text, usr text)
RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM {schema}.tenants t
                    WHERE t.role_name = $1 AND t.app_name = $2
                      AND (t.user_id IS NULL OR t.user_id = $3))
       AND pg_has_role(session_user, $1, 'MEMBER')
$$;
CREATE OR REPLACE FUNCTION {schema}.adk_postgres_tenant_sees_app(role_name name, app text)
RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM {schema}.tenants t WHERE t.role_name = $1 AND t.app_name = $2)
       AND pg_has_role(session_user, $1, 'MEMBER')
$$;
REVOKE EXECUTE ON FUNCTION {schema}.adk_postgres_tenant_sees(name, text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION {schema}.adk_postgres_tenant_sees_app(name, text) FROM PUBLIC;
-- A trigger function: fired whatever EXECUTE says, never callable directly.
REVOKE EXECUTE ON FUNCTION {schema}.adk_postgres_artifact_orphans() FROM PUBLIC;

-- Roles granted before this migration keep working. (The schema name is taken from the
-- catalog, never pasted into a string literal.)
DO $$
DECLARE
    s text;
    r name;
BEGIN
    SELECT quote_ident(n.nspname) INTO s
      FROM pg_type ty JOIN pg_namespace n ON n.oid = ty.typnamespace
     WHERE ty.oid = pg_typeof(NULL::{schema}.tenants);
    FOR r IN SELECT DISTINCT t.role_name FROM {schema}.tenants t
               JOIN pg_roles p ON p.rolname = t.role_name
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s.adk_postgres_tenant_sees(name, text, text), '
                       '%s.adk_postgres_tenant_sees_app(name, text) TO %I', s, s, r);
    END LOOP;
END
$$;

-- The trigger functions below run as the writing role; a fixed search_path keeps a role
-- from shadowing sha256() or pg_current_xact_id() with functions of its own.
--
-- 2. Contents are immutable once written. A save locks an existing content row with a no-op
--    `ON CONFLICT DO UPDATE`, which stays allowed; any real change is refused, for every role.
--    created_xid (set here, whatever the inserter says) tells which transaction wrote a
--    content: chunks may be added only by that transaction (or by the owner).
ALTER TABLE {schema}.artifact_contents ADD COLUMN IF NOT EXISTS created_xid xid8;

CREATE OR REPLACE FUNCTION {schema}.adk_postgres_content_created() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW.created_xid := pg_current_xact_id();
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS adk_postgres_content_created ON {schema}.artifact_contents;
CREATE TRIGGER adk_postgres_content_created
    BEFORE INSERT ON {schema}.artifact_contents
    FOR EACH ROW EXECUTE FUNCTION {schema}.adk_postgres_content_created();

CREATE OR REPLACE FUNCTION {schema}.adk_postgres_content_immutable() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'artifact contents cannot be changed (%)', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
DROP TRIGGER IF EXISTS adk_postgres_content_immutable ON {schema}.artifact_contents;
CREATE TRIGGER adk_postgres_content_immutable
    BEFORE UPDATE ON {schema}.artifact_contents
    FOR EACH ROW WHEN (NEW.* IS DISTINCT FROM OLD.*)
    EXECUTE FUNCTION {schema}.adk_postgres_content_immutable();
DROP TRIGGER IF EXISTS adk_postgres_content_immutable ON {schema}.artifact_chunks;
CREATE TRIGGER adk_postgres_content_immutable
    BEFORE UPDATE ON {schema}.artifact_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.adk_postgres_content_immutable();

-- Chunks go with their content (ON DELETE CASCADE, run when the orphan cleanup or a prune
-- deletes it); deleting chunks of a content that is still there is refused. Deleting an unused
-- content is harmless, and one still in use is kept by the foreign key from artifact_versions.
CREATE OR REPLACE FUNCTION {schema}.adk_postgres_chunks_deleted() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM gone g JOIN {schema}.artifact_contents c ON c.sha256 = g.sha256) THEN
        RAISE EXCEPTION 'chunks of a stored artifact content cannot be deleted'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS adk_postgres_chunks_deleted ON {schema}.artifact_chunks;
CREATE TRIGGER adk_postgres_chunks_deleted
    AFTER DELETE ON {schema}.artifact_chunks
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.adk_postgres_chunks_deleted();

CREATE OR REPLACE FUNCTION {schema}.adk_postgres_chunk_added() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM {schema}.artifact_contents c
                    WHERE c.sha256 = NEW.sha256 AND c.created_xid = pg_current_xact_id())
       -- The owner may (a restore loads contents and chunks in separate transactions).
       AND NOT (SELECT pg_has_role(current_user, t.relowner, 'MEMBER')
                  FROM pg_class t WHERE t.oid = TG_RELID) THEN
        RAISE EXCEPTION 'chunks can be added only by the transaction that created the content'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END
$$;
-- AFTER: the save statement inserts the content and its first chunk in sibling CTEs, and
-- only after-statement checks see both.
DROP TRIGGER IF EXISTS adk_postgres_chunk_added ON {schema}.artifact_chunks;
CREATE TRIGGER adk_postgres_chunk_added
    AFTER INSERT ON {schema}.artifact_chunks
    FOR EACH ROW EXECUTE FUNCTION {schema}.adk_postgres_chunk_added();

-- 3. With row-level security on, a content written by a role other than the owner is checked
--    at commit: its chunks must hash to its SHA-256. Otherwise a tenant could store wrong bytes
--    under the hash of another tenant's upcoming save, which would then reuse them. The check
--    reads the content back once (server memory about its size, at most 1 GB). Files in a
--    content directory cannot be checked by the server, so tenant roles keep contents in
--    PostgreSQL while row-level security is on.
CREATE OR REPLACE FUNCTION {schema}.adk_postgres_content_verify() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    checked boolean;
    ok boolean;
BEGIN
    SELECT v.relrowsecurity AND NOT pg_has_role(current_user, c.relowner, 'MEMBER')
      INTO checked
      FROM pg_class c
      JOIN pg_class v ON v.relnamespace = c.relnamespace AND v.relname = 'artifact_versions'
     WHERE c.oid = TG_RELID;
    IF NOT checked THEN
        RETURN NULL;
    END IF;
    -- Deleted again in the same transaction: nothing left to check.
    IF NOT EXISTS (SELECT 1 FROM {schema}.artifact_contents c
                    WHERE c.sha256 = NEW.sha256 AND c.created_xid = NEW.created_xid) THEN
        RETURN NULL;
    END IF;
    IF NEW.storage <> 'db' THEN
        RAISE EXCEPTION 'with row-level security on, tenant roles keep artifact contents in '
                        'PostgreSQL (a content_dir needs the owner role)'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT COALESCE(sum(length(ch.data)), 0) = NEW.size
           AND sha256(COALESCE(string_agg(ch.data, ''::bytea ORDER BY ch.seq), ''::bytea))
               = NEW.sha256
      INTO ok
      FROM {schema}.artifact_chunks ch
     WHERE ch.sha256 = NEW.sha256;
    IF NOT ok THEN
        RAISE EXCEPTION 'artifact content % does not match its SHA-256', encode(NEW.sha256, 'hex')
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS adk_postgres_content_verify ON {schema}.artifact_contents;
CREATE CONSTRAINT TRIGGER adk_postgres_content_verify
    AFTER INSERT ON {schema}.artifact_contents
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION {schema}.adk_postgres_content_verify();

REVOKE EXECUTE ON FUNCTION {schema}.adk_postgres_content_created() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION {schema}.adk_postgres_content_immutable() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION {schema}.adk_postgres_chunks_deleted() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION {schema}.adk_postgres_chunk_added() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION {schema}.adk_postgres_content_verify() FROM PUBLIC;
