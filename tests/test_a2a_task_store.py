"""adk_postgres.a2a against a real PostgreSQL: the a2a-sdk's store interfaces with the SDK's
semantics (compared call by call with its in-memory stores), concurrent saves from two
processes, feedback, contexts and bad input.

The end-to-end test through `adk-postgres api_server --a2a` is tests/test_a2a_server.py.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator

import asyncpg
import pytest

a2a_pb2 = pytest.importorskip("a2a.types.a2a_pb2")
from a2a.auth.user import User  # noqa: E402
from a2a.server.context import ServerCallContext  # noqa: E402
from a2a.server.tasks import (  # noqa: E402
    InMemoryPushNotificationConfigStore,
    InMemoryTaskStore,
)
from a2a.utils.errors import InvalidParamsError  # noqa: E402
from a2a.utils.task import encode_page_token  # noqa: E402
from google.protobuf.timestamp_pb2 import Timestamp  # noqa: E402

from adk_postgres import Database  # noqa: E402
from adk_postgres.a2a import (  # noqa: E402
    PostgresPushNotificationConfigStore,
    PostgresTaskStore,
    TaskNotFoundError,
    merge_tasks,
)
from adk_postgres.errors import DataError  # noqa: E402

Task = a2a_pb2.Task


class _User(User):
    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        return self._name


def ctx(user: str | None = None) -> ServerCallContext:
    return ServerCallContext() if user is None else ServerCallContext(user=_User(user))


def ts(ns: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(ns)
    return stamp


def make_task(
    task_id: str,
    context_id: str = "ctx",
    state: int = a2a_pb2.TASK_STATE_WORKING,
    at_ns: int | None = None,
    history: int = 0,
    text: str = "hello",
) -> Task:
    task = Task(id=task_id, context_id=context_id, status=a2a_pb2.TaskStatus(state=state))
    if at_ns is not None:
        task.status.timestamp.CopyFrom(ts(at_ns))
    for i in range(history):
        message = task.history.add(message_id=f"{task_id}-m{i}", role=a2a_pb2.ROLE_USER)
        message.parts.add(text=f"{text} {i}")
    return task


@pytest.fixture
async def database(pg_url: str, schema_name: str) -> AsyncIterator[Database]:
    db = Database(pg_url, schema=schema_name)
    yield db
    await db.close()


@pytest.fixture
def store(database: Database) -> PostgresTaskStore:
    return PostgresTaskStore(database=database)


# -- the SDK's semantics, call by call --------------------------------------------------------


async def test_save_get_delete_like_the_in_memory_store(store: PostgresTaskStore) -> None:
    memory = InMemoryTaskStore()
    task = make_task("t1", history=3)
    task.artifacts.add(artifact_id="a1", name="answer").parts.add(text="42")
    task.metadata.update({"k": "v", "n": 1})
    for s in (store, memory):
        await s.save(task, ctx())
    got = await store.get("t1", ctx())
    assert got == await memory.get("t1", ctx()) == task
    # Owners are separate, as in the SDK's stores.
    assert await store.get("t1", ctx("bob")) is None
    assert await memory.get("t1", ctx("bob")) is None
    # Updating: a new status and a message more.
    task.status.state = a2a_pb2.TASK_STATE_COMPLETED
    task.history.add(message_id="late", role=a2a_pb2.ROLE_AGENT).parts.add(text="done")
    for s in (store, memory):
        await s.save(task, ctx())
    assert await store.get("t1", ctx()) == await memory.get("t1", ctx())
    for s in (store, memory):
        await s.delete("t1", ctx())
        await s.delete("t1", ctx())  # deleting what is not there is no error
        assert await s.get("t1", ctx()) is None
        assert await s.get("never", ctx()) is None


async def test_a_second_store_on_the_same_database_sees_the_task(
    store: PostgresTaskStore, pg_url: str, schema_name: str
) -> None:
    await store.save(make_task("shared", history=2), ctx("ann"))
    async with PostgresTaskStore(pg_url, schema=schema_name) as other:
        assert await other.get("shared", ctx("ann")) == make_task("shared", history=2)
        updated = make_task("shared", state=a2a_pb2.TASK_STATE_COMPLETED, history=3)
        await other.save(updated, ctx("ann"))
    assert await store.get("shared", ctx("ann")) == updated


def _requests() -> list[a2a_pb2.ListTasksRequest]:
    after = ts(1_700_000_000_000_000_000 + 10 * 1_000_000)
    return [
        a2a_pb2.ListTasksRequest(),
        a2a_pb2.ListTasksRequest(page_size=7),
        a2a_pb2.ListTasksRequest(page_size=1),
        a2a_pb2.ListTasksRequest(context_id="c1", page_size=3),
        a2a_pb2.ListTasksRequest(status=a2a_pb2.TASK_STATE_COMPLETED, page_size=4),
        a2a_pb2.ListTasksRequest(status_timestamp_after=after, page_size=5),
        a2a_pb2.ListTasksRequest(context_id="c2", status=a2a_pb2.TASK_STATE_WORKING),
        a2a_pb2.ListTasksRequest(context_id="nobody"),
    ]


async def _all_pages(store: object, request: a2a_pb2.ListTasksRequest, context) -> list:
    pages = []
    copy = a2a_pb2.ListTasksRequest()
    copy.CopyFrom(request)
    request = copy
    while True:
        response = await store.list(request, context)  # type: ignore[attr-defined]
        pages.append(response)
        if not response.next_page_token:
            return pages
        request.page_token = response.next_page_token


async def test_list_pages_like_the_in_memory_store(store: PostgresTaskStore) -> None:
    memory = InMemoryTaskStore()
    rng = random.Random(7)
    base = 1_700_000_000_000_000_000
    states = [a2a_pb2.TASK_STATE_WORKING, a2a_pb2.TASK_STATE_COMPLETED, a2a_pb2.TASK_STATE_FAILED]
    for i in range(40):
        # Ties in time, tasks without a time, ids that sort differently than they were made.
        at = None if i % 9 == 0 else base + rng.randrange(0, 20) * 1_000_000
        task = make_task(
            f"task-{rng.randrange(10**6):06d}-{i}",
            context_id=f"c{i % 3}",
            state=states[i % 3],
            at_ns=at,
            history=i % 4,
        )
        for s in (store, memory):
            await s.save(task, ctx())
    await store.save(make_task("other-owner"), ctx("zed"))
    for request in _requests():
        ours = await _all_pages(store, request, ctx())
        theirs = await _all_pages(memory, request, ctx())
        assert [list(p.tasks) for p in ours] == [list(p.tasks) for p in theirs], request
        assert [p.next_page_token for p in ours] == [p.next_page_token for p in theirs]
        assert [(p.total_size, p.page_size) for p in ours] == [
            (p.total_size, p.page_size) for p in theirs
        ]
    # A legacy token (the first task's id) starts the page at that task.
    everything = (await store.list(a2a_pb2.ListTasksRequest(page_size=100), ctx())).tasks
    legacy = a2a_pb2.ListTasksRequest(page_size=5, page_token=encode_page_token(everything[10].id))
    assert list((await store.list(legacy, ctx())).tasks) == list(everything[10:15])
    assert list((await memory.list(legacy, ctx())).tasks) == list(everything[10:15])


async def test_list_context_tasks_pages_newest_first(store: PostgresTaskStore) -> None:
    base = 1_800_000_000_000_000_000
    for i in range(12):
        await store.save(make_task(f"t{i:02d}", context_id="session-1", at_ns=base + i), ctx())
    await store.save(make_task("elsewhere", context_id="session-2", at_ns=base + 99), ctx())
    seen: list[str] = []
    token = ""
    while True:
        page = await store.list_context_tasks("session-1", page_size=5, page_token=token)
        seen += [t.id for t in page.tasks]
        assert page.total_size == 12
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"t{i:02d}" for i in reversed(range(12))]


async def test_bad_page_tokens_are_invalid_params(store: PostgresTaskStore) -> None:
    await store.save(make_task("a"), ctx())
    for token in ("!!!not-base64", encode_page_token("no-such-task"), encode_page_token("a\x00b")):
        with pytest.raises(InvalidParamsError):
            await store.list(a2a_pb2.ListTasksRequest(page_token=token), ctx())


async def test_push_configs_like_the_in_memory_store(database: Database) -> None:
    ours = PostgresPushNotificationConfigStore(database=database)
    memory = InMemoryPushNotificationConfigStore()
    config = a2a_pb2.TaskPushNotificationConfig
    steps = [
        ("set", "t1", config(url="https://a.example/hook", token="x"), ctx()),
        ("set", "t1", config(id="second", url="https://b.example/hook"), ctx()),
        ("set", "t1", config(url="https://a.example/replaced"), ctx()),  # same id: moves last
        ("set", "t1", config(id="bob's", url="https://bob.example"), ctx("bob")),
        ("set", "t2", config(id="c", url="https://c.example"), ctx()),
        ("delete", "t1", "second", ctx()),
        ("delete", "t1", "missing", ctx()),
        ("delete", "t2", None, ctx()),
        ("delete", "t9", None, ctx()),
    ]
    for op, task_id, arg, context in steps:
        for s in (ours, memory):
            if op == "set":
                result = await s.set_info(task_id, arg, context)
                assert result.task_id == task_id and result.id
            else:
                await s.delete_info(task_id, context, arg)
        for task in ("t1", "t2"):
            for who in (ctx(), ctx("bob")):
                assert await ours.get_info(task, who) == await memory.get_info(task, who)
            assert sorted(c.url for c in await ours.get_info_for_dispatch(task)) == sorted(
                c.url for c in await memory.get_info_for_dispatch(task)
            )
    with pytest.raises(DataError):
        await ours.set_info("t1", {"url": "https://x"}, ctx())  # type: ignore[arg-type]


# -- concurrent saves -------------------------------------------------------------------------


def test_merge_rule() -> None:
    stored = make_task("t", at_ns=200, history=2)
    stored.artifacts.add(artifact_id="a", name="old")
    stored.metadata.update({"x": 1, "y": 1})
    saved = make_task("t", state=a2a_pb2.TASK_STATE_INPUT_REQUIRED, at_ns=100, history=1)
    saved.history.add(message_id="new").parts.add(text="mine")
    saved.artifacts.add(artifact_id="a", name="new")
    saved.artifacts.add(artifact_id="b", name="added")
    saved.metadata.update({"y": 2, "z": 2})
    merged = merge_tasks(stored, saved)
    assert [m.message_id for m in merged.history] == ["t-m0", "t-m1", "new"]
    assert [(a.artifact_id, a.name) for a in merged.artifacts] == [("a", "new"), ("b", "added")]
    assert merged.status == stored.status  # the stored status is newer
    assert dict(merged.metadata) == {"x": 1, "y": 2, "z": 2}
    saved.status.timestamp.CopyFrom(ts(300))
    assert merge_tasks(stored, saved).status == saved.status
    moved = make_task("t", context_id="elsewhere")
    with pytest.raises(DataError):
        merge_tasks(stored, moved)


async def test_concurrent_saves_in_one_process_lose_nothing(store: PostgresTaskStore) -> None:
    """Coroutines that each read the task, add a message and save: the read-modify-write
    pattern of the SDK's TaskManager. Every message survives."""
    await store.save(make_task("busy"), ctx())

    async def writer(n: int) -> None:
        for i in range(10):
            task = await store.get("busy", ctx())
            assert task is not None
            await asyncio.sleep(random.random() / 1000)
            task.history.add(message_id=f"w{n}-{i}").parts.add(text=f"{n}/{i}")
            await store.save(task, ctx())

    await asyncio.gather(*(writer(n) for n in range(8)))
    final = await store.get("busy", ctx())
    assert final is not None
    assert sorted(m.message_id for m in final.history) == sorted(
        f"w{n}-{i}" for n in range(8) for i in range(10)
    )


_WRITER = """
import asyncio, sys
from a2a.server.context import ServerCallContext
from a2a.types import a2a_pb2
from adk_postgres.a2a import PostgresTaskStore

async def main(url, schema, tag, count):
    async with PostgresTaskStore(url, schema=schema) as store:
        for i in range(count):
            task = await store.get("contested", ServerCallContext())
            task.history.add(message_id=f"{tag}-{i}").parts.add(text=tag)
            task.status.state = a2a_pb2.TASK_STATE_WORKING
            task.status.timestamp.FromNanoseconds(1_900_000_000_000_000_000 + i)
            await store.save(task, ServerCallContext())
    print("ok")

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
"""


async def test_two_processes_updating_one_task_lose_nothing(
    store: PostgresTaskStore, pg_url: str, schema_name: str
) -> None:
    await store.save(make_task("contested"), ctx())
    count = 60
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            textwrap.dedent(_WRITER),
            pg_url,
            schema_name,
            tag,
            str(count),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for tag in ("p1", "p2")
    ]
    outputs = await asyncio.gather(*(p.communicate() for p in procs))
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()[-2000:]
    final = await store.get("contested", ctx())
    assert final is not None
    ids = [m.message_id for m in final.history]
    assert sorted(ids) == sorted(f"{t}-{i}" for t in ("p1", "p2") for i in range(count))
    # Each writer's own messages stay in its order.
    for tag in ("p1", "p2"):
        mine = [i for i in ids if i.startswith(tag)]
        assert mine == [f"{tag}-{i}" for i in range(count)]
    # The status is the latest one written (by time).
    assert final.status.timestamp.ToNanoseconds() == 1_900_000_000_000_000_000 + count - 1


async def test_a_save_after_a_delete_elsewhere_recreates_the_task(
    store: PostgresTaskStore, pg_url: str, schema_name: str
) -> None:
    await store.save(make_task("gone", history=1), ctx())
    async with PostgresTaskStore(pg_url, schema=schema_name) as other:
        await other.delete("gone", ctx())
    task = make_task("gone", history=2)
    await store.save(task, ctx())
    assert await store.get("gone", ctx()) == task


# -- contexts and feedback ----------------------------------------------------------------------


async def test_feedback(store: PostgresTaskStore, pg_admin: asyncpg.Connection, schema_name: str):
    await store.save(make_task("rated"), ctx())
    first = await store.add_feedback("rated", 5, "great", {"source": "ui", "n": [1, 2]})
    second = await store.add_feedback("rated", 2)
    assert first.feedback_id != second.feedback_id and first.created_at <= second.created_at
    listed = await store.list_feedback("rated")
    assert [(f.rating, f.text, f.metadata) for f in listed] == [
        (5, "great", {"source": "ui", "n": [1, 2]}),
        (2, None, None),
    ]
    assert [f.rating for f in await store.list_feedback("rated", after=first.feedback_id)] == [2]
    assert await store.list_feedback("rated", context=ctx("bob")) == []
    table = f'"{schema_name}".a2a_task_feedback'
    before = await pg_admin.fetchval(f"SELECT count(*) FROM {table}")
    for bad in (0, 6, -1, 2.5, "5", True, None):
        with pytest.raises(DataError):
            await store.add_feedback("rated", bad)  # type: ignore[arg-type]
    with pytest.raises(TaskNotFoundError):
        await store.add_feedback("no-such-task", 4)
    with pytest.raises(TaskNotFoundError):
        await store.add_feedback("rated", 4, context=ctx("bob"))  # another owner's task
    with pytest.raises(DataError):
        await store.add_feedback("rated", 4, "nul \x00 inside")
    with pytest.raises(DataError):
        await store.add_feedback("rated", 4, metadata={"bad": float("nan")})
    with pytest.raises(DataError):
        await store.add_feedback("rated", 4, metadata={"nul": "\x00"})
    with pytest.raises(DataError):
        await store.add_feedback("rated", 4, metadata=["not", "an", "object"])  # type: ignore[arg-type]
    assert await pg_admin.fetchval(f"SELECT count(*) FROM {table}") == before
    # Feedback goes with its task.
    await store.delete("rated", ctx())
    assert await pg_admin.fetchval(f"SELECT count(*) FROM {table}") == 0


async def test_delete_context(store: PostgresTaskStore) -> None:
    for i in range(3):
        await store.save(make_task(f"s{i}", context_id="session-x"), ctx())
    await store.save(make_task("bobs", context_id="session-x"), ctx("bob"))
    await store.save(make_task("kept", context_id="session-y"), ctx())
    assert await store.delete_context("session-x") == 3
    assert await store.get("bobs", ctx("bob")) is not None
    assert await store.delete_context("session-x", all_owners=True) == 1
    assert await store.get("kept", ctx()) is not None


# -- bad input ----------------------------------------------------------------------------------


async def test_bad_tasks_are_refused_and_nothing_is_written(
    store: PostgresTaskStore, pg_admin: asyncpg.Connection, schema_name: str
) -> None:
    await store.database.migrate()
    bad = [
        {"id": "not a Task"},
        b'{"id": "json bytes"}',
        make_task(""),
        make_task("nul\x00id"),
        make_task("x" * 1025),
        make_task("ok", context_id="ctx\x00nul"),
        make_task("ok", state=999),
    ]
    for task in bad:
        with pytest.raises(DataError):
            await store.save(task, ctx())  # type: ignore[arg-type]
    with pytest.raises(DataError):
        await store.save(make_task("ok"), ctx("owner\x00nul"))
    huge = make_task("huge")
    huge.history.add(message_id="big").parts.add(raw=b"\x00" * (65 * 1024 * 1024))
    with pytest.raises(DataError, match="limit"):
        await store.save(huge, ctx())
    for task_id in ("nul\x00id", "y" * 5000):
        with pytest.raises(DataError):
            await store.get(task_id, ctx())
    count = await pg_admin.fetchval(f'SELECT count(*) FROM "{schema_name}".a2a_tasks')
    assert count == 0


async def test_hostile_text_and_bytes_round_trip(store: PostgresTaskStore) -> None:
    task = make_task("héllo-🙂-'; DROP TABLE a2a_tasks; --", context_id="ctx 'quoted' \\ ")
    task.history.add(message_id="m").parts.add(text="NUL \x00 inside text, emoji 🙂, RTL \u202e")
    task.history.add(message_id="b").parts.add(raw=bytes(range(256)))
    task.metadata.update({"nested": {"deep": [1, 2, {"x": None}]}})
    await store.save(task, ctx("user with spaces/and'quotes"))
    assert await store.get(task.id, ctx("user with spaces/and'quotes")) == task


def test_no_password_in_task_store_repr(pg_url: str) -> None:
    store = PostgresTaskStore("postgresql://u:hunter2secret@127.0.0.1:1/db")
    assert "hunter2secret" not in repr(store.database)


async def test_stored_bytes_are_the_sdk_serialization(
    store: PostgresTaskStore, pg_admin: asyncpg.Connection, schema_name: str
) -> None:
    """What an operator finds in the table: the task's protobuf bytes and readable columns."""
    task = make_task("plain", state=a2a_pb2.TASK_STATE_COMPLETED, at_ns=5_000_000_123, history=2)
    await store.save(task, ctx("ann"))
    row = await pg_admin.fetchrow(
        "SELECT owner, context_id, state, status_ts_ns, version, task"
        f' FROM "{schema_name}".a2a_tasks'
    )
    assert dict(row) | {"task": None} == {
        "owner": "ann",
        "context_id": "ctx",
        "state": "TASK_STATE_COMPLETED",
        "status_ts_ns": 5_000_000_123,
        "version": 1,
        "task": None,
    }
    assert Task.FromString(row["task"]) == task


@pytest.mark.skipif(os.environ.get("ADK_POSTGRES_TEST_POOLER") == "statement", reason="n/a")
async def test_task_store_registered_for_adkpg_uris(pg_url: str, schema_name: str) -> None:
    from google.adk.cli.service_registry import get_service_registry

    from adk_postgres import adk_services

    registry = get_service_registry()
    adk_services.register(registry)
    uri = "adkpg" + pg_url[len("postgresql") :] if pg_url.startswith("postgresql") else pg_url
    sep = "&" if "?" in uri else "?"
    created = registry._create_task_store_service(f"{uri}{sep}schema={schema_name}")
    assert isinstance(created, PostgresTaskStore)
    await created.save(make_task("via-registry"), ctx())
    assert (await created.get("via-registry", ctx())).id == "via-registry"


# -- operations: stats, prune, export/restore ---------------------------------------------------


@pytest.mark.skipif(
    os.environ.get("ADK_POSTGRES_TEST_POOLER") == "statement",
    reason="stats, prune and restore use transactions, which statement pooling forbids",
)
async def test_stats_prune_and_backup_carry_tasks(
    store: PostgresTaskStore,
    database: Database,
    pg_url: str,
    pg_admin: asyncpg.Connection,
    schema_name: str,
    tmp_path,
) -> None:
    import io

    from test_cli_admin import cli

    from adk_postgres.admin import Admin
    from adk_postgres.transfer import export_backup, restore_backup

    done = a2a_pb2.TASK_STATE_COMPLETED
    for i in range(3):
        await store.save(make_task(f"done-{i}", state=done, history=1), ctx())
    await store.save(make_task("running", history=1), ctx())
    await store.add_feedback("done-0", 4, "ok")
    await PostgresPushNotificationConfigStore(database=database).set_info(
        "running", a2a_pb2.TaskPushNotificationConfig(url="https://h.example"), ctx()
    )
    base = ["-d", pg_url, "--schema", schema_name]
    stats = await cli(*base, "stats", "--json")
    assert stats.exit_code == 0, stats.output
    data = stats.json()
    assert data["a2a_tasks"] == {"TASK_STATE_COMPLETED": 3, "TASK_STATE_WORKING": 1}
    assert data["a2a_feedback"] == 1
    text = await cli(*base, "stats")
    assert "A2A tasks (all apps): 4 (completed 3, working 1); feedback: 1" in text.stdout

    # Export → restore into an empty schema → the same tasks, configs and feedback.
    out = io.BytesIO()
    await export_backup(database, out)
    target_schema = f"{schema_name}_r"
    try:
        async with Database(pg_url, schema=target_schema) as target:
            await restore_backup(target, io.BytesIO(out.getvalue()))
            await restore_backup(target, io.BytesIO(out.getvalue()))  # idempotent
            restored = PostgresTaskStore(database=target)
            for task_id in ("done-0", "done-1", "done-2", "running"):
                assert await restored.get(task_id, ctx()) == await store.get(task_id, ctx())
            assert [f.text for f in await restored.list_feedback("done-0")] == ["ok"]
            configs = await PostgresPushNotificationConfigStore(database=target).get_info(
                "running", ctx()
            )
            assert [c.url for c in configs] == ["https://h.example"]
    finally:
        await pg_admin.execute(f'DROP SCHEMA IF EXISTS "{target_schema}" CASCADE')

    # Prune: only finished tasks older than the cutoff, with their feedback.
    await pg_admin.execute(
        f"UPDATE \"{schema_name}\".a2a_tasks SET updated_at = now() - interval '3 days'"
        " WHERE task_id IN ('done-0', 'done-1', 'running')"
    )
    admin = Admin(database)
    dry = await admin.prune(tasks_finished_before="2d", dry_run=True)
    assert (dry.tasks, dry.task_feedback) == (2, 1)
    refused = await cli(*base, "prune", "--tasks-finished-before", "2d", "--app", "x")
    assert refused.exit_code == 2 and "not stored per app" in refused.stderr
    pruned = await cli(*base, "prune", "--tasks-finished-before", "2d")
    assert pruned.exit_code == 0, pruned.output
    assert "A2A tasks: 2 (with 1 feedback)" in pruned.stdout
    left = await pg_admin.fetch(f'SELECT task_id FROM "{schema_name}".a2a_tasks ORDER BY 1')
    assert [r["task_id"] for r in left] == ["done-2", "running"]
    assert await pg_admin.fetchval(f'SELECT count(*) FROM "{schema_name}".a2a_task_feedback') == 0
