"""The agent of tests/test_server_workers.py: it answers "pid P after M messages", P being the
server process that ran the turn and M the user messages of the session it saw, so a test can
tell which worker answered and that it saw the turns other workers ran."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator

from google.adk.agents import LlmAgent
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.genai import types


class PidModel(BaseLlm):
    """Offline and deterministic: reports its process and the user messages it saw."""

    model: str = "pid"

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        contents = llm_request.contents or []
        seen = sum(1 for c in contents if c.role == "user" for p in (c.parts or []) if p.text)
        text = f"pid {os.getpid()} after {seen} messages"
        yield LlmResponse(content=types.Content(role="model", parts=[types.Part(text=text)]))


root_agent = LlmAgent(name="whoami", model=PidModel(), instruction="Say who answers.")
