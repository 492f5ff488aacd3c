"""The emulator's control and inspection endpoints (``/_emulator/...``) and its live page.

Both the HTTP server and the in-process transports answer them through
:func:`serve_control`, which works on the :class:`~gbtrack.emulator._state.EmulatorState`
alone: nothing here knows the server.
"""

from __future__ import annotations

import json
from typing import Any, Final

from gbtrack.emulator._page import live_response, page_response
from gbtrack.emulator._rate import EVENTS_BUCKET, check_bucket
from gbtrack.emulator._state import (
    EmulatorState,
    Incoming,
    Response,
    as_iterable_of_str,
    error_response,
    literal_when,
)

__all__ = ["is_page_route", "serve_control"]

_PAGE_PATHS: Final = frozenset({"/", "/_emulator", "/_emulator/live"})
_MISSING: Final[Any] = object()


def serve_control(
    state: EmulatorState, incoming: Incoming, body: bytes, *, trusted: bool
) -> Response:
    """Answer a ``/_emulator/...`` request and count it.

    Args:
        state: The emulator state the request inspects or controls.
        incoming: The request.
        body: Its body (JSON arguments for POSTs).
        trusted: Whether the peer may use control endpoints (a loopback peer, or an
            in-process transport).
    """
    rid = incoming.request_id
    if not trusted:
        response = error_response(403, 1002, rid, "control endpoints answer loopback only")
    else:
        try:
            response = _control(state, incoming, body)
        except (ValueError, TypeError, KeyError) as exc:
            response = error_response(400, 3003, rid, f"invalid control request: {exc}")
    if not (response.status == 200 and is_page_route(incoming)):
        # The live page polls its feed every second: leaving it open must not grow the
        # request log or change the counters a test asserts. Refusals are still counted.
        state.complete(incoming, response.status, response.code)
    return response


def is_page_route(incoming: Incoming) -> bool:
    """Whether a request is for the live page (``GET /``) or its feed (``GET /_emulator/live``)."""
    return incoming.method == "GET" and incoming.path in _PAGE_PATHS


def _ok(payload: Any = None) -> Response:
    data = {"ok": True} if payload is None else payload
    return Response(200, json.dumps(data, separators=(",", ":")).encode())


def _control(state: EmulatorState, incoming: Incoming, body: bytes) -> Response:
    """Serve ``/_emulator/...``: inspection (GET) and control (POST, JSON arguments)."""
    route = incoming.path.removeprefix("/_emulator").strip("/")
    response: Response | None = None
    if incoming.method == "GET":
        response = _inspect(state, incoming, route)
    elif incoming.method == "POST":
        args: dict[str, Any] = json.loads(body) if body.strip() else {}
        if not isinstance(args, dict):
            raise ValueError("arguments must be a JSON object")
        response = _command(state, route, args)
        if response is None:
            response = _arm_fault(state, route, args)
    if response is not None:
        return response
    return error_response(
        404, 3017, incoming.request_id, f"no control route {incoming.method} {incoming.path}"
    )


def _inspect(state: EmulatorState, incoming: Incoming, route: str) -> Response | None:
    if route == "":
        return page_response()
    if route == "live":
        return live_response(state, incoming.query)
    if route == "events":
        return _ok([event.to_dict() for event in state.records.events])
    if route == "orders":
        return _ok([order.to_dict() for order in state.records.orders])
    if route == "system-events":
        return _ok([event.to_dict() for event in state.records.system_events])
    if route == "points":
        return _ok(state.records.points)
    if route == "stats":
        return _ok(state.stats())
    if route == "requests":
        return _ok([record.to_dict() for record in state.request_log])
    if route == "health":
        return _ok({"status": "ok"})
    if route.startswith("batches/"):
        raw_id = route.removeprefix("batches/")
        status = state.batch_status(int(raw_id)) if raw_id.isdigit() else None
        if status is None:
            return error_response(404, 3017, incoming.request_id, "batch job not found")
        return _ok(status)
    return None


def _command(state: EmulatorState, route: str, args: dict[str, Any]) -> Response | None:
    if route == "reset":
        state.reset()
        return _ok()
    if route == "batches/run":
        return _ok({"processed": state.run_pending_jobs()})
    if route == "rate-limits":
        limits = args.get("limits", _MISSING)
        if limits is _MISSING:
            raise ValueError("expected {'limits': [[count, seconds], ...] or null}")
        state.set_rate_limits(
            None if limits is None else [(int(n), float(s)) for n, s in limits],
            check_bucket(args.get("bucket", EVENTS_BUCKET)),
        )
        return _ok()
    if route == "config":
        _configure(state, args)
        return _ok()
    return None


def _configure(state: EmulatorState, args: dict[str, Any]) -> None:
    """Apply ``POST /_emulator/config``, in order; the state's setters check each value."""
    changes: list[tuple[str, Any]] = []
    if "highSecurity" in args:
        changes.append(("high_security", bool(args["highSecurity"])))
    if "batchDelay" in args:
        changes.append(("batch_delay", float(args["batchDelay"])))
    if "minVersion" in args:
        changes.append(("min_version", args["minVersion"]))
    if "pointsPerUnit" in args:
        changes.append(("points_per_unit", args["pointsPerUnit"]))
    if "duplicateOrders" in args:
        changes.append(("duplicate_orders", args["duplicateOrders"]))
    if "duplicateOrderStatus" in args:
        changes.append(("duplicate_order_status", int(args["duplicateOrderStatus"])))
    if "duplicateOrderCode" in args:
        changes.append(("duplicate_order_code", int(args["duplicateOrderCode"])))
    if "autoPlaceOrder" in args:
        changes.append(("auto_place_order", bool(args["autoPlaceOrder"])))
    for name, value in changes:
        setattr(state, name, value)


def _arm_fault(state: EmulatorState, route: str, args: dict[str, Any]) -> Response | None:
    faults = state.faults
    if route == "faults/fail":
        faults.fail_next(
            int(args.get("count", 1)),
            status=int(args.get("status", 503)),
            code=None if args.get("code") is None else int(args["code"]),
            message=args.get("message"),
            retry_after=None if args.get("retryAfter") is None else float(args["retryAfter"]),
            route=args.get("route"),
        )
    elif route == "faults/drop":
        faults.drop_next(
            int(args.get("count", 1)),
            when=literal_when(args.get("when", "after_body")),
            route=args.get("route"),
        )
    elif route == "faults/latency":
        count = args.get("count")
        up_to = args.get("upTo")
        faults.set_latency(
            float(args.get("seconds", 0.0)),
            count=None if count is None else int(count),
            up_to=None if up_to is None else float(up_to),
        )
    elif route == "faults/batch-items":
        faults.fail_batch_items(
            customer_ids=as_iterable_of_str(args.get("customerIds", [])),
            next_items=int(args.get("nextItems", 0)),
            code=int(args.get("code", 5003)),
            message=args.get("message"),
        )
    elif route == "faults/clear":
        faults.clear()
    else:
        return None
    return _ok()
