"""Peak memory of `adk-postgres export` against the size of what it exports: the export reads
one snapshot through cursors a batch at a time, so its peak RSS should not grow with the data.

    .venv/bin/python benches/export_rss.py [URL] [--sizes-mb 100,1024]

For each size it stores that many MB of artifacts (64 MiB each, random bytes so nothing
deduplicates) in a fresh schema, runs `adk-postgres export -o FILE` and `restore` in child
processes, and reports each child's peak RSS (wait4's ru_maxrss) and time. The schemas are
dropped afterwards. Default URL: the PostgreSQL on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from google.genai import types

from adk_postgres import Database, PostgresArtifactService

PIECE = 64 << 20


async def fill(url: str, schema: str, megabytes: int) -> None:
    db = Database(url, schema=schema)
    artifacts = PostgresArtifactService(database=db)
    remaining = megabytes << 20
    n = 0
    while remaining > 0:
        size = min(PIECE, remaining)
        part = types.Part.from_bytes(data=os.urandom(size), mime_type="application/octet-stream")
        await artifacts.save_artifact(
            app_name="bench", user_id="u", filename=f"user:blob{n}.bin", artifact=part
        )
        remaining -= size
        n += 1
    await db.close()


def child(args: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one CLI run in a child process (its own rusage, from
    wait4, so children are not mixed up)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", "from adk_postgres.cli import run; run()", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    _pid, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"{args[-3:]} failed: {process.stderr.read().decode()[-500:]}")
    return elapsed, usage.ru_maxrss / 1024


async def drop(url: str, *schemas: str) -> None:
    conn = await asyncpg.connect(url)
    for schema in schemas:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url", nargs="?", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--sizes-mb", default="100,1024")
    options = parser.parse_args()
    results = []
    for megabytes in sorted(int(s) for s in options.sizes_mb.split(",")):
        source, target = f"bx_{uuid.uuid4().hex[:8]}", f"bx_{uuid.uuid4().hex[:8]}"
        try:
            await fill(options.url, source, megabytes)
            with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
                dump = Path(tmp) / "backup.jsonl"
                base = ["-d", options.url, "--schema"]
                export_s, export_mib = child([*base, source, "export", "-o", str(dump)])
                file_mib = dump.stat().st_size / (1 << 20)
                restore_s, restore_mib = child([*base, target, "restore", str(dump)])
            row = {
                "data_mb": megabytes,
                "file_mib": round(file_mib),
                "export_s": round(export_s, 1),
                "export_peak_rss_mib": round(export_mib),
                "restore_s": round(restore_s, 1),
                "restore_peak_rss_mib": round(restore_mib),
            }
            print(json.dumps(row), flush=True)
            results.append(row)
        finally:
            await drop(options.url, source, target)


if __name__ == "__main__":
    asyncio.run(main())
