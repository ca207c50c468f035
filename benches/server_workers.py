"""End to end: `adk-postgres api_server` with 1, 2 and 4 worker processes (``--workers``) next
to ADK's own ``adk api_server`` with its ``DatabaseSessionService`` on the same PostgreSQL,
32 HTTP clients x 15 turns each, every client on a session of its own, through ADK's ``/run``.

    python benches/server_workers.py [--rounds 5] [--clients 32] [--turns 15] [--workers adk,1,2,4]

``adk`` in ``--workers`` is ADK's own server (one process: it has no way to use more), on a
database of its own (``postgresql+asyncpg``, ADK's engine defaults), dropped at the end.

The agent is examples/basic_agent with its offline model (GOOGLE_API_KEY is removed from the
servers' environment): a turn is "convert N" → a tool call → the answer, i.e. ADK reads the
session and appends four events. Each client keeps one HTTP connection (kept alive, as a
browser or SDK does) and sends its turns one after another; turns/s is all turns of the round
over the round's wall time, latency is per ``/run`` request. Every configuration gets a fresh
server per round (rounds alternate the order of configurations), a warm-up of 2 turns per
client on other sessions (ADK loads the agent on a worker's first request) and then the
measured turns.

Client, servers and PostgreSQL share this machine: the client is one Python process too.
Prints a Markdown table and writes JSON (default benches/results/server_workers.json). Uses
BENCH_DATABASE_URL, else the PostgreSQL on 127.0.0.1:5432; a schema of its own, dropped at the
end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("adk-postgres")
ADK_CLI = Path(sys.executable).with_name("adk")
APP = "basic_agent"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``adk-postgres api_server --workers N examples`` (or, for ``config="adk"``, ADK's own
    ``adk api_server`` on ``adk_url``) until ``stop()``."""

    def __init__(self, url: str, schema: str, config: str, adk_url: str) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k != "GOOGLE_API_KEY"}
        self.log = tempfile.NamedTemporaryFile("w+", prefix="server-workers-", suffix=".log")
        if config == "adk":
            command = [str(ADK_CLI), "api_server", "--no-reload", "--port", str(self.port),
                       "--session_service_uri", adk_url, str(ROOT / "examples")]  # fmt: skip
            workers = 1
        else:
            command = [str(CLI), "-d", url, "--schema", schema, "api_server", "--workers",
                       config, "--port", str(self.port), str(ROOT / "examples")]  # fmt: skip
            workers = int(config)
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited:\n{Path(self.log.name).read_text()}")
            try:
                if httpx.get(f"{self.base}/list-apps", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start within 180 s")
            time.sleep(0.2)
        if workers > 1:  # /list-apps answered: one worker serves; wait for all of them
            while "worker processes serving" not in Path(self.log.name).read_text():
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(Path(self.log.name).read_text())
                time.sleep(0.2)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


async def _client(
    base: str, user: str, turns: int, warm_up: int, start: asyncio.Barrier
) -> list[float]:
    """One client on its own connection: a warm-up session, then a session of ``turns``
    measured turns. Returns the measured latencies in seconds."""
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:

        async def session() -> str:
            response = await client.post(f"/apps/{APP}/users/{user}/sessions", json={})
            response.raise_for_status()
            return str(response.json()["id"])

        async def turn(session_id: str, n: int) -> float:
            body = {
                "appName": APP,
                "userId": user,
                "sessionId": session_id,
                "newMessage": {"role": "user", "parts": [{"text": f"convert {n}"}]},
            }
            started = time.perf_counter()
            response = await client.post("/run", json=body)
            took = time.perf_counter() - started
            response.raise_for_status()
            events = response.json()
            assert "°F" in events[-1]["content"]["parts"][0]["text"], events[-1]
            return took

        warm = await session()
        for n in range(warm_up):
            await turn(warm, n)
        measured = await session()
        await start.wait()
        for n in range(turns):
            latencies.append(await turn(measured, n))
    return latencies


def _tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of ``pid`` and its descendants so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


async def _round(
    base: str, clients: int, turns: int, server_pid: int
) -> tuple[float, list[float], float, float]:
    """(turns/s, latencies, server CPU s, client CPU s) of the measured part."""
    start = asyncio.Barrier(clients + 1)
    tasks = [asyncio.create_task(_client(base, f"u{i}", turns, 2, start)) for i in range(clients)]
    # Every client has warmed up and created its session: start them together.
    gate = asyncio.create_task(start.wait())
    await asyncio.wait([gate, *tasks], return_when=asyncio.FIRST_COMPLETED)
    if not gate.done():  # a client failed
        gate.cancel()
        await asyncio.gather(*tasks)
    server_cpu, client_cpu = _tree_cpu_seconds(server_pid), time.process_time()
    started = time.perf_counter()
    results = await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    server_cpu = _tree_cpu_seconds(server_pid) - server_cpu
    client_cpu = time.process_time() - client_cpu
    latencies = [x for r in results for x in r]
    return len(latencies) / elapsed, latencies, server_cpu, client_cpu


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def label(config: str) -> str:
    return "ADK's adk api_server" if config == "adk" else f"adk-postgres, {config} worker(s)"


def main(args: argparse.Namespace) -> dict[str, Any]:
    url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    schema = f"bench_workers_{uuid.uuid4().hex[:8]}"
    configs = [x.strip() for x in args.workers.split(",")]
    for config in configs:
        if config != "adk" and not config.isdigit():
            raise SystemExit(f"--workers: {config!r} is neither a number nor 'adk'")
    rates: dict[str, list[float]] = {n: [] for n in configs}
    latencies: dict[str, list[float]] = {n: [] for n in configs}
    cpu: dict[str, list[tuple[float, float, int]]] = {n: [] for n in configs}
    load_before = os.getloadavg()
    adk_database = f"bench_adk_{uuid.uuid4().hex[:8]}"
    adk_url = "postgresql+asyncpg://" + url.split("://", 1)[1].rsplit("/", 1)[0]
    adk_url += f"/{adk_database}"

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    if "adk" in configs:
        asyncio.run(admin(f'CREATE DATABASE "{adk_database}"'))
    try:
        for r in range(args.rounds):
            for n in configs if r % 2 == 0 else list(reversed(configs)):
                server = Server(url, schema, n, adk_url)
                try:
                    rate, lat, server_cpu, client_cpu = asyncio.run(
                        _round(server.base, args.clients, args.turns, server.process.pid)
                    )
                finally:
                    server.stop()
                rates[n].append(rate)
                latencies[n].extend(lat)
                cpu[n].append((server_cpu, client_cpu, len(lat)))
                print(f"round {r + 1}, {label(n)}: {rate:,.1f} turns/s", flush=True)
    finally:
        asyncio.run(admin(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        if "adk" in configs:
            asyncio.run(admin(f'DROP DATABASE IF EXISTS "{adk_database}" WITH (FORCE)'))
    results = {
        n: {
            "turns_per_s_median": statistics.median(rates[n]),
            "turns_per_s_rounds": rates[n],
            "p50_ms": 1000 * _percentile(latencies[n], 0.50),
            "p99_ms": 1000 * _percentile(latencies[n], 0.99),
            "turns_measured": len(latencies[n]),
            # CPU per measured turn: all server processes, and this client process.
            "server_cpu_ms_per_turn": 1000 * sum(c[0] for c in cpu[n]) / sum(c[2] for c in cpu[n]),
            "client_cpu_ms_per_turn": 1000 * sum(c[1] for c in cpu[n]) / sum(c[2] for c in cpu[n]),
        }
        for n in configs
    }
    base = results[configs[0]]["turns_per_s_median"]
    print(f"\n{args.clients} clients x {args.turns} turns, {args.rounds} rounds\n")
    print(
        f"| server | turns/s (median) | ÷ {label(configs[0])} | p50 ms | p99 ms "
        "| server / client CPU ms per turn | rounds |"
    )
    print("|---:|---:|---:|---:|---:|---:|---|")
    for n in configs:
        row = results[n]
        rounds = ", ".join(f"{x:,.0f}" for x in rates[n])
        print(
            f"| {label(n)} | {row['turns_per_s_median']:,.1f}"
            f" | {row['turns_per_s_median'] / base:.2f}"
            f" | {row['p50_ms']:.0f} | {row['p99_ms']:.0f}"
            f" | {row['server_cpu_ms_per_turn']:.1f} / {row['client_cpu_ms_per_turn']:.1f}"
            f" | {rounds} |"
        )
    return {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        # The machine is shared: its load average before and after the run.
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "clients": args.clients,
        "turns_per_client": args.turns,
        "rounds": args.rounds,
        "agent": "examples/basic_agent (offline model): 1 tool call, 4 events per turn",
        "results": results,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--turns", type=int, default=15)
    parser.add_argument("--workers", default="adk,1,2,4")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benches" / "results" / "server_workers.json"
    )
    args = parser.parse_args()
    report = main(args)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
