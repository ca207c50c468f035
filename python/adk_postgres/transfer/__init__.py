"""Moving sessions in and out: `import` from ADK's own databases, `export`/`restore` JSON Lines
(sessions, artifacts, memory, A2A tasks and tenancy).

* `sources` reads an ADK database through ADK's own session services.
* `writer` turns an ADK `Session` into one bulk write (see ``rust/core/src/transfer.rs``).
* `importer` copies a source into adk-postgres, with a count check.
* `jsonl` is the export/restore format.
"""

from .importer import ImportReport, import_sessions
from .jsonl import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    PARTS,
    ExportReport,
    RestoreReport,
    export_backup,
    restore_backup,
)

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "PARTS",
    "ExportReport",
    "ImportReport",
    "RestoreReport",
    "export_backup",
    "import_sessions",
    "restore_backup",
]
