"""A fleet of worker processes behind a load balancer without sticky sessions: agent turns
routed to a random process, so every session bounces between processes.

    python benches/fleet.py [--processes 4] [--concurrency 8] [--seconds 20] [--rounds 3]
                            [--peers adk-postgres,adk-database,...] [--sessions 64]
                            [--out benches/results/fleet.json] [--url URL] [--quick]

For each peer of the benchmark suite (benches/harness.py) and each round: a fresh database,
``--sessions`` sessions created and seeded with 20 model events each (through the peer's own
service), then ``--processes`` worker processes (this file with ``--worker``), each with its
own service instance and pool (``--pool-size``, default 12 connections). The driver (this
process) keeps ``processes x concurrency`` turns in flight; each turn takes an idle session
(a session is in at most one turn at a time, as a chat is) and goes to a random worker.

A turn in the worker is the suite's ``agent_turn``: ``get_session(num_recent_events=20)``,
append a user event, append a model event (harness.user_event / model_event). The worker
also checks that the read saw the previous turn's reply, whichever process appended it (a
stale history is reported as an error), and the driver checks each session's full history
at the end (every acknowledged event is there, exactly once). The driver times each turn end
to end (its own send, the worker, its own receive).

Driver <-> worker: one Unix socket per worker, newline-delimited JSON, requests carrying an
id and answered out of order. The driver's CPU time per turn is measured and reported.

Per peer: turns/s (median of the rounds; the peer order alternates between rounds), p50/p99
turn latency (all rounds' turns), errors, CPU per turn of the workers and of the driver, and
for adk-postgres the event-history cache of the workers (summed ``cache_stats()``) during the
measured seconds: warm-read hit rate and mean delta events/bytes per warm read. Each round
has an unrecorded warm-up (``--warmup`` seconds) first. Prints a Markdown table and writes
JSON. Uses ``--url``, else BENCH_DATABASE_URL, else the PostgreSQL on 127.0.0.1:5432 (the
URL of a maintenance database; the user must be allowed to CREATE DATABASE).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import (  # noqa: E402
    APP,
    PEER_CLASSES,
    PEER_LABELS,
    PEERS,
    SUBJECT,
    bounded_gather,
    database_url,
    model_event,
    percentile,
    seed_session,
    user_event,
)

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "fleet.json"
SEED_EVENTS = 20
RECENT = 20


# --------------------------------------------------------------------------- the worker


def _use_pool_size(size: int) -> None:
    """The harness's peers size their pools from ``harness.POOL_SIZE`` (read when they open):
    a worker of a fleet gets a smaller pool than the suite's single process."""
    harness.POOL_SIZE = size


async def _worker_main(peer_name: str, url: str, socket_path: str, pool_size: int) -> None:
    from google.adk.sessions.base_session_service import GetSessionConfig

    _use_pool_size(pool_size)
    peer = PEER_CLASSES[peer_name](url)
    await peer.open()
    service = peer.service
    # One-time start-up work (ADK's table check, the pool's first connection) before serving.
    await service.get_session(app_name=APP, user_id="nobody", session_id="no-such-session")
    config = GetSessionConfig(num_recent_events=RECENT)
    turns = 0
    stopped = asyncio.Event()

    async def turn(request: dict[str, Any]) -> dict[str, Any]:
        nonlocal turns
        user, session_id, n = request["user"], request["session"], request["n"]
        session = await service.get_session(
            app_name=APP, user_id=user, session_id=session_id, config=config
        )
        if session is None:
            return {"error": f"session {session_id} not found"}
        # The read must end with the previous turn's reply, whichever process stored it.
        expected, reply = request.get("last"), {"ok": True}
        if expected is not None:
            got = session.events[-1].invocation_id if session.events else None
            if got != expected or len(session.events) != RECENT:
                reply["wrong_read"] = (
                    f"get_session(num_recent_events={RECENT}) returned {len(session.events)} "
                    f"events ending with {got!r}, expected {RECENT} ending with {expected!r}"
                )
        tag = f"turn-{session_id}"
        await service.append_event(session, user_event(n, invocation_id=tag))
        await service.append_event(session, model_event(n, invocation_id=tag))
        turns += 1
        return reply

    def stats() -> dict[str, Any]:
        cache = getattr(service, "cache_stats", None)
        cache_stats = cache() if cache is not None else None
        return {
            "cpu": time.process_time(),
            "turns": turns,
            "cache": None if cache_stats is None else vars(cache_stats).copy(),
        }

    async def handle(request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        try:
            reply = await turn(request)
        except Exception as exc:  # reported to the driver, counted as an error there
            reply = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        reply["id"] = request["id"]
        writer.write(json.dumps(reply).encode() + b"\n")

    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            request = json.loads(line)
            op = request["op"]
            if op == "turn":
                task = asyncio.create_task(handle(request, writer))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            elif op == "stats":
                writer.write(json.dumps({"id": request["id"], **stats()}).encode() + b"\n")
            elif op == "stop":
                break
        if tasks:
            await asyncio.gather(*tasks)
        writer.close()
        stopped.set()

    server = await asyncio.start_unix_server(serve, path=socket_path, limit=1 << 20)
    print("ready", flush=True)
    await stopped.wait()
    server.close()
    await peer.close()


# --------------------------------------------------------------------------- the driver


class Worker:
    """A worker process and the driver's end of its socket."""

    def __init__(self, index: int, process: asyncio.subprocess.Process, socket_path: str):
        self.index = index
        self.process = process
        self.socket_path = socket_path
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = 0

    @classmethod
    async def start(cls, index: int, peer: str, url: str, directory: str, pool_size: int) -> Worker:
        socket_path = os.path.join(directory, f"w{index}.sock")
        process = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--worker", "--peer", peer, "--db-url", url,
            "--socket", socket_path, "--pool-size", str(pool_size),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        worker = cls(index, process, socket_path)
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=120)
        if line.strip() != b"ready":
            await process.wait()
            raise RuntimeError(
                f"worker {index} of {peer} did not start (exit {process.returncode})"
            )
        worker._reader, worker._writer = await asyncio.open_unix_connection(
            socket_path, limit=1 << 20
        )
        worker._reading = asyncio.create_task(worker._read_replies())
        return worker

    async def _read_replies(self) -> None:
        while line := await self._reader.readline():
            reply = json.loads(line)
            self._pending.pop(reply["id"]).set_result(reply)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError(f"worker {self.index} closed its socket"))

    def call(self, request: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        self._ids += 1
        request["id"] = self._ids
        future = asyncio.get_running_loop().create_future()
        self._pending[self._ids] = future
        self._writer.write(json.dumps(request).encode() + b"\n")
        return future

    async def stop(self) -> None:
        self._writer.write(b'{"op": "stop"}\n')
        try:
            await self._writer.drain()
            await asyncio.wait_for(self.process.wait(), timeout=30)
        except (TimeoutError, ConnectionError):
            self.process.kill()  # our own child, by its pid
            await self.process.wait()
        self._writer.close()
        await self._reading


@dataclass
class ChatSession:
    user: str
    id: str
    turns: int = 0
    #: invocation_id of the last event stored (None once a turn failed: its state is unknown).
    last: str | None = None


_SESSION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(-\d+)?")


def _blank(match: re.Match[str]) -> str:
    return "<session>-N" if match.group(1) else "<session>"


def _count(samples: dict[str, int], message: str) -> None:
    """Counts ``message`` with session ids (and event numbers) blanked out."""
    key = _SESSION_ID.sub(_blank, message)[:300]
    samples[key] = samples.get(key, 0) + 1


@dataclass
class Phase:
    #: Latencies of the turns that succeeded (the errors are counted, not timed).
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: dict[str, int] = field(default_factory=dict)
    #: Turns whose read did not end with the previous turn's reply (the turn still appended).
    wrong_reads: int = 0
    wrong_read_samples: dict[str, int] = field(default_factory=dict)
    wall: float = 0.0
    driver_cpu: float = 0.0


async def run_phase(
    workers: list[Worker], sessions: list[ChatSession], in_flight: int, seconds: float, seed: int
) -> Phase:
    """Turns for ``seconds`` with ``in_flight`` at once, then waits for the last ones."""
    rng = random.Random(seed)
    idle: asyncio.Queue[ChatSession] = asyncio.Queue()
    order = list(sessions)
    rng.shuffle(order)
    for session in order:
        idle.put_nowait(session)
    phase = Phase()

    async def slot() -> None:
        while time.perf_counter() < deadline:
            session = await idle.get()
            worker = rng.choice(workers)
            n = session.turns + 1
            request = {"op": "turn", "user": session.user, "session": session.id, "n": n}
            request["last"] = session.last
            start = time.perf_counter()
            reply = await worker.call(request)
            elapsed = time.perf_counter() - start
            if "error" in reply:
                phase.errors += 1
                _count(phase.error_samples, reply["error"])
                session.last = None
            else:
                phase.latencies.append(elapsed)
                if "wrong_read" in reply:
                    phase.wrong_reads += 1
                    _count(phase.wrong_read_samples, reply["wrong_read"])
                session.turns = n
                if session.last is not None:
                    session.last = f"turn-{session.id}-{n}"
            idle.put_nowait(session)

    cpu = time.process_time()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(slot() for _ in range(in_flight)))
    phase.wall = time.perf_counter() - started
    phase.driver_cpu = time.process_time() - cpu
    return phase


async def all_stats(workers: list[Worker]) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(w.call({"op": "stats"}) for w in workers)))


def cache_delta(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict | None:
    """Summed cache counters of the workers between two snapshots (sizes: at the end)."""
    if any(s["cache"] is None for s in after):
        return None
    total: dict[str, Any] = {}
    for key in ("warm_reads", "cold_reads", "delta_events", "delta_bytes"):
        total[key] = sum(
            a["cache"][key] - b["cache"][key] for a, b in zip(after, before, strict=True)
        )
    for key in ("entries", "bytes_held"):
        total[key] = sum(a["cache"][key] for a in after)
    return total


def summarize_cache(cache: dict[str, Any]) -> dict[str, Any]:
    warm, cold = cache["warm_reads"], cache["cold_reads"]
    return {
        **cache,
        "hit_rate": warm / (warm + cold) if warm + cold else 0.0,
        "delta_events_per_warm_read": cache["delta_events"] / warm if warm else 0.0,
        "delta_bytes_per_warm_read": cache["delta_bytes"] / warm if warm else 0.0,
    }


def _cpu_busy() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat (0, 0 elsewhere)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]) - idle, sum(fields[:8])


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


async def _admin(server: str, sql: str) -> None:
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def verify_histories(peer: harness.Peer, sessions: list[ChatSession]) -> list[str]:
    """Every acknowledged turn's two events are stored, once, after the 20 seeded ones."""
    problems: list[str] = []

    async def check(session: ChatSession) -> None:
        stored = await peer.service.get_session(app_name=APP, user_id=session.user,
                                                session_id=session.id)  # fmt: skip
        if stored is None:
            problems.append(f"session {session.id} is gone")
            return
        expected = SEED_EVENTS + 2 * session.turns
        if len(stored.events) != expected:
            problems.append(
                f"session {session.id}: {len(stored.events)} events stored, expected {expected}"
            )
        elif (
            session.turns
            and stored.events[-1].invocation_id != f"turn-{session.id}-{session.turns}"
        ):
            problems.append(f"session {session.id}: last event {stored.events[-1].invocation_id}")

    verifiable = [s for s in sessions if s.last is not None]
    await bounded_gather([check(s) for s in verifiable], limit=harness.POOL_SIZE)
    return problems


async def run_peer_round(
    name: str, server: str, args: argparse.Namespace, round_index: int, run_id: str
) -> dict[str, Any]:
    """One peer, one round: fresh database, seeded sessions, workers, warm-up, measurement,
    the stored histories checked, the database dropped."""
    database = f"fleet_{run_id}_{name.replace('-', '_')}_{round_index}"
    await _admin(server, f'CREATE DATABASE "{database}"')
    url = database_url(server, database)
    load_before = _load_average()
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    workers: list[Worker] = []
    try:
        with tempfile.TemporaryDirectory(prefix="fleet-") as directory:
            # Tables and seeded sessions, through the peer's own service (a pool of the
            # harness's POOL_SIZE, closed before the warm-up: only the workers' pools are open
            # while measuring). The workers start meanwhile, once the tables exist.
            peer = PEER_CLASSES[name](url)
            await peer.open()
            starting: asyncio.Future[list[None]] | None = None
            try:
                await peer.service.get_session(app_name=APP, user_id="nobody", session_id="none")

                async def start(index: int) -> None:
                    worker = await Worker.start(index, name, url, directory, args.pool_size)
                    workers.append(worker)

                starting = asyncio.gather(*(start(i) for i in range(args.processes)))
                users = [f"user-{i}" for i in range(args.sessions)]
                seeded = await bounded_gather(
                    [seed_session(peer.service, user, SEED_EVENTS) for user in users],
                    limit=harness.POOL_SIZE,
                )
                timings["seed_s"] = time.perf_counter() - clock
            except BaseException:
                if starting is not None:
                    starting.cancel()
                raise
            finally:
                await peer.close()
            await starting
            timings["workers_ready_s"] = time.perf_counter() - clock
            sessions = [
                ChatSession(s.user_id, s.id, last=f"seed-{s.id}-{SEED_EVENTS - 1}") for s in seeded
            ]
            in_flight = args.processes * args.concurrency
            seed = random.randrange(1 << 32)
            warmup = await run_phase(workers, sessions, in_flight, args.warmup, seed)
            before = await all_stats(workers)
            busy_before = _cpu_busy()
            phase = await run_phase(workers, sessions, in_flight, args.seconds, seed + 1)
            busy_after = _cpu_busy()
            after = await all_stats(workers)
            await asyncio.gather(*(w.stop() for w in workers))
            workers = []
        clock = time.perf_counter()
        peer = PEER_CLASSES[name](url)
        await peer.open()
        try:
            problems = await verify_histories(peer, sessions)
        finally:
            await peer.close()
        timings["verify_s"] = time.perf_counter() - clock
    finally:
        for worker in workers:  # only after a failure
            if worker.process.returncode is None:
                worker.process.kill()  # our own child, by its pid
            await worker.process.wait()
        await _admin(server, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    turns = len(phase.latencies)
    ordered = sorted(phase.latencies)
    busy = busy_after[0] - busy_before[0]
    total = busy_after[1] - busy_before[1]
    per_worker = [a["turns"] - b["turns"] for a, b in zip(after, before, strict=True)]
    worker_cpu = sum(a["cpu"] - b["cpu"] for a, b in zip(after, before, strict=True))
    result: dict[str, Any] = {
        "round": round_index,
        "turns": turns,
        "seconds": round(phase.wall, 3),
        "turns_per_s": turns / phase.wall,
        "p50_ms": percentile(ordered, 0.5) * 1000 if turns else None,
        "p99_ms": percentile(ordered, 0.99) * 1000 if turns else None,
        "errors": phase.errors,
        "error_samples": phase.error_samples,
        "wrong_reads": phase.wrong_reads,
        "wrong_read_samples": phase.wrong_read_samples,
        "warmup_turns": len(warmup.latencies),
        "warmup_errors": warmup.errors,
        "warmup_error_samples": warmup.error_samples,
        "warmup_wrong_reads": warmup.wrong_reads,
        "history_problems": problems,
        "sessions_checked": sum(1 for s in sessions if s.last is not None),
        "turns_per_worker": per_worker,
        "driver_cpu_us_per_turn": phase.driver_cpu / turns * 1e6 if turns else None,
        "worker_cpu_ms_per_turn": worker_cpu / sum(per_worker) * 1000 if sum(per_worker) else None,
        "machine_cpu_busy": busy / total if total else None,
        "load_average_before": load_before,
        "load_average_after": _load_average(),
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "_latencies_ms": [x * 1000 for x in phase.latencies],
    }
    cache = cache_delta(before, after)
    if cache is not None:
        result["cache"] = summarize_cache(cache)
    return result


def _median(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def aggregate(rounds: list[dict[str, Any]], latencies_ms: list[float]) -> dict[str, Any]:
    """A peer's rounds: median turns/s and CPU, latency percentiles of all rounds' turns."""
    ordered = sorted(latencies_ms)
    summary: dict[str, Any] = {
        "turns_per_s": statistics.median(r["turns_per_s"] for r in rounds),
        "turns": sum(r["turns"] for r in rounds),
        "p50_ms": percentile(ordered, 0.5) if ordered else None,
        "p99_ms": percentile(ordered, 0.99) if ordered else None,
        "errors": sum(r["errors"] + r["warmup_errors"] for r in rounds),
        "wrong_reads": sum(r["wrong_reads"] + r["warmup_wrong_reads"] for r in rounds),
        "history_problems": sum(len(r["history_problems"]) for r in rounds),
        "driver_cpu_us_per_turn": _median([r["driver_cpu_us_per_turn"] for r in rounds]),
        "worker_cpu_ms_per_turn": _median([r["worker_cpu_ms_per_turn"] for r in rounds]),
        "rounds": rounds,
    }
    caches = [r["cache"] for r in rounds if "cache" in r]
    if caches:
        total = {
            key: sum(c[key] for c in caches)
            for key in ("warm_reads", "cold_reads", "delta_events", "delta_bytes")
        }
        total["entries"] = max(c["entries"] for c in caches)
        total["bytes_held"] = max(c["bytes_held"] for c in caches)
        summary["cache"] = summarize_cache(total)
    return summary


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def markdown(report: dict[str, Any]) -> str:
    settings = report["settings"]
    lines = [
        f"{settings['processes']} worker processes, {settings['in_flight']} turns in flight, "
        f"{settings['sessions']} sessions, {settings['rounds']} round(s) of "
        f"{settings['seconds']:g} s per peer",
        "",
        "| peer | turns/s | p50 ms | p99 ms | errors | wrong reads | lost/extra events "
        "| worker CPU ms/turn | driver CPU µs/turn |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, peer in report["peers"].items():
        lines.append(
            f"| {PEER_LABELS[name]} | {peer['turns_per_s']:.0f} | {_fmt(peer['p50_ms'], '.1f')} "
            f"| {_fmt(peer['p99_ms'], '.1f')} | {peer['errors']} | {peer['wrong_reads']} "
            f"| {peer['history_problems']} | {_fmt(peer['worker_cpu_ms_per_turn'], '.2f')} "
            f"| {_fmt(peer['driver_cpu_us_per_turn'], '.0f')} |"
        )
    notes = []
    cache = report["peers"].get(SUBJECT, {}).get("cache")
    if cache:
        notes.append(
            f"{SUBJECT} cache, summed over the workers, measured seconds: hit rate "
            f"{cache['hit_rate']:.3f} ({cache['warm_reads']} warm / {cache['cold_reads']} cold "
            f"reads), {cache['delta_events_per_warm_read']:.2f} delta events and "
            f"{cache['delta_bytes_per_warm_read']:.0f} delta bytes per warm read"
        )
    if report.get("ratio_to_best_peer") is not None:
        notes.append(
            f"{SUBJECT} / best other peer ({report['best_other_peer']}): "
            f"{report['ratio_to_best_peer']:.2f}x turns/s"
        )
    machine = report["machine"]
    notes.append(
        f"machine: {machine['cpus']} CPUs; load average {machine['load_average_before']} before, "
        f"{machine['load_average_after']} after"
    )
    for name, peer in report["peers"].items():
        samples: dict[str, int] = {}
        for r in peer["rounds"]:
            for kind in ("error_samples", "warmup_error_samples", "wrong_read_samples"):
                for sample, count in r[kind].items():
                    samples[sample] = samples.get(sample, 0) + count
            for problem in r["history_problems"]:
                _count(samples, problem)
        for sample, count in sorted(samples.items(), key=lambda item: -item[1])[:5]:
            notes.append(f"{name}: {count} x {sample}")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes)


async def driver_main(args: argparse.Namespace) -> dict[str, Any]:
    server = args.url or os.environ.get("BENCH_DATABASE_URL") or LOCAL_SERVER
    names = [n for n in PEERS if n in args.peers]
    run_id = uuid.uuid4().hex[:8]
    conn = await asyncpg.connect(server)
    try:
        server_info = {
            "version": await conn.fetchval("SHOW server_version"),
            "fsync": await conn.fetchval("SHOW fsync"),
            "synchronous_commit": await conn.fetchval("SHOW synchronous_commit"),
            "max_connections": int(await conn.fetchval("SHOW max_connections")),
        }
    finally:
        await conn.close()
    load_before = _load_average()
    started = time.time()
    rounds: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    latencies: dict[str, list[float]] = {n: [] for n in names}
    for round_index in range(args.rounds):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            result = await run_peer_round(name, server, args, round_index, run_id)
            latencies[name].extend(result.pop("_latencies_ms", []))
            rounds[name].append(result)
            print(
                f"round {round_index} {name}: {result['turns_per_s']:.0f} turns/s, "
                f"p50 {_fmt(result['p50_ms'], '.1f')} ms, errors {result['errors']}, "
                f"wrong reads {result['wrong_reads']}, timings {result['timings']}, "
                f"load {result['load_average_after']}",
                file=sys.stderr,
                flush=True,
            )
    peers = {n: aggregate(rounds[n], latencies[n]) for n in names}
    report: dict[str, Any] = {
        "benchmark": "fleet",
        "description": (
            "agent turns (get_session last 20, append user event, append model event) routed "
            "to a random worker process of a fleet, sessions bouncing between processes"
        ),
        "settings": {
            "processes": args.processes,
            "concurrency_per_process": args.concurrency,
            "in_flight": args.processes * args.concurrency,
            "seconds": args.seconds,
            "warmup_seconds": args.warmup,
            "rounds": args.rounds,
            "sessions": args.sessions,
            "seed_events": SEED_EVENTS,
            "pool_size_per_worker": args.pool_size,
            "quick": args.quick,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_before": load_before,
            "load_average_after": _load_average(),
            "duration_s": round(time.time() - started, 1),
        },
        "server": server_info,
        "peers": peers,
    }
    if SUBJECT in peers and len(peers) > 1:
        best = max((n for n in peers if n != SUBJECT), key=lambda n: peers[n]["turns_per_s"])
        report["best_other_peer"] = best
        report["ratio_to_best_peer"] = peers[SUBJECT]["turns_per_s"] / peers[best]["turns_per_s"]
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8, help="turns in flight per process")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per round")
    parser.add_argument("--warmup", type=float, default=3.0, help="unrecorded seconds first")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated")
    parser.add_argument("--sessions", type=int, help="default 64 (--quick: 32)")
    parser.add_argument("--pool-size", type=int, default=12, help="connections per worker")
    parser.add_argument("--url", help="server (maintenance database) URL")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 round of 3 s (1 s warm-up), 32 sessions"
    )
    # Internal: run as one worker process.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    parser.add_argument("--db-url", help=argparse.SUPPRESS)
    parser.add_argument("--socket", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds, args.warmup = 1, 3.0, 1.0
    if args.sessions is None:
        args.sessions = 32 if args.quick else 64
    args.peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = set(args.peers) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers: {sorted(unknown)} (known: {', '.join(PEERS)})")
    if args.sessions < args.processes * args.concurrency:
        parser.error("--sessions must be >= processes x concurrency (one turn per session)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        try:
            asyncio.run(_worker_main(args.peer, args.db_url, args.socket, args.pool_size))
        except Exception:
            traceback.print_exc()
            sys.exit(1)
        return
    report = asyncio.run(driver_main(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    print(f"\nJSON: {args.out}")


if __name__ == "__main__":
    main()
