"""A TCP proxy in front of the test server that can lose one reply, as a dropped connection
does: the statement reached the server and ran (and committed), but its answer never reached
the client. Used to test that such appends are retried without being stored twice or reported
as failures."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

Hook = Callable[[], Awaitable[None]]


def server_address(url: str) -> tuple[str, int] | str:
    """(host, port) or the unix socket path of a libpq URL (as the test fixtures give)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    port = parts.port or int(query.get("port", ["5432"])[0])
    host = query.get("host", [parts.hostname or "/var/run/postgresql"])[0]
    if host.startswith("/"):
        return str(Path(host) / f".s.PGSQL.{port}")
    return host, port


class FlakyProxy:
    """Forwards 127.0.0.1:<port> to the server. After :meth:`lose_reply_to`, the first
    client message containing the trigger bytes is forwarded, but the server's answer is held
    until the server has been quiet for ``settle`` seconds (so whatever it was sent has run),
    then ``before_cut`` runs and both sides of that connection are cut."""

    def __init__(self, target: tuple[str, int] | str, settle: float = 0.3) -> None:
        self.target = target
        self.settle = settle
        self.port = 0
        self.cuts = 0
        self.errors: list[BaseException] = []  # raised by before_cut: re-raised on exit
        self._trigger: bytes | None = None
        self._before_cut: Hook | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def url(self, user: str = "postgres", dbname: str = "postgres") -> str:
        # Plain text, so the proxy can see which statement passes.
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}?sslmode=disable"

    def lose_reply_to(self, trigger: bytes, before_cut: Hook) -> None:
        self._trigger, self._before_cut = trigger, before_cut

    async def __aenter__(self) -> FlakyProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._server.wait_closed()
        if self.errors:
            raise self.errors[0]

    async def _open_target(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if isinstance(self.target, str):
            return await asyncio.open_unix_connection(self.target)
        return await asyncio.open_connection(*self.target)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            server_r, server_w = await self._open_target()
        except OSError:
            client_w.close()
            self._tasks.discard(task)
            return
        doomed = asyncio.Event()

        async def upstream() -> None:
            tail = b""
            while data := await client_r.read(65536):
                trigger = self._trigger
                if trigger is not None and trigger in tail + data:
                    self._trigger = None
                    doomed.set()
                tail = data[-len(trigger) :] if trigger else b""
                server_w.write(data)
                await server_w.drain()

        async def downstream() -> None:
            while True:
                if doomed.is_set():
                    # Swallow the answer until the server is done, then cut.
                    try:
                        while await asyncio.wait_for(server_r.read(65536), self.settle):
                            pass
                    except TimeoutError:
                        pass
                    if self._before_cut is not None:
                        try:
                            await self._before_cut()
                        except Exception as exc:  # noqa: BLE001 - handed to the test
                            self.errors.append(exc)
                    self.cuts += 1
                    return
                read = asyncio.ensure_future(server_r.read(65536))
                flag = asyncio.ensure_future(doomed.wait())
                done, _ = await asyncio.wait({read, flag}, return_when=asyncio.FIRST_COMPLETED)
                flag.cancel()
                if read in done:
                    data = read.result()
                    if not data:
                        return
                    if doomed.is_set():
                        continue  # this answer belongs to the lost reply
                    client_w.write(data)
                    await client_w.drain()
                else:
                    read.cancel()

        pumps = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for writer in (client_w, server_w):
                writer.transport.abort()
            self._tasks.discard(task)
