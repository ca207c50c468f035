"""A real `adk-postgres web|api_server` process on 127.0.0.1:<free port>, for tests that talk
to it over HTTP.

    with AdkServer(pg_url, schema, EXAMPLES, "--a2a") as server:
        server.client.get("/list-apps")

The process runs this venv's `adk-postgres` with ``-d URL --schema NAME``, then the command
(``api_server`` by default), the extra options, ``--port`` and the agents directory; without
``GOOGLE_API_KEY`` so the example agents use their offline models. It is ready when
``ready_path`` answers 200 (at most 90 s; an early exit fails the test with its output).
``stop()`` sends SIGTERM (SIGCONT first, in case a test stopped it), kills after 30 s, and
returns everything the process printed (also kept as ``output``). ``running(...)`` starts
several and stops every one it started, even when a later one fails to start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import httpx
import pytest

CLI = Path(sys.executable).with_name("adk-postgres")


def run_body(app: str, user: str, session_id: str, text: str, **extra: object) -> dict:
    """The JSON body of ADK's ``/run`` and ``/run_sse`` for one user message."""
    return {
        "appName": app,
        "userId": user,
        "sessionId": session_id,
        "newMessage": {"role": "user", "parts": [{"text": text}]},
        **extra,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AdkServer:
    """One `adk-postgres` server process (see the module docstring)."""

    def __init__(
        self,
        pg_url: str,
        schema: str,
        agents_dir: Path,
        *options: str,
        command: str = "api_server",
        ready_path: str = "/list-apps",
        timeout: float = 60,
    ) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "GOOGLE_API_KEY"}
        self.process = subprocess.Popen(
            [
                str(CLI),
                "-d",
                pg_url,
                "--schema",
                schema,
                command,
                *options,
                "--port",
                str(self.port),
                str(agents_dir),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=timeout)
        #: What the process printed, once stopped.
        self.output: str | None = None
        self._wait_ready(ready_path)

    def _wait_ready(self, path: str) -> None:
        deadline = time.monotonic() + 90
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited early:\n{self.process.stdout.read()}")
            try:
                if self.client.get(path).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail("the server did not become ready in 90 s")
            time.sleep(0.2)

    def stop(self) -> str:
        """Stops the process (if it still runs) and returns its output."""
        if self.output is not None:
            return self.output
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.output = self.process.stdout.read() if self.process.stdout else ""
        return self.output

    def __enter__(self) -> AdkServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        output = self.stop()
        if exc_type is None:
            assert "Traceback" not in output, output[-4000:]


@contextmanager
def running(*start: Callable[[], AdkServer]) -> Iterator[list[AdkServer]]:
    """Starts a server with each callable, in order; at the end stops every server started,
    also when a test failed or a later server did not start (read their ``output`` after)."""
    started: list[AdkServer] = []
    try:
        for make in start:
            started.append(make())
        yield started
    finally:
        for server in started:
            server.stop()
