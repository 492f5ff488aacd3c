"""The durable outbox: events survive crashes, deploys and long Gameball outages.

- :class:`OutboxSender`: a sender that writes every event to a local SQLite file
  before delivering it, and a :class:`~gbtrack.senders.Spill` for ``BackgroundSender``.
- :class:`OutboxStore`: the file itself (pending rows, dead letters, leases, the cap).
- :class:`OutboxDrainer`: one delivery round at a time (the worker, and ``gbtrack outbox drain``).
- :func:`default_outbox_path`: ``$GBTRACK_OUTBOX``, else the user's state directory.
- :class:`OutboxError`: what the store raises when the file fails (damaged, disk full).

See ``docs/reliability.md`` for what survives what.
"""

from gbtrack._errors import OutboxError
from gbtrack.outbox._paths import default_outbox_path, resolve_outbox_path
from gbtrack.outbox._sender import DrainResult, OutboxDrainer, OutboxSender
from gbtrack.outbox._store import OutboxRow, OutboxStats, OutboxStore

__all__ = [
    "DrainResult",
    "OutboxDrainer",
    "OutboxError",
    "OutboxRow",
    "OutboxSender",
    "OutboxStats",
    "OutboxStore",
    "default_outbox_path",
    "resolve_outbox_path",
]
