"""README "Usage", as written, run against the test database: without an API key with the
offline model swap the README describes, and the failure it warns about without one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def usage_snippet() -> str:
    usage = (ROOT / "README.md").read_text().split("## Usage", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.+?)```", usage, flags=re.S)[0]


def run(code: str, pg_url: str, schema: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_API_KEY", "GEMINI_API_KEY")}
    env["DATABASE_URL"] = pg_url
    # The snippet uses the default schema; keep the test's own.
    code = code.replace("PostgresSessionService()", f"PostgresSessionService(schema={schema!r})")
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
        cwd=ROOT,
    )  # fmt: skip


def test_usage_runs_offline_with_the_model_swap_the_readme_describes(
    pg_url: str, schema_name: str
) -> None:
    code = usage_snippet()
    assert 'model="gemini-2.5-flash"' in code
    swapped = code.replace('model="gemini-2.5-flash"', "model=OfflineChatModel()").replace(
        "from adk_postgres import PostgresSessionService",
        "from adk_postgres import PostgresSessionService\n"
        "from examples.persistent_chat.agent import OfflineChatModel",
    )
    result = run(swapped, pg_url, schema_name)
    assert result.returncode == 0, result.stderr
    assert "assistant" in result.stdout and "remember" in result.stdout


def test_without_an_api_key_usage_fails_as_the_readme_says(pg_url: str, schema_name: str) -> None:
    result = run(usage_snippet(), pg_url, schema_name)
    assert result.returncode != 0
    assert "No API key was provided" in result.stderr
    readme = (ROOT / "README.md").read_text()
    assert "GOOGLE_API_KEY" in readme.split("## Usage", 1)[1].split("\n## ", 1)[0]
