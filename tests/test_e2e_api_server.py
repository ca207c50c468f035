"""End to end: `adk-postgres api_server` with the example agents, driven over HTTP, restarted,
and everything the agents stored (sessions, events, state, artifacts, memory) still there."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from servers.adk_server import AdkServer, run_body

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
APP = "persistent_chat"
USER = "alice"


@contextmanager
def api_server(pg_url: str, schema: str) -> Iterator[httpx.Client]:
    """A running `adk-postgres api_server` on a free port; stopped with SIGTERM afterwards."""
    with AdkServer(pg_url, schema, EXAMPLES, timeout=30) as server:
        yield server.client


def _run(client: httpx.Client, session_id: str, text: str) -> list[dict]:
    response = client.post(
        "/run",
        json=run_body(APP, USER, session_id, text),
    )
    assert response.status_code == 200, response.text
    return response.json()


def _texts(events: list[dict]) -> list[str]:
    return [
        p["text"] for e in events for p in (e.get("content") or {}).get("parts", []) if "text" in p
    ]


def test_api_server_keeps_everything_across_a_restart(pg_url: str, schema_name: str) -> None:
    with api_server(pg_url, schema_name) as client:
        assert client.get("/list-apps").json() == ["basic_agent", "persistent_chat"]
        created = client.post(
            f"/apps/{APP}/users/{USER}/sessions", json={"state": {"topic": "home"}}
        )
        assert created.status_code == 200, created.text
        session_id = created.json()["id"]
        first = _run(client, session_id, "remember the blue door code is 4411")
        assert _texts(first)[-1] == "Noted (1 in this chat, 1 in all; notes.md v0)."
        second = _run(client, session_id, "remember the plants need water on Fridays")
        assert _texts(second)[-1] == "Noted (2 in this chat, 2 in all; notes.md v1)."
        before = client.get(f"/apps/{APP}/users/{USER}/sessions/{session_id}").json()
        listed = client.get(f"/apps/{APP}/users/{USER}/sessions").json()
        assert [s["id"] for s in listed] == [session_id]

        converter = client.post(f"/apps/basic_agent/users/{USER}/sessions", json={}).json()
        reply = client.post(
            "/run",
            json=run_body("basic_agent", USER, converter["id"], "convert 100"),
        ).json()
        assert _texts(reply)[-1] == "100.0 °C is 212.0 °F."

    with api_server(pg_url, schema_name) as client:
        after = client.get(f"/apps/{APP}/users/{USER}/sessions/{session_id}").json()
        assert [e["id"] for e in after["events"]] == [e["id"] for e in before["events"]]
        assert len(after["events"]) == 8  # 2 turns × (user, call, response, reply)
        assert after["state"]["notes"] == [
            "the blue door code is 4411",
            "the plants need water on Fridays",
        ]
        assert after["state"]["user:notes_total"] == 2
        assert after["state"]["topic"] == "home"
        artifacts = client.get(f"/apps/{APP}/users/{USER}/sessions/{session_id}/artifacts").json()
        assert artifacts == ["notes.md"]
        versions = client.get(
            f"/apps/{APP}/users/{USER}/sessions/{session_id}/artifacts/notes.md/versions"
        ).json()
        assert versions == [0, 1]

        # A new conversation of the same user recalls the old one through ADK memory.
        fresh = client.post(f"/apps/{APP}/users/{USER}/sessions", json={}).json()
        recalled = _run(client, fresh["id"], "recall door code")
        assert _texts(recalled)[-1] == "I remember: the blue door code is 4411"
        # Asking again, in yet another session: still only the fact, never the earlier
        # question or answer (only notes go to memory, not whole turns).
        third = client.post(f"/apps/{APP}/users/{USER}/sessions", json={}).json()
        again = _run(client, third["id"], "recall door code")
        assert _texts(again)[-1] == "I remember: the blue door code is 4411"
        assert fresh["state"] == {"user:notes_total": 2}
        sessions = client.get(f"/apps/{APP}/users/{USER}/sessions").json()
        assert {s["id"] for s in sessions} == {session_id, fresh["id"], third["id"]}
