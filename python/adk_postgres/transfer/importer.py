"""`adk-postgres import`: copy an ADK session database into adk-postgres, then check counts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..database import Database
from ..session_service import PostgresSessionService
from .sources import open_source
from .writer import write_adk_session

#: Called after each session with (app_name, sessions done so far).
Progress = Callable[[str, int], None]


@dataclass
class ImportReport:
    source_kind: str
    source_label: str
    dry_run: bool
    apps: list[str] = field(default_factory=list)
    sessions_seen: int = 0
    events_seen: int = 0
    sessions_created: int = 0
    events_added: int = 0
    states_taken: int = 0
    #: After the run: of the source's sessions/events, how many the target holds.
    sessions_present: int = 0
    events_present: int = 0

    @property
    def complete(self) -> bool:
        """The count check: every source session and event is in the target."""
        return (self.sessions_present, self.events_present) == (
            self.sessions_seen,
            self.events_seen,
        )


async def import_sessions(
    source_url: str,
    database: Database,
    *,
    app_name: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Copy every session (of ``app_name``, or all apps) from ``source_url``.

    Idempotent: sessions and events already present are not copied again; events the source
    gained since an earlier run are added. With ``dry_run`` nothing is written and the report
    says what would be.
    """
    source = open_source(source_url)
    report = ImportReport(source.kind, source.label, dry_run)
    sessions = await database.sessions()
    reader = PostgresSessionService(database=database, cache_bytes=0)
    try:
        apps = await source.app_names()
        report.apps = [a for a in apps if app_name is None or a == app_name]
        for app in report.apps:
            copied: set[tuple[str, str]] = set()
            async for session in source.sessions(app):
                copied.add((session.user_id, session.id))
                report.sessions_seen += 1
                report.events_seen += len(session.events)
                if dry_run:
                    stored = await reader.get_session(
                        app_name=app, user_id=session.user_id, session_id=session.id
                    )
                    stored_ids = {e.id for e in stored.events} if stored else set()
                    report.sessions_created += stored is None
                    report.events_added += sum(e.id not in stored_ids for e in session.events)
                    report.sessions_present += stored is not None
                    report.events_present += sum(e.id in stored_ids for e in session.events)
                else:
                    outcome = await write_adk_session(sessions, session)
                    report.sessions_created += outcome.created
                    report.events_added += outcome.events_added
                    report.states_taken += outcome.state_taken and not outcome.created
                    report.events_present += outcome.events_present
                if progress is not None:
                    progress(app, report.sessions_seen)
            if not dry_run:
                # The count check reads the target afresh: which of the app's sessions it holds.
                _, _, rows = await sessions.list_sessions(app, None)
                report.sessions_present += len(copied & {(r[0], r[1]) for r in rows})
    finally:
        await source.close()
    return report
