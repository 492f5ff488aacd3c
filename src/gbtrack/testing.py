"""Test helpers for code that uses gbtrack, and a pytest plugin.

:func:`capture_events` swaps an :class:`~gbtrack.InMemorySender` into a tracker for a
block and restores the original sender afterwards (the original is neither flushed
nor closed)::

    from gbtrack.testing import capture_events

    def test_checkout():
        with capture_events() as events:
            checkout(customer, cart)
        events.assert_tracked("purchase_completed", customer_id="c-1", amount=10.0)

The plugin (registered through the ``pytest11`` entry point) provides the
``gbtrack_events`` fixture: the same list-like, active for the whole test. It also runs
:func:`gbtrack.check` once per session, right after collection (when the test modules
have imported the code under test): a ``@track`` whose check was deferred at import
(a forward reference) and is wrong fails the session as one failing item named
``gbtrack.check()``, even when no test calls that function. Opt out with
``--no-gbtrack-check`` or the ini option ``gbtrack_check = false``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, overload

from gbtrack._checks import check
from gbtrack._errors import ExpressionError
from gbtrack._event import Event
from gbtrack._order import OrderDraft
from gbtrack._tracker import Tracker, get_tracker
from gbtrack.senders._base import InMemorySender

__all__ = ["CapturedEvents", "capture_events", "gbtrack_events"]

_IDENTITY_KEYS = ("customer_id", "email", "mobile")
_NOTHING = object()


class CapturedEvents(Sequence[Event]):
    """The events captured by :func:`capture_events`, oldest first (a live view).

    Args:
        sender: The in-memory sender that receives the events.
    """

    def __init__(self, sender: InMemorySender) -> None:
        self.sender = sender

    @overload
    def __getitem__(self, index: int) -> Event: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Event]: ...
    def __getitem__(self, index: int | slice) -> Event | Sequence[Event]:
        return self.sender.events[index]

    def __len__(self) -> int:
        return len(self.sender)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CapturedEvents({self.names()!r})"

    def names(self) -> list[str]:
        """Return the names of the captured events, in order."""
        return [event.name for event in self.sender.events]

    def named(self, name: str) -> list[Event]:
        """Return the captured events called ``name``, in order."""
        return [event for event in self.sender.events if event.name == name]

    def clear(self) -> None:
        """Forget the events (and orders) captured so far."""
        self.sender.clear()

    @property
    def orders(self) -> list[OrderDraft]:
        """The orders captured (``@track_order``, ``send_order``), oldest first.

        Each is an :class:`~gbtrack.OrderDraft`; ``to_body()`` gives its wire body.
        """
        return self.sender.orders

    def assert_order(self, **expected: Any) -> OrderDraft:
        """Assert that an order matching ``expected`` was sent; return it.

        Keys of ``expected`` are the draft's fields (``order_id``, ``customer_id``,
        ``total_paid``, ``order_date``, ``email``, ``mobile``) or wire keys of its body
        (``lineItems``, ``channel``, ``totalTax`` ...). The first match is returned.

        Raises:
            AssertionError: Listing the orders sent when nothing matches.
        """
        orders = self.sender.orders
        for order in orders:
            body = order.to_body()
            if all(
                (getattr(order, key) if key in OrderDraft._fields else body.get(key, _NOTHING))
                == value
                for key, value in expected.items()
            ):
                return order
        sent = "; ".join(repr(order) for order in orders) or "nothing"
        raise AssertionError(f"no order matches {expected!r}; orders sent: {sent}")

    def assert_tracked(self, name: str, **expected: Any) -> Event:
        """Assert that an event ``name`` matching ``expected`` was tracked; return it.

        Keys of ``expected``: ``customer_id``, ``email`` and ``mobile`` compare with the
        event's fields; ``metadata={...}`` must be a subset of the event's metadata;
        any other keyword is one metadata key (``amount=10.0`` is
        ``metadata={"amount": 10.0}``). Several events may match; the first is returned.

        Raises:
            AssertionError: Listing what was tracked when nothing matches.
        """
        wanted_meta: dict[str, Any] = dict(expected.pop("metadata", None) or {})
        fields = {key: expected.pop(key) for key in _IDENTITY_KEYS if key in expected}
        wanted_meta.update(expected)
        candidates = self.named(name)
        for event in candidates:
            if all(getattr(event, key) == value for key, value in fields.items()) and all(
                key in event.metadata and event.metadata[key] == value
                for key, value in wanted_meta.items()
            ):
                return event
        wanted = {**fields, **({"metadata": wanted_meta} if wanted_meta else {})}
        if not candidates:
            raise AssertionError(
                f"no event {name!r} was tracked; tracked: {self._describe(self.sender.events)}"
            )
        raise AssertionError(
            f"no event {name!r} matches {wanted!r}; "
            f"events named {name!r}: {self._describe(candidates)}"
        )

    def assert_not_tracked(self, name: str) -> None:
        """Assert that no event called ``name`` was tracked.

        Raises:
            AssertionError: Listing the offending events.
        """
        found = self.named(name)
        if found:
            raise AssertionError(
                f"event {name!r} was tracked {len(found)} time(s): {self._describe(found)}"
            )

    @staticmethod
    def _describe(events: Sequence[Event]) -> str:
        if not events:
            return "nothing"
        return "; ".join(
            f"{e.name}(customer_id={e.customer_id!r}, metadata={e.metadata!r})" for e in events
        )


@contextmanager
def capture_events(
    tracker: Tracker | None = None, *, strict: bool | None = None
) -> Iterator[CapturedEvents]:
    """Capture the events of a tracker (the default one) for a block.

    The tracker is enabled for the block and gets a fresh in-memory sender; on exit
    its sender, ``enabled`` and ``strict`` are restored. The original sender is not
    flushed or closed.

    Args:
        tracker: The tracker to capture; ``None`` is the default tracker at entry.
        strict: Set ``strict`` for the block (``None`` leaves it as it is).

    Yields:
        A live, list-like :class:`CapturedEvents`; its ``orders`` are the orders sent.
    """
    target = tracker if tracker is not None else get_tracker()
    sender = InMemorySender()
    before = target.settings
    # use_sender(), not configure(): configure() would close the user's sender.
    previous = target.use_sender(sender)
    target.use_settings(
        dataclasses.replace(
            before, enabled=True, strict=before.strict if strict is None else strict
        )
    )
    try:
        yield CapturedEvents(sender)
    finally:
        target.restore_sender(previous)
        # Only what the block was given back: other settings changed inside it stay.
        target.use_settings(
            dataclasses.replace(target.settings, enabled=before.enabled, strict=before.strict)
        )


try:  # the plugin part needs pytest, which is not a runtime dependency
    import pytest
except ImportError:  # pragma: no cover - pytest is always there when the plugin loads
    pass
else:

    @pytest.fixture
    def gbtrack_events() -> Iterator[CapturedEvents]:
        """Capture the default tracker's events for the duration of a test."""
        with capture_events() as events:
            yield events

    def pytest_addoption(parser: pytest.Parser) -> None:
        """Register ``--no-gbtrack-check`` and the ini option ``gbtrack_check``."""
        group = parser.getgroup("gbtrack")
        group.addoption(
            "--no-gbtrack-check",
            action="store_true",
            default=False,
            help="do not run gbtrack.check() after collection",
        )
        parser.addini(
            "gbtrack_check",
            type="bool",
            default=True,
            help="run gbtrack.check() once per session, after collection (default: true)",
        )

    class _CheckItem(pytest.Item):
        """The failing item that reports what :func:`gbtrack.check` found."""

        def __init__(self, *, error: ExpressionError, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.error = error

        def runtest(self) -> None:
            raise self.error

        def repr_failure(self, excinfo: Any, style: Any = None) -> str:
            return str(self.error)

        def reportinfo(self) -> tuple[Any, int | None, str]:
            return self.path, None, "gbtrack.check()"

    @pytest.hookimpl(trylast=True)  # after -k/-m deselection: the check always runs
    def pytest_collection_modifyitems(
        session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        """Run :func:`gbtrack.check` once, after collection; a problem is a failing item."""
        if config.getoption("no_gbtrack_check") or not config.getini("gbtrack_check"):
            return
        try:
            check()
        except ExpressionError as exc:
            items.insert(0, _CheckItem.from_parent(session, name="gbtrack.check()", error=exc))
