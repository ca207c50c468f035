"""A throwaway Patroni cluster on loopback: one etcd member and N Patroni nodes, each with its own
PostgreSQL, REST port and data directory in one temporary directory; optionally a PgBouncer in
front of the leader.

What was found with Debian 12's packages (patroni 3.0.2, etcd-server 3.4.23, PostgreSQL 15):

* Patroni's ``etcd3:`` section works against etcd 3.4 without the python3-etcd3 client: Patroni
  speaks etcd's v3 JSON gateway over HTTP itself (it needs only python3-etcd, a dependency of
  the Debian package, for shared error classes). etcd runs with default v3 settings.
* No passwords: pg_hba trusts 127.0.0.1 for all databases and for replication, and Patroni's
  superuser, replication and rewind users are all ``postgres`` without a password. pg_basebackup
  and pg_rewind work with that (``wal_log_hints = on`` for pg_rewind, as initdb makes no
  checksums here).
* ``watchdog: off``: there is no /dev/watchdog to arm here.
* Patroni 3.0.2 resumes a paused WAL replay on PostgreSQL 14+ in every HA loop (it takes a pause
  for PostgreSQL's own "parameter change" pause), unless the cluster is in maintenance mode.
  ``pause_replay()`` therefore puts the cluster in maintenance mode first (``PATCH /config``
  ``{"pause": true}``) and ``resume_replay()`` ends it: no automatic failover in between.
* The Patroni config is written as JSON, which YAML parsers read as YAML: no pyyaml needed.
* Patroni starts each postmaster in a session of its own, not as its child: the harness reads
  ``postmaster.pid`` (and checks that the process's working directory is that data directory
  before signalling the pid) to stop the postmaster of a node whose Patroni was killed.

* ttl=10, loop_wait=2, retry_timeout=5 are accepted as they are (3.0.2 enforces no minimum).
  After a SIGKILL of the leader (Patroni and PostgreSQL), the synchronous standby is promoted
  when the leader key expires: about ttl + 0.5 s here (10.4-10.7 s with ttl=10).
* Patroni's own shutdown of a synchronous pair is slow (~6 s: the standby waits for the primary
  to release it), so ``stop()`` SIGKILLs Patroni and gives each PostgreSQL a fast shutdown
  itself; ``stop(graceful=True)`` lets Patroni do it.

``multi_host_url()`` returns libpq's multi-host form in the authority,
``postgresql://postgres@127.0.0.1:p1,127.0.0.1:p2/postgres?target_session_attrs=read-write``.
``multi_host_url(query_form=True)`` returns the other libpq form,
``postgresql://postgres@/postgres?host=127.0.0.1,127.0.0.1&port=p1,p2&target_session_attrs=...``.
psql (libpq 15), asyncpg and adk_postgres' Rust core (tokio-postgres) were each seen to take
both forms and to pick the writable node with ``target_session_attrs=read-write``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from .pgbouncer import PgBouncer, PoolMode
from .postgres import (
    alive,
    chown_to_run_user,
    end_processes,
    find_command,
    free_port,
    make_temp_dir,
    missing,
    own_postmaster,
    pg_bin_dir,
    process,
    psql,
    reap,
    run_all,
    spawn_as_server_user,
    track,
    untrack,
    wait_gone,
    wait_until,
    write_file,
)

__all__ = ["PatroniCluster", "PatroniNode", "cluster_test_marks", "missing_patroni"]


def missing_patroni(with_pgbouncer: bool = False) -> str | None:
    """Why a Patroni cluster cannot run here, or None."""
    return missing("patroni", "etcd", *(["pgbouncer"] if with_pgbouncer else []))


def cluster_test_marks() -> list[Any]:
    """``pytestmark`` of a test module that starts its own Patroni cluster: skipped, saying
    why, where Patroni or etcd are missing, and in CI's second pass (``TEST_DATABASE_URL``),
    which would only repeat it."""
    import pytest  # here, so that benches can use the harness without pytest

    reason = missing_patroni()
    return [
        pytest.mark.skipif(
            bool(os.environ.get("TEST_DATABASE_URL")),
            reason="runs its own cluster; covered by the main test pass",
        ),
        pytest.mark.skipif(reason is not None, reason=reason or ""),
    ]


def http_json(
    port: int, path: str, method: str = "GET", body: Any = None, timeout: float = 2
) -> tuple[int, Any]:
    """(status, parsed JSON body or None) from a local REST API; status 0 if unreachable."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:  # Patroni answers 503 for "not the leader"
        status, raw = error.code, error.read()
    except (OSError, ValueError):
        return 0, None
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


@dataclass(eq=False)
class PatroniNode:
    """One Patroni member: its PostgreSQL listens on ``pg_port``, its REST API on
    ``rest_port``."""

    name: str
    pg_port: int
    rest_port: int
    base: Path
    popen: subprocess.Popen[bytes] | None = None
    proc: psutil.Process | None = None
    # Every postmaster seen in this node's data directory (Patroni may restart it).
    postmasters: dict[int, psutil.Process] = field(default_factory=dict)
    # Every Patroni process started for this node (restart_node starts another).
    patronis: list[psutil.Process] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def config_path(self) -> Path:
        return self.base / "patroni.yml"

    @property
    def log_path(self) -> Path:
        return self.base / "patroni.log"

    def url(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.pg_port}/{dbname}"

    @property
    def running(self) -> bool:
        """Whether this node's Patroni process is alive (it was not killed or stopped)."""
        return self.proc is not None and alive(self.proc)

    def observe_postmaster(self) -> psutil.Process | None:
        proc = own_postmaster(self.data_dir)
        if proc is not None:
            self.postmasters.setdefault(proc.pid, proc)
        return proc

    def status(self) -> dict[str, Any]:
        """Patroni's ``GET /patroni`` for this node ({} if it does not answer)."""
        code, body = http_json(self.rest_port, "/patroni")
        return body if code in (200, 503) and isinstance(body, dict) else {}

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __repr__(self) -> str:
        return f"PatroniNode({self.name!r}, pg_port={self.pg_port}, rest_port={self.rest_port})"


class PatroniCluster:
    """etcd plus ``nodes`` Patroni members on 127.0.0.1, ready when ``start()`` returns.

    ``with PatroniCluster(nodes=2) as cluster: asyncpg.connect(cluster.multi_host_url())``.
    ``fsync`` is on by default: failover tests are about durability."""

    def __init__(
        self,
        nodes: int = 2,
        *,
        synchronous_mode: bool = True,
        ttl: int = 10,
        loop_wait: int = 2,
        retry_timeout: int = 5,
        with_pgbouncer: bool = False,
        pgbouncer_pool_mode: PoolMode = "transaction",
        fsync: bool = True,
        parameters: dict[str, Any] | None = None,
        start_timeout: float = 120,
    ) -> None:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.node_count = nodes
        self.synchronous_mode = synchronous_mode
        self.ttl = ttl
        self.loop_wait = loop_wait
        self.retry_timeout = retry_timeout
        self.with_pgbouncer = with_pgbouncer
        self.pgbouncer_pool_mode = pgbouncer_pool_mode
        self.fsync = fsync
        self.parameters = dict(parameters or {})
        self.start_timeout = start_timeout
        self.bin_dir = pg_bin_dir()
        self.base: Path | None = None
        self.scope = ""
        self.nodes: list[PatroniNode] = []
        self.etcd_client_port = 0
        self.etcd_peer_port = 0
        self._etcd_popen: subprocess.Popen[bytes] | None = None
        self._etcd: psutil.Process | None = None
        self.pgbouncer: PgBouncer | None = None
        self._started: list[psutil.Process] = []  # etcd and PgBouncer

    # ------------------------------------------------------------------ start

    def start(self) -> PatroniCluster:
        reason = missing_patroni(self.with_pgbouncer)
        if reason:
            raise RuntimeError(reason)
        self.base = make_temp_dir("adkpg-patroni-")
        self.scope = f"adkpg-{self.base.name.rsplit('-', 1)[-1]}"
        track(self)
        try:
            self._start_etcd()
            for index in range(self.node_count):
                self.nodes.append(self._make_node(f"node{index}"))
            for node in self.nodes:
                self._spawn_patroni(node)
            self.wait_ready(self.start_timeout)
            if self.with_pgbouncer:
                leader = self.leader()
                assert leader is not None
                self.pgbouncer = PgBouncer(
                    "127.0.0.1", leader.pg_port, pool_mode=self.pgbouncer_pool_mode
                )
                try:
                    self.pgbouncer.start()
                finally:
                    if self.pgbouncer.proc is not None:
                        self._started.append(self.pgbouncer.proc)
        except BaseException:
            self.stop()  # nothing half-started is left behind
            raise
        return self

    def _start_etcd(self) -> None:
        assert self.base is not None
        etcd_dir = self.base / "etcd"
        etcd_dir.mkdir()
        chown_to_run_user(etcd_dir)
        self.etcd_client_port, self.etcd_peer_port = free_port(), free_port()
        client = f"http://127.0.0.1:{self.etcd_client_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        binary = find_command("etcd")
        assert binary is not None
        args = [binary, "--name", "etcd0", "--data-dir", str(etcd_dir / "data")]
        args += ["--listen-client-urls", client, "--advertise-client-urls", client]
        args += ["--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer]
        args += ["--initial-cluster", f"etcd0={peer}", "--initial-cluster-state", "new"]
        args += ["--initial-cluster-token", self.scope, "--log-level", "warn"]
        # Quicker heartbeats than the WAN-friendly defaults: everything is on loopback.
        args += ["--heartbeat-interval", "50", "--election-timeout", "500"]
        self._etcd_popen = spawn_as_server_user(args, etcd_dir, etcd_dir / "etcd.log")
        self._etcd = process(self._etcd_popen.pid)
        if self._etcd is not None:
            self._started.append(self._etcd)

        def healthy() -> bool:
            if self._etcd_popen is not None and self._etcd_popen.poll() is not None:
                log = (etcd_dir / "etcd.log").read_text(errors="replace")
                raise RuntimeError(f"etcd exited at start:\n{log}")
            code, body = http_json(self.etcd_client_port, "/health")
            return code == 200 and isinstance(body, dict) and body.get("health") == "true"

        wait_until(healthy, 30, f"etcd on port {self.etcd_client_port}")

    def _make_node(self, name: str) -> PatroniNode:
        assert self.base is not None and self.bin_dir is not None
        node = PatroniNode(name, free_port(), free_port(), self.base / name)
        node.base.mkdir()
        chown_to_run_user(node.base)
        parameters: dict[str, Any] = {
            "wal_level": "replica",
            "hot_standby": "on",
            "max_wal_senders": 10,
            "max_replication_slots": 10,
            "wal_log_hints": "on",
            "wal_keep_size": "128MB",
            "fsync": "on" if self.fsync else "off",
            **self.parameters,
        }
        rest = f"127.0.0.1:{node.rest_port}"
        pg = f"127.0.0.1:{node.pg_port}"
        superuser = {"username": "postgres"}
        config = {
            "scope": self.scope,
            "namespace": f"/{self.scope}/",
            "name": name,
            "log": {"level": "INFO"},
            "restapi": {"listen": rest, "connect_address": rest},
            "etcd3": {"hosts": [f"127.0.0.1:{self.etcd_client_port}"], "protocol": "http"},
            "bootstrap": {
                "dcs": {
                    "ttl": self.ttl,
                    "loop_wait": self.loop_wait,
                    "retry_timeout": self.retry_timeout,
                    "maximum_lag_on_failover": 1048576,
                    "synchronous_mode": self.synchronous_mode,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "use_slots": True,
                        "parameters": parameters,
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C"}],
            },
            "postgresql": {
                "listen": pg,
                "connect_address": pg,
                "data_dir": str(node.data_dir),
                "bin_dir": str(self.bin_dir),
                "pgpass": str(node.base / "pgpass"),
                "authentication": {
                    "superuser": superuser,
                    "replication": superuser,
                    "rewind": superuser,
                },
                "parameters": {"unix_socket_directories": str(node.base)},
                "pg_hba": [
                    "local all all trust",
                    "host all all 127.0.0.1/32 trust",
                    "host replication all 127.0.0.1/32 trust",
                ],
            },
            "watchdog": {"mode": "off"},
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False},
        }
        write_file(node.config_path, json.dumps(config, indent=2) + "\n")
        return node

    def _spawn_patroni(self, node: PatroniNode) -> None:
        binary = find_command("patroni")
        assert binary is not None
        node.popen = spawn_as_server_user([binary, str(node.config_path)], node.base, node.log_path)
        node.proc = process(node.popen.pid)
        if node.proc is not None:
            node.patronis.append(node.proc)

    def restart_node(self, node: PatroniNode, timeout: float = 60) -> None:
        """Starts Patroni again on a node that was killed or stopped; it rejoins as a replica
        (pg_rewind if needed). Waits until the cluster is ready again."""
        if node.running:
            raise RuntimeError(f"{node.name} is still running")
        reap(node.popen)
        self._end_postmasters(node)  # an orphan from a kill would hold the port
        self._spawn_patroni(node)
        self.wait_ready(timeout)

    # ------------------------------------------------------------------ state

    def running_nodes(self) -> list[PatroniNode]:
        return [node for node in self.nodes if node.running]

    def leader(self) -> PatroniNode | None:
        """The node holding the leader lock (``GET /leader`` answers 200 only there)."""
        for node in self.running_nodes():
            node.observe_postmaster()
            if http_json(node.rest_port, "/leader", timeout=1)[0] == 200:
                return node
        return None

    def replicas(self) -> list[PatroniNode]:
        leader = self.leader()
        return [node for node in self.running_nodes() if node is not leader]

    def cluster_status(self) -> dict[str, Any]:
        """Patroni's ``GET /cluster`` from the first node that answers ({} if none)."""
        for node in self.running_nodes():
            code, body = http_json(node.rest_port, "/cluster", timeout=1)
            if code == 200 and isinstance(body, dict):
                return body
        return {}

    def _ready(self) -> PatroniNode | None:
        self._check_processes()
        leader = self.leader()
        if leader is None:
            return None
        try:
            if psql(leader.pg_port, "SELECT pg_is_in_recovery()", timeout=5) != "f":
                return None
            rows = psql(
                leader.pg_port,
                "SELECT application_name || ' ' || state || ' ' || sync_state"
                " FROM pg_stat_replication",
                timeout=5,
            )
        except (RuntimeError, subprocess.TimeoutExpired):
            return None
        streaming = {}
        for row in rows.splitlines():
            name, state, sync_state = row.split(" ")
            if state == "streaming":
                streaming[name] = sync_state
        others = [node.name for node in self.running_nodes() if node is not leader]
        if any(name not in streaming for name in others):
            return None
        if self.synchronous_mode and others:
            if not any(streaming[name] in ("sync", "quorum") for name in others):
                return None
            members = self.cluster_status().get("members", [])
            if not any(member.get("role") == "sync_standby" for member in members):
                return None
        return leader

    def _check_processes(self) -> None:
        """Fails fast, with the log, when a process that should run has exited."""
        if self._etcd_popen is not None and self._etcd_popen.poll() is not None:
            raise RuntimeError(f"etcd exited with {self._etcd_popen.returncode}")
        for node in self.nodes:
            node.observe_postmaster()
            if node.popen is not None and node.popen.poll() is not None and node.proc is not None:
                if node.popen.returncode not in (-signal.SIGKILL, -signal.SIGTERM):
                    tail = node.log()[-4000:]
                    raise RuntimeError(
                        f"patroni {node.name} exited with {node.popen.returncode}:\n{tail}"
                    )

    def wait_ready(self, timeout: float = 60) -> PatroniNode:
        """Waits until a leader accepts writes, every running replica streams from it, and (in
        synchronous mode, with a replica) one of them is the synchronous standby."""
        try:
            return wait_until(self._ready, timeout, "the Patroni cluster to be ready", interval=0.5)
        except TimeoutError as exc:
            # What each process said, so a slow or failed start can be told apart in CI.
            tails = [f"--- {node.name}:\n{node.log()[-3000:]}" for node in self.nodes]
            try:
                etcd = (self.base / "etcd" / "etcd.log").read_text(errors="replace")[-2000:]
            except OSError:
                etcd = ""
            raise TimeoutError("\n".join([str(exc), *tails, f"--- etcd:\n{etcd}"])) from None

    def multi_host_url(
        self,
        target_session_attrs: str = "read-write",
        dbname: str = "postgres",
        *,
        query_form: bool = False,
        nodes: Sequence[PatroniNode] | None = None,
    ) -> str:
        """A libpq multi-host URL listing every node's PostgreSQL (see the module docstring), or
        ``nodes`` in that order."""
        ports = [str(node.pg_port) for node in (self.nodes if nodes is None else nodes)]
        if query_form:
            hosts = ",".join("127.0.0.1" for _ in ports)
            query = f"host={hosts}&port={','.join(ports)}"
            return f"postgresql://postgres@/{dbname}?{query}&target_session_attrs={target_session_attrs}"
        netloc = ",".join(f"127.0.0.1:{port}" for port in ports)
        return (
            f"postgresql://postgres@{netloc}/{dbname}?target_session_attrs={target_session_attrs}"
        )

    # ------------------------------------------------------------------ faults

    def kill_leader(self) -> float:
        """SIGKILLs the leader's Patroni, its postmaster and the postmaster's children, all at
        once, as a machine crash would. Returns the ``time.monotonic()`` of the kill."""
        leader = self.leader()
        if leader is None:
            raise RuntimeError("no leader to kill")
        return self.kill_node(leader)

    def kill_node(self, node: PatroniNode, postgres_too: bool = True) -> float:
        """SIGKILLs a node's Patroni (and its children); with ``postgres_too`` also its
        postmaster and the postmaster's children. Returns the ``time.monotonic()`` of the kill."""
        victims: list[psutil.Process] = []
        postmaster = node.observe_postmaster()
        for proc in (node.proc, postmaster if postgres_too else None):
            if proc is not None and alive(proc):
                victims.append(proc)
                try:
                    victims.extend(proc.children(recursive=True))
                except psutil.Error:
                    pass
        killed_at = time.monotonic()
        for proc in victims:
            try:
                proc.kill()
            except psutil.Error:
                pass
        wait_gone(victims, timeout=5)
        reap(node.popen)
        return killed_at

    def wait_new_leader(self, old: PatroniNode, timeout: float = 30) -> PatroniNode:
        """Waits until a node other than ``old`` is leader and out of recovery."""

        def promoted() -> PatroniNode | None:
            leader = self.leader()
            if leader is None or leader is old:
                return None
            try:
                in_recovery = psql(leader.pg_port, "SELECT pg_is_in_recovery()", timeout=3)
            except (RuntimeError, subprocess.TimeoutExpired):
                return None
            return leader if in_recovery == "f" else None

        return wait_until(promoted, timeout, "a new Patroni leader", interval=0.2)

    def set_maintenance(self, paused: bool, timeout: float = 20) -> None:
        """Patroni's maintenance mode (``patronictl pause``): no automatic failover and no
        interference with PostgreSQL until it ends. Waits until every running node sees it."""
        node = self.running_nodes()[0]
        code, body = http_json(node.rest_port, "/config", "PATCH", {"pause": paused}, timeout=5)
        if code != 200:
            raise RuntimeError(f"PATCH /config pause={paused} answered {code}: {body}")

        def everyone_agrees() -> bool:
            return all(bool(n.status().get("pause")) == paused for n in self.running_nodes())

        wait_until(everyone_agrees, timeout, f"maintenance mode {paused} on every node")

    def pause_replay(self, node: PatroniNode, timeout: float = 20) -> None:
        """Pauses WAL replay on a standby (it still receives and flushes WAL, so synchronous
        commits go on) once it has replayed everything the leader wrote so far, so that what
        it then shows is exactly the state before the pause; the cluster is in maintenance
        mode until ``resume_replay``."""
        self.wait_replayed(node, timeout)
        self.set_maintenance(True, timeout)
        psql(node.pg_port, "SELECT pg_wal_replay_pause()")
        wait_until(
            lambda: psql(node.pg_port, "SELECT pg_get_wal_replay_pause_state()") == "paused",
            timeout,
            f"replay paused on {node.name}",
        )

    def wait_replayed(self, node: PatroniNode, timeout: float = 20) -> None:
        """Waits until a standby has replayed the leader's WAL up to its current position."""
        leader = self.leader()
        if leader is None or leader is node:
            raise RuntimeError(f"{node.name} is not a standby of a running leader")
        target = psql(leader.pg_port, "SELECT pg_current_wal_lsn()")
        wait_until(
            lambda: (
                psql(node.pg_port, f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn") == "t"
            ),
            timeout,
            f"{node.name} replaying up to {target}",
        )

    def resume_replay(self, node: PatroniNode, timeout: float = 20) -> None:
        psql(node.pg_port, "SELECT pg_wal_replay_resume()")
        self.set_maintenance(False, timeout)

    # ------------------------------------------------------------------ PgBouncer

    @property
    def pgbouncer_url(self) -> str:
        if self.pgbouncer is None:
            raise RuntimeError("the cluster was started without with_pgbouncer=True")
        return self.pgbouncer.url()

    def repoint_pgbouncer(self, timeout: float = 30) -> PatroniNode:
        """Points the PgBouncer at the current leader (after a failover): reload, same port."""
        if self.pgbouncer is None:
            raise RuntimeError("the cluster was started without with_pgbouncer=True")
        leader = wait_until(self.leader, timeout, "a Patroni leader")
        self.pgbouncer.retarget(leader.pg_port)
        return leader

    # ------------------------------------------------------------------ stop

    def processes(self) -> list[psutil.Process]:
        """Every process the harness started (etcd, Patronis, PgBouncer) or saw as a postmaster
        of its nodes, alive or not, also after ``stop()``: for checking that none is left."""
        for node in self.nodes:
            node.observe_postmaster()
        result = list(self._started)
        for node in self.nodes:
            result += node.patronis
            result += node.postmasters.values()
        return result

    def pids(self) -> list[int]:
        return [proc.pid for proc in self.processes()]

    def _end_postmasters(self, node: PatroniNode) -> None:
        node.observe_postmaster()
        # SIGINT is PostgreSQL's fast shutdown (SIGTERM would wait for clients to leave).
        end_processes(list(node.postmasters.values()), timeout=15, first_signal=signal.SIGINT)

    def stop(self, graceful: bool = False) -> None:
        """Stops PgBouncer, every Patroni, every postmaster of its nodes, and etcd, each by its
        pid; then removes the temporary directory. Safe to call twice.

        By default Patroni is SIGKILLed and each PostgreSQL then gets a fast shutdown: the
        cluster is thrown away, and Patroni's own shutdown of a synchronous pair takes ~6 s
        (the standby waits for the primary to release it). ``graceful=True`` sends Patroni
        SIGTERM instead and lets it stop its PostgreSQL."""
        untrack(self)
        first_signal = signal.SIGTERM if graceful else signal.SIGKILL

        def stop_pgbouncer() -> None:
            if self.pgbouncer is not None:
                self.pgbouncer.stop()

        def stop_patronis() -> None:
            for node in self.nodes:
                node.observe_postmaster()
            patronis = [proc for node in self.nodes for proc in node.patronis]
            end_processes(patronis, timeout=40, first_signal=first_signal)
            for node in self.nodes:
                reap(node.popen)

        def stop_postmasters() -> None:
            for node in self.nodes:
                node.observe_postmaster()  # one may have started while Patroni was stopping
            # All at once: a primary's shutdown waits on its standbys and the other way round.
            postmasters = [proc for node in self.nodes for proc in node.postmasters.values()]
            end_processes(postmasters, timeout=15, first_signal=signal.SIGINT)

        def stop_etcd() -> None:
            end_processes([self._etcd], timeout=10)
            reap(self._etcd_popen)

        def remove_directory() -> None:
            if self.base is not None:
                shutil.rmtree(self.base, ignore_errors=True)
                self.base = None

        # Each step runs even if an earlier one failed; the first error is raised at the end.
        run_all([stop_pgbouncer, stop_patronis, stop_postmasters, stop_etcd, remove_directory])

    def __enter__(self) -> PatroniCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
