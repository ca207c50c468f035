"""Turn the suite's pytest-benchmark JSON into a Markdown report and two plots.

    python benches/report.py [benches/results/latest.json] [--out benches/results]

Writes, next to the JSON (or into --out):
    latest.md          ops/s, p50 and p99 per workload and concurrency for each peer, the ratio
                       of adk-postgres to each peer, and the server's pgbench ceiling
    throughput.png     throughput vs concurrency, one panel per workload
    read_latency.png   get_session p50 latency vs history length (warm and cold)

Every number comes from ``extra_info`` of the benchmarks (see harness.run_benchmark), where the
suite stores its own per-operation statistics.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import CONCURRENCY, HISTORY_LENGTHS, PEER_LABELS, PEERS, SUBJECT  # noqa: E402

#: Workloads in report order, with their display names.
WORKLOADS: dict[str, str] = {
    "create_session": "create_session",
    "append_event": "append_event (~1 KB, state delta)",
    "get_session_h100_warm": "get_session, 100 events, warm",
    "get_session_h100_cold": "get_session, 100 events, cold",
    "get_session_last10": "get_session, last 10 of 100",
    "list_sessions": "list_sessions (100 sessions)",
    "agent_turn": "agent turn (last 20 + 2 appends)",
    "get_session_h10_warm": "get_session, 10 events, warm",
    "get_session_h10_cold": "get_session, 10 events, cold",
    "get_session_h1000_warm": "get_session, 1,000 events, warm",
    "get_session_h1000_cold": "get_session, 1,000 events, cold",
    **{
        f"{op}_artifact_{size}": f"{op}_artifact {size}"
        for size in ("1KB", "1MB", "50MB")
        for op in ("save", "load")
    },
    "search_memory": "search_memory",
}
#: Workloads drawn in throughput.png, and the pgbench ceiling drawn with them.
PLOTTED: dict[str, str | None] = {
    "create_session": "pgbench -N",
    "append_event": "pgbench -N",
    "agent_turn": None,
    "get_session_last10": "pgbench -S",
    "get_session_h100_warm": "pgbench -S",
    "get_session_h100_cold": "pgbench -S",
    "list_sessions": "pgbench -S",
    "search_memory": None,
}
COLORS = {
    "adk-postgres": "tab:blue",
    "adk-database": "tab:orange",
    "sqlspec-asyncpg": "tab:green",
    "sqlspec-psqlpy": "tab:red",
}

Results = dict[tuple[str, str, int], dict[str, Any]]  # (peer, workload, concurrency) -> info


def load_results(data: dict[str, Any]) -> Results:
    results: Results = {}
    for bench in data["benchmarks"]:
        info = bench.get("extra_info", {})
        if "peer" in info and "ops_per_s" in info:
            results[(info["peer"], info["workload"], int(info["concurrency"]))] = info
    return results


def fmt_rate(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if value < 10 else f"{value:,.0f}"


def table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def ordered_workloads(results: Results) -> list[str]:
    present = {workload for (peer, workload, _) in results if peer != "pgbench"}
    known = [w for w in WORKLOADS if w in present]
    return known + sorted(present - set(known))


def display_name(workload: str, infos: dict[str, dict[str, Any] | None]) -> str:
    name = WORKLOADS.get(workload, workload)
    entries = {info["entries"] for info in infos.values() if info and "entries" in info}
    if entries:
        name += f" ({', '.join(f'{n:,}' for n in sorted(entries))} entries)"
    return name


def markdown(data: dict[str, Any], results: Results) -> str:
    suite = data.get("bench_suite", {})
    machine = data.get("machine_info", {})
    peers = [p for p in PEERS if any(key[0] == p for key in results)]
    others = [p for p in peers if p != SUBJECT]
    started = suite.get("started_at")
    when = (
        datetime.fromtimestamp(started, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
        if started
        else data.get("datetime", "?")
    )
    quick_note = " (**quick smoke mode**, BENCH_QUICK=1: rough)" if suite.get("quick") else ""
    out = ["# Benchmark results: adk-postgres and its peers", ""]
    out += [
        f"- Run: {when}, {suite.get('duration_s', '?')} s in total{quick_note}.",
        f"- Machine: {machine.get('cpu', {}).get('brand_raw', '?')}; {suite.get('machine', '?')}; "
        f"Python {machine.get('python_version', '?')}. Client and server share the machine.",
        f"- Server: {suite.get('server_version', '?').split(' on ')[0]}, "
        f"fsync={suite.get('fsync', '?')}, "
        f"synchronous_commit={suite.get('synchronous_commit', '?')}"
        f" ({suite.get('server_url', '?')}); each peer in its own fresh database.",
        f"- Load average (1/5/15 min) at start {suite.get('load_average_at_start', '?')}, "
        f"at end {suite.get('load_average_at_end', '?')}: other work on the machine adds noise.",
        "- ops/s = operations / wall time of the measured rounds; at c=32, 32 coroutines run at "
        "once (asyncio.gather), each on its own session where it writes. p50/p99 are per "
        "operation, as the caller sees it (at c=32 including waiting for the CPU).",
        "",
    ]

    ceiling = {
        (workload, c): info["ops_per_s"]
        for (peer, workload, c), info in results.items()
        if peer == "pgbench"
    }
    if ceiling:
        out += ["## Server ceiling (pgbench on the same server)", ""]
        rows = [
            [f"`{mode}` tps"] + [fmt_rate(ceiling.get((mode, c))) for c in CONCURRENCY]
            for mode in ("pgbench -N", "pgbench -S")
        ]
        for workload, mode in (
            ("append_event", "pgbench -N"),
            ("get_session_last10", "pgbench -S"),
        ):
            cells = []
            for c in CONCURRENCY:
                info = results.get((SUBJECT, workload, c))
                base = ceiling.get((mode, c))
                if info is None or not base:
                    cells.append("–")
                else:
                    share = info["ops_per_s"] / base
                    cells.append(f"{fmt_rate(info['ops_per_s'])} ({share:.0%} of `{mode}`)")
            rows.append([f"adk-postgres {workload} ops/s"] + cells)
        out += table([""] + [f"c={c}" for c in CONCURRENCY], rows)
        out += [
            "",
            "`pgbench -N` = simple-update without branch/teller updates (one commit per "
            "transaction); `-S` = select-only; both `-M prepared`, scale 1.",
            "",
        ]

    workloads = ordered_workloads(results)
    out += ["## Throughput (ops/s) and adk-postgres's ratio to each peer", ""]
    header = ["workload", "c"] + [PEER_LABELS[p] for p in peers]
    header += [f"× {PEER_LABELS[p]}" for p in others]
    rows = []
    for workload in workloads:
        for c in CONCURRENCY:
            infos = {p: results.get((p, workload, c)) for p in peers}
            if not any(infos.values()):
                continue
            row = [display_name(workload, infos), str(c)]
            row += [fmt_rate(info["ops_per_s"]) if info else "–" for info in infos.values()]
            subject = infos.get(SUBJECT)
            for p in others:
                other = infos[p]
                if subject and other:
                    row.append(f"{subject['ops_per_s'] / other['ops_per_s']:.1f}×")
                else:
                    row.append("–")
            rows.append(row)
    out += table(header, rows)
    out += ["", "× = adk-postgres ops/s ÷ that peer's ops/s (above 1 = adk-postgres faster).", ""]

    out += ["## Latency per operation, p50 / p99 (ms)", ""]
    rows = []
    for workload in workloads:
        for c in CONCURRENCY:
            infos = {p: results.get((p, workload, c)) for p in peers}
            if not any(infos.values()):
                continue
            row = [display_name(workload, infos), str(c)]
            for info in infos.values():
                row.append(
                    f"{fmt_ms(info['p50_ms'])} / {fmt_ms(info['p99_ms'])} (n={info['ops']})"
                    if info
                    else "–"
                )
            rows.append(row)
    out += table(["workload", "c"] + [PEER_LABELS[p] for p in peers], rows)
    out += [
        "",
        "n = operations measured. warm: the same service instance reads again (adk-postgres "
        "serves the unchanged history from its per-process cache after one round trip that "
        "checks the stored revision). cold: every read is a fresh service instance's first read "
        "of that session (sharing the pool, so connection set-up is not included).",
        "",
    ]
    return "\n".join(out)


#: Plain numbers on log axes ("300", "1,000", "0.5") instead of powers of ten.
PLAIN = FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 1 else f"{value:g}")


def shared_legend(fig: Figure, columns: int) -> None:
    """One legend below all panels (panels share peers and colours)."""
    seen: dict[str, Any] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    fig.legend(seen.values(), seen.keys(), loc="lower center", ncol=columns, fontsize=9)


def plot_throughput(results: Results, path: Path) -> None:
    workloads = [w for w in PLOTTED if any(key[1] == w for key in results)]
    columns = 4
    rows = math.ceil(len(workloads) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.6 * rows), squeeze=False)
    for ax, workload in zip(axes.flat, workloads, strict=False):
        for peer in PEERS:
            points = [
                (c, results[(peer, workload, c)]["ops_per_s"])
                for c in CONCURRENCY
                if (peer, workload, c) in results
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", color=COLORS[peer], label=PEER_LABELS[peer])
        mode = PLOTTED[workload]
        ceiling = [results.get(("pgbench", mode, c)) for c in CONCURRENCY] if mode else []
        if ceiling and all(ceiling):
            ax.plot(
                CONCURRENCY,
                [info["ops_per_s"] for info in ceiling if info],
                linestyle="--",
                color="black",
                marker="x",
                label=f"`{mode}` (server ceiling)",
            )
        ax.set_title(WORKLOADS.get(workload, workload), fontsize=10)
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(CONCURRENCY), [str(c) for c in CONCURRENCY])
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(PLAIN)
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda *_: ""))
        ax.set_xlabel("concurrency")
        ax.set_ylabel("ops/s")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(workloads) :]:
        ax.remove()
    fig.suptitle("Throughput vs concurrency (higher is better; log scale)")
    shared_legend(fig, columns=5)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_read_latency(results: Results, path: Path) -> None:
    fig, axes = plt.subplots(1, len(CONCURRENCY), figsize=(6.5 * len(CONCURRENCY), 5.5))
    for ax, c in zip(axes, CONCURRENCY, strict=True):
        for peer in PEERS:
            for cache, style in (("warm", "-"), ("cold", "--")):
                points = [
                    (n, results[(peer, f"get_session_h{n}_{cache}", c)]["p50_ms"])
                    for n in HISTORY_LENGTHS
                    if (peer, f"get_session_h{n}_{cache}", c) in results
                ]
                if points:
                    xs, ys = zip(*points, strict=True)
                    ax.plot(
                        xs,
                        ys,
                        linestyle=style,
                        marker="o",
                        color=COLORS[peer],
                        label=f"{PEER_LABELS[peer]}, {cache}",
                    )
        ax.set_title(f"get_session p50 latency, concurrency {c}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(list(HISTORY_LENGTHS), [f"{n:,}" for n in HISTORY_LENGTHS])
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda *_: ""))
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(PLAIN)
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda *_: ""))
        ax.set_xlabel("events in the session")
        ax.set_ylabel("p50 latency (ms)")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("get_session latency vs history length (lower is better; solid warm, dashed cold)")
    shared_legend(fig, columns=4)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parent / "results" / "latest.json"
    parser.add_argument("json", nargs="?", type=Path, default=default)
    parser.add_argument("--out", type=Path, help="output directory (default: the JSON's)")
    args = parser.parse_args(argv)
    data = json.loads(args.json.read_text())
    results = load_results(data)
    out = args.out or args.json.parent
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(data, results)
    (out / "latest.md").write_text(text + "\n")
    plot_throughput(results, out / "throughput.png")
    plot_read_latency(results, out / "read_latency.png")
    print(text)
    print(f"\nwrote {out / 'latest.md'}, {out / 'throughput.png'}, {out / 'read_latency.png'}")


if __name__ == "__main__":
    main()
