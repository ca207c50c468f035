-- The agent registry: versioned ADK agent configs (YAML), served by `adk-postgres web` and
-- `api_server` next to the agents directory; see python/adk_postgres/agent_registry.py.
--
-- agents holds one row per agent name (not per app: the name is the app name ADK serves it
--   under). `current_version` is the newest version; a put takes this row's lock (INSERT …
--   ON CONFLICT DO UPDATE) to make it current_version + 1, so puts from any number of
--   processes get distinct, gapless versions. An archived agent (`archived_at` set) keeps its
--   versions but is not served; restoring clears it. `usage_count` and `last_used_at` are
--   updated by the servers in batches, off the request path.
CREATE TABLE IF NOT EXISTS {schema}.agents (
    name             varchar(128) COLLATE "C" PRIMARY KEY,
    current_version  integer      NOT NULL CHECK (current_version >= 1),
    archived_at      timestamptz,
    usage_count      bigint       NOT NULL DEFAULT 0,
    last_used_at     timestamptz,
    created_at       timestamptz  NOT NULL DEFAULT clock_timestamp(),
    updated_at       timestamptz  NOT NULL DEFAULT clock_timestamp()
);

-- Every version of every agent, never changed once written.
CREATE TABLE IF NOT EXISTS {schema}.agent_versions (
    name        varchar(128) COLLATE "C" NOT NULL
                REFERENCES {schema}.agents (name) ON DELETE CASCADE,
    version     integer      NOT NULL CHECK (version >= 1),
    yaml        text         NOT NULL,
    created_at  timestamptz  NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (name, version)
);
