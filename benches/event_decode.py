"""Cost of decoding stored events (a cold session read decodes every one of them).

    python benches/event_decode.py [--rounds 15] [--loops 20]

100 realistic events as the session service stores them (``encode_event``): user messages and
~1 KB model replies as in the benchmark suite (`harness.user_event`/`model_event`), plus
function-call and function-response events. Three decoders, each round timing ``--loops``
passes over the 100 events, rounds interleaved so that machine noise hits all three alike:

- ``Event.model_validate_json`` per event;
- the previous ``decode_events``: ``TypeAdapter(list[Event]).validate_json`` over ``[e1,e2,…]``;
- the fast decoder (``adk_postgres._json.decode_events`` today).

Prints a Markdown table of the median µs/event and writes ``benches/results/event_decode.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import google.adk  # noqa: E402
import pydantic  # noqa: E402
from google.adk.events import Event  # noqa: E402
from google.adk.events.event_actions import EventActions  # noqa: E402
from google.genai import types  # noqa: E402
from harness import model_event, user_event  # noqa: E402
from pydantic import TypeAdapter  # noqa: E402

from adk_postgres import _event_decoder  # noqa: E402
from adk_postgres._json import decode_events, encode_event  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "event_decode.json"
EVENTS = 100


def function_call_event(n: int) -> Event:
    return Event(
        author="assistant",
        invocation_id=f"inv-{n}",
        content=types.Content(
            role="model",
            parts=[
                types.Part(
                    function_call=types.FunctionCall(
                        id=f"call-{n}", name="get_weather", args={"city": "Zürich", "days": 3}
                    ),
                    thought_signature=b"\x12\x34opaque-signature\xff" * 4,
                )
            ],
        ),
        usage_metadata=types.GenerateContentResponseUsageMetadata(
            prompt_token_count=812, candidates_token_count=24, total_token_count=836
        ),
    )


def function_response_event(n: int) -> Event:
    return Event(
        author="assistant",
        invocation_id=f"inv-{n}",
        content=types.Content(
            role="user",
            parts=[
                types.Part(
                    function_response=types.FunctionResponse(
                        id=f"call-{n}",
                        name="get_weather",
                        response={
                            "forecast": [{"day": d, "high": 21.5, "sky": "☀"} for d in (1, 2)]
                        },
                    )
                )
            ],
        ),
        actions=EventActions(state_delta={"last_city": "Zürich"}),
    )


def mixed_events() -> list[bytes]:
    makers = (user_event, function_call_event, function_response_event, model_event)
    return [encode_event(makers[n % len(makers)](n)) for n in range(EVENTS)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--loops", type=int, default=20)
    args = parser.parse_args()

    raws = mixed_events()
    adapter: TypeAdapter[list[Event]] = TypeAdapter(list[Event])
    decoders: dict[str, Callable[[], object]] = {
        "Event.model_validate_json per event": lambda: [
            Event.model_validate_json(raw) for raw in raws
        ],
        "TypeAdapter(list[Event]).validate_json (previous)": lambda: adapter.validate_json(
            b"[" + b",".join(raws) + b"]"
        ),
        "fast decoder (decode_events)": lambda: decode_events(raws),
    }

    # Same objects from all three, and the fast path really taken, before timing anything.
    expected = [Event.model_validate_json(raw) for raw in raws]
    assert adapter.validate_json(b"[" + b",".join(raws) + b"]") == expected
    _event_decoder.stats.reset()
    assert decode_events(raws) == expected
    fast, fallback = _event_decoder.stats.fast, _event_decoder.stats.fallback
    assert (fast, fallback) == (EVENTS, 0), (fast, fallback)

    for decode in decoders.values():  # warm-up (schema builds, compiled converters, caches)
        decode()
    samples: dict[str, list[float]] = {name: [] for name in decoders}
    for _ in range(args.rounds):
        for name, decode in decoders.items():
            start = time.perf_counter()
            for _ in range(args.loops):
                decode()
            elapsed = time.perf_counter() - start
            samples[name].append(elapsed / (args.loops * EVENTS) * 1e6)

    baseline = statistics.median(samples["Event.model_validate_json per event"])
    rows = []
    for name, values in samples.items():
        median = statistics.median(values)
        rows.append(
            {
                "decoder": name,
                "median_us_per_event": round(median, 2),
                "min_us_per_event": round(min(values), 2),
                "speedup_vs_model_validate_json": round(baseline / median, 2),
            }
        )

    print(f"{EVENTS} mixed events, {args.rounds} rounds x {args.loops} passes\n")
    print("| decoder | median µs/event | min µs/event | speed-up |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['decoder']} | {row['median_us_per_event']:.2f} | "
            f"{row['min_us_per_event']:.2f} | {row['speedup_vs_model_validate_json']:.2f}x |"
        )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "events": EVENTS,
                "rounds": args.rounds,
                "loops": args.loops,
                "fast_path_events": fast,
                "fallback_events": fallback,
                "results": rows,
                "python": platform.python_version(),
                "pydantic": pydantic.VERSION,
                "google_adk": google.adk.__version__,
                "load_average": os.getloadavg(),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
