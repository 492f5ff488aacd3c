"""End-to-end benchmarks: delivery into the local emulator over loopback, and memory.

The emulator runs in its own process (``python -m gbtrack.emulator``) and so does each
scenario's client (``python -m benchmarks.bench_e2e SCENARIO JSON``), so that the CPU
time measured with :func:`time.process_time` and the peak RSS are the client's alone.

Scenarios:

- ``bulk``: secret key configured, emulator rate limits off and the client limiter
  raised; events from ``@track``-decorated calls over 10,000 customers, through a
  ``BackgroundSender`` (coalescing + the batch endpoint). Events/s from the first call
  until the emulator has counted every event, and client CPU-us per delivered event.
- ``per_request``: no secret key, the DEFAULT rate limits on both sides; one event per
  customer, so one request per event. Baseline: the rate limit's ceiling.
- ``outbox``: as ``bulk``, through the durable ``OutboxSender`` (SQLite first).
- ``memory``: events tracked while Gameball is down (the base URL is a closed loopback
  port); peak RSS for 1,000,000 and 250,000 events with the same queue, and with the
  outbox as spill (memory bounded, the disk holds the rest).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks._harness import Result, Table

API_KEY = "test-api-key"
SECRET_KEY = "test-secret-key"
CUSTOMERS = 10_000
EVENTS_PER_S_TARGET = 20_000
CPU_US_TARGET = 20.0
# Gameball's per-account limits: 100 requests/s and 1,200 per 30 s.
RATE_LIMITS = ((100, 1.0), (1200, 30.0))
_URL = re.compile(r"http://127\.0\.0\.1:\d+")
_TIMEOUT = 180.0


# --- the emulator process ----------------------------------------------------------------
@contextlib.contextmanager
def emulator(*options: str) -> Iterator[str]:
    """Run ``python -m gbtrack.emulator --port 0 OPTIONS`` and yield its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gbtrack.emulator", "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            found = _URL.search(line)
            if found:
                url = found.group(0)
                break
        if url is None:
            raise RuntimeError("the emulator did not start")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def emulator_events(url: str, client: Any = None) -> int:
    """How many events the emulator has accepted (``client``: an open ``httpx.Client``)."""
    import httpx

    if client is not None:
        return int(client.get(f"{url}/_emulator/stats").json()["events"])
    with httpx.Client(timeout=10.0) as own:
        return int(own.get(f"{url}/_emulator/stats").json()["events"])


def closed_port_url() -> str:
    """A loopback URL nobody listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def rate_limit_ceiling(requests: int) -> float:
    """The most requests/s the rate limits allow for ``requests`` requests from idle.

    Request ``k`` (from 0) can start no earlier than ``(k // limit) * period`` for every
    window; the best schedule's rate is ``requests`` over the last start time.
    """
    last = max((requests - 1) // limit * period for limit, period in RATE_LIMITS)
    return requests / last if last > 0 else float("inf")


def run_scenario(name: str, **params: Any) -> dict[str, Any]:
    """Run one scenario in a fresh interpreter and return its JSON result."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_e2e", name, json.dumps(params)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"scenario {name} failed:\n{done.stdout}\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# --- the client side (runs in the scenario process) -----------------------------------------
class Order:
    __slots__ = ("currency", "id", "total")

    def __init__(self, order_id: str, total: float) -> None:
        self.id = order_id
        self.total = total
        self.currency = "USD"


def _checkout_function(tracker: Any) -> Any:
    @tracker.track(
        "purchase_completed",
        customer_id="customer_id",
        metadata={"order_id": "result.id", "amount": "result.total", "currency": "result.currency"},
    )
    def checkout(customer_id: str, n: int) -> Order:
        return Order("ORD", 10.0 + n % 100)

    return checkout


class _GcClock:
    """A ``gc.callbacks`` hook adding up the CPU time spent in collections."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = [0, 0, 0]
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.thread_time()
        else:
            self.total += time.thread_time() - self._start
            self.count[info["generation"]] += 1


def _wait_for(url: str, client: Any, expected: int, deadline: float) -> int:
    # After flush() the events are normally all there: this checks, and waits only if not.
    seen = emulator_events(url, client)
    while seen < expected and time.monotonic() < deadline:
        time.sleep(0.05)  # polling another process: nothing to synchronise on
        seen = emulator_events(url, client)
    return seen


def _deliver(url: str, events: int, customers: int, sender: Any, closer: Any) -> dict[str, Any]:
    import httpx

    from gbtrack import Tracker

    poller = httpx.Client(timeout=10.0)  # opened before timing: its set-up is not the client's
    gc_cpu = _GcClock()

    tracker = Tracker(sender)
    checkout = _checkout_function(tracker)
    ids = [f"cust-{i % customers}" for i in range(events)]
    gc.callbacks.append(gc_cpu)
    wall0 = time.perf_counter()
    cpu0 = time.process_time()
    for n, customer in enumerate(ids):
        checkout(customer, n)
    tracked = time.perf_counter()
    settled = tracker.flush(timeout=_TIMEOUT)
    seen = _wait_for(url, poller, events, time.monotonic() + 30)
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    gc.callbacks.remove(gc_cpu)
    stats = tracker.stats
    closer()
    poller.close()
    return {
        "events": events,
        "customers": customers,
        "seen": seen,
        "delivered": stats.delivered,
        "dropped": dict(stats.dropped),
        "settled": settled,
        "wall_s": wall,
        "track_s": tracked - wall0,
        "cpu_s": cpu,
        "events_per_s": seen / wall,
        "cpu_us_per_event": cpu / max(seen, 1) * 1e6,
        "gc_us_per_event": gc_cpu.total / max(seen, 1) * 1e6,
        "gc_collections": gc_cpu.count,
    }


def scenario_bulk(url: str, events: int, customers: int) -> dict[str, Any]:
    from gbtrack.senders import BackgroundSender, RateLimiter

    sender = BackgroundSender(
        api_key=API_KEY,
        secret_key=SECRET_KEY,
        base_url=url,
        max_queue_size=events,
        rate_limiter=RateLimiter(((100_000, 1.0),), margin=0.0),
    )
    return _deliver(url, events, customers, sender, lambda: sender.close(timeout=10))


def scenario_per_request(url: str, events: int, customers: int) -> dict[str, Any]:
    from gbtrack.senders import BackgroundSender

    sender = BackgroundSender(api_key=API_KEY, base_url=url)  # no secret: per request
    return _deliver(url, events, customers, sender, lambda: sender.close(timeout=10))


def scenario_outbox(url: str, events: int, customers: int) -> dict[str, Any]:
    from gbtrack.gameball import GameballClient
    from gbtrack.outbox import OutboxSender
    from gbtrack.senders import RateLimiter

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "outbox.db"
        client = GameballClient(API_KEY, secret_key=SECRET_KEY, base_url=url)
        sender = OutboxSender(
            client,
            path=path,
            rate_limiter=RateLimiter(((100_000, 1.0),), margin=0.0),
            claim_size=1_000,
            bulk_threshold=1_000,
            max_buffer=events,  # hold the burst in memory until the writer commits it
            overflow="block",
            block_timeout=60.0,
            poll_interval=0.05,  # the emulator finishes jobs at once; the default is 1 s
            close_client=True,
        )
        return _deliver(url, events, customers, sender, lambda: sender.close(timeout=10))


def scenario_memory(events: int, queue: int, outbox: bool) -> dict[str, Any]:
    from gbtrack import Tracker
    from gbtrack.senders import BackgroundSender

    url = closed_port_url()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "outbox.db"
        sender = BackgroundSender(
            api_key=API_KEY,
            base_url=url,
            max_queue_size=queue,
            exit_timeout=0.0,
        )
        if outbox:
            from gbtrack.outbox import OutboxSender

            sender.spill = OutboxSender(
                sender.client, path=path, rate_limiter=sender.rate_limiter, max_rows=2_000_000
            )
            sender._close_spill = True  # as configure(outbox=...) sets it
        tracker = Tracker(sender)
        checkout = _checkout_function(tracker)
        wall0 = time.perf_counter()
        for n in range(events):
            checkout(f"cust-{n % CUSTOMERS}", n)
        wall = time.perf_counter() - wall0
        if outbox:
            sender.spill.commit(timeout=_TIMEOUT)  # every spilled event on disk
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        stats = tracker.stats
        disk = sum(f.stat().st_size for f in Path(tmp).iterdir()) if outbox else 0
        sender.close(timeout=0)
    return {
        "events": events,
        "queue": queue,
        "outbox": outbox,
        "peak_rss_mib": peak_kib / 1024,
        "in_queue": stats.in_queue,
        "persisted": stats.persisted,
        "dropped": dict(stats.dropped),
        "disk_mib": disk / 2**20,
        "track_s": wall,
    }


# --- the parent side: scenarios into the table -------------------------------------------------
def _throughput_rows(table: Table, label: str, r: dict[str, Any], targets: bool) -> None:
    complete = r["seen"] == r["events"]
    note = "" if complete else f" (ONLY {r['seen']} of {r['events']} arrived)"
    table.add(
        Result(
            benchmark=f"{label}: events/s",
            measured=f"{r['events_per_s']:,.0f} events/s{note}",
            baseline=f"{r['events']:,} events, {r['customers']:,} customers, "
            f"{r['wall_s']:.2f} s (tracking alone {r['track_s']:.2f} s)",
            ratio=r["events_per_s"] / EVENTS_PER_S_TARGET if targets else None,
            target=f">= {EVENTS_PER_S_TARGET:,}/s" if targets else "",
            ok=(complete and r["events_per_s"] >= EVENTS_PER_S_TARGET) if targets else None,
        )
    )
    table.add(
        Result(
            benchmark=f"{label}: client CPU per delivered event",
            measured=f"{r['cpu_us_per_event']:.1f} CPU-us/event",
            baseline=f"{r['cpu_s']:.2f} CPU-s in the client process, of which the cyclic GC "
            f"{r['gc_us_per_event']:.1f} us/event ({r['gc_collections'][2]} full collections)",
            ratio=r["cpu_us_per_event"] / CPU_US_TARGET if targets else None,
            target=f"<= {CPU_US_TARGET:g} us" if targets else "",
            ok=(complete and r["cpu_us_per_event"] <= CPU_US_TARGET) if targets else None,
        )
    )


def run(table: Table, *, quick: bool = False) -> None:
    """Run every end-to-end benchmark into ``table``."""
    bulk_events = 100_000
    with emulator("--no-rate-limit") as url:
        r = run_scenario("bulk", url=url, events=bulk_events, customers=CUSTOMERS)
    _throughput_rows(table, "bulk via BackgroundSender", r, targets=True)

    per_request = 150 if quick else 250
    with emulator() as url:  # Gameball's default rate limits
        r = run_scenario("per_request", url=url, events=per_request, customers=per_request)
    complete = r["seen"] == r["events"]
    ceiling = rate_limit_ceiling(r["events"])
    table.add(
        Result(
            benchmark="per-request (no secret key, default rate limits): events/s",
            measured=f"{r['events_per_s']:,.1f} events/s"
            + ("" if complete else f" (ONLY {r['seen']} of {r['events']})"),
            baseline=f"rate-limit ceiling {ceiling:.0f} requests/s for {r['events']} requests "
            "(1 event per request)",
            ratio=r["events_per_s"] / ceiling,
        )
    )
    table.add(
        Result(
            benchmark="per-request: client CPU per delivered event",
            measured=f"{r['cpu_us_per_event']:.0f} CPU-us/event",
            baseline=f"{r['cpu_s']:.2f} CPU-s over {r['wall_s']:.1f} s",
            ratio=None,
        )
    )

    outbox_events = 50_000 if quick else 100_000
    with emulator("--no-rate-limit") as url:
        r = run_scenario("outbox", url=url, events=outbox_events, customers=CUSTOMERS)
    _throughput_rows(table, "bulk via OutboxSender (SQLite first)", r, targets=False)

    big, small = (1_000_000, 250_000) if not quick else (200_000, 50_000)
    queue = 10_000
    for outbox in (False, True):
        rs = {n: run_scenario("memory", events=n, queue=queue, outbox=outbox) for n in (small, big)}
        ratio = rs[big]["peak_rss_mib"] / rs[small]["peak_rss_mib"]
        where = "queue + outbox spill" if outbox else "queue only"
        disk = (
            f"; outbox on disk {rs[big]['disk_mib']:.0f} MiB "
            f"({rs[big]['persisted']:,} events persisted)"
            if outbox
            else f"; dropped {sum(rs[big]['dropped'].values()):,} (queue_overflow)"
        )
        table.add(
            Result(
                benchmark=f"peak RSS, outage, {big:,} events ({where}, queue {queue:,})",
                measured=f"{rs[big]['peak_rss_mib']:.0f} MiB{disk}",
                baseline=f"{small:,} events: {rs[small]['peak_rss_mib']:.0f} MiB",
                ratio=ratio,
                target="~1.0 (bounded)",
                ok=ratio <= 1.15,
            )
        )


def main(argv: list[str]) -> int:
    name, params = argv[0], json.loads(argv[1])
    scenarios = {
        "bulk": scenario_bulk,
        "per_request": scenario_per_request,
        "outbox": scenario_outbox,
        "memory": scenario_memory,
    }
    result = scenarios[name](**params)
    print(json.dumps(result), flush=True)
    # Daemon worker threads may still be winding down: leave without waiting for them.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
