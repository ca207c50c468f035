"""OpenTelemetry for adk-postgres: a span around every service call, and pool metrics.

ADK itself reports through OpenTelemetry, so our spans nest under its ``invocation`` and
``call_llm`` spans in whatever exporter the application configured. Without a configured
``TracerProvider`` no span is made (the check costs about two microseconds per call).

Span names are ``adk_postgres.<service>.<method>``; attributes follow OpenTelemetry's database
conventions (``db.system.name``, ``db.operation.name``, ``db.namespace``) plus ``adk.app_name``
and ``adk.session_id`` when the call has them. User ids are not recorded (they are often
personal data).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from opentelemetry import metrics, trace

if TYPE_CHECKING:
    from .database import Database

P = ParamSpec("P")
R = TypeVar("R")

INSTRUMENTATION_NAME = "adk_postgres"
_tracer = trace.get_tracer(INSTRUMENTATION_NAME)
# Until the application installs a TracerProvider, spans go nowhere: skip making them.
_NO_OP_PROVIDERS = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)


def _call_attributes(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, str]:
    """``adk.app_name`` / ``adk.session_id`` from the call's arguments (or its ``session``).

    ADK's service methods take these as keywords; ``append_event`` and
    ``add_session_to_memory`` take the `Session` first."""
    found: dict[str, str] = {}
    session = kwargs.get("session")
    if session is None and len(args) > 1:
        session = args[1]
    app_name = kwargs.get("app_name", getattr(session, "app_name", None))
    session_id = kwargs.get("session_id", getattr(session, "id", None))
    if isinstance(app_name, str):
        found["adk.app_name"] = app_name
    if isinstance(session_id, str):
        found["adk.session_id"] = session_id
    return found


def traced(
    service: str,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Wrap an async service method in a span; exceptions are recorded and mark it as an error."""

    def decorate(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        operation = method.__name__
        span_name = f"{INSTRUMENTATION_NAME}.{service}.{operation}"

        @functools.wraps(method)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if isinstance(trace.get_tracer_provider(), _NO_OP_PROVIDERS):
                return await method(*args, **kwargs)
            with _tracer.start_as_current_span(span_name) as span:
                # Attributes only when someone records them: the no-op path stays cheap.
                if span.is_recording():
                    span.set_attributes(
                        {
                            "db.system.name": "postgresql",
                            "db.operation.name": operation,
                            **_call_attributes(args, kwargs),
                        }
                    )
                    database = getattr(args[0], "_database", None) if args else None
                    if database is not None:
                        span.set_attribute("db.namespace", database.schema)
                return await method(*args, **kwargs)

        return wrapper

    return decorate


def instrument_pool_metrics(
    database: Database, meter: metrics.Meter | None = None, *, name: str = "adk_postgres"
) -> None:
    """Report ``database``'s pool through OpenTelemetry observable gauges.

    Names follow OpenTelemetry's database client metrics:
    ``db.client.connection.count`` (attribute ``db.client.connection.state`` = ``idle`` or
    ``used``), ``db.client.connection.max`` and ``db.client.connection.pending_requests``, each
    with ``db.client.connection.pool.name`` = ``name``.
    """
    meter = meter or metrics.get_meter(INSTRUMENTATION_NAME)
    pool = {"db.client.connection.pool.name": name}

    def connection_count(_: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        status = database.pool_status()
        yield metrics.Observation(status["in_use"], {**pool, "db.client.connection.state": "used"})
        yield metrics.Observation(
            status["available"], {**pool, "db.client.connection.state": "idle"}
        )

    def connection_max(_: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        yield metrics.Observation(database.pool_status()["max_size"], pool)

    def pending(_: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        yield metrics.Observation(database.pool_status()["waiting"], pool)

    meter.create_observable_up_down_counter(
        "db.client.connection.count", [connection_count], unit="{connection}"
    )
    meter.create_observable_up_down_counter(
        "db.client.connection.max", [connection_max], unit="{connection}"
    )
    meter.create_observable_up_down_counter(
        "db.client.connection.pending_requests", [pending], unit="{request}"
    )
