"""Typing examples checked by mypy (never run): configure() keeps Tracker.configure's parameters."""

from __future__ import annotations

from typing_extensions import assert_type

import gbtrack
from gbtrack import InMemorySender, Tracker, TrackerSettings
from gbtrack.senders import BaseSender, SenderTraits, TrackerLink

assert_type(gbtrack.configure(sender=InMemorySender(), debug=True, sample={"a": 0.5}), Tracker)
assert_type(gbtrack.configure(on_error=None, before_send=None), Tracker)
gbtrack.configure(debug="yes")  # type: ignore[arg-type]
gbtrack.configure(no_such_option=1)  # type: ignore[call-arg]
gbtrack.configure(InMemorySender())  # type: ignore[call-arg]  # keyword-only, as on the method

settings = gbtrack.get_tracker().settings
assert_type(settings, TrackerSettings)
assert_type(gbtrack.get_tracker().use_settings(settings), TrackerSettings)


class Quiet(BaseSender):
    def send(self, event: gbtrack.Event) -> None: ...

    def attach(self, link: TrackerLink) -> SenderTraits:
        return super().attach(link)
