"""Every benchmark of the performance targets, one after another in one run, then the targets
table computed from their results:

    python benches/run_all.py [--short] [--skip suite,fleet,...]
    python benches/run_all.py --targets-only      # the table from the JSON already there

Runs, in this order (each writes its JSON into benches/results/): the pytest-benchmark suite
(all peers) and its report, ``append_ceiling.py``, ``client_cost.py``, ``event_decode.py``,
``fleet.py`` and ``server_workers.py``. ``--short`` shortens each (fewer rounds and seconds:
about 30 minutes on the 2-core machine instead of about an hour). Then writes
``benches/results/targets.md``: each target of the performance issue with its measured ratio
and whether it is met. Nothing else should run on the machine meanwhile; each JSON records
the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PY = sys.executable
sys.path.insert(0, str(HERE))

#: name -> (full command, --short command)
STEPS: dict[str, tuple[list[str], list[str]]] = {
    # The suite's --short is BENCH_SECONDS=1 (set by main), same command.
    "suite": (
        ["-m", "pytest", str(HERE), "--benchmark-only", "-q",
         f"--benchmark-json={RESULTS / 'latest.json'}"],
    ) * 2,
    "report": ([str(HERE / "report.py"), str(RESULTS / "latest.json")],) * 2,
    "append_ceiling": (
        [str(HERE / "append_ceiling.py")],
        [str(HERE / "append_ceiling.py"), "--seconds", "3", "--rounds", "3"],
    ),
    "client_cost": (
        [str(HERE / "client_cost.py")],
        [str(HERE / "client_cost.py"), "--seconds", "3", "--rounds", "2"],
    ),
    "event_decode": ([str(HERE / "event_decode.py")],) * 2,
    "fleet": (
        [str(HERE / "fleet.py")],
        [str(HERE / "fleet.py"), "--rounds", "2", "--seconds", "10"],
    ),
    "server_workers": (
        [str(HERE / "server_workers.py")],
        [str(HERE / "server_workers.py"), "--rounds", "3"],
    ),
}  # fmt: skip


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def suite_rates() -> dict[tuple[str, str, int], float]:
    """(peer, workload, concurrency) -> ops/s from the suite's JSON (read as report.py does)."""
    from report import load_results

    infos = load_results(load("latest.json") or {"benchmarks": []})
    return {key: info["ops_per_s"] for key, info in infos.items()}


def versus_best_peer(workload: str, c: int) -> tuple[float, str] | None:
    """adk-postgres ÷ the best other peer for a suite workload at concurrency ``c``."""
    rates = suite_rates()
    ours = rates.get(("adk-postgres", workload, c))
    others = {
        peer: rate
        for (peer, w, cc), rate in rates.items()
        if w == workload and cc == c and peer not in ("adk-postgres", "pgbench")
    }
    if ours is None or not others:
        return None
    best = max(others, key=lambda p: others[p])
    return ours / others[best], f"{ours:,.0f} vs {best} {others[best]:,.0f} /s"


Row = tuple[str, str, float | None, str, Callable[[float], bool]]


def target_rows() -> list[Row]:
    """(target, measured as, value, detail, met?) for every target that has a result."""
    rows: list[Row] = []
    ceiling = load("append_ceiling.json")
    if ceiling:
        for delta in ("no app: delta", "with app: delta"):
            for c in ("c=1", "c=32"):
                ours = ceiling["median_per_s"][f"adk-postgres append_event, {delta}"][c]
                theirs = ceiling["median_per_s"][f"pgbench: our append statement, {delta}"][c]
                rows.append((
                    f"append ≥ 80 % of pgbench on our statement, {delta}, {c}",
                    "fraction", ours / theirs, f"{ours:,.0f} vs {theirs:,.0f} /s",
                    lambda v: v >= 0.8,
                ))  # fmt: skip
        for key, values in ceiling["client_cpu_us_per_append"].items():
            median = sorted(values)[len(values) // 2]
            rows.append((
                f"client CPU per append ≤ 60 µs ({key})", "µs", median, "", lambda v: v <= 60
            ))  # fmt: skip
    cost = load("client_cost.json")
    if cost:
        tail = cost["cache_tail"]
        on, off = tail["cache on"]["p99_ms"], tail["cache off"]["p99_ms"]
        rows.append((
            "agent-turn p99 at c=32, cache on ≤ 1.2 × cache off", "ratio", on / off,
            f"{on:.1f} vs {off:.1f} ms (GC-tracked cache: "
            f"{tail['cache on, events tracked']['p99_ms']:.1f} ms)",
            lambda v: v <= 1.2,
        ))  # fmt: skip
        appends = cost["long_histories"]["append c=1"]
        long, short = appends["100,000 events"]["ops_per_s"], appends["10 events"]["ops_per_s"]
        rows.append((
            "append to 100,000 events costs what it does to 10 (± noise, 0.9–1.1)", "ratio",
            long / short, f"{long:,.0f} vs {short:,.0f} /s", lambda v: v >= 0.9,
        ))  # fmt: skip
    for workload, c, goal in [
        ("get_session_h100_cold", 1, 3.0),
        ("get_session_h100_cold", 32, 3.0),
        ("list_sessions", 1, 4.0),
        ("list_sessions", 32, 4.0),
        ("create_session", 1, 4.0),
    ]:
        found = versus_best_peer(workload, c)
        if found:
            rows.append((
                f"{workload} c={c} ≥ {goal:g} × the best peer", "ratio", found[0], found[1],
                lambda v, goal=goal: v >= goal,
            ))  # fmt: skip
    fleet = load("fleet.json")
    if fleet and fleet.get("ratio_to_best_peer"):
        rows.append((
            "fleet (4 processes × 8 turns, random routing) ≥ 6 × the best peer", "ratio",
            fleet["ratio_to_best_peer"], f"best other: {fleet.get('best_other_peer')}",
            lambda v: v >= 6.0,
        ))  # fmt: skip
    workers = load("server_workers.json")
    if workers and "adk" in workers["results"]:
        adk = workers["results"]["adk"]["turns_per_s_median"]
        for config, row in workers["results"].items():
            if config != "adk":
                rate = row["turns_per_s_median"]
                rows.append((
                    f"end to end through /run: adk-postgres, {config} worker(s) vs ADK's server",
                    "ratio", rate / adk, f"{rate:,.0f} vs {adk:,.0f} turns/s",
                    lambda v: v > 1.0,
                ))  # fmt: skip
    return rows


def targets_markdown() -> str:
    lines = ["| target | measured | met | detail |", "|---|---:|:---:|---|"]
    for target, unit, value, detail, met in target_rows():
        if value is None:
            continue
        shown = f"{100 * value:.0f} %" if unit == "fraction" else (
            f"{value:.0f} µs" if unit == "µs" else f"{value:.2f}×"
        )  # fmt: skip
        lines.append(f"| {target} | {shown} | {'yes' if met(value) else 'no'} | {detail} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="fewer rounds and seconds")
    parser.add_argument("--skip", default="", help="comma-separated steps to leave out")
    parser.add_argument("--targets-only", action="store_true")
    args = parser.parse_args()
    if not args.targets_only:
        skip = {s for s in args.skip.split(",") if s}
        unknown = skip - set(STEPS)
        if unknown:
            raise SystemExit(f"--skip: unknown steps {sorted(unknown)}; steps: {list(STEPS)}")
        env = dict(os.environ, BENCH_SECONDS=os.environ.get("BENCH_SECONDS", "1"))
        for name, (full, short) in STEPS.items():
            if name in skip:
                continue
            print(f"==> {name} (load average {os.getloadavg()[0]:.2f})", flush=True)
            command = [PY, *(short if args.short else full)]
            subprocess.run(command, check=True, env=env if args.short else None)
    table = targets_markdown()
    (RESULTS / "targets.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
