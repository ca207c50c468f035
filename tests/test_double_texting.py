"""Double-texting over real HTTP: two `adk-postgres api_server` processes on one database, and
messages to one session sent to both at once (see adk_postgres.runs).

The agent (tests/run_agents/relay) counts turns in session state and answers "turn N after M
messages", so an answer shows what its run saw; "slow=S" in a message makes its second model
step take S seconds.
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import httpx
import pytest
from servers.adk_server import AdkServer, run_body, running
from servers.schemas import scratch_schema

AGENTS = Path(__file__).resolve().parent / "run_agents"
APP, USER = "relay", "u"
EXPIRY = 2.0
HEADER = "X-ADK-Postgres-Run-Strategy"


class Server(AdkServer):
    """One `adk-postgres api_server` process serving tests/run_agents."""

    def __init__(self, pg_url: str, schema: str, *options: str) -> None:
        super().__init__(pg_url, schema, AGENTS, "--run-lease-expiry", str(EXPIRY), *options)

    def run(self, session_id: str, text: str, **headers: str) -> httpx.Response:
        return self.client.post(
            "/run",
            json=run_body(APP, USER, session_id, text),
            headers=headers,
        )

    def new_session(self) -> str:
        response = self.client.post(f"/apps/{APP}/users/{USER}/sessions", json={})
        assert response.status_code == 200, response.text
        return response.json()["id"]

    def events(self, session_id: str) -> list[dict]:
        response = self.client.get(f"/apps/{APP}/users/{USER}/sessions/{session_id}")
        assert response.status_code == 200, response.text
        return response.json()["events"]


@pytest.fixture(scope="module")
def schema(pg_direct_url: str) -> Iterator[str]:
    with scratch_schema(pg_direct_url) as name:
        yield name


@pytest.fixture(scope="module")
def servers(pg_url: str, schema: str) -> Iterator[tuple[Server, Server]]:
    with running(
        lambda: Server(pg_url, schema),
        lambda: Server(pg_url, schema, "--run-wait-timeout", "3"),
    ) as (first, second):
        yield first, second
    for server in (first, second):
        assert "Traceback" not in server.output, server.output


def _text(event: dict) -> str | None:
    parts = (event.get("content") or {}).get("parts") or []
    return next((p["text"] for p in parts if "text" in p), None)


def _blocks(events: list[dict]) -> list[str]:
    """The invocation ids in the order their runs appear, one entry per contiguous block."""
    ids = [e["invocationId"] for e in events]
    return [inv for i, inv in enumerate(ids) if i == 0 or ids[i - 1] != inv]


def _wait_for_events(server: Server, session_id: str, count: int) -> None:
    deadline = time.monotonic() + 30
    while len(server.events(session_id)) < count:
        assert time.monotonic() < deadline, "the run did not get that far"
        time.sleep(0.05)


def test_fifty_double_texts_across_two_servers_both_answer_in_turn(
    servers: tuple[Server, Server],
) -> None:
    first, second = servers
    rng = random.Random(17)
    with ThreadPoolExecutor(2) as pool:
        for trial in range(50):
            session_id = first.new_session()
            delays = [rng.uniform(0, 0.03), rng.uniform(0, 0.03)]
            gate = threading.Barrier(2)

            def send(
                server: Server,
                delay: float,
                text: str,
                gate: threading.Barrier = gate,
                session_id: str = session_id,
            ) -> httpx.Response:
                gate.wait()
                time.sleep(delay)
                return server.run(session_id, text)

            answers = list(pool.map(send, (first, second), delays, (f"a{trial}", f"b{trial}")))
            for answer in answers:
                assert answer.status_code == 200, answer.text  # never a stale-session error
            finals = sorted(_text(a.json()[-1]) or "" for a in answers)
            # The second run saw the first run's message and its state.
            assert finals == ["turn 1 after 1 messages", "turn 2 after 2 messages"], trial
            events = first.events(session_id)
            assert len(events) == 8
            blocks = _blocks(events)
            assert len(blocks) == len(set(blocks)) == 2, (trial, blocks)


def test_reject_answers_409_and_stores_nothing_of_the_rejected_message(
    servers: tuple[Server, Server],
) -> None:
    first, second = servers
    session_id = first.new_session()
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(first.run, session_id, "slow=1.5 first")
        _wait_for_events(first, session_id, 3)
        rejected = second.run(session_id, "second", **{HEADER: "reject"})
        assert rejected.status_code == 409
        assert "busy" in rejected.json()["detail"] and "not stored" in rejected.json()["detail"]
        assert running.result().status_code == 200
    events = first.events(session_id)
    assert len(events) == 4 and len(_blocks(events)) == 1
    assert all(_text(e) != "second" for e in events)


def test_interrupt_stops_the_running_invocation_within_one_model_step(
    servers: tuple[Server, Server],
) -> None:
    first, second = servers
    session_id = first.new_session()
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(first.run, session_id, "slow=2 first")
        _wait_for_events(first, session_id, 3)  # user message, tool call, tool result
        started = time.monotonic()
        newer = second.run(session_id, "second", **{HEADER: "interrupt"})
        assert newer.status_code == 200, newer.text
        assert _text(newer.json()[-1]) == "turn 2 after 2 messages"
        interrupted = running.result()
        # The first run ended at the end of its model step (2 s), not later.
        assert time.monotonic() - started < 2 + 3
    assert interrupted.status_code == 409
    assert "interrupted" in interrupted.json()["detail"]
    events = first.events(session_id)
    old, new = _blocks(events)
    old_events = [e for e in events if e["invocationId"] == old]
    # Its partial events stay, closed by a marker; its late answer was never stored.
    assert len(old_events) == 4 and old_events[-1].get("interrupted") is True
    assert not any((_text(e) or "").startswith("turn 1") for e in events)
    assert [e["invocationId"] for e in events[4:]] == [new] * 4


def test_bad_strategy_header_is_a_400_with_a_message(servers: tuple[Server, Server]) -> None:
    first, _ = servers
    session_id = first.new_session()
    response = first.run(session_id, "hi", **{HEADER: "later"})
    assert response.status_code == 400
    assert "enqueue, reject, interrupt" in response.json()["detail"]
    assert first.events(session_id) == []


def test_a_waiting_run_times_out_with_503(servers: tuple[Server, Server]) -> None:
    first, second = servers  # the second waits at most 3 s
    session_id = first.new_session()
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(first.run, session_id, "slow=5 first")
        _wait_for_events(first, session_id, 3)
        started = time.monotonic()
        waited = second.run(session_id, "second")
        assert 2.5 < time.monotonic() - started < 8
        assert waited.status_code == 503 and waited.headers["retry-after"] == "1"
        assert "waited 3 s" in waited.json()["detail"]
        assert running.result().status_code == 200
    assert all(_text(e) != "second" for e in first.events(session_id))


def test_a_client_that_goes_away_while_waiting_leaves_the_queue(
    servers: tuple[Server, Server], pg_direct_url: str, schema: str
) -> None:
    first, second = servers
    session_id = first.new_session()

    async def queued() -> int:
        conn = await asyncpg.connect(pg_direct_url)
        try:
            return await conn.fetchval(
                f'SELECT count(*) FROM "{schema}".session_runs WHERE session_id = $1', session_id
            )
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(first.run, session_id, "slow=3 first")
        _wait_for_events(first, session_id, 3)
        with httpx.Client(base_url=second.url, timeout=0.5) as impatient:
            with pytest.raises(httpx.ReadTimeout):
                impatient.post(
                    "/run",
                    json=run_body(APP, USER, session_id, "gone"),
                )
        deadline = time.monotonic() + 2
        while asyncio.run(queued()) != 1:
            assert time.monotonic() < deadline, "the abandoned run stayed queued"
            time.sleep(0.05)
        assert running.result().status_code == 200
    time.sleep(0.3)
    events = first.events(session_id)
    assert len(events) == 4 and all(_text(e) != "gone" for e in events)


def test_a_killed_holder_frees_the_session_within_the_expiry(
    servers: tuple[Server, Server], pg_url: str, schema: str
) -> None:
    first, _ = servers
    doomed = Server(pg_url, schema)
    try:
        session_id = first.new_session()
        with ThreadPoolExecutor(1) as pool:
            pool.submit(doomed.run, session_id, "slow=60 first")
            _wait_for_events(first, session_id, 3)
            doomed.process.send_signal(signal.SIGKILL)
            doomed.process.wait()
            started = time.monotonic()
            answer = first.run(session_id, "second")
            took = time.monotonic() - started
        assert answer.status_code == 200, answer.text
        assert took < EXPIRY + 3
        assert _text(answer.json()[-1]) == "turn 2 after 2 messages"
    finally:
        doomed.stop()


def test_a_paused_holder_cannot_append_when_it_wakes_up(
    servers: tuple[Server, Server], pg_url: str, schema: str
) -> None:
    first, _ = servers
    sleeper = Server(pg_url, schema)
    try:
        session_id = first.new_session()
        with ThreadPoolExecutor(1) as pool:
            paused = pool.submit(sleeper.run, session_id, "slow=1 first")
            _wait_for_events(first, session_id, 3)
            sleeper.process.send_signal(signal.SIGSTOP)  # a stop-the-world pause
            answer = first.run(session_id, "second")  # waits out the expiry, takes over
            assert answer.status_code == 200, answer.text
            sleeper.process.send_signal(signal.SIGCONT)
            woke = paused.result()
        assert woke.status_code == 409, woke.text
        events = first.events(session_id)
        assert not any((_text(e) or "").startswith("turn 1") for e in events)
        assert _text(events[-1]) == "turn 2 after 2 messages"
    finally:
        output = sleeper.stop()
    assert "Traceback" not in output, output


def test_requests_the_lease_cannot_serve_get_adks_own_answer_or_a_clear_4xx(
    servers: tuple[Server, Server],
) -> None:
    first, _ = servers
    assert first.run("no-such-session", "hi").status_code == 404  # ADK's own answer
    broken = first.client.post(
        "/run", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422
    nul = first.run("bad\u0000id", "hi")
    assert nul.status_code == 400 and "NUL" in nul.json()["detail"]
    long = first.run("x" * 200, "hi")
    assert long.status_code == 400 and "limit is 128" in long.json()["detail"]


def test_streamed_runs_of_one_session_take_turns_too(servers: tuple[Server, Server]) -> None:
    first, second = servers
    session_id = first.new_session()

    def stream(server: Server, text: str) -> list[str]:
        body = run_body(APP, USER, session_id, text, streaming=False)
        with server.client.stream("POST", "/run_sse", json=body) as response:
            assert response.status_code == 200
            return [line for line in response.iter_lines() if line.startswith("data:")]

    with ThreadPoolExecutor(2) as pool:
        streams = list(pool.map(stream, (first, second), ("one", "two")))
    finals = sorted(re.findall(r"turn \d after \d messages", "".join(s))[-1] for s in streams)
    assert finals == ["turn 1 after 1 messages", "turn 2 after 2 messages"]
    assert len(_blocks(first.events(session_id))) == 2
