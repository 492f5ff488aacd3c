"""What an outbox store offers the drainer and the CLI, whatever holds the rows.

:class:`~gbtrack.outbox.OutboxStore` (a SQLite file) and
:class:`~gbtrack.outbox.SqlOutboxStore` (a table in the application's database) both
satisfy :class:`OutboxStoreProtocol`, so :class:`~gbtrack.outbox.OutboxDrainer` and
``gbtrack outbox ...`` work with either.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

from gbtrack._event import Event
from gbtrack.outbox._store import Kind, OutboxBacklog, OutboxRow, OutboxStats, StoredOrder, Table

__all__ = ["OutboxStoreProtocol"]


class OutboxStoreProtocol(Protocol):
    """The store interface: pending rows with leases, dead letters, operations.

    Row semantics are the same for every store: a row is *ready* when its retry time
    has come and nobody holds a live lease on it; :meth:`claim` leases ready rows to an
    owner; a delivered row is deleted (:meth:`complete`), a retryable failure puts it
    back (:meth:`release`), a final one moves it to the dead letter (:meth:`bury`).

    Each claim gives its rows a new claim token (:attr:`OutboxRow.claim_token`);
    :meth:`extend`, :meth:`complete`, :meth:`release` and :meth:`bury` given that token
    touch only rows still under that claim (fencing).

    A row holds an event or an order: :attr:`OutboxRow.kind` says which
    (:meth:`OutboxRow.event`, :meth:`OutboxRow.order` decode it). It keeps its kind
    in the dead letter and back. :attr:`OutboxRow.ambiguous` says that an attempt's
    answer was lost (``release``/``bury`` with ``ambiguous=True`` set it, nothing
    clears it): for an order, a duplicate answer then means delivered.
    """

    max_rows: int | None
    max_bytes: int | None

    @property
    def location(self) -> str:
        """Where the rows live, for messages (a path, or a URL without password)."""
        ...

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        ...

    def close(self) -> None:
        """Release connections; idempotent."""
        ...

    def append(self, items: Iterable[Event | StoredOrder], *, now: float | None = None) -> int:
        """Store events and orders as pending, in order; return how many fitted the caps."""
        ...

    def claim(
        self, owner: str, limit: int, *, lease: float, now: float | None = None
    ) -> list[OutboxRow]:
        """Lease up to ``limit`` ready rows to ``owner``, oldest first, under a new token."""
        ...

    def extend(
        self, owner: str, ids: Sequence[int], *, lease: float, token: str | None = None
    ) -> list[int]:
        """Renew ``owner``'s rows ``ids`` (under ``token``) for ``lease`` s; return those held."""
        ...

    def release_owner(self, owner: str) -> int:
        """Give back every row ``owner`` holds, attempts unchanged."""
        ...

    def complete(self, ids: Sequence[int], *, token: str | None = None) -> int:
        """Delete delivered rows (still under ``token`` when given); return how many."""
        ...

    def release(
        self,
        owner: str,
        ids: Sequence[int],
        *,
        delay: float = 0.0,
        error: str | None = None,
        count_attempt: bool = True,
        token: str | None = None,
        ambiguous: bool = False,
    ) -> None:
        """Give ``owner``'s rows (under ``token``) back, ready again after ``delay`` s."""
        ...

    def bury(
        self,
        ids: Sequence[int],
        *,
        status: int | None,
        code: int | None,
        message: str,
        count_attempt: bool = True,
        token: str | None = None,
        ambiguous: bool = False,
    ) -> int:
        """Move pending rows (under ``token``) to the dead letter; return how many."""
        ...

    def retry_dead(
        self,
        *,
        code: int | None = None,
        name: str | None = None,
        since: float | None = None,
        ids: Sequence[int] | None = None,
        kind: Kind | None = None,
    ) -> int:
        """Move matching dead letters back to pending; return how many."""
        ...

    def make_ready(self) -> int:
        """Clear the backoff of every unclaimed pending row; return how many."""
        ...

    def purge(self, table: Table) -> int:
        """Delete every row of ``table``; return how many."""
        ...

    def stats(self) -> OutboxStats:
        """Counts, the oldest pending event, sizes."""
        ...

    def count(
        self, table: Table = "pending", *, up_to_id: int | None = None, limit: int | None = None
    ) -> int:
        """Count rows of ``table`` (``id <= up_to_id`` when given; at most ``limit``)."""
        ...

    def backlog(self, cap: int = 10_000) -> OutboxBacklog:
        """Pending rows (exact up to ``cap``) and the oldest: a cost bounded by ``cap``."""
        ...

    def max_id(self, table: Table = "pending") -> int:
        """The highest row id in ``table`` (0 when none)."""
        ...

    def next_ready_in(self, now: float | None = None) -> float | None:
        """Seconds until some pending row becomes claimable; ``None`` when none."""
        ...

    def get(self, table: Table, row_id: int) -> OutboxRow | None:
        """Row ``row_id`` of ``table``, or ``None``."""
        ...

    def rows(
        self, table: Table = "pending", *, limit: int | None = None, offset: int = 0
    ) -> list[OutboxRow]:
        """Rows of ``table``, oldest first."""
        ...

    def iter_rows(self, table: Table = "pending", *, page: int = 500) -> Iterator[OutboxRow]:
        """Every row of ``table`` by pages, oldest first."""
        ...
