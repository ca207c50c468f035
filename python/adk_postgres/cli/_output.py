"""Console output for the CLI: rich on a terminal, plain text in pipes, JSON on request."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

#: Normal output (tables, results).
console = Console()
#: Progress, warnings and errors, so that stdout stays parseable (``--json``, ``export -``).
err_console = Console(stderr=True)


def print_json(data: Any) -> None:
    """Machine-readable output on stdout: one JSON document, no colours."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def fail(message: str) -> None:
    """The one-line reason printed before a non-zero exit."""
    # soft_wrap: one line however narrow the terminal (rich would wrap at its width).
    err_console.print(
        f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True
    )
