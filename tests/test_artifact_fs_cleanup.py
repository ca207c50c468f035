"""Artifacts with ``content_dir``: every content file ends up used by a committed row or removed,
whether the save that wrote it succeeded, failed or was cancelled — by the save's own cleanup
or by a later ``collect_garbage()`` / ``adk-postgres prune --orphaned-artifacts --content-dir``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from google.genai import types

from adk_postgres import PostgresArtifactService
from adk_postgres.errors import AdkPostgresError

APP, USER, SESSION = "app", "u", "s"
MIB = 1024 * 1024


def _blob(data: bytes) -> types.Part:
    return types.Part.from_bytes(data=data, mime_type="application/octet-stream")


def _files(content_dir: Path) -> set[str]:
    """Content files by name (the hex SHA-256), temp files included (with their suffix)."""
    return {p.name for p in content_dir.rglob("*") if p.is_file()}


async def _assert_exactly_committed_files(
    svc: PostgresArtifactService,
    pg_admin: asyncpg.Connection,
    schema: str,
    content_dir: Path,
    expected: dict[str, bytes],
) -> int:
    """content_dir holds exactly the files of committed `fs` contents, and every committed
    version loads with the bytes its save was given. Returns the number of versions."""
    rows = await pg_admin.fetch(
        f"SELECT sha256 FROM \"{schema}\".artifact_contents WHERE storage = 'fs'"
    )
    assert _files(content_dir) == {bytes(r["sha256"]).hex() for r in rows}
    versions = await pg_admin.fetch(
        f'SELECT filename, version FROM "{schema}".artifact_versions ORDER BY 1, 2'
    )
    for v in versions:
        part = await svc.load_artifact(
            app_name=APP,
            user_id=USER,
            session_id=SESSION,
            filename=v["filename"],
            version=v["version"],
        )
        assert part is not None and part.inline_data is not None
        assert part.inline_data.data == expected[v["filename"]], v
    return len(versions)


@pytest.fixture
async def fs_service(pg_url: str, schema_name: str, tmp_path: Path) -> PostgresArtifactService:
    svc = PostgresArtifactService(pg_url, schema=schema_name, content_dir=tmp_path / "content")
    await svc.list_artifact_keys(app_name=APP, user_id=USER, session_id=SESSION)  # migrate
    yield svc
    await svc.close()


async def test_cancelling_a_save_at_every_point_leaves_no_orphan_file(
    fs_service: PostgresArtifactService, pg_admin: asyncpg.Connection, schema_name: str
) -> None:
    """Cancel saves after 0, 1, 2, … event-loop turns and then at growing delays, until saves
    complete before the cancel arrives; then collect garbage."""
    svc = fs_service
    content_dir = svc.content_dir
    assert content_dir is not None
    expected: dict[str, bytes] = {}
    outcomes = {"cancelled": 0, "completed": 0}

    async def attempt(i: int, wait) -> None:
        filename = f"f{i}.bin"
        # Distinct bytes each time (a new file), sizes on both sides of one chunk.
        data = os.urandom(2 * MIB if i % 3 == 0 else 10_000 + i)
        expected[filename] = data
        task = asyncio.create_task(
            svc.save_artifact(
                app_name=APP,
                user_id=USER,
                session_id=SESSION,
                filename=filename,
                artifact=_blob(data),
            )
        )
        await wait()
        task.cancel()
        try:
            await task
            outcomes["completed"] += 1
        except asyncio.CancelledError:
            outcomes["cancelled"] += 1

    i = 0
    for turns in range(30):

        async def spin(turns: int = turns) -> None:
            for _ in range(turns):
                await asyncio.sleep(0)

        await attempt(i, spin)
        i += 1
    delay, completed_in_a_row = 0.0002, 0
    while completed_in_a_row < 3 and delay < 5:
        before = outcomes["completed"]
        await attempt(i, lambda d=delay: asyncio.sleep(d))
        i += 1
        completed_in_a_row = completed_in_a_row + 1 if outcomes["completed"] > before else 0
        delay *= 1.3
    assert outcomes["cancelled"] > 0 and outcomes["completed"] > 0, outcomes

    removed = await svc.collect_garbage(grace=0)
    versions = await _assert_exactly_committed_files(
        svc, pg_admin, schema_name, content_dir, expected
    )
    assert versions >= outcomes["completed"]
    assert not any(name.endswith(".tmp") for name in _files(content_dir))
    # Nothing was left for a second pass.
    assert await svc.collect_garbage(grace=0) == 0
    assert removed >= 0


async def test_a_save_cancelled_after_its_file_is_written(
    fs_service: PostgresArtifactService, pg_admin: asyncpg.Connection, schema_name: str
) -> None:
    """Deterministic: the version insert is slowed down, so the cancel lands after the file is
    in place and before the commit."""
    svc = fs_service
    content_dir = svc.content_dir
    assert content_dir is not None
    await pg_admin.execute(
        f"""CREATE FUNCTION "{schema_name}".slow() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_sleep(0.5); RETURN NEW; END $$;
            CREATE TRIGGER slow BEFORE INSERT ON "{schema_name}".artifact_versions
              FOR EACH ROW EXECUTE FUNCTION "{schema_name}".slow();"""
    )
    data = os.urandom(3 * MIB)
    task = asyncio.create_task(
        svc.save_artifact(
            app_name=APP, user_id=USER, session_id=SESSION, filename="f", artifact=_blob(data)
        )
    )
    sha = hashlib.sha256(data).hexdigest()
    for _ in range(200):
        if sha in _files(content_dir):
            break
        await asyncio.sleep(0.01)
    assert sha in _files(content_dir), "the file is written before the version row"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The grace period protects recent files...
    assert await svc.collect_garbage() == 0
    assert sha in _files(content_dir)
    # ...and once past it the file goes (after the cancelled transaction has ended).
    assert await svc.collect_garbage(grace=0) == 1
    assert _files(content_dir) == set()
    assert await pg_admin.fetchval(f'SELECT count(*) FROM "{schema_name}".artifact_versions') == 0


@pytest.mark.parametrize("failure", ["statement", "commit", "connection"])
async def test_a_failed_save_removes_its_file(
    fs_service: PostgresArtifactService,
    pg_admin: asyncpg.Connection,
    schema_name: str,
    failure: str,
) -> None:
    """Failures after the file is written: the version insert raises, the commit is refused
    (a deferred constraint), or the connection dies."""
    svc = fs_service
    content_dir = svc.content_dir
    assert content_dir is not None
    kept = os.urandom(5000)
    await svc.save_artifact(
        app_name=APP, user_id=USER, session_id=SESSION, filename="kept", artifact=_blob(kept)
    )
    s = f'"{schema_name}"'
    action = {
        "statement": "RAISE EXCEPTION 'refused'",
        "commit": "RAISE EXCEPTION 'refused at commit'",
        "connection": "PERFORM pg_terminate_backend(pg_backend_pid())",
    }[failure]
    trigger = (
        f"CREATE CONSTRAINT TRIGGER fail AFTER INSERT ON {s}.artifact_versions"
        " DEFERRABLE INITIALLY DEFERRED"
        if failure == "commit"
        else f"CREATE TRIGGER fail BEFORE INSERT ON {s}.artifact_versions"
    )
    await pg_admin.execute(
        f"""CREATE FUNCTION {s}.fail() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN IF NEW.filename LIKE 'doomed%' THEN {action}; END IF; RETURN NEW; END $$;
            {trigger} FOR EACH ROW EXECUTE FUNCTION {s}.fail();"""
    )
    for n, size in enumerate((100, 2 * MIB)):
        data = os.urandom(size)
        with pytest.raises(AdkPostgresError):
            await svc.save_artifact(
                app_name=APP,
                user_id=USER,
                session_id=SESSION,
                filename=f"doomed{n}",
                artifact=_blob(data),
            )
        if failure != "connection":
            # Removed by the save itself.
            assert hashlib.sha256(data).hexdigest() not in _files(content_dir)
    # Whatever a dead connection kept the save from removing, garbage collection does.
    await svc.collect_garbage(grace=0)
    assert _files(content_dir) == {hashlib.sha256(kept).hexdigest()}
    await _assert_exactly_committed_files(svc, pg_admin, schema_name, content_dir, {"kept": kept})


async def test_a_failed_save_keeps_a_file_another_save_committed(
    fs_service: PostgresArtifactService, pg_admin: asyncpg.Connection, schema_name: str
) -> None:
    """The same bytes saved twice: the second save fails, the first one's file stays."""
    svc = fs_service
    content_dir = svc.content_dir
    assert content_dir is not None
    data = os.urandom(4000)
    await svc.save_artifact(
        app_name=APP, user_id=USER, session_id=SESSION, filename="a", artifact=_blob(data)
    )
    s = f'"{schema_name}"'
    # A failed save must not take a file that a committed content uses.
    await pg_admin.execute(
        f"""CREATE FUNCTION {s}.fail() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN IF NEW.filename = 'b' THEN RAISE EXCEPTION 'refused'; END IF;
            RETURN NEW; END $$;
            CREATE TRIGGER fail BEFORE INSERT ON {s}.artifact_versions
              FOR EACH ROW EXECUTE FUNCTION {s}.fail();"""
    )
    with pytest.raises(AdkPostgresError):
        await svc.save_artifact(
            app_name=APP, user_id=USER, session_id=SESSION, filename="b", artifact=_blob(data)
        )
    assert _files(content_dir) == {hashlib.sha256(data).hexdigest()}
    await svc.collect_garbage(grace=0)
    await _assert_exactly_committed_files(svc, pg_admin, schema_name, content_dir, {"a": data})


async def test_prune_removes_orphan_files_and_interrupted_temp_files(
    fs_service: PostgresArtifactService,
    pg_url: str,
    pg_admin: asyncpg.Connection,
    schema_name: str,
) -> None:
    svc = fs_service
    content_dir = svc.content_dir
    assert content_dir is not None
    kept = os.urandom(3000)
    # User-scoped: prune --orphaned-artifacts would delete a session artifact without session.
    await svc.save_artifact(
        app_name=APP, user_id=USER, session_id=SESSION, filename="user:kept", artifact=_blob(kept)
    )
    # What a process killed mid-save leaves: a content file no row uses, and a temp file.
    orphan = hashlib.sha256(b"orphan").hexdigest()
    (content_dir / orphan[:2] / orphan[2:4]).mkdir(parents=True, exist_ok=True)
    (content_dir / orphan[:2] / orphan[2:4] / orphan).write_bytes(b"orphan")
    (content_dir / "tmp" / f"{orphan}.123.0.tmp").write_bytes(b"orph")
    # Not ours: left alone.
    (content_dir / "README").write_text("not a content file")

    def prune(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-c",
                "from adk_postgres.cli import run; run()",
                "-d",
                pg_url,
                "--schema",
                schema_name,
                "prune",
                "--orphaned-artifacts",
                "--content-dir",
                str(content_dir),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )

    recent = prune()
    assert recent.returncode == 0, recent.stderr
    assert "content files: 0 unlinked" in recent.stdout  # within the default grace of 1h
    dry = prune("--file-grace", "0s", "--dry-run")
    assert "content files: 2 to unlink" in dry.stdout, dry.stdout
    done = prune("--file-grace", "0s")
    assert done.returncode == 0, done.stderr
    assert "content files: 2 unlinked" in done.stdout, done.stdout
    assert _files(content_dir) == {hashlib.sha256(kept).hexdigest(), "README"}
    (content_dir / "README").unlink()
    await _assert_exactly_committed_files(
        svc, pg_admin, schema_name, content_dir, {"user:kept": kept}
    )
