"""PostgresArtifactService against a real PostgreSQL: conformance with ADK's
InMemoryArtifactService, scoping, concurrency, content-addressed storage, both content
backends, bounded memory for a 100 MB artifact, crash safety of the filesystem backend and bad
input.

Every outcome asserted here is decided by the data (versions, rows, files), never by timing.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from google.adk.artifacts import InMemoryArtifactService, artifact_util
from google.adk.artifacts.base_artifact_service import BaseArtifactService
from google.adk.errors.input_validation_error import InputValidationError
from google.adk.platform import time as platform_time
from google.genai import types

from adk_postgres import Database, PostgresArtifactService, PostgresSessionService
from adk_postgres.errors import DatabaseConnectionError, DatabaseError, DataError

APP = "art-app"
USER = "alice"
SESSION = "s1"
MIB = 1024 * 1024
T0 = 1_751_234_567.1234567

MakeArtifacts = Callable[..., PostgresArtifactService]


@pytest.fixture
async def make_artifacts(
    pg_url: str, schema_name: str, tmp_path: Path
) -> AsyncIterator[MakeArtifacts]:
    """Factory for artifact services on the test's schema; each call opens its own pool.
    ``backend="fs"`` stores contents in a directory shared by the test's services."""
    created: list[PostgresArtifactService] = []

    def factory(backend: str = "db", **options: Any) -> PostgresArtifactService:
        options.setdefault("schema", schema_name)
        if backend == "fs":
            options.setdefault("content_dir", tmp_path / "content")
        svc = PostgresArtifactService(pg_url, **options)
        created.append(svc)
        return svc

    yield factory
    for svc in created:
        await svc.close()


@pytest.fixture(params=["db", "fs"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def artifacts(make_artifacts: MakeArtifacts, backend: str) -> PostgresArtifactService:
    return make_artifacts(backend)


def blob(data: bytes, mime: str = "application/octet-stream") -> types.Part:
    return types.Part(inline_data=types.Blob(mime_type=mime, data=data))


async def table_count(conn: asyncpg.Connection, schema: str, table: str) -> int:
    return int(await conn.fetchval(f'SELECT count(*) FROM "{schema}".{table}'))


async def assert_no_version_without_bytes(
    conn: asyncpg.Connection, schema: str, content_dir: Path | None
) -> None:
    """The crash-safety invariant: every version's content is complete where it is stored."""
    rows = await conn.fetch(
        f"""SELECT c.sha256, c.size, c.storage,
                   (SELECT coalesce(sum(length(ch.data)), 0) FROM "{schema}".artifact_chunks ch
                     WHERE ch.sha256 = c.sha256) AS chunk_bytes
              FROM "{schema}".artifact_versions v
              JOIN "{schema}".artifact_contents c ON c.sha256 = v.content_sha256"""
    )
    for row in rows:
        if row["storage"] == "db":
            assert row["chunk_bytes"] == row["size"]
        else:
            assert content_dir is not None
            path = content_file(content_dir, row["sha256"])
            assert path.is_file(), path
            assert path.stat().st_size == row["size"]
            assert hashlib.sha256(path.read_bytes()).digest() == bytes(row["sha256"])


def content_file(content_dir: Path, sha256: bytes) -> Path:
    h = bytes(sha256).hex()
    return content_dir / h[:2] / h[2:4] / h


# --------------------------------------------------------------------------------------------
# Conformance: the same scenario on InMemoryArtifactService and on ours, results compared.
# --------------------------------------------------------------------------------------------


def _outcome(value: Any) -> Any:
    """A comparable form of a call's result."""
    if isinstance(value, types.Part):
        return ("part", value.model_dump(exclude_none=True))
    if isinstance(value, list):
        return [_outcome(v) for v in value]
    if hasattr(value, "canonical_uri"):  # ArtifactVersion: the URI scheme differs by design
        dumped = value.model_dump()
        dumped.pop("canonical_uri")
        return ("version", dumped)
    return value


async def _run_scenario(svc: BaseArtifactService) -> list[Any]:
    clock = itertools.count()
    platform_time.set_time_provider(lambda: T0 + next(clock) / 1000)
    try:
        return await _scenario(svc)
    finally:
        platform_time.reset_time_provider()


async def _scenario(svc: BaseArtifactService) -> list[Any]:
    results: list[Any] = []

    async def call(method: str, **kwargs: Any) -> None:
        try:
            value = await getattr(svc, method)(**kwargs)
        except Exception as exc:  # noqa: BLE001 — the exception is the compared outcome
            results.append((method, "raised", type(exc).__name__, str(exc)))
        else:
            results.append((method, _outcome(value)))

    s = {"app_name": APP, "user_id": USER}
    ss = {**s, "session_id": SESSION}
    # Saves: text, bytes (with display name), an empty blob, a file reference, metadata.
    await call("save_artifact", **ss, filename="notes.txt", artifact=types.Part(text="héllo 📄"))
    await call(
        "save_artifact",
        **ss,
        filename="notes.txt",
        artifact=types.Part(text="second"),
        custom_metadata={"k": [1, 2.5, None, "x"], "nested": {"a": True}},
    )
    await call(
        "save_artifact",
        **ss,
        filename="img.png",
        artifact=types.Part(
            inline_data=types.Blob(mime_type="image/png", data=b"\x89PNG\x00\xff", display_name="i")
        ),
    )
    await call(
        "save_artifact",
        **ss,
        filename="empty.bin",
        artifact=blob(b"", "application/x-empty"),
    )
    await call(
        "save_artifact",
        **ss,
        filename="remote.pdf",
        artifact=types.Part(
            file_data=types.FileData(
                file_uri="gs://bucket/doc.pdf", mime_type="application/pdf", display_name="doc"
            )
        ),
    )
    await call(
        "save_artifact",
        **ss,
        filename="dict.bin",
        artifact={"inlineData": {"mimeType": "application/json", "data": b'{"a":1}'}},
    )
    # User scope: saved with or without a session, visible from every session.
    await call("save_artifact", **s, filename="user:profile.json", artifact=blob(b"{}", "a/j"))
    await call("save_artifact", **ss, filename="user:profile.json", artifact=blob(b"{1}", "a/j"))
    await call("save_artifact", **s, filename="nosession.txt", artifact=types.Part(text="x"))
    # References: to a session artifact, to a user artifact, out of scope, malformed, cycles.
    ref = artifact_util.get_artifact_uri(APP, USER, "img.png", 0, SESSION)
    user_ref = artifact_util.get_artifact_uri(APP, USER, "user:profile.json", 1)
    await call(
        "save_artifact",
        **ss,
        filename="ref",
        artifact=types.Part(file_data=types.FileData(file_uri=ref)),
    )
    await call(
        "save_artifact",
        **ss,
        filename="user:ref",
        artifact=types.Part(file_data=types.FileData(file_uri=user_ref)),
    )
    await call(
        "save_artifact",
        **ss,
        filename="bad-ref",
        artifact=types.Part(file_data=types.FileData(file_uri="artifact://nope")),
    )
    other_user_ref = artifact_util.get_artifact_uri(APP, "mallory", "x", 0, SESSION)
    await call(
        "save_artifact",
        **ss,
        filename="escape",
        artifact=types.Part(file_data=types.FileData(file_uri=other_user_ref)),
    )
    other_session_ref = artifact_util.get_artifact_uri(APP, USER, "x", 0, "s2")
    await call(
        "save_artifact",
        **ss,
        filename="escape2",
        artifact=types.Part(file_data=types.FileData(file_uri=other_session_ref)),
    )
    loop_ref = artifact_util.get_artifact_uri(APP, USER, "loop", 0, SESSION)
    await call(
        "save_artifact",
        **ss,
        filename="loop",
        artifact=types.Part(file_data=types.FileData(file_uri=loop_ref)),
    )
    await call("save_artifact", **ss, filename="unsupported", artifact=types.Part())
    await call("save_artifact", **ss, filename="tomb", artifact=blob(b"x"))
    await call(
        "save_artifact", **ss, filename="tomb", artifact=artifact_util._new_rewind_tombstone()
    )
    await call("save_artifact", **s, filename="plain-no-session", artifact=blob(b"x"))
    await call("save_artifact", **{**s, "session_id": "user"}, filename="f", artifact=blob(b"x"))

    # Loads: latest, each version, out of range, negative, references, tombstone, missing.
    for version in (None, 0, 1, 2, -1):
        await call("load_artifact", **ss, filename="notes.txt", version=version)
    for name in ("img.png", "empty.bin", "remote.pdf", "dict.bin", "ref", "user:ref", "loop"):
        await call("load_artifact", **ss, filename=name)
    await call("load_artifact", **ss, filename="tomb")
    await call("load_artifact", **ss, filename="tomb", version=0)
    await call("load_artifact", **s, filename="user:profile.json")
    await call("load_artifact", **s, filename="user:profile.json", version=0)
    await call("load_artifact", **{**s, "session_id": "s2"}, filename="user:profile.json")
    await call("load_artifact", **ss, filename="missing")
    await call("load_artifact", **{**s, "session_id": "s2"}, filename="notes.txt")
    await call(
        "load_artifact", **{**s, "user_id": "bob", "session_id": SESSION}, filename="img.png"
    )
    await call("load_artifact", **s, filename="notes.txt")

    # Listing and metadata.
    await call("list_artifact_keys", **ss)
    await call("list_artifact_keys", **s)
    await call("list_artifact_keys", **{**s, "session_id": "s2"})
    await call("list_artifact_keys", app_name=APP, user_id="nobody", session_id=SESSION)
    for name in ("notes.txt", "user:profile.json", "missing", "remote.pdf", "ref"):
        await call("list_versions", **ss, filename=name)
        await call("list_artifact_versions", **ss, filename=name)
    for version in (None, 0, 1, 5, -1):
        await call("get_artifact_version", **ss, filename="notes.txt", version=version)
    await call("get_artifact_version", **ss, filename="missing")
    await call("list_versions", **s, filename="notes.txt")

    # Delete: every version goes; a new save starts again at 0; deleting twice is fine.
    await call("delete_artifact", **ss, filename="notes.txt")
    await call("delete_artifact", **ss, filename="notes.txt")
    await call("load_artifact", **ss, filename="notes.txt")
    await call("list_versions", **ss, filename="notes.txt")
    await call("get_artifact_version", **ss, filename="notes.txt")
    await call("save_artifact", **ss, filename="notes.txt", artifact=types.Part(text="again"))
    await call("list_artifact_versions", **ss, filename="notes.txt")
    await call("delete_artifact", **s, filename="user:profile.json")
    await call("load_artifact", **ss, filename="user:ref")
    await call("list_artifact_keys", **ss)
    await call("delete_artifact", **s, filename="notes.txt")
    return results


async def test_conformance_with_in_memory_service(artifacts: PostgresArtifactService):
    expected = await _run_scenario(InMemoryArtifactService())
    actual = await _run_scenario(artifacts)
    assert len(actual) == len(expected)
    for i, (got, want) in enumerate(zip(actual, expected, strict=True)):
        assert got == want, f"call #{i}"
    # The scenario does exercise errors and references, not only happy paths.
    assert any(r[1] == "raised" for r in expected)
    assert ("load_artifact", ("part", blob(b"{1}", "a/j").model_dump(exclude_none=True))) in actual


async def test_canonical_uris_are_resolvable_references(artifacts: PostgresArtifactService):
    ss = {"app_name": APP, "user_id": USER, "session_id": SESSION}
    await artifacts.save_artifact(**ss, filename="a/b.txt", artifact=types.Part(text="one"))
    await artifacts.save_artifact(**ss, filename="user:u.txt", artifact=types.Part(text="two"))
    for name, text in (("a/b.txt", "one"), ("user:u.txt", "two")):
        info = await artifacts.get_artifact_version(**ss, filename=name)
        assert info is not None
        assert info.canonical_uri == artifact_util.get_artifact_uri(
            APP, USER, name, 0, None if name.startswith("user:") else SESSION
        )
        assert artifact_util.parse_artifact_uri(info.canonical_uri) is not None
        await artifacts.save_artifact(
            **ss,
            filename=f"ref-{text}",
            artifact=types.Part(file_data=types.FileData(file_uri=info.canonical_uri)),
        )
        loaded = await artifacts.load_artifact(**ss, filename=f"ref-{text}")
        assert loaded == types.Part(text=text)


async def test_parts_round_trip_whole(artifacts: PostgresArtifactService):
    parts = [
        types.Part(text=""),
        types.Part(text="a\x00b ünï 𝄞 " * 1000),
        types.Part(text="thinking", thought=True, thought_signature=b"\x00sig\xff"),
        types.Part(
            inline_data=types.Blob(mime_type="image/jpeg", data=bytes(range(256)), display_name="d")
        ),
        types.Part(inline_data=types.Blob(mime_type="application/x-none")),  # data None
        types.Part(inline_data=types.Blob(data=b"no mime")),
        types.Part(file_data=types.FileData(file_uri="https://example.com/x", mime_type="t/x")),
        types.Part(
            inline_data=types.Blob(mime_type="v/mp4", data=b"v"),
            video_metadata=types.VideoMetadata(fps=2.5),
        ),
    ]
    memory = InMemoryArtifactService()
    for i, part in enumerate(parts):
        for svc in (artifacts, memory):
            v = await svc.save_artifact(
                app_name=APP, user_id=USER, session_id=SESSION, filename=f"p{i}", artifact=part
            )
            assert v == 0
        loaded = await artifacts.load_artifact(
            app_name=APP, user_id=USER, session_id=SESSION, filename=f"p{i}"
        )
        assert loaded == part
        assert loaded == await memory.load_artifact(
            app_name=APP, user_id=USER, session_id=SESSION, filename=f"p{i}"
        )
        ours = await artifacts.get_artifact_version(
            app_name=APP, user_id=USER, session_id=SESSION, filename=f"p{i}"
        )
        theirs = await memory.get_artifact_version(
            app_name=APP, user_id=USER, session_id=SESSION, filename=f"p{i}"
        )
        assert ours is not None and theirs is not None
        assert ours.mime_type == theirs.mime_type


async def test_metadata_and_create_time_are_per_version_and_exact(
    artifacts: PostgresArtifactService,
):
    times = iter([1_700_000_000.1234567, 1_732_271_234.1234567, 1e9 + 0.5])
    platform_time.set_time_provider(lambda: next(times))
    try:
        metas = [{"v": 0, "big": 2**70}, None, {"v": 2, "f": 0.1 + 0.2, "s": "\u2028"}]
        for meta in metas:
            await artifacts.save_artifact(
                app_name=APP,
                user_id=USER,
                session_id=SESSION,
                filename="m",
                artifact=blob(b"m", "x/y"),
                custom_metadata=meta,
            )
    finally:
        platform_time.reset_time_provider()
    versions = await artifacts.list_artifact_versions(
        app_name=APP, user_id=USER, session_id=SESSION, filename="m"
    )
    assert [v.version for v in versions] == [0, 1, 2]
    assert [v.custom_metadata for v in versions] == [metas[0], {}, metas[2]]
    assert [v.create_time for v in versions] == [
        1_700_000_000.1234567,
        1_732_271_234.1234567,
        1e9 + 0.5,
    ]
    assert {v.mime_type for v in versions} == {"x/y"}


# --------------------------------------------------------------------------------------------
# Scoping
# --------------------------------------------------------------------------------------------


async def test_user_scope_and_isolation(make_artifacts: MakeArtifacts):
    svc = make_artifacts()
    await svc.save_artifact(
        app_name=APP, user_id=USER, session_id="s1", filename="user:cv", artifact=blob(b"1")
    )
    await svc.save_artifact(app_name=APP, user_id=USER, filename="user:cv", artifact=blob(b"2"))
    await svc.save_artifact(
        app_name=APP, user_id=USER, session_id="s1", filename="cv", artifact=blob(b"session")
    )
    # The user-scoped artifact is one artifact across sessions (versions 0 and 1).
    for sid in ("s1", "s2", None):
        assert await svc.list_versions(
            app_name=APP, user_id=USER, session_id=sid, filename="user:cv"
        ) == [0, 1]
    assert await svc.list_artifact_keys(app_name=APP, user_id=USER, session_id="s1") == [
        "cv",
        "user:cv",
    ]
    assert await svc.list_artifact_keys(app_name=APP, user_id=USER, session_id="s2") == ["user:cv"]
    assert await svc.list_artifact_keys(app_name=APP, user_id=USER) == ["user:cv"]
    # Other users, other apps and other sessions see nothing of it.
    assert await svc.list_artifact_keys(app_name=APP, user_id="bob", session_id="s1") == []
    assert await svc.list_artifact_keys(app_name="other", user_id=USER, session_id="s1") == []
    assert (
        await svc.load_artifact(app_name=APP, user_id="bob", session_id="s1", filename="user:cv")
        is None
    )
    assert (
        await svc.load_artifact(app_name=APP, user_id=USER, session_id="s2", filename="cv") is None
    )
    # Deleting the session artifact leaves the user one.
    await svc.delete_artifact(app_name=APP, user_id=USER, session_id="s1", filename="cv")
    assert await svc.list_artifact_keys(app_name=APP, user_id=USER, session_id="s1") == ["user:cv"]


# --------------------------------------------------------------------------------------------
# Concurrency
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [100, 3 * MIB + 5], ids=["small", "chunked"])
async def test_concurrent_saves_from_two_services_get_consecutive_versions(
    make_artifacts: MakeArtifacts, backend: str, size: int
):
    svc_a, svc_b = make_artifacts(backend), make_artifacts(backend)
    n = 24 if size < MIB else 20
    payloads = [i.to_bytes(4, "big") * (size // 4) for i in range(n)]

    async def save(i: int) -> int:
        svc = svc_a if i % 2 else svc_b
        return await svc.save_artifact(
            app_name=APP,
            user_id=USER,
            session_id=SESSION,
            filename="hot.bin",
            artifact=blob(payloads[i]),
            custom_metadata={"i": i},
        )

    versions = await asyncio.gather(*(save(i) for i in range(n)))
    assert sorted(versions) == list(range(n))
    assert await svc_a.list_versions(
        app_name=APP, user_id=USER, session_id=SESSION, filename="hot.bin"
    ) == list(range(n))
    # Each version holds the payload of the save that got that number.
    for i, version in enumerate(versions):
        loaded = await svc_b.load_artifact(
            app_name=APP, user_id=USER, session_id=SESSION, filename="hot.bin", version=version
        )
        assert loaded is not None and loaded.inline_data is not None
        assert loaded.inline_data.data == payloads[i]
        info = await svc_a.get_artifact_version(
            app_name=APP, user_id=USER, session_id=SESSION, filename="hot.bin", version=version
        )
        assert info is not None and info.custom_metadata == {"i": i}


async def test_failed_saves_leave_no_gap(
    make_artifacts: MakeArtifacts, pg_admin: asyncpg.Connection, schema_name: str
):
    svc_a, svc_b = make_artifacts(), make_artifacts()
    await svc_a.database.migrate()
    # Every save whose metadata says so fails inside the database, after its counter upsert.
    await pg_admin.execute(
        f"""CREATE FUNCTION "{schema_name}".fail_marked() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NEW.custom_metadata::jsonb ->> 'fail' = 'yes' THEN
                RAISE EXCEPTION 'injected failure';
              END IF;
              RETURN NEW;
            END $$;
            CREATE TRIGGER fail_marked BEFORE INSERT ON "{schema_name}".artifact_versions
              FOR EACH ROW EXECUTE FUNCTION "{schema_name}".fail_marked();"""
    )

    async def save(i: int) -> int | BaseException:
        svc = svc_a if i % 2 else svc_b
        try:
            return await svc.save_artifact(
                app_name=APP,
                user_id=USER,
                session_id=SESSION,
                filename="f",
                artifact=blob(b"x" * (i % 3) + b"y"),
                custom_metadata={"fail": "yes" if i % 4 == 0 else "no"},
            )
        except DatabaseError as exc:
            return exc

    results = await asyncio.gather(*(save(i) for i in range(40)))
    failed = [r for r in results if isinstance(r, BaseException)]
    saved = sorted(r for r in results if isinstance(r, int))
    assert len(failed) == 10 and all("injected failure" in str(e) for e in failed)
    assert saved == list(range(30))
    assert await svc_a.list_versions(
        app_name=APP, user_id=USER, session_id=SESSION, filename="f"
    ) == list(range(30))


async def test_concurrent_delete_and_save_of_the_same_content(
    make_artifacts: MakeArtifacts,
    backend: str,
    pg_admin: asyncpg.Connection,
    schema_name: str,
    tmp_path: Path,
):
    """A save that reuses content while the last other version using it is deleted must
    still find its bytes; deletes never fail and never leave an orphan behind."""
    svc_a, svc_b = make_artifacts(backend), make_artifacts(backend)
    payload = os.urandom(2 * MIB + 3)  # several chunks
    for round_ in range(12):
        await svc_a.save_artifact(
            app_name=APP, user_id=USER, session_id=SESSION, filename="old", artifact=blob(payload)
        )
        await asyncio.gather(
            svc_a.delete_artifact(app_name=APP, user_id=USER, session_id=SESSION, filename="old"),
            svc_b.save_artifact(
                app_name=APP,
                user_id=USER,
                session_id=SESSION,
                filename=f"new{round_}",
                artifact=blob(payload),
            ),
        )
        loaded = await svc_a.load_artifact(
            app_name=APP, user_id=USER, session_id=SESSION, filename=f"new{round_}"
        )
        assert loaded is not None and loaded.inline_data is not None
        assert loaded.inline_data.data == payload
    await assert_no_version_without_bytes(pg_admin, schema_name, tmp_path / "content")
    assert await table_count(pg_admin, schema_name, "artifact_contents") == 1
    for round_ in range(12):
        await svc_b.delete_artifact(
            app_name=APP, user_id=USER, session_id=SESSION, filename=f"new{round_}"
        )
    assert await table_count(pg_admin, schema_name, "artifact_contents") == 0
    assert await table_count(pg_admin, schema_name, "artifact_chunks") == 0
    if backend == "fs":
        assert not content_file(tmp_path / "content", hashlib.sha256(payload).digest()).exists()


# --------------------------------------------------------------------------------------------
# Content-addressed storage
# --------------------------------------------------------------------------------------------


async def test_identical_bytes_are_stored_once_and_orphans_removed(
    make_artifacts: MakeArtifacts,
    backend: str,
    pg_admin: asyncpg.Connection,
    schema_name: str,
    tmp_path: Path,
):
    svc = make_artifacts(backend)
    big = os.urandom(2 * MIB + 100)  # three chunks in PostgreSQL
    small = b"same small bytes"
    places = [("s1", "a.bin"), ("s1", "b.bin"), ("s2", "a.bin"), (None, "user:a.bin")]
    for sid, name in places:
        for data in (big, small, big):
            await svc.save_artifact(
                app_name=APP, user_id=USER, session_id=sid, filename=name, artifact=blob(data)
            )
    # Text is content-addressed too (its UTF-8 bytes): the same as a blob of those bytes.
    await svc.save_artifact(
        app_name=APP,
        user_id=USER,
        session_id="s1",
        filename="t",
        artifact=types.Part(text="same small bytes"),
    )
    assert await table_count(pg_admin, schema_name, "artifact_versions") == 13
    assert await table_count(pg_admin, schema_name, "artifact_contents") == 2
    chunks = await table_count(pg_admin, schema_name, "artifact_chunks")
    content_dir = tmp_path / "content"
    if backend == "db":
        assert chunks == 3 + 1
    else:
        assert chunks == 0
        for data in (big, small):
            path = content_file(content_dir, hashlib.sha256(data).digest())
            assert path.read_bytes() == data
        assert list((content_dir / "tmp").iterdir()) == []
    await assert_no_version_without_bytes(pg_admin, schema_name, content_dir)

    # Deleting all but the last user of each content keeps it; deleting the last removes it.
    for sid, name in places[:-1]:
        await svc.delete_artifact(app_name=APP, user_id=USER, session_id=sid, filename=name)
    assert await table_count(pg_admin, schema_name, "artifact_contents") == 2
    await svc.delete_artifact(app_name=APP, user_id=USER, filename="user:a.bin")
    assert await table_count(pg_admin, schema_name, "artifact_contents") == 1  # the text's
    await svc.delete_artifact(app_name=APP, user_id=USER, session_id="s1", filename="t")
    for table in ("artifact_contents", "artifact_chunks", "artifact_versions", "artifact_files"):
        assert await table_count(pg_admin, schema_name, table) == 0, table
    if backend == "fs":
        assert await table_count(pg_admin, schema_name, "artifact_fs_garbage") == 0
        assert [p for p in content_dir.rglob("*") if p.is_file()] == []


async def test_orphans_are_removed_however_versions_are_deleted(
    make_artifacts: MakeArtifacts, pg_admin: asyncpg.Connection, schema_name: str
):
    """The cleanup is a trigger: versions deleted by hand lose their orphaned content too."""
    svc = make_artifacts()
    await svc.save_artifact(
        app_name=APP, user_id=USER, session_id=SESSION, filename="x", artifact=blob(b"1")
    )
    await svc.save_artifact(
        app_name=APP, user_id=USER, session_id=SESSION, filename="x", artifact=blob(b"2")
    )
    await pg_admin.execute(
        f'DELETE FROM "{schema_name}".artifact_versions WHERE version = 0 AND filename = $1', "x"
    )
    assert await table_count(pg_admin, schema_name, "artifact_contents") == 1
    loaded = await svc.load_artifact(app_name=APP, user_id=USER, session_id=SESSION, filename="x")
    assert loaded == blob(b"2")


async def test_backends_share_contents(
    make_artifacts: MakeArtifacts, pg_admin: asyncpg.Connection, schema_name: str
):
    """Both backends on one schema: each reads the other's versions, and reuses its contents."""
    db_svc, fs_svc = make_artifacts("db"), make_artifacts("fs")
    await db_svc.save_artifact(
        app_name=APP, user_id=USER, session_id=SESSION, filename="d", artifact=blob(b"from db")
    )
    await fs_svc.save_artifact(
        app_name=APP, user_id=USER, session_id=SESSION, filename="f", artifact=blob(b"from fs")
    )
    await fs_svc.save_artifact(
        app_name=APP, user_id=USER, session_id=SESSION, filename="f2", artifact=blob(b"from db")
    )
    rows = await pg_admin.fetch(f'SELECT sha256, storage FROM "{schema_name}".artifact_contents')
    # "from db" is stored once, where it was first saved; the fs service reused it.
    assert {bytes(r["sha256"]): r["storage"] for r in rows} == {
        hashlib.sha256(b"from db").digest(): "db",
        hashlib.sha256(b"from fs").digest(): "fs",
    }
    for name, data in (("d", b"from db"), ("f2", b"from db")):
        assert await fs_svc.load_artifact(
            app_name=APP, user_id=USER, session_id=SESSION, filename=name
        ) == blob(data)
    assert await fs_svc.load_artifact(
        app_name=APP, user_id=USER, session_id=SESSION, filename="f"
    ) == blob(b"from fs")
    # A PostgreSQL-only service cannot read file contents without the directory: a clear error.
    with pytest.raises(ValueError, match="content_dir"):
        await db_svc.load_artifact(app_name=APP, user_id=USER, session_id=SESSION, filename="f")


# --------------------------------------------------------------------------------------------
# 100 MB with bounded memory (a subprocess, so its peak RSS is this artifact's alone)
# --------------------------------------------------------------------------------------------

_RSS_SCRIPT = textwrap.dedent(
    """
    import asyncio, gc, hashlib, json, os, sys
    from google.genai import types
    from adk_postgres import PostgresArtifactService

    MIB = 1024 * 1024

    def status(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        raise KeyError(field)

    def reset_peak():
        # Linux >= 4.0: writing 5 resets the peak RSS (VmHWM) to the current RSS.
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

    async def main(url, schema, content_dir, size):
        svc = PostgresArtifactService(url, schema=schema, content_dir=content_dir or None)
        key = dict(app_name="big", user_id="u", session_id="s")
        # Warm up: pool, migrations, statement cache, pydantic schemas.
        warm = types.Part(inline_data=types.Blob(mime_type="a/b", data=b"w" * 3 * MIB))
        await svc.save_artifact(**key, filename="warm", artifact=warm)
        await svc.load_artifact(**key, filename="warm")
        del warm
        gc.collect()
        m = {"baseline": status("VmRSS")}
        data = os.urandom(size)
        digest = hashlib.sha256(data).digest()
        part = types.Part(inline_data=types.Blob(mime_type="application/octet-stream", data=data))
        m["before_save"] = status("VmRSS")
        reset_peak()
        version = await svc.save_artifact(**key, filename="big.bin", artifact=part)
        m["save_peak"] = status("VmHWM")
        del part, data
        gc.collect()
        m["before_load"] = status("VmRSS")
        reset_peak()
        loaded = await svc.load_artifact(**key, filename="big.bin", version=version)
        m["load_peak"] = status("VmHWM")
        m["ok"] = hashlib.sha256(loaded.inline_data.data).digest() == digest
        # Not getrusage's ru_maxrss: Linux carries the high-water mark across fork and exec, so
        # it reports the (large) pytest parent's RSS at the time it started this process.
        m["run_peak"] = max(m["save_peak"], m["load_peak"])
        await svc.close()
        print(json.dumps(m))

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
    """
)


async def test_100_mb_artifact_streams_with_bounded_memory(
    pg_url: str, schema_name: str, backend: str, tmp_path: Path
):
    """Peak RSS (MiB) around the save and the load of a 100 MB artifact, in a subprocess. The
    peak is reset before each phase, so each phase's own cost is measured."""
    size = 100 * MIB
    script = tmp_path / "rss.py"
    script.write_text(_RSS_SCRIPT)
    content_dir = str(tmp_path / "content") if backend == "fs" else ""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        pg_url,
        schema_name,
        content_dir,
        str(size),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    m = json.loads(out.decode().strip().splitlines()[-1])
    print(f"\n100 MB artifact, {backend} backend, RSS (MiB): {m}")
    assert m["ok"]
    size_mib = size / MIB
    # The payload is held once by the caller; the save adds a few MiB at most (no copy of it).
    assert m["save_peak"] - m["before_save"] < 24
    # The load (payload freed first) builds its result in place: one copy, plus a few MiB.
    assert m["load_peak"] - m["before_load"] < size_mib + 24
    # The bound asked of the whole run: under three times the artifact above the baseline.
    assert m["run_peak"] < m["baseline"] + 3 * size_mib


# --------------------------------------------------------------------------------------------
# Filesystem backend: a crash between the file write and the version row
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("crash", ["statement-fails", "connection-dies"])
async def test_fs_crash_between_file_write_and_version_row(
    make_artifacts: MakeArtifacts,
    pg_admin: asyncpg.Connection,
    schema_name: str,
    tmp_path: Path,
    crash: str,
):
    svc = make_artifacts("fs")
    content_dir = tmp_path / "content"
    await svc.save_artifact(
        app_name=APP, user_id=USER, session_id=SESSION, filename="doc", artifact=blob(b"v0")
    )
    action = (
        "RAISE EXCEPTION 'simulated crash'"
        if crash == "statement-fails"
        else "PERFORM pg_terminate_backend(pg_backend_pid())"
    )
    await pg_admin.execute(
        f"""CREATE FUNCTION "{schema_name}".crash() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN {action}; RETURN NEW; END $$;
            CREATE TRIGGER crash BEFORE INSERT ON "{schema_name}".artifact_versions
              FOR EACH ROW EXECUTE FUNCTION "{schema_name}".crash();"""
    )
    payload = os.urandom(3 * MIB)
    expected_error = DatabaseError if crash == "statement-fails" else DatabaseConnectionError
    with pytest.raises(expected_error):
        await svc.save_artifact(
            app_name=APP, user_id=USER, session_id=SESSION, filename="doc", artifact=blob(payload)
        )
    # The file was written (the crash came after) and no row points at it: the save removed
    # it, or (a dead connection may keep it from doing so at once) garbage collection does.
    path = content_file(content_dir, hashlib.sha256(payload).digest())
    if crash == "statement-fails":
        assert not path.exists()
    await svc.collect_garbage(grace=0)
    assert not path.exists()
    assert await svc.list_versions(
        app_name=APP, user_id=USER, session_id=SESSION, filename="doc"
    ) == [0]
    assert (
        await pg_admin.fetchval(
            f'SELECT count(*) FROM "{schema_name}".artifact_contents WHERE sha256 = $1',
            hashlib.sha256(payload).digest(),
        )
        == 0
    )
    await assert_no_version_without_bytes(pg_admin, schema_name, content_dir)
    assert list((content_dir / "tmp").iterdir()) == []

    # After recovery the same save works and the next version follows.
    await pg_admin.execute(f'DROP TRIGGER crash ON "{schema_name}".artifact_versions')
    v = await svc.save_artifact(
        app_name=APP, user_id=USER, session_id=SESSION, filename="doc", artifact=blob(payload)
    )
    assert v == 1
    assert await svc.load_artifact(
        app_name=APP, user_id=USER, session_id=SESSION, filename="doc"
    ) == blob(payload)
    await assert_no_version_without_bytes(pg_admin, schema_name, content_dir)


async def test_fs_lost_unlink_is_collected_later(
    make_artifacts: MakeArtifacts, pg_admin: asyncpg.Connection, schema_name: str, tmp_path: Path
):
    """A delete whose process died before unlinking leaves a queued file: removed later."""
    fs_svc = make_artifacts("fs")
    db_svc = make_artifacts("db")  # deletes without a content directory: cannot unlink
    await fs_svc.save_artifact(
        app_name=APP, user_id=USER, session_id=SESSION, filename="x", artifact=blob(b"bytes")
    )
    path = content_file(tmp_path / "content", hashlib.sha256(b"bytes").digest())
    assert path.exists()
    await db_svc.delete_artifact(app_name=APP, user_id=USER, session_id=SESSION, filename="x")
    assert path.exists()
    assert await table_count(pg_admin, schema_name, "artifact_fs_garbage") == 1
    assert await fs_svc.collect_garbage() == 1
    assert not path.exists()
    assert await table_count(pg_admin, schema_name, "artifact_fs_garbage") == 0


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------

BAD_SEGMENTS = ["", "  ", "..", "a/../b", "/abs", "\\abs", "C:x", "a\x00b", "x/users/y"]


@pytest.mark.parametrize("field", ["app_name", "user_id", "session_id"])
@pytest.mark.parametrize("value", BAD_SEGMENTS)
async def test_invalid_path_segments_raise_like_adk(
    artifacts: PostgresArtifactService, field: str, value: str
):
    memory = InMemoryArtifactService()
    key = {"app_name": APP, "user_id": USER, "session_id": SESSION, field: value}
    calls: list[Callable[[BaseArtifactService], Awaitable[Any]]] = [
        lambda s: s.save_artifact(**key, filename="f", artifact=blob(b"x")),
        lambda s: s.load_artifact(**key, filename="f"),
        lambda s: s.list_versions(**key, filename="f"),
        lambda s: s.list_artifact_versions(**key, filename="f"),
        lambda s: s.get_artifact_version(**key, filename="f"),
        lambda s: s.delete_artifact(**key, filename="f"),
        lambda s: s.list_artifact_keys(**key),
    ]
    for call in calls:
        with pytest.raises(InputValidationError) as theirs:
            await call(memory)
        with pytest.raises(InputValidationError) as ours:
            await call(artifacts)
        assert str(ours.value) == str(theirs.value)


async def test_reserved_session_id_rejected_on_save(artifacts: PostgresArtifactService):
    for sid in ("user", "user/x"):
        with pytest.raises(InputValidationError, match="reserved value 'user'"):
            await artifacts.save_artifact(
                app_name=APP, user_id=USER, session_id=sid, filename="f", artifact=blob(b"x")
            )


@pytest.mark.parametrize(
    "filename",
    [
        "",
        "   ",
        "user:",
        "../x",
        "a/../../x",
        "/etc/passwd",
        "\\\\server\\share",
        "C:\\x",
        "a\x00b",
    ],
)
async def test_invalid_filenames_are_rejected(artifacts: PostgresArtifactService, filename: str):
    key = {"app_name": APP, "user_id": USER, "session_id": SESSION, "filename": filename}
    with pytest.raises(InputValidationError):
        await artifacts.save_artifact(**key, artifact=blob(b"x"))
    with pytest.raises(InputValidationError):
        await artifacts.load_artifact(**key)
    with pytest.raises(InputValidationError):
        await artifacts.delete_artifact(**key)


async def test_unencodable_text_is_a_data_error(artifacts: PostgresArtifactService):
    with pytest.raises(DataError):
        await artifacts.save_artifact(
            app_name=APP,
            user_id=USER,
            session_id=SESSION,
            filename="bad\ud800",
            artifact=blob(b"x"),
        )
    with pytest.raises(DataError):
        await artifacts.save_artifact(
            app_name=APP,
            user_id=USER,
            session_id=SESSION,
            filename="t",
            artifact=types.Part(text="\udfff"),
        )
    with pytest.raises(DataError):
        await artifacts.save_artifact(
            app_name=APP,
            user_id=USER,
            session_id=SESSION,
            filename="t",
            artifact=blob(b"x"),
            custom_metadata={"nan": float("nan")},
        )
    # Nothing was stored by the failed calls.
    assert await artifacts.list_artifact_keys(app_name=APP, user_id=USER, session_id=SESSION) == []


INJECTION_NAMES = [
    "'; DROP TABLE artifact_versions; --",
    'quote"d',
    "back\\slash",
    "percent%_under*",
    "ünïcödé 📄.txt",
    "dir/sub/file.txt",
    "user:'; DELETE FROM artifact_files; --",
    "x" * 2000,
    "$1::text",
    "versions/3",
]


async def test_injection_looking_names_round_trip(
    artifacts: PostgresArtifactService, pg_admin: asyncpg.Connection, schema_name: str
):
    app, user, sid = "app'; --", 'user"x', "sess%_ion"
    for i, name in enumerate(INJECTION_NAMES):
        v = await artifacts.save_artifact(
            app_name=app, user_id=user, session_id=sid, filename=name, artifact=blob(bytes([i]))
        )
        assert v == 0
    assert await artifacts.list_artifact_keys(app_name=app, user_id=user, session_id=sid) == sorted(
        INJECTION_NAMES
    )
    for i, name in enumerate(INJECTION_NAMES):
        assert await artifacts.load_artifact(
            app_name=app, user_id=user, session_id=sid, filename=name
        ) == blob(bytes([i]))
    # Patterns are not patterns: nothing matches by LIKE-style wildcards or prefixes.
    assert (
        await artifacts.load_artifact(
            app_name=app, user_id=user, session_id="sess__ion", filename="percent%_under*"
        )
        is None
    )
    assert await artifacts.list_artifact_keys(app_name="app", user_id=user, session_id=sid) == []
    assert await table_count(pg_admin, schema_name, "artifact_versions") == len(INJECTION_NAMES)


async def test_missing_things_are_none_or_empty(artifacts: PostgresArtifactService):
    key = {"app_name": APP, "user_id": USER, "session_id": SESSION, "filename": "nothing"}
    assert await artifacts.load_artifact(**key) is None
    assert await artifacts.load_artifact(**key, version=0) is None
    assert await artifacts.list_versions(**key) == []
    assert await artifacts.list_artifact_versions(**key) == []
    assert await artifacts.get_artifact_version(**key) is None
    assert await artifacts.delete_artifact(**key) is None
    assert await artifacts.list_artifact_keys(app_name=APP, user_id=USER, session_id=SESSION) == []
    await artifacts.save_artifact(**key, artifact=blob(b"x"))
    for version in (1, 99, -1, -99):
        assert await artifacts.load_artifact(**key, version=version) is None
        assert await artifacts.get_artifact_version(**key, version=version) is None


# --------------------------------------------------------------------------------------------
# Construction and sharing
# --------------------------------------------------------------------------------------------


async def test_shares_a_database_with_the_session_service(
    pg_url: str, schema_name: str, pg_admin: asyncpg.Connection
):
    async with Database(pg_url, schema=schema_name, pool_size=2) as db:
        sessions = PostgresSessionService(database=db)
        artifacts = PostgresArtifactService(database=db)
        assert artifacts.database is db
        session = await sessions.create_session(app_name=APP, user_id=USER)
        await artifacts.save_artifact(
            app_name=APP, user_id=USER, session_id=session.id, filename="f", artifact=blob(b"1")
        )
        await artifacts.close()  # does not close a shared database
        assert not db.closed
        assert await artifacts.list_artifact_keys(
            app_name=APP, user_id=USER, session_id=session.id
        ) == ["f"]
        assert db.pool_status()["max_size"] == 2
    assert (
        await pg_admin.fetchval(f'SELECT max(version) FROM "{schema_name}".adk_postgres_migrations')
        >= 3
    )


def test_constructor_options(tmp_path: Path, pg_url: str):
    with pytest.raises(ValueError, match="either database= or a URL"):
        PostgresArtifactService(pg_url, database=Database(pg_url))
    svc = PostgresArtifactService(pg_url, content_dir=tmp_path / "new" / "dir")
    assert svc.content_dir == (tmp_path / "new" / "dir").resolve()
    assert svc.content_dir.is_dir()
    assert "content_dir" in repr(svc)
    assert "password" not in repr(PostgresArtifactService("postgresql://u:password@h/db"))


async def test_without_statement_cache(make_artifacts: MakeArtifacts, backend: str):
    """PgBouncer (transaction mode) setting: every path works with unnamed statements."""
    svc = make_artifacts(backend, statement_cache=False)
    key = {"app_name": APP, "user_id": USER, "session_id": SESSION}
    big, small = os.urandom(3 * MIB + 1), b"small"
    for name, data in (("big", big), ("small", small)):
        assert await svc.save_artifact(**key, filename=name, artifact=blob(data)) == 0
        assert await svc.load_artifact(**key, filename=name) == blob(data)
        await svc.delete_artifact(**key, filename=name)
        assert await svc.load_artifact(**key, filename=name) is None
