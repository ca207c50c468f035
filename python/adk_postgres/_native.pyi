"""Type stubs for the Rust extension ``adk_postgres._native`` (rust/python/src): the whole
native surface. ``Database`` is one pool on one schema; each service class is built from one
and shares its pool. Every I/O method returns an awaitable resolved on the calling event loop.
"""

from collections.abc import Awaitable, Callable, Iterable
from os import PathLike
from pathlib import Path
from typing import Literal

SCHEMA_VERSION: int
#: Most appends one coalesced flight carries (rust/core/src/sessions/coalesce.rs).
COALESCE_MAX_BATCH: int

def json_nesting_depth(data: bytes) -> int: ...

# Untracks decoded events (and the models, dicts, lists, sets they are made of) from the cyclic
# GC: the warm-read cache's events would otherwise lengthen every full collection (gc.rs).
def untrack_tree(roots: Iterable[object]) -> int: ...
def check_schema_name(name: str) -> None: ...
def _conversation_list_sql(schema: str, archived: bool) -> str: ...
def _append_sql(schema: str) -> str: ...

# For the test suite: a call whose Rust future ("run") or result conversion ("convert")
# panics; the awaitable raises InternalError.
def _panicking_call(stage: Literal["run", "convert"]) -> Awaitable[None]: ...

class Bridge:
    """One asyncio loop's end of the result channel (rust/python/src/runtime.rs); made and
    registered by adk_postgres._bridge."""

    def __init__(self) -> None: ...
    @property
    def fd(self) -> int: ...
    def drain(self) -> None: ...
    def in_flight(self) -> int: ...

__version__: str

AppendOutcome = Literal["appended", "already_stored", "stale", "not_found", "fenced"]
ClaimStatus = Literal["granted", "waiting", "busy", "lost", "no_session"]
# (app_name, user_id, session_id)
SessionKey = tuple[str, str, str]
# (app_name, user_id, session_id, filename); session_id "" for user-scoped artifacts
ArtifactKey = tuple[str, str, str, str]

# (state, revision, last_update_time, app_state, user_state, events, incarnation, unsequenced,
#  head: id of the event stored at revision if returned, anchor: get_session_since only, id of
#  the event stored at the revision asked for)
SessionRow = tuple[
    bytes, int, float, bytes | None, bytes | None, list[bytes], int, bool, str | None, str | None
]

class Database:
    """A pooled PostgreSQL connection on one schema. Construction does not connect."""

    def __init__(
        self,
        url: str,
        *,
        schema: str,
        pool_size: int,
        connect_timeout: float,
        acquire_timeout: float,
        statement_cache: bool,
        application_name: str | None,
        coalesce_appends: bool = True,
        failover_timeout: float = 0.0,
        response_timeout: float | None = None,
        read_url: str | None = None,
        # Called on a worker thread before each new connection; returns the password.
        password: Callable[[], str] | None = None,
    ) -> None: ...
    def describe(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def close(self) -> None: ...
    def check_process(self) -> None: ...
    def pool_status(self) -> dict[str, int]: ...
    def migrate(self) -> Awaitable[int]: ...

class Sessions:
    """Session operations on a Database's pool (one per Database: they share the queue that
    coalesces appends)."""

    def __init__(self, database: Database) -> None: ...
    def create_session(
        self,
        key: SessionKey,
        state: bytes,
        app_delta: bytes | None,
        user_delta: bytes | None,
        create_time: float,
    ) -> Awaitable[tuple[int, int, bytes | None, bytes | None] | None]: ...
    # (revision, incarnation, app_state, user_state) or None when the id is taken
    def get_session(
        self,
        key: SessionKey,
        after_timestamp: float | None = None,
        num_recent_events: int | None = None,
    ) -> Awaitable[SessionRow | None]: ...
    def get_session_since(self, key: SessionKey, revision: int) -> Awaitable[SessionRow | None]: ...
    def list_sessions(
        self, app_name: str, user_id: str | None = None
    ) -> Awaitable[
        tuple[bytes | None, list[tuple[str, bytes]], list[tuple[str, str, bytes, int, float, int]]]
    ]: ...
    def list_sessions_page(
        self,
        app_name: str,
        user_id: str | None,
        after: tuple[float, str, str] | None,
        limit: int,
    ) -> Awaitable[
        tuple[bytes | None, list[tuple[str, bytes]], list[tuple[str, str, bytes, int, float, int]]]
    ]: ...
    # as list_sessions; `after` is (last_update, user_id, session_id) of the previous page's last
    def delete_session(self, key: SessionKey) -> Awaitable[bool]: ...
    def append_event(
        self,
        key: SessionKey,
        expected_revision: int,
        incarnation: int | None,
        event_id: str,
        invocation_id: str,
        timestamp: float,
        event_json: bytes,
        session_delta: bytes | None,
        app_delta: bytes | None,
        user_delta: bytes | None,
        fence: int | None = None,
        # With fence: the run's first event; its invocation id is recorded as the run's.
        note_invocation: bool = False,
    ) -> Awaitable[tuple[AppendOutcome, int | None]]: ...
    # fence: the caller's run id when it holds the session's run lease (see runs.py)
    def claim_run(
        self, key: SessionKey, run_id: int, new: bool, mode: str, expiry_ms: int
    ) -> Awaitable[tuple[ClaimStatus, str | None]]: ...
    # (status, the invocation id an "interrupt" claim stopped)
    def heartbeat_run(
        self, key: SessionKey, run_id: int, invocation_id: str | None = None
    ) -> Awaitable[bool]: ...
    # False: the run is no longer queued (it lost the session)
    def release_run(self, key: SessionKey, run_id: int) -> Awaitable[None]: ...
    def write_transferred_session(
        self,
        key: SessionKey,
        state: bytes,
        create_time: float,
        update_time: float,
        events: list[tuple[str, str, float, bytes]],
        app_state: bytes | None = None,
        user_state: bytes | None = None,
    ) -> Awaitable[tuple[bool, int, int, bool]]: ...
    def session_revision(
        self, key: SessionKey
    ) -> Awaitable[tuple[int, float, int, str | None] | None]: ...
    def get_user_state(self, app_name: str, user_id: str) -> Awaitable[bytes | None]: ...

# (version, part_json, payload_kind, content, sha256, size, storage): content None → read it with
# read_content(sha256, size, storage) (large), or it is gone (size -1).
LoadedArtifact = tuple[int, bytes, int, bytes | None, bytes | None, int, str | None]
# (version, mime_type, custom_metadata_json, create_time)
ArtifactVersionRow = tuple[int, str | None, bytes | None, float]

class Artifacts:
    """Artifact operations on a Database's pool; payloads in PostgreSQL or in ``content_dir``."""

    def __init__(
        self, database: Database, content_dir: str | PathLike[str] | None = None
    ) -> None: ...
    @property
    def content_dir(self) -> Path | None: ...
    def save(
        self,
        key: ArtifactKey,
        payload: bytes | None,
        part_json: bytes,
        payload_kind: int,
        mime_type: str | None,
        custom_metadata: bytes | None,
        create_time: float,
    ) -> Awaitable[int]: ...
    def load(
        self, key: ArtifactKey, version: int | None = None
    ) -> Awaitable[LoadedArtifact | None]: ...
    def read_content(self, sha256: bytes, size: int, storage: str) -> Awaitable[bytes | None]: ...
    def list_versions(self, key: ArtifactKey) -> Awaitable[list[ArtifactVersionRow]]: ...
    def get_version(
        self, key: ArtifactKey, version: int | None = None
    ) -> Awaitable[ArtifactVersionRow | None]: ...
    def list_keys(
        self, app_name: str, user_id: str, session_id: str | None = None
    ) -> Awaitable[list[str]]: ...
    def delete(self, key: ArtifactKey) -> Awaitable[bool]: ...
    def collect_garbage(self, grace_s: float = 3600.0) -> Awaitable[int]: ...

# (memory_id, session_id, author, event_ts, timestamp_text, content, metadata, search_text)
MemoryEntryRow = tuple[
    str, str | None, str | None, float | None, str | None, bytes, bytes | None, str
]
# (memory_id, session_id, author, event_ts, timestamp_text, content_json, metadata_json, score)
MemoryHitRow = tuple[
    str, str | None, str | None, float | None, str | None, bytes, bytes | None, float
]

class Memory:
    """Memory operations on a Database's pool: upsert, delete, ranked search."""

    def __init__(
        self,
        database: Database,
        text_search_config: str = "english",
        trigram: bool = True,
        vector: bool = False,
    ) -> None: ...
    # {"trigram_schema": str | None, "vector_schema": str | None, "embedding_column": bool,
    #  "notes": list[str]}
    def capabilities(self) -> Awaitable[dict[str, object]]: ...
    def upsert(
        self,
        app_name: str,
        user_id: str,
        entries: list[MemoryEntryRow],
        replace_session: str | None = None,
        from_events: bool = True,
        embedding_dim: int | None = None,
    ) -> Awaitable[list[str]]: ...
    def set_embeddings(
        self,
        app_name: str,
        user_id: str,
        ids: list[str],
        texts: list[str],
        dim: int,
        vectors: bytes,
    ) -> Awaitable[int]: ...
    def delete(self, app_name: str, user_id: str, memory_id: str) -> Awaitable[bool]: ...
    def search(
        self,
        app_name: str,
        user_id: str,
        text: str,
        strict: bool,
        words: list[str],
        limit: int,
        min_score: float,
        vector: bytes | None = None,
    ) -> Awaitable[list[MemoryHitRow]]: ...

# --- A2A (rust/python/src/a2a.rs): tasks and push configs are the a2a-sdk's serialized
# protobuf messages; adk_postgres.a2a turns them into its types.

class A2a:
    """A2A tasks, push-notification configs and feedback on a Database's pool."""

    def __init__(self, database: Database) -> None: ...
    # (True, version, None) when written; (False, version, stored_bytes) when the stored task
    # is not at `expected_version`; (False, None, None) when it was deleted meanwhile.
    def save_task(
        self,
        owner: str,
        task_id: str,
        context_id: str,
        state: str,
        status_ts_ns: int | None,
        task: bytes,
        expected_version: int | None,
    ) -> Awaitable[tuple[bool, int | None, bytes | None]]: ...
    # (version, task_bytes) or None.
    def get_task(self, owner: str, task_id: str) -> Awaitable[tuple[int, bytes] | None]: ...
    # (total matching, [(status_ts_ns, task_id, task_bytes)]) in ListTasks order, after the
    # cursor (status_ts_ns, task_id) when given.
    def list_tasks(
        self,
        owner: str,
        context_id: str | None,
        state: str | None,
        status_after_ns: int | None,
        cursor: tuple[int | None, str] | None,
        limit: int,
    ) -> Awaitable[tuple[int, list[tuple[int | None, str, bytes]]]]: ...
    def delete_task(self, owner: str, task_id: str) -> Awaitable[bool]: ...
    def delete_context(self, context_id: str, owner: str | None = None) -> Awaitable[int]: ...
    def set_push_config(
        self, owner: str, task_id: str, config_id: str, config: bytes
    ) -> Awaitable[None]: ...
    def push_configs(self, owner: str, task_id: str) -> Awaitable[list[bytes]]: ...
    def push_configs_for_dispatch(self, task_id: str) -> Awaitable[list[bytes]]: ...
    def delete_push_configs(
        self, owner: str, task_id: str, config_id: str | None = None
    ) -> Awaitable[int]: ...
    # created_at (epoch seconds), or None when the owner has no such task.
    def add_feedback(
        self,
        feedback_id: str,
        owner: str,
        task_id: str,
        rating: int,
        text: str | None = None,
        metadata: bytes | None = None,
    ) -> Awaitable[float | None]: ...
    # [(feedback_id, rating, text, metadata_json, created_at)], oldest first.
    def list_feedback(
        self, owner: str, task_id: str, after: str | None, limit: int
    ) -> Awaitable[list[tuple[str, int, str | None, bytes | None, float]]]: ...

# --- Operations (rust/python/src/admin.rs): plain dicts, turned into dataclasses by
# adk_postgres.admin.

# (session_id, key, title, first_text, last_text, message_count, created_at, archived_at)
ConversationRow = tuple[str, float, str | None, str | None, str | None, int, float, float | None]
# (session_id, event_id, timestamp, rank, author, snippet)
SearchHitRow = tuple[str, str, float, float, str | None, str]

class Conversations:
    """Conversation listings, titles, archive, search and state queries on a Database's pool."""

    def __init__(self, database: Database) -> None: ...
    def now(self) -> Awaitable[float]: ...
    def list(
        self,
        app_name: str,
        user_id: str,
        archived: bool,
        t0: float,
        after: tuple[float, str] | None,
        limit: int,
    ) -> Awaitable[list[ConversationRow]]: ...
    def set_title(
        self, app_name: str, user_id: str, session_id: str, title: str | None
    ) -> Awaitable[bool]: ...
    def set_archived(
        self, app_name: str, user_id: str, session_id: str, archived: bool
    ) -> Awaitable[bool]: ...
    def search(
        self,
        app_name: str,
        user_id: str,
        query: str,
        language: str,
        after: tuple[float, float, str, str] | None,
        limit: int,
        include_archived: bool,
    ) -> Awaitable[list[SearchHitRow]]: ...
    def find_by_state(
        self,
        app_name: str,
        user_id: str | None,
        contains: bytes,
        after: tuple[float, str, str] | None,
        limit: int,
    ) -> Awaitable[list[tuple[str, str, float]]]: ...
    # language: the search index for it; None: the state index
    def create_index(self, language: str | None = None) -> Awaitable[None]: ...
    def drop_index(self, language: str | None = None) -> Awaitable[bool]: ...
    def indexes(self) -> Awaitable[list[str]]: ...

class BackupReader:
    """A read-only snapshot of the backup tables, read a batch at a time."""

    # (table, [row as JSON bytes]) or None when every table was read.
    def next_batch(self) -> Awaitable[tuple[str, list[bytes]] | None]: ...
    def close(self) -> Awaitable[None]: ...

class Admin:
    """Migration status, doctor, stats and prune on a Database's pool and schema."""

    def __init__(self, database: Database) -> None: ...
    # {"schema", "current", "latest", "applied": [(version, name, applied_at)],
    #  "pending": [(version, name)]}
    def migration_status(self) -> Awaitable[dict[str, object]]: ...
    # {"target", "checks": [(name, status, detail, advice)], "connect_ms", "round_trip_ms",
    #  "server_version", "user", "superuser", "tls", "extensions": [(name, available,
    #  installed, schema)], "pool", "migrations", "can_create"}
    def doctor(self) -> Awaitable[dict[str, object]]: ...
    # A snapshot of the backup tables of `groups` ("sessions", "artifacts", "memory",
    # "tenancy"), of one app when given.
    def open_backup(
        self, groups: list[str], app_name: str | None = None
    ) -> Awaitable[BackupReader]: ...
    # Inserts backed-up rows (JSON objects) of `table` in one transaction; returns the new ones.
    def restore_rows(self, table: str, rows: list[bytes]) -> Awaitable[int]: ...
    # {"apps": [(app, users, sessions, events, files, versions, bytes, memories)], "totals",
    #  "artifact_contents", "stored_contents", "stored_content_bytes",
    #  "a2a_tasks": [(state, count)], "a2a_feedback",
    #  "tables": [(name, bytes, rows_estimate or None)]}
    def stats(self, app_name: str | None = None) -> Awaitable[dict[str, object]]: ...
    # {"dry_run", "cutoff", "apps": [(app, sessions, session_events, events, files, versions)],
    #  "contents", "content_bytes", "files", "files_queued", "batches", "tasks_cutoff",
    #  "tasks", "task_feedback"}
    def prune(
        self,
        *,
        app_name: str | None = None,
        idle_for: float | None = None,
        keep_events: int | None = None,
        orphaned_artifacts: bool = False,
        content_dir: str | None = None,
        file_grace: float = 3600.0,
        tasks_finished_before: float | None = None,
        dry_run: bool = False,
        batch_size: int = 1000,
    ) -> Awaitable[dict[str, object]]: ...

class Agents:
    """The agent registry (versioned ADK agent configs) on a Database's pool."""

    def __init__(self, database: Database) -> None: ...
    # The new version (1 for a new agent); concurrent puts get distinct versions. None when
    # `mode` refused: "create" and the agent exists, "update" and it does not ("any": either).
    def put(self, name: str, yaml: str, mode: str = "any") -> Awaitable[int | None]: ...
    # [(name, current_version, archived_at, usage_count, last_used_at, created_at,
    # updated_at)] by name; times are epoch seconds.
    def list(
        self, include_archived: bool
    ) -> Awaitable[list[tuple[str, int, float | None, int, float | None, float, float]]]: ...
    # (agent row as in `list`, version, yaml, version created_at) or None; version None: the
    # current one.
    def show(
        self, name: str, version: int | None = None
    ) -> Awaitable[
        tuple[tuple[str, int, float | None, int, float | None, float, float], int, str, float]
        | None
    ]: ...
    # [(version, created_at, size_in_bytes)], newest first; [] for an unknown agent.
    def history(self, name: str) -> Awaitable[list[tuple[int, float, int]]]: ...
    # False: no such agent.
    def archive(self, name: str) -> Awaitable[bool]: ...
    def restore(self, name: str) -> Awaitable[bool]: ...
    # (current version, archived, yaml) or None; yaml None when the current version is
    # `known` or the agent is archived.
    def current(
        self, name: str, known: int | None = None
    ) -> Awaitable[tuple[int, bool, str | None] | None]: ...
    # Adds uses[i] to names[i]'s usage count; returns how many agents were updated.
    def record_usage(self, names: list[str], uses: list[int]) -> Awaitable[int]: ...

class Tenancy:
    """Row-level security switches and tenant grants on a Database's pool."""

    def __init__(self, database: Database) -> None: ...
    def set_row_level_security(self, enabled: bool) -> Awaitable[None]: ...
    def row_level_security(self) -> Awaitable[bool]: ...
    def grant(self, role: str, app_name: str, user_id: str | None = None) -> Awaitable[None]: ...
    def revoke(self, role: str, app_name: str, user_id: str | None = None) -> Awaitable[bool]: ...
    def list(self) -> Awaitable[list[tuple[str, str, str | None]]]: ...
