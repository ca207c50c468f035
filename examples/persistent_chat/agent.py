"""A note-taking chat whose memory survives restarts: session state, ``user:`` state, an
artifact and a memory search, all stored by adk-postgres.

Say ``remember <a fact>`` to store a note (session state ``notes``, user state
``user:notes_total``, the artifact ``notes.md`` and one ADK memory entry), ``recall
<words>`` to search the notes of every earlier session of the same user (ADK memory), and
``chats`` for the user's conversation list (adk-postgres's conversations: titles, message
counts, newest first; the same list the ``/adk-postgres/v1/.../conversations`` route
serves). Only the notes go to memory, not whole turns: otherwise a later "recall" would find
the earlier "recall" questions and answers instead of the facts. Offline by default with a
deterministic local model; with ``GOOGLE_API_KEY`` set it uses Gemini.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from typing import Any

from google.adk.agents import LlmAgent
from google.adk.memory.memory_entry import MemoryEntry
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.tools import ToolContext
from google.genai import types

NOTES_ARTIFACT = "notes.md"


async def remember(fact: str, tool_context: ToolContext) -> dict[str, Any]:
    """Stores a note for this conversation and the user's notes file.

    Args:
      fact: The thing to remember.
    """
    notes = [*tool_context.state.get("notes", []), fact]
    tool_context.state["notes"] = notes
    total = tool_context.state.get("user:notes_total", 0) + 1
    tool_context.state["user:notes_total"] = total
    text = "\n".join(f"- {note}" for note in notes) + "\n"
    version = await tool_context.save_artifact(
        NOTES_ARTIFACT, types.Part.from_bytes(data=text.encode(), mime_type="text/markdown")
    )
    # The fact itself goes to memory, keyed by session and note number (saying it again in
    # the same session updates the entry instead of adding a copy).
    await tool_context.add_memory(
        memories=[
            MemoryEntry(
                id=f"note-{tool_context.session.id}-{len(notes)}",
                content=types.Content(role="user", parts=[types.Part(text=fact)]),
                author="user",
            )
        ]
    )
    return {"notes": notes, "notes_total": total, "artifact_version": version}


async def recall(query: str, tool_context: ToolContext) -> dict[str, Any]:
    """Searches the user's earlier conversations.

    Args:
      query: Words to look for.
    """
    found = await tool_context.search_memory(query)
    texts = [
        part.text
        for memory in found.memories
        if memory.content and memory.content.parts
        for part in memory.content.parts
        if part.text
    ]
    return {"query": query, "matches": texts[:5]}


async def list_chats(tool_context: ToolContext) -> dict[str, Any]:
    """Lists the user's conversations, newest activity first.

    Args:
      (none)
    """
    from adk_postgres import PostgresSessionService
    from adk_postgres.conversations import PostgresConversations

    service = tool_context._invocation_context.session_service
    if not isinstance(service, PostgresSessionService):
        return {"chats": [], "error": "sessions are not stored by adk-postgres"}
    conversations = PostgresConversations(database=service.database)
    page = await conversations.list_conversations(
        tool_context.session.app_name, tool_context.session.user_id, page_size=10
    )
    chats = [
        {"title": c.title or "(empty)", "messages": c.message_count} for c in page.conversations
    ]
    return {"chats": chats, "more": page.next_page_token is not None}


class OfflineChatModel(BaseLlm):
    """Deterministic stand-in for a model: ``remember …``, ``recall …`` and ``chats`` call
    the tools."""

    model: str = "offline-chat"

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        parts = (llm_request.contents[-1].parts or []) if llm_request.contents else []
        result = next((p.function_response for p in parts if p.function_response), None)
        if result is not None:
            yield _say(_summarise(result.name or "", result.response or {}))
            return
        text = " ".join(p.text for p in parts if p.text).strip()
        verb, _, rest = text.partition(" ")
        if verb.lower() == "remember" and rest:
            yield _call("remember", fact=rest)
        elif verb.lower() == "recall" and rest:
            yield _call("recall", query=rest)
        elif verb.lower() == "chats" and not rest:
            yield _call("list_chats")
        else:
            yield _say("Say 'remember <something>', 'recall <words>' or 'chats'.")


def _summarise(tool: str, response: dict[str, Any]) -> str:
    if tool == "list_chats":
        chats = response.get("chats") or []
        lines = [f"{c['title']} ({c['messages']} messages)" for c in chats]
        return "Your chats: " + " | ".join(lines) if lines else "You have no chats yet."
    if tool == "remember":
        return (
            f"Noted ({len(response.get('notes', []))} in this chat, "
            f"{response.get('notes_total')} in all; {NOTES_ARTIFACT} "
            f"v{response.get('artifact_version')})."
        )
    matches = response.get("matches") or []
    if not matches:
        return f"I found nothing about {response.get('query')!r}."
    return "I remember: " + " | ".join(matches)


def _call(name: str, **args: str) -> LlmResponse:
    call = types.FunctionCall(name=name, args=args)
    return LlmResponse(content=types.Content(role="model", parts=[types.Part(function_call=call)]))


def _say(text: str) -> LlmResponse:
    return LlmResponse(content=types.Content(role="model", parts=[types.Part(text=text)]))


root_agent = LlmAgent(
    name="persistent_chat",
    model="gemini-2.5-flash" if os.environ.get("GOOGLE_API_KEY") else OfflineChatModel(),
    description="Takes notes and recalls earlier conversations; everything lives in PostgreSQL.",
    instruction=(
        "When the user says 'remember X', call remember(fact=X). When they ask what you know "
        "or say 'recall X', call recall(query=X). When they say 'chats', call list_chats(). "
        "Answer in one short sentence."
    ),
    tools=[remember, recall, list_chats],
)
