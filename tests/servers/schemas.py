"""A scratch schema on a PostgreSQL server: a fresh name, dropped (with everything in it)
afterwards. For fixtures that are not async (module-scoped ones, tests that start servers):

    @pytest.fixture(scope="module")
    def schema(pg_direct_url: str) -> Iterator[str]:
        with scratch_schema(pg_direct_url) as name:
            yield name
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg


@contextmanager
def scratch_schema(url: str, prefix: str = "t_") -> Iterator[str]:
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:

        async def drop() -> None:
            conn = await asyncpg.connect(url)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
            finally:
                await conn.close()

        asyncio.run(drop())
