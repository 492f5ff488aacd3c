"""The durable outbox: events tracked while Gameball is down spill to disk, then get delivered.

A :class:`~gbtrack.senders.BackgroundSender` retries a failing Gameball for a while;
when it gives up (here after 2 attempts, to keep the demo short) it does not drop the
events: it *spills* them to an :class:`~gbtrack.outbox.OutboxSender`, a SQLite file
whose own worker keeps delivering with backoff until Gameball is back.

Everything runs in this process on 127.0.0.1: a local Gameball emulator is made to
answer ``503`` to every request (fault injection), a few customers check out, the
script prints how many events wait on disk, clears the fault, and prints how many
arrived. In production, ``gbtrack.configure(api_key=..., outbox="/var/lib/app/gb.sqlite3")``
sets up the same pair. Exit status 1 if an event was lost.
Run: ``python examples/outbox.py``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from gbtrack import Tracker
from gbtrack.emulator import GameballEmulator
from gbtrack.gameball import GameballClient
from gbtrack.outbox import OutboxSender, OutboxStore
from gbtrack.senders import BackgroundSender, RetryPolicy

EVENTS = 24


def main() -> int:
    """Run the outage and the recovery; return the exit status."""
    with tempfile.TemporaryDirectory() as tmp, GameballEmulator() as emulator:
        path = Path(tmp) / "outbox.sqlite3"
        emulator.faults.fail_next(1_000_000, status=503)  # Gameball is "down"
        print(f"emulator on {emulator.url} answers 503 to everything")
        with GameballClient(emulator.api_key, base_url=emulator.url) as client:
            outbox = OutboxSender(
                client,
                path=path,
                # The outbox keeps trying (quickly, for the demo) until Gameball is back.
                retry=RetryPolicy(max_attempts=10_000, base_delay=0.05, max_delay=0.2),
            )
            sender = BackgroundSender(
                client,
                retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02),
                flush_interval=0.05,
                spill=outbox,  # instead of dropping: to disk
                close_spill=True,
            )
            tracker = Tracker(sender)
            for i in range(EVENTS):
                tracker.emit(
                    "purchase_completed",
                    customer_id=f"cust-{i % 6}",
                    metadata={"order_id": f"ord-{i}", "amount": 10.0 + i},
                )
            sender.flush(timeout=30)  # the background sender gave up and spilled
            with OutboxStore(path) as store:
                on_disk = store.count()
            print(f"tracked {EVENTS} events during the outage")
            print(f"received by Gameball: {emulator.event_count}, waiting on disk: {on_disk}")

            emulator.faults.clear()  # Gameball is back
            print("Gameball is back: the outbox worker delivers the backlog")
            delivered = outbox.flush(timeout=60)
            tracker.close(timeout=30)  # also closes the outbox (close_spill=True)
            with OutboxStore(path) as store:
                left, dead = store.count(), store.count("dead")
        received = emulator.event_count
        stats = tracker.stats
    print(f"received by Gameball: {received}, left on disk: {left}, dead letters: {dead}")
    print(f"tracker.stats: sent={stats.sent} dropped={dict(stats.dropped)}")
    if not delivered or received < EVENTS or stats.total_dropped:
        print("LOST events")
        return 1
    print("nothing lost")
    return 0


if __name__ == "__main__":
    sys.exit(main())
