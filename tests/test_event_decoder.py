"""The fast event decoder builds exactly what ``Event.model_validate_json`` builds.

Events of every shape ADK produces are made through the normal constructors, encoded as the
session service stores them, and decoded both ways; the results must be identical all the way
down (types, ``model_fields_set``, extra/private, field order, values). The fast path must
really be taken for those shapes, and anything it does not reproduce must go through
validation and still come out identical. No database needed.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from fastapi.openapi.models import APIKey, APIKeyIn
from google.adk.auth.auth_credential import AuthCredential, AuthCredentialTypes
from google.adk.auth.auth_tool import AuthConfig
from google.adk.events.event import Event, NodeInfo
from google.adk.events.event_actions import EventActions, EventCompaction
from google.adk.events.ui_widget import UiWidget
from google.adk.models.cache_metadata import CacheMetadata
from google.adk.tools.tool_confirmation import ToolConfirmation
from google.genai import types
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from adk_postgres import _event_decoder
from adk_postgres._json import decode_events, encode_event

# --------------------------------------------------------------------------- identity check


def assert_identical(a: Any, b: Any, path: str = "event") -> None:
    """``a`` and ``b`` are equal with the same Python types at every level."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} is not {type(b).__name__}"
    if isinstance(a, BaseModel):
        assert a.model_fields_set == b.model_fields_set, f"{path}: fields set"
        assert a.__pydantic_extra__ == b.__pydantic_extra__, f"{path}: extra"
        assert type(a.__pydantic_extra__) is type(b.__pydantic_extra__), f"{path}: extra type"
        assert a.__pydantic_private__ == b.__pydantic_private__, f"{path}: private"
        assert type(a.__pydantic_private__) is type(b.__pydantic_private__), f"{path}: private"
        assert list(a.__dict__) == list(b.__dict__), f"{path}: field order"
        for name in a.__dict__:
            assert_identical(a.__dict__[name], b.__dict__[name], f"{path}.{name}")
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys"
        for key in a:
            assert_identical(key, next(k for k in b if k == key), f"{path} key {key!r}")
            assert_identical(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{path}: length"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{path}[{i}]")
    elif isinstance(a, set | frozenset):
        assert a == b, f"{path}: set"
        assert sorted(map(repr, a)) == sorted(map(repr, b)), f"{path}: set element types"
    elif isinstance(a, float):
        # repr tells -0.0 from 0.0; NaN equals itself here.
        assert repr(a) == repr(b) or (math.isnan(a) and math.isnan(b)), f"{path}: {a!r} {b!r}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def decode_both(raw: bytes) -> tuple[Event, Event]:
    return decode_events([raw])[0], Event.model_validate_json(raw)


def assert_decodes_fast(raw: bytes) -> Event:
    """The fast path alone builds the event, identical to validation (and so does
    decode_events)."""
    expected = Event.model_validate_json(raw)
    fast = _event_decoder.fast_decode(raw)
    assert fast == expected
    assert_identical(fast, expected)
    decoded = decode_events([raw])[0]
    assert decoded == expected
    assert_identical(decoded, expected)
    return decoded


def assert_falls_back(raw: bytes) -> None:
    """The fast path refuses ``raw``; decode_events validates it and matches validation."""
    with pytest.raises(_event_decoder.Unsupported):
        _event_decoder.fast_decode(raw)
    before = _event_decoder.stats.fallback
    decoded, expected = decode_both(raw)
    assert _event_decoder.stats.fallback == before + 1
    assert decoded == expected
    assert_identical(decoded, expected)


# --------------------------------------------------------------------------- strategies

# Unicode everywhere: every code point but lone surrogates (which UTF-8 cannot carry and
# `encode_event` refuses), astral-plane characters included.
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
astral = st.text(st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF), max_size=4)
any_text = texts | astral | st.sampled_from(["", "é", "😀", "𝄞", "\x00", "\\", '"'])
small_ints = st.integers(min_value=-(2**31), max_value=2**31)
big_ints = st.integers(min_value=-(2**200), max_value=2**200)
floats = st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | big_ints | floats | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(any_text, json_values, max_size=4)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def build(cls: Any, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``cls(**fields)`` through its normal constructor (``st.builds`` would also invent values
    for every other parameter, slowly)."""
    return st.fixed_dictionaries(fields).map(lambda kwargs: cls(**kwargs))


blobs = build(types.Blob, data=st.binary(max_size=40), mime_type=maybe(any_text))
file_data = build(
    types.FileData, file_uri=any_text, mime_type=maybe(any_text), display_name=maybe(any_text)
)
partial_args = build(
    types.PartialArg,
    json_path=maybe(any_text),
    bool_value=maybe(st.booleans()),
    null_value=maybe(st.just("NULL_VALUE")),
    number_value=maybe(floats),
    string_value=maybe(any_text),
    will_continue=maybe(st.booleans()),
)
function_calls = build(
    types.FunctionCall,
    id=maybe(any_text),
    name=any_text,
    args=maybe(json_objects),
    partial_args=maybe(st.lists(partial_args, max_size=2)),
    will_continue=maybe(st.booleans()),
)
function_responses = build(
    types.FunctionResponse,
    id=maybe(any_text),
    name=any_text,
    response=maybe(json_objects),
    will_continue=maybe(st.booleans()),
    scheduling=maybe(st.sampled_from(list(types.FunctionResponseScheduling))),
    parts=maybe(
        st.lists(
            build(
                types.FunctionResponsePart,
                inline_data=maybe(build(types.FunctionResponseBlob, data=st.binary(max_size=8))),
            ),
            max_size=2,
        )
    ),
)
executable_code = build(
    types.ExecutableCode, code=any_text, language=st.sampled_from(list(types.Language))
)
code_results = build(
    types.CodeExecutionResult,
    outcome=st.sampled_from(list(types.Outcome)),
    output=maybe(any_text),
)
parts = st.one_of(
    build(types.Part, text=any_text),
    build(types.Part, text=any_text, thought=st.just(True), thought_signature=maybe(st.binary())),
    build(types.Part, inline_data=blobs),
    build(types.Part, file_data=file_data),
    build(types.Part, function_call=function_calls, thought_signature=maybe(st.binary())),
    build(types.Part, function_response=function_responses),
    build(types.Part, executable_code=executable_code),
    build(types.Part, code_execution_result=code_results),
    build(
        types.Part,
        text=any_text,
        video_metadata=build(types.VideoMetadata, fps=maybe(floats), start_offset=maybe(any_text)),
        part_metadata=maybe(json_objects),
    ),
    build(
        types.Part,
        tool_call=build(
            types.ToolCall,
            id=maybe(any_text),
            tool_type=maybe(st.sampled_from(list(types.ToolType))),
            args=maybe(json_objects),
        ),
        media_resolution=maybe(
            build(
                types.PartMediaResolution,
                level=maybe(st.sampled_from(list(types.PartMediaResolutionLevel))),
                num_tokens=maybe(small_ints),
            )
        ),
    ),
    build(
        types.Part,
        tool_response=build(types.ToolResponse, id=maybe(any_text), response=maybe(json_objects)),
        speech_metadata=maybe(build(types.SpeechMetadata, speaker=maybe(any_text))),
    ),
)
contents = build(
    types.Content,
    role=maybe(st.sampled_from(["user", "model", "tool"]) | any_text),
    parts=maybe(st.lists(parts, max_size=4)),
)
usage = build(
    types.GenerateContentResponseUsageMetadata,
    prompt_token_count=maybe(small_ints),
    candidates_token_count=maybe(small_ints),
    total_token_count=maybe(big_ints),
    thoughts_token_count=maybe(small_ints),
    prompt_tokens_details=maybe(
        st.lists(
            build(
                types.ModalityTokenCount,
                modality=st.sampled_from(list(types.MediaModality)),
                token_count=small_ints,
            ),
            max_size=2,
        )
    ),
    traffic_type=maybe(st.sampled_from(list(types.TrafficType))),
)
grounding = build(
    types.GroundingMetadata,
    web_search_queries=maybe(st.lists(any_text, max_size=3)),
    grounding_chunks=maybe(
        st.lists(
            build(
                types.GroundingChunk,
                web=build(types.GroundingChunkWeb, uri=any_text, title=maybe(any_text)),
            ),
            max_size=2,
        )
    ),
    grounding_supports=maybe(
        st.lists(
            build(
                types.GroundingSupport,
                segment=build(
                    types.Segment, start_index=small_ints, end_index=small_ints, text=any_text
                ),
                grounding_chunk_indices=st.lists(small_ints, max_size=3),
                confidence_scores=st.lists(floats, max_size=3),
            ),
            max_size=2,
        )
    ),
    search_entry_point=maybe(
        build(types.SearchEntryPoint, rendered_content=any_text, sdk_blob=maybe(st.binary()))
    ),
)
citations = build(
    types.CitationMetadata,
    citations=st.lists(
        build(
            types.Citation,
            start_index=maybe(small_ints),
            uri=maybe(any_text),
            publication_date=maybe(build(types.GoogleTypeDate, year=small_ints)),
        ),
        max_size=2,
    ),
)
cache_metadata = st.one_of(
    build(CacheMetadata, fingerprint=any_text, contents_count=st.integers(0, 10**6)),
    build(
        CacheMetadata,
        fingerprint=any_text,
        contents_count=st.integers(0, 100),
        cache_name=any_text,
        expire_time=floats,
        invocations_used=st.integers(0, 100),
        created_at=maybe(floats),
    ),
)
auth_configs = build(
    AuthConfig,
    auth_scheme=any_text.map(lambda name: APIKey(**{"in": APIKeyIn.header, "name": name})),
    raw_auth_credential=maybe(
        build(AuthCredential, auth_type=st.just(AuthCredentialTypes.API_KEY), api_key=any_text)
    ),
    credential_key=maybe(any_text),
)
routes = maybe(
    st.booleans()
    | small_ints
    | any_text
    | st.lists(st.booleans() | small_ints | any_text, max_size=3)
)
actions = build(
    EventActions,
    skip_summarization=maybe(st.booleans()),
    state_delta=json_objects,
    artifact_delta=st.dictionaries(any_text, small_ints, max_size=3),
    transfer_to_agent=maybe(any_text),
    transfer_reason=maybe(any_text),
    escalate=maybe(st.booleans()),
    requested_auth_configs=st.dictionaries(any_text, auth_configs, max_size=2),
    requested_tool_confirmations=st.dictionaries(
        any_text,
        build(ToolConfirmation, hint=any_text, confirmed=st.booleans(), payload=json_values),
        max_size=2,
    ),
    compaction=maybe(
        build(
            EventCompaction,
            start_timestamp=floats,
            end_timestamp=floats,
            compacted_content=contents,
        )
    ),
    end_of_agent=maybe(st.booleans()),
    agent_state=maybe(json_objects),
    rewind_before_invocation_id=maybe(any_text),
    route=routes,
    render_ui_widgets=maybe(
        st.lists(build(UiWidget, id=any_text, provider=any_text, payload=json_objects), max_size=2)
    ),
    set_model_response=json_values,
)
events = build(
    Event,
    id=any_text.filter(bool) | st.just(""),  # "" -> Event assigns a fresh id
    invocation_id=any_text,
    author=st.sampled_from(["user", "assistant"]) | any_text,
    branch=maybe(any_text),
    isolation_scope=maybe(any_text),
    timestamp=floats | small_ints,
    content=maybe(contents),
    actions=st.none().map(lambda _: EventActions()) | actions,
    long_running_tool_ids=maybe(st.sets(any_text, max_size=3)),
    partial=maybe(st.booleans()),
    turn_complete=maybe(st.booleans()),
    interrupted=maybe(st.booleans()),
    error_code=maybe(any_text),
    error_message=maybe(any_text),
    custom_metadata=maybe(json_objects),
    usage_metadata=maybe(usage),
    grounding_metadata=maybe(grounding),
    citation_metadata=maybe(citations),
    cache_metadata=maybe(cache_metadata),
    finish_reason=maybe(st.sampled_from(list(types.FinishReason))),
    turn_complete_reason=maybe(st.sampled_from(list(types.TurnCompleteReason))),
    avg_logprobs=maybe(floats),
    model_version=maybe(any_text),
    input_transcription=maybe(
        build(types.Transcription, text=any_text, finished=maybe(st.booleans()))
    ),
    output_transcription=maybe(
        build(
            types.Transcription,
            text=maybe(any_text),
            language_code=maybe(any_text),
            words=maybe(
                st.lists(build(types.WordInfo, word=any_text, start_offset=maybe(any_text)))
            ),
        )
    ),
    logprobs_result=maybe(
        build(
            types.LogprobsResult,
            log_probability_sum=maybe(floats),
            chosen_candidates=maybe(
                st.lists(
                    build(
                        types.LogprobsResultCandidate,
                        log_probability=maybe(floats),
                        token=maybe(any_text),
                        token_id=maybe(small_ints),
                    ),
                    max_size=2,
                )
            ),
        )
    ),
    interaction_status=maybe(st.sampled_from(list(types.InteractionStatus))),
    voice_activity=maybe(
        build(
            types.VoiceActivity,
            voice_activity_type=maybe(st.sampled_from(list(types.VoiceActivityType))),
        )
    ),
    go_away=maybe(build(types.LiveServerGoAway, time_left=maybe(any_text))),
    live_session_resumption_update=maybe(
        build(
            types.LiveServerSessionResumptionUpdate,
            new_handle=maybe(any_text),
            resumable=maybe(st.booleans()),
            last_consumed_client_message_index=maybe(big_ints),
        )
    ),
    live_session_id=maybe(any_text),
    interaction_id=maybe(any_text),
    output=json_values,
    node_info=build(
        NodeInfo,
        path=any_text,
        output_for=maybe(st.lists(any_text, max_size=2)),
        message_as_output=maybe(st.booleans()),
    ),
)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- properties


@SETTINGS
@given(events)
def test_every_shape_decodes_identically_on_the_fast_path(event: Event) -> None:
    assert_decodes_fast(encode_event(event))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events, min_size=1, max_size=8))
def test_a_batch_of_mixed_shapes(batch: list[Event]) -> None:
    raws = [encode_event(e) for e in batch]
    before = _event_decoder.stats.fast
    decoded = decode_events(raws)
    assert len(decoded) == len(raws)
    for raw, got in zip(raws, decoded, strict=True):
        assert_identical(got, Event.model_validate_json(raw))
    assert _event_decoder.stats.fast - before == len(raws)


# --------------------------------------------------------------------------- examples


def realistic_events() -> list[Event]:
    return [
        Event(
            author="user",
            invocation_id="inv-1",
            content=types.Content(role="user", parts=[types.Part(text="what is 2+2? 😀")]),
        ),
        Event(
            author="assistant",
            invocation_id="inv-1",
            content=types.Content(
                role="model",
                parts=[
                    types.Part(
                        function_call=types.FunctionCall(id="c1", name="add", args={"a": 2}),
                        thought_signature=b"\x00\xff sig",
                    )
                ],
            ),
            long_running_tool_ids={"c1", "c0"},
            usage_metadata=types.GenerateContentResponseUsageMetadata(
                prompt_token_count=10, total_token_count=12
            ),
        ),
        Event(
            author="assistant",
            invocation_id="inv-1",
            content=types.Content(
                role="user",
                parts=[
                    types.Part(
                        function_response=types.FunctionResponse(
                            id="c1", name="add", response={"result": 4}
                        )
                    )
                ],
            ),
            actions=EventActions(
                state_delta={"turn": 1, "user:x": 2**70, "f": 0.1},
                artifact_delta={"a.txt": 3},
                skip_summarization=True,
            ),
        ),
        Event(
            author="assistant",
            content=types.Content(
                role="model",
                parts=[
                    types.Part(inline_data=types.Blob(data=bytes(range(256)), mime_type="x/y")),
                    types.Part(text="thinking", thought=True),
                    types.Part(
                        executable_code=types.ExecutableCode(
                            code="print(1)", language=types.Language.PYTHON
                        )
                    ),
                    types.Part(
                        code_execution_result=types.CodeExecutionResult(
                            outcome=types.Outcome.OUTCOME_OK, output="1\n"
                        )
                    ),
                ],
            ),
            finish_reason=types.FinishReason.STOP,
            actions=EventActions(
                compaction=EventCompaction(
                    start_timestamp=1.0,
                    end_timestamp=2.5,
                    compacted_content=types.Content(role="model", parts=[types.Part(text="s")]),
                ),
                end_of_agent=True,
                agent_state={"step": 3},
                route=["a", 1, True],
                requested_tool_confirmations={"c1": ToolConfirmation(hint="ok?")},
            ),
            error_code="E1",
            error_message="boom",
            branch="a.b",
        ),
        Event(author="assistant", actions=EventActions(rewind_before_invocation_id="inv-0")),
    ]


def test_realistic_events_take_the_fast_path() -> None:
    raws = [encode_event(e) for e in realistic_events()]
    _event_decoder.stats.reset()
    for raw in raws:
        assert_decodes_fast(raw)
    decode_events(raws)
    assert _event_decoder.stats.fast == 2 * len(raws)
    assert _event_decoder.stats.fallback == 0


def reencode(raw: bytes, change: Any) -> bytes:
    data = json.loads(raw)
    change(data)
    return json.dumps(data, ensure_ascii=False).encode()


def test_camel_case_keys_and_int_floats_stay_on_the_fast_path() -> None:
    raw = encode_event(realistic_events()[1])

    def camel(data: dict[str, Any]) -> None:
        data["invocationId"] = data.pop("invocation_id")
        data["longRunningToolIds"] = data.pop("long_running_tool_ids")
        data["usageMetadata"] = data.pop("usage_metadata")
        data["usageMetadata"]["promptTokenCount"] = data["usageMetadata"].pop("prompt_token_count")
        data["timestamp"] = 1700000000  # a JSON int for a float field becomes a float

    assert_decodes_fast(reencode(raw, camel))

    def int_fps(data: dict[str, Any]) -> None:
        # Inside a Part (custom __init__: Python-mode validation) an int also becomes a float.
        data["content"]["parts"].append({"video_metadata": {"fps": 2}})

    assert_decodes_fast(reencode(raw, int_fps))


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-0.0"])
def test_non_finite_numbers_read_as_validation_reads_them(token: bytes) -> None:
    # The serializer writes them as null; hand-written JSON may hold the tokens.
    raw = (
        b'{"id":"x","timestamp":%s,"avg_logprobs":%s,"custom_metadata":{"x":[%s]},'
        b'"content":{"parts":[{"video_metadata":{"fps":%s}}]}}'
    ) % (token, token, token, token)
    expected = Event.model_validate_json(raw)
    assert_identical(_event_decoder.fast_decode(raw), expected)
    assert_identical(decode_events([raw])[0], expected)


def test_duplicate_keys_resolve_as_validation_does() -> None:
    # Not something the serializer writes, but the last value wins on both paths.
    raw = (
        b'{"id":"x","id":"y","author":"a","timestamp":1.0,"author":"b",'
        b'"actions":{"state_delta":{"k":1,"k":2}},'
        b'"content":{"parts":[{"text":"a","text":"b"}]}}'
    )
    assert assert_decodes_fast(raw).author == "b"


class _Reviewed(BaseModel):
    n: int = 0


class _WithValidator(BaseModel):
    n: int = 0

    @field_validator("n")
    @classmethod
    def _double(cls, value: int) -> int:
        return value * 2


class _WithInit(BaseModel):
    n: int = 0

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)


class _WithPostInit(BaseModel):
    n: int = 0

    def model_post_init(self, context: Any) -> None:
        self.n += 1


class _Allow(BaseModel):
    model_config = ConfigDict(extra="allow")
    n: int = 0


class _Stripping(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)
    s: str = ""


class _NoInfNan(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)
    f: float = 0.0


class _Private(BaseModel):
    n: int = 0
    _cache: dict[str, int] = PrivateAttr(default_factory=dict)
    _three: int = PrivateAttr(default=3)
    _unset: int = PrivateAttr()


class _PrivateAndPostInit(_Private):
    def model_post_init(self, context: Any) -> None:
        self._three = 4


class _Colliding(BaseModel):
    # Key "b" is a's alias and b's name: validation fills both from it.
    model_config = ConfigDict(populate_by_name=True)
    a: int = Field(0, alias="b")
    b: int = 0


class _ModelUnion(BaseModel):
    either: _Reviewed | _Allow | None = None


@pytest.mark.parametrize(
    "model",
    [
        _WithValidator,
        _WithInit,
        _WithPostInit,
        _Allow,
        _Stripping,
        _NoInfNan,
        _PrivateAndPostInit,
        _Colliding,
    ],
    ids=lambda m: m.__name__,
)
def test_models_with_unreviewed_behaviour_are_never_built_fast(model: type[BaseModel]) -> None:
    plan = _event_decoder._plan(model)
    assert not plan.supported
    with pytest.raises(_event_decoder.Unsupported):
        plan.build({})
    assert _event_decoder._plan(_Reviewed).build({"n": 1}) == _Reviewed(n=1)


def test_private_attributes_are_set_up_as_validation_does() -> None:
    built = _event_decoder._plan(_Private).build({"n": 2})
    expected = _Private.model_validate_json(b'{"n": 2}')
    assert_identical(built, expected)
    assert built.__pydantic_private__ == {"_cache": {}, "_three": 3}


def test_a_union_of_models_is_refused_only_when_present() -> None:
    build = _event_decoder._plan(_ModelUnion).build
    assert_identical(build({}), _ModelUnion.model_validate_json(b"{}"))
    assert_identical(build({"either": None}), _ModelUnion.model_validate_json(b'{"either":null}'))
    with pytest.raises(_event_decoder.Unsupported):
        build({"either": {"n": 1}})


# Each makes the fast path refuse the event; validation decides (and may accept).
FALLBACK_CHANGES = {
    "unknown key (Event ignores extras)": lambda d: d.update(unknown=1),
    "convenience kwarg 'state'": lambda d: d.update(state={"a": 1}),
    "unknown key in a genai model": lambda d: d["content"]["parts"][0].update(bogus=1),
    "name and alias both given": lambda d: d.update(invocationId="other"),
    "empty id (Event assigns a random one)": lambda d: d.update(id=""),
    "missing id": lambda d: d.pop("id"),
    "huge int for a float": lambda d: d.update(timestamp=2**60 + 1),
    "bool for a float": lambda d: d.update(timestamp=True),
    "float for an int": lambda d: d["usage_metadata"].update(prompt_token_count=10.0),
    "string for an int": lambda d: d["usage_metadata"].update(prompt_token_count="10"),
    "null inside a Part (its __init__ drops it)": lambda d: d["content"]["parts"][0].update(
        text=None
    ),
    "standard-alphabet base64": lambda d: d["content"]["parts"][0].update(thought_signature="AP/+"),
    "unpadded base64": lambda d: d["content"]["parts"][0].update(thought_signature="AP_-AA"),
    "enum in lower case (genai's _missing_)": lambda d: d.update(finish_reason="stop"),
    "unknown enum value": lambda d: d.update(finish_reason="NOT_A_REASON"),
    "route given as a float": lambda d: d["actions"].update(route=1.5),
}


@pytest.mark.parametrize("change", FALLBACK_CHANGES.values(), ids=FALLBACK_CHANGES.keys())
def test_shapes_the_fast_path_refuses_are_validated(change: Any) -> None:
    raw = encode_event(realistic_events()[1])
    changed = reencode(raw, change)
    with pytest.raises(_event_decoder.Unsupported):
        _event_decoder.fast_decode(changed)
    try:
        expected = Event.model_validate_json(changed)
    except ValidationError as exc:
        with pytest.raises(ValidationError) as got:
            decode_events([changed])
        assert got.value.errors() == exc.errors()
        return
    decoded = decode_events([changed])[0]
    if not json.loads(changed).get("id"):
        # Validation assigns a random id: equal apart from it.
        assert decoded.id and expected.id
        decoded.id = expected.id
    assert_identical(decoded, expected)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"not json",
        b"[]",
        b"null",
        b'{"timestamp": "yesterday"}',
        b'{"content": {"parts": 5}}',
        b'{"id": "x", "actions": {"nope": 1}}',
        b'{"id": "x"} trailing',
    ],
)
def test_corrupt_json_raises_what_validation_raised(raw: bytes) -> None:
    batch = [encode_event(realistic_events()[0]), raw]
    # What decode_events did before the fast decoder.
    with pytest.raises(ValidationError):
        TypeAdapter(list[Event]).validate_json(b"[" + b",".join(batch) + b"]")
    with pytest.raises(ValidationError):
        decode_events(batch)


def test_every_model_an_event_reaches_is_compiled() -> None:
    # A model silently left to validation would still be correct, but slow: say which.
    decode_events([encode_event(e) for e in realistic_events()])
    unsupported = [
        p.cls.__name__
        for p in _event_decoder._PLANS.values()
        if not p.supported and p.cls.__module__.startswith("google.")
    ]
    assert unsupported == []


def test_a_reviewed_hook_whose_source_changed_is_no_longer_trusted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As if google-genai had changed Part.__init__ since it was reviewed: Parts (and so events
    # with content) are validated; the rest stays fast.
    monkeypatch.setitem(_event_decoder._REVIEWED_SOURCE, "google.genai.types.Part.__init__", "0")
    monkeypatch.setattr(_event_decoder, "_PLANS", {})
    monkeypatch.setattr(_event_decoder, "_reviewed_cache", {})
    monkeypatch.setattr(_event_decoder, "_event_build", None)
    with_content, without_content = realistic_events()[0], realistic_events()[4]
    assert not _event_decoder._plan(types.Part).supported
    assert_falls_back(encode_event(with_content))
    assert_decodes_fast(encode_event(without_content))
