"""identify(): isolation across threads and tasks, nesting and restore."""

from __future__ import annotations

import asyncio
import threading

import pytest
from pydantic import SecretStr

from gbtrack import GbtrackError, Identity, InvalidEventError, current_identity, identify
from gbtrack._context import complete_identity
from gbtrack._expr import MISSING
from gbtrack._types import UNSET


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


# --- gaps found by mutation testing: complete_identity and identify's fields --------------------
class _Sub(str):
    pass


def _secret(token: object) -> object:
    return token.get_secret_value() if isinstance(token, SecretStr) else token


def _complete(*fields: object) -> tuple[object, ...] | None:
    resolved = complete_identity(*fields)
    return None if resolved is None else (*resolved[:3], _secret(resolved[3]))


def test_complete_without_ambient() -> None:
    assert _complete(None, None, None, UNSET) is None
    assert _complete(MISSING, "a@x.io", None, UNSET) is None
    assert _complete("   ", None, None, UNSET) is None  # blank id counts as missing
    assert _complete("c", None, None, UNSET) == ("c", None, None, None)
    assert _complete("c", "a@x.io", "+1", "t") == ("c", "a@x.io", "+1", "t")
    assert _complete(42, MISSING, MISSING, MISSING) == ("42", None, None, None)


def test_complete_from_the_ambient_customer() -> None:
    with identify("amb", email="amb@x.io", mobile="+20", session_token="tok"):
        for cid in (None, MISSING, "", "  ", "amb", _Sub("amb")):
            assert _complete(cid, None, MISSING, UNSET) == ("amb", "amb@x.io", "+20", "tok")
        # Fields given override; explicit None / MISSING token means no token.
        assert _complete(None, "e@x.io", "+3", "t2") == ("amb", "e@x.io", "+3", "t2")
        assert _complete(None, None, None, None) == ("amb", "amb@x.io", "+20", None)
        assert _complete(None, None, None, MISSING) == ("amb", "amb@x.io", "+20", None)


def test_complete_for_another_customer_takes_nothing_ambient() -> None:
    with identify("amb", email="amb@x.io", mobile="+20", session_token="tok"):
        assert _complete("other", None, MISSING, UNSET) == ("other", None, None, None)
        assert _complete(7, MISSING, None, UNSET) == ("7", None, None, None)
        assert _complete("other", "o@x.io", "+9", "t") == ("other", "o@x.io", "+9", "t")


def test_complete_converts_and_checks_email_and_mobile() -> None:
    resolved = complete_identity("c", _Sub("a@x.io"), _Sub("+1"), UNSET)
    assert resolved is not None
    assert (type(resolved[1]), type(resolved[2])) == (str, str)
    # A blank email or mobile given explicitly is dropped, not completed from identify().
    with identify("c", email="amb@x.io", mobile="+20"):
        assert _complete("c", "  ", "", UNSET) == ("c", None, None, None)
    with pytest.raises(InvalidEventError, match="email must be a str") as info:
        complete_identity("c", 5, None, UNSET)
    assert info.value.field == "email"
    with pytest.raises(InvalidEventError, match="mobile must be a str") as info:
        complete_identity("c", None, 5, UNSET)
    assert info.value.field == "mobile"
    with pytest.raises(InvalidEventError, match="customer_id must be"):
        complete_identity(True, None, None, UNSET)
    with pytest.raises(InvalidEventError, match="session_token must be"):
        complete_identity("c", None, None, 5)


def test_block_fields_before_inside_and_after() -> None:
    with identify("c", email="a@x.io", mobile="+1", session_token="t"):
        block = identify(email="b@x.io")
        # Before entering: what it would set, merged with the current identity.
        assert (block.customer_id, block.email, block.mobile) == ("c", "b@x.io", "+1")
        with block:
            assert (block.customer_id, block.email, block.mobile) == ("c", "b@x.io", "+1")
            assert block.identity == current_identity()
            assert _secret(block.identity.session_token) == "t"
        other = identify("d", mobile="+2")
        assert (other.customer_id, other.email, other.mobile) == ("d", None, "+2")
        assert other.identity.session_token is None


def test_block_fields_are_those_of_the_innermost_entry() -> None:
    block = identify(email="e@x.io")
    with identify("c1"), block:
        assert block.customer_id == "c1"
        with identify("c2"), block:
            assert block.customer_id == "c2"
            assert current_identity().customer_id == "c2"
        assert block.customer_id == "c1"
        assert current_identity() == Identity(customer_id="c1", email="e@x.io")
    assert current_identity() == Identity()


def test_identify_converts_at_creation() -> None:
    block = identify(_Sub("c"), email=_Sub("a@x.io"), mobile=_Sub("+1"), session_token=_Sub("t"))
    assert (type(block.customer_id), type(block.email), type(block.mobile)) == (str, str, str)
    assert identify("  ").customer_id is None
    assert identify(email="  ").email is None
    for bad in ({"customer_id": True}, {"email": 1}, {"mobile": 1}, {"session_token": 1}):
        with pytest.raises(InvalidEventError) as info:
            identify(**bad)  # type: ignore[arg-type]
        assert info.value.field == next(iter(bad))


def test_blank_customer_id_keeps_the_outer_identity() -> None:
    with identify("c", email="a@x.io"), identify("  ", mobile="+1"):
        assert current_identity() == Identity(customer_id="c", email="a@x.io", mobile="+1")


def test_same_customer_keeps_outer_fields_and_token() -> None:
    with identify("c", email="a@x.io", mobile="+1", session_token="t"), identify("c"):
        inner = current_identity()
        assert (inner.customer_id, inner.email, inner.mobile) == ("c", "a@x.io", "+1")
        assert _secret(inner.session_token) == "t"


def test_current_identity_follows_every_change() -> None:
    first = current_identity()
    with identify("a"):
        a = current_identity()
        assert a.customer_id == "a"
        with identify("b"):
            assert current_identity().customer_id == "b"
        assert current_identity() == a
    assert current_identity() == first == Identity()


async def test_async_with_sets_and_restores() -> None:
    block = identify("c", email="a@x.io")
    async with block as entered:
        assert entered is block
        assert current_identity().email == "a@x.io"
    assert current_identity() == Identity()
    with pytest.raises(RuntimeError):
        async with identify("d"):
            raise RuntimeError
    assert current_identity() == Identity()


def test_repr_without_token() -> None:
    text = repr(identify("c", session_token=None))
    assert "identify(customer_id='c'" in text
    assert "session_token=None" in text
    assert "session_token=***" in repr(identify("c", session_token="x"))


def test_block_describes_what_it_set_even_under_an_inner_block() -> None:
    block = identify("c", email="a@x.io")
    with block, identify("d", mobile="+9"):
        assert (block.customer_id, block.email, block.mobile) == ("c", "a@x.io", None)
        assert block.identity == Identity(customer_id="c", email="a@x.io")
        assert current_identity().customer_id == "d"
    keeps = identify(email="a@x.io")  # no customer: what it set depends on the outer block
    with identify("c"), keeps, identify("d", mobile="+9"):
        assert (keeps.customer_id, keeps.email, keeps.mobile) == ("c", "a@x.io", None)


def test_current_identity_is_built_once_per_block() -> None:
    with identify("c", email="a@x.io"):
        first = current_identity()
        again = current_identity()
        assert first is again
        assert again == Identity(customer_id="c", email="a@x.io")


def test_one_block_entered_again_while_open_restores_each_level() -> None:
    """A block object re-entered while open stacks: each exit restores the level below."""
    block = identify("c-1", email="a@x.io")
    with identify("c-0"):
        with block:
            with identify(email="b@x.io"):
                with block:
                    assert current_identity().email == "a@x.io"
                assert current_identity().email == "b@x.io"
            assert current_identity().customer_id == "c-1"
            assert block.email == "a@x.io"
        assert current_identity().customer_id == "c-0"
    assert current_identity().customer_id is None
    assert block.customer_id == "c-1"  # closed: computed against the current identity


def test_exit_without_enter_is_a_clear_error() -> None:
    with pytest.raises(GbtrackError, match="without being entered"):
        identify("c-1").__exit__(None, None, None)
