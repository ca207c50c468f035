"""Artifact save/load of 1 KB, 1 MB and 50 MB, for the peers that have a PostgreSQL artifact
service at run time (others are skipped with the reason).

Every save stores different bytes (random payloads, numbered), so content deduplication does
not turn saves into no-ops. 50 MB runs at concurrency 1 only: 32 concurrent 50 MB saves put
1.6 GB in flight, which measures this 2-core machine's memory bandwidth more than the services.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from functools import partial
from typing import Any

import pytest
from conftest import PeerUnderTest
from google.genai import types
from harness import APP, CONCURRENCY, Op, Settings, Unavailable, ops_per_worker, run_benchmark
from pytest_benchmark.fixture import BenchmarkFixture

SIZES = {"1KB": 1024, "1MB": 1024 * 1024, "50MB": 50 * 1024 * 1024}
MIME = "application/octet-stream"


def artifact_service(peer: PeerUnderTest, loop: asyncio.AbstractEventLoop) -> Any:
    """The peer's artifact service, opened once per peer; skips the test when it has none."""
    if "artifacts" not in peer.extra_services:
        try:
            peer.extra_services["artifacts"] = loop.run_until_complete(
                peer.peer.open_artifact_service()
            )
        except Unavailable as exc:
            peer.extra_services["artifacts"] = exc
    service = peer.extra_services["artifacts"]
    if isinstance(service, Unavailable):
        pytest.skip(str(service))
    return service


def unique_part(base: bytes, n: int) -> types.Part:
    """``base`` with its first 8 bytes replaced by ``n``: every save stores new content (a
    content-addressed store would otherwise store identical bytes once and skip the write)."""
    return types.Part.from_bytes(data=n.to_bytes(8, "little") + base[8:], mime_type=MIME)


def check_size(size: str, concurrency: int) -> None:
    if size == "50MB" and concurrency > 1:
        pytest.skip("50 MB artifacts run at concurrency 1 only")


@pytest.mark.parametrize("concurrency", CONCURRENCY)
@pytest.mark.parametrize("size", list(SIZES))
def test_save_artifact(
    benchmark: BenchmarkFixture,
    bench_loop: asyncio.AbstractEventLoop,
    settings: Settings,
    peer: PeerUnderTest,
    size: str,
    concurrency: int,
) -> None:
    check_size(size, concurrency)
    service = artifact_service(peer, bench_loop)
    base = os.urandom(SIZES[size])
    per_worker = ops_per_worker(settings, concurrency, heavy=size != "1KB")
    numbers = itertools.count()

    def save(worker: int) -> Op:
        n = next(numbers)
        return partial(
            service.save_artifact,
            app_name=APP,
            user_id=f"saver-{worker}",
            session_id=f"session-{worker}",
            filename=f"blob-{size}-{n}.bin",
            artifact=unique_part(base, n),
        )

    async def prepare() -> list[list[Op]]:
        return [[save(worker) for _ in range(per_worker)] for worker in range(concurrency)]

    run_benchmark(
        benchmark,
        bench_loop,
        settings,
        prepare,
        peer=peer.name,
        workload=f"save_artifact_{size}",
        concurrency=concurrency,
        size=size,
    )


@pytest.mark.parametrize("concurrency", CONCURRENCY)
@pytest.mark.parametrize("size", list(SIZES))
def test_load_artifact(
    benchmark: BenchmarkFixture,
    bench_loop: asyncio.AbstractEventLoop,
    settings: Settings,
    peer: PeerUnderTest,
    size: str,
    concurrency: int,
) -> None:
    check_size(size, concurrency)
    service = artifact_service(peer, bench_loop)
    base = os.urandom(SIZES[size])
    per_worker = ops_per_worker(settings, concurrency, heavy=size != "1KB")
    filename = f"read-{size}.bin"

    async def save_all() -> None:
        for worker in range(concurrency):
            await service.save_artifact(
                app_name=APP,
                user_id=f"loader-{worker}",
                session_id=f"session-{worker}",
                filename=filename,
                artifact=unique_part(base, worker),
            )

    bench_loop.run_until_complete(save_all())

    async def load(worker: int) -> None:
        loaded = await service.load_artifact(
            app_name=APP,
            user_id=f"loader-{worker}",
            session_id=f"session-{worker}",
            filename=filename,
        )
        assert loaded is not None and loaded.inline_data is not None
        assert len(loaded.inline_data.data or b"") == SIZES[size]

    async def prepare() -> list[list[Op]]:
        return [[partial(load, worker) for _ in range(per_worker)] for worker in range(concurrency)]

    run_benchmark(
        benchmark,
        bench_loop,
        settings,
        prepare,
        peer=peer.name,
        workload=f"load_artifact_{size}",
        concurrency=concurrency,
        size=size,
    )
