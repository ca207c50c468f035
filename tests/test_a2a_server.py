"""A2A end to end: the SDK's client talks to `adk-postgres api_server --a2a examples`; tasks
and push configs survive a restart, a second server process on the same database sees and
updates the same task, and the feedback routes answer over HTTP.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from servers.adk_server import AdkServer, running
from servers.schemas import scratch_schema

a2a_pb2 = pytest.importorskip("a2a.types.a2a_pb2")
from a2a.client import ClientConfig, create_client  # noqa: E402
from a2a.client.card_resolver import parse_agent_card  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
AGENT = "basic_agent"


class A2aServer(AdkServer):
    """`adk-postgres api_server --a2a` serving the examples."""

    def __init__(self, pg_url: str, schema: str) -> None:
        card_path = f"/a2a/{AGENT}/.well-known/agent-card.json"
        super().__init__(pg_url, schema, EXAMPLES, "--a2a", ready_path=card_path)
        self.rpc_url = f"{self.url}/a2a/{AGENT}"
        self.card_json = self.client.get(card_path).json()
        self.http = self.client

    async def client_for_a2a(self):  # noqa: ANN201 - the SDK's Client
        """The SDK's client, from the served card pointed at this server's port."""
        card = parse_agent_card(self.card_json)
        for interface in card.supported_interfaces:
            interface.url = self.rpc_url
        return await create_client(card, ClientConfig(streaming=False))


@pytest.fixture(scope="module")
def schema(pg_direct_url: str) -> Iterator[str]:
    with scratch_schema(pg_direct_url) as name:
        yield name


def _message(text: str, *, context_id: str = "", task_id: str = "") -> a2a_pb2.Message:
    message = a2a_pb2.Message(
        message_id=uuid.uuid4().hex, role=a2a_pb2.ROLE_USER, context_id=context_id
    )
    if task_id:
        message.task_id = task_id
    message.parts.add(text=text)
    return message


async def _send(server: A2aServer, message: a2a_pb2.Message) -> a2a_pb2.Task:
    client = await server.client_for_a2a()
    try:
        task = None
        async for response in client.send_message(a2a_pb2.SendMessageRequest(message=message)):
            if response.HasField("task"):
                task = response.task
        assert task is not None, "no task in the response"
        return task
    finally:
        await client.close()


async def _get(server: A2aServer, task_id: str) -> a2a_pb2.Task:
    client = await server.client_for_a2a()
    try:
        return await client.get_task(a2a_pb2.GetTaskRequest(id=task_id))
    finally:
        await client.close()


def _texts(task: a2a_pb2.Task) -> list[str]:
    found = [p.text for a in task.artifacts for p in a.parts if p.text]
    found += [p.text for m in task.history for p in m.parts if p.text]
    return found


async def test_tasks_survive_a_restart_and_are_shared_by_two_servers(
    pg_url: str, schema: str, pg_direct_url: str
) -> None:
    first = A2aServer(pg_url, schema)
    try:
        task = await _send(first, _message("convert 21"))
        assert task.status.state == a2a_pb2.TASK_STATE_COMPLETED, task
        assert any("69.8" in t for t in _texts(task)), _texts(task)
        client = await first.client_for_a2a()
        try:
            config = a2a_pb2.TaskPushNotificationConfig(
                task_id=task.id, id="hook-1", url="https://hooks.example/a2a", token="t0k"
            )
            await client.create_task_push_notification_config(config)
        finally:
            await client.close()
    finally:
        log = first.stop()
    assert "Traceback" not in log, log[-3000:]

    # Stored in PostgreSQL, not in the process.
    conn = await asyncpg.connect(pg_direct_url)
    try:
        rows = await conn.fetch(f'SELECT task_id, state FROM "{schema}".a2a_tasks')
        configs = await conn.fetchval(f'SELECT count(*) FROM "{schema}".a2a_push_configs')
    finally:
        await conn.close()
    assert [(r["task_id"], r["state"]) for r in rows] == [(task.id, "TASK_STATE_COMPLETED")]
    assert configs == 1

    with running(lambda: A2aServer(pg_url, schema), lambda: A2aServer(pg_url, schema)) as (
        restarted,
        second,
    ):
        again = await _get(restarted, task.id)
        assert again.id == task.id and again.context_id == task.context_id
        assert list(again.history) == list(task.history)
        assert list(again.artifacts) == list(task.artifacts)
        assert again.status.state == a2a_pb2.TASK_STATE_COMPLETED
        client = await restarted.client_for_a2a()
        try:
            listed = await client.list_task_push_notification_configs(
                a2a_pb2.ListTaskPushNotificationConfigsRequest(task_id=task.id)
            )
        finally:
            await client.close()
        assert [(c.id, c.url) for c in listed.configs] == [("hook-1", "https://hooks.example/a2a")]

        # The second process continues the conversation (same context: the same ADK session);
        # the first sees what it did.
        follow_up = await _send(second, _message("convert 100", context_id=task.context_id))
        assert follow_up.context_id == task.context_id
        assert any("212" in t for t in _texts(follow_up)), _texts(follow_up)
        seen = await _get(restarted, follow_up.id)
        assert list(seen.history) == list(follow_up.history)
        listing = await restarted.client_for_a2a()
        try:
            page = await listing.list_tasks(a2a_pb2.ListTasksRequest(context_id=task.context_id))
        finally:
            await listing.close()
        assert {t.id for t in page.tasks} == {task.id, follow_up.id}

        # Feedback over HTTP, on either server.
        path = f"/a2a/{AGENT}/tasks/{task.id}/feedback"
        created = restarted.http.post(path, json={"rating": 5, "text": "spot on"})
        assert created.status_code == 201, created.text
        assert created.json()["rating"] == 5
        listed_fb = second.http.get(path)
        assert listed_fb.status_code == 200
        assert [(f["rating"], f["text"]) for f in listed_fb.json()["feedback"]] == [(5, "spot on")]
        for body, status in [
            ({"rating": 0}, 400),
            ({"rating": "5"}, 400),
            ({"text": "no rating"}, 400),
            ({"rating": 3, "text": "nul \u0000"}, 400),
            ({"rating": 3, "extra": 1}, 400),
            ({"rating": 3, "metadata": [1]}, 400),
        ]:
            response = restarted.http.post(path, json=body)
            assert response.status_code == status, (body, response.text)
            assert "error" in response.json()
        assert restarted.http.post(path, content=b"{not json").status_code == 400
        assert restarted.http.get(path, params={"limit": "0"}).status_code == 400
        assert restarted.http.get(path, params={"after": "x\u0000"}).status_code == 400
        assert restarted.http.get(path, params={"limit": "many"}).status_code == 400
        missing = restarted.http.post(f"/a2a/{AGENT}/tasks/nope/feedback", json={"rating": 4})
        assert missing.status_code == 404
        assert len(second.http.get(path).json()["feedback"]) == 1  # nothing half-written
        # An unknown task over A2A is the SDK's error, not a crash.
        client = await second.client_for_a2a()
        try:
            with pytest.raises(Exception) as raised:
                await client.get_task(a2a_pb2.GetTaskRequest(id="no-such-task"))
            assert "not found" in str(raised.value).lower()
        finally:
            await client.close()
    for server in (restarted, second):
        assert "Traceback" not in server.output, server.output[-3000:]


async def test_to_a2a_with_the_postgres_stores(
    pg_url: str, schema_name: str, pg_admin: asyncpg.Connection
) -> None:
    """The README's `to_a2a(..., task_store=PostgresTaskStore(...))`: the task is in the
    database, its context is the ADK session the executor ran in, and a store on a fresh pool
    (another process) reads it back."""
    import importlib.util

    from google.adk.a2a.utils.agent_to_a2a import to_a2a
    from google.adk.runners import Runner
    from starlette.testclient import TestClient

    from adk_postgres import Database, PostgresSessionService
    from adk_postgres.a2a import PostgresPushNotificationConfigStore, PostgresTaskStore

    spec = importlib.util.spec_from_file_location("basic_agent", EXAMPLES / AGENT / "agent.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    db = Database(pg_url, schema=schema_name)
    runner = Runner(
        app_name=AGENT,
        agent=module.root_agent,
        session_service=PostgresSessionService(database=db),
    )
    app = to_a2a(
        module.root_agent,
        runner=runner,
        task_store=PostgresTaskStore(database=db),
        push_config_store=PostgresPushNotificationConfigStore(database=db),
    )
    request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "SendMessage",
        "params": {
            "message": {
                "messageId": uuid.uuid4().hex,
                "role": "ROLE_USER",
                "parts": [{"text": "convert 37"}],
            }
        },
    }

    def post() -> dict:
        with TestClient(app) as client:
            response = client.post("/", json=request, headers={"A2A-Version": "1.0"})
            assert response.status_code == 200, response.text
            return response.json()["result"]["task"]

    task = await asyncio.to_thread(post)
    await db.close()
    assert task["status"]["state"] == "TASK_STATE_COMPLETED"
    sessions = await pg_admin.fetch(f'SELECT app_name, id FROM "{schema_name}".sessions')
    assert [(r["app_name"], r["id"]) for r in sessions] == [(AGENT, task["contextId"])]
    async with PostgresTaskStore(pg_url, schema=schema_name) as fresh:
        stored = await fresh.get(task["id"], None)
        assert stored is not None and stored.context_id == task["contextId"]
        assert "98.6" in stored.artifacts[0].parts[0].text
        page = await fresh.list_context_tasks(task["contextId"])
        assert [t.id for t in page.tasks] == [task["id"]]


def test_web_a2a_serves_feedback_routes_and_refuses_malformed_requests(
    pg_url: str, schema_name: str
) -> None:
    """`web --a2a`: the feedback routes answer JSON before the web UI's routes; malformed
    A2A requests get the SDK's JSON-RPC errors; a message the session store refuses (a NUL
    character: JSONB cannot hold one) fails its task cleanly, and the server goes on."""
    card_path = f"/a2a/{AGENT}/.well-known/agent-card.json"
    server = AdkServer(pg_url, schema_name, EXAMPLES, "--a2a", command="web", ready_path=card_path)
    try:
        client = server.client
        missing = client.post(f"/a2a/{AGENT}/tasks/nope/feedback", json={"rating": 3})
        assert missing.status_code == 404 and missing.json() == {"error": "no task 'nope'"}
        rpc = f"/a2a/{AGENT}"
        headers = {"content-type": "application/json", "A2A-Version": "1.0"}
        for body in (
            b"{not json",
            b'{"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": 5}}',
            b'{"jsonrpc": "2.0", "id": 2, "method": "GetTask", "params": {"id": "nope"}}',
            b'{"jsonrpc": "2.0", "id": 3, "method": "NoSuchMethod"}',
        ):
            response = client.post(rpc, content=body, headers=headers)
            assert response.status_code < 500, response.text
            assert "error" in response.json(), response.text
        message = {"messageId": "m-nul", "role": "ROLE_USER", "parts": [{"text": "a\u0000b"}]}
        nul = client.post(
            rpc,
            json={
                "jsonrpc": "2.0",
                "id": 4,
                "method": "SendMessage",
                "params": {"message": message},
            },
            headers=headers,
        )
        assert nul.status_code == 200, nul.text
        assert nul.json()["result"]["task"]["status"]["state"] == "TASK_STATE_FAILED", nul.text
        assert client.get("/list-apps").status_code == 200
    finally:
        output = server.stop()
    assert "DataError" in output or "22P05" in output, output[-3000:]


RUN_AGENTS = Path(__file__).resolve().parent / "run_agents"


def _rpc_send(server: AdkServer, text: str, context_id: str = "", **headers: str) -> dict:
    message = {"messageId": uuid.uuid4().hex, "role": "ROLE_USER", "parts": [{"text": text}]}
    if context_id:
        message["contextId"] = context_id
    response = server.client.post(
        "/a2a/relay",
        json={"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": message}},
        headers={"A2A-Version": "1.0", **headers},
    )
    assert response.status_code == 200, response.text
    return response.json()["result"]["task"]


def _answer(task: dict) -> str:
    return " ".join(p.get("text", "") for a in task.get("artifacts", []) for p in a["parts"])


def test_two_a2a_messages_to_one_context_take_turns(pg_url: str, schema_name: str) -> None:
    """A2A double texting: two messages to one context (one ADK session) sent at once, one to
    each of two server processes, run one after the other under the session's run lease;
    with the reject strategy the second fails with a clear message."""
    from concurrent.futures import ThreadPoolExecutor

    card = "/a2a/relay/.well-known/agent-card.json"

    def start() -> AdkServer:
        return AdkServer(pg_url, schema_name, RUN_AGENTS, "--a2a", ready_path=card)

    with running(start, start) as (first, second):
        opening = _rpc_send(first, "hello")
        assert _answer(opening) == "turn 1 after 1 messages", opening
        context = opening["contextId"]
        with ThreadPoolExecutor(2) as pool:
            slow = pool.submit(_rpc_send, first, "slow=1.5", context)
            time.sleep(0.5)  # the slow run holds the session now
            quick = pool.submit(_rpc_send, second, "quick", context)
            answers = [slow.result(timeout=60), quick.result(timeout=60)]
        states = [t["status"]["state"] for t in answers]
        assert states == ["TASK_STATE_COMPLETED", "TASK_STATE_COMPLETED"], answers
        # The second run waited and saw the first one's turn.
        assert [_answer(t) for t in answers] == [
            "turn 2 after 2 messages",
            "turn 3 after 3 messages",
        ]
        with ThreadPoolExecutor(2) as pool:
            slow = pool.submit(_rpc_send, first, "slow=1.5", context)
            time.sleep(0.5)
            rejected = pool.submit(
                _rpc_send, second, "rejected", context, **{"X-ADK-Postgres-Run-Strategy": "reject"}
            )
            refused = rejected.result(timeout=60)
            assert slow.result(timeout=60)["status"]["state"] == "TASK_STATE_COMPLETED"
        assert refused["status"]["state"] == "TASK_STATE_FAILED", refused
        reason = " ".join(p.get("text", "") for p in refused["status"]["message"]["parts"])
        assert "busy" in reason, reason
    assert not any("StaleSessionError" in server.output for server in (first, second))


def test_a2a_with_workers_every_process_answers_for_every_task(
    pg_url: str, schema_name: str
) -> None:
    """`api_server --a2a --workers 2`: a task made by whichever worker took the message is
    there for `GetTask` on fresh connections (spread over both workers by the kernel)."""
    import httpx

    card = f"/a2a/{AGENT}/.well-known/agent-card.json"
    with AdkServer(pg_url, schema_name, EXAMPLES, "--a2a", "--workers", "2", ready_path=card) as s:
        created = []
        for n in (5, 10, 15, 20):
            message = {
                "messageId": uuid.uuid4().hex,
                "role": "ROLE_USER",
                "parts": [{"text": f"convert {n}"}],
            }
            response = s.client.post(
                f"/a2a/{AGENT}",
                json={
                    "jsonrpc": "2.0",
                    "id": n,
                    "method": "SendMessage",
                    "params": {"message": message},
                },
                headers={"A2A-Version": "1.0"},
            )
            assert response.status_code == 200, response.text
            created.append(response.json()["result"]["task"]["id"])
        for _ in range(5):
            for task_id in created:
                with httpx.Client(base_url=s.url, timeout=30) as fresh:  # a new connection
                    got = fresh.post(
                        f"/a2a/{AGENT}",
                        json={
                            "jsonrpc": "2.0",
                            "id": 1,
                            "method": "GetTask",
                            "params": {"id": task_id},
                        },
                        headers={"A2A-Version": "1.0"},
                    )
                assert got.status_code == 200, got.text
                assert got.json()["result"]["status"]["state"] == "TASK_STATE_COMPLETED", got.text
