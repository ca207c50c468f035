"""The throwaway-server harness in tests/servers: PgBouncer in front of a local PostgreSQL, and a
Patroni cluster on etcd with failover, replay pause, and a clean stop.

Each test skips, saying why, where the programs (Debian's pgbouncer, patroni, etcd-server; the
distribution's PostgreSQL) or the ``postgres`` OS user are missing. .ci/run installs them.
"""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import pytest
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
