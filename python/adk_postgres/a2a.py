"""A2A (Agent2Agent) tasks in PostgreSQL: the a2a-sdk's `TaskStore` and
`PushNotificationConfigStore` on the Rust core, plus feedback on tasks.

ADK serves agents over A2A with the a2a-sdk (``pip install 'adk-postgres[a2a]'``, which brings
``google-adk[a2a]`` and a2a-sdk 1.x). Its stores keep tasks in memory or, with SQLAlchemy, as
JSON columns; these keep them in the adk-postgres schema on the same pool as the other
services (``database=``), migrated by the same runner (V9).

Storage: a task is the SDK's protobuf ``Task``; it is stored as its serialized bytes
(``SerializeToString``, done by protobuf's C implementation, about 3 µs for a task with a
20-message history, where JSON conversion takes 150-400 µs), with the fields queries need —
context id, state, status time — in columns beside it.

Concurrent saves of one task (two server processes working on it) never lose anything: every
row has a version; a save names the version it is based on and, if another process saved in
between, merges with what is stored and tries again. The merge rule (`merge_tasks`):

* history: the stored messages in their order, then the saved task's messages that are not
  among them (by ``message_id``; by content when a message has none);
* artifacts: by ``artifact_id``: a saved artifact replaces the stored one with its id, others
  stay; new ones are added at the end;
* status: the saved status, unless both have a timestamp and the stored one is later (a newer
  status change that this writer had not seen wins);
* metadata: the union of keys, the saved task's values winning.

So history and artifacts only grow (or an artifact is replaced by id): the SDK never removes
them. Within one process the last version written or read is remembered (a bounded LRU), so
a save is one round trip unless another process wrote in between.

Owners: tasks and push configs are scoped by the owner the SDK's ``OwnerResolver`` names
(default: the authenticated user's name, ``""`` when unauthenticated), as its own stores
scope them. Contexts: a task's ``context_id`` is the ADK session its executor runs in;
`list_context_tasks` pages through a context's tasks and `delete_context` removes them.
Deleting an ADK session does not delete its tasks (A2A clients may still ask for them); call
`delete_context` with the session id, or let ``adk-postgres prune --tasks-finished-before``
remove finished ones.
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

try:
    from a2a.server.context import ServerCallContext
    from a2a.server.owner_resolver import OwnerResolver, resolve_user_scope
    from a2a.server.tasks.push_notification_config_store import (
        PushNotificationConfigStore,
        normalize_push_notification_config,
    )
    from a2a.server.tasks.task_store import TaskStore
    from a2a.types import a2a_pb2
    from a2a.utils.constants import DEFAULT_LIST_TASKS_PAGE_SIZE
    from a2a.utils.errors import InvalidParamsError
    from a2a.utils.task import (
        ListTasksCursor,
        decode_list_tasks_cursor,
        decode_page_token,
        encode_list_tasks_cursor,
    )
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "adk_postgres.a2a needs a2a-sdk 1.x: pip install 'adk-postgres[a2a]'"
    ) from exc
from google.protobuf.message import DecodeError

from ._keys import check_text
from ._native import A2a
from ._service_base import DatabaseBacked
from .database import Database
from .errors import DataError, NotFoundError, SerializationFailure
from .telemetry import traced

Task = a2a_pb2.Task
TaskPushNotificationConfig = a2a_pb2.TaskPushNotificationConfig

#: Task, context, config ids and owners longer than this are refused (A2A ids are UUIDs).
MAX_ID_LENGTH = 1024
#: Feedback text longer than this (characters) is refused.
MAX_FEEDBACK_TEXT = 65_536
#: Tasks whose last written or read version this process remembers (per store).
VERSION_CACHE_SIZE = 1024
#: Saves that found the task changed by another process, merged and tried again, before
#: giving up with `SerializationFailure` (only under a storm of writers on one task).
MAX_SAVE_ATTEMPTS = 50
#: The states after which a task never changes (what `prune --tasks-finished-before` removes).
FINISHED_STATES = frozenset(
    {"TASK_STATE_COMPLETED", "TASK_STATE_FAILED", "TASK_STATE_CANCELED", "TASK_STATE_REJECTED"}
)


class TaskNotFoundError(NotFoundError):
    """No task with this id for this owner."""


def _check_id(name: str, value: object, *, allow_empty: bool = False) -> str:
    check_text(name, value, max_length=MAX_ID_LENGTH)
    assert isinstance(value, str)
    if not value and not allow_empty:
        raise DataError(f"{name} must not be empty")
    return value


def _owner(resolver: OwnerResolver, context: ServerCallContext | None) -> str:
    owner = resolver(context if context is not None else ServerCallContext())
    return _check_id("owner", owner, allow_empty=True)


def _status_ns(task: Any) -> int | None:
    status = task.status
    if task.HasField("status") and status.HasField("timestamp"):
        return int(status.timestamp.ToNanoseconds())
    return None


def _message_key(message: Any) -> str | bytes:
    return message.message_id or message.SerializeToString(deterministic=True)


def _artifact_key(artifact: Any) -> str | bytes:
    return artifact.artifact_id or artifact.SerializeToString(deterministic=True)


def merge_tasks(stored: Any, saved: Any) -> Any:
    """The task to store when `saved` is saved over `stored` (see the module docstring)."""
    if stored.context_id != saved.context_id:
        raise DataError(
            f"task {saved.id!r} belongs to context {stored.context_id!r}; a save cannot move "
            f"it to {saved.context_id!r}"
        )
    stored_ns, saved_ns = _status_ns(stored), _status_ns(saved)
    stored_status_wins = stored_ns is not None and saved_ns is not None and stored_ns > saved_ns
    if not stored_status_wins and _extends(stored, saved):
        return saved  # the usual save: the stored task plus what this writer added
    merged = Task()
    merged.CopyFrom(saved)
    if stored_status_wins:
        merged.status.CopyFrom(stored.status)

    seen = {_message_key(m) for m in stored.history}
    history = list(stored.history)
    for message in saved.history:
        key = _message_key(message)
        if key not in seen:
            seen.add(key)
            history.append(message)
    del merged.history[:]
    merged.history.extend(history)

    saved_artifacts = {_artifact_key(a): a for a in saved.artifacts}
    artifacts = [saved_artifacts.pop(_artifact_key(a), a) for a in stored.artifacts]
    artifacts.extend(saved_artifacts.values())
    del merged.artifacts[:]
    merged.artifacts.extend(artifacts)

    if stored.metadata.fields:  # (else `merged` has the saved metadata, and its presence)
        merged.metadata.CopyFrom(stored.metadata)
        for key, value in saved.metadata.fields.items():
            merged.metadata.fields[key].CopyFrom(value)
    return merged


def _state_name(task: Any) -> str:
    try:
        return str(a2a_pb2.TaskState.Name(task.status.state))
    except ValueError as exc:
        raise DataError(f"task {task.id!r} has an unknown state {task.status.state}") from exc


def _extends(stored: Any, saved: Any) -> bool:
    """`saved` already holds everything of `stored` the merge keeps: its messages first and in
    order, its artifacts (by id, in order) and its metadata keys. Then merging gives `saved`."""
    stored_ids = [m.message_id for m in stored.history]
    if not all(stored_ids) or [m.message_id for m in saved.history[: len(stored_ids)]] != (
        stored_ids
    ):
        return False
    stored_artifacts = [a.artifact_id for a in stored.artifacts]
    if (
        not all(stored_artifacts)
        or [a.artifact_id for a in saved.artifacts[: len(stored_artifacts)]] != stored_artifacts
    ):
        return False
    return set(stored.metadata.fields).issubset(saved.metadata.fields)


def _parse(message_type: Any, what: str, data: bytes) -> Any:
    """A stored message read back; `DataError` naming ``what`` if its bytes do not decode."""
    message = message_type()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise DataError(f"a stored {what} could not be decoded: {exc}") from exc
    return message


def _parse_task(data: bytes) -> Any:
    return _parse(Task, "task", data)


def _page_size(params: Any) -> int:
    size = params.page_size or DEFAULT_LIST_TASKS_PAGE_SIZE
    if size < 1:
        raise InvalidParamsError(f"page_size must be positive, not {size}")
    return int(size)


class _A2aBacked(DatabaseBacked):
    """What both stores share: the pool (``"postgresql://…"`` opens one, ``database=`` shares
    one with the other services), the SDK's ``owner_resolver`` (default: the user's name) and
    the native handle, made on first use."""

    def __init__(
        self,
        uri: str | None = None,
        *,
        database: Database | None = None,
        owner_resolver: OwnerResolver = resolve_user_scope,
        **options: Any,
    ) -> None:
        self._attach_database(uri, database, options)
        self.owner_resolver = owner_resolver
        self._native: A2a | None = None

    async def _store(self) -> A2a:
        if self._native is None:
            self._native = A2a(await self._database.store())
        return self._native


class PostgresTaskStore(_A2aBacked, TaskStore):
    """The a2a-sdk's `TaskStore` on PostgreSQL (constructor: see `_A2aBacked`)."""

    def __init__(self, uri: str | None = None, **kwargs: Any) -> None:
        super().__init__(uri, **kwargs)
        # (owner, task id) → (version, bytes) last written or read by this store.
        self._versions: OrderedDict[tuple[str, str], tuple[int, bytes]] = OrderedDict()

    def _remember(self, key: tuple[str, str], version: int, data: bytes) -> None:
        self._versions[key] = (version, data)
        self._versions.move_to_end(key)
        while len(self._versions) > VERSION_CACHE_SIZE:
            self._versions.popitem(last=False)

    @traced("a2a")
    async def save(self, task: Any, context: ServerCallContext | None = None) -> None:
        """Saves a task (merging with concurrent saves; see the module docstring)."""
        if not isinstance(task, Task):
            raise DataError(f"task must be an a2a Task, got {type(task).__name__}")
        owner = _owner(self.owner_resolver, context)
        task_id = _check_id("task id", task.id)
        context_id = _check_id("context id", task.context_id, allow_empty=True)
        _state_name(task)
        key = (owner, task_id)
        native = await self._store()
        base = self._versions.get(key)
        for _ in range(MAX_SAVE_ATTEMPTS):
            if base is None:
                merged, expected = task, None
            else:
                merged, expected = merge_tasks(_parse_task(base[1]), task), base[0]
            data = merged.SerializeToString()
            saved, version, current = await native.save_task(
                owner,
                task_id,
                context_id,
                _state_name(merged),
                _status_ns(merged),
                data,
                expected,
            )
            if saved:
                assert version is not None
                self._remember(key, version, data)
                return
            # Another process saved (or deleted) the task since `base`: merge with it.
            base = None if current is None or version is None else (version, current)
        self._versions.pop(key, None)
        raise SerializationFailure(
            f"task {task_id!r} changed under {MAX_SAVE_ATTEMPTS} saves in a row; try again"
        )

    @traced("a2a")
    async def get(self, task_id: str, context: ServerCallContext | None = None) -> Any | None:
        owner = _owner(self.owner_resolver, context)
        _check_id("task id", task_id, allow_empty=True)
        found = await (await self._store()).get_task(owner, task_id)
        if found is None:
            self._versions.pop((owner, task_id), None)
            return None
        version, data = found
        self._remember((owner, task_id), version, data)
        return _parse_task(data)

    @traced("a2a")
    async def list(self, params: Any, context: ServerCallContext | None = None) -> Any:
        """ListTasks with the SDK's order (status time newest first, then id) and cursors."""
        owner = _owner(self.owner_resolver, context)
        context_id = params.context_id or None
        if context_id is not None:
            _check_id("context id", context_id)
        state = a2a_pb2.TaskState.Name(params.status) if params.status else None
        after = (
            int(params.status_timestamp_after.ToNanoseconds())
            if params.HasField("status_timestamp_after")
            else None
        )
        size = _page_size(params)
        native = await self._store()
        cursor = await self._cursor(native, owner, params.page_token)
        try:
            total, rows = await native.list_tasks(owner, context_id, state, after, cursor, size + 1)
        except OverflowError as exc:
            raise InvalidParamsError("page token or timestamp out of range") from exc
        page = rows[:size]
        next_token = None
        if len(rows) > size:
            ts, last_id, _ = page[-1]
            next_token = encode_list_tasks_cursor(ListTasksCursor(timestamp_ns=ts, task_id=last_id))
        return a2a_pb2.ListTasksResponse(
            tasks=[_parse_task(data) for _, _, data in page],
            next_page_token=next_token,
            total_size=total,
            page_size=size,
        )

    async def _cursor(
        self, native: A2a, owner: str, page_token: str
    ) -> tuple[int | None, str] | None:
        if not page_token:
            return None
        cursor = decode_list_tasks_cursor(page_token)
        if cursor is not None:
            if "\x00" in cursor.task_id:
                raise InvalidParamsError("Invalid page token")
            return cursor.timestamp_ns, cursor.task_id
        # A legacy token names the first task of the page: start at it (ids are compared by
        # code point, and no id lies between it and it + "\x01").
        first_id = decode_page_token(page_token)
        if not first_id or "\x00" in first_id or len(first_id) > MAX_ID_LENGTH:
            raise InvalidParamsError(f"Invalid page token: {page_token}")
        found = await native.get_task(owner, first_id)
        if found is None:
            raise InvalidParamsError(f"Invalid page token: {page_token}")
        return _status_ns(_parse_task(found[1])), first_id + "\x01"

    @traced("a2a")
    async def delete(self, task_id: str, context: ServerCallContext | None = None) -> None:
        """Deletes a task and its feedback (nothing happens if there is none)."""
        owner = _owner(self.owner_resolver, context)
        _check_id("task id", task_id, allow_empty=True)
        self._versions.pop((owner, task_id), None)
        await (await self._store()).delete_task(owner, task_id)

    # -- contexts ---------------------------------------------------------------------------

    async def list_context_tasks(
        self,
        context_id: str,
        *,
        page_size: int = DEFAULT_LIST_TASKS_PAGE_SIZE,
        page_token: str = "",
        context: ServerCallContext | None = None,
    ) -> Any:
        """A context's (an ADK session's) tasks, newest status first, a page at a time: pass
        the response's ``next_page_token`` back as ``page_token``."""
        _check_id("context id", context_id)
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise DataError("page_size must be an int >= 1")
        request = a2a_pb2.ListTasksRequest(
            context_id=context_id, page_size=page_size, page_token=page_token
        )
        return await self.list(request, context)

    @traced("a2a")
    async def delete_context(
        self, context_id: str, *, context: ServerCallContext | None = None, all_owners: bool = False
    ) -> int:
        """Deletes a context's tasks (and their feedback): the owner's, or every owner's with
        ``all_owners=True`` (for an ADK session deleted by its app). Returns how many."""
        _check_id("context id", context_id)
        owner = None if all_owners else _owner(self.owner_resolver, context)
        self._versions.clear()
        return int(await (await self._store()).delete_context(context_id, owner))

    # -- feedback ---------------------------------------------------------------------------

    @traced("a2a")
    async def add_feedback(
        self,
        task_id: str,
        rating: int,
        text: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        context: ServerCallContext | None = None,
    ) -> TaskFeedback:
        """Records feedback on a task: ``rating`` 1-5, optional text and JSON metadata.
        `DataError` for a bad rating, text or metadata and `TaskNotFoundError` for a task the
        owner does not have; nothing is written then."""
        owner = _owner(self.owner_resolver, context)
        _check_id("task id", task_id)
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
            raise DataError(f"rating must be an int from 1 to 5, not {rating!r}")
        if text is not None:
            check_text("feedback text", text, max_length=MAX_FEEDBACK_TEXT)
        metadata_json = _metadata_json(metadata)
        feedback_id = uuid.uuid4().hex
        created_at = await (await self._store()).add_feedback(
            feedback_id, owner, task_id, rating, text, metadata_json
        )
        if created_at is None:
            raise TaskNotFoundError(f"no task {task_id!r}")
        return TaskFeedback(
            feedback_id=feedback_id,
            task_id=task_id,
            rating=rating,
            text=text,
            metadata=dict(metadata) if metadata is not None else None,
            created_at=datetime.fromtimestamp(created_at, UTC),
        )

    @traced("a2a")
    async def list_feedback(
        self,
        task_id: str,
        *,
        after: str | None = None,
        limit: int = 100,
        context: ServerCallContext | None = None,
    ) -> list[TaskFeedback]:
        """A task's feedback, oldest first, at most ``limit`` (≤ 10,000); pass the last
        one's ``feedback_id`` as ``after`` for the next page."""
        owner = _owner(self.owner_resolver, context)
        _check_id("task id", task_id)
        if after is not None:
            _check_id("after", after)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise DataError("limit must be an int >= 1")
        rows = await (await self._store()).list_feedback(owner, task_id, after, min(limit, 10_000))
        return [
            TaskFeedback(
                feedback_id=fid,
                task_id=task_id,
                rating=rating,
                text=text,
                metadata=json.loads(meta) if meta is not None else None,
                created_at=datetime.fromtimestamp(created, UTC),
            )
            for fid, rating, text, meta, created in rows
        ]


@dataclass(frozen=True)
class TaskFeedback:
    """Feedback on a task, as stored."""

    feedback_id: str
    task_id: str
    rating: int
    text: str | None
    metadata: dict[str, Any] | None
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "feedback_id": self.feedback_id,
            "task_id": self.task_id,
            "rating": self.rating,
            "text": self.text,
            "metadata": self.metadata,
            "created_at": self.created_at.isoformat(),
        }


def _metadata_json(metadata: Mapping[str, Any] | None) -> bytes | None:
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise DataError("feedback metadata must be a JSON object (a mapping)")
    try:
        text = json.dumps(dict(metadata), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise DataError(f"feedback metadata is not JSON: {exc}") from exc
    if "\\u0000" in text:
        raise DataError("feedback metadata contains a NUL character, which PostgreSQL cannot store")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(f"feedback metadata is not valid UTF-8 text ({exc.reason})") from exc


class PostgresPushNotificationConfigStore(_A2aBacked, PushNotificationConfigStore):
    """The a2a-sdk's `PushNotificationConfigStore` on PostgreSQL (constructor: see
    `_A2aBacked`)."""

    @traced("a2a")
    async def set_info(
        self,
        task_id: str,
        notification_config: Any,
        context: ServerCallContext | None = None,
    ) -> Any:
        if not isinstance(notification_config, TaskPushNotificationConfig):
            raise DataError(
                "notification_config must be an a2a TaskPushNotificationConfig, got "
                f"{type(notification_config).__name__}"
            )
        owner = _owner(self.owner_resolver, context)
        _check_id("task id", task_id)
        stored = normalize_push_notification_config(task_id, notification_config)
        _check_id("config id", stored.id)
        await (await self._store()).set_push_config(
            owner, task_id, stored.id, stored.SerializeToString()
        )
        result = TaskPushNotificationConfig()
        result.CopyFrom(stored)
        return result

    @traced("a2a")
    async def get_info(self, task_id: str, context: ServerCallContext | None = None) -> list[Any]:
        owner = _owner(self.owner_resolver, context)
        _check_id("task id", task_id, allow_empty=True)
        rows = await (await self._store()).push_configs(owner, task_id)
        return [_parse_config(data) for data in rows]

    @traced("a2a")
    async def get_info_for_dispatch(self, task_id: str) -> list[Any]:
        _check_id("task id", task_id, allow_empty=True)
        rows = await (await self._store()).push_configs_for_dispatch(task_id)
        return [_parse_config(data) for data in rows]

    @traced("a2a")
    async def delete_info(
        self,
        task_id: str,
        context: ServerCallContext | None = None,
        config_id: str | None = None,
    ) -> None:
        owner = _owner(self.owner_resolver, context)
        _check_id("task id", task_id, allow_empty=True)
        if config_id is not None:
            _check_id("config id", config_id, allow_empty=True)
        await (await self._store()).delete_push_configs(owner, task_id, config_id)


def _parse_config(data: bytes) -> Any:
    return _parse(TaskPushNotificationConfig, "push notification config", data)
