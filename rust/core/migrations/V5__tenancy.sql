-- Optional multi-tenancy by row-level security. Nothing here changes behaviour until an owner
-- enables it (`adk-postgres tenancy enable`, which runs ALTER TABLE … ENABLE ROW LEVEL SECURITY
-- on the tables below): policies exist on disabled tables at no cost.
--
-- tenants: which database role may see which app (user_id NULL: every user of the app) or only
--   one user of it. Runtime roles may not read or change it (RLS with no policy for them; the
--   owner, who runs migrations and `tenancy grant`, bypasses RLS).
CREATE TABLE IF NOT EXISTS {schema}.tenants (
    role_name  name NOT NULL,
    app_name   text NOT NULL,
    user_id    text
);
CREATE UNIQUE INDEX IF NOT EXISTS tenants_role_app_user
    ON {schema}.tenants (role_name, app_name, COALESCE(user_id, ''));
ALTER TABLE {schema}.tenants ENABLE ROW LEVEL SECURITY;

-- The checks run as their owner (SECURITY DEFINER) so tenants need no access to `tenants`;
-- the role is passed in (`current_user` inside would be the owner).
CREATE OR REPLACE FUNCTION {schema}.adk_postgres_tenant_sees(role_name name, app text, usr text)
RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM {schema}.tenants t
                    WHERE t.role_name = $1 AND t.app_name = $2
                      AND (t.user_id IS NULL OR t.user_id = $3))
$$;
CREATE OR REPLACE FUNCTION {schema}.adk_postgres_tenant_sees_app(role_name name, app text)
RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM {schema}.tenants t WHERE t.role_name = $1 AND t.app_name = $2)
$$;

DROP POLICY IF EXISTS tenant_rows ON {schema}.sessions;
CREATE POLICY tenant_rows ON {schema}.sessions
    USING ({schema}.adk_postgres_tenant_sees(current_user, app_name, user_id))
    WITH CHECK ({schema}.adk_postgres_tenant_sees(current_user, app_name, user_id));
DROP POLICY IF EXISTS tenant_rows ON {schema}.events;
CREATE POLICY tenant_rows ON {schema}.events
    USING ({schema}.adk_postgres_tenant_sees(current_user, app_name, user_id))
    WITH CHECK ({schema}.adk_postgres_tenant_sees(current_user, app_name, user_id));
DROP POLICY IF EXISTS tenant_rows ON {schema}.user_states;
CREATE POLICY tenant_rows ON {schema}.user_states
    USING ({schema}.adk_postgres_tenant_sees(current_user, app_name, user_id))
    WITH CHECK ({schema}.adk_postgres_tenant_sees(current_user, app_name, user_id));
-- App state is shared by every user of an app, user-scoped tenants included.
DROP POLICY IF EXISTS tenant_rows ON {schema}.app_states;
CREATE POLICY tenant_rows ON {schema}.app_states
    USING ({schema}.adk_postgres_tenant_sees_app(current_user, app_name))
    WITH CHECK ({schema}.adk_postgres_tenant_sees_app(current_user, app_name));
DROP POLICY IF EXISTS tenant_rows ON {schema}.artifact_files;
CREATE POLICY tenant_rows ON {schema}.artifact_files
    USING ({schema}.adk_postgres_tenant_sees(current_user, app_name, user_id))
    WITH CHECK ({schema}.adk_postgres_tenant_sees(current_user, app_name, user_id));
DROP POLICY IF EXISTS tenant_rows ON {schema}.artifact_versions;
CREATE POLICY tenant_rows ON {schema}.artifact_versions
    USING ({schema}.adk_postgres_tenant_sees(current_user, app_name, user_id))
    WITH CHECK ({schema}.adk_postgres_tenant_sees(current_user, app_name, user_id));
DROP POLICY IF EXISTS tenant_rows ON {schema}.memory_entries;
CREATE POLICY tenant_rows ON {schema}.memory_entries
    USING ({schema}.adk_postgres_tenant_sees(current_user, app_name, user_id))
    WITH CHECK ({schema}.adk_postgres_tenant_sees(current_user, app_name, user_id));
DROP POLICY IF EXISTS tenant_rows ON {schema}.memory_tombstones;
CREATE POLICY tenant_rows ON {schema}.memory_tombstones
    USING ({schema}.adk_postgres_tenant_sees(current_user, app_name, user_id))
    WITH CHECK ({schema}.adk_postgres_tenant_sees(current_user, app_name, user_id));

-- Artifact contents are shared by SHA-256 across apps (stored once). The orphan cleanup must
-- see every tenant's versions before it deletes a content, so it runs as the owner.
ALTER FUNCTION {schema}.adk_postgres_artifact_orphans() SECURITY DEFINER;
ALTER FUNCTION {schema}.adk_postgres_artifact_orphans() SET search_path = pg_catalog, pg_temp;
