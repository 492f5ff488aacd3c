"""The one classification: every documented Gameball code, as an answer and as a batch item.

Answers (an HTTP status plus a Gameball code) and failed batch items (a code only) go
through :func:`gbtrack._protocol.classify`; the senders and the outbox only call it.
"""

from __future__ import annotations

import pytest

from gbtrack import (
    AuthenticationError,
    ConflictError,
    DeliveryError,
    PayloadError,
    RateLimitError,
    ServerError,
)
from gbtrack._protocol import (
    GAMEBALL_CODES,
    OutcomeKind,
    classify,
    classify_item,
    item_status,
)

R, A, P = OutcomeKind.RETRYABLE, OutcomeKind.AMBIGUOUS, OutcomeKind.PERMANENT

# Every code gameball-api.md documents for events, with its status and its meaning.
DOCUMENTED: dict[int, tuple[int, OutcomeKind, type[DeliveryError]]] = {
    1000: (401, P, AuthenticationError),
    1001: (401, P, AuthenticationError),
    1002: (403, P, AuthenticationError),
    2000: (412, P, PayloadError),
    2001: (422, R, ConflictError),
    3000: (400, P, PayloadError),
    3001: (422, P, PayloadError),
    3003: (422, P, PayloadError),
    3011: (422, P, PayloadError),
    3013: (415, P, PayloadError),
    3016: (400, P, PayloadError),
    3017: (404, P, PayloadError),
    5000: (500, A, ServerError),
    5003: (503, R, ServerError),
    6000: (422, P, PayloadError),
}


def test_the_table_lists_every_documented_code() -> None:
    assert {code: status for code, (status, *_) in DOCUMENTED.items()} == {
        code: status for code, (status, _) in GAMEBALL_CODES.items()
    }


@pytest.mark.parametrize("code", sorted(DOCUMENTED))
def test_documented_code_as_an_answer(code: int) -> None:
    status, kind, error = DOCUMENTED[code]
    assert classify(status, code) == (kind, error)


@pytest.mark.parametrize("code", sorted(DOCUMENTED))
def test_documented_code_as_a_batch_item_means_the_same(code: int) -> None:
    status, kind, error = DOCUMENTED[code]
    assert item_status(code) == status
    outcome = classify_item(code, f"batch job 1 item 0 failed ({code})")
    assert (outcome.kind, type(outcome.error)) == (kind, error)
    assert outcome.error is not None
    assert outcome.error.code == code
    assert outcome.status is None  # an item has no HTTP answer of its own


@pytest.mark.parametrize(
    ("status", "code", "kind", "error"),
    [
        (429, None, R, RateLimitError),
        (429, 3003, R, RateLimitError),
        (503, None, R, ServerError),
        (500, 5003, R, ServerError),
        (502, None, A, ServerError),
        (504, None, A, ServerError),
        (507, None, A, ServerError),
        (500, 1000, A, ServerError),  # a 5xx may have been processed, whatever the code
        (401, None, P, AuthenticationError),  # a 401 without a Gameball code
        (403, None, P, AuthenticationError),
        (400, 1003, P, AuthenticationError),  # the minimum-version refusal
        (422, 1999, P, AuthenticationError),  # any 1000-1999 code is auth
        (422, 2001, R, ConflictError),
        (500, 2001, A, ServerError),  # 2001 retries only on a 4xx
        (418, None, P, PayloadError),
        (422, 999, P, PayloadError),
        (422, 2000, P, PayloadError),
        (302, None, P, DeliveryError),
        (101, None, P, DeliveryError),
    ],
)
def test_answers_beyond_the_documented_pairs(
    status: int, code: int | None, kind: OutcomeKind, error: type[DeliveryError]
) -> None:
    assert classify(status, code) == (kind, error)


@pytest.mark.parametrize(
    ("code", "kind", "error"),
    [
        (None, A, ServerError),  # failed without a code: it reached Gameball
        (429, R, RateLimitError),  # a status given as the item's code
        (503, R, ServerError),
        (500, A, ServerError),
        (401, P, AuthenticationError),
        (422, P, PayloadError),
        (1003, P, AuthenticationError),
        (1500, P, AuthenticationError),
        (1999, P, AuthenticationError),
        (999, P, PayloadError),
        (2000, P, PayloadError),
        (2002, P, PayloadError),
        (5001, A, ServerError),
        (5999, A, ServerError),
        (6001, P, PayloadError),
        (0, P, PayloadError),
        (-1, P, PayloadError),
    ],
)
def test_batch_item_codes_beyond_the_documented_ones(
    code: int | None, kind: OutcomeKind, error: type[DeliveryError]
) -> None:
    outcome = classify_item(code, "batch job 1 item 0 failed")
    assert (outcome.kind, type(outcome.error)) == (kind, error)
    assert str(outcome.error) == "batch job 1 item 0 failed"
