"""Run leases for ADK's A2A endpoint: a message to an A2A context (an ADK session) runs under
the session's run lease, like ``/run`` does (see ``adk_postgres.runs``).

ADK's `A2aAgentExecutor` runs each A2A message as one invocation of the session named by the
message's context id. `LeasedA2aAgentExecutor` holds that session's run lease around the
invocation, so two messages to one context — to one server process or two — run one after
the other (``enqueue``), or the second is refused (``reject``) or stops the first
(``interrupt``). The strategy is the server's, or the request's
``X-ADK-Postgres-Run-Strategy`` header. A refused or timed-out message ends as a failed A2A
task whose status message says why (how ADK's executor reports every error); so does an
interrupted one, at its next event. The first message of a new context has no session to
lease yet and runs at once.
"""

from __future__ import annotations

from typing import Any

from google.adk.a2a.converters.request_converter import _get_user_id
from google.adk.a2a.executor.a2a_agent_executor import A2aAgentExecutor

from .run_middleware import STRATEGY_HEADER
from .runs import RunLeases
from .session_service import PostgresSessionService


class LeasedA2aAgentExecutor(A2aAgentExecutor):
    """ADK's A2A executor, each invocation under its session's run lease (when the runner's
    session service is a `PostgresSessionService`)."""

    def __init__(self, *args: Any, lease_options: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lease_options = lease_options
        self._leases: RunLeases | None = None

    def _run_leases(self, runner: Any) -> RunLeases | None:
        service = getattr(runner, "session_service", None)
        if not isinstance(service, PostgresSessionService):
            return None
        if self._leases is None:
            self._leases = service.run_leases(**self._lease_options)
        return self._leases

    async def _handle_request(self, context: Any, event_queue: Any) -> None:
        runner = await self._resolve_runner()
        leases = self._run_leases(runner)
        if leases is None or not context.context_id:
            await super()._handle_request(context, event_queue)
            return
        headers = context.call_context.state.get("headers", {}) if context.call_context else {}
        strategy = headers.get(STRATEGY_HEADER) or None
        async with leases.hold(
            runner.app_name, _get_user_id(context), context.context_id, strategy=strategy
        ):
            await super()._handle_request(context, event_queue)
