"""identify(): isolation across threads and tasks, nesting and restore."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gbtrack import Identity, current_identity, identify


def test_outside_identify_is_empty() -> None:
    assert current_identity() == Identity()


def test_sets_and_restores() -> None:
    with identify("c-1", email="a@example.com", mobile="+20100") as block:
        assert block.customer_id == "c-1"
        assert current_identity() == block.identity
        assert current_identity() is current_identity()  # built once per block
    assert current_identity() == Identity()


def test_int_customer_id_stringified() -> None:
    with identify(42):
        assert current_identity().customer_id == "42"


def test_nesting_same_customer_overrides_fields() -> None:
    with identify("c", email="a@example.com", session_token="t1"):
        with identify(email="b@example.com"):
            inner = current_identity()
            assert (inner.customer_id, inner.email) == ("c", "b@example.com")
            assert inner.session_token is not None
            assert inner.session_token.get_secret_value() == "t1"
        with identify(session_token=None):
            assert current_identity().session_token is None
        assert current_identity().email == "a@example.com"


def test_nesting_other_customer_starts_fresh() -> None:
    with identify("c", email="a@example.com", session_token="t"):
        with identify("d"):
            inner = current_identity()
            assert (inner.customer_id, inner.email, inner.session_token) == ("d", None, None)
        assert current_identity().customer_id == "c"


def test_restored_after_exception() -> None:
    with pytest.raises(RuntimeError), identify("c"):
        raise RuntimeError
    assert current_identity().customer_id is None


def test_reusable_and_reentrant_object() -> None:
    block = identify("c")
    with block, block:
        assert current_identity().customer_id == "c"
    assert current_identity().customer_id is None


def test_threads_are_isolated() -> None:
    barrier = threading.Barrier(8)
    seen: dict[int, str | None] = {}

    def worker(i: int) -> None:
        with identify(f"t{i}"):
            barrier.wait(timeout=30)  # all threads inside their own block at once
            seen[i] = current_identity().customer_id

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    with identify("main"):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert current_identity().customer_id == "main"
    assert seen == {i: f"t{i}" for i in range(8)}


async def test_tasks_are_isolated() -> None:
    inside = asyncio.Event()
    count = 0

    async def worker(i: int) -> str | None:
        nonlocal count
        async with identify(f"a{i}"):
            count += 1
            if count == 10:
                inside.set()
            await inside.wait()  # every task holds its identity at the same time
            return current_identity().customer_id

    results = await asyncio.gather(*(worker(i) for i in range(10)))
    assert results == [f"a{i}" for i in range(10)]
    assert current_identity().customer_id is None


async def test_task_inherits_identity_at_creation() -> None:
    async def read() -> str | None:
        return current_identity().customer_id

    with identify("parent"):
        task = asyncio.create_task(read())
    assert await task == "parent"


def test_repr_masks_pii_and_hides_token() -> None:
    with identify("c", email="john@example.com", mobile="+201234567890", session_token="sekret"):
        text = repr(current_identity())
    assert "john@" not in text
    assert "j***@example.com" in text
    assert "+201234567890" not in text
    assert "***7890" in text
    assert "sekret" not in text
