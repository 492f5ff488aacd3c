"""A test sender that takes drafts as they are, so that the tracker's gate opens."""

from __future__ import annotations

from typing import Any

from gbtrack import InMemorySender


class DraftSender(InMemorySender):
    """Takes drafts as they are (the tracker's gate opens) and keeps them in order.

    Tests compare what a call site built before any validation.
    """

    accepts_drafts = True

    def __init__(self) -> None:
        super().__init__()
        self.drafts: list[Any] = []

    def send(self, event: Any) -> None:
        self.drafts.append(event)
