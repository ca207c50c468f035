"""The agent of tests/test_double_texting.py: a turn is a tool call and a reply, and the reply
tells what the turn saw, so a test can check that a run saw the run before it.

The model is deterministic and offline. "slow=S" in the newest user message makes the model
step after the tool call take S seconds (a long model call, during which another message of
the same session arrives).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator

from google.adk.agents import LlmAgent
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.tools import ToolContext
from google.genai import types


def count_turn(tool_context: ToolContext) -> dict[str, int]:
    """Counts this turn in session state."""
    turns = int(tool_context.state.get("turns", 0)) + 1
    tool_context.state["turns"] = turns
    return {"turns": turns}


class ScriptedModel(BaseLlm):
    """Calls count_turn, then answers "turn N after M messages" (M: user messages it saw)."""

    model: str = "scripted"

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        contents = llm_request.contents or []
        user_texts = [
            p.text for c in contents if c.role == "user" for p in (c.parts or []) if p.text
        ]
        parts = (contents[-1].parts or []) if contents else []
        result = next((p.function_response for p in parts if p.function_response), None)
        if result is None:
            call = types.FunctionCall(name="count_turn", args={})
            yield LlmResponse(
                content=types.Content(role="model", parts=[types.Part(function_call=call)])
            )
            return
        slow = re.search(r"slow=([0-9.]+)", user_texts[-1] if user_texts else "")
        if slow:
            await asyncio.sleep(float(slow.group(1)))
        turns = (result.response or {}).get("turns")
        text = f"turn {turns} after {len(user_texts)} messages"
        yield LlmResponse(content=types.Content(role="model", parts=[types.Part(text=text)]))


root_agent = LlmAgent(
    name="relay",
    model=ScriptedModel(),
    instruction="Count the turn, then answer.",
    tools=[count_turn],
)
