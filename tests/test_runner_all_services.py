"""All three services behind one ADK Runner, sharing one pool, surviving a "restart"
(new service objects on the same database): the README's wiring, exercised for real."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from google.adk.runners import Runner
from google.genai import types

from adk_postgres import (
    Database,
    PostgresArtifactService,
    PostgresMemoryService,
    PostgresSessionService,
)


def load_demo() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "examples" / "demo.py"
    spec = importlib.util.spec_from_file_location("adkpg_demo", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["adkpg_demo"] = module
    spec.loader.exec_module(module)
    return module


async def test_runner_with_sessions_artifacts_and_memory(pg_url: str, schema_name: str) -> None:
    demo = load_demo()
    app, user = "all_three", "alice"
    db = Database(pg_url, schema=schema_name)
    sessions = PostgresSessionService(database=db)
    artifacts = PostgresArtifactService(database=db)
    memory = PostgresMemoryService(database=db)
    runner = Runner(
        app_name=app,
        agent=demo.build_agent(),
        session_service=sessions,
        artifact_service=artifacts,
        memory_service=memory,
    )
    session = await sessions.create_session(app_name=app, user_id=user)
    for text in ("Please add milk", "Please add coffee"):
        message = types.Content(role="user", parts=[types.Part(text=text)])
        async for _ in runner.run_async(user_id=user, session_id=session.id, new_message=message):
            pass
    await artifacts.save_artifact(
        app_name=app,
        user_id=user,
        session_id=session.id,
        filename="list.txt",
        artifact=types.Part(text="milk, coffee"),
    )
    done = await sessions.get_session(app_name=app, user_id=user, session_id=session.id)
    assert done is not None
    await memory.add_session_to_memory(done)
    await db.close()

    # A new process would build new objects on the same database: everything is still there.
    db2 = Database(pg_url, schema=schema_name)
    sessions2 = PostgresSessionService(database=db2)
    artifacts2 = PostgresArtifactService(database=db2)
    memory2 = PostgresMemoryService(database=db2)
    restored = await sessions2.get_session(app_name=app, user_id=user, session_id=session.id)
    assert restored == done
    assert restored.state["items"] == ["milk", "coffee"]
    part = await artifacts2.load_artifact(
        app_name=app, user_id=user, session_id=session.id, filename="list.txt"
    )
    assert part is not None and part.text == "milk, coffee"
    found = await memory2.search_memory(app_name=app, user_id=user, query="coffee")
    texts = [p.text for m in found.memories for p in (m.content.parts or []) if p.text is not None]
    assert any("coffee" in t for t in texts)
    await db2.close()
