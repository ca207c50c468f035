"""README's main job, as written: `adk-postgres web examples` with no URL runs ADK's web UI and
API on the embedded PostgreSQL; an agent turn is stored; Ctrl-C (SIGINT) stops it cleanly and
the embedded server with it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).with_name("adk-postgres")


def _readme_main_job() -> str:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n\s*(.+?)\n\s*```", quick_start, flags=re.S)
    assert len(commands) == 2, "Quick start shows two commands"
    return commands[0].strip()


def test_readme_main_job_is_the_web_server_on_embedded_postgres() -> None:
    command = _readme_main_job()
    assert command == (
        "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/adk-postgres web examples"
    )


def test_web_examples_runs_on_the_embedded_postgres() -> None:
    port = _free_port()
    # No URL anywhere: the embedded server, in a scratch data directory (root: not under /root).
    data_dir = Path(tempfile.mkdtemp(prefix="adkpg-main-job-", dir="/var/tmp")) / "pgdata"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "GOOGLE_API_KEY") and not k.startswith("ADK_POSTGRES_")
    }
    env["ADK_POSTGRES_DATA_DIR"] = str(data_dir)
    process = subprocess.Popen(
        [str(CLI), "web", "--port", str(port), "examples"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 120
            while True:
                if process.poll() is not None:
                    pytest.fail(f"web exited early:\n{process.stdout.read()}")
                try:
                    if client.get("/list-apps").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "web did not become ready in 120 s"
                time.sleep(0.3)
            assert client.get("/").status_code in (200, 307)  # the web UI is served
            session = client.post("/apps/basic_agent/users/me/sessions", json={}).json()
            events = client.post(
                "/run",
                json={
                    "appName": "basic_agent",
                    "userId": "me",
                    "sessionId": session["id"],
                    "newMessage": {"role": "user", "parts": [{"text": "convert 21"}]},
                },
            ).json()
            assert events[-1]["content"]["parts"][0]["text"] == "21.0 °C is 69.8 °F."
            stored = client.get(f"/apps/basic_agent/users/me/sessions/{session['id']}").json()
            assert len(stored["events"]) == 4 and stored["state"] == {"conversions": 1}
        assert (data_dir / "PG_VERSION").is_file()  # the embedded server held the data
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    stopped = not (data_dir / "postmaster.pid").exists()
    shutil.rmtree(data_dir.parent, ignore_errors=True)
    assert "Traceback" not in output, output
    # The embedded server stopped with the last process using it.
    assert stopped, output


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
