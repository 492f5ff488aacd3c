"""Flask under gunicorn --preload -w 2 --threads 4, delivering to the emulator.

Counted at the emulator: every request's event arrives once, for the customer of that
request, from both workers, and the workers together keep to the account's rate limit.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from tests.integrations._servers import check_delivery, drive, emulator_env, gunicorn, stop

from gbtrack.emulator import GameballEmulator

pytest.importorskip("flask")
pytest.importorskip("gunicorn")

pytestmark = pytest.mark.slow

APP = """
import os

from flask import Flask

import gbtrack
from gbtrack.integrations.flask import GBTrack

app = Flask(__name__)
app.config["GBTRACK_API_KEY"] = os.environ["EMU_API_KEY"]
app.config["GBTRACK_BASE_URL"] = os.environ["EMU_URL"]
app.config["GBTRACK_FLUSH_INTERVAL"] = 0.05
GBTrack(app, identity=lambda request: request.headers.get("X-Customer-Id"))


@gbtrack.track("order_placed", metadata={"n": "n", "pid": "pid"})
def place(n: int, pid: int) -> None: ...


@app.get("/health")
def health():
    return {"ok": True}


@app.post("/orders/<int:n>")
def order(n: int):
    place(n, os.getpid())
    return {"customer": gbtrack.current_identity().customer_id, "pid": os.getpid()}


@app.post("/anonymous")
def anonymous():
    return {"customer": gbtrack.current_identity().customer_id}
"""


def test_flask_preload_two_workers_none_lost_none_duplicated(tmp_path: Path) -> None:
    (tmp_path / "flask_shop.py").write_text(textwrap.dedent(APP))
    requests = 300  # one customer each: one Gameball request each, more than 100/s
    customers = [f"c-{n}" for n in range(requests)]
    with GameballEmulator() as emulator:
        env = emulator_env(emulator)
        with gunicorn(
            ["--preload", "--threads", "4", "flask_shop:app"], tmp_path, env, workers=2
        ) as server:
            load = drive(server.url, [f"/orders/{n}" for n in range(requests)], customers)
            assert stop(server) == 0, server.text()
        assert not load.failures, load.failures[:5]
        # Identity per request, as the view saw it.
        assert all(load.answers[n]["customer"] == customers[n] for n in range(requests))
        pids = {answer["pid"] for answer in load.answers.values()}
        seen, wrong = check_delivery(emulator, "order_placed", customers)
        lost = sorted(set(range(requests)) - set(seen))
        duplicated = sorted(n for n, count in seen.items() if count > 1)
        print(
            f"emulator: {emulator.event_count} events, {len(seen)} distinct, lost {len(lost)}, "
            f"duplicated {len(duplicated)}, 429s {emulator.rate_limited}, "
            f"max requests in 1 s {emulator.max_requests_in_window(1.0)}, workers {len(pids)}"
        )
        assert not lost, f"lost {len(lost)}: {lost[:10]}\n{server.text()}"
        assert not duplicated, f"duplicated {len(duplicated)}: {duplicated[:10]}"
        assert not wrong, wrong[:10]
        # Each worker kept to half of the 100 requests/s: no 429 at all.
        assert emulator.rate_limited == 0
        assert emulator.max_requests_in_window(1.0) <= 100
