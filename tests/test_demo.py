"""The newcomer's first command, examples/demo.py, works end to end against PostgreSQL."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

import pytest

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo.py"

RESTORED_HISTORY = [
    "user: Please add milk",
    'shopping_agent: [call add_item {"item": "milk"}]',
    "shopping_agent: Done. Your list: milk.",
    "user: Please add eggs",
    'shopping_agent: [call add_item {"item": "eggs"}]',
    "shopping_agent: Done. Your list: milk, eggs.",
    "user: Please add coffee",
    'shopping_agent: [call add_item {"item": "coffee"}]',
    "shopping_agent: Done. Your list: milk, eggs, coffee.",
]


async def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    """Runs the demo in its own interpreter, as a newcomer would (off the event loop)."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(DEMO), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def load_demo_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("adk_postgres_demo", DEMO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_demo_restores_history_and_state_in_a_second_process(
    pg_url: str, schema_name: str
) -> None:
    result = await run_demo("--database-url", pg_url, "--schema", schema_name)
    assert result.returncode == 0, result.stdout + result.stderr

    out = result.stdout
    assert "OK: history and state restored exactly." in out
    # Everything after this marker was printed by the second process.
    _, marker, restored = out.partition("Restored session ")
    assert marker, out
    lines = [line.strip() for line in restored.splitlines()]
    history = [line for line in lines if line.startswith(("user: ", "shopping_agent: "))]
    assert [line for line in history if "[result of" not in line] == RESTORED_HISTORY
    assert len(history) == 12  # 3 turns x (user message, tool call, tool result, reply)
    assert 'items = ["milk", "eggs", "coffee"]' in lines
    assert 'last_reply = "Done. Your list: milk, eggs, coffee."' in lines
    assert any(line.startswith("user:items_added_total = ") for line in lines)
    password = urlsplit(pg_url).password
    if password:
        assert password not in out + result.stderr


async def test_user_state_grows_across_runs_and_resume_detects_differences(
    pg_url: str, schema_name: str
) -> None:
    totals = []
    for _ in range(2):
        result = await run_demo("--database-url", pg_url, "--schema", schema_name)
        assert result.returncode == 0, result.stdout + result.stderr
        found = re.findall(r"^\s*user:items_added_total = (\d+)$", result.stdout, re.MULTILINE)
        totals.append(int(found[-1]))
    # user: state is per user, not per session: the second run's new session builds on it.
    assert totals[1] == totals[0] + 3

    # The second process must fail loudly, not print "OK", when what it loads differs.
    session_id = re.findall(r"Restored session (\S+)", result.stdout)[-1]
    common = ["--database-url", pg_url, "--schema", schema_name, "--resume"]
    wrong = json.dumps({"events": [], "state": {}})
    differs = await run_demo(*common, session_id, "--expect", wrong)
    assert differs.returncode == 1
    assert "FAIL" in differs.stdout

    missing = await run_demo(*common, "no-such-session")
    assert missing.returncode == 1
    assert "not found" in missing.stdout


async def test_help() -> None:
    result = await run_demo("--help")
    assert result.returncode == 0
    assert "--database-url" in result.stdout


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://adk:s3cret@127.0.0.1:5432/adk", "postgresql://adk:***@127.0.0.1:5432/adk"),
        ("postgresql://adk@db/adk?password=s3cret&sslmode=require", None),
        ("host=db user=adk password=s3cret dbname=adk", None),
    ],
)
def test_printed_urls_hide_the_password(url: str, shown: str | None) -> None:
    label = load_demo_module().database_label(url)
    assert "s3cret" not in label
    if shown is not None:
        assert label == shown
