"""``gbtrack relay --url URL``: a long-running process draining the SQL outbox into Gameball.

Each relay runs :class:`~gbtrack.outbox.OutboxDrainer` rounds on a
:class:`~gbtrack.outbox.SqlOutboxStore`: rows are claimed with leases (``SELECT ... FOR
UPDATE SKIP LOCKED`` on PostgreSQL and MySQL 8, so relays on several machines take
disjoint rows), deleted when Gameball acknowledged them, put back or moved to the dead
letter otherwise; a backlog goes through the batch endpoint when a secret key is set.
Leases are timed on the database's clock and renewed by a heartbeat while rows are in
flight; each claim has a token, checked before a request is sent and before its rows
are deleted or put back, so a relay that lost its lease (frozen past it) neither sends
nor settles rows another relay has claimed since.

Gameball's rate limit is per account. Relays share it in one of two ways:

- a :class:`~gbtrack.senders.RedisRateLimiter` (``--redis-url`` or
  ``$GBTRACK_REDIS_URL``; the ``redis`` extra): every relay is active;
- otherwise, on PostgreSQL, an *election*: one relay per account holds
  ``pg_try_advisory_lock(key)`` (the key derived from the API key) on a dedicated
  connection and delivers; the others wait as standbys and take over when its
  connection dies (a crash, a SIGKILL, a lost machine: PostgreSQL releases the lock).

SIGTERM or SIGINT stops the relay gracefully: it claims nothing more, gives back at once
the rows it has not sent yet, finishes the requests and batch jobs in flight (polling
each job to its end) and settles their rows, within ``--grace`` seconds (25 by default,
under Kubernetes' 30); rows still unsettled then are released, counted and logged as
possibly sent; the lock is released, exit 0. A second signal during that time stops at
once (the same release), still exit 0; signals after that (while the process exits)
are ignored. Rounds run on a thread of their own so that the main thread keeps the
deadline. Keys come from ``$GAMEBALL_API_KEY`` and ``$GAMEBALL_SECRET_KEY``;
``--api-key``/``--secret-key`` work but warn (``ps`` shows them to every user).

A stats line goes to stderr every ``--stats-interval`` seconds, and ``--metrics-port``
serves Prometheus' text format. The gauges (pending rows, lag) are read at a cost that
does not grow with the backlog (:meth:`~gbtrack.outbox.SqlOutboxStore.backlog`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, TextIO

from pydantic import SecretStr

from gbtrack._errors import ConfigurationError, GbtrackError
from gbtrack._report import logger
from gbtrack.outbox._cli import (
    ENV_API_KEY,
    ENV_BASE_URL,
    ENV_SECRET_KEY,
    ENV_URL,
    EXIT_CODES,
    EXIT_FAILURE,
    EXIT_USAGE,
    setting,
)
from gbtrack.outbox._protocol import OutboxStoreProtocol
from gbtrack.outbox._sender import DrainResult, OutboxDrainer
from gbtrack.senders._config import REDIS_URL_ENV, check_limiter_options
from gbtrack.senders._policy import DEFAULT_MARGIN

__all__ = ["Relay", "RelayMetrics", "advisory_key", "register"]

Election = Literal["auto", "lock", "none"]


def advisory_key(api_key: str | SecretStr) -> int:
    """The PostgreSQL advisory-lock key of a Gameball account: a signed 64-bit hash.

    Derived from the API key (never the key itself), so relays of one account contend
    for one lock and relays of different accounts never meet.
    """
    secret = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
    digest = hashlib.sha256(b"gbtrack-relay:" + secret.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass
class RelayMetrics:
    """What a relay did since it started; gauges refreshed from the outbox.

    Attributes:
        claimed: Rows leased for delivery.
        delivered: Events Gameball acknowledged.
        failed: Events put back for a later attempt (retryable or ambiguous outcomes).
        dead: Events moved to the dead letter.
        requests: Requests sent (per-request sends and batch jobs).
        rounds: Drain rounds run.
        errors: Rounds that failed (the database or the network), retried after a pause.
        fenced: Rows left to another relay that claimed them after this one's lease
            ran out (not sent, or not settled, here).
        released: Rows still unsettled at the shutdown deadline, put back.
        possibly_sent: Of those, rows of a request or batch job in flight (may be sent
            again by the next relay).
        pending: Pending rows at the last refresh (all relays' backlog; exact up to
            10,000, an estimate above).
        lag_seconds: Age of the oldest pending event at the last refresh.
        active: Whether this relay delivers (holds the lock, or no election).
        started: When the relay started (epoch seconds).
        cpu_seconds: The process's CPU time at the last refresh.
    """

    claimed: int = 0
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    requests: int = 0
    rounds: int = 0
    errors: int = 0
    fenced: int = 0
    released: int = 0
    possibly_sent: int = 0
    pending: int = 0
    lag_seconds: float = 0.0
    active: bool = False
    started: float = field(default_factory=time.time)
    cpu_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, result: DrainResult) -> None:
        """Count one round."""
        with self.lock:
            self.rounds += 1
            self.claimed += result.claimed
            self.delivered += result.delivered
            self.failed += result.retried
            self.dead += result.dead
            self.requests += result.requests
            self.fenced += result.fenced
            self.possibly_sent += result.abandoned

    def prometheus(self) -> str:
        """The metrics in Prometheus' text exposition format (version 0.0.4)."""
        with self.lock:
            rows: list[tuple[str, str, str, float]] = [
                ("claimed_total", "counter", "Rows leased for delivery.", self.claimed),
                ("delivered_total", "counter", "Events Gameball acknowledged.", self.delivered),
                ("failed_total", "counter", "Events put back to retry later.", self.failed),
                ("dead_total", "counter", "Events moved to the dead letter.", self.dead),
                ("requests_total", "counter", "Requests sent to Gameball.", self.requests),
                ("errors_total", "counter", "Rounds that failed.", self.errors),
                ("fenced_total", "counter", "Rows left to a relay that claimed them.", self.fenced),
                ("pending", "gauge", "Pending rows in the outbox.", self.pending),
                ("lag_seconds", "gauge", "Age of the oldest pending event.", self.lag_seconds),
                ("active", "gauge", "1 when this relay delivers, 0 on standby.", self.active),
                ("cpu_seconds_total", "counter", "CPU time of the relay.", self.cpu_seconds),
            ]
        lines = []
        for name, kind, text, value in rows:
            metric = f"gbtrack_relay_{name}"
            lines += [f"# HELP {metric} {text}", f"# TYPE {metric} {kind}"]
            lines.append(f"{metric} {float(value):g}" if kind == "gauge" else f"{metric} {value}")
        return "\n".join(lines) + "\n"

    def line(self) -> str:
        """The periodic stats line."""
        with self.lock:
            up = max(time.time() - self.started, 1e-9)
            return (
                f"gbtrack relay: {'active' if self.active else 'standby'}; "
                f"delivered {self.delivered} ({self.delivered / up:.1f}/s), "
                f"retried {self.failed}, dead {self.dead}, requests {self.requests}; "
                f"pending {self.pending}, lag {self.lag_seconds:.1f}s"
            )


class Relay:
    """Drain a SQL outbox into Gameball until stopped: election, rounds, stats, metrics.

    Args:
        store: The outbox (a :class:`~gbtrack.outbox.SqlOutboxStore`).
        drainer: The drainer on that store (its ``stop`` event is the relay's).
        election: ``"lock"``: deliver only while holding the account's PostgreSQL
            advisory lock; ``"none"``: always deliver.
        lock_key: The advisory-lock key (see :func:`advisory_key`), for ``"lock"``.
        stats_interval: Seconds between stats lines on ``stats_stream`` (0: none).
        idle_interval: The longest sleep when nothing is ready.
        standby_interval: Seconds between two tries of a standby for the lock.
        stats_stream: Where the stats lines go (stderr).
        grace: Seconds :meth:`run` gives the work in flight once :attr:`finishing` is
            set, before it stops it (sets :attr:`stop`).
        abort_wait: Seconds :meth:`run` then waits for the round to give its rows
            back before it releases what is left itself.
    """

    def __init__(
        self,
        store: OutboxStoreProtocol,
        drainer: OutboxDrainer,
        *,
        election: Literal["lock", "none"] = "none",
        lock_key: int | None = None,
        stats_interval: float = 30.0,
        idle_interval: float = 0.5,
        standby_interval: float = 1.0,
        stats_stream: TextIO | None = None,
        grace: float = 25.0,
        abort_wait: float = 1.0,
    ) -> None:
        if election == "lock" and lock_key is None:
            raise ConfigurationError("election='lock' needs a lock_key")
        if grace < 0 or abort_wait < 0:
            raise ConfigurationError("grace and abort_wait must be >= 0")
        self.store = store
        self.drainer = drainer
        self.stop = drainer.stop
        self.finishing = drainer.finishing
        self.grace = grace
        self.abort_wait = abort_wait
        self.election = election
        self.lock_key = lock_key
        self.stats_interval = stats_interval
        self.idle_interval = idle_interval
        self.standby_interval = standby_interval
        self.stats_stream = stats_stream
        self.metrics = RelayMetrics()
        self._lock_conn: Any = None
        self._standby_said = False
        self._lock_checked = 0.0
        self._next_stats = time.monotonic() + stats_interval
        self._next_gauges = 0.0

    # --- the election -----------------------------------------------------------------
    def _hold_lock(self) -> bool:
        """Whether this relay holds the lock now (trying to take it if not)."""
        if self.election == "none":
            return True
        import sqlalchemy as sa

        engine = getattr(self.store, "engine", None)
        if engine is None:
            raise ConfigurationError("the advisory-lock election needs a SqlOutboxStore")
        try:
            if self._lock_conn is not None:
                # Still ours while its session lives: checked once a second, not per round.
                if time.monotonic() >= self._lock_checked + 1.0:
                    self._lock_conn.execute(sa.text("SELECT 1"))
                    # Never left idle in a transaction: the store's sessions end after
                    # idle_transaction_timeout there, and the lock would end with it.
                    self._lock_conn.commit()
                    self._lock_checked = time.monotonic()
                return True
            # A dedicated connection, outside the pool: the lock lives with its session.
            conn = engine.connect()
            got = conn.execute(
                sa.text("SELECT pg_try_advisory_lock(:k)").bindparams(k=self.lock_key)
            ).scalar_one()
            conn.commit()
            if got:
                self._lock_conn = conn
                self._say("active: holds the account's advisory lock")
                return True
            conn.close()
            if not self._standby_said:
                self._say("standby: another relay holds the account's advisory lock")
                self._standby_said = True
        except Exception as exc:  # the database went away: standby until it is back
            logger.warning("gbtrack relay: election: %s: %s", type(exc).__name__, exc)
            self._drop_lock()
        return False

    def _say(self, message: str) -> None:
        if self.stats_stream is not None:
            print(f"gbtrack relay: {message}", file=self.stats_stream, flush=True)

    def _drop_lock(self) -> None:
        conn, self._lock_conn = self._lock_conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            import sqlalchemy as sa

            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)").bindparams(k=self.lock_key))
            conn.commit()
        with contextlib.suppress(Exception):
            conn.close()

    # --- the loop -----------------------------------------------------------------------
    def run(self) -> int:
        """Deliver until :attr:`finishing` or :attr:`stop` is set; return the exit code (0).

        ``finishing``: the work in flight gets :attr:`grace` seconds to end; ``stop``:
        it is interrupted now. Either way, rows still held at the end are released.
        """
        rounds = threading.Thread(target=self._loop, name="gbtrack-relay-rounds", daemon=True)
        rounds.start()
        try:
            while rounds.is_alive() and not (self.finishing.is_set() or self.stop.is_set()):
                rounds.join(0.5)  # signals reach the main thread between joins
            if rounds.is_alive() and not self.stop.is_set():
                deadline = time.monotonic() + self.grace
                self._say(f"stopping: finishing the work in flight (grace {self.grace:g} s)")
                while rounds.is_alive() and not self.stop.is_set():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    rounds.join(min(left, 0.2))
            self.stop.set()  # interrupts waits: the round gives its rows back
            rounds.join(self.abort_wait)
        finally:
            self._shutdown(wait=not rounds.is_alive())
        return 0

    def _loop(self) -> None:
        try:
            while not (self.stop.is_set() or self.finishing.is_set()):
                if not self._hold_lock():
                    self._set_active(False)
                    self._tick()
                    self.stop.wait(self.standby_interval)
                    continue
                self._set_active(True)
                result = self._round()
                self._tick()
                if result is None:
                    self.stop.wait(self.idle_interval)  # a failed round: pause, go on
                elif not result.claimed:
                    self._idle()
        except Exception as exc:  # never silently: the main thread then shuts down
            logger.error("gbtrack relay: rounds stopped: %s: %s", type(exc).__name__, exc)
            self.stop.set()

    def _round(self) -> DrainResult | None:
        try:
            result = self.drainer.run_once()
        except Exception as exc:
            with self.metrics.lock:
                self.metrics.errors += 1
            logger.warning("gbtrack relay: round failed: %s: %s", type(exc).__name__, exc)
            return None
        self.metrics.add(result)
        return result

    def _idle(self) -> None:
        if self.finishing.is_set():
            return
        wait = self.idle_interval
        with contextlib.suppress(Exception):
            ready = self.store.next_ready_in()
            if ready is not None:
                wait = min(wait, max(ready, 0.01))
        self.stop.wait(wait)

    def _set_active(self, active: bool) -> None:
        with self.metrics.lock:
            self.metrics.active = active

    def _tick(self) -> None:
        now = time.monotonic()
        if now >= self._next_gauges:
            self.refresh_gauges()
            self._next_gauges = now + 1.0
        if self.stats_interval > 0 and now >= self._next_stats:
            self._next_stats = now + self.stats_interval
            if self.stats_stream is not None:
                print(self.metrics.line(), file=self.stats_stream, flush=True)

    def refresh_gauges(self) -> None:
        """Read the pending rows and the lag (bounded cost; at most once a second)."""
        try:
            backlog = self.store.backlog()
        except Exception:
            return
        oldest = backlog.oldest_created_at
        with self.metrics.lock:
            self.metrics.pending = backlog.pending
            self.metrics.lag_seconds = 0.0 if oldest is None else max(0.0, time.time() - oldest)
            self.metrics.cpu_seconds = time.process_time()

    def _shutdown(self, *, wait: bool = True) -> None:
        try:
            # The request threads, then every row still held: unsettled at the deadline.
            in_flight = self.drainer.close(wait=wait)
        except Exception as exc:
            logger.warning("gbtrack relay: releasing rows failed: %s", exc)
            in_flight = 0
        released = self.drainer.released_at_close
        with self.metrics.lock:
            self.metrics.released += released
            self.metrics.possibly_sent += in_flight
        if released:
            logger.warning(
                "gbtrack relay: %d row(s) unsettled at the deadline put back, %d of them "
                "in flight (possibly sent)",
                released,
                in_flight,
            )
            self._say(f"released {released} row(s) at the deadline, {in_flight} possibly sent")
        self._drop_lock()
        self._set_active(False)


# --- the metrics endpoint ------------------------------------------------------------------
def serve_metrics(
    metrics: RelayMetrics, host: str, port: int, refresh: Callable[[], None] | None = None
) -> ThreadingHTTPServer:
    """Serve ``metrics`` at ``http://host:port/metrics`` from a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] not in ("/metrics", "/"):
                self.send_error(404)
                return
            body = metrics.prometheus().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # scrapes are not news

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, name="gbtrack-relay-metrics", daemon=True
    )
    thread.start()
    return server


# --- the command --------------------------------------------------------------------------
def register(subparsers: Any) -> None:
    """Add ``gbtrack relay`` to ``gbtrack``'s parser."""
    relay = subparsers.add_parser(
        "relay",
        help="deliver the SQL outbox to Gameball (long-running)",
        description=(
            "Drain the SQL outbox (gbtrack_outbox in your database) into Gameball until\n"
            "SIGTERM/SIGINT. Several relays claim rows with FOR UPDATE SKIP LOCKED.\n"
            "Without a Redis rate limiter, relays of one account on PostgreSQL elect one\n"
            "active relay with an advisory lock; the others wait as standbys.\n\n"
            f"Keys: ${ENV_API_KEY} and ${ENV_SECRET_KEY} from the environment (with a\n"
            "secret key a backlog goes through the batch endpoint). --api-key and\n"
            "--secret-key work too, but every user of the machine sees them in `ps`.\n\n"
            "SIGTERM/SIGINT: claim nothing more, finish the requests and batch jobs in\n"
            "flight within --grace seconds, release what is left (logged as possibly\n"
            "sent), exit 0; a second signal stops at once."
        ),
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    relay.add_argument("--url", help=f"the database URL (default ${ENV_URL})")
    relay.add_argument(
        "--api-key",
        help=f"Gameball API key; prefer ${ENV_API_KEY}: a flag is visible to all in `ps`",
    )
    relay.add_argument(
        "--secret-key",
        help=f"Gameball secret key; prefer ${ENV_SECRET_KEY}: a flag is visible in `ps`",
    )
    relay.add_argument("--base-url", help=f"Gameball base URL (default ${ENV_BASE_URL})")
    relay.add_argument(
        "--redis-url", help=f"share the rate limit through Redis (default ${REDIS_URL_ENV})"
    )
    relay.add_argument(
        "--election",
        choices=["auto", "lock", "none"],
        default="auto",
        help="lock: one active relay per account (PostgreSQL advisory lock); none: all "
        "active; auto (default): lock on PostgreSQL without Redis, else none",
    )
    relay.add_argument(
        "--concurrency", type=int, default=4, help="requests in flight per relay (4)"
    )
    relay.add_argument("--claim-size", type=int, default=100, help="rows per round (100)")
    relay.add_argument(
        "--bulk-threshold", type=int, default=2_000, help="backlog that uses the batch endpoint"
    )
    relay.add_argument(
        "--lease",
        type=float,
        default=60.0,
        help="seconds a claim is held, renewed while in flight (60)",
    )
    relay.add_argument(
        "--grace",
        type=float,
        default=25.0,
        help="seconds to finish the work in flight after SIGTERM (25; keep it under the "
        "pod's terminationGracePeriodSeconds)",
    )
    relay.add_argument(
        "--rate-limits",
        type=_windows,
        default=None,
        help="the account's limits as LIMIT/SECONDS pairs (default Gameball's: 100/1,1200/30)",
    )
    relay.add_argument(
        "--rate-share",
        type=float,
        default=1.0,
        help="share of Gameball's rate limit this relay uses without Redis (1.0)",
    )
    relay.add_argument(
        "--rate-limit-margin",
        type=float,
        default=DEFAULT_MARGIN,
        help=f"seconds added to every rate window ({DEFAULT_MARGIN:g})",
    )
    relay.add_argument(
        "--redis-socket-timeout",
        type=float,
        help="seconds to wait for Redis before limiting locally (0.1)",
    )
    relay.add_argument(
        "--redis-fallback-share",
        type=float,
        help="share of the limits this relay keeps while Redis is unreachable (0.25)",
    )
    relay.add_argument(
        "--stats-interval", type=float, default=30.0, help="seconds between stats lines (30)"
    )
    relay.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    relay.add_argument(
        "--metrics-host", default="127.0.0.1", help="the metrics address (127.0.0.1)"
    )
    relay.set_defaults(func=_main)


def _windows(text: str) -> list[tuple[int, float]]:
    """``"100/1,1200/30"`` -> ``[(100, 1.0), (1200, 30.0)]``."""
    try:
        windows = []
        for part in text.split(","):
            limit, period = part.strip().split("/")
            windows.append((int(limit), float(period)))
        if not windows or any(n < 1 or p <= 0 for n, p in windows):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not LIMIT/SECONDS pairs like 100/1,1200/30"
        ) from None
    return windows


def _err(message: str) -> None:
    print(f"gbtrack relay: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _signals(finishing: threading.Event, stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``finishing``, a second one ``stop`` (the main thread only).

    Afterwards the previous handlers come back, except the default action (die): a
    late signal, once the relay has stopped, would kill the process during its exit
    (after the summary line, exit -15), so it is ignored instead.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        # No I/O here: the handler may interrupt a print on the same stream.
        if finishing.is_set():
            stop.set()
        finishing.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, signal.SIG_IGN if old == signal.SIG_DFL else old)


def _main(args: argparse.Namespace) -> int:

    url = setting(args.url, ENV_URL)
    api_key = setting(args.api_key, ENV_API_KEY)
    for flag, env in (("--api-key", ENV_API_KEY), ("--secret-key", ENV_SECRET_KEY)):
        if getattr(args, flag[2:].replace("-", "_")):
            logger.warning(
                "gbtrack relay: %s is visible to every user of this machine (ps, "
                "/proc/%d/cmdline): set $%s in the environment instead",
                flag,
                os.getpid(),
                env,
            )
            _err(f"warning: {flag} is visible to every user in `ps`; set ${env} instead")
    if url is None:
        _err(f"relay needs the database: --url URL or ${ENV_URL}")
        return EXIT_USAGE
    if api_key is None:
        _err(f"relay needs an API key: --api-key or ${ENV_API_KEY}")
        return EXIT_USAGE
    if not 0 < args.rate_share <= 1:
        _err("--rate-share must be in (0, 1]")
        return EXIT_USAGE
    if args.grace < 0:
        _err("--grace must be >= 0")
        return EXIT_USAGE
    secret_key = setting(args.secret_key, ENV_SECRET_KEY)
    redis_url = setting(args.redis_url, REDIS_URL_ENV)
    limiter_options = {
        "margin": args.rate_limit_margin,
        "socket_timeout": args.redis_socket_timeout,
        "fallback_share": args.redis_fallback_share,
    }
    flags = ("--rate-limit-margin", "--redis-socket-timeout", "--redis-fallback-share")
    try:
        check_limiter_options(*limiter_options.values(), names=flags, redis_url=redis_url)
    except ValueError as exc:
        _err(str(exc))
        return EXIT_USAGE
    given = {name: value for name, value in limiter_options.items() if value is not None}
    from gbtrack._protocol import ORDERS
    from gbtrack.gameball import DEFAULT_BASE_URL, GameballClient
    from gbtrack.outbox._sql import SqlOutboxStore
    from gbtrack.senders import Limiter, RateLimiter, RedisRateLimiter
    from gbtrack.senders._redis import DEFAULT_PREFIX

    base_url = setting(args.base_url, ENV_BASE_URL) or DEFAULT_BASE_URL
    stop = threading.Event()
    finishing = threading.Event()
    try:
        store = SqlOutboxStore(url)
    except GbtrackError as exc:
        _err(str(exc).splitlines()[0])
        return EXIT_FAILURE
    windows = args.rate_limits or RateLimiter().limits
    limiter: Limiter
    order_limiter: Limiter
    if redis_url is not None:
        # Every relay of the account takes its slots from one log in Redis: no share.
        # Orders have a bucket of their own at Gameball, so a key of their own here.
        try:
            limiter = RedisRateLimiter(redis_url, api_key=api_key, limits=windows, **given)
            order_limiter = RedisRateLimiter(
                redis_url,
                api_key=api_key,
                limits=ORDERS.limits,
                prefix=f"{DEFAULT_PREFIX}{ORDERS.name}:",
                **given,
            )
        except GbtrackError as exc:
            _err(str(exc).splitlines()[0])
            store.close()
            return EXIT_USAGE
    else:
        share = args.rate_share
        limiter, order_limiter = (
            RateLimiter(
                [(max(1, int(limit * share)), period) for limit, period in buckets],
                margin=args.rate_limit_margin,
            )
            for buckets in (windows, ORDERS.limits)
        )
    election: Election = args.election
    if election == "auto":
        election = "lock" if store.dialect == "postgresql" and redis_url is None else "none"
    if election == "lock" and store.dialect != "postgresql":
        _err(f"--election lock needs PostgreSQL, not {store.dialect}")
        store.close()
        return EXIT_USAGE
    server = None
    try:
        with (
            GameballClient(api_key, secret_key=secret_key, base_url=base_url) as client,
            _signals(finishing, stop),
        ):
            drainer = OutboxDrainer(
                store,
                client,
                limiter=limiter,
                order_limiter=order_limiter,
                lease=args.lease,
                claim_size=args.claim_size,
                concurrency=args.concurrency,
                bulk_threshold=args.bulk_threshold,
                stop=stop,
                finishing=finishing,
            )
            relay = Relay(
                store,
                drainer,
                election=election,
                lock_key=advisory_key(api_key) if election == "lock" else None,
                stats_interval=args.stats_interval,
                stats_stream=sys.stderr,
                grace=args.grace,
            )
            if args.metrics_port is not None:
                server = serve_metrics(relay.metrics, args.metrics_host, args.metrics_port)
                host, port = server.server_address[:2]
                _err(f"metrics on http://{host!s}:{port}/metrics")
            _err(f"started ({store.location}, election {election}, owner {drainer.owner})")
            code = relay.run()
    except GbtrackError as exc:
        _err(str(exc).splitlines()[0])
        return EXIT_FAILURE
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        store.close()
    m = relay.metrics
    print(
        f"delivered {m.delivered}, retried {m.failed}, dead {m.dead}, "
        f"requests {m.requests}, cpu {time.process_time():.2f}s, fenced {m.fenced}, "
        f"possibly sent {m.possibly_sent}",
        flush=True,
    )
    return code
