"""``gbtrack outbox ...``: inspect and operate the durable outbox.

Registered by :mod:`gbtrack.cli` through :func:`register`. Every subcommand returns an
exit code a script can rely on (see ``EXIT_CODES``). Email and mobile are masked in
``list`` and ``show``; keys are never printed (they are not stored at all).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import re
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from gbtrack._errors import GbtrackError
from gbtrack.outbox._paths import ENV_VAR, default_outbox_path
from gbtrack.outbox._protocol import OutboxStoreProtocol
from gbtrack.outbox._store import OutboxRow, OutboxStore, Table

__all__ = ["EXIT_ABORTED", "EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "register"]

EXIT_OK = 0
"""Done."""
EXIT_FAILURE = 1
"""Something failed: an error, events left undelivered or moved to the dead letter."""
EXIT_USAGE = 2
"""Bad arguments (argparse's own code), or a missing API key."""
EXIT_ABORTED = 3
"""Nothing to do (no outbox, nothing matched, nothing pending) or aborted at the prompt."""

EXIT_CODES = """\
exit codes:
  0  done
  1  failure (an error; drain: events left pending or moved to the dead letter)
  2  usage error (bad arguments, no API key for drain)
  3  nothing to do (no outbox file, nothing matched, nothing pending) or aborted
"""

ENV_API_KEY = "GAMEBALL_API_KEY"
ENV_SECRET_KEY = "GAMEBALL_SECRET_KEY"  # noqa: S105 - a variable name, not a key
ENV_BASE_URL = "GAMEBALL_BASE_URL"
ENV_URL = "GBTRACK_OUTBOX_URL"
"""The SQL outbox's database URL when neither ``--url`` nor ``--path`` is given."""
_PROGRESS_INTERVAL = 5.0  # seconds between progress lines when stderr is not a terminal


def _fmt(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "epilog": EXIT_CODES,
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }


def register(subparsers: Any) -> None:
    """Add the ``outbox`` command and its subcommands to ``gbtrack``'s parser."""
    outbox = subparsers.add_parser(
        "outbox",
        help="inspect and operate the durable outbox",
        **_fmt(
            "Inspect and operate the durable outbox: a SQLite file, or the SQL outbox\n"
            "tables in your database (--url, the sql extra).\n\n"
            f"The outbox: --url URL (or ${ENV_URL}) for the SQL outbox, e.g.\n"
            "postgresql+psycopg://user@host/db or sqlite:///app.db; else the file: --path,\n"
            f"else ${ENV_VAR}, else $XDG_STATE_HOME/gbtrack/outbox.sqlite3\n"
            "(default ~/.local/state/gbtrack/outbox.sqlite3)."
        ),
    )
    outbox.add_argument("--path", type=Path, default=None, help="the outbox file")
    outbox.add_argument("--url", default=None, help="the SQL outbox's database URL")
    outbox.set_defaults(func=lambda args: _help(outbox))
    sub = _PathSubparsers(outbox.add_subparsers(dest="outbox_command", metavar="SUBCOMMAND"))

    stats = sub.add_parser(
        "stats", help="pending, dead, oldest age, size", **_fmt("Show what the outbox holds.")
    )
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(func=_stats)

    listing = sub.add_parser(
        "list", help="list rows (PII masked)", **_fmt("List rows, oldest first; PII masked.")
    )
    listing.add_argument("--dead", action="store_true", help="list dead letters, not pending")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=_list)

    show = sub.add_parser("show", help="show one row (PII masked)", **_fmt("Show one row."))
    show.add_argument("id", type=int, help="the row id (see list)")
    show.add_argument("--dead", action="store_true", help="the id is a dead letter's")
    show.set_defaults(func=_show)

    retry = sub.add_parser(
        "retry",
        help="move dead letters back to pending",
        **_fmt("Move dead letters back to pending (all, or those matching every filter)."),
    )
    retry.add_argument("--code", type=int, help="only this Gameball error code")
    retry.add_argument("--name", help="only this event name (orders: this order id)")
    retry.add_argument("--kind", choices=("event", "order"), help="only events, or only orders")
    retry.add_argument(
        "--since",
        type=_parse_since,
        help="only those that failed since: an ISO time or an age like 30m, 2h, 1d",
    )
    retry.set_defaults(func=_retry)

    purge = sub.add_parser(
        "purge",
        help="delete rows (asks first)",
        **_fmt("Delete every dead letter (--dead) or pending row (--pending). Asks first."),
    )
    which = purge.add_mutually_exclusive_group(required=True)
    which.add_argument("--dead", action="store_true", help="delete the dead letters")
    which.add_argument("--pending", action="store_true", help="delete the pending rows")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(func=_purge)

    drain = sub.add_parser(
        "drain",
        help="deliver pending rows now",
        **_fmt(
            "Deliver pending rows now, with progress on stderr (on a terminal; otherwise at\n"
            f"most one line every {_PROGRESS_INTERVAL:g} s) and a summary on stdout, with the "
            "last error.\n"
            f"Keys come from --api-key/--secret-key or ${ENV_API_KEY}/${ENV_SECRET_KEY};\n"
            "with a secret key a large backlog goes through the batch endpoint.\n"
            "A refused key (401/403) stops the drain at once and leaves the rows pending."
        ),
    )
    drain.add_argument("--api-key", help=f"Gameball API key (default ${ENV_API_KEY})")
    drain.add_argument("--secret-key", help=f"Gameball secret key (default ${ENV_SECRET_KEY})")
    drain.add_argument(
        "--base-url", type=_base_url, help=f"Gameball base URL (default ${ENV_BASE_URL})"
    )
    drain.add_argument(
        "--timeout", type=_seconds, default=300.0, help="give up after this many seconds (300)"
    )
    drain.add_argument(
        "--bulk-threshold", type=int, default=2_000, help="backlog that uses the batch endpoint"
    )
    drain.set_defaults(func=_drain)

    export = sub.add_parser(
        "export",
        help="print rows as JSON lines",
        **_fmt("Print rows as JSON lines (unmasked unless --mask: this is your data)."),
    )
    export.add_argument("--dead", action="store_true", help="export dead letters, not pending")
    export.add_argument("--mask", action="store_true", help="mask email and mobile")
    export.set_defaults(func=_export)

    init = sub.add_parser(
        "init",
        help="create the SQL outbox tables (--url)",
        **_fmt(
            "Create the SQL outbox tables (gbtrack_outbox, gbtrack_outbox_dead) and their\n"
            "indexes in the database at --url, if missing. With Alembic or Django\n"
            "migrations, use `gbtrack outbox ddl` instead and keep the DDL in a migration."
        ),
    )
    init.set_defaults(func=_init)

    ddl = sub.add_parser(
        "ddl",
        help="print the SQL outbox's CREATE statements",
        **_fmt(
            "Print the CREATE TABLE / CREATE INDEX statements of the SQL outbox for a\n"
            "dialect (--dialect postgresql|mysql|sqlite, or that of --url), for migrations."
        ),
    )
    ddl.add_argument("--dialect", help="postgresql, mysql, sqlite, ... (default: --url's)")
    ddl.set_defaults(func=_ddl)


class _PathSubparsers:
    """Add subcommands that also take ``--path`` after their name.

    ``gbtrack outbox stats --path x.db`` works as ``gbtrack outbox --path x.db stats``:
    the subcommand's ``--path`` defaults to "not given", so it never hides the other.
    """

    def __init__(self, subparsers: Any) -> None:
        self._subparsers = subparsers

    def add_parser(self, name: str, **options: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self._subparsers.add_parser(name, **options)
        parser.add_argument("--path", type=Path, default=argparse.SUPPRESS, help="the outbox file")
        parser.add_argument(
            "--url", default=argparse.SUPPRESS, help="the SQL outbox's database URL"
        )
        return parser


def _base_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an http:// or https:// URL (e.g. https://api.gameball.co)"
        )
    return text.strip()


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _parse_since(text: str) -> float:
    """An ISO time (naive means UTC) or an age like ``30m``; returns epoch seconds."""
    match = _AGE.match(text)
    if match:
        return time.time() - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        when = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO time nor an age like 30m, 2h, 1d"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return when.timestamp()


def _err(message: str) -> None:
    print(f"gbtrack outbox: {message}", file=sys.stderr)


def _url(args: argparse.Namespace) -> str | None:
    """The SQL outbox's URL: ``--url``, else ``$GBTRACK_OUTBOX_URL`` unless ``--path``."""
    if args.url:
        return str(args.url)
    if args.path is None:
        return os.environ.get(ENV_URL, "").strip() or None
    return None


def _open(args: argparse.Namespace) -> OutboxStoreProtocol | None:
    url = _url(args)
    if url is not None:
        if args.path is not None:
            raise _Usage("give --path (a SQLite outbox file) or --url (a SQL outbox), not both")
        from gbtrack.outbox._sql import SqlOutboxStore

        return SqlOutboxStore(url)
    path = args.path if args.path is not None else default_outbox_path()
    if not Path(path).exists():
        _err(f"no outbox at {str(path)!r}")
        return None
    return OutboxStore(path)


class _Usage(Exception):
    """A usage error found after parsing (exit 2)."""


def _guard(func: Any) -> Any:
    """Run a subcommand with its store; map errors to exit codes."""

    def run(args: argparse.Namespace) -> int:
        try:
            store = _open(args)
            if store is None:
                return EXIT_ABORTED
            try:
                return int(func(args, store))
            finally:
                store.close()
        except _Usage as exc:
            _err(str(exc))
            return EXIT_USAGE
        except GbtrackError as exc:  # OutboxError for a damaged file: one line, no traceback
            _err(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return EXIT_FAILURE
        except (sqlite3.Error, OSError) as exc:  # a last resort; the store translates these
            _err(f"{type(exc).__name__}: {exc}")
            return EXIT_FAILURE

    run.__doc__ = func.__doc__
    return run


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return _dt.datetime.fromtimestamp(stamp, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@_guard
def _stats(args: argparse.Namespace, store: OutboxStoreProtocol) -> int:
    stats = store.stats()
    data = {
        "path" if isinstance(store, OutboxStore) else "url": store.location,
        "pending": stats.pending,
        "claimed": stats.claimed,
        "dead": stats.dead,
        "pending_orders": stats.pending_orders,
        "dead_orders": stats.dead_orders,
        "oldest_age_seconds": stats.oldest_age(),
        "rows": stats.rows,
        "max_rows": store.max_rows,
        "bytes": stats.bytes,
        "file_bytes": stats.file_bytes,
    }
    if args.json:
        print(json.dumps(data))
    else:
        print(f"outbox      {store.location}")
        print(f"pending     {stats.pending} ({stats.claimed} claimed)")
        print(f"dead        {stats.dead}")
        print(f"orders      {stats.pending_orders} pending, {stats.dead_orders} dead")
        print(f"oldest age  {_age(stats.oldest_age())}")
        print(f"size        {stats.rows} rows, {stats.bytes} bytes; file {stats.file_bytes} bytes")
    return EXIT_OK


def _line(row: OutboxRow) -> str:
    data = row.to_dict()
    item = data.get("order" if row.kind == "order" else "event") or {}
    who = " ".join(x for x in (item.get("email"), item.get("mobile")) if x)
    # An order's name is its id; an event's kind goes without saying (0.1.0's lines).
    what = f"order {row.name}" if row.kind == "order" else row.name
    base = f"{row.id:>8}  {_when(row.created_at)}  {what}  customer={row.customer_id}"
    if who:
        base += f"  {who}"
    base += f"  attempts={row.attempts}"
    if row.table == "dead":
        return f"{base}  status={row.status} code={row.code}  {row.message or ''}".rstrip()
    if row.last_error:
        return f"{base}  last_error={row.last_error}"
    return base


@_guard
def _list(args: argparse.Namespace, store: OutboxStoreProtocol) -> int:
    table: Table = "dead" if args.dead else "pending"
    for row in store.rows(table, limit=max(0, args.limit)):
        print(json.dumps(row.to_dict()) if args.json else _line(row))
    return EXIT_OK


@_guard
def _show(args: argparse.Namespace, store: OutboxStoreProtocol) -> int:
    table: Table = "dead" if args.dead else "pending"
    row = store.get(table, args.id)
    if row is None:
        _err(f"no {table} row with id {args.id}")
        return EXIT_FAILURE
    print(json.dumps(row.to_dict(), indent=2))
    return EXIT_OK


@_guard
def _retry(args: argparse.Namespace, store: OutboxStoreProtocol) -> int:
    moved = store.retry_dead(code=args.code, name=args.name, since=args.since, kind=args.kind)
    print(f"moved {moved} dead letter(s) back to pending")
    return EXIT_OK if moved else EXIT_ABORTED


def _confirm(question: str, stdin: TextIO) -> bool:
    if not stdin.isatty():
        return False  # a script must say --yes
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    return stdin.readline().strip().lower() in ("y", "yes")


@_guard
def _purge(args: argparse.Namespace, store: OutboxStoreProtocol) -> int:
    table: Table = "dead" if args.dead else "pending"
    count = store.count(table)
    if count == 0:
        print(f"no {table} rows")
        return EXIT_ABORTED
    if not args.yes and not _confirm(f"delete {count} {table} row(s)?", sys.stdin):
        _err("aborted (pass --yes to purge without asking)")
        return EXIT_ABORTED
    print(f"deleted {store.purge(table)} {table} row(s)")
    return EXIT_OK


@_guard
def _export(args: argparse.Namespace, store: OutboxStoreProtocol) -> int:
    table: Table = "dead" if args.dead else "pending"
    n = 0
    for row in store.iter_rows(table):
        print(json.dumps(row.to_dict(mask=args.mask)))
        n += 1
    return EXIT_OK if n else EXIT_ABORTED


def _init(args: argparse.Namespace) -> int:
    """Create the SQL outbox tables (``--url`` or ``$GBTRACK_OUTBOX_URL``)."""
    url = _url(args)
    if url is None:
        _err(f"init needs the database: --url URL or ${ENV_URL}")
        return EXIT_USAGE
    try:
        from gbtrack.outbox._sql import SqlOutboxStore

        with SqlOutboxStore(url, create=True) as store:
            print(f"outbox tables ready in {store.location}")
    except GbtrackError as exc:
        _err(str(exc).splitlines()[0])
        return EXIT_FAILURE
    return EXIT_OK


def _ddl(args: argparse.Namespace) -> int:
    """Print the DDL for ``--dialect`` (or ``--url``'s dialect)."""
    dialect = args.dialect
    if dialect is None:
        url = _url(args)
        if url is None:
            _err(f"ddl needs --dialect NAME or --url URL (or ${ENV_URL})")
            return EXIT_USAGE
        from sqlalchemy.engine import make_url

        try:
            dialect = make_url(url).get_backend_name()
        except Exception as exc:
            _err(f"not a database URL: {type(exc).__name__}")
            return EXIT_USAGE
    from gbtrack.outbox._sql import ddl

    try:
        print(ddl(dialect), end="")
    except GbtrackError as exc:
        _err(str(exc))
        return EXIT_USAGE
    return EXIT_OK


def setting(value: str | None, env: str) -> str | None:
    """A command-line value, else the environment variable ``env`` (blank: ``None``)."""
    if value:
        return value
    return os.environ.get(env, "").strip() or None


def _bar(done: int, total: int, width: int = 24) -> str:
    """A text progress bar, ``[#########...............]  37%``."""
    share = min(done, total) / total if total else 1.0
    filled = int(width * share)
    return f"[{'#' * filled}{'.' * (width - filled)}] {int(100 * share):3d}%"


@_guard
def _drain(args: argparse.Namespace, store: OutboxStoreProtocol) -> int:
    from gbtrack.gameball import DEFAULT_BASE_URL, GameballClient
    from gbtrack.outbox._sender import DrainResult, OutboxDrainer

    api_key = setting(args.api_key, ENV_API_KEY)
    if api_key is None:
        _err(f"drain needs an API key: --api-key or ${ENV_API_KEY}")
        return EXIT_USAGE
    secret_key = setting(args.secret_key, ENV_SECRET_KEY)
    base_url = setting(args.base_url, ENV_BASE_URL) or DEFAULT_BASE_URL
    mark = store.max_id("pending")
    total = store.count("pending")
    if total == 0:
        print("nothing to drain")
        return EXIT_ABORTED
    store.make_ready()  # "now": skip backoff waits left by a worker
    summary = DrainResult()
    deadline = time.monotonic() + args.timeout
    progress = _Progress(total, sys.stderr)
    with GameballClient(api_key, secret_key=secret_key, base_url=base_url) as client:
        drainer = OutboxDrainer(
            store, client, bulk_threshold=args.bulk_threshold, halt_on_auth=True
        )
        try:
            while time.monotonic() < deadline:
                left = store.count("pending", up_to_id=mark)
                if left == 0:
                    break
                result = drainer.run_once()
                summary.add(result)
                if drainer.halted is not None:
                    break
                progress.show(summary)
                if not result.claimed:
                    wait = store.next_ready_in()
                    if wait is None:
                        break
                    time.sleep(min(max(wait, 0.01), 1.0, max(0.0, deadline - time.monotonic())))
        finally:
            drainer.close()
    progress.end()
    left = store.count("pending", up_to_id=mark)
    if drainer.halted is not None:
        _err(
            f"drain stopped: Gameball refused the credentials ({drainer.halted.error}); "
            f"check the API key and secret key (--api-key/--secret-key or ${ENV_API_KEY}/"
            f"${ENV_SECRET_KEY}); {left} row(s) left pending, none moved to the dead letter"
        )
    line = (
        f"delivered {summary.delivered}, dead {summary.dead}, retried {summary.retried}, "
        f"left pending {left}"
    )
    failed = left != 0 or summary.dead != 0
    if failed and summary.last_error:
        line += f"; last error: {summary.last_error}"
    print(line)
    return EXIT_FAILURE if failed else EXIT_OK


class _Progress:
    """Drain progress on stderr: redrawn in place on a terminal, else a line now and then."""

    def __init__(self, total: int, stream: TextIO, interval: float = _PROGRESS_INTERVAL) -> None:
        self.total = total
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = interval
        self.next_line = time.monotonic() + interval
        self.drawn = False

    def show(self, summary: Any) -> None:
        done = summary.delivered + summary.dead
        line = (
            f"{_bar(done, self.total)} drain: {done}/{self.total} settled, "
            f"{summary.delivered} delivered, {summary.dead} dead, {summary.retried} retried"
        )
        if self.tty:
            print(f"\r{line}", end="", file=self.stream, flush=True)
            self.drawn = True
        elif time.monotonic() >= self.next_line:
            # A log file or a pipe: one line per interval, not one per round.
            print(line, file=self.stream, flush=True)
            self.next_line = time.monotonic() + self.interval

    def end(self) -> None:
        if self.drawn:
            print(file=self.stream)
