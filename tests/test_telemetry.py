"""OpenTelemetry: a span per service call with the documented attributes, errors recorded, and
pool metrics that match the pool."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from google.adk.events.event import Event
from google.genai import types
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from adk_postgres import Database, PostgresArtifactService, PostgresMemoryService
from adk_postgres.errors import DataError
from adk_postgres.telemetry import instrument_pool_metrics

_exporter = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Finished spans of this test (the global provider can be set once per process)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    if not getattr(provider, "_adkpg_test_exporter", False):
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        provider._adkpg_test_exporter = True  # type: ignore[attr-defined]
    _exporter.clear()
    yield _exporter
    _exporter.clear()


async def test_every_session_call_gets_a_span(make_service, schema_name, spans) -> None:
    service = make_service()
    session = await service.create_session(app_name="app", user_id="u", session_id="s1")
    event = Event(
        author="user",
        invocation_id="inv",
        content=types.Content(role="user", parts=[types.Part(text="hi")]),
    )
    await service.append_event(session, event)
    await service.get_session(app_name="app", user_id="u", session_id="s1")
    await service.list_sessions(app_name="app", user_id="u")
    await service.get_user_state(app_name="app", user_id="u")
    await service.delete_session(app_name="app", user_id="u", session_id="s1")

    finished = {span.name: span for span in spans.get_finished_spans()}
    for operation in (
        "create_session",
        "append_event",
        "get_session",
        "list_sessions",
        "get_user_state",
        "delete_session",
    ):
        span = finished[f"adk_postgres.sessions.{operation}"]
        assert span.attributes["db.system.name"] == "postgresql"
        assert span.attributes["db.operation.name"] == operation
        assert span.attributes["db.namespace"] == schema_name
        assert span.attributes["adk.app_name"] == "app"
        assert "user_id" not in str(dict(span.attributes))
    assert finished["adk_postgres.sessions.append_event"].attributes["adk.session_id"] == "s1"
    assert finished["adk_postgres.sessions.get_session"].attributes["adk.session_id"] == "s1"
    assert "adk.session_id" not in finished["adk_postgres.sessions.list_sessions"].attributes


async def test_spans_nest_under_the_callers_span(make_service, spans) -> None:
    service = make_service()
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("invocation") as parent:
        await service.create_session(app_name="app", user_id="u", session_id="nested")
    child = next(
        s for s in spans.get_finished_spans() if s.name == "adk_postgres.sessions.create_session"
    )
    assert child.parent is not None
    assert child.parent.span_id == parent.get_span_context().span_id


async def test_a_failed_call_is_an_error_span(make_service, spans) -> None:
    service = make_service()
    with pytest.raises(DataError):
        await service.create_session(app_name="app", user_id="u", state={"x": float("nan")})
    span = next(
        s for s in spans.get_finished_spans() if s.name == "adk_postgres.sessions.create_session"
    )
    assert span.status.status_code == trace.StatusCode.ERROR
    assert any(e.name == "exception" for e in span.events)


async def test_artifact_and_memory_calls_get_spans(pg_url, schema_name, make_service, spans):
    database = Database(pg_url, schema=schema_name)
    try:
        artifacts = PostgresArtifactService(database=database)
        memory = PostgresMemoryService(database=database)
        part = types.Part(text="report")
        await artifacts.save_artifact(
            app_name="app", user_id="u", session_id="s", filename="r.txt", artifact=part
        )
        await artifacts.load_artifact(app_name="app", user_id="u", session_id="s", filename="r.txt")
        await memory.search_memory(app_name="app", user_id="u", query="report")
    finally:
        await database.close()
    names = {span.name for span in spans.get_finished_spans()}
    assert {
        "adk_postgres.artifacts.save_artifact",
        "adk_postgres.artifacts.load_artifact",
        "adk_postgres.memory.search_memory",
    } <= names


def _gauges(reader: InMemoryMetricReader) -> dict[tuple[str, str | None], int]:
    values: dict[tuple[str, str | None], int] = {}
    data = reader.get_metrics_data()
    for resource_metrics in data.resource_metrics:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    state = point.attributes.get("db.client.connection.state")
                    values[(metric.name, state)] = int(point.value)
    return values


async def test_pool_metrics_follow_the_pool(pg_url, schema_name, pg_admin) -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    database = Database(pg_url, schema=schema_name, pool_size=3, acquire_timeout=5)
    instrument_pool_metrics(database, meter, name="main")
    try:
        await database.migrate()
        store = await database.sessions()
        # Two calls wait on a table lock held elsewhere, so two pooled connections are in use.
        lock = pg_admin.transaction()
        await lock.start()
        await pg_admin.execute(f'LOCK TABLE "{schema_name}".sessions IN ACCESS EXCLUSIVE MODE')
        blocked = [asyncio.ensure_future(store.list_sessions("app", None)) for _ in range(2)]
        for _ in range(50):
            await asyncio.sleep(0.05)
            if database.pool_status()["in_use"] == 2:
                break
        busy = _gauges(reader)
        await lock.rollback()
        await asyncio.gather(*blocked)
        idle = _gauges(reader)
        idle_status = database.pool_status()
    finally:
        await database.close()
    assert busy[("db.client.connection.max", None)] == 3
    assert busy[("db.client.connection.count", "used")] == 2
    assert busy[("db.client.connection.pending_requests", None)] == 0
    assert idle[("db.client.connection.count", "used")] == 0
    assert idle[("db.client.connection.count", "idle")] == idle_status["available"] >= 2
