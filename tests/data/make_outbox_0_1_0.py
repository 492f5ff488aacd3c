"""Make the gbtrack 0.1.0 outbox fixtures of ``tests/sql/test_upgrade_0_1_0.py``.

Run with the sources of gbtrack 0.1.0 (commit 1d98e58) first on the path, e.g.::

    git archive 1d98e58 src | tar -x -C /tmp/gbtrack-0.1.0
    PYTHONPATH=/tmp/gbtrack-0.1.0/src python tests/data/make_outbox_0_1_0.py tests/data

It writes ``outbox-0.1.0.sqlite3`` (an outbox file: three pending events, one dead
letter) and the SQL outbox's DDL of that version for SQLite and PostgreSQL
(``outbox-0.1.0-{dialect}.sql``).
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from gbtrack import Event
from gbtrack.outbox import OutboxStore
from gbtrack.outbox._sql import ddl

AT = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)


def main(target: Path) -> None:
    path = target / "outbox-0.1.0.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    events = [
        Event(
            name=f"old_{i}",
            customer_id=f"c-{i}",
            metadata={"n": i},
            event_id=f"old-{i}",
            timestamp=AT + dt.timedelta(seconds=i),
        )
        for i in range(4)
    ]
    with OutboxStore(path, max_rows=1000) as store:
        assert store.append(events, now=AT.timestamp() + 10) == 4
        [first] = store.claim("maker", 1, lease=30)
        store.bury([first.id], status=400, code=3000, message="rejected: old")
        # Fold the WAL into the file: the fixture is one self-contained file.
        store._db().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    for dialect in ("sqlite", "postgresql"):
        (target / f"outbox-0.1.0-{dialect}.sql").write_text(ddl(dialect), encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
