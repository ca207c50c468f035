-- A2A (Agent2Agent) tasks, their push-notification configs and feedback on them; see
-- python/adk_postgres/a2a.py (the a2a-sdk TaskStore and PushNotificationConfigStore).
--
-- a2a_tasks holds one row per task and owner (the a2a-sdk scopes tasks by the owner its
--   OwnerResolver names; the in-memory store does the same). The task itself is the a2a-sdk's
--   protobuf `Task`, serialized, as bytes; the columns beside it are what queries filter and
--   sort on, copied from it when it is saved: context id, state (the TaskState name, such as
--   TASK_STATE_COMPLETED), the status timestamp in nanoseconds since the epoch (the SDK's
--   list order and page cursors use nanoseconds; NULL when the status has none).
--   `version` counts saves: a save names the version it merged with and is refused if
--   another process saved in between (then it merges again), so no save is lost.
CREATE TABLE IF NOT EXISTS {schema}.a2a_tasks (
    owner         text        NOT NULL,
    task_id       text        COLLATE "C" NOT NULL,
    context_id    text        NOT NULL,
    state         text        NOT NULL,
    status_ts_ns  bigint,
    version       bigint      NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    task          bytea       NOT NULL,
    PRIMARY KEY (owner, task_id)
);

-- ListTasks order: status time newest first (tasks without one last), then id descending
-- (ids compare by code point, COLLATE "C", as the SDK's in-memory store compares them).
CREATE INDEX IF NOT EXISTS a2a_tasks_by_time
    ON {schema}.a2a_tasks (owner, status_ts_ns DESC NULLS LAST, task_id DESC);
-- A context's tasks (context first: the same index finds a context's tasks of every owner,
-- for deleting an ADK session's tasks). Every index costs each save an insert (a save changes
-- the status time, so it is never a HOT update): keep them few.
CREATE INDEX IF NOT EXISTS a2a_tasks_by_context
    ON {schema}.a2a_tasks (context_id, owner, status_ts_ns DESC NULLS LAST, task_id DESC);
-- `prune --tasks-finished-before` (only finished tasks are in it).
CREATE INDEX IF NOT EXISTS a2a_tasks_finished
    ON {schema}.a2a_tasks (updated_at)
    WHERE state IN ('TASK_STATE_COMPLETED', 'TASK_STATE_FAILED', 'TASK_STATE_CANCELED',
                    'TASK_STATE_REJECTED');

-- Push-notification (webhook) configs: the SDK's TaskPushNotificationConfig, serialized.
-- Not tied to a task row: the SDK may register a config before the task is first saved, and
-- deleting a task does not delete its configs (the SDK's stores are independent).
CREATE TABLE IF NOT EXISTS {schema}.a2a_push_configs (
    owner       text        NOT NULL,
    task_id     text        NOT NULL,
    config_id   text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    config      bytea       NOT NULL,
    PRIMARY KEY (owner, task_id, config_id)
);
-- Dispatch reads every owner's configs of a task.
CREATE INDEX IF NOT EXISTS a2a_push_configs_task ON {schema}.a2a_push_configs (task_id);

-- Feedback on a task: a rating 1-5, optional text and JSON metadata. Goes with its task.
-- The id is a random UUID made by the client (not a sequence), so a backup restores it as it
-- was and restoring twice adds nothing.
CREATE TABLE IF NOT EXISTS {schema}.a2a_task_feedback (
    feedback_id  text        COLLATE "C" PRIMARY KEY,
    owner        text        NOT NULL,
    task_id      text        NOT NULL,
    rating       smallint    NOT NULL CHECK (rating BETWEEN 1 AND 5),
    text         text,
    metadata     jsonb,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    FOREIGN KEY (owner, task_id) REFERENCES {schema}.a2a_tasks (owner, task_id)
        ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS a2a_task_feedback_task
    ON {schema}.a2a_task_feedback (owner, task_id, created_at, feedback_id);
