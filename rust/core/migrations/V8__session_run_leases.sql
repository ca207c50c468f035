-- Run leases: at most one invocation of a session runs at a time, across every process
-- (double-texting; see python/adk_postgres/runs.py for the strategies built on this).
--
-- session_runs holds one row per run that wants or holds a session: its random id, when it
--   arrived (queue order), when its process last showed it is alive (rows older than the
--   lease expiry are runs of a dead or paused process and are removed by the next claim) and
--   the invocation id of its first event (so an interrupting run can mark what it stopped).
-- sessions.run_fence is the id of the run that was last granted the session. The append
--   statement takes the caller's run id and refuses the append unless it is still the fence:
--   a run whose lease was taken over (expired while its process was paused, or interrupted)
--   can no longer write. Grants and appends both lock the session row, so they are ordered.
--   NULL: no leased run was ever granted (unleased appends never check it).
ALTER TABLE {schema}.sessions ADD COLUMN IF NOT EXISTS run_fence bigint;

-- Granting a run changes only run_fence: that is no change of the session (its revision and
-- update time stay, so copies read before the grant can still append). The V2 trigger that
-- bumps the revision for writers that do not know it must not fire for it.
DROP TRIGGER IF EXISTS adk_postgres_foreign_session_update ON {schema}.sessions;
CREATE TRIGGER adk_postgres_foreign_session_update
    BEFORE UPDATE ON {schema}.sessions
    FOR EACH ROW WHEN (NEW.revision = OLD.revision
                       AND NEW.run_fence IS NOT DISTINCT FROM OLD.run_fence)
    EXECUTE FUNCTION {schema}.adk_postgres_foreign_session_update();

CREATE TABLE IF NOT EXISTS {schema}.session_runs (
    app_name      varchar(128) NOT NULL,
    user_id       varchar(128) NOT NULL,
    session_id    varchar(128) NOT NULL,
    run_id        bigint       NOT NULL,
    arrived_at    timestamptz  NOT NULL DEFAULT clock_timestamp(),
    heartbeat_at  timestamptz  NOT NULL DEFAULT clock_timestamp(),
    invocation_id varchar(256),
    PRIMARY KEY (app_name, user_id, session_id, run_id),
    -- A deleted session takes its runs with it (a holder's next heartbeat finds it gone).
    FOREIGN KEY (app_name, user_id, session_id)
        REFERENCES {schema}.sessions (app_name, user_id, id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS session_runs_queue
    ON {schema}.session_runs (app_name, user_id, session_id, arrived_at, run_id);

-- Claims the session for run p_run: a new arrival (p_new) joins the queue, a waiting run
-- polls. Answers one row: status 'granted' (p_run is the fence now), 'waiting' (a live run is
-- ahead), 'busy' (p_mode 'reject' and a live run is ahead: nothing was stored), 'lost' (p_run
-- is no longer queued: its process stopped heartbeating for longer than the expiry, or a newer
-- run interrupted it) or 'no_session'; with 'granted', the invocation this claim interrupted
-- (p_mode 'interrupt' stops the running run, not the ones queued behind it).
-- SECURITY INVOKER: under row-level security a tenant claims only its own sessions.
CREATE OR REPLACE FUNCTION {schema}.adk_postgres_claim_run(
    p_app text, p_user text, p_session text, p_run bigint, p_new boolean, p_mode text,
    p_expiry_ms bigint)
RETURNS TABLE (status text, interrupted_invocation text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    holder bigint;
    my_arrival timestamptz;
    stopped text;
    cutoff timestamptz := clock_timestamp() - p_expiry_ms * interval '1 millisecond';
BEGIN
    -- The session row's lock orders this claim with other claims and with appends.
    SELECT s.run_fence INTO holder FROM {schema}.sessions s
     WHERE s.app_name = p_app AND s.user_id = p_user AND s.id = p_session
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'no_session'::text, NULL::text;
        RETURN;
    END IF;
    IF p_new THEN
        -- ON CONFLICT: a retried claim (its first answer lost) finds its own row.
        INSERT INTO {schema}.session_runs AS r (app_name, user_id, session_id, run_id)
        VALUES (p_app, p_user, p_session, p_run)
        ON CONFLICT (app_name, user_id, session_id, run_id)
        DO UPDATE SET heartbeat_at = clock_timestamp()
        RETURNING r.arrived_at INTO my_arrival;
    ELSE
        UPDATE {schema}.session_runs r SET heartbeat_at = clock_timestamp()
         WHERE r.app_name = p_app AND r.user_id = p_user AND r.session_id = p_session
           AND r.run_id = p_run
        RETURNING r.arrived_at INTO my_arrival;
        IF NOT FOUND THEN
            RETURN QUERY SELECT 'lost'::text, NULL::text;
            RETURN;
        END IF;
    END IF;
    IF holder = p_run THEN
        RETURN QUERY SELECT 'granted'::text, NULL::text;
        RETURN;
    END IF;
    IF p_new AND p_mode = 'interrupt' AND holder IS NOT NULL THEN
        DELETE FROM {schema}.session_runs r
         WHERE r.app_name = p_app AND r.user_id = p_user AND r.session_id = p_session
           AND r.run_id = holder
        RETURNING r.invocation_id INTO stopped;
    END IF;
    -- Runs whose process stopped heartbeating are gone.
    DELETE FROM {schema}.session_runs r
     WHERE r.app_name = p_app AND r.user_id = p_user AND r.session_id = p_session
       AND r.run_id <> p_run AND r.heartbeat_at < cutoff;
    -- Ahead: a live run that arrived earlier, or the live holder whenever it arrived (its
    -- row may have committed after this one's).
    IF EXISTS (SELECT 1 FROM {schema}.session_runs r
                WHERE r.app_name = p_app AND r.user_id = p_user AND r.session_id = p_session
                  AND r.run_id <> p_run
                  AND ((r.arrived_at, r.run_id) < (my_arrival, p_run) OR r.run_id = holder)) THEN
        IF p_mode = 'reject' THEN
            DELETE FROM {schema}.session_runs r
             WHERE r.app_name = p_app AND r.user_id = p_user AND r.session_id = p_session
               AND r.run_id = p_run;
            RETURN QUERY SELECT 'busy'::text, NULL::text;
        ELSE
            RETURN QUERY SELECT 'waiting'::text, stopped;
        END IF;
        RETURN;
    END IF;
    UPDATE {schema}.sessions s SET run_fence = p_run
     WHERE s.app_name = p_app AND s.user_id = p_user AND s.id = p_session;
    RETURN QUERY SELECT 'granted'::text, stopped;
END
$$;

-- Tenancy (V5): a tenant sees and claims only the runs of its own sessions.
DROP POLICY IF EXISTS tenant_rows ON {schema}.session_runs;
CREATE POLICY tenant_rows ON {schema}.session_runs
    USING ({schema}.adk_postgres_tenant_sees(current_user, app_name, user_id))
    WITH CHECK ({schema}.adk_postgres_tenant_sees(current_user, app_name, user_id));
