"""The session, artifact and memory suites again, through PgBouncer (Debian's 1.18): in
transaction mode with ``statement_cache=false``, and the session suites in statement mode with
``coalesce_appends=false`` as well. Each runs in a pytest subprocess with
``ADK_POSTGRES_TEST_POOLER`` set (see conftest.py), so one failure shows the inner test's own
report. Skips, saying why, where PgBouncer or a server reachable over TCP is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from servers.pgbouncer import missing_pgbouncer
from servers.postgres import missing

TESTS = Path(__file__).parent

SESSION_SUITES = [
    "test_session_conformance.py",
    "test_session_concurrency.py",
    "test_session_cache.py",
    "test_session_bad_input.py",
    "test_reads_racing_appends.py",
    "test_recreated_session.py",
    "test_lost_replies.py",
    "test_run_leases.py",
    "test_a2a_task_store.py",
    "test_conversations.py",
]
# Artifacts and memory write in transactions (chunks, extension set-up): transaction mode only.
TRANSACTION_ONLY_SUITES = [
    "test_append_coalescing.py",
    "test_artifact_service.py",
    "test_memory_service.py",
    # Restores a backup and starts servers on fresh schemas (migrations): transactions.
    "test_agent_registry.py",
]


def _skip_reason() -> str | None:
    if os.environ.get("ADK_POSTGRES_TEST_POOLER"):
        return "already running through PgBouncer"
    reason = missing_pgbouncer()
    if reason is None and not os.environ.get("TEST_DATABASE_URL"):
        reason = missing()  # the inner run starts a server on TCP for PgBouncer to reach
    return reason


@pytest.mark.parametrize(
    ("mode", "suites"),
    [
        ("transaction", SESSION_SUITES + TRANSACTION_ONLY_SUITES),
        ("statement", SESSION_SUITES),
    ],
)
def test_suites_pass_through_pgbouncer(mode: str, suites: list[str]) -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    env = {**os.environ, "ADK_POSTGRES_TEST_POOLER": mode}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x"]
    run = subprocess.run(
        [*command, *(str(TESTS / name) for name in suites)],
        cwd=TESTS.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    summary = run.stdout.strip().splitlines()[-1:] or ["(no output)"]
    print(f"\nthrough PgBouncer, {mode} mode: {summary[0]}")
    assert run.returncode == 0, f"{run.stdout[-8000:]}\n{run.stderr[-4000:]}"
    assert " passed" in summary[0] and "failed" not in summary[0]
