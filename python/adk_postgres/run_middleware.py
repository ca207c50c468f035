"""ASGI middleware: ADK's ``/run`` and ``/run_sse`` under the session's run lease.

``adk-postgres web|api_server`` add it to ADK's FastAPI app (see ``cli/serve.py``); an
application that builds its own app with ``get_fast_api_app`` adds it the same way::

    app.add_middleware(RunLeaseMiddleware, leases=session_service.run_leases())

A run request waits for (``enqueue``), is refused while (``reject``, HTTP 409) or interrupts
(``interrupt``) another run of the same session, in this process or any other on the database;
see :mod:`adk_postgres.runs`. The request header ``X-ADK-Postgres-Run-Strategy`` overrides the
server's strategy for one request (ADK's request body has no field for it). A client that goes
away while its run waits leaves the queue. A run that waited past the wait timeout gets 503
with ``Retry-After``; a run interrupted before its answer started gets 409.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .errors import (
    AdkPostgresError,
    DataError,
    RunLeaseLostError,
    RunWaitTimeoutError,
    SessionBusyError,
)
from .runs import STRATEGIES, RunLeases

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The request header that chooses the strategy of one request.
STRATEGY_HEADER = "x-adk-postgres-run-strategy"
#: ADK's endpoints that run an invocation of a session (POST, JSON body).
RUN_PATHS = frozenset({"/run", "/run_sse"})
#: A run request's body is small (one message); larger ones are passed to ADK unleased.
_MAX_BODY = 32 * 1024 * 1024


class RunLeaseMiddleware:
    """Holds the session's run lease for the whole of each run request (until its response,
    streamed or not, is finished)."""

    def __init__(self, app: ASGIApp, leases: RunLeases | Callable[[], RunLeases | None]) -> None:
        self.app = app
        self._leases = leases if callable(leases) else (lambda: leases)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") != "POST"
            or scope.get("path") not in RUN_PATHS
        ):
            await self.app(scope, receive, send)
            return
        leases = self._leases()
        if leases is None:  # sessions not on adk-postgres: nothing to lease
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away before its request was complete
        replay = _Replay(body, receive)
        target = _session_of(body)
        if target is None:  # not a run request ADK accepts: let ADK answer it (422, 400)
            await self.app(scope, replay.receive, send)
            return
        strategy = _header(scope, STRATEGY_HEADER) or leases.strategy
        if strategy not in STRATEGIES:
            await _answer(
                send,
                400,
                f"{STRATEGY_HEADER} must be one of {', '.join(STRATEGIES)}, not {strategy!r}",
            )
            return
        acquiring = asyncio.create_task(leases.acquire(*target, strategy=strategy))  # type: ignore[arg-type]
        gone = replay.disconnected()
        await asyncio.wait({acquiring, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not acquiring.done():  # the client went away while its run waited
            acquiring.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await acquiring
            return
        try:
            lease = acquiring.result()
        except RunWaitTimeoutError as exc:
            await _answer(send, 503, str(exc), retry_after=True)
            return
        except SessionBusyError as exc:
            await _answer(send, 409, str(exc))
            return
        except RunLeaseLostError as exc:
            await _answer(send, 409, str(exc))
            return
        except DataError as exc:  # an id PostgreSQL cannot hold (NUL, too long, not UTF-8)
            await _answer(send, 400, str(exc))
            return
        except AdkPostgresError as exc:  # the database is unreachable or failing
            logger.warning("could not take the run lease of session %r: %s", target[2], exc)
            await _answer(
                send, 503, f"the session's run lease is unavailable: {exc}", retry_after=True
            )
            return
        if lease is None:  # no such session: ADK answers 404
            await self.app(scope, replay.receive, send)
            return

        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            async with leases.holding(lease):
                await self.app(scope, replay.receive, tracked_send)
        except RunLeaseLostError as exc:
            if started:
                raise
            await _answer(
                send,
                409,
                f"{exc} (the events this run stored before it was stopped are kept)",
            )
        finally:
            replay.close()


class _Replay:
    """The request as the app reads it: the body read ahead once, then the client's own
    messages (a disconnect), through one pending receive shared with the waiting step."""

    def __init__(self, body: bytes, receive: Receive) -> None:
        self._body: bytes | None = body
        self._receive = receive
        self._next: asyncio.Future[Message] | None = None

    def disconnected(self) -> asyncio.Future[Message]:
        if self._next is None:
            self._next = asyncio.ensure_future(self._receive())
        return self._next

    def close(self) -> None:
        """Stops listening for the client once the response is done."""
        if self._next is not None and not self._next.done():
            self._next.cancel()

    async def receive(self) -> Message:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        # Shielded: an app that stops listening must not cancel the client's receive.
        return await asyncio.shield(self.disconnected())


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= _MAX_BODY:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks) if size <= _MAX_BODY else b""


def _session_of(body: bytes) -> tuple[str, str, str] | None:
    """(app, user, session) of a run request body, as ADK's RunAgentRequest reads it (camelCase
    or snake_case; the app may come from ADK_DEFAULT_APP_NAME)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None

    def field(snake: str, camel: str) -> Any:
        return data.get(camel, data.get(snake))

    app = field("app_name", "appName") or os.environ.get("ADK_DEFAULT_APP_NAME")
    user, session = field("user_id", "userId"), field("session_id", "sessionId")
    if not all(isinstance(v, str) and v for v in (app, user, session)):
        return None
    return app, user, session


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.encode("latin-1")
    for key, value in scope.get("headers", ()):
        if key.lower() == wanted:
            return value.decode("latin-1").strip().lower()
    return None


async def _answer(send: Send, status: int, detail: str, *, retry_after: bool = False) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
