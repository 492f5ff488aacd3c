"""A one-file Django project whose requests are identified by gbtrack, delivering to Gameball.

``GBTrackConfig`` in ``INSTALLED_APPS`` configures gbtrack from ``settings.GBTRACK`` (the
options of ``gbtrack.configure``) when Django starts, and ``GBTrackMiddleware`` runs each
request inside ``identify()`` for ``request.user`` (its default). A small middleware
stands in for ``AuthenticationMiddleware`` (no database here): it logs in the user named
by the ``X-User`` header.

The requests go through Django's test client so the example runs in a second; in
production run it under gunicorn or uvicorn (see docs/integrations/django.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import Client
from django.urls import path

import gbtrack
from gbtrack.emulator import GameballEmulator


@dataclass
class User:
    """A logged-in user, as ``request.user`` would be."""

    pk: int
    email: str
    is_authenticated: bool = True


USERS = {"nour": User(1, "nour@example.com"), "omar": User(2, "omar@example.com")}


def fake_login(get_response):
    """Stand in for AuthenticationMiddleware: ``request.user`` from the X-User header."""

    def middleware(request: HttpRequest) -> HttpResponse:
        request.user = USERS.get(request.headers.get("X-User", ""))
        return get_response(request)

    return middleware


@gbtrack.track("review_submitted", metadata={"product": "product", "rating": "rating"})
def submit_review(product: str, rating: int) -> None: ...


def review(request: HttpRequest, product: str) -> JsonResponse:
    submit_review(product, int(request.GET["rating"]))
    return JsonResponse({"customer": gbtrack.current_identity().customer_id})


urlpatterns = [path("products/<str:product>/reviews", review)]


def main() -> int:
    with GameballEmulator() as gameball:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="example-only",
            ALLOWED_HOSTS=["testserver"],
            ROOT_URLCONF=__name__,
            DATABASES={},
            USE_TZ=True,
            INSTALLED_APPS=["gbtrack.integrations.django.GBTrackConfig"],
            MIDDLEWARE=[f"{__name__}.fake_login", "gbtrack.integrations.django.GBTrackMiddleware"],
            GBTRACK={
                "API_KEY": gameball.api_key,
                "BASE_URL": gameball.url,
                "FLUSH_INTERVAL": 0.05,
            },
        )
        django.setup()  # GBTrackConfig.ready() configures gbtrack from settings.GBTRACK
        client = Client()
        client.post("/products/sku-1/reviews?rating=5", headers={"X-User": "nour"})
        client.post("/products/sku-2/reviews?rating=4", headers={"X-User": "omar"})
        client.post("/products/sku-3/reviews?rating=1")  # anonymous: not sent
        tracker = gbtrack.get_tracker()
        tracker.close(timeout=10)
        for event in sorted(gameball.events, key=lambda e: e.customer_id):
            print(f"{event.name:<17} {event.customer_id:<3} {event.email:<17} {event.metadata}")
        print(f"{gameball.event_count} events received; dropped={dict(tracker.stats.dropped)}")
        return 0 if gameball.event_count == 2 else 1


if __name__ == "__main__":
    raise SystemExit(main())
