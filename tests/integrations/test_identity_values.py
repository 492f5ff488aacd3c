"""One way to say who the customer is: every integration takes the same identity values.

Issue 20 item 6: the ASGI middleware took a customer id or a ``gbtrack.Identity`` and
refused a dict; Flask's and Django's took a dict and refused an ``Identity``. Each
integration's identity function (or dependency) returns one value per kind below, in a
real request of that framework (an invocation, for serverless), in process; the view
reports the identity it runs under. The conversion is
``gbtrack.integrations._web.identity_from``; Celery's carried identity goes through it
too (tests/integrations/test_celery.py).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import gbtrack
from gbtrack import Identity

pytest.importorskip("fastapi")
flask = pytest.importorskip("flask")
django = pytest.importorskip("django")
from tests.integrations._django_settings import configure_django  # noqa: E402

configure_django()

from django.http import JsonResponse  # noqa: E402
from django.test import RequestFactory  # noqa: E402
from fastapi import Depends, FastAPI  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from gbtrack.integrations import django as gb_django  # noqa: E402
from gbtrack.integrations.asgi import GbtrackMiddleware, identity_dependency  # noqa: E402
from gbtrack.integrations.flask import GBTrack  # noqa: E402
from gbtrack.integrations.serverless import serverless_function  # noqa: E402

Seen = dict[str, Any]
ANONYMOUS: Seen = {"customer": None, "email": None, "mobile": None, "token": False}
EMAIL, MOBILE, TOKEN = "nour@example.com", "+201001234567", "tok-123"


def _seen() -> Seen:
    identity = gbtrack.current_identity()
    return {
        "customer": identity.customer_id,
        "email": identity.email,
        "mobile": identity.mobile,
        "token": identity.session_token is not None,
    }


# --- one request per integration, its identity function returning `value` -------------
def _asgi_get(app: Any) -> Seen:
    async def get() -> Seen:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answer = await client.get("/")
        assert answer.status_code == 200
        seen: Seen = answer.json()
        return seen

    return asyncio.run(get())


def via_asgi_middleware(value: object) -> Seen:
    async def endpoint(request: Any) -> JSONResponse:
        return JSONResponse(_seen())

    app = Starlette(routes=[Route("/", endpoint)])
    return _asgi_get(GbtrackMiddleware(app, identity=lambda connection: value))


def via_fastapi_dependency(value: object) -> Seen:
    app = FastAPI()

    @app.get("/", dependencies=[Depends(identity_dependency(lambda: value))])
    async def endpoint() -> Seen:
        return _seen()

    return _asgi_get(app)


def via_flask(value: object) -> Seen:
    app = flask.Flask(__name__)
    GBTrack(app, identity=lambda request: value)

    @app.get("/")
    def endpoint() -> Seen:
        return _seen()

    seen: Seen = app.test_client().get("/").json
    return seen


def _django_answer(response: Any) -> Seen:
    assert response.status_code == 200
    import json

    seen: Seen = json.loads(response.content)
    return seen


def via_django(value: object) -> Seen:
    middleware = gb_django.GBTrackMiddleware(
        lambda request: JsonResponse(_seen()), identity=lambda request: value
    )
    return _django_answer(middleware(RequestFactory().get("/")))


def via_django_async(value: object) -> Seen:
    async def view(request: Any) -> JsonResponse:
        return JsonResponse(_seen())

    async def identity(request: Any) -> object:
        return value

    middleware = gb_django.GBTrackMiddleware(view, identity=identity)
    return _django_answer(asyncio.run(middleware(RequestFactory().get("/"))))


def via_serverless(value: object) -> Seen:
    @serverless_function(
        tracker=gbtrack.Tracker(gbtrack.InMemorySender()), identity=lambda e, c: value
    )
    def handler(event: object, context: object) -> Seen:
        return _seen()

    return handler({}, None)


INTEGRATIONS: dict[str, Callable[[object], Seen]] = {
    "asgi-middleware": via_asgi_middleware,
    "fastapi-dependency": via_fastapi_dependency,
    "flask": via_flask,
    "django": via_django,
    "django-async": via_django_async,
    "serverless": via_serverless,
}

# --- what an identity function may return ------------------------------------------------
KINDS: dict[str, tuple[object, Seen]] = {
    "None": (None, ANONYMOUS),
    "str": ("c-1", {**ANONYMOUS, "customer": "c-1"}),
    "int": (42, {**ANONYMOUS, "customer": "42"}),
    "UUID": (uuid.UUID(int=7), {**ANONYMOUS, "customer": str(uuid.UUID(int=7))}),
    "blank str": ("  ", ANONYMOUS),
    "mapping": (
        {"customer_id": "c-2", "email": EMAIL, "mobile": MOBILE, "session_token": TOKEN},
        {"customer": "c-2", "email": EMAIL, "mobile": MOBILE, "token": True},
    ),
    "mapping, id only": ({"customer_id": 7}, {**ANONYMOUS, "customer": "7"}),
    "mapping without id": ({"email": EMAIL}, ANONYMOUS),
    "Identity": (
        Identity(customer_id="c-3", email=EMAIL, session_token=TOKEN),
        {"customer": "c-3", "email": EMAIL, "mobile": None, "token": True},
    ),
    "Identity without id": (Identity(email=EMAIL), ANONYMOUS),
}

# Not identities: the request runs anonymously and a warning says why.
NOT_IDENTITIES: dict[str, tuple[object, str]] = {
    "float": (1.5, "float"),
    "bool": (True, "bool"),
    "list": (["c-1"], "list"),
    "mapping with a typo": ({"id": 7}, "'id'"),
    "mapping, float id": ({"customer_id": 1.5}, "float"),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("integration", INTEGRATIONS)
def test_every_integration_takes_every_kind_of_identity(integration: str, kind: str) -> None:
    value, expected = KINDS[kind]
    assert INTEGRATIONS[integration](value) == expected
    assert gbtrack.current_identity().customer_id is None  # nothing leaks out


@pytest.mark.parametrize("kind", NOT_IDENTITIES)
@pytest.mark.parametrize("integration", INTEGRATIONS)
def test_every_integration_refuses_the_same_values_with_a_warning(
    integration: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    value, named = NOT_IDENTITIES[kind]
    with caplog.at_level(logging.WARNING, logger="gbtrack"):
        assert INTEGRATIONS[integration](value) == ANONYMOUS
    warnings = [r for r in caplog.records if r.name == "gbtrack" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, caplog.text
    assert named in caplog.text
