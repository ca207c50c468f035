"""`PostgresSessionService`: ADK's BaseSessionService on PostgreSQL.

This module holds ADK semantics only (id stripping, prefix split, temp state, markers, errors);
every call is one await into the Rust core, which runs one SQL statement.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from google.adk.errors._stale_session_error import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.platform import time as platform_time
from google.adk.platform import uuid as platform_uuid
from google.adk.sessions.base_session_service import (
    BaseSessionService,
    GetSessionConfig,
    ListSessionsResponse,
)
from google.adk.sessions.session import Session
from typing_extensions import override

from ._json import decode_events, decode_state, encode_event, encode_state
from ._keys import check_keys
from ._service_base import DatabaseBacked
from ._session_cache import CachedHistory, CacheStats, SessionCache, cached_events
from ._state import merge_state, split_state
from .database import Database
from .errors import ConfigurationError, IntegrityError, RunLeaseLostError
from .runs import (
    DEFAULT_EXPIRY,
    DEFAULT_WAIT_TIMEOUT,
    RunLease,
    RunLeases,
    RunStrategy,
    active_lease,
)
from .telemetry import traced

if TYPE_CHECKING:
    from ._native import SessionRow

#: Default bound of the per-process event-history cache (JSON bytes of cached events).
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024

_STALE_MESSAGE = (
    "The session has been modified in storage since it was loaded. "
    "Please reload the session before appending more events."
)


def _encode_delta(delta: dict[str, Any], what: str) -> bytes | None:
    return encode_state(delta, what) if delta else None


def _select_events(events: list[Event], config: GetSessionConfig | None) -> list[Event]:
    """Apply GetSessionConfig to a full history exactly as InMemorySessionService does."""
    selected = list(events)
    if config is None:
        return selected
    if config.num_recent_events is not None:
        selected = [] if config.num_recent_events == 0 else selected[-config.num_recent_events :]
    if config.after_timestamp is not None:
        i = len(selected) - 1
        while i >= 0 and selected[i].timestamp >= config.after_timestamp:
            i -= 1
        selected = selected[i + 1 :]
    return selected


def _covers(events: list[Event], complete: bool, config: GetSessionConfig | None) -> bool:
    """Whether a cached history (``complete``) or most recent suffix of it answers ``config``
    exactly as a read of the whole history would."""
    if complete:
        return True
    if config is None:
        return False
    if config.num_recent_events is not None:
        # The last n events are all held; after_timestamp then only filters within them.
        return len(events) >= config.num_recent_events
    if config.after_timestamp is not None:
        # Every event not held is older than the oldest held one.
        return bool(events) and events[0].timestamp < config.after_timestamp
    return False


def _marker(revision: int, incarnation: int) -> str:
    """The storage marker of a session: the stored revision it reflects and the incarnation of
    the session it was read from (a session deleted and re-created under the same id is
    another incarnation, whose revisions start again at 0)."""
    return f"{revision}:{incarnation}"


def _stored_session(
    key: tuple[str, str, str],
    state: dict[str, Any],
    events: list[Event],
    last_update_time: float,
    marker: str,
) -> Session:
    """A `Session` as stored: create, get and list build them alike, so they compare equal.

    Built without pydantic's validation: every value is already of its field's type (strings
    from the database, state decoded from JSON, validated events), and validating a hundred
    sessions was most of a ``list_sessions``. The result is what ``Session(...)`` with these
    six fields gives (``tests/test_adk_compat.py`` compares them field by field)."""
    app_name, user_id, session_id = key
    fields = {
        "id": session_id,
        "app_name": app_name,
        "user_id": user_id,
        "state": state,
        "events": list(events),
        "last_update_time": float(last_update_time),
    }
    session = _new_session(Session)
    _set(session, "__dict__", fields)
    _set(session, "__pydantic_fields_set__", set(fields))
    _set(session, "__pydantic_extra__", None)
    _set(session, "__pydantic_private__", {"_storage_update_marker": marker})
    return session


_new_session = Session.__new__
_set = object.__setattr__


def _parse_marker(session: Session) -> tuple[int, int | None] | None:
    """(revision, incarnation) of a session's marker; ``None`` without one of ours."""
    marker = session._storage_update_marker
    if marker is None:
        return None
    revision, _, incarnation = marker.partition(":")
    try:
        return int(revision), int(incarnation) if incarnation else None
    except ValueError:
        return None  # a marker from another service (e.g. ADK's timestamp marker)


def _refreshed(cached: CachedHistory, row: SessionRow) -> CachedHistory | None:
    """The cached history brought up to the row's revision (the row holds the events stored
    after ``cached.revision``); ``None`` when it cannot be (the session was re-created, ADK's
    own service wrote events, or history was rewritten)."""
    _, revision, _, _, _, new_json, incarnation, unsequenced, head, anchor = row
    if incarnation != cached.incarnation or unsequenced or revision < cached.revision:
        return None
    # The event stored at the cached revision must still be the one the cache ends with: after
    # a failover to an asynchronous standby that had not received it, the same revision can be
    # reached again by other events, and the cache cannot be extended.
    if cached.revision > 0 and (cached.head is None or anchor != cached.head):
        return None
    if revision == cached.revision and not cached.pending:
        return cached
    refreshed = cached.advanced(revision, new_json, head)
    # A cold read orders events by (timestamp, id); events added in revision order match it
    # only if they come in that order. One that does not (a back-dated event) cannot be placed
    # by appending: reload in full.
    events = refreshed.events
    for i in range(max(len(cached.events), 1), len(events)):
        if (events[i].timestamp, events[i].id) < (events[i - 1].timestamp, events[i - 1].id):
            return None
    return refreshed


def _listed_sessions(
    app_name: str, app_json: bytes | None, user_rows: list, session_rows: list
) -> list[Session]:
    """The sessions of a native list (without events), app and user state merged in."""
    app_state = decode_state(app_json)
    user_states = {uid: decode_state(data) for uid, data in user_rows}
    sessions = []
    for uid, sid, state_json, revision, last_update_time, incarnation in session_rows:
        state = merge_state(decode_state(state_json), app_state, user_states.get(uid, {}))
        marker = _marker(revision, incarnation)
        sessions.append(_stored_session((app_name, uid, sid), state, [], last_update_time, marker))
    return sessions


class PagedListSessionsResponse(ListSessionsResponse):
    """A page of ``list_sessions`` (``page_size``/``page_token`` given): ADK's response plus
    the token of the next page, as newer ADK versions define it."""

    next_page_token: str | None = None


class PostgresSessionService(DatabaseBacked, BaseSessionService):
    """ADK session service on PostgreSQL.

    Args:
        uri: PostgreSQL URL; ``None`` → ``$DATABASE_URL`` → the embedded PostgreSQL.
        database: share an existing :class:`Database` (its pool) instead of opening one.
        cache_bytes: bound of this service's event-history cache (0 disables it). A session
            read again is refreshed with only its new events, checked against the stored
            revision in the same round trip.
        **options: :class:`Database` options (``schema``, ``pool_size``, ``connect_timeout``,
            ``acquire_timeout``, ``statement_cache``, ``application_name``).

    Construction is synchronous and cheap; the pool connects and migrates on first use.
    """

    def __init__(
        self,
        uri: str | None = None,
        *,
        database: Database | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        **options: Any,
    ) -> None:
        if cache_bytes < 0:
            raise ConfigurationError("cache_bytes must be >= 0")
        self._cache = SessionCache(cache_bytes) if cache_bytes else None
        # Runs of this process waiting for a session's run lease (see runs.py), by session.
        self._run_waiters: dict[tuple[str, str, str], set[asyncio.Event]] = {}
        self._attach_database(uri, database, options)

    def cache_stats(self) -> CacheStats | None:
        """Warm and cold reads of this service so far, and what the cache holds (``None``
        with the cache off)."""
        return None if self._cache is None else self._cache.stats()

    def run_leases(
        self,
        *,
        strategy: RunStrategy = "enqueue",
        expiry: float = DEFAULT_EXPIRY,
        wait_timeout: float | None = DEFAULT_WAIT_TIMEOUT,
    ) -> RunLeases:
        """Run leases on this service's sessions: one invocation of a session at a time,
        across processes (see :mod:`adk_postgres.runs`)."""
        return RunLeases(self, strategy=strategy, expiry=expiry, wait_timeout=wait_timeout)

    def run_lease(
        self,
        app_name: str,
        user_id: str,
        session_id: str,
        *,
        strategy: RunStrategy = "enqueue",
        expiry: float = DEFAULT_EXPIRY,
        wait_timeout: float | None = DEFAULT_WAIT_TIMEOUT,
    ) -> contextlib.AbstractAsyncContextManager[RunLease | None]:
        """Holds the session's run lease around a block::

        async with sessions.run_lease(app, user, session_id):
            async for event in runner.run_async(user_id=user, session_id=session_id, ...):
                ...
        """
        leases = self.run_leases(strategy=strategy, expiry=expiry, wait_timeout=wait_timeout)
        return leases.hold(app_name, user_id, session_id)

    @override
    @traced("sessions")
    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> Session:
        session_id = session_id.strip() if session_id else None
        session_id = session_id or platform_uuid.new_uuid()
        check_keys(app_name=app_name, user_id=user_id, session_id=session_id)
        parts = split_state(state or {})
        state_json = encode_state(parts.session)
        create_time = platform_time.get_time()
        sessions = await self._database.sessions()
        created = await sessions.create_session(
            (app_name, user_id, session_id),
            state_json,
            _encode_delta(parts.app, "app state"),
            _encode_delta(parts.user, "user state"),
            create_time,
        )
        if created is None:
            raise AlreadyExistsError(f"Session with id {session_id} already exists.")
        revision, incarnation, app_json, user_json = created
        # The stored (JSON) form of the state, so create and get return equal sessions.
        return _stored_session(
            (app_name, user_id, session_id),
            merge_state(decode_state(state_json), decode_state(app_json), decode_state(user_json)),
            [],
            create_time,
            _marker(revision, incarnation),
        )

    @override
    @traced("sessions")
    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: GetSessionConfig | None = None,
    ) -> Session | None:
        session_id = session_id.strip() if session_id else session_id
        check_keys(app_name=app_name, user_id=user_id, session_id=session_id)
        key = (app_name, user_id, session_id)
        sessions = await self._database.sessions()
        cache = self._cache
        cached = cache.get(key) if cache is not None else None
        if cache is not None and cached is not None:
            row = await sessions.get_session_since(key, cached.revision)
            if row is None:
                cache.discard(key, cached)
                return None
            refreshed = _refreshed(cached, row)
            if refreshed is None:
                cache.discard(key, cached)
            else:
                # Only over the entry this read started from: a concurrent read or append may
                # have replaced it meanwhile (this read's answer is right either way).
                cache.replace(key, cached, refreshed)
                events = list(refreshed.events)
                if _covers(events, refreshed.complete, config):
                    cache.count_warm(len(row[5]), sum(map(len, row[5])))
                    return self._session_from_row(key, row, _select_events(events, config))
        full_read = config is None or (
            config.num_recent_events is None and config.after_timestamp is None
        )
        if full_read:
            row = await sessions.get_session(key)
        else:
            # Let the database select the events; the result is a suffix of the history.
            assert config is not None
            row = await sessions.get_session(key, config.after_timestamp, config.num_recent_events)
        if row is None:
            return None
        if cache is not None:
            events = cached_events(row[5])
            cache.count_cold()
            wanted = config.num_recent_events if config is not None else None
            cache.put(
                key,
                CachedHistory(
                    incarnation=row[6],
                    revision=row[1],
                    head=row[8],
                    events=tuple(events),
                    size=sum(map(len, row[5])),
                    # Fewer events than asked for means there are no more.
                    complete=full_read
                    or (
                        config is not None
                        and config.after_timestamp is None
                        and wanted is not None
                        and wanted > 0
                        and len(events) < wanted
                    ),
                ),
            )
        else:
            events = decode_events(row[5])
        return self._session_from_row(key, row, events)

    @staticmethod
    def _session_from_row(
        key: tuple[str, str, str], row: SessionRow, events: list[Event]
    ) -> Session:
        state_json, revision, last_update_time, app_json, user_json, _, incarnation = row[:7]
        return _stored_session(
            key,
            merge_state(decode_state(state_json), decode_state(app_json), decode_state(user_json)),
            events,
            last_update_time,
            _marker(revision, incarnation),
        )

    @override
    @traced("sessions")
    async def list_sessions(
        self,
        *,
        app_name: str,
        user_id: str | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> ListSessionsResponse:
        """ADK's ``list_sessions``, oldest update first. With ``page_size`` or ``page_token``
        (as newer ADK versions define them) one page of at most ``page_size`` sessions
        (default 100) and ``next_page_token`` for the next one (``None`` on the last page):
        keyset paging on (last update, user, id), so a session updated while a client pages
        moves to the end and is never skipped."""
        if page_size is not None or page_token is not None:
            return await self._list_sessions_page(app_name, user_id, page_size, page_token)
        native = await self._database.sessions()
        app_json, user_rows, session_rows = await native.list_sessions(app_name, user_id)
        sessions = _listed_sessions(app_name, app_json, user_rows, session_rows)
        return ListSessionsResponse(sessions=sessions)

    async def _list_sessions_page(
        self,
        app_name: str,
        user_id: str | None,
        page_size: int | None,
        page_token: str | None,
    ) -> PagedListSessionsResponse:
        from .conversations import check_page_size, decode_token, encode_token, token_scope

        check_keys(app_name=app_name)
        if user_id is not None:
            check_keys(user_id=user_id)
        limit = check_page_size(100 if page_size is None else page_size)
        scope = token_scope("sessions", app_name, user_id)
        after = None
        if page_token is not None:
            ts, uid, sid = decode_token(page_token, "sessions", scope, (float, str, str))
            after = (float(ts), uid, sid)
        native = await self._database.sessions()
        app_json, user_rows, session_rows = await native.list_sessions_page(
            app_name, user_id, after, limit + 1
        )
        more = len(session_rows) > limit
        session_rows = session_rows[:limit]
        sessions = _listed_sessions(app_name, app_json, user_rows, session_rows)
        token = None
        if more and session_rows:
            uid, sid, _state, _revision, last_update_time, _inc = session_rows[-1]
            token = encode_token("sessions", scope, [last_update_time, uid, sid])
        return PagedListSessionsResponse(sessions=sessions, next_page_token=token)

    @override
    @traced("sessions")
    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        session_id = session_id.strip() if session_id else session_id
        check_keys(app_name=app_name, user_id=user_id, session_id=session_id)
        sessions = await self._database.sessions()
        key = (app_name, user_id, session_id)
        await sessions.delete_session(key)
        # Unconditionally: whatever a concurrent read put there meanwhile may predate the
        # delete (a re-created session is told apart by its incarnation anyway).
        if self._cache is not None:
            self._cache.discard(key)

    @override
    @traced("sessions")
    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        sessions = await self._database.sessions()
        return decode_state(await sessions.get_user_state(app_name, user_id))

    @override
    @traced("sessions")
    async def append_event(self, session: Session, event: Event) -> Event:
        if event.partial:
            return event
        # As BaseSessionService: temp values visible on the caller's session, never stored.
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        check_keys(
            app_name=session.app_name,
            user_id=session.user_id,
            session_id=session.id,
            event_id=event.id,
        )
        delta = event.actions.state_delta if event.actions and event.actions.state_delta else {}
        parts = split_state(delta)
        event_json = encode_event(event)
        session_json = _encode_delta(parts.session, "state delta")
        app_json = _encode_delta(parts.app, "app state delta")
        user_json = _encode_delta(parts.user, "user state delta")

        sessions = await self._database.sessions()
        expected = _parse_marker(session) or await self._revision_of_unmarked(session)
        revision_held, incarnation = expected
        lease = active_lease(session.app_name, session.user_id, session.id)
        # The run's first event records its invocation id in the same statement, so that a
        # run interrupting this one can mark what it stopped (see RunLease.takes_invocation).
        note = lease is not None and lease.takes_invocation(event)
        append = sessions.append_event(
            (session.app_name, session.user_id, session.id),
            revision_held,
            incarnation,
            event.id,
            event.invocation_id,
            event.timestamp,
            event_json,
            session_json,
            app_json,
            user_json,
            None if lease is None else lease.run_id,
            note,
        )
        try:
            outcome, revision = await append
        except IntegrityError as exc:
            if exc.sqlstate == "23505":
                if any(e.id == event.id and e == event for e in session.events):
                    return event  # an equal re-delivery of an event already appended
                raise IntegrityError(
                    f"event id {event.id!r} is already stored in session {session.id!r}",
                    exc.sqlstate,
                ) from exc
            raise
        if outcome == "not_found":
            raise SessionNotFoundError(f"Session {session.id} not found.")
        if outcome == "stale":
            raise StaleSessionError(_STALE_MESSAGE)
        if outcome == "fenced":
            raise RunLeaseLostError(
                f"this run no longer holds the run lease of session {session.id!r}: a newer "
                "run interrupted it, or took the session over after this process stopped "
                "for longer than the lease expiry; the event was not stored"
            )
        if note and lease is not None:
            lease.invocation_id = event.invocation_id
        # "appended", or "already_stored": an earlier attempt of this very append committed
        # (at `revision`; whatever others appended after it, this caller has yet to read).
        assert revision is not None
        if outcome == "appended" and incarnation is not None:
            self._note_append(session, expected, revision, event, event_json)
        session.last_update_time = event.timestamp
        if incarnation is not None:
            session._storage_update_marker = _marker(revision, incarnation)
        else:
            session._storage_update_marker = str(revision)
        return self._commit_event_to_session(session, event)

    def _note_append(
        self,
        session: Session,
        expected: tuple[int, int | None],
        revision: int,
        event: Event,
        event_json: bytes,
    ) -> None:
        """Extend the cached history by the event this process just stored, if the cache
        holds exactly the revision the append extended. Any other entry is left as it is: it
        is still the history of its own revision, and the next read refreshes it."""
        if self._cache is None:
            return
        key = (session.app_name, session.user_id, session.id)
        cached = self._cache.get(key)
        if cached is not None and (cached.revision, cached.incarnation) == expected:
            self._cache.replace(key, cached, cached.appended(revision, event.id, event_json))

    async def _revision_of_unmarked(self, session: Session) -> tuple[int, int]:
        """ADK's rule for session objects without a marker (built by hand): stale only if the
        store moved past the session's time and its latest event is not the session's."""
        sessions = await self._database.sessions()
        info = await sessions.session_revision((session.app_name, session.user_id, session.id))
        if info is None:
            raise SessionNotFoundError(f"Session {session.id} not found.")
        revision, stored_update_time, incarnation, last_event_id = info
        if stored_update_time > session.last_update_time:
            local_last = session.events[-1].id if session.events else None
            if last_event_id != local_last:
                raise StaleSessionError(_STALE_MESSAGE)
        return revision, incarnation

    def __repr__(self) -> str:
        return f"PostgresSessionService({self._database.describe()})"
