"""Throwaway servers on loopback for tests and benchmarks: a plain PostgreSQL, a PgBouncer in
front of any PostgreSQL, and a Patroni cluster on one etcd member.

Tests import them as ``from servers.pgbouncer import PgBouncer`` (pytest puts ``tests/`` on
``sys.path``); a benchmark adds the ``tests`` directory to ``sys.path`` first. Every class is a
context manager whose ``stop()`` ends exactly the processes it started, by pid, and removes its
temporary directory. When something needed is missing, ``postgres.missing()``,
``pgbouncer.missing_pgbouncer()`` and ``patroni.missing_patroni()`` return the reason as a
string, for ``pytest.skip(reason)``.

A benchmark::

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from servers.patroni import PatroniCluster

    with PatroniCluster(nodes=2, with_pgbouncer=True) as cluster:
        run_load(cluster.multi_host_url(), cluster.pgbouncer_url)
"""
