"""adk-postgres's own routes (/adk-postgres/v1/...) on a real `adk-postgres api_server` with
the example agents: conversations after real /run turns, paging while another server process
appends, title, archive/restore, search, state queries, health, stats, bad input (4xx with a
message, never a traceback), and --no-api-routes."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
from servers.adk_server import AdkServer, run_body, running

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
APP = "persistent_chat"
USER = "alice"
V1 = "/adk-postgres/v1"
CONVERSATIONS = f"{V1}/apps/{APP}/users/{USER}/conversations"


def _new_session(client: httpx.Client, state: dict | None = None, user: str = USER) -> str:
    created = client.post(f"/apps/{APP}/users/{user}/sessions", json={"state": state or {}})
    assert created.status_code == 200, created.text
    return created.json()["id"]


def _say(client: httpx.Client, session_id: str, text: str, user: str = USER) -> None:
    response = client.post("/run", json=run_body(APP, user, session_id, text))
    assert response.status_code == 200, response.text


def _all(client: httpx.Client, path: str, key: str, **params: object) -> list[dict]:
    items: list[dict] = []
    token = None
    while True:
        query = {**params, **({"page_token": token} if token else {})}
        response = client.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        items += body[key]
        token = body["next_page_token"]
        if token is None:
            return items


def _bad(response: httpx.Response, status: int = 400) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] and "Traceback" not in body["error"]
    return body["error"]


def test_conversation_routes_over_real_turns(pg_url: str, schema_name: str) -> None:
    with running(
        lambda: AdkServer(pg_url, schema_name, EXAMPLES),
        lambda: AdkServer(pg_url, schema_name, EXAMPLES),
    ) as (first, second):
        client = first.client
        assert client.get(f"{V1}/health/live").json() == {"status": "ok"}
        ready = client.get(f"{V1}/health/ready")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        assert ready.json()["schema_version"] == ready.json()["latest_version"]

        door = _new_session(client, {"topic": "home", "stage": "open"})
        _say(client, door, "remember the blue door code is 4411")
        plants = _new_session(client, {"topic": "garden"})
        _say(second.client, plants, "remember the plants need water on Fridays")
        _new_session(client, user="bob")

        listed = client.get(CONVERSATIONS).json()
        assert [c["session_id"] for c in listed["conversations"]] == [plants, door]
        top = listed["conversations"][0]
        assert top["title"] == "remember the plants need water on Fridays"
        assert top["preview"].startswith("Noted") and top["message_count"] == 2
        assert listed["next_page_token"] is None

        # Title, archive, restore.
        titled = client.put(f"{CONVERSATIONS}/{door}/title", json={"title": "Door 🚪"})
        assert titled.status_code == 200, titled.text
        assert client.post(f"{CONVERSATIONS}/{plants}/archive").json()["archived"] is True
        listed = client.get(CONVERSATIONS).json()["conversations"]
        assert [(c["session_id"], c["title"]) for c in listed] == [(door, "Door 🚪")]
        archived = client.get(CONVERSATIONS, params={"archived": "true"}).json()
        assert [c["session_id"] for c in archived["conversations"]] == [plants]
        # The second process sees the archive at once (it is in the database).
        other = second.client.get(CONVERSATIONS).json()["conversations"]
        assert [c["session_id"] for c in other] == [door]
        assert client.post(f"{CONVERSATIONS}/{plants}/restore").status_code == 200

        # Search: the word said, the user's own messages only.
        hits = client.get(f"{V1}/apps/{APP}/users/{USER}/search", params={"q": "door code"})
        assert hits.status_code == 200, hits.text
        assert [h["session_id"] for h in hits.json()["hits"]] == [door]
        assert "<mark>" in hits.json()["hits"][0]["snippet"]
        nothing = client.get(f"{V1}/apps/{APP}/users/bob/search", params={"q": "door"})
        assert nothing.json()["hits"] == []

        # State queries, per app and per user.
        state = client.get(f"{V1}/apps/{APP}/state", params={"contains": '{"topic": "home"}'})
        assert [(s["user_id"], s["session_id"]) for s in state.json()["sessions"]] == [(USER, door)]
        mine = client.get(
            f"{V1}/apps/{APP}/users/bob/state", params={"contains": '{"topic": "home"}'}
        )
        assert mine.json()["sessions"] == []

        stats = client.get(f"{V1}/stats", params={"app_name": APP}).json()
        assert stats["totals"]["sessions"] == 3

        # Bad input: 400 with a message; unknown session: 404; ADK's routes unchanged.
        _bad(client.get(CONVERSATIONS, params={"page_token": "nope"}))
        _bad(client.get(CONVERSATIONS, params={"page_size": "0"}))
        _bad(client.get(CONVERSATIONS, params={"page_size": "1001"}))
        _bad(client.get(CONVERSATIONS, params={"page_size": "ten"}))
        _bad(client.get(CONVERSATIONS, params={"archived": "maybe"}))
        _bad(client.get(f"{V1}/apps/{APP}/users/{USER}/search"))
        _bad(client.get(f"{V1}/apps/{APP}/users/{USER}/search", params={"q": ""}))
        _bad(
            client.get(f"{V1}/apps/{APP}/users/{USER}/search", params={"q": "x", "language": "x'"})
        )
        _bad(client.get(f"{V1}/apps/{APP}/state"))
        _bad(client.get(f"{V1}/apps/{APP}/state", params={"contains": "[1]"}))
        _bad(client.get(f"{V1}/apps/{APP}/state", params={"contains": "{bad"}))
        _bad(client.put(f"{CONVERSATIONS}/{door}/title", content=b"not json"))
        _bad(client.put(f"{CONVERSATIONS}/{door}/title", json={"title": 5}))
        _bad(client.put(f"{CONVERSATIONS}/{door}/title", json={"name": "x"}))
        _bad(client.put(f"{CONVERSATIONS}/{door}/title", json={"title": "a\x00b"}))
        _bad(client.post(f"{CONVERSATIONS}/no-such-session/archive"), 404)
        _bad(client.put(f"{CONVERSATIONS}/no-such-session/title", json={"title": "t"}), 404)
        long_user = "u" * 200
        _bad(client.get(f"{V1}/apps/{APP}/users/{long_user}/conversations"))
        # A token of one listing is refused by another.
        token = client.get(CONVERSATIONS, params={"page_size": 1}).json()["next_page_token"]
        _bad(client.get(f"{V1}/apps/{APP}/users/bob/conversations", params={"page_token": token}))
        assert client.get(f"/apps/{APP}/users/{USER}/sessions").status_code == 200
        # The example agent shows the same list ("chats").
        reply = client.post("/run", json=run_body(APP, USER, door, "chats")).json()
        text = reply[-1]["content"]["parts"][0]["text"]
        assert text.startswith("Your chats: Door 🚪 (3 messages)"), text
        assert "remember the plants need water on Fridays (2 messages)" in text
        # Nothing of the refused requests was written.
        listed = client.get(CONVERSATIONS).json()["conversations"]
        assert {c["title"] for c in listed} >= {"Door 🚪"}
    for server in (first, second):
        assert "Traceback" not in (server.output or "")


def test_paging_over_http_while_another_process_appends(pg_url: str, schema_name: str) -> None:
    with running(
        lambda: AdkServer(pg_url, schema_name, EXAMPLES),
        lambda: AdkServer(pg_url, schema_name, EXAMPLES),
    ) as (reader, writer):
        ids = [_new_session(reader.client) for _ in range(24)]
        for sid in ids:
            _say(reader.client, sid, f"remember item {sid[:8]}")
        stop = threading.Event()
        errors: list[str] = []

        def append() -> None:
            client = httpx.Client(base_url=writer.url, timeout=60)
            n = 0
            while not stop.is_set():
                response = client.post(
                    "/run", json=run_body(APP, USER, ids[n * 7 % len(ids)], f"remember more {n}")
                )
                if response.status_code != 200:
                    errors.append(response.text)
                n += 1
            client.close()

        thread = threading.Thread(target=append)
        thread.start()
        try:
            seen = [
                c["session_id"]
                for c in _all(reader.client, CONVERSATIONS, "conversations", page_size=3)
            ]
        finally:
            stop.set()
            thread.join()
        assert not errors
        assert sorted(seen) == sorted(ids), "skipped or repeated a conversation"


def test_no_api_routes_leaves_them_out(pg_url: str, schema_name: str) -> None:
    with AdkServer(pg_url, schema_name, EXAMPLES, "--no-api-routes") as server:
        assert server.client.get(f"{V1}/health/live").status_code == 404
        assert server.client.get(f"{V1}/agents").status_code == 404
        assert server.client.get(f"/apps/{APP}/users/{USER}/sessions").status_code == 200
