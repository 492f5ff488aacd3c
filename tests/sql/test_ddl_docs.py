"""The DDL in docs/scaling.md is what SQLAlchemy generates from the outbox's metadata."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gbtrack.outbox._sql import ddl

PAGE = Path(__file__).resolve().parents[2] / "docs" / "scaling.md"


def _documented() -> dict[str, str]:
    text = PAGE.read_text(encoding="utf-8")
    found = re.findall(r"<!-- ddl:(\w+) -->\n```sql\n(.*?)```", text, flags=re.S)
    return dict(found)


@pytest.mark.parametrize("dialect", ["postgresql", "mysql", "sqlite"])
def test_docs_ddl_matches_the_metadata(dialect: str) -> None:
    documented = _documented()
    assert dialect in documented, f"docs/scaling.md has no <!-- ddl:{dialect} --> block"
    assert documented[dialect] == ddl(dialect), (
        f"docs/scaling.md's {dialect} DDL drifted: paste `gbtrack outbox ddl --dialect "
        f"{dialect}` into it"
    )


def test_the_ddl_creates_working_tables(tmp_path: Path) -> None:
    """The documented SQLite DDL, run by hand, makes tables the store accepts."""
    import sqlite3

    from tests.outbox.conftest import make_events

    from gbtrack.outbox._sql import SqlOutboxStore

    path = tmp_path / "migrated.db"
    with sqlite3.connect(path) as db:
        db.executescript(_documented()["sqlite"])
    with SqlOutboxStore(f"sqlite:///{path}") as store:
        assert store.append(make_events(3)) == 3
        assert len(store.claim("w", 10, lease=30)) == 3
