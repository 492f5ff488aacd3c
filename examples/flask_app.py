"""A Flask shop whose requests are identified by gbtrack, delivering to a local Gameball.

``GBTrack(app)`` reads the ``GBTRACK_*`` keys of ``app.config`` (the options of
``gbtrack.configure``) and runs each request inside ``identify()`` for the customer its
identity function returns: here the ``X-Customer-Id`` header, standing in for a login.
The decorated function names no customer: it takes the request's.

The requests go through Flask's test client so the example runs in a second; in
production run it under gunicorn with the hooks::

    gunicorn -c python:gbtrack.integrations.gunicorn --preload -w 4 flask_app:app
"""

from __future__ import annotations

from flask import Flask, request

import gbtrack
from gbtrack.emulator import GameballEmulator
from gbtrack.integrations.flask import GBTrack


@gbtrack.track("order_placed", metadata={"order_id": "result.id", "total": "total"})
def place_order(total: float) -> dict[str, object]:
    return {"id": f"ord-{int(total * 100)}", "total": total}


def create_app(gameball: GameballEmulator) -> Flask:
    app = Flask(__name__)
    app.config.update(
        GBTRACK_API_KEY=gameball.api_key,
        GBTRACK_BASE_URL=gameball.url,
        GBTRACK_FLUSH_INTERVAL=0.05,
    )
    GBTrack(app, identity=lambda request: request.headers.get("X-Customer-Id"))

    @app.post("/orders")
    def orders() -> dict[str, object]:
        return place_order(float(request.json["total"]))

    return app


def main() -> int:
    with GameballEmulator() as gameball:
        app = create_app(gameball)
        client = app.test_client()
        for customer, total in [("cust-1", 64.9), ("cust-2", 12.5), ("cust-1", 30.0)]:
            client.post("/orders", json={"total": total}, headers={"X-Customer-Id": customer})
        client.post("/orders", json={"total": 1.0})  # anonymous: no customer, not sent
        tracker = gbtrack.get_tracker()
        tracker.close(timeout=10)
        for event in sorted(gameball.events, key=lambda e: (e.customer_id, e.metadata["total"])):
            print(f"{event.name:<14} {event.customer_id:<7} {event.metadata}")
        stats = tracker.stats
        print(f"{gameball.event_count} events received; dropped={dict(stats.dropped)}")
        return 0 if gameball.event_count == 3 else 1


if __name__ == "__main__":
    raise SystemExit(main())
