"""`adk-postgres export` / `restore`: a portable JSON Lines backup.

Line 1 is a header::

    {"format": "adk-postgres-export", "version": 1, "schema_version": 4, "exported_at": …,
     "app_name": null}

then one line per session::

    {"type": "session", "app_name": …, "user_id": …, "id": …, "last_update_time": …,
     "state": {…session-scoped…}, "events": [{…ADK event JSON…}, …],
     "app_state": {…} | null, "user_state": {…} | null}

``app_state`` is given on the first session line of each app and ``user_state`` on the first
of each user (app/user state without any session is not exported). Event JSON is copied as
stored (ADK's own serialisation), so an export never decodes events. Restoring is idempotent in
the same way as import (see ``rust/core/src/transfer.rs``): sessions and events already present
are kept, app/user state keys already present win.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

from google.adk.events.event import Event
from pydantic import ValidationError
from pydantic_core import from_json, to_json

from .._native import SCHEMA_VERSION
from ..admin import Admin
from ..database import Database
from ..errors import DataError
from .writer import write_session

EXPORT_FORMAT = "adk-postgres-export"
EXPORT_VERSION = 1

Progress = Callable[[int], None]


@dataclass
class ExportReport:
    apps: int = 0
    sessions: int = 0
    events: int = 0


@dataclass
class RestoreReport:
    sessions: int = 0
    sessions_created: int = 0
    events: int = 0
    events_added: int = 0


async def export_sessions(
    database: Database,
    out: BinaryIO,
    *,
    app_name: str | None = None,
    progress: Progress | None = None,
) -> ExportReport:
    """Write every session (of ``app_name``, or of all apps) to ``out``, one line each."""
    await database.migrate()
    sessions = await database.sessions()
    report = ExportReport()
    header = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "schema_version": SCHEMA_VERSION,
        "exported_at": time.time(),
        "app_name": app_name,
    }
    out.write(to_json(header) + b"\n")
    stats = await Admin(database).stats(app_name)
    for app in sorted(a.app_name for a in stats.apps):
        report.apps += 1
        app_json, user_rows, session_rows = await sessions.list_sessions(app, None)
        user_states = dict(user_rows)
        users_done: set[str] = set()
        for position, (user_id, session_id, *_rest) in enumerate(session_rows):
            row = await sessions.get_session((app, user_id, session_id))
            if row is None:
                continue  # deleted meanwhile
            state, _revision, last_update_time, _app, _user, events = row[:6]
            user_json = user_states.get(user_id) if user_id not in users_done else None
            users_done.add(user_id)
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
                + b'],"app_state":'
                + ((app_json or b"null") if position == 0 else b"null")
                + b',"user_state":'
                + (user_json or b"null")
                + b"}\n"
            )
            report.sessions += 1
            report.events += len(events)
            if progress is not None:
                progress(report.sessions)
    return report


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


async def restore_sessions(
    database: Database, lines: Iterable[bytes], *, progress: Progress | None = None
) -> RestoreReport:
    """Load an export. Each session line is written in one transaction, after it was checked,
    so a bad line stops the restore with nothing of that session written."""
    sessions = await database.sessions()
    report = RestoreReport()
    iterator = iter(lines)
    header_line = next(iterator, b"")
    try:
        header = from_json(header_line)
    except ValueError as exc:
        raise DataError(f"line 1: not an {EXPORT_FORMAT} header: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
        raise DataError(f"line 1: not an {EXPORT_FORMAT} file")
    if header.get("version") != EXPORT_VERSION:
        raise DataError(
            f"line 1: export format version {header.get('version')!r} is not supported "
            f"(this adk-postgres reads version {EXPORT_VERSION})"
        )
    for number, line in enumerate(iterator, start=2):
        if not line.strip():
            continue
        try:
            record = from_json(line)
        except ValueError as exc:
            raise DataError(f"line {number}: not JSON: {exc}") from exc
        if not isinstance(record, dict) or record.get("type") != "session":
            raise DataError(f"line {number}: expected a session record")
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
            progress(report.sessions)
    return report
