"""The ``adk-postgres`` console script.

Each module adds one group of commands: `serve` (ADK's web and API servers on adk-postgres),
`admin` (migrate, doctor, stats, prune) and `transfer` (import, export, restore).
"""

from __future__ import annotations

from ._app import main, run

__all__ = ["main", "run"]
