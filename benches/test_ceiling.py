"""The server's own ceiling: ``pgbench -N`` (commit-bound writes) and ``pgbench -S`` (reads).

Runs in a scratch database (``pgbench -i -s 1``) on the same server, at the same concurrency
levels as the workloads, so the report can say how close each peer gets to what PostgreSQL
itself does on this machine. Set ``BENCH_PGBENCH=0`` to leave it out.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from conftest import create_database, drop_database
from harness import CONCURRENCY, Settings
from pytest_benchmark.fixture import BenchmarkFixture

PGBENCH = shutil.which("pgbench") or "/usr/bin/pgbench"
MODES = {"-N": "pgbench -N (writes)", "-S": "pgbench -S (reads)"}


@pytest.fixture(scope="session")
def pgbench_url(
    bench_loop: asyncio.AbstractEventLoop, server_url: str, run_id: str
) -> Iterator[str]:
    if os.environ.get("BENCH_PGBENCH", "1") == "0":
        pytest.skip("BENCH_PGBENCH=0")
    if not os.path.exists(PGBENCH):
        pytest.skip("pgbench is not installed")
    name = f"bench_{run_id}_pgbench"
    url = bench_loop.run_until_complete(create_database(server_url, name))
    try:
        subprocess.run([PGBENCH, "-i", "-s", "1", "-q", url], check=True, capture_output=True)
        yield url
    finally:
        bench_loop.run_until_complete(drop_database(server_url, name))


def run_pgbench(url: str, mode: str, clients: int, seconds: int) -> tuple[float, float]:
    """(tps, average latency in ms) of one pgbench run."""
    command = [PGBENCH, mode, "-M", "prepared", "-c", str(clients)]
    command += ["-j", str(min(clients, os.cpu_count() or 1)), "-T", str(seconds), url]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    tps = re.search(r"^tps = ([\d.]+)", output, re.MULTILINE)
    latency = re.search(r"^latency average = ([\d.]+) ms", output, re.MULTILINE)
    assert tps and latency, output
    return float(tps.group(1)), float(latency.group(1))


@pytest.mark.parametrize("concurrency", CONCURRENCY)
@pytest.mark.parametrize("mode", list(MODES))
def test_pgbench(
    benchmark: BenchmarkFixture,
    settings: Settings,
    pgbench_url: str,
    mode: str,
    concurrency: int,
) -> None:
    result: dict[str, float] = {}

    def target() -> None:
        tps, latency = run_pgbench(pgbench_url, mode, concurrency, settings.pgbench_seconds)
        result.update(tps=tps, latency=latency)

    benchmark.group = f"pgbench {mode} c={concurrency}"
    benchmark.pedantic(target, rounds=1, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(
        peer="pgbench",
        workload=f"pgbench {mode}",
        concurrency=concurrency,
        ops_per_s=result["tps"],
        mean_ms=result["latency"],
        seconds=settings.pgbench_seconds,
        command=f"pgbench {mode} -M prepared -c {concurrency} -T {settings.pgbench_seconds}",
    )
