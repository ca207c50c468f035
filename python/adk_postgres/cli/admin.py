"""``adk-postgres migrate``, ``doctor``, ``stats`` and ``prune``: operating the schema.

Each command is one `Admin` call (``adk_postgres.admin``) on the database of the global
options, printed as text or, with ``--json``, as one JSON document on stdout.
"""

from __future__ import annotations

import dataclasses
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from ..admin import (
    DEFAULT_BATCH_SIZE,
    Admin,
    DoctorReport,
    MigrationStatus,
    PruneReport,
    Stats,
    parse_duration,
)
from ..errors import ConfigurationError
from ._app import EXIT_FAILURE, main, run_async
from ._output import console, print_json
from ._settings import Settings


def _say(text: str = "") -> None:
    """One line of plain output: no markup, no highlighting, never wrapped (greppable)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _json(obj: Any) -> None:
    print_json(dataclasses.asdict(obj))


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _table(header: list[str], rows: list[list[Any]], align: str = "") -> None:
    """A plain, aligned table. ``align`` has one letter per column, ``l`` or ``r``; by
    default the first column is left-aligned and the others (numbers) right-aligned."""
    align = align or "l" + "r" * (len(header) - 1)
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for row in cells:
        line = "  ".join(
            c.ljust(w) if a == "l" else c.rjust(w)
            for c, w, a in zip(row, widths, align, strict=True)
        )
        _say(line.rstrip())


def _admin(settings: Settings) -> Admin:
    return Admin(settings.database())


# --- migrate ---------------------------------------------------------------------------------


def _print_status(status: MigrationStatus) -> None:
    _table(
        ["version", "name", "applied at"],
        [[m.version, m.name, m.applied_at or "(not recorded)"] for m in status.applied]
        + [[m.version, m.name, "pending"] for m in status.pending],
        align="rll",
    )
    _say()
    if status.current > status.latest:
        _say(
            f"schema {status.schema!r} is at version {status.current}, newer than this "
            f"adk-postgres ({status.latest})"
        )
    elif status.pending:
        _say(
            f"schema {status.schema!r} is at version {status.current} of {status.latest}: "
            f"{len(status.pending)} pending (run `adk-postgres migrate`)"
        )
    else:
        _say(f"schema {status.schema!r} is at version {status.current} (up to date)")


@main.command("migrate", short_help="Create or upgrade the tables (--status: list them).")
@click.option(
    "--status",
    "status_only",
    is_flag=True,
    help="List applied and pending migrations; change nothing.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_obj
def migrate_command(settings: Settings, status_only: bool, as_json: bool) -> None:
    """Create or upgrade the tables and print the resulting schema version.

    Safe to run while services are running and from several processes at once: pending
    migrations are applied in one transaction under an advisory lock.
    """
    admin = _admin(settings)

    async def go() -> tuple[MigrationStatus, MigrationStatus]:
        before = await admin.migration_status()
        after = before if status_only else await admin.migrate()
        return before, after

    before, after = run_async(go())
    if as_json:
        _json(after)
        return
    if status_only:
        _print_status(after)
        return
    applied_now = [m for m in after.applied if m.version > before.current]
    if applied_now:
        names = ", ".join(f"{m.version} {m.name}" for m in applied_now)
        _say(f"applied: {names}")
    _say(f"schema {after.schema!r} is at version {after.current}")


# --- doctor ----------------------------------------------------------------------------------

_MARKS = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}


@main.command("doctor", short_help="Check connectivity, server, TLS, extensions, schema, rights.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def doctor_command(settings: Settings, as_json: bool) -> None:
    """Check the database: connectivity and latency, server version, role, TLS, extensions
    (pg_trgm, vector), pool, schema version and privileges, with advice for each problem.

    Exit status 1 when a check fails; 0 when everything passes or only warnings remain.
    Changes nothing.
    """
    report: DoctorReport = run_async(_admin(settings).doctor())
    report = _with_this_invocation(report, settings)
    if as_json:
        _json(report)
    else:
        _say(f"adk-postgres doctor: {report.target}")
        for check in report.checks:
            _say(f"{_MARKS[check.status]}  {check.name}: {check.detail}")
            if check.advice:
                _say(f"      advice: {check.advice}")
        problems = []
        if report.failed:
            problems.append(f"{len(report.failed)} failed")
        if report.warnings:
            problems.append(f"{len(report.warnings)} warning(s)")
        _say(f"result: {', '.join(problems) if problems else 'all checks passed'}")
    if report.failed:
        # Not click's Exit: `run()` calls click with standalone_mode=False, which turns Exit
        # into a return value.
        sys.exit(EXIT_FAILURE)


def _with_this_invocation(report: DoctorReport, settings: Settings) -> DoctorReport:
    """The report with every suggested ``adk-postgres ...`` command carrying this invocation's
    ``-d``/``--schema`` (a bare `adk-postgres migrate` would act on another database)."""
    prefix = settings.command_prefix()
    if prefix == "adk-postgres":
        return report

    def personal(text: str | None) -> str | None:
        return text and text.replace("`adk-postgres ", f"`{prefix} ")

    checks = [
        dataclasses.replace(c, detail=personal(c.detail), advice=personal(c.advice))
        for c in report.checks
    ]
    return dataclasses.replace(report, checks=checks)


# --- stats -----------------------------------------------------------------------------------


@main.command("stats", short_help="Counts per app and in total; table sizes.")
@click.option("--app", "app_name", metavar="NAME", help="Only this app.")
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
@click.pass_obj
def stats_command(settings: Settings, app_name: str | None, as_json: bool) -> None:
    """Apps, users, sessions, events, artifacts (files, versions, content bytes) and memory
    entries per app and in total, and the size of every adk-postgres table."""
    stats: Stats = run_async(_admin(settings).stats(app_name))
    if as_json:
        _json(stats)
        return
    rows = [
        [
            a.app_name,
            a.users,
            a.sessions,
            a.events,
            a.artifact_files,
            a.artifact_versions,
            _size(a.artifact_bytes),
            a.memory_entries,
        ]
        for a in [*stats.apps, stats.totals]
    ]
    rows[-1][0] = "total"
    _table(
        ["app", "users", "sessions", "events", "artifacts", "versions", "bytes", "memories"],
        rows,
    )
    _say()
    _say(
        f"artifact contents stored: {stats.stored_contents} ({_size(stats.stored_content_bytes)}"
        " after deduplication)"
    )
    if stats.a2a_tasks or stats.a2a_feedback:
        by_state = ", ".join(
            f"{state.removeprefix('TASK_STATE_').lower()} {count}"
            for state, count in stats.a2a_tasks.items()
        )
        _say(
            f"A2A tasks (all apps): {sum(stats.a2a_tasks.values())} ({by_state or 'none'}); "
            f"feedback: {stats.a2a_feedback}"
        )
    _say()
    _table(
        ["table", "total size", "rows (est.)"],
        [
            [t.name, _size(t.bytes), "unknown" if t.rows_estimate is None else t.rows_estimate]
            for t in stats.tables
        ],
    )


# --- prune -----------------------------------------------------------------------------------


class Duration(click.ParamType):
    """``90m``, ``12h``, ``30d``, ``2w`` → timedelta."""

    name = "duration"

    def __init__(self, *, allow_zero: bool = False) -> None:
        self.allow_zero = allow_zero

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value), allow_zero=self.allow_zero)
        except ConfigurationError as exc:
            self.fail(str(exc), param, ctx)


def _print_prune(report: PruneReport) -> None:
    verb = "would delete" if report.dry_run else "deleted"
    if report.dry_run:
        _say("dry run: nothing was changed")
    rows = [
        [a.app_name, a.sessions, a.session_events, a.events, a.artifact_files, a.artifact_versions]
        for a in [*report.apps, report.totals]
    ]
    rows[-1][0] = "total"
    _say(f"{verb}:")
    _table(
        ["app", "idle sessions", "their events", "old events", "artifacts", "versions"],
        rows,
    )
    _say(f"artifact contents: {report.contents} ({_size(report.content_bytes)})")
    files = f"content files: {report.files} {'to unlink' if report.dry_run else 'unlinked'}"
    if report.files_queued:
        files += (
            f"; {report.files_queued} queued in artifact_fs_garbage (pass --content-dir to "
            "unlink them)"
        )
    _say(files)
    if report.tasks_cutoff is not None:
        _say(f"A2A tasks: {report.tasks} (with {report.task_feedback} feedback)")
    if report.archived_cutoff is not None:
        totals = report.totals
        _say(
            f"archived conversations: {totals.archived_sessions} "
            f"(with {totals.archived_events} events)"
        )


@main.command("prune")
@click.option("--dry-run", is_flag=True, help="Print what would be deleted; change nothing.")
@click.option("--app", "app_name", metavar="NAME", help="Only this app.")
@click.option(
    "--idle-for",
    type=Duration(),
    metavar="DURATION",
    help="Delete sessions (with their events) not updated for longer than this: 90m, 12h, 30d, 2w.",
)
@click.option(
    "--keep-events",
    type=click.IntRange(min=0),
    metavar="N",
    help="Keep only the newest N events of each session.",
)
@click.option(
    "--orphaned-artifacts",
    is_flag=True,
    help="Delete artifacts of sessions that no longer exist, contents no version uses, and "
    "(with --content-dir) the files of deleted contents.",
)
@click.option(
    "--content-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The artifact service's content_dir, to unlink files of deleted contents.",
)
@click.option(
    "--file-grace",
    type=Duration(allow_zero=True),
    metavar="DURATION",
    help="With --content-dir, also unlink files no content uses (left by failed or cancelled "
    "saves) once older than this. Default: 1h.",
)
@click.option(
    "--tasks-finished-before",
    type=Duration(),
    metavar="DURATION",
    help="Delete A2A tasks that finished (completed, failed, canceled, rejected) longer ago "
    "than this, with their feedback (all apps; not with --app).",
)
@click.option(
    "--archived-for",
    type=Duration(),
    metavar="DURATION",
    help="Delete conversations archived longer ago than this (the sessions, with their events).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Sessions (artifacts, contents) per transaction.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def prune_command(
    settings: Settings,
    dry_run: bool,
    app_name: str | None,
    idle_for: timedelta | None,
    keep_events: int | None,
    orphaned_artifacts: bool,
    content_dir: Path | None,
    file_grace: timedelta | None,
    tasks_finished_before: timedelta | None,
    archived_for: timedelta | None,
    batch_size: int,
    as_json: bool,
) -> None:
    """Delete idle sessions, old events, orphaned artifacts, finished A2A tasks and
    conversations archived long ago.

    Give at least one of --idle-for, --keep-events, --orphaned-artifacts,
    --tasks-finished-before, --archived-for. Deletes in batches,
    each one transaction (a crash leaves consistent data), skipping rows a writer holds, so
    running agents wait at most for one batch.

    --keep-events keeps exactly what num_recent_events=N reads (same order) and does NOT
    change the session's revision: agents holding a session keep appending without a
    StaleSessionError. Processes that already read a session keep its pruned events in
    their warm cache (and in full reads) until the entry is evicted or they restart.

    --orphaned-artifacts treats session-scoped artifacts as orphaned when their session is
    not in this schema: run it only where sessions and artifacts share the schema. Contents
    no version uses are swept only without --app (contents are shared between apps).
    """
    if (
        idle_for is None
        and keep_events is None
        and not orphaned_artifacts
        and tasks_finished_before is None
        and archived_for is None
    ):
        raise click.UsageError(
            "nothing to prune: give --idle-for, --keep-events, --orphaned-artifacts, "
            "--tasks-finished-before or --archived-for"
        )
    if tasks_finished_before is not None and app_name is not None:
        raise click.UsageError(
            "--tasks-finished-before cannot be combined with --app: A2A tasks are not stored "
            "per app"
        )
    report = run_async(
        _admin(settings).prune(
            app_name=app_name,
            idle_for=idle_for,
            keep_events=keep_events,
            orphaned_artifacts=orphaned_artifacts,
            content_dir=content_dir,
            file_grace=file_grace,
            tasks_finished_before=tasks_finished_before,
            archived_for=archived_for,
            dry_run=dry_run,
            batch_size=batch_size,
        )
    )
    if as_json:
        _json(report)
    else:
        _print_prune(report)
