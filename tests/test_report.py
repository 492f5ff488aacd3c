"""Reporter: every drop counted and reported; log lines throttled per reason."""

from __future__ import annotations

import logging

import pytest

from gbtrack import TrackingError
from gbtrack._report import Reporter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_logs_one_line_per_interval_but_counts_and_reports_every_drop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    errors: list[TrackingError] = []
    reporter = Reporter(errors.append, log_interval=5.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="gbtrack"):
        for _ in range(1000):
            reporter.drop("queue_overflow", "queue full")
        reporter.drop("rejected", "HTTP 400")  # another reason has its own line
        clock.now += 5.0
        reporter.drop("queue_overflow", "queue full", n=3)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "gbtrack dropped 1 event(s) [queue_overflow]: queue full",
        "gbtrack dropped 1 event(s) [rejected]: HTTP 400",
        "gbtrack dropped 3 event(s) [queue_overflow]: queue full"
        " (and 999 more since the last line)",
    ]
    assert reporter.dropped("queue_overflow") == 1003
    assert len(errors) == 1002
    assert all(isinstance(e, TrackingError) for e in errors)
    assert reporter.snapshot().dropped == {"queue_overflow": 1003, "rejected": 1}


def test_zero_interval_logs_every_drop(caplog: pytest.LogCaptureFixture) -> None:
    reporter = Reporter(log_interval=0.0)
    with caplog.at_level(logging.WARNING, logger="gbtrack"):
        for _ in range(3):
            reporter.drop("no_customer_id", "no id")
    assert len(caplog.records) == 3
