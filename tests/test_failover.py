"""Failover of a Patroni cluster under load: what callers of adk-postgres see when the leader
dies, and what the new leader holds afterwards.

* Synchronous replication: no acknowledged append is lost, none is stored twice, order and
  state survive, no call hangs, and writes come back shortly after the leader key expires.
* Asynchronous replication: acknowledged appends may be lost, but only the tail of what each
  session had acknowledged before the kill, never an event in the middle (measured, reported).
* Artifacts (one chunked) and memory entries survive a failover; saves caught by it either
  raise a typed error or are stored whole.
* A service pointed at a standby with replay paused shows the older state.
* Found here and fixed: a warm (cached) read after an asynchronous failover served lost
  events; a leader that hangs (SIGSTOP) instead of dying blocked new connections when it was
  first in the URL (now each host gets connect_timeout), and calls in flight on it waited
  without bound (now `response_timeout` gives a hung connection up).

Each replication mode runs on one module-scoped cluster (a start costs ~10 s, a failover ~11 s).
``ADK_POSTGRES_RECORD=1`` also writes the measured figures to benches/results/failover.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import pytest
from google.adk.errors._stale_session_error import StaleSessionError
from google.adk.events import Event
from google.adk.events.event_actions import EventActions
from google.adk.memory.memory_entry import MemoryEntry
from google.genai import types
from servers.patroni import PatroniCluster, PatroniNode, cluster_test_marks

from adk_postgres import PostgresSessionService
from adk_postgres.artifact_service import PostgresArtifactService
from adk_postgres.errors import AdkPostgresError, DatabaseConnectionError, PoolTimeoutError
from adk_postgres.memory_service import PostgresMemoryService

pytestmark = cluster_test_marks()

TTL = 10
CONNECT_TIMEOUT = 2.0
ACQUIRE_TIMEOUT = 10.0
# Connection trouble, and the stale session a failover causes, are what callers may see.
EXPECTED_ERRORS = {c.__name__ for c in (DatabaseConnectionError, PoolTimeoutError)}
# No call may take longer than one connect plus one wait for a pooled connection (+ margin).
CALL_BOUND = CONNECT_TIMEOUT + ACQUIRE_TIMEOUT + 3.0
APP = "failover"
RESULTS = Path(__file__).resolve().parents[1] / "benches" / "results" / "failover.json"


def _cluster(synchronous_mode: bool) -> Iterator[PatroniCluster]:
    with PatroniCluster(
        nodes=2, synchronous_mode=synchronous_mode, ttl=TTL, loop_wait=2, retry_timeout=5
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def sync_cluster() -> Iterator[PatroniCluster]:
    yield from _cluster(synchronous_mode=True)


@pytest.fixture(scope="module")
def async_cluster() -> Iterator[PatroniCluster]:
    yield from _cluster(synchronous_mode=False)


async def _two_nodes(cluster: PatroniCluster) -> None:
    """Brings a node killed by an earlier test back (as a replica), so this one can fail over."""
    for node in cluster.nodes:
        if not node.running:
            await asyncio.to_thread(cluster.restart_node, node, 90)
    await asyncio.to_thread(cluster.wait_ready, 60)


def _record(key: str, report: dict[str, Any]) -> None:
    print(f"\n{key}: {json.dumps(report, indent=1, sort_keys=True)}")
    if os.environ.get("ADK_POSTGRES_RECORD") != "1":
        return
    try:
        results = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        results = {}
    results[key] = {**report, "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


async def _fetch(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url, timeout=10, statement_cache_size=0)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


# --------------------------------------------------------------------------- append workload


def _event(writer: int, n: int, pad: str) -> Event:
    # app: and user: keys: concurrent appends are coalesced into shared flights.
    delta = {"app:beat": n, f"app:w{writer}": n, "user:n": n, "n": n}
    return Event(
        author="model",
        invocation_id=f"inv-{writer}-{n}",
        content=types.Content(role="model", parts=[types.Part(text=f"w{writer} n{n} {pad}")]),
        actions=EventActions(state_delta=delta),
    )


@dataclass
class Writer:
    index: int
    acked: list[tuple[str, int, float]] = field(default_factory=list)  # (id, n, ack time)
    attempted: set[str] = field(default_factory=set)
    failures: list[tuple[str, float, float]] = field(default_factory=list)  # (class, secs, at)
    longest: float = 0.0
    in_call_since: float | None = None  # a call (append or reload) is waiting since then
    failed_since_kill: bool = False
    recovered_at: float | None = None  # first ack after a failure that followed the kill
    # Failed calls whose event the reload showed stored (the commit outlived the reply).
    stored_though_failed: int = 0

    @property
    def user(self) -> str:
        return f"u{self.index}"


@dataclass
class Run:
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    kill_started: float | None = None


async def _reload(svc: PostgresSessionService, writer: Writer) -> Any:
    started = writer.in_call_since = time.monotonic()
    try:
        return await svc.get_session(app_name=APP, user_id=writer.user, session_id="s")
    except AdkPostgresError:
        return None  # the next append tells
    finally:
        writer.in_call_since = None
        writer.longest = max(writer.longest, time.monotonic() - started)


async def _append_loop(svc: PostgresSessionService, writer: Writer, run: Run, pad: str) -> None:
    session = await svc.get_session(app_name=APP, user_id=writer.user, session_id="s")
    assert session is not None
    n = 0
    event = _event(writer.index, n, pad)
    while not run.stop.is_set():
        started = writer.in_call_since = time.monotonic()
        writer.attempted.add(event.id)
        try:
            await svc.append_event(session, event)
        except Exception as exc:  # every class reaching the caller is counted (and checked)
            ended = time.monotonic()
            writer.in_call_since = None
            writer.longest = max(writer.longest, ended - started)
            writer.failures.append((type(exc).__name__, ended - started, ended))
            if run.kill_started is not None and ended > run.kill_started:
                writer.failed_since_kill = True
            if not isinstance(exc, StaleSessionError):
                await asyncio.sleep(0.05)
            # Retry the same event on a fresh copy: appends are idempotent by event id, so an
            # attempt that committed before its reply was lost is reported as stored, once.
            reloaded = await _reload(svc, writer)
            if reloaded is not None:
                session = reloaded
                if any(e.id == event.id for e in reloaded.events):
                    writer.stored_though_failed += 1
            continue
        ended = time.monotonic()
        writer.in_call_since = None
        writer.longest = max(writer.longest, ended - started)
        writer.acked.append((event.id, n, ended))
        # Back: a write after a failure since the kill, or one that waited through the outage
        # (a coalesced append can wait in its app's queue until the new leader answers).
        waited_through = run.kill_started is not None and ended > run.kill_started + 1.0
        if (writer.failed_since_kill or waited_through) and writer.recovered_at is None:
            writer.recovered_at = ended
        n += 1
        event = _event(writer.index, n, pad)


@dataclass
class Stored:
    """What the new leader holds for one writer's session."""

    ids: list[str]  # by seq (revision order)
    ns: list[int]
    state_n: Any
    user_n: Any


async def _stored(url: str, schema: str, writers: int) -> tuple[dict[int, Stored], dict[str, Any]]:
    s = f'"{schema}"'
    events = await _fetch(
        url,
        f"SELECT user_id, id, event_data::text AS data FROM {s}.events"
        " WHERE app_name = $1 ORDER BY user_id, seq",
        APP,
    )
    sessions = await _fetch(
        url, f"SELECT user_id, state::text AS state FROM {s}.sessions WHERE app_name = $1", APP
    )
    users = await _fetch(
        url, f"SELECT user_id, state::text AS state FROM {s}.user_states WHERE app_name = $1", APP
    )
    app_rows = await _fetch(
        url, f"SELECT state::text AS state FROM {s}.app_states WHERE app_name = $1", APP
    )
    session_state = {r["user_id"]: json.loads(r["state"]) for r in sessions}
    user_state = {r["user_id"]: json.loads(r["state"]) for r in users}
    result = {
        i: Stored(
            [], [], session_state.get(f"u{i}", {}).get("n"), user_state.get(f"u{i}", {}).get("n")
        )
        for i in range(writers)
    }
    for row in events:
        writer = int(row["user_id"][1:])
        event = Event.model_validate_json(row["data"])
        assert event.actions.state_delta is not None
        result[writer].ids.append(row["id"])
        result[writer].ns.append(event.actions.state_delta["n"])
    return result, json.loads(app_rows[0]["state"]) if app_rows else {}


def _node_processes(node: PatroniNode) -> list[psutil.Process]:
    """A node's Patroni and PostgreSQL processes (with their children)."""
    found: list[psutil.Process] = []
    for proc in (node.proc, node.observe_postmaster()):
        if proc is not None:
            found.append(proc)
            with contextlib.suppress(psutil.Error):
                found += proc.children(recursive=True)
    return found


def _walsenders(node: PatroniNode) -> list[psutil.Process]:
    """The WAL sender processes of a node's postmaster (one per streaming standby)."""
    postmaster = node.observe_postmaster()
    assert postmaster is not None
    found = []
    for child in postmaster.children():
        with contextlib.suppress(psutil.Error):
            if "walsender" in " ".join(child.cmdline()):
                found.append(child)
    assert found, f"no walsender on {node.name}"
    return found


async def _failover_under_appends(
    cluster: PatroniCluster,
    schema: str,
    writers: int,
    *,
    before_kill: float = 2.0,
    pad_bytes: int = 64,
    stall_walsender: float = 0.0,
    freeze: bool = False,
    deadline: float = TTL + 30,
    **service_options: Any,
) -> dict[str, Any]:
    """Runs ``writers`` appenders, kills the leader, waits until each has written again, and
    returns the raw material for the checks and the report.

    ``stall_walsender`` > 0 stops the leader's WAL senders (SIGSTOP) that long before the kill:
    the standby falls behind as over a congested link, while the leader, with asynchronous
    replication, keeps acknowledging commits. Kept well under Patroni's
    maximum_lag_on_failover (1 MiB), or the standby would refuse to take over.

    ``freeze`` stops the leader (SIGSTOP, Patroni and PostgreSQL) instead of killing it: a hung
    machine, whose kernel still completes TCP handshakes but nothing answers. The URL then
    lists the old leader last (see test_a_hung_first_host_does_not_block_new_connections for
    first). It is killed once the writers are back or ``deadline`` seconds after the fault.
    """
    old = cluster.leader()
    assert old is not None
    order = [*(n for n in cluster.nodes if n is not old), old] if freeze else None
    url = cluster.multi_host_url(target_session_attrs="read-write", nodes=order)
    svc = PostgresSessionService(
        url,
        schema=schema,
        pool_size=32,
        connect_timeout=CONNECT_TIMEOUT,
        acquire_timeout=ACQUIRE_TIMEOUT,
        cache_bytes=0,
        **service_options,
    )
    pad = "x" * pad_bytes
    run = Run()
    try:
        for i in range(writers):
            await svc.create_session(app_name=APP, user_id=f"u{i}", session_id="s")
        crew = [Writer(i) for i in range(writers)]
        tasks = [asyncio.create_task(_append_loop(svc, w, run, pad)) for w in crew]
        await asyncio.sleep(before_kill)
        assert cluster.leader() is old
        stalled = _walsenders(old) if stall_walsender else []
        try:
            for proc in stalled:
                proc.suspend()
            await asyncio.sleep(stall_walsender)
            run.kill_started = time.monotonic()
            if freeze:
                killed_at = time.monotonic()
                for proc in _node_processes(old):
                    with contextlib.suppress(psutil.Error):
                        proc.suspend()
            else:
                killed_at = await asyncio.to_thread(cluster.kill_leader)
        finally:
            for proc in stalled:  # only if the kill did not happen
                with contextlib.suppress(psutil.Error):
                    proc.resume()
        new = await asyncio.to_thread(cluster.wait_new_leader, old, TTL + 20)
        promoted_at = time.monotonic()
        while time.monotonic() < killed_at + deadline:
            if all(w.recovered_at is not None for w in crew) or any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.05)
        now = time.monotonic()
        waiting = [now - w.in_call_since for w in crew if w.in_call_since is not None]
        hung = sum(1 for d in waiting if d > CALL_BOUND)
        for w in crew:  # a call still waiting counts as long as it has waited so far
            if w.in_call_since is not None:
                w.longest = max(w.longest, now - w.in_call_since)
        run.stop.set()
        if freeze:
            await asyncio.to_thread(cluster.kill_node, old)  # releases calls stuck on it
        await asyncio.gather(*tasks)
    finally:
        run.stop.set()
        await svc.close()
    stored, app_state = await _stored(new.url(), schema, writers)
    return {
        "crew": crew,
        "stored": stored,
        "app_state": app_state,
        "killed_at": killed_at,
        "pad_bytes": pad_bytes,
        "stall_walsender_s": stall_walsender,
        "kill_started": run.kill_started,
        "promoted_at": promoted_at,
        "hung_calls_at_deadline": hung,
        "old": old,
        "new": new,
    }


def _summary(outcome: dict[str, Any]) -> dict[str, Any]:
    crew: list[Writer] = outcome["crew"]
    stored: dict[int, Stored] = outcome["stored"]
    killed_at: float = outcome["killed_at"]
    acked = [a for w in crew for a in w.acked]
    stored_ids = [i for s in stored.values() for i in s.ids]
    stored_set = set(stored_ids)
    recovered = [w.recovered_at for w in crew if w.recovered_at is not None]
    errors = Counter(f[0] for w in crew for f in w.failures)
    return {
        "writers": len(crew),
        "event_bytes": len(
            _event(0, 0, "x" * outcome["pad_bytes"]).model_dump_json(exclude_none=True)
        ),
        "acknowledged_before_kill": sum(1 for a in acked if a[2] <= killed_at),
        "acknowledged_after_kill": sum(1 for a in acked if a[2] > killed_at),
        "acknowledged": len(acked),
        "found": sum(1 for a in acked if a[0] in stored_set),
        "lost": sum(1 for a in acked if a[0] not in stored_set),
        "duplicates": len(stored_ids) - len(stored_set),
        "stored_unacknowledged": len(stored_set - {a[0] for a in acked}),
        "failed_calls_found_stored_on_reload": sum(w.stored_though_failed for w in crew),
        "errors_reaching_callers": dict(sorted(errors.items())),
        "longest_call_s": round(max(w.longest for w in crew), 3),
        "kill_to_new_leader_s": round(outcome["promoted_at"] - killed_at, 2),
        "kill_to_first_write_s": round(min(recovered) - killed_at, 2) if recovered else None,
        "kill_to_all_writers_back_s": (
            round(max(recovered) - killed_at, 2) if len(recovered) == len(crew) else None
        ),
        "writers_back": len(recovered),
        "hung_calls_at_deadline": outcome["hung_calls_at_deadline"],
        # The goal: every writer writes again within ttl + 1 s of the kill.
        "all_back_within_ttl_plus_1s": bool(
            len(recovered) == len(crew) and max(recovered) - killed_at <= TTL + 1
        ),
        "ttl": TTL,
        "stall_walsender_s": outcome["stall_walsender_s"],
    }


def _check_common(outcome: dict[str, Any], report: dict[str, Any]) -> None:
    """What holds in either replication mode."""
    crew: list[Writer] = outcome["crew"]
    stored: dict[int, Stored] = outcome["stored"]
    app_state: dict[str, Any] = outcome["app_state"]
    assert report["duplicates"] == 0
    assert report["writers_back"] == len(crew), "some writer never wrote again after the kill"
    # Only connection trouble and the stale session it causes reach callers.
    unexpected = set(report["errors_reaching_callers"]) - EXPECTED_ERRORS - {"StaleSessionError"}
    assert not unexpected, report["errors_reaching_callers"]
    assert report["longest_call_s"] < CALL_BOUND, "a call hung"
    for w in crew:
        s = stored[w.index]
        acked_ids = [a[0] for a in w.acked]
        # Nothing appears that this writer did not send.
        assert set(s.ids) <= w.attempted, w.index
        # Acknowledged events are stored in acknowledgement order (a subsequence of storage).
        position = {event_id: k for k, event_id in enumerate(s.ids)}
        found = [position[i] for i in acked_ids if i in position]
        assert found == sorted(found), f"writer {w.index}: acknowledged events reordered"
        # Each event's n follows the last stored one (a retry never skips ahead twice).
        assert s.ns == sorted(s.ns) and len(set(s.ns)) == len(s.ns), w.index
        # State written in the same statement as the last stored event.
        assert s.ids, w.index
        assert s.state_n == s.ns[-1], (w.index, s.state_n, s.ns[-1])
        assert s.user_n == s.ns[-1], (w.index, s.user_n, s.ns[-1])
        assert app_state.get(f"w{w.index}") == s.ns[-1], (w.index, app_state.get(f"w{w.index}"))


# --------------------------------------------------------------------------- tests: sync cluster


async def _wait_replayed(leader: PatroniNode, standby: PatroniNode, timeout: float = 10) -> None:
    """Waits until the standby has replayed everything the leader has written so far."""
    lsn = (await _fetch(leader.url(), "SELECT pg_current_wal_lsn() AS l"))[0]["l"]
    deadline = time.monotonic() + timeout
    sql = "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done"
    while not (await _fetch(standby.url(), sql, lsn))[0]["done"]:
        if time.monotonic() > deadline:
            pytest.fail(f"{standby.name} did not replay up to {lsn}")
        await asyncio.sleep(0.05)


async def test_standby_read_shows_older_state_while_replay_is_paused(
    sync_cluster: PatroniCluster,
) -> None:
    """Today's behaviour, documented: a service on a standby serves what it has replayed (no
    read-your-writes routing yet). Synchronous commit waits for the standby's flush, not its
    replay, so the primary has acknowledged an event the standby does not show."""
    cluster = sync_cluster
    await _two_nodes(cluster)
    leader, standby = cluster.leader(), cluster.replicas()[0]
    assert leader is not None
    schema = "failover_replica"
    await _wait_replayed(leader, standby)  # so the standby already has the schema
    primary = PostgresSessionService(leader.url(), schema=schema, cache_bytes=0)
    # The default cache: a warm read must not hide what the standby has (or lacks).
    reader = PostgresSessionService(standby.url(), schema=schema)
    try:
        session = await primary.create_session(app_name=APP, user_id="r", session_id="s")
        await primary.append_event(session, _event(0, 1, "first"))
        # The reader migrates (checks the schema version) on first use: not before the
        # standby has replayed the tables, which it could not create itself.
        await _wait_replayed(leader, standby)

        async def standby_events() -> int:
            got = await reader.get_session(app_name=APP, user_id="r", session_id="s")
            return -1 if got is None else len(got.events)

        deadline = time.monotonic() + 10
        while await standby_events() != 1:
            assert time.monotonic() < deadline, "the standby never showed the first event"
            await asyncio.sleep(0.1)

        await asyncio.to_thread(cluster.pause_replay, standby)
        try:
            await primary.append_event(session, _event(0, 2, "second"))
            on_primary = await primary.get_session(app_name=APP, user_id="r", session_id="s")
            assert on_primary is not None and len(on_primary.events) == 2
            assert on_primary.state["n"] == 2
            await asyncio.sleep(0.5)
            stale = await reader.get_session(app_name=APP, user_id="r", session_id="s")
            assert stale is not None
            assert [e.id for e in stale.events] == [on_primary.events[0].id]
            assert stale.state["n"] == 1 and stale.state["app:beat"] == 1
        finally:
            await asyncio.to_thread(cluster.resume_replay, standby)

        deadline = time.monotonic() + 10
        while await standby_events() != 2:
            assert time.monotonic() < deadline, "the standby never caught up after resume"
            await asyncio.sleep(0.1)
        caught_up = await reader.get_session(app_name=APP, user_id="r", session_id="s")
        assert caught_up is not None and caught_up.state == on_primary.state
        assert [e.id for e in caught_up.events] == [e.id for e in on_primary.events]
    finally:
        await primary.close()
        await reader.close()


async def test_sync_failover_loses_no_acknowledged_append(sync_cluster: PatroniCluster) -> None:
    await _two_nodes(sync_cluster)
    outcome = await _failover_under_appends(sync_cluster, "failover_sync", writers=32)
    report = _summary(outcome)
    _record("sync_failover", report)
    _check_common(outcome, report)
    assert report["lost"] == 0, report
    assert report["found"] == report["acknowledged"]
    # Every stored event is acknowledged: each writer retried until its event was reported.
    for w in outcome["crew"]:
        acked = [a[0] for a in w.acked]
        assert outcome["stored"][w.index].ids[: len(acked)] == acked, w.index
    # Patroni promotes at most ~ttl + 0.5 s after the kill (the leader key was refreshed up to
    # loop_wait before it); the pool must follow at once. The goal is ttl + 1 s (reported);
    # the assertion leaves room for a loaded machine.
    assert report["kill_to_all_writers_back_s"] < TTL + 3, report


async def _save_loop(
    svc: PostgresArtifactService,
    stop: asyncio.Event,
    outcomes: list[tuple[str, bytes, Any, float]],
) -> None:
    """Saves new artifacts (some chunked) until stopped; records (filename, bytes, version or
    the exception, time of the outcome)."""
    rng = random.Random(7)
    k = 0
    while not stop.is_set():
        data = rng.randbytes(rng.choice([2_000, 300_000, 1_500_000]))
        filename = f"during-{k}.bin"
        k += 1
        try:
            version: Any = await svc.save_artifact(
                app_name=APP,
                user_id="a",
                session_id="s",
                filename=filename,
                artifact=types.Part.from_bytes(data=data, mime_type="application/octet-stream"),
            )
        except Exception as exc:  # classified by the test
            version = exc
            await asyncio.sleep(0.05)
        outcomes.append((filename, data, version, time.monotonic()))


async def test_artifacts_and_memory_survive_a_failover(sync_cluster: PatroniCluster) -> None:
    cluster = sync_cluster
    await _two_nodes(cluster)
    schema = "failover_blobs"
    url = cluster.multi_host_url(target_session_attrs="read-write")
    options: dict[str, Any] = {
        "schema": schema,
        "connect_timeout": CONNECT_TIMEOUT,
        "acquire_timeout": ACQUIRE_TIMEOUT,
    }
    artifacts = PostgresArtifactService(url, **options)
    memory = PostgresMemoryService(url, **options)
    rng = random.Random(1)
    big = rng.randbytes(1_500_000)  # > 1 MiB: stored as chunk rows in one transaction
    saved: dict[tuple[str, int], bytes] = {}
    outcomes: list[tuple[str, bytes, Any, float]] = []
    stop = asyncio.Event()
    try:
        for name, payload in [
            ("small.txt", b"hello"),
            ("small.txt", b"hello again"),
            ("big.bin", big),
        ]:
            version = await artifacts.save_artifact(
                app_name=APP,
                user_id="a",
                session_id="s",
                filename=name,
                artifact=types.Part.from_bytes(data=payload, mime_type="application/octet-stream"),
            )
            saved[(name, version)] = payload
        assert sorted(saved) == [("big.bin", 0), ("small.txt", 0), ("small.txt", 1)]
        await memory.add_memory(
            app_name=APP,
            user_id="a",
            memories=[
                MemoryEntry(
                    author="user",
                    content=types.Content(role="user", parts=[types.Part(text=text)]),
                )
                for text in ["the zebra crossing is blue", "quokkas smile at breakfast"]
            ],
        )
        await memory.add_events_to_memory(
            app_name=APP,
            user_id="a",
            session_id="s",
            events=[
                Event(
                    author="model",
                    invocation_id="inv",
                    content=types.Content(role="model", parts=[types.Part(text=text)]),
                )
                for text in ["narwhal tusks are teeth", "axolotls regrow limbs"]
            ],
        )

        saver = asyncio.create_task(_save_loop(artifacts, stop, outcomes))
        await asyncio.sleep(1.0)
        old = cluster.leader()
        assert old is not None
        killed_at = await asyncio.to_thread(cluster.kill_leader)
        new = await asyncio.to_thread(cluster.wait_new_leader, old, TTL + 20)
        # Until a few saves succeed on the new leader.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            recent = [o for o in outcomes[-3:] if isinstance(o[2], int)]
            if len(recent) == 3 and len(outcomes) > 3:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await saver
        failed_at = min((o[3] for o in outcomes if not isinstance(o[2], int)), default=None)
        back_at = min(
            (o[3] for o in outcomes if isinstance(o[2], int) and failed_at and o[3] > failed_at),
            default=None,
        )

        for (name, version), payload in saved.items():
            part = await artifacts.load_artifact(
                app_name=APP, user_id="a", session_id="s", filename=name, version=version
            )
            assert part is not None and part.inline_data is not None, (name, version)
            assert part.inline_data.data == payload, (name, version)
        for query, word in [("zebra", "zebra"), ("quokkas", "quokkas"), ("narwhal", "narwhal")]:
            found = await memory.search_memory(app_name=APP, user_id="a", query=query)
            texts = [m.content.parts[0].text for m in found.memories if m.content.parts]
            assert any(word in (t or "") for t in texts), (query, texts)

        # Saves caught by the failover: a typed error, or stored whole. Never half-stored.
        errors: Counter[str] = Counter()
        failed_but_stored = 0
        for filename, data, version, _ in outcomes:
            versions = await artifacts.list_versions(
                app_name=APP, user_id="a", session_id="s", filename=filename
            )
            if isinstance(version, BaseException):
                assert isinstance(version, AdkPostgresError), repr(version)
                errors[type(version).__name__] += 1
                assert versions in ([], [0]), (filename, versions)
                failed_but_stored += len(versions)
            else:
                assert versions == [version] == [0], (filename, versions)
            for v in versions:
                part = await artifacts.load_artifact(
                    app_name=APP, user_id="a", session_id="s", filename=filename, version=v
                )
                assert part is not None and part.inline_data is not None, filename
                assert part.inline_data.data == data, filename
        report = {
            "saves_during_run": len(outcomes),
            "saves_acknowledged": sum(isinstance(o[2], int) for o in outcomes),
            "saves_failed": sum(errors.values()),
            "saves_failed_but_stored": failed_but_stored,
            "errors_reaching_callers": dict(sorted(errors.items())),
            "kill_to_first_save_s": round(back_at - killed_at, 2) if back_at else None,
            "new_leader": new.name,
        }
        _record("artifacts_memory_failover", report)
        assert set(errors) <= EXPECTED_ERRORS, errors
    finally:
        stop.set()
        await artifacts.close()
        await memory.close()


def _freeze(node: PatroniNode) -> None:
    """SIGSTOPs a node's Patroni and PostgreSQL: a hung machine. Its kernel still completes
    TCP handshakes (the listen backlog) and acknowledges data; nothing answers. Patroni's
    leader key expires and the standby takes over. The node is killed afterwards, never
    resumed (that would make two primaries)."""
    for proc in _node_processes(node):
        with contextlib.suppress(psutil.Error):
            proc.suspend()


async def test_a_hung_first_host_does_not_block_new_connections(
    sync_cluster: PatroniCluster,
) -> None:
    cluster = sync_cluster
    await _two_nodes(cluster)
    old = cluster.leader()
    assert old is not None
    options: dict[str, Any] = {
        "schema": "failover_hung_first",
        "cache_bytes": 0,
        "connect_timeout": CONNECT_TIMEOUT,
        "acquire_timeout": ACQUIRE_TIMEOUT,
    }
    seed = PostgresSessionService(cluster.multi_host_url(), **options)
    try:
        await seed.create_session(app_name=APP, user_id="seed")  # the schema, migrated
    finally:
        await seed.close()
    try:
        _freeze(old)
        new = await asyncio.to_thread(cluster.wait_new_leader, old, TTL + 20)
        outcomes: dict[str, tuple[str, float]] = {}
        for label, nodes in [("hung-last", [new, old]), ("hung-first", [old, new])]:
            svc = PostgresSessionService(cluster.multi_host_url(nodes=nodes), **options)
            started = time.monotonic()
            try:
                await asyncio.wait_for(svc.create_session(app_name=APP, user_id=label), CALL_BOUND)
                outcome = "created"
            except Exception as exc:  # reported below
                outcome = type(exc).__name__
            finally:
                await svc.close()
            outcomes[label] = (outcome, round(time.monotonic() - started, 2))
    finally:
        await asyncio.to_thread(cluster.kill_node, old)
    print(f"\nnew connections with the hung old leader in the URL: {outcomes}")
    if outcomes["hung-last"][0] != "created":
        pytest.fail(f"the control case failed: {outcomes}")
    # Trying the hung host costs at most connect_timeout; then the next host answers.
    assert outcomes["hung-first"][0] == "created", outcomes
    assert outcomes["hung-first"][1] < 2 * CONNECT_TIMEOUT + 1, outcomes


async def test_calls_on_a_hung_leader_end_within_the_timeouts(
    sync_cluster: PatroniCluster,
) -> None:
    """The leader hangs instead of dying, the URL lists it last. Calls in flight on it must
    end (with an error) within the configured timeouts, and writes come back once the
    standby is promoted."""
    await _two_nodes(sync_cluster)
    # As the README advises for a cluster: a response timeout gives a hung connection up.
    outcome = await _failover_under_appends(
        sync_cluster,
        "failover_hung",
        writers=8,
        freeze=True,
        deadline=TTL + 15,
        response_timeout=3.0,
    )
    report = _summary(outcome)
    _record("sync_failover_hung_leader", report)
    if report["lost"] or report["duplicates"]:
        pytest.fail(f"acknowledged appends lost or duplicated: {report}")
    assert report["hung_calls_at_deadline"] == 0, report
    _check_common(outcome, report)


# --------------------------------------------------------------------------- tests: async cluster


@pytest.mark.parametrize("stall", [0.0, 0.2], ids=["as-is", "standby-200ms-behind"])
async def test_async_failover_can_lose_acknowledged_commits(
    async_cluster: PatroniCluster, stall: float
) -> None:
    """Asynchronous replication: the new leader may lack the last commits the old one
    acknowledged. Measured and reported, not asserted: what must hold is that the loss is the
    tail of each session's acknowledged history before the kill (never a hole), and nothing
    is duplicated or reordered. On loopback the standby is rarely more than a few commits
    behind; the second case holds the leader's WAL senders for 200 ms before the kill (a
    congested link), which makes the loss visible."""
    await _two_nodes(async_cluster)
    outcome = await _failover_under_appends(
        async_cluster,
        f"failover_async_{int(stall * 1000)}",
        writers=16,
        pad_bytes=1024,
        stall_walsender=stall,
    )
    report = _summary(outcome)
    crew: list[Writer] = outcome["crew"]
    stored: dict[int, Stored] = outcome["stored"]
    per_writer_lost = []
    for w in crew:
        present = set(stored[w.index].ids)
        # Acknowledged by the old leader: before this writer's first failure after the kill.
        first_failure = min(
            (f[2] for f in w.failures if f[2] > outcome["kill_started"]), default=float("inf")
        )
        before = [a[0] for a in w.acked if a[2] < first_failure]
        after = [a[0] for a in w.acked if a[2] >= first_failure]
        kept = [i for i in before if i in present]
        assert before[: len(kept)] == kept, f"writer {w.index}: a hole, not a lost tail"
        assert all(i in present for i in after), f"writer {w.index}: lost a post-failover write"
        per_writer_lost.append(len(before) - len(kept))
    report["lost_per_writer"] = per_writer_lost
    _record(f"async_failover_stall_{int(stall * 1000)}ms", report)
    _check_common(outcome, report)


async def test_warm_read_after_async_failover_matches_storage(
    async_cluster: PatroniCluster,
) -> None:
    """A process's session cache holds a revision the new leader never received (async
    replication lost it); another writer then appends on the new leader past that revision
    number. A warm read must return the stored history, not the lost events plus the newest
    ones (DESIGN §1.7: the cache never serves data that is not stored)."""
    cluster = async_cluster
    await _two_nodes(cluster)
    url = cluster.multi_host_url(target_session_attrs="read-write")
    options: dict[str, Any] = {
        "schema": "failover_cache",
        "connect_timeout": CONNECT_TIMEOUT,
        "acquire_timeout": ACQUIRE_TIMEOUT,
    }
    cached = PostgresSessionService(url, **options)  # the default cache
    other = PostgresSessionService(url, cache_bytes=0, **options)  # another process, say
    try:
        session = await cached.create_session(app_name=APP, user_id="c", session_id="s")
        for n in range(5):
            await cached.append_event(session, _event(0, n, "replicated"))
        leader = cluster.leader()
        assert leader is not None
        await _wait_replayed(leader, cluster.replicas()[0])
        stalled = _walsenders(leader)
        try:
            for proc in stalled:
                proc.suspend()
            for n in range(5, 10):  # acknowledged by the leader only
                await cached.append_event(session, _event(0, n, "lost"))
            warm = await cached.get_session(app_name=APP, user_id="c", session_id="s")
            if warm is None or len(warm.events) != 10:
                pytest.fail("the cached service did not read its ten events")
            await asyncio.to_thread(cluster.kill_leader)
        finally:
            for proc in stalled:
                with contextlib.suppress(psutil.Error):
                    proc.resume()
        new = await asyncio.to_thread(cluster.wait_new_leader, leader, TTL + 20)

        # The other writer sees what the new leader has and appends past revision 10.
        deadline = time.monotonic() + 20
        while True:
            try:
                fresh = await other.get_session(app_name=APP, user_id="c", session_id="s")
                break
            except AdkPostgresError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        if fresh is None or len(fresh.events) != 5:
            pytest.fail("the new leader should hold exactly the five replicated events")
        for n in range(100, 107):
            await other.append_event(fresh, _event(1, n, "after"))

        stored = await _fetch(
            new.url(),
            'SELECT id FROM "failover_cache".events WHERE app_name = $1 AND user_id = $2'
            " ORDER BY seq",
            APP,
            "c",
        )
        stored_ids = [r["id"] for r in stored]
        read = await cached.get_session(app_name=APP, user_id="c", session_id="s")
        if len(stored_ids) != 12 or read is None:
            pytest.fail(f"{len(stored_ids)} events stored, read {read!r}")
        got = [e.actions.state_delta["n"] for e in read.events]
        print(f"\nwarm read after the async failover: events n={got}, state n={read.state['n']}")
        assert read.state["n"] == 106  # the session row is read from storage
        # Fails today: n=[0..9, 105, 106] — the five lost events, then those stored after
        # revision 10; the events stored at revisions 6-10 by the other writer are missing.
        assert got == [*range(5), *range(100, 107)]
        assert [e.id for e in read.events] == stored_ids
    finally:
        await cached.close()
        await other.close()
