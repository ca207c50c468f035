"""An offline model for agent configs in the registry tests: it answers with the agent's
instruction, so a reply tells which version of a config answered.

    model_code:
      name: registry_test_models.ECHO

The server processes of the tests import it from this directory (``PYTHONPATH``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.genai import types


class EchoInstructionModel(BaseLlm):
    """Replies ``instruction: <the system instruction>``."""

    model: str = "echo-instruction"

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        instruction = llm_request.config.system_instruction if llm_request.config else None
        if isinstance(instruction, types.Content):
            instruction = " ".join(p.text or "" for p in instruction.parts or [])
        text = f"instruction: {instruction or ''}"
        yield LlmResponse(content=types.Content(role="model", parts=[types.Part(text=text)]))


ECHO = EchoInstructionModel()
