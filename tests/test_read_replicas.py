"""Reads on a standby (`read_uri=`) never older than what this process wrote or saw.

With WAL replay paused on the standby, a process that just wrote (a session append, a new
session, an artifact version, a memory entry) still reads it back — the read is redone on the
primary — while another process reading through the same standby sees the older view; after
replay resumes both agree. A standby that goes down costs no error, nor does one that has not
yet replayed a new schema; after a failover (the standby promoted, the old primary back as the
standby) the same holds. Runs on a two-node Patroni cluster; skips where Patroni/etcd are
missing, and in CI's second pass (TEST_DATABASE_URL).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from google.adk.events import Event
from google.adk.events.event_actions import EventActions
from google.adk.memory.memory_entry import MemoryEntry
from google.genai import types
from servers.patroni import PatroniCluster, PatroniNode, cluster_test_marks

from adk_postgres import (
    Database,
    PostgresArtifactService,
    PostgresMemoryService,
    PostgresSessionService,
)

pytestmark = cluster_test_marks()

APP, USER = "replicas", "u"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PatroniCluster]:
    with PatroniCluster(nodes=2, synchronous_mode=True, ttl=10, loop_wait=2) as running:
        running.wait_ready()
        yield running


class Process:
    """The three services of one process, reads going to the standby."""

    def __init__(self, primary: PatroniNode, standby: PatroniNode, schema: str) -> None:
        self.db = Database(primary.url(), read_uri=standby.url(), schema=schema, pool_size=4)
        self.sessions = PostgresSessionService(database=self.db, cache_bytes=0)
        self.artifacts = PostgresArtifactService(database=self.db)
        self.memory = PostgresMemoryService(database=self.db)

    async def texts(self, session_id: str) -> list[str] | None:
        got = await self.sessions.get_session(app_name=APP, user_id=USER, session_id=session_id)
        return None if got is None else [e.content.parts[0].text for e in got.events]

    async def latest_artifact(self) -> bytes | None:
        part = await self.artifacts.load_artifact(
            app_name=APP, user_id=USER, session_id="s", filename="notes.txt"
        )
        return None if part is None else part.inline_data.data

    async def recalls(self, word: str) -> bool:
        found = await self.memory.search_memory(app_name=APP, user_id=USER, query=word)
        return bool(found.memories)


def _event(text: str) -> Event:
    return Event(
        author="model",
        invocation_id="inv",
        content=types.Content(role="model", parts=[types.Part(text=text)]),
        actions=EventActions(state_delta={"last": text}),
    )


def _blob(data: bytes) -> types.Part:
    return types.Part(inline_data=types.Blob(mime_type="text/plain", data=data))


async def _remember(process: Process, word: str) -> None:
    entry = MemoryEntry(
        content=types.Content(role="user", parts=[types.Part(text=f"the {word} is blue")]),
        id=word,
    )
    await process.memory.add_memory(app_name=APP, user_id=USER, memories=[entry])


async def test_a_process_reads_its_own_writes_through_a_lagging_standby(
    cluster: PatroniCluster,
) -> None:
    primary, standby = cluster.leader(), cluster.replicas()[0]
    assert primary is not None
    writer, other = Process(primary, standby, "replicas"), Process(primary, standby, "replicas")
    session = await writer.sessions.create_session(app_name=APP, user_id=USER, session_id="s")
    await writer.sessions.append_event(session, _event("before"))
    await writer.artifacts.save_artifact(
        app_name=APP, user_id=USER, session_id="s", filename="notes.txt", artifact=_blob(b"v0")
    )
    await _remember(writer, "kettle")
    # Both processes see the same thing once the standby has replayed it.
    await _until(lambda: other.texts("s"), ["before"])
    await _until(other.latest_artifact, b"v0")
    await _until(lambda: other.recalls("kettle"), True)

    await asyncio.to_thread(cluster.pause_replay, standby)
    try:
        await writer.sessions.append_event(session, _event("after"))
        await writer.sessions.create_session(app_name=APP, user_id=USER, session_id="new")
        await writer.artifacts.save_artifact(
            app_name=APP, user_id=USER, session_id="s", filename="notes.txt", artifact=_blob(b"v1")
        )
        await _remember(writer, "teapot")
        # The writer reads its own writes...
        assert await writer.texts("s") == ["before", "after"]
        assert await writer.texts("new") == []
        listed = await writer.sessions.list_sessions(app_name=APP, user_id=USER)
        assert {s.id for s in listed.sessions} == {"s", "new"}
        assert await writer.latest_artifact() == b"v1"
        assert await writer.recalls("teapot")
        # ...another process reads the standby's older view.
        assert await other.texts("s") == ["before"]
        assert await other.texts("new") is None
        assert await other.latest_artifact() == b"v0"
        assert not await other.recalls("teapot")
    finally:
        await asyncio.to_thread(cluster.resume_replay, standby)
    await _until(lambda: other.texts("s"), ["before", "after"])
    assert await other.texts("new") == []
    await _until(other.latest_artifact, b"v1")
    await _until(lambda: other.recalls("teapot"), True)
    # The writer, still reading through the standby, agrees.
    assert await writer.texts("s") == ["before", "after"]
    for process in (writer, other):
        await process.db.close()


async def test_a_schema_the_standby_has_not_replayed_is_read_on_the_primary(
    cluster: PatroniCluster,
) -> None:
    """A new schema (a new tenant, a first start) is created on the primary; until the standby
    replays it, its tables are missing there. Reads must not fail with "relation does not
    exist": the primary answers them."""
    primary, standby = cluster.leader(), cluster.replicas()[0]
    assert primary is not None
    await asyncio.to_thread(cluster.pause_replay, standby)
    writer = Process(primary, standby, "replicas_unreplayed")
    other = Process(primary, standby, "replicas_unreplayed")
    try:
        session = await writer.sessions.create_session(app_name=APP, user_id=USER, session_id="s")
        await writer.sessions.append_event(session, _event("one"))
        await writer.artifacts.save_artifact(
            app_name=APP, user_id=USER, session_id="s", filename="notes.txt", artifact=_blob(b"v0")
        )
        await _remember(writer, "spoon")
        for process in (writer, other):  # `other` has written nothing: still no error
            assert await process.texts("s") == ["one"]
            listed = await process.sessions.list_sessions(app_name=APP, user_id=USER)
            assert [s.id for s in listed.sessions] == ["s"]
            assert await process.latest_artifact() == b"v0"
            assert await process.recalls("spoon")
    finally:
        await asyncio.to_thread(cluster.resume_replay, standby)
        for process in (writer, other):
            await process.db.close()


async def test_reads_survive_the_standby_going_down(cluster: PatroniCluster) -> None:
    primary, standby = cluster.leader(), cluster.replicas()[0]
    assert primary is not None
    process = Process(primary, standby, "replicas_down")
    session = await process.sessions.create_session(app_name=APP, user_id=USER, session_id="s")
    await process.sessions.append_event(session, _event("one"))
    await _until(lambda: process.texts("s"), ["one"])
    await asyncio.to_thread(cluster.kill_node, standby)
    try:
        started = time.monotonic()
        for _ in range(20):  # no error reaches the caller: the primary answers
            assert await process.texts("s") == ["one"]
            listed = await process.sessions.list_sessions(app_name=APP, user_id=USER)
            assert [s.id for s in listed.sessions] == ["s"]
        assert time.monotonic() - started < 15
    finally:
        await process.db.close()
        await asyncio.to_thread(cluster.restart_node, standby)


async def test_reads_after_a_failover_still_see_this_process_writes(
    cluster: PatroniCluster,
) -> None:
    """The common case after a failover: the primary is a promoted standby. Its log position
    must be where it writes now, not where its replay stopped at promotion, or a lagging
    standby would pass for current and artifacts and memory would be read stale."""
    old = cluster.leader()
    assert old is not None
    await asyncio.to_thread(cluster.kill_leader)
    promoted = await asyncio.to_thread(cluster.wait_new_leader, old)
    await asyncio.to_thread(cluster.restart_node, old)  # rejoins as the standby
    writer = Process(promoted, old, "replicas_promoted")
    other = Process(promoted, old, "replicas_promoted")
    try:
        await writer.sessions.create_session(app_name=APP, user_id=USER, session_id="s")
        await writer.artifacts.save_artifact(
            app_name=APP, user_id=USER, session_id="s", filename="notes.txt", artifact=_blob(b"v0")
        )
        await _until(other.latest_artifact, b"v0")
        await asyncio.to_thread(cluster.pause_replay, old)
        try:
            await writer.artifacts.save_artifact(
                app_name=APP,
                user_id=USER,
                session_id="s",
                filename="notes.txt",
                artifact=_blob(b"v1"),
            )
            await _remember(writer, "saucer")
            assert await writer.latest_artifact() == b"v1"
            assert await writer.recalls("saucer")
            assert await other.latest_artifact() == b"v0"  # the standby's view, as documented
        finally:
            await asyncio.to_thread(cluster.resume_replay, old)
        await _until(other.latest_artifact, b"v1")
    finally:
        for process in (writer, other):
            await process.db.close()


async def _until(read, expected, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        got = await read()
        if got == expected or time.monotonic() > deadline:
            assert got == expected
            return
        await asyncio.sleep(0.1)
