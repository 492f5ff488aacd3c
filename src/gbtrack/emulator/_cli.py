"""``gbtrack emulator``: run the local Gameball emulator until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

from gbtrack.emulator._orders import (
    DEFAULT_DUPLICATE_ORDER_CODE,
    DEFAULT_DUPLICATE_ORDER_STATUS,
    DEFAULT_POINTS_PER_UNIT,
    check_points_per_unit,
)
from gbtrack.emulator._rate import DEFAULT_ORDER_RATE_LIMITS, DEFAULT_RATE_LIMITS, parse_rate_limits

__all__ = ["add_arguments", "main", "register", "run"]

_DESCRIPTION = """\
Run a local Gameball emulator: the events API (v4.0, v4.1, batch) and the Order API
(v4.0, v4.1, batch orders) with Gameball's auth rules, validation codes and rate limits
(one bucket per resource), recording what it accepts and the points orders earn. Its
live page, http://HOST:PORT/ in a browser, shows events and orders as they arrive; the
same data as JSON at /_emulator/events, /_emulator/orders and /_emulator/stats; inject
faults through /_emulator/faults/...
(see the gbtrack.emulator docs). Runs until Ctrl-C or SIGTERM.
"""


def _rate_limits(text: str) -> tuple[tuple[int, float], ...]:
    try:
        return parse_rate_limits(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{exc}; expected COUNT/SECONDS[,COUNT/SECONDS...], e.g. 100/1,1200/30"
        ) from None


def _points_per_unit(text: str) -> float:
    try:
        return check_points_per_unit(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a points rate (a finite number >= 0)"
        ) from None


def _error_status(text: str) -> int:
    try:
        status = int(text)
    except ValueError:
        status = 0
    if not 400 <= status <= 599:
        raise argparse.ArgumentTypeError(f"{text!r} is not an HTTP error status (400-599)")
    return status


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0-65535)")
    return port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options to ``parser``."""
    default_limits = ",".join(f"{n}/{p:g}" for n, p in DEFAULT_RATE_LIMITS)
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=_port, default=8080, help="port; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument(
        "--api-key",
        default="test-api-key",
        help="the APIKey clients must send (default: %(default)s)",
    )
    parser.add_argument(
        "--secret-key",
        default="test-secret-key",
        help="the SecretKey for v4.1, batch and high security (default: %(default)s)",
    )
    parser.add_argument(
        "--high-security",
        action="store_true",
        help="require the SecretKey on v4.0 events too (Gameball's High Security Mode)",
    )
    parser.add_argument(
        "--min-version",
        choices=("4.0", "4.1"),
        default=None,
        help="the account's minimum API version: 4.1 refuses v4.0 event calls (403/1003)",
    )
    limits = parser.add_mutually_exclusive_group()
    limits.add_argument(
        "--rate-limit",
        type=_rate_limits,
        default=DEFAULT_RATE_LIMITS,
        metavar="N/S[,N/S...]",
        help=f"sliding-window rate limits, requests per seconds (default: {default_limits})",
    )
    limits.add_argument(
        "--no-rate-limit",
        dest="rate_limit",
        action="store_const",
        const=None,
        help="turn rate limiting off",
    )
    parser.add_argument(
        "--retry-after",
        action="store_true",
        help="send a Retry-After header with rate-limit 429 answers",
    )
    parser.add_argument(
        "--batch-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep batch jobs pending this long before processing (default: %(default)s)",
    )
    _add_order_arguments(parser)


def _add_order_arguments(parser: argparse.ArgumentParser) -> None:
    default_limits = ",".join(f"{n}/{p:g}" for n, p in DEFAULT_ORDER_RATE_LIMITS)
    limits = parser.add_mutually_exclusive_group()
    limits.add_argument(
        "--order-rate-limit",
        type=_rate_limits,
        default=DEFAULT_ORDER_RATE_LIMITS,
        metavar="N/S[,N/S...]",
        help=f"the orders bucket's sliding windows, apart from events' (default: {default_limits})",
    )
    limits.add_argument(
        "--no-order-rate-limit",
        dest="order_rate_limit",
        action="store_const",
        const=None,
        help="turn the orders rate limit off",
    )
    parser.add_argument(
        "--points-per-unit",
        type=_points_per_unit,
        default=DEFAULT_POINTS_PER_UNIT,
        metavar="RATE",
        help="points an order earns per unit of totalPaid, floored (default: %(default)g)",
    )
    parser.add_argument(
        "--duplicate-orders",
        choices=("reject", "accept"),
        default="reject",
        help="an orderId seen before: reject it, or accept it and award again "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--duplicate-order-status",
        type=_error_status,
        default=DEFAULT_DUPLICATE_ORDER_STATUS,
        metavar="STATUS",
        help="HTTP status of a rejected duplicate order; UNCONFIRMED (default: %(default)s)",
    )
    parser.add_argument(
        "--duplicate-order-code",
        type=int,
        default=DEFAULT_DUPLICATE_ORDER_CODE,
        metavar="CODE",
        help="Gameball code of a rejected duplicate order; UNCONFIRMED (default: %(default)s)",
    )
    parser.add_argument(
        "--no-place-order",
        dest="place_order",
        action="store_false",
        help="do not record the place_order event Gameball fires for each order",
    )


def register(subparsers: Any) -> None:
    """Add the ``emulator`` subcommand to the ``gbtrack`` command."""
    parser = subparsers.add_parser(
        "emulator",
        help="run the local Gameball emulator",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start the emulator from parsed options, print how to reach it, serve until stopped.

    Returns:
        The exit code: 0 after SIGINT/SIGTERM, 1 when the address cannot be bound.
    """
    from gbtrack.emulator._server import GameballEmulator

    emulator = GameballEmulator(
        args.host,
        args.port,
        api_key=args.api_key,
        secret_key=args.secret_key,
        high_security=args.high_security,
        min_version=args.min_version,
        rate_limits=args.rate_limit,
        rate_limit_retry_after=args.retry_after,
        batch_delay=args.batch_delay,
        order_rate_limits=args.order_rate_limit,
        points_per_unit=args.points_per_unit,
        duplicate_orders=args.duplicate_orders,
        duplicate_order_status=args.duplicate_order_status,
        duplicate_order_code=args.duplicate_order_code,
        auto_place_order=args.place_order,
    )
    try:
        emulator.start()
    except OSError as exc:
        print(f"gbtrack emulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        shown = _shown_limits(args.rate_limit)
        # The keys are the emulator's own test credentials: printing them is the point.
        print(f"Gameball emulator listening on {emulator.url}", flush=True)
        print(f"  APIKey:     {args.api_key}", flush=True)
        print(f"  SecretKey:  {args.secret_key}", flush=True)
        print(f"  rate limit: {shown}; high security: {'on' if args.high_security else 'off'}")
        duplicates = (
            f"reject ({args.duplicate_order_status}/{args.duplicate_order_code})"
            if args.duplicate_orders == "reject"
            else "accept (awarded again)"
        )
        print(
            f"  orders:     rate limit {_shown_limits(args.order_rate_limit)};"
            f" {args.points_per_unit:g} point(s) per unit paid; duplicates: {duplicates}"
        )
        if args.min_version:
            print(f"  minimum API version: {args.min_version}")
        print(f"  live page:  {emulator.url}/", flush=True)
        print(
            f"  inspect:    {emulator.url}/_emulator/events  {emulator.url}/_emulator/orders"
            f"  {emulator.url}/_emulator/stats"
        )
        print("Press Ctrl-C to stop.", flush=True)
        while not stop.wait(0.5):  # a bounded wait keeps signals responsive everywhere
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        emulator.stop()
    print("Gameball emulator stopped.", flush=True)
    return 0


def _shown_limits(limits: Sequence[tuple[int, float]] | None) -> str:
    return ", ".join(f"{n}/{p:g}s" for n, p in limits) if limits else "off"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m gbtrack.emulator``; return its exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m gbtrack.emulator",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
