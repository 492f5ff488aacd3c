"""A Flask shop whose requests are identified by gbtrack, delivering to a local Gameball.

``GBTrack(app)`` reads the ``GBTRACK_*`` keys of ``app.config`` (the options of
``gbtrack.configure``) and runs each request inside ``identify()`` for the customer its
identity function returns: here the customer the login stored in Flask's signed session
(never a customer id the client sends: any client could name another customer). The
decorated function names no customer: it takes the request's.

The requests go through Flask's test client so the example runs in a second; in
production run it under gunicorn with the hooks::

    gunicorn -c python:gbtrack.integrations.gunicorn --preload -w 4 flask_app:app
"""

from __future__ import annotations

from flask import Flask, request, session

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
    app.secret_key = "example-only"  # signs the session cookie
    GBTrack(app, identity=lambda request: session.get("customer_id"))

    @app.post("/login/<customer>")
    def login(customer: str) -> dict[str, object]:
        session["customer_id"] = customer  # a stand-in for checking credentials
        return {}

    @app.post("/orders")
    def orders() -> dict[str, object]:
        return place_order(float(request.json["total"]))

    return app


def main() -> int:
    with GameballEmulator() as gameball:
        app = create_app(gameball)
        clients = {customer: app.test_client() for customer in ("cust-1", "cust-2")}
        for customer, client in clients.items():
            client.post(f"/login/{customer}")
        for customer, total in [("cust-1", 64.9), ("cust-2", 12.5), ("cust-1", 30.0)]:
            clients[customer].post("/orders", json={"total": total})
        anonymous = app.test_client()  # not logged in: no customer, not sent
        anonymous.post("/orders", json={"total": 1.0})
        tracker = gbtrack.get_tracker()
        tracker.close(timeout=10)
        for event in sorted(gameball.events, key=lambda e: (e.customer_id, e.metadata["total"])):
            print(f"{event.name:<14} {event.customer_id:<7} {event.metadata}")
        stats = tracker.stats
        print(f"{gameball.event_count} events received; dropped={dict(stats.dropped)}")
        return 0 if gameball.event_count == 3 else 1


if __name__ == "__main__":
    raise SystemExit(main())
