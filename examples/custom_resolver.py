"""Custom resolvers: make ``current_user`` (from a request context) a root of the path language.

Web frameworks keep the logged-in user in a request context, not in the arguments of
the function that does the work. ``register_resolver("current_user")`` turns a function
``func(call) -> value`` into a root, so decorators can say ``customer_id="current_user.id"``.

This script shows:

- ``register_resolver`` used as a decorator (``current_user``) and as a plain function
  (``tenant``, a lambda);
- a resolver reading a ``contextvars`` request context, isolated per thread and task;
- a missing user (no request) dropping the event with reason ``no_customer_id``;
- a callable expression receiving the :class:`~gbtrack.Call` (bound arguments);
- ``unregister_resolver`` to clean up.

It uses its own :class:`~gbtrack.Tracker` with an in-memory sender, so nothing is
delivered anywhere. Run: ``python examples/custom_resolver.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from gbtrack import Call, InMemorySender, Tracker, register_resolver, unregister_resolver


@dataclass
class User:
    """The logged-in user, as a web framework would hold it."""

    id: str
    email: str
    plan: str


@dataclass
class Request:
    """A minimal request: who is calling, and for which tenant."""

    user: User | None
    tenant: str


_request: ContextVar[Request | None] = ContextVar("request", default=None)


@contextmanager
def handling(request: Request) -> Iterator[None]:
    """Make ``request`` the current request for a block (a middleware would do this)."""
    token = _request.set(request)
    try:
        yield
    finally:
        _request.reset(token)


# As a decorator: the resolver receives the Call; returning None means "missing".
@register_resolver("current_user")
def current_user(call: Call) -> User | None:
    request = _request.get()
    return request.user if request is not None else None


# As a function: any callable taking the Call.
register_resolver("tenant", lambda call: getattr(_request.get(), "tenant", None))

tracker = Tracker(InMemorySender())


@tracker.track(
    "settings_changed",
    customer_id="current_user.id",
    email="current_user.email",
    metadata={
        "plan": "current_user.plan",
        "tenant": "tenant",
        "setting": "name",
        # A callable expression: anything the path language cannot say.
        "value_length": lambda call: len(str(call.arguments["value"])),
    },
)
def change_setting(name: str, value: object) -> None:
    """Business code: it knows the setting, not who is calling."""


def main() -> None:
    """Call ``change_setting`` as two users and once outside any request."""
    with handling(Request(User("u-42", "nour@example.com", "gold"), tenant="acme")):
        change_setting("theme", "dark")
    with handling(Request(User("u-7", "omar@example.com", "free"), tenant="globex")):
        change_setting("language", "ar")
    change_setting("timezone", "Africa/Cairo")  # no request: no customer, dropped

    for event in tracker.sender.events:
        print(f"{event.name} customer={event.customer_id} metadata={event.metadata}")
    stats = tracker.stats
    print(f"sent={stats.sent} dropped={dict(stats.dropped)}")

    unregister_resolver("current_user")
    unregister_resolver("tenant")


if __name__ == "__main__":
    main()
