"""adk-postgres demo: an ADK agent whose conversation survives a process restart.

What it does:

1. Runs a tiny shopping-list agent (google.adk LlmAgent + Runner) for three user messages,
   with every event and every state change stored in PostgreSQL by ``PostgresSessionService``.
   The "model" is a scripted, offline ``BaseLlm`` defined below, so no API key is needed and
   the output is the same on every run.
2. Starts a second Python process that opens a new service on the same database, loads the
   session by id, prints the restored history and state, and checks that they match what the
   first process saw. The exit status is non-zero if anything differs.

Run it::

    python examples/demo.py                               # embedded PostgreSQL (no server needed)
    python examples/demo.py --database-url postgresql://adk:adk@127.0.0.1:5432/adk
    DATABASE_URL=postgresql://adk:adk@127.0.0.1:5432/adk python examples/demo.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncGenerator
from typing import Any

from google.adk.agents import LlmAgent
from google.adk.events import Event
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.adk.sessions import Session
from google.adk.tools import ToolContext
from google.genai import types

from adk_postgres import PostgresSessionService

APP_NAME = "adk_postgres_demo"
USER_ID = "demo-user"
USER_MESSAGES = ("Please add milk", "Please add eggs", "Please add coffee")


# --- The agent ------------------------------------------------------------------------------


def add_item(item: str, tool_context: ToolContext) -> dict[str, Any]:
    """Adds one item to the shopping list.

    Args:
      item: What to put on the list.
    """
    items = [*tool_context.state.get("items", []), item]
    tool_context.state["items"] = items  # session state: belongs to this conversation
    # "user:" state is shared by all sessions of this user, so it keeps growing across runs.
    added = tool_context.state.get("user:items_added_total", 0) + 1
    tool_context.state["user:items_added_total"] = added
    return {"items": items, "items_added_total": added}


class ScriptedLlm(BaseLlm):
    """A deterministic stand-in for a real model: no network, same answers every run.

    For a user message "... <item>" it calls ``add_item(item=<item>)``; once the tool has
    answered, it replies with the current list.
    """

    model: str = "scripted-shopping-list"

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        parts = llm_request.contents[-1].parts or []
        tool_result = next((p.function_response for p in parts if p.function_response), None)
        if tool_result is not None:
            items = (tool_result.response or {}).get("items", [])
            yield _reply(types.Part(text=f"Done. Your list: {', '.join(items)}."))
            return
        words = next((p.text for p in parts if p.text), "").split()
        item = words[-1] if words else "nothing"
        yield _reply(
            types.Part(function_call=types.FunctionCall(name="add_item", args={"item": item}))
        )


def _reply(part: types.Part) -> LlmResponse:
    # A scripted model spends no tokens; saying so keeps ADK's telemetry from warning.
    usage = types.GenerateContentResponseUsageMetadata(
        prompt_token_count=0, candidates_token_count=0, total_token_count=0
    )
    return LlmResponse(content=types.Content(role="model", parts=[part]), usage_metadata=usage)


def build_agent() -> LlmAgent:
    return LlmAgent(
        name="shopping_agent",
        model=ScriptedLlm(),
        instruction="Keep the user's shopping list.",
        tools=[add_item],
        output_key="last_reply",  # the agent's final text of each turn is saved in state too
    )


# --- Printing and comparing -----------------------------------------------------------------


def describe(event: Event) -> str:
    """One readable line per event: ``author: text`` (tool calls and results shown too)."""
    pieces: list[str] = []
    for part in (event.content.parts or []) if event.content else []:
        if part.text:
            pieces.append(part.text)
        elif part.function_call:
            args = json.dumps(part.function_call.args or {}, sort_keys=True)
            pieces.append(f"[call {part.function_call.name} {args}]")
        elif part.function_response:
            result = json.dumps(part.function_response.response or {}, sort_keys=True)
            pieces.append(f"[result of {part.function_response.name} {result}]")
    return f"{event.author}: {' '.join(pieces)}"


def snapshot(session: Session) -> dict[str, Any]:
    """What must survive the restart: every event (id and rendering) and the merged state."""
    return {
        "events": [[event.id, describe(event)] for event in session.events],
        "state": dict(session.state),
    }


def redact(url: str) -> str:
    """Hide the password in a database URL before printing it."""
    url = re.sub(r"(://[^:/@?]*:)[^@/?]*@", r"\1***@", url)
    return re.sub(r"(password=)[^&\s]*", r"\1***", url)


def database_label(url: str | None) -> str:
    if url:
        return redact(url)
    from adk_postgres import embedded

    return f"embedded PostgreSQL in {embedded.default_data_dir()}"


# --- First process: talk to the agent -------------------------------------------------------


async def run_conversation(url: str | None, schema: str) -> dict[str, Any]:
    """Runs the agent for USER_MESSAGES in a new session; returns the stored snapshot."""
    async with PostgresSessionService(url, schema=schema) as service:
        runner = Runner(app_name=APP_NAME, agent=build_agent(), session_service=service)
        session = await service.create_session(app_name=APP_NAME, user_id=USER_ID)
        print(f"Created session {session.id} for user {USER_ID!r} of app {APP_NAME!r}\n")
        for text in USER_MESSAGES:
            print(f"    user: {text}")
            message = types.Content(role="user", parts=[types.Part(text=text)])
            async for event in runner.run_async(
                user_id=USER_ID, session_id=session.id, new_message=message
            ):
                print(f"    {describe(event)}")
        await runner.close()

        stored = await service.get_session(
            app_name=APP_NAME, user_id=USER_ID, session_id=session.id
        )
        if stored is None:
            raise SystemExit("error: the session vanished after the conversation")
        return {"session_id": session.id, **snapshot(stored)}


def start_second_process(url: str | None, schema: str, expected: dict[str, Any]) -> int:
    """Runs this file again with --resume in a fresh interpreter; returns its exit status."""
    env = dict(os.environ)
    if url:
        env["DATABASE_URL"] = url  # passed by environment so the password never shows in `ps`
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--resume",
        expected["session_id"],
        "--schema",
        schema,
        "--expect",
        json.dumps({"events": expected["events"], "state": expected["state"]}),
    ]
    return subprocess.run(command, env=env, check=False).returncode


# --- Second process: restore and verify -----------------------------------------------------


async def resume(
    url: str | None, schema: str, session_id: str, expected: dict[str, Any] | None
) -> int:
    async with PostgresSessionService(url, schema=schema) as service:
        session = await service.get_session(
            app_name=APP_NAME, user_id=USER_ID, session_id=session_id
        )
    if session is None:
        print(f"FAIL: session {session_id} not found")
        return 1

    print(f"Restored session {session.id} in a new process (pid {os.getpid()}):")
    print(f"  history ({len(session.events)} events):")
    for event in session.events:
        print(f"    {describe(event)}")
    print("  state:")
    for key, value in sorted(session.state.items()):
        print(f"    {key} = {json.dumps(value)}")

    if expected is None:
        return 0
    # Round-trip through JSON so both sides compare the same kinds of values.
    actual = json.loads(json.dumps(snapshot(session)))
    if actual != expected:
        print("\nFAIL: the restored session differs from what the first process stored")
        print(f"  expected: {json.dumps(expected, sort_keys=True)}")
        print(f"  restored: {json.dumps(actual, sort_keys=True)}")
        return 1
    print("\nOK: history and state restored exactly.")
    return 0


# --- Entry point ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run an ADK agent on PostgreSQL, then restore its session in a new process.",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="PostgreSQL URL, e.g. postgresql://adk:adk@127.0.0.1:5432/adk "
        "(default: $DATABASE_URL, else an embedded PostgreSQL started on demand)",
    )
    parser.add_argument(
        "--schema",
        default="public",
        help="PostgreSQL schema for the tables, created if missing (default: public)",
    )
    parser.add_argument(
        "--resume",
        metavar="SESSION_ID",
        help="only load and print this session (what the second process does)",
    )
    parser.add_argument("--expect", help=argparse.SUPPRESS)  # JSON snapshot to verify against
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    url: str | None = args.database_url or None

    if args.resume:
        expected = json.loads(args.expect) if args.expect else None
        return asyncio.run(resume(url, args.schema, args.resume, expected))

    print(f"Database: {database_label(url)}\n")
    print("== Process 1: talking to the agent ==")
    stored = asyncio.run(run_conversation(url, args.schema))
    print("\n== Process 2: a new process restores the session ==")
    status = start_second_process(url, args.schema, stored)
    if status != 0:
        print(f"\nThe second process failed (exit status {status}).")
        return status
    print(
        "\nRun the demo again: it starts a new session, but user:items_added_total keeps"
        " counting,\nbecause user: state is shared by all sessions of a user."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
