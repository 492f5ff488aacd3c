"""GBTrack(app) in-process: configuration from app.config, identity per request, failures."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

import gbtrack
from gbtrack import InMemorySender, Tracker

flask = pytest.importorskip("flask")
from gbtrack.integrations.flask import GBTrack, user_identity  # noqa: E402


def _app(**config: Any) -> Any:
    app = flask.Flask(__name__)
    app.config.update(config)

    @app.get("/who")
    def who() -> dict[str, Any]:
        identity = gbtrack.current_identity()
        return {"customer": identity.customer_id, "email": identity.email}

    return app


def test_identity_per_request_and_restored_after() -> None:
    app = _app()
    GBTrack(app, identity=lambda request: request.headers.get("X-Customer-Id"))
    client = app.test_client()
    assert client.get("/who", headers={"X-Customer-Id": "c-1"}).json["customer"] == "c-1"
    assert client.get("/who").json["customer"] is None
    assert gbtrack.current_identity().customer_id is None
    assert app.extensions["gbtrack"].identity is not None


def test_identity_mapping_and_dotted_path_from_config() -> None:
    app = _app(GBTRACK_IDENTITY=f"{__name__}:header_identity")
    GBTrack(app)
    answer = app.test_client().get("/who", headers={"X-Customer-Id": "c-2"}).json
    assert answer == {"customer": "c-2", "email": "c-2@example.com"}


def header_identity(request: Any) -> dict[str, Any] | None:
    customer = request.headers.get("X-Customer-Id")
    return {"customer_id": customer, "email": f"{customer}@example.com"} if customer else None


def test_default_identity_reads_g_user() -> None:
    app = _app()

    @app.before_request
    def load_user() -> None:
        flask.g.user = {"id": 7, "email": "seven@example.com"}

    GBTrack(app)  # after the hook that loads g.user
    assert app.test_client().get("/who").json == {
        "customer": "7",
        "email": "seven@example.com",
    }
    with app.test_request_context():
        flask.g.user = SimpleNamespace(id="u-1", email=None, is_authenticated=True)
        assert user_identity(flask.request) == {"customer_id": "u-1"}
        flask.g.user = SimpleNamespace(id="u-1", is_authenticated=False)
        assert user_identity(flask.request) is None


def test_a_failing_identity_never_breaks_the_request(caplog: pytest.LogCaptureFixture) -> None:
    def broken(request: Any) -> str:
        raise RuntimeError("boom")

    app = _app()
    GBTrack(app, identity=broken)
    with caplog.at_level(logging.WARNING, logger="gbtrack"):
        assert app.test_client().get("/who").json["customer"] is None
    assert "raised RuntimeError" in caplog.text
    app2 = _app()
    GBTrack(app2, identity=lambda request: ["not", "an", "id"])
    assert app2.test_client().get("/who").json["customer"] is None


def test_config_configures_the_given_tracker_with_a_share_of_the_rate_limit() -> None:
    tracker = Tracker(InMemorySender())
    app = _app(
        GBTRACK_API_KEY="k",
        GBTRACK_BASE_URL="http://127.0.0.1:9",
        GBTRACK_FLUSH_INTERVAL=0.1,
        GBTRACK_WORKERS=4,
    )
    GBTrack(app, tracker=tracker)
    try:
        assert tracker.sender.flush_interval == 0.1
        assert tracker.sender.rate_limiter.limits == ((25, 1.0), (300, 30.0))
    finally:
        tracker.close(timeout=1)


def test_unknown_config_key_fails_at_start_up() -> None:
    with pytest.raises(ValueError, match="unknown gbtrack option 'flush_intervall'"):
        GBTrack(_app(GBTRACK_FLUSH_INTERVALL=1))
    with pytest.raises(ValueError, match="GBTRACK_IDENTITY must be a function"):
        GBTrack(_app(GBTRACK_IDENTITY=42))


def test_an_async_view_sees_the_request_identity() -> None:
    pytest.importorskip("asgiref")  # Flask runs async views through asgiref
    app = _app()
    GBTrack(app, identity=lambda request: request.headers.get("X-Customer-Id"))

    @app.get("/awho")
    async def awho() -> dict[str, Any]:
        return {"customer": gbtrack.current_identity().customer_id}

    client = app.test_client()
    assert client.get("/awho", headers={"X-Customer-Id": "c-5"}).json == {"customer": "c-5"}
