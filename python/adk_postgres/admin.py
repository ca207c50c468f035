"""Operations on a database's adk-postgres schema: migration status, health checks, statistics
and pruning — the API behind ``adk-postgres migrate|doctor|stats|prune``.

>>> admin = Admin(Database(url, schema="agents"))
>>> report = await admin.prune(idle_for=timedelta(days=30), dry_run=True)

All SQL runs in the Rust core (``rust/core/src/admin.rs``); this module converts results to
dataclasses and parses durations.

Pruning never changes a session's ``revision``: a ``Session`` object a running agent holds
stays appendable (no ``StaleSessionError`` because of a prune). The price: a process that
already read a session keeps its pruned events in its warm session cache (and returns them
from full reads) until the entry is evicted or the process restarts. Reads with
``num_recent_events <= keep_events`` return the same events either way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from ._native import Admin as NativeAdmin
from .database import Database
from .errors import ConfigurationError

CheckStatus = Literal["ok", "warn", "fail"]

#: Sessions (artifact files, contents) deleted per transaction by default.
DEFAULT_BATCH_SIZE = 1000

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+)([smhdw])")


def parse_duration(text: str, *, allow_zero: bool = False) -> timedelta:
    """``90m``, ``12h``, ``30d``, ``2w`` (units s, m, h, d, w; combinable: ``1d12h``)."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ConfigurationError(
            f"invalid duration {text!r}: use a number and a unit s, m, h, d or w (e.g. 90m, "
            "12h, 30d, 2w)"
        )
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ConfigurationError(f"invalid duration {text!r}: must be longer than zero")
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class AppliedMigration:
    version: int
    name: str
    #: UTC, ISO 8601 (``None`` if not recorded).
    applied_at: str | None


@dataclass(frozen=True)
class PendingMigration:
    version: int
    name: str


@dataclass(frozen=True)
class MigrationStatus:
    schema: str
    #: Highest applied version (0: none).
    current: int
    #: Newest version this adk-postgres knows.
    latest: int
    applied: list[AppliedMigration]
    pending: list[PendingMigration]

    @property
    def up_to_date(self) -> bool:
        return not self.pending and self.current >= self.latest

    @classmethod
    def _from_native(cls, raw: dict[str, Any]) -> MigrationStatus:
        return cls(
            schema=raw["schema"],
            current=raw["current"],
            latest=raw["latest"],
            applied=[AppliedMigration(*a) for a in raw["applied"]],
            pending=[PendingMigration(*p) for p in raw["pending"]],
        )


@dataclass(frozen=True)
class DoctorCheck:
    name: str
    status: CheckStatus
    detail: str
    #: What to do about a warning or failure.
    advice: str | None


@dataclass(frozen=True)
class ExtensionInfo:
    name: str
    #: Version the server could install (``None``: not available).
    available: str | None
    #: Version installed in the database (``None``: not installed).
    installed: str | None
    #: Schema holding its objects when installed (extensions belong to the whole database).
    schema: str | None = None


@dataclass(frozen=True)
class DoctorReport:
    #: Where the database is (never the password).
    target: str
    checks: list[DoctorCheck]
    connect_ms: float | None = None
    round_trip_ms: float | None = None
    server_version: str | None = None
    user: str | None = None
    superuser: bool | None = None
    #: TLS protocol and cipher when the connection is encrypted.
    tls: str | None = None
    extensions: list[ExtensionInfo] = field(default_factory=list)
    #: ``max_size``, ``size``, ``available``, ``waiting``, timeouts, ``statement_cache``.
    pool: dict[str, Any] | None = None
    migrations: MigrationStatus | None = None
    can_create: bool | None = None

    @property
    def failed(self) -> list[DoctorCheck]:
        return [c for c in self.checks if c.status == "fail"]

    @property
    def warnings(self) -> list[DoctorCheck]:
        return [c for c in self.checks if c.status == "warn"]

    @property
    def ok(self) -> bool:
        """No failed check (warnings allowed)."""
        return not self.failed

    @classmethod
    def _from_native(cls, raw: dict[str, Any]) -> DoctorReport:
        migrations = raw["migrations"]
        return cls(
            target=raw["target"],
            checks=[DoctorCheck(*c) for c in raw["checks"]],
            connect_ms=raw["connect_ms"],
            round_trip_ms=raw["round_trip_ms"],
            server_version=raw["server_version"],
            user=raw["user"],
            superuser=raw["superuser"],
            tls=raw["tls"],
            extensions=[ExtensionInfo(*e) for e in raw["extensions"]],
            pool=raw["pool"],
            migrations=MigrationStatus._from_native(migrations) if migrations else None,
            can_create=raw["can_create"],
        )


@dataclass(frozen=True)
class AppStats:
    app_name: str
    #: Distinct user ids with sessions, user state, artifacts or memories.
    users: int
    sessions: int
    events: int
    artifact_files: int
    artifact_versions: int
    #: Bytes of the distinct contents the versions use (a shared payload counts once).
    artifact_bytes: int
    memory_entries: int


@dataclass(frozen=True)
class TableSize:
    name: str
    #: ``pg_total_relation_size``: table, indexes and TOAST.
    bytes: int
    #: The planner's estimate (``pg_class.reltuples``), not an exact count; ``None`` until
    #: the table was first analyzed (by autovacuum or ``ANALYZE``).
    rows_estimate: int | None


@dataclass(frozen=True)
class Stats:
    apps: list[AppStats]
    #: Sums over ``apps``; ``users`` counts distinct user ids, ``artifact_bytes`` distinct
    #: contents. ``app_name`` is ``"*"``.
    totals: AppStats
    #: Distinct contents the selected apps use.
    artifact_contents: int
    #: Every stored content (all apps, orphans included) and its bytes.
    stored_contents: int
    stored_content_bytes: int
    tables: list[TableSize]
    #: A2A tasks per state name (``TASK_STATE_COMPLETED`` …), of every app (tasks are not
    #: stored per app), and the feedback on them.
    a2a_tasks: dict[str, int] = field(default_factory=dict)
    a2a_feedback: int = 0

    @classmethod
    def _from_native(cls, raw: dict[str, Any]) -> Stats:
        return cls(
            apps=[AppStats(*a) for a in raw["apps"]],
            totals=AppStats(*raw["totals"]),
            artifact_contents=raw["artifact_contents"],
            stored_contents=raw["stored_contents"],
            stored_content_bytes=raw["stored_content_bytes"],
            tables=[TableSize(*t) for t in raw["tables"]],
            a2a_tasks=dict(raw["a2a_tasks"]),
            a2a_feedback=raw["a2a_feedback"],
        )


@dataclass(frozen=True)
class AppPruned:
    app_name: str
    #: Idle sessions.
    sessions: int
    #: Events of those sessions (deleted with them).
    session_events: int
    #: Events beyond ``keep_events`` in the sessions that stay.
    events: int
    #: Artifacts (every version) of sessions that no longer exist.
    artifact_files: int
    artifact_versions: int
    #: Conversations archived longer ago than ``archived_for`` (deleted with their events).
    archived_sessions: int = 0
    archived_events: int = 0


@dataclass(frozen=True)
class PruneReport:
    dry_run: bool
    #: Sessions last updated before this (epoch seconds, server clock) counted as idle.
    cutoff: float | None
    apps: list[AppPruned]
    #: Artifact contents no version uses any more, and their bytes.
    contents: int
    content_bytes: int
    #: Content files unlinked (dry run: that would be unlinked; needs ``content_dir``).
    files: int
    #: Content files left queued in ``artifact_fs_garbage`` (no ``content_dir`` given).
    files_queued: int
    #: Transactions committed.
    batches: int
    #: A2A tasks finished before this (epoch seconds, server clock) were pruned.
    tasks_cutoff: float | None = None
    #: A2A tasks deleted (dry run: to delete) and the feedback that went with them.
    tasks: int = 0
    task_feedback: int = 0
    #: Conversations archived before this (epoch seconds, server clock) were pruned.
    archived_cutoff: float | None = None

    @property
    def totals(self) -> AppPruned:
        def total(name: str) -> int:
            return sum(getattr(a, name) for a in self.apps)

        return AppPruned(
            app_name="*",
            sessions=total("sessions"),
            session_events=total("session_events"),
            events=total("events"),
            artifact_files=total("artifact_files"),
            artifact_versions=total("artifact_versions"),
            archived_sessions=total("archived_sessions"),
            archived_events=total("archived_events"),
        )

    @classmethod
    def _from_native(cls, raw: dict[str, Any]) -> PruneReport:
        return cls(
            dry_run=raw["dry_run"],
            cutoff=raw["cutoff"],
            apps=[AppPruned(*a) for a in raw["apps"]],
            contents=raw["contents"],
            content_bytes=raw["content_bytes"],
            files=raw["files"],
            files_queued=raw["files_queued"],
            batches=raw["batches"],
            tasks_cutoff=raw["tasks_cutoff"],
            tasks=raw["tasks"],
            task_feedback=raw["task_feedback"],
            archived_cutoff=raw["archived_cutoff"],
        )


class Admin:
    """Operations on ``database``'s schema (the ``Database`` stays open; its owner closes it)."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._native: NativeAdmin | None = None

    async def _admin(self) -> NativeAdmin:
        if self._native is None:
            self._native = NativeAdmin(await self._database.store())
        return self._native

    async def migrate(self) -> MigrationStatus:
        """Create or upgrade the tables; returns the status afterwards."""
        await self._database.migrate()
        return await self.migration_status()

    async def migration_status(self) -> MigrationStatus:
        """Applied and pending migrations; changes nothing."""
        return MigrationStatus._from_native(await (await self._admin()).migration_status())

    async def doctor(self) -> DoctorReport:
        """Run every health check. A failing check is reported (``report.failed``), not
        raised; a connection failure ends the checks early. Changes nothing."""
        return DoctorReport._from_native(await (await self._admin()).doctor())

    async def stats(self, app_name: str | None = None) -> Stats:
        """Counts per app and totals, and table sizes. The schema must be migrated."""
        return Stats._from_native(await (await self._admin()).stats(app_name))

    async def prune(
        self,
        *,
        app_name: str | None = None,
        idle_for: timedelta | str | None = None,
        keep_events: int | None = None,
        orphaned_artifacts: bool = False,
        content_dir: str | Path | None = None,
        file_grace: timedelta | str | None = None,
        tasks_finished_before: timedelta | str | None = None,
        archived_for: timedelta | str | None = None,
        dry_run: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> PruneReport:
        """Delete (or with ``dry_run`` only count) what the criteria select:

        * ``idle_for``: sessions not updated for longer than this, with their events;
        * ``keep_events``: all but the newest N events of each session (the order
          ``num_recent_events`` reads in), without touching the session's revision;
        * ``orphaned_artifacts``: session-scoped artifacts whose session no longer exists,
          contents no version uses (without ``app_name`` only: contents are shared between
          apps), and with ``content_dir`` the files of deleted contents and files no content
          uses (left by failed or cancelled saves) once older than ``file_grace`` (1 hour);
        * ``tasks_finished_before``: A2A tasks that finished (completed, failed, canceled,
          rejected) longer ago than this, with their feedback (not per app: refused with
          ``app_name``);
        * ``archived_for``: conversations archived (``PostgresConversations.archive``) longer
          ago than this: the sessions, with their events.

        Each batch of ``batch_size`` sessions (artifacts, contents) is one transaction.
        Raises ``ConfigurationError`` when no criterion is given.
        """
        if isinstance(idle_for, str):
            idle_for = parse_duration(idle_for)
        if isinstance(file_grace, str):
            file_grace = parse_duration(file_grace, allow_zero=True)
        grace: dict[str, float] = {}
        if file_grace is not None:
            grace["file_grace"] = file_grace.total_seconds()
        if isinstance(tasks_finished_before, str):
            tasks_finished_before = parse_duration(tasks_finished_before)
        if isinstance(archived_for, str):
            archived_for = parse_duration(archived_for)
        if (
            idle_for is None
            and keep_events is None
            and not orphaned_artifacts
            and tasks_finished_before is None
            and archived_for is None
        ):
            raise ConfigurationError(
                "nothing to prune: give idle_for, keep_events, orphaned_artifacts, "
                "tasks_finished_before or archived_for"
            )
        raw = await (await self._admin()).prune(
            app_name=app_name,
            idle_for=idle_for.total_seconds() if idle_for is not None else None,
            keep_events=keep_events,
            orphaned_artifacts=orphaned_artifacts,
            content_dir=str(Path(content_dir).expanduser()) if content_dir is not None else None,
            **grace,
            tasks_finished_before=(
                tasks_finished_before.total_seconds() if tasks_finished_before is not None else None
            ),
            archived_for=archived_for.total_seconds() if archived_for is not None else None,
            dry_run=dry_run,
            batch_size=batch_size,
        )
        return PruneReport._from_native(raw)
