"""Run leases: one invocation of a session at a time, across every process (double-texting).

A user who sends a second message before the agent answered the first, a UI that retries, a
tool that resumes: two invocations of one session then run at once, possibly in two server
processes. Without coordination one fails with a stale-session error mid-turn, or their events
interleave. A run lease serialises them in PostgreSQL (migration V8):

* A run **claims** the session and waits in arrival order (``enqueue``), gives up at once
  (``reject``: :class:`~adk_postgres.errors.SessionBusyError`, nothing stored) or stops the
  running invocation and takes its place (``interrupt``).
* The granted run's id is the session's **fence**: every append made under the lease carries
  it, and the append statement refuses it once another run was granted the session. A run that
  lost its lease — interrupted, or its process paused for longer than the expiry — gets
  :class:`~adk_postgres.errors.RunLeaseLostError` at its next event and stores nothing more.
* The holder **heartbeats** every ``expiry / 3``; a process that dies (SIGKILL, a lost machine)
  stops heartbeating and the session is free again after at most ``expiry``.

Appends without a lease (plain ``Runner.run_async`` outside ``hold``) are not fenced: the lease
orders the runs that take it. ``adk-postgres web|api_server`` take it for every ``/run`` and
``/run_sse`` request (see :mod:`adk_postgres.run_middleware`).

Waiting runs poll (from 20 ms, backing off to 250 ms, never slower than a third of the
expiry) rather than LISTEN: notifications do not pass a pooler in transaction mode. A run
released in this process wakes this process's waiters at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from ._keys import check_keys
from .errors import ConfigurationError, RunLeaseLostError, RunWaitTimeoutError, SessionBusyError

if TYPE_CHECKING:
    from google.adk.events.event import Event

    from .session_service import PostgresSessionService

logger = logging.getLogger(__name__)

RunStrategy = Literal["enqueue", "reject", "interrupt"]
STRATEGIES: tuple[str, ...] = ("enqueue", "reject", "interrupt")

#: A session is free again this long after its holder's last heartbeat.
DEFAULT_EXPIRY = 30.0
#: How long a run waits (``enqueue``) before giving up with SessionBusyError.
DEFAULT_WAIT_TIMEOUT = 300.0

_FIRST_POLL = 0.02
_LONGEST_POLL = 0.25

SessionKey = tuple[str, str, str]

#: The leases the current task (and the tasks it starts) runs under, by session.
_ACTIVE: ContextVar[dict[SessionKey, RunLease] | None] = ContextVar(
    "adk_postgres_run_leases", default=None
)


@dataclass(eq=False)
class RunLease:
    """A granted run: the session it holds and the run id that is its fence."""

    key: SessionKey
    run_id: int
    strategy: str
    #: The invocation this run interrupted (strategy ``interrupt``), if any.
    interrupted_invocation: str | None = None
    #: Set when a heartbeat found the lease gone: the next append will be refused.
    lost: bool = False
    #: The invocation id of the run's first event, recorded so an interrupter can mark it.
    invocation_id: str | None = None
    _owner: RunLeases | None = field(default=None, repr=False)

    def takes_invocation(self, event: Event) -> bool:
        """Whether appending ``event`` should record its invocation as this run's: the run's
        first event (not the marker it writes for the run it interrupted). The append
        statement records it with the event, in the same transaction."""
        return (
            self.invocation_id is None
            and bool(event.invocation_id)
            and event.invocation_id != self.interrupted_invocation
        )

    @property
    def app_name(self) -> str:
        return self.key[0]

    @property
    def user_id(self) -> str:
        return self.key[1]

    @property
    def session_id(self) -> str:
        return self.key[2]


def active_lease(app_name: str, user_id: str, session_id: str) -> RunLease | None:
    """The lease the current task holds on this session, if any (read by append_event)."""
    leases = _ACTIVE.get()
    return None if leases is None else leases.get((app_name, user_id, session_id))


@contextlib.contextmanager
def running_under(lease: RunLease) -> Iterator[RunLease]:
    """Makes ``lease`` the current task's lease for its session: appends made inside (also by
    tasks started inside, which copy the context) carry its fence."""
    leases = dict(_ACTIVE.get() or {})
    leases[lease.key] = lease
    token = _ACTIVE.set(leases)
    try:
        yield lease
    finally:
        _ACTIVE.reset(token)


def _check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise ConfigurationError(
            f"unknown run strategy {strategy!r}: use one of {', '.join(STRATEGIES)}"
        )
    return strategy


def _check_seconds(name: str, value: float | None, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds, not {value!r}")


class RunLeases:
    """Run leases on the sessions of one :class:`PostgresSessionService`.

    ``expiry``: how long a session stays held after its holder's last heartbeat (a killed
    worker blocks its sessions at most that long). ``wait_timeout``: how long an ``enqueue``
    run waits before :class:`SessionBusyError` (``None``: no limit).
    """

    def __init__(
        self,
        sessions: PostgresSessionService,
        *,
        expiry: float = DEFAULT_EXPIRY,
        wait_timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        strategy: RunStrategy = "enqueue",
    ) -> None:
        _check_seconds("expiry", expiry, optional=False)
        _check_seconds("wait_timeout", wait_timeout, optional=True)
        self._service = sessions
        self.expiry = float(expiry)
        self.wait_timeout = wait_timeout
        self.strategy = _check_strategy(strategy)
        # Runs of this process waiting for a session, woken when one here releases it
        # (shared by every RunLeases of the service).
        self._waiters = sessions._run_waiters

    @contextlib.asynccontextmanager
    async def hold(
        self,
        app_name: str,
        user_id: str,
        session_id: str,
        *,
        strategy: RunStrategy | None = None,
        wait_timeout: float | None | Literal["default"] = "default",
    ) -> AsyncIterator[RunLease | None]:
        """Holds the session's run lease around the block (wrap ``Runner.run_async`` in it).

        Yields ``None`` when there is no such session (nothing to serialise: ADK's own
        "session not found" follows). Raises :class:`SessionBusyError` when the run may not
        or did not get the session in time; appends in the block raise
        :class:`RunLeaseLostError` once a newer run took the session over.
        """
        lease = await self.acquire(
            app_name, user_id, session_id, strategy=strategy, wait_timeout=wait_timeout
        )
        if lease is None:
            yield None
            return
        async with self.holding(lease):
            yield lease

    @contextlib.asynccontextmanager
    async def holding(self, lease: RunLease) -> AsyncIterator[RunLease]:
        """Runs the block under an acquired lease: its appends carry the fence, heartbeats
        keep it, the run it interrupted is marked first, and it is released at the end."""
        try:
            with running_under(lease):
                async with self._heartbeating(lease):
                    if lease.interrupted_invocation is not None:
                        await self._mark_interrupted(lease)
                    yield lease
        finally:
            await self.release(lease)

    async def acquire(
        self,
        app_name: str,
        user_id: str,
        session_id: str,
        *,
        strategy: RunStrategy | None = None,
        wait_timeout: float | None | Literal["default"] = "default",
    ) -> RunLease | None:
        """Claims the session and waits for it as the strategy says; the caller must
        :meth:`release` the lease (``hold`` does both, and heartbeats in between). Cancelled
        while waiting, the run leaves the queue."""
        strategy = _check_strategy(strategy or self.strategy)
        timeout = self.wait_timeout if wait_timeout == "default" else wait_timeout
        _check_seconds("wait_timeout", timeout, optional=True)
        check_keys(app_name=app_name, user_id=user_id, session_id=session_id)
        key: SessionKey = (app_name, user_id, session_id)
        native = await self._service._database.sessions()
        expiry_ms = int(self.expiry * 1000)
        # Random ids: no sequence to grant a runtime role, and a retried claim finds its row.
        run_id = random.getrandbits(62) + 1
        status, interrupted = await native.claim_run(key, run_id, True, strategy, expiry_ms)
        if status == "waiting":
            try:
                status, interrupted = await self._wait(key, run_id, strategy, timeout, interrupted)
            except BaseException:
                # Timed out, cancelled (the client went away) or failed: leave the queue.
                await _shielded(native.release_run(key, run_id))
                raise
        if status == "no_session":
            return None
        if status == "busy":
            raise SessionBusyError(
                f"session {session_id!r} is busy: another run of it is in progress "
                "(strategy 'reject'); this message was not stored"
            )
        if status == "lost":
            raise RunLeaseLostError(
                f"the run waiting for session {session_id!r} lost its place in the queue "
                "(its heartbeats stopped for longer than the lease expiry)"
            )
        return RunLease(key, run_id, strategy, interrupted_invocation=interrupted, _owner=self)

    async def release(self, lease: RunLease) -> None:
        """Gives the session up and wakes this process's runs waiting for it. Best effort: a
        release that cannot reach the database leaves the lease to expire."""
        native = await self._service._database.sessions()
        try:
            await _shielded(native.release_run(lease.key, lease.run_id))
        except Exception as exc:  # the lease expires on its own
            logger.warning("could not release the run lease of session %r: %s", lease.key[2], exc)
        for waiter in self._waiters.get(lease.key, ()):
            waiter.set()

    async def _wait(
        self,
        key: SessionKey,
        run_id: int,
        strategy: str,
        timeout: float | None,
        interrupted: str | None,
    ) -> tuple[str, str | None]:
        native = await self._service._database.sessions()
        expiry_ms = int(self.expiry * 1000)
        deadline = None if timeout is None else time.monotonic() + timeout
        # A waiting run's polls are its heartbeats: poll well within the expiry.
        longest = min(_LONGEST_POLL, self.expiry / 3)
        delay = min(_FIRST_POLL, longest)
        wake = asyncio.Event()
        self._waiters.setdefault(key, set()).add(wake)
        try:
            while True:
                pause = delay
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise RunWaitTimeoutError(
                            f"session {key[2]!r} is busy: waited {timeout:g} s for the run "
                            "ahead of this one; this message was not stored"
                        )
                    pause = min(pause, left)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), pause)
                wake.clear()
                delay = min(delay * 1.5, longest)
                status, stopped = await native.claim_run(key, run_id, False, strategy, expiry_ms)
                interrupted = interrupted or stopped
                if status != "waiting":
                    return status, interrupted
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(wake)
                if not waiters:
                    del self._waiters[key]

    @contextlib.asynccontextmanager
    async def _heartbeating(self, lease: RunLease) -> AsyncIterator[None]:
        task = asyncio.create_task(self._heartbeat(lease))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _heartbeat(self, lease: RunLease) -> None:
        """Every expiry/3: show the lease is alive; a heartbeat that finds it gone marks it
        lost."""
        native = await self._service._database.sessions()
        interval = self.expiry / 3
        while not lease.lost:
            await asyncio.sleep(interval)
            try:
                alive = await native.heartbeat_run(lease.key, lease.run_id, None)
            except Exception as exc:  # a missed beat; the next may reach the database
                logger.warning("run lease heartbeat of session %r failed: %s", lease.key[2], exc)
                continue
            if not alive:
                lease.lost = True

    async def _mark_interrupted(self, lease: RunLease) -> None:
        """Closes the invocation this run interrupted with an event that says so
        (``interrupted=True``, no content, so models never see it), after the events it
        stored before it was stopped — which stay as they are."""
        from google.adk.events.event import Event

        stopped = lease.interrupted_invocation
        session = await self._service.get_session(
            app_name=lease.app_name, user_id=lease.user_id, session_id=lease.session_id
        )
        if session is None:
            return
        partial = [e for e in session.events if e.invocation_id == stopped]
        if not partial:
            return
        marker = Event(
            invocation_id=stopped,
            author=partial[-1].author,
            interrupted=True,
            custom_metadata={"adk_postgres": {"interrupted_by_run": str(lease.run_id)}},
        )
        await self._service.append_event(session, marker)


async def _shielded(awaitable: object) -> None:
    """Awaits a cleanup even while the caller is being cancelled."""
    task = asyncio.ensure_future(awaitable)  # type: ignore[arg-type]
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
