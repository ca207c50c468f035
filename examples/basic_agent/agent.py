"""A minimal ADK agent for `adk-postgres web examples`: one tool call, one reply.

Offline by default: a deterministic local model (below) answers, so it runs without an API
key and gives the same conversation every time. With ``GOOGLE_API_KEY`` set it uses Gemini.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncGenerator

from google.adk.agents import LlmAgent
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.tools import ToolContext
from google.genai import types


def celsius_to_fahrenheit(celsius: float, tool_context: ToolContext) -> dict[str, float]:
    """Converts a temperature from Celsius to Fahrenheit.

    Args:
      celsius: The temperature in degrees Celsius.
    """
    fahrenheit = round(celsius * 9 / 5 + 32, 2)
    # Session state, stored in PostgreSQL with the event that changed it.
    tool_context.state["conversions"] = tool_context.state.get("conversions", 0) + 1
    return {"celsius": celsius, "fahrenheit": fahrenheit}


class OfflineConverterModel(BaseLlm):
    """Deterministic stand-in for a model: finds a number, calls the tool, reports the result."""

    model: str = "offline-converter"

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        parts = (llm_request.contents[-1].parts or []) if llm_request.contents else []
        result = next((p.function_response for p in parts if p.function_response), None)
        if result is not None:
            answer = result.response or {}
            yield _say(f"{answer.get('celsius')} °C is {answer.get('fahrenheit')} °F.")
            return
        text = " ".join(p.text for p in parts if p.text)
        number = re.search(r"-?\d+(?:\.\d+)?", text)
        if number is None:
            yield _say("Give me a temperature in Celsius, e.g. 'convert 21'.")
            return
        call = types.FunctionCall(
            name="celsius_to_fahrenheit", args={"celsius": float(number.group())}
        )
        content = types.Content(role="model", parts=[types.Part(function_call=call)])
        yield LlmResponse(content=content)


def _say(text: str) -> LlmResponse:
    return LlmResponse(content=types.Content(role="model", parts=[types.Part(text=text)]))


root_agent = LlmAgent(
    name="basic_agent",
    model="gemini-2.5-flash" if os.environ.get("GOOGLE_API_KEY") else OfflineConverterModel(),
    description="Converts temperatures; its sessions live in PostgreSQL.",
    instruction="Convert Celsius temperatures to Fahrenheit with the tool, then answer briefly.",
    tools=[celsius_to_fahrenheit],
)
