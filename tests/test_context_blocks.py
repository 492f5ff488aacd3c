"""``identify`` blocks: the token rule when merging, and what an open block reports."""

from __future__ import annotations

from gbtrack import current_identity, identify


def _token() -> str | None:
    token = current_identity().session_token
    return None if token is None else token.get_secret_value()


def test_an_explicit_none_token_clears_the_outer_one_for_the_same_customer() -> None:
    with identify("c-1", session_token="outer"):
        with identify("c-1", session_token=None):
            assert _token() is None
        with identify("c-1"):  # left out: kept
            assert _token() == "outer"
        with identify("c-1", session_token="inner"):
            assert _token() == "inner"
        with identify("c-2"):  # another customer: nothing kept
            assert _token() is None
        assert _token() == "outer"


def test_an_open_block_reports_what_it_set() -> None:
    fresh = identify("c-2", email="b@example.com")
    merged = identify(email="m@example.com")
    with identify("c-1", email="a@example.com", mobile="+201234567890"):
        with fresh:
            assert (fresh.customer_id, fresh.email, fresh.mobile) == ("c-2", "b@example.com", None)
            with merged:
                assert (merged.customer_id, merged.email) == ("c-2", "m@example.com")
                assert fresh.email == "b@example.com"  # what `fresh` set, not the inner one's
            assert current_identity().email == "b@example.com"
        assert (merged.customer_id, merged.email, merged.mobile) == (
            "c-1",
            "m@example.com",
            "+201234567890",
        )
    assert current_identity().customer_id is None


def test_a_fresh_block_entered_again_while_open() -> None:
    block = identify("c-2")
    with block:
        with identify("c-3"), block:
            assert current_identity().customer_id == "c-2"
            assert block.customer_id == "c-2"
        assert current_identity().customer_id == "c-2"
    assert current_identity().customer_id is None
