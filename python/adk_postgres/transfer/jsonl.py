"""`adk-postgres export` / `restore`: a portable JSON Lines backup of everything adk-postgres
keeps in a schema.

Line 1 is a header::

    {"format": "adk-postgres-export", "version": 2, "schema_version": 7, "exported_at": …,
     "app_name": null,
     "only": ["sessions", "conversations", "artifacts", "memory", "a2a", "agents", "tenancy"]}

then, per part, in this order (referenced rows before the rows that reference them):

* ``sessions``: app and user state rows, then one line per session::

      {"type": "session", "app_name": …, "user_id": …, "id": …, "last_update_time": …,
       "state": {…session-scoped…}, "events": [{…ADK event JSON…}, …],
       "app_state": null, "user_state": null}

* ``conversations``: titles and archive marks (restored only for sessions the target has);
  ``artifacts``: contents, their 1 MiB chunks, files, versions; ``memory``: entries (with
  embeddings) and tombstones; ``a2a``: A2A tasks, push configs and feedback (of every app:
  they are not stored per app, so ``--app`` leaves them out); ``agents``: the agent registry
  (agents and their versions; also not per app); ``tenancy``: the tenant grants.
  Each as a table row::

      {"type": "row", "table": "artifact_versions", "row": {…the row as PostgreSQL's to_jsonb…}}

Rows are the server's own JSON of each row and are inserted back with
``jsonb_populate_recordset`` (``rust/core/src/admin/backup.rs``), so every column survives as
it was: export → restore into an empty schema → export gives the same file but for the header's
time. Artifact contents kept in files (``content_dir``) are exported as their rows only: back up
that directory with the file. Event JSON is copied as stored (ADK's own serialisation), so an
export never decodes events.

Restoring is idempotent and the target wins, as with import: sessions and events already
present are kept, app/user state keys already present win, rows already present are kept
(an artifact file's version counter takes the larger of the two). Version 1 files (sessions
only, app/user state on session lines) are still read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from google.adk.events.event import Event
from pydantic import ValidationError
from pydantic_core import from_json, to_json

from .._native import SCHEMA_VERSION
from .._native import Admin as NativeAdmin
from .._native import Memory as NativeMemory
from ..admin import Admin
from ..database import Database
from ..errors import AdkPostgresError, ConfigurationError, DataError
from .writer import write_session

EXPORT_FORMAT = "adk-postgres-export"
EXPORT_VERSION = 2
#: Versions `restore` reads.
READABLE_VERSIONS = (1, 2)
#: The parts of a backup (``--only``), in file order.
PARTS = ("sessions", "conversations", "artifacts", "memory", "a2a", "agents", "tenancy")
#: Tables a ``row`` line may name (``rust/core/src/admin/backup.rs``, in restore order).
ROW_TABLES = (
    "app_states",
    "user_states",
    "conversations",
    "artifact_contents",
    "artifact_chunks",
    "artifact_files",
    "artifact_versions",
    "memory_entries",
    "memory_tombstones",
    "a2a_tasks",
    "a2a_push_configs",
    "a2a_task_feedback",
    "agents",
    "agent_versions",
    "tenants",
)
#: Bytes per chunk row of a content read from a file (as the artifact service stores them).
CHUNK_BYTES = 1 << 20
#: A restore batch: one transaction of at most this many rows or bytes.
BATCH_ROWS = 500
BATCH_BYTES = 16 << 20

#: Called with a short description of the progress so far.
Progress = Callable[[str], None]


@dataclass
class ExportReport:
    apps: int = 0
    sessions: int = 0
    events: int = 0
    #: Rows per table.
    rows: dict[str, int] = field(default_factory=dict)
    #: Artifact contents kept in files whose bytes were read from ``content_dir``, and those
    #: exported as rows only (no ``content_dir`` given).
    files_included: int = 0
    files_left_out: int = 0


@dataclass
class RestoreReport:
    sessions: int = 0
    sessions_created: int = 0
    events: int = 0
    events_added: int = 0
    #: Rows read per table, and how many of them were new here.
    rows: dict[str, int] = field(default_factory=dict)
    rows_added: dict[str, int] = field(default_factory=dict)


def check_parts(only: Sequence[str] | None) -> list[str]:
    """The parts to export, in file order; unknown names are a `ConfigurationError`."""
    if only is None:
        return list(PARTS)
    unknown = [part for part in only if part not in PARTS]
    if unknown or not only:
        raise ConfigurationError(
            f"unknown backup part(s) {', '.join(map(repr, unknown)) or '(none given)'}: "
            f"choose from {', '.join(PARTS)}"
        )
    return [part for part in PARTS if part in only]


async def export_backup(
    database: Database,
    out: BinaryIO,
    *,
    app_name: str | None = None,
    only: Sequence[str] | None = None,
    content_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> ExportReport:
    """Write what adk-postgres keeps (of ``app_name``, or of every app) to ``out``: the parts
    in ``only`` (default: all of `PARTS`). Reads a batch at a time, never a whole table.

    Artifact contents kept in files are read from ``content_dir`` (the artifact service's) and
    exported like contents kept in PostgreSQL, so they restore into PostgreSQL; without it
    they are exported as rows only (``files_left_out`` counts them)."""
    parts = check_parts(only)
    await database.migrate()
    report = ExportReport()
    header = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "schema_version": SCHEMA_VERSION,
        "exported_at": time.time(),
        "app_name": app_name,
        "only": parts,
    }
    out.write(to_json(header) + b"\n")
    admin = NativeAdmin(await database.store())
    files = Path(content_dir) if content_dir is not None else None
    if "sessions" in parts:
        await _export_rows(admin, ["sessions"], app_name, out, report, progress, files)
        await _export_sessions(database, out, app_name, report, progress)
    rest = [part for part in parts if part != "sessions"]
    if rest:
        await _export_rows(admin, rest, app_name, out, report, progress, files)
    return report


async def _export_rows(
    admin: NativeAdmin,
    parts: list[str],
    app_name: str | None,
    out: BinaryIO,
    report: ExportReport,
    progress: Progress | None,
    content_dir: Path | None,
) -> None:
    reader = await admin.open_backup(parts, app_name)
    try:
        while (batch := await reader.next_batch()) is not None:
            table, rows = batch
            if table == "artifact_contents":
                for row in rows:
                    await asyncio.to_thread(_write_content, row, out, report, content_dir)
            else:
                prefix = _row_prefix(table)
                out.write(b"".join(prefix + row + b"}\n" for row in rows))
            report.rows[table] = report.rows.get(table, 0) + len(rows)
            if progress is not None:
                progress(f"{table}: {report.rows[table]} rows")
    finally:
        await reader.close()


def _row_prefix(table: str) -> bytes:
    return b'{"type":"row","table":"' + table.encode() + b'","row":'


def _write_content(row: bytes, out: BinaryIO, report: ExportReport, content_dir: Path | None):
    """One ``artifact_contents`` row; a content kept in a file becomes a content kept in
    PostgreSQL, its bytes following as chunk rows read 1 MiB at a time."""
    record = from_json(row)
    if record.get("storage") != "fs":
        out.write(_row_prefix("artifact_contents") + row + b"}\n")
        return
    if content_dir is None:
        report.files_left_out += 1
        out.write(_row_prefix("artifact_contents") + row + b"}\n")
        return
    sha_hex = str(record["sha256"]).removeprefix("\\x")
    path = content_dir / sha_hex[0:2] / sha_hex[2:4] / sha_hex
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"artifact content {sha_hex} is not in {content_dir}: {exc}") from exc
    if size != record["size"]:
        raise DataError(f"artifact content file {path} has {size} bytes, not {record['size']}")
    out.write(_row_prefix("artifact_contents") + to_json({**record, "storage": "db"}) + b"}\n")
    chunk_prefix = _row_prefix("artifact_chunks")
    with path.open("rb") as content:
        for seq, data in enumerate(iter(lambda: content.read(CHUNK_BYTES), b"")):
            chunk = {"seq": seq, "data": "\\x" + data.hex(), "sha256": record["sha256"]}
            out.write(chunk_prefix + to_json(chunk) + b"}\n")
    report.files_included += 1


async def _export_sessions(
    database: Database,
    out: BinaryIO,
    app_name: str | None,
    report: ExportReport,
    progress: Progress | None,
) -> None:
    sessions = await database.sessions()
    stats = await Admin(database).stats(app_name)
    for app in sorted(a.app_name for a in stats.apps):
        report.apps += 1
        _app_json, _user_rows, session_rows = await sessions.list_sessions(app, None)
        for user_id, session_id, *_rest in sorted(session_rows, key=lambda r: (r[0], r[1])):
            row = await sessions.get_session((app, user_id, session_id))
            if row is None:
                continue  # deleted meanwhile
            state, _revision, last_update_time, _app, _user, events = row[:6]
            out.write(
                b'{"type":"session","app_name":'
                + to_json(app)
                + b',"user_id":'
                + to_json(user_id)
                + b',"id":'
                + to_json(session_id)
                + b',"last_update_time":'
                + to_json(last_update_time)
                + b',"state":'
                + state
                + b',"events":['
                + b",".join(events)
                + b'],"app_state":null,"user_state":null}\n'
            )
            report.sessions += 1
            report.events += len(events)
            if progress is not None:
                progress(f"{report.sessions} sessions")


def _parse_session(number: int, record: dict[str, Any]) -> dict[str, Any]:
    """Check one session line and turn its events into ADK `Event`s (a typed error naming
    the line otherwise)."""
    try:
        for key in ("app_name", "user_id", "id"):
            if not isinstance(record.get(key), str):
                raise DataError(f"{key} must be a string")
        if not isinstance(record.get("state"), dict):
            raise DataError("state must be an object")
        if not isinstance(record.get("last_update_time"), int | float):
            raise DataError("last_update_time must be a number")
        events = [Event.model_validate(e) for e in record.get("events") or []]
        for key in ("app_state", "user_state"):
            if record.get(key) is not None and not isinstance(record[key], dict):
                raise DataError(f"{key} must be an object or null")
    except (DataError, ValidationError) as exc:
        raise DataError(f"line {number}: {exc}") from exc
    return {**record, "events": events}


def _read_header(line: bytes) -> dict[str, Any]:
    try:
        header = from_json(line)
    except ValueError as exc:
        raise DataError(f"line 1: not an {EXPORT_FORMAT} header: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
        raise DataError(f"line 1: not an {EXPORT_FORMAT} file")
    if header.get("version") not in READABLE_VERSIONS:
        raise DataError(
            f"line 1: export format version {header.get('version')!r} is not supported "
            f"(this adk-postgres reads versions {', '.join(map(str, READABLE_VERSIONS))})"
        )
    return header


class _RowBatch:
    """Consecutive rows of one table, restored in one transaction."""

    def __init__(self, database: Database, report: RestoreReport) -> None:
        self._database = database
        self._report = report
        self._admin: NativeAdmin | None = None
        self._vector_checked = False
        self.table: str | None = None
        self.rows: list[bytes] = []
        self.size = 0
        self.first_line = 0

    async def add(self, number: int, table: str, row: bytes) -> None:
        if table != self.table or len(self.rows) >= BATCH_ROWS or self.size >= BATCH_BYTES:
            await self.flush()
            self.table, self.first_line = table, number
        self.rows.append(row)
        self.size += len(row)

    async def flush(self) -> None:
        if not self.rows or self.table is None:
            return
        table, rows = self.table, self.rows
        self.rows, self.size = [], 0
        if self._admin is None:
            await self._database.migrate()
            self._admin = NativeAdmin(await self._database.store())
        if table == "memory_entries" and not self._vector_checked:
            await self._prepare_embeddings(rows)
        try:
            if table == "tenants":
                added = await self._grant_tenants(rows)
            else:
                added = await self._admin.restore_rows(table, rows)
        except AdkPostgresError as exc:
            last = self.first_line + len(rows) - 1
            raise DataError(
                f"lines {self.first_line}-{last} ({table}): {type(exc).__name__}: {exc}; "
                "nothing of these lines was written"
            ) from exc
        self._report.rows[table] = self._report.rows.get(table, 0) + len(rows)
        self._report.rows_added[table] = self._report.rows_added.get(table, 0) + added

    async def _grant_tenants(self, rows: list[bytes]) -> int:
        """Tenant grants go through `grant_tenant`, which also gives the role the privileges
        the grant needs (a bare row would leave the role unable to use it). The role must
        exist here."""
        from ..tenancy import grant_tenant, list_tenants

        before = {(g.role, g.app_name, g.user_id) for g in await list_tenants(self._database)}
        added = 0
        for raw in rows:
            row = from_json(raw)
            key = (row.get("role_name"), row.get("app_name"), row.get("user_id"))
            if not isinstance(key[0], str) or not isinstance(key[1], str):
                raise DataError("a tenants row needs role_name and app_name strings")
            await grant_tenant(self._database, key[0], key[1], key[2])
            added += key not in before
        return added

    async def _prepare_embeddings(self, rows: list[bytes]) -> None:
        """Memory rows with embeddings need the embedding column, which the memory service
        otherwise adds only once it has an embed function."""
        if not any(b'"embedding":' in row and b'"embedding":null' not in row for row in rows):
            return
        self._vector_checked = True
        caps = await NativeMemory(await self._database.store(), vector=True).capabilities()
        if not caps["embedding_column"]:
            notes = "; ".join(caps["notes"]) or "no pgvector"
            raise DataError(
                f"the backup holds memory embeddings, but this database cannot store them "
                f"({notes}): install pgvector, or restore with --only excluding memory"
            )


async def restore_backup(
    database: Database, lines: Iterable[bytes], *, progress: Progress | None = None
) -> RestoreReport:
    """Load an export. Each session line is one transaction, written after it was checked;
    table rows go in batches of consecutive rows of one table, each one transaction. A bad
    line stops the restore with an error naming it, and nothing of its session or batch is
    written."""
    sessions = await database.sessions()
    report = RestoreReport()
    iterator = iter(lines)
    header = _read_header(next(iterator, b""))
    batch = _RowBatch(database, report)
    for number, line in enumerate(iterator, start=2):
        if not line.strip():
            continue
        try:
            record = from_json(line)
        except ValueError as exc:
            raise DataError(f"line {number}: not JSON: {exc}") from exc
        kind = record.get("type") if isinstance(record, dict) else None
        if kind == "row" and header["version"] >= 2:
            table, row = record.get("table"), record.get("row")
            if table not in ROW_TABLES or not isinstance(row, dict):
                raise DataError(
                    f"line {number}: a row needs a table ({', '.join(ROW_TABLES)}) and an object"
                )
            await batch.add(number, table, to_json(row))
            if progress is not None and len(batch.rows) == 1:
                progress(f"{table}: {report.rows.get(table, 0)} rows")
            continue
        if kind != "session":
            raise DataError(f"line {number}: expected a session or row record")
        await batch.flush()
        session = _parse_session(number, record)
        outcome = await write_session(
            sessions,
            app_name=session["app_name"],
            user_id=session["user_id"],
            session_id=session["id"],
            state=session["state"],
            events=session["events"],
            last_update_time=float(session["last_update_time"]),
            app_state=session.get("app_state"),
            user_state=session.get("user_state"),
        )
        report.sessions += 1
        report.sessions_created += outcome.created
        report.events += len(session["events"])
        report.events_added += outcome.events_added
        if progress is not None:
            progress(f"{report.sessions} sessions")
    await batch.flush()
    return report
