"""Django under real servers: WSGI (gunicorn, threads) and ASGI (uvicorn workers under gunicorn).

The project (settings, a test-only middleware that puts the ``X-Customer-Id`` header's
user on ``request.user`` and ``request.auser``, sync and async views) is written to a
temporary directory; ``settings.GBTRACK`` configures delivery to the emulator through
``GBTrackConfig``, and ``GBTrackMiddleware`` identifies each request from
``request.user`` (its default). Counted at the emulator: none lost, none duplicated,
each event for the customer of its request.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from tests.integrations._servers import check_delivery, drive, emulator_env, gunicorn, stop

from gbtrack.emulator import GameballEmulator

pytest.importorskip("django")
pytest.importorskip("gunicorn")

pytestmark = pytest.mark.slow

SETTINGS = """
import os

SECRET_KEY = "test-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "shop_views"
DATABASES = {}
USE_TZ = True
INSTALLED_APPS = ["gbtrack.integrations.django.GBTrackConfig"]
MIDDLEWARE = [
    "shop_views.header_user",  # stands in for AuthenticationMiddleware
    "gbtrack.integrations.django.GBTrackMiddleware",
]
GBTRACK = {
    "API_KEY": os.environ["EMU_API_KEY"],
    "BASE_URL": os.environ["EMU_URL"],
    "FLUSH_INTERVAL": 0.05,
}
"""

VIEWS = """
import os
from dataclasses import dataclass

from asgiref.sync import iscoroutinefunction
from django.http import JsonResponse
from django.urls import path
from django.utils.decorators import sync_and_async_middleware

import gbtrack


@dataclass
class User:
    pk: str
    email: str
    is_authenticated: bool = True


def _user(request):
    customer = request.headers.get("X-Customer-Id")
    return User(customer, f"{customer}@example.com") if customer else None


@sync_and_async_middleware
def header_user(get_response):
    if iscoroutinefunction(get_response):

        async def middleware(request):
            user = _user(request)
            request.user = user

            async def auser():
                return user

            request.auser = auser
            return await get_response(request)

    else:

        def middleware(request):
            request.user = _user(request)
            return get_response(request)

    return middleware


@gbtrack.track("order_placed", metadata={"n": "n", "pid": "pid", "view": "view"})
def place(n: int, pid: int, view: str) -> None: ...


def health(request):
    return JsonResponse({"ok": True})


def order(request, n):
    place(n, os.getpid(), "sync")
    identity = gbtrack.current_identity()
    return JsonResponse({"customer": identity.customer_id, "email": identity.email})


async def aorder(request, n):
    place(n, os.getpid(), "async")
    identity = gbtrack.current_identity()
    return JsonResponse({"customer": identity.customer_id, "email": identity.email})


urlpatterns = [
    path("health", health),
    path("orders/<int:n>", order),
    path("aorders/<int:n>", aorder),
]
"""

ENTRY = """
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_settings")

from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application

from gbtrack.integrations.django import with_lifespan

wsgi = get_wsgi_application()
# Under uvicorn workers gunicorn's worker_exit never runs: close at the lifespan shutdown.
asgi = with_lifespan(get_asgi_application())
"""


def _project(tmp_path: Path) -> None:
    (tmp_path / "shop_settings.py").write_text(textwrap.dedent(SETTINGS))
    (tmp_path / "shop_views.py").write_text(textwrap.dedent(VIEWS))
    (tmp_path / "shop_entry.py").write_text(textwrap.dedent(ENTRY))


@pytest.mark.parametrize(
    "server_args",
    [
        pytest.param(["--threads", "4", "shop_entry:wsgi"], id="wsgi-gunicorn-threads"),
        pytest.param(
            ["-k", "uvicorn.workers.UvicornWorker", "shop_entry:asgi"], id="asgi-uvicorn-workers"
        ),
    ],
)
def test_django_none_lost_none_duplicated_identity_per_request(
    tmp_path: Path, server_args: list[str]
) -> None:
    if "uvicorn" in server_args[1]:
        pytest.importorskip("uvicorn")
    _project(tmp_path)
    requests = 200  # half through a sync view, half through an async view
    customers = [f"c-{n}" for n in range(requests)]
    paths = [f"/{'a' if n % 2 else ''}orders/{n}" for n in range(requests)]
    with GameballEmulator() as emulator:
        with gunicorn(server_args, tmp_path, emulator_env(emulator), workers=2) as server:
            load = drive(server.url, paths, customers)
            assert stop(server) == 0, server.text()
        assert not load.failures, load.failures[:5]
        for n in range(requests):
            assert load.answers[n] == {
                "customer": customers[n],
                "email": f"{customers[n]}@example.com",
            }
        seen, wrong = check_delivery(emulator, "order_placed", customers)
        lost = sorted(set(range(requests)) - set(seen))
        duplicated = sorted(n for n, count in seen.items() if count > 1)
        pids = {event.metadata["pid"] for event in emulator.events}
        print(
            f"emulator: {emulator.event_count} events, {len(seen)} distinct, lost {len(lost)}, "
            f"duplicated {len(duplicated)}, 429s {emulator.rate_limited}, workers {len(pids)}"
        )
        assert not lost, f"lost {len(lost)}: {lost[:10]}\n{server.text()}"
        assert not duplicated, f"duplicated {len(duplicated)}: {duplicated[:10]}"
        assert not wrong, wrong[:10]
        assert {event.email for event in emulator.events} == {f"{c}@example.com" for c in customers}
        assert {event.metadata["view"] for event in emulator.events} == {"sync", "async"}
        assert emulator.rate_limited == 0
