"""The throwaway-server harness in tests/servers: PgBouncer in front of a local PostgreSQL, and a
Patroni cluster on etcd with failover, replay pause, and a clean stop.

Each test skips, saying why, where the programs (Debian's pgbouncer, patroni, etcd-server; the
distribution's PostgreSQL) or the ``postgres`` OS user are missing. .ci/run installs them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import asyncpg
import psutil
import pytest
from servers.patroni import PatroniCluster, missing_patroni
from servers.pgbouncer import PgBouncer, PoolMode, missing_pgbouncer
from servers.postgres import LocalServer


@pytest.fixture(scope="module")
def local_server() -> Iterator[LocalServer]:
    reason = missing_pgbouncer()
    if reason:
        pytest.skip(reason)
    with LocalServer() as server:
        yield server


@pytest.mark.parametrize("pool_mode", ["transaction", "statement"])
async def test_pgbouncer_answers_asyncpg(local_server: LocalServer, pool_mode: PoolMode) -> None:
    with PgBouncer("127.0.0.1", local_server.port, pool_mode=pool_mode) as bouncer:
        conn = await asyncpg.connect(bouncer.url(), statement_cache_size=0, timeout=10)
        try:
            assert await conn.fetchval("SELECT $1::int + 1", 41) == 42
            # The backend behind it is the local server, reached through PgBouncer's port.
            assert await conn.fetchval("SELECT current_setting('port')::int") == local_server.port
            assert bouncer.port != local_server.port
        finally:
            await conn.close()


# --------------------------------------------------------------------------- Patroni

TTL = 10


@pytest.fixture(scope="module")
def cluster() -> Iterator[PatroniCluster]:
    """One 2-node synchronous cluster with a PgBouncer, shared by the tests below in file order
    (the failover test comes last among them: it leaves one node until it restarts the other)."""
    reason = missing_patroni(with_pgbouncer=True)
    if reason:
        pytest.skip(reason)
    with PatroniCluster(nodes=2, synchronous_mode=True, ttl=TTL, with_pgbouncer=True) as cluster:
        yield cluster


async def _fetch(url: str, sql: str, *args: object) -> object:
    conn = await asyncpg.connect(url, timeout=10, statement_cache_size=0)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def _visible(url: str, key: str, timeout: float) -> bool:
    """Whether the row ``key`` of harness_t shows up at ``url`` within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if await _fetch(url, "SELECT count(*) FROM harness_t WHERE key = $1", key):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.1)


async def test_patroni_leader_takes_writes_replica_sees_them(cluster: PatroniCluster) -> None:
    leader, replicas = cluster.leader(), cluster.replicas()
    assert leader is not None and len(replicas) == 1
    replica = replicas[0]
    roles = {m["name"]: m["role"] for m in cluster.cluster_status()["members"]}
    assert roles == {leader.name: "leader", replica.name: "sync_standby"}

    # The replica comes first in the URL: target_session_attrs=read-write must skip it.
    url = cluster.multi_host_url("read-write", nodes=[replica, leader])
    assert url.startswith(f"postgresql://postgres@127.0.0.1:{replica.pg_port},127.0.0.1:")
    conn = await asyncpg.connect(url, timeout=10)
    try:
        assert await conn.fetchval("SELECT inet_server_port()") == leader.pg_port
        await conn.execute("CREATE TABLE harness_t (key text PRIMARY KEY)")
        await conn.execute("INSERT INTO harness_t VALUES ('before-failover')")
    finally:
        await conn.close()
    assert await _fetch(replica.url(), "SELECT pg_is_in_recovery()") is True
    assert await _visible(replica.url(), "before-failover", timeout=5)

    # libpq's other multi-host form, and PgBouncer in front of the leader, reach the leader too.
    query_url = cluster.multi_host_url("read-write", nodes=[replica, leader], query_form=True)
    assert await _fetch(query_url, "SELECT inet_server_port()") == leader.pg_port
    assert await _fetch(cluster.pgbouncer_url, "SELECT inet_server_port()") == leader.pg_port


async def test_patroni_pause_replay_hides_new_rows(cluster: PatroniCluster) -> None:
    leader, replica = cluster.leader(), cluster.replicas()[0]
    assert leader is not None
    cluster.pause_replay(replica)
    try:
        # Synchronous commit waits for the standby's flush, not its replay: it returns.
        await _fetch(leader.url(), "INSERT INTO harness_t VALUES ('while-paused') RETURNING 1")
        assert not await _visible(replica.url(), "while-paused", timeout=3)
        # Still paused: Patroni left it alone (maintenance mode; see servers/patroni.py).
        state = await _fetch(replica.url(), "SELECT pg_get_wal_replay_pause_state()")
        assert state == "paused"
    finally:
        cluster.resume_replay(replica)
    assert await _visible(replica.url(), "while-paused", timeout=10)


async def test_patroni_failover_after_leader_killed(cluster: PatroniCluster) -> None:
    old = cluster.leader()
    assert old is not None
    url = cluster.multi_host_url("read-write")
    killed_at = cluster.kill_leader()
    assert not old.running

    new = cluster.wait_new_leader(old, timeout=TTL + 20)
    promoted_at = time.monotonic()
    # Writes through the multi-host URL: the dead node is tried and skipped.
    deadline = promoted_at + 15
    while True:
        try:
            await _fetch(url, "INSERT INTO harness_t VALUES ('after-failover') RETURNING 1")
            break
        except (OSError, asyncpg.PostgresError, TimeoutError):
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.2)
    writable_at = time.monotonic()
    failover = writable_at - killed_at
    print(
        f"\nfailover: kill -> new leader {promoted_at - killed_at:.1f}s,"
        f" -> write accepted {failover:.1f}s (ttl={TTL}, loop_wait={cluster.loop_wait})"
    )
    assert new is not old and new.name != old.name
    assert failover < TTL + 10
    # What the old leader committed synchronously survived it.
    assert await _visible(new.url(), "while-paused", timeout=0)

    # PgBouncer, re-pointed, reaches the new leader on the same port.
    bouncer_port = cluster.pgbouncer.port if cluster.pgbouncer else None
    assert cluster.repoint_pgbouncer() is new
    assert cluster.pgbouncer is not None and cluster.pgbouncer.port == bouncer_port
    assert await _fetch(cluster.pgbouncer_url, "SELECT inet_server_port()") == new.pg_port

    # The killed node comes back as a replica of the new leader.
    started = time.monotonic()
    cluster.restart_node(old, timeout=60)
    print(f"old leader rejoined as a replica in {time.monotonic() - started:.1f}s")
    assert cluster.leader() is new
    assert await _visible(old.url(), "after-failover", timeout=10)


# --------------------------------------------------------------------------- cleanup


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_stop_ends_every_process_and_removes_the_directory() -> None:
    reason = missing_patroni(with_pgbouncer=True)
    if reason:
        pytest.skip(reason)
    cluster = PatroniCluster(nodes=2, fsync=False, with_pgbouncer=True)
    try:
        cluster.start()
        base = cluster.base
        assert base is not None and base.is_dir()
        # An orphan: a replica's Patroni dies, its postmaster runs on.
        replica = cluster.replicas()[0]
        orphan = replica.observe_postmaster()
        cluster.kill_node(replica, postgres_too=False)
        assert orphan is not None and orphan.is_running() and not replica.running
        procs = cluster.processes()
        # etcd, 2 Patronis, 2 postmasters, PgBouncer.
        assert len({p.pid for p in procs}) >= 6, procs
        assert _alive(procs)
    finally:
        cluster.stop()
    assert _alive(procs) == []
    assert not base.exists()


def test_failed_start_leaves_nothing() -> None:
    reason = missing_patroni()
    if reason:
        pytest.skip(reason)
    cluster = PatroniCluster(nodes=2, fsync=False, start_timeout=2)
    # Bootstrapping takes longer than 2 s: start() times out and must clean up after itself.
    with pytest.raises(TimeoutError):
        cluster.start()
    procs = cluster.processes()
    assert procs, "etcd and Patroni were started"
    assert _alive(procs) == []
    assert cluster.base is None
