"""An AWS Lambda-style handler whose events are delivered before each invocation ends.

Between invocations, Lambda freezes the process, the tracker's background thread
included, and may throw the instance away: events still queued would wait or be lost.
``@serverless_function`` ends every invocation with a flush, bounded by its
``timeout`` and by the time the invocation has left
(``context.get_remaining_time_in_millis()``), whether the handler returned or raised.
``identity=`` binds the customer of the invocation (here a Cognito-style claim).

This script plays the Lambda runtime: it starts a local
:class:`~gbtrack.emulator.GameballEmulator`, configures the default tracker with a
long ``flush_interval`` (so only the flush can deliver in time), invokes the handler
three times and prints what Gameball had received when each invocation returned.
Run: ``python examples/lambda_handler.py``.
"""

from __future__ import annotations

import sys
from typing import Any

import gbtrack
from gbtrack import track
from gbtrack.emulator import GameballEmulator
from gbtrack.integrations.serverless import serverless_function


class LambdaContext:
    """The part of AWS's context object the decorator reads."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the runtime stops the invocation."""
        return self.remaining_ms


@track("points_redeemed", metadata={"points": "points"})
def redeem(points: int) -> int:
    return points


def claim(event: dict[str, Any], context: object) -> str:
    """The customer of the invocation: the authorizer's ``sub`` claim."""
    return str(event["requestContext"]["authorizer"]["claims"]["sub"])


@serverless_function(timeout=2.0, identity=claim)
def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    for points in event["redeem"]:
        redeem(points)
    return {"statusCode": 200}


def invoke(customer: str, redeem_points: list[int]) -> dict[str, Any]:
    event = {
        "requestContext": {"authorizer": {"claims": {"sub": customer}}},
        "redeem": redeem_points,
    }
    return handler(event, LambdaContext(remaining_ms=10_000))


def main() -> int:
    with GameballEmulator() as gameball:
        # A long interval: without the flush at the end of each invocation, nothing
        # would reach Gameball before the runtime froze the process.
        tracker = gbtrack.configure(
            api_key=gameball.api_key, base_url=gameball.url, flush_interval=60
        )
        for customer, points in [("c-1", [100, 50]), ("c-2", [30]), ("c-1", [5])]:
            answer = invoke(customer, points)
            print(
                f"invocation for {customer}: {answer['statusCode']}; "
                f"Gameball has {gameball.event_count} event(s)"
            )
        received = [(e.customer_id, e.metadata["points"]) for e in gameball.events]
        gbtrack.close(5)
    print("received:", received)
    stats = tracker.stats
    dropped = dict(stats.dropped)
    print(f"tracker.stats: sent={stats.sent} delivered={stats.delivered} dropped={dropped}")
    if received != [("c-1", 100), ("c-1", 50), ("c-2", 30), ("c-1", 5)]:
        print("LOST or misattributed events")
        return 1
    print("nothing lost")
    return 0


if __name__ == "__main__":
    sys.exit(main())
