"""The asyncio bridge never leaves a caller waiting: a panic in Rust code reaches the awaiting
call as an exception, and a failure while resolving one future does not delay the others."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from typing import Any

import asyncpg
import pytest

from adk_postgres import PostgresSessionService, _native
from adk_postgres.errors import InternalError


@pytest.mark.parametrize("stage", ["run", "convert"])
async def test_a_panic_reaches_the_caller_as_an_exception(stage: str) -> None:
    with pytest.raises(InternalError, match="panicked"):
        await asyncio.wait_for(_native._panicking_call(stage), timeout=10)
    # The bridge still works afterwards.
    with pytest.raises(InternalError):
        await asyncio.wait_for(_native._panicking_call("run"), timeout=10)


class _ExplodingFuture(asyncio.Future):  # type: ignore[type-arg]
    def set_result(self, result: Any) -> None:
        raise RuntimeError("this future refuses its result")


class _Loop(asyncio.SelectorEventLoop):
    """Hands out one exploding future when asked to."""

    explode_next = False

    def create_future(self) -> asyncio.Future[Any]:
        if self.explode_next:
            self.explode_next = False
            return _ExplodingFuture(loop=self)
        return super().create_future()


def test_a_future_that_fails_to_resolve_does_not_delay_the_others(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reported: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: reported.append(u.exc_value))
    loop = _Loop()
    schema = f"t_{uuid.uuid4().hex[:12]}"

    async def scenario() -> None:
        svc = PostgresSessionService(pg_url, schema=schema, pool_size=2, cache_bytes=0)
        await svc.database.migrate()
        store = await svc.database.sessions()
        try:
            loop.explode_next = True
            first = store.get_user_state("app", "u1")
            second = store.get_user_state("app", "u2")
            # Block the loop while both calls finish on the Rust side, so that one drain of
            # the bridge meets both: the first fails to resolve, the second must not wait.
            time.sleep(1.0)
            assert await asyncio.wait_for(second, timeout=5) is None
            assert not first.done()  # its result was refused; nothing else happened to it
        finally:
            await svc.close()
            conn = await asyncpg.connect(pg_url)
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.close()

    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert any(isinstance(e, RuntimeError) and "refuses its result" in str(e) for e in reported), (
        reported
    )
