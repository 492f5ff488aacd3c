"""The durable outbox: events and orders survive crashes, deploys and long Gameball outages.

- :class:`OutboxSender`: a sender that writes every event to a local SQLite file
  before delivering it, and a :class:`~gbtrack.senders.Spill` for ``BackgroundSender``
  (events, and orders through ``spill_orders``).
- :class:`OutboxStore`: the file itself (pending rows, dead letters, leases, the cap);
  each row an event or an order (:attr:`OutboxRow.kind`; an order is kept as a
  :class:`StoredOrder`, its checked wire body).
- :class:`OutboxDrainer`: one delivery round at a time (the worker, and ``gbtrack outbox drain``).
- :class:`SqlOutboxStore`: the same rows in the application's SQL database (extra
  ``gbtrack[sql]``), written inside the business transaction by :func:`gbtrack.transaction`.
- :class:`OutboxStoreProtocol`: what the drainer and the CLI need of a store.
- :func:`default_outbox_path`: ``$GBTRACK_OUTBOX``, else the user's state directory.
- :class:`OutboxError`: what the store raises when the file fails (damaged, disk full).

See ``docs/reliability.md`` for what survives what.
"""

from typing import TYPE_CHECKING, Any

from gbtrack._errors import OutboxError
from gbtrack.outbox._paths import default_outbox_path, resolve_outbox_path
from gbtrack.outbox._protocol import OutboxStoreProtocol
from gbtrack.outbox._sender import DrainResult, OutboxDrainer, OutboxSender
from gbtrack.outbox._store import OutboxRow, OutboxStats, OutboxStore, StoredOrder

if TYPE_CHECKING:
    from gbtrack.outbox._sql import SqlOutboxStore

__all__ = [
    "DrainResult",
    "OutboxDrainer",
    "OutboxError",
    "OutboxRow",
    "OutboxSender",
    "OutboxStats",
    "OutboxStore",
    "OutboxStoreProtocol",
    "SqlOutboxStore",
    "StoredOrder",
    "default_outbox_path",
    "resolve_outbox_path",
]


def __getattr__(name: str) -> Any:
    # SqlOutboxStore needs SQLAlchemy (the ``sql`` extra): imported on first use only.
    if name == "SqlOutboxStore":
        from gbtrack.outbox._sql import SqlOutboxStore

        return SqlOutboxStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
