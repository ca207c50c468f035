-- ADK DatabaseSessionService schema v1, exactly as ADK 2.13 creates it on PostgreSQL, so that
-- ADK's own service can keep using these tables. IF NOT EXISTS: an existing ADK database is
-- adopted as it is. {schema} is replaced by the quoted schema name.
CREATE TABLE IF NOT EXISTS {schema}.adk_internal_metadata (
    key   varchar(128) NOT NULL PRIMARY KEY,
    value varchar(256) NOT NULL
);

CREATE TABLE IF NOT EXISTS {schema}.sessions (
    app_name    varchar(128) NOT NULL,
    user_id     varchar(128) NOT NULL,
    id          varchar(128) NOT NULL,
    state       jsonb        NOT NULL,
    create_time timestamp    NOT NULL,
    update_time timestamp    NOT NULL,
    PRIMARY KEY (app_name, user_id, id)
);

CREATE TABLE IF NOT EXISTS {schema}.events (
    id            varchar(128) NOT NULL,
    app_name      varchar(128) NOT NULL,
    user_id       varchar(128) NOT NULL,
    session_id    varchar(128) NOT NULL,
    invocation_id varchar(256) NOT NULL,
    "timestamp"   timestamp    NOT NULL,
    event_data    jsonb,
    PRIMARY KEY (id, app_name, user_id, session_id),
    FOREIGN KEY (app_name, user_id, session_id)
        REFERENCES {schema}.sessions (app_name, user_id, id) ON DELETE CASCADE
);

CREATE INDEX IF NOT EXISTS idx_events_app_user_session_ts_id
    ON {schema}.events (app_name, user_id, session_id, "timestamp" DESC, id DESC);

CREATE TABLE IF NOT EXISTS {schema}.app_states (
    app_name    varchar(128) NOT NULL PRIMARY KEY,
    state       jsonb        NOT NULL,
    update_time timestamp    NOT NULL
);

CREATE TABLE IF NOT EXISTS {schema}.user_states (
    app_name    varchar(128) NOT NULL,
    user_id     varchar(128) NOT NULL,
    state       jsonb        NOT NULL,
    update_time timestamp    NOT NULL,
    PRIMARY KEY (app_name, user_id)
);

-- ADK reads this to pick its JSON (v1) schema; we never change it.
INSERT INTO {schema}.adk_internal_metadata (key, value) VALUES ('schema_version', '1')
    ON CONFLICT (key) DO NOTHING;
