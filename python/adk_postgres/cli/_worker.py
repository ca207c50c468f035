"""Entry point of one server process of ``adk-postgres web|api_server --workers N``.

Started by the supervisor in :mod:`adk_postgres.cli.workers` (never by hand) as
``python -m adk_postgres.cli._worker COMMAND [OPTIONS] ARGS``. SIGINT and SIGHUP are ignored
before anything else: a terminal sends them to the whole process group, and the supervisor
forwards one SIGTERM to every worker instead (uvicorn then shuts down gracefully).
"""

from __future__ import annotations

import signal
import sys

signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)

from adk_postgres.cli import run  # noqa: E402
from adk_postgres.cli.workers import become_worker  # noqa: E402

if __name__ == "__main__":
    become_worker()
    run(sys.argv[1:])
