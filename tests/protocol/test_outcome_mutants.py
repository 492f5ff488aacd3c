"""Outcome classification at its edges: the cases mutation testing found unpinned.

Each test names the regression it catches (``nox -s mutate`` reports the rest).
"""

from __future__ import annotations

from typing import Any

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
    ClientFailure,
    Outcome,
    OutcomeKind,
    call_client,
    classify,
    classify_item,
    describe_outcome,
    item_status,
    refuses_version,
    safe_error,
)

R, A, P = OutcomeKind.RETRYABLE, OutcomeKind.AMBIGUOUS, OutcomeKind.PERMANENT


# --- item codes -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "status"),
    [
        (None, 500),  # no code: it reached Gameball, which may have processed it
        (100, 100),  # an HTTP status given as the code is itself, from 100 ...
        (429, 429),
        (599, 599),  # ... to 599
        (600, 422),  # not a status, not a documented code: a payload error
        (99, 422),
        (1003, 401),  # undocumented 1000-1999: authentication
        (1500, 401),
        (1999, 401),
        (2002, 422),  # undocumented 2xxx: payload
        (5001, 500),  # undocumented 5000-5999: server error
        (5999, 500),
        (7000, 422),
    ],
)
def test_item_status_of_every_range(code: int | None, status: int) -> None:
    assert item_status(code) == status


@pytest.mark.parametrize(
    ("code", "kind", "error"),
    [
        (429, R, RateLimitError),  # an item refused for the rate: surely not processed
        (503, R, ServerError),
        (5003, R, ServerError),
        (2001, R, ConflictError),
        (None, A, ServerError),
        (5001, A, ServerError),
        (599, A, ServerError),
        (600, P, PayloadError),  # a 600 code is no 5xx: never ambiguous
        (1003, P, AuthenticationError),
        (1999, P, AuthenticationError),
        (2000, P, PayloadError),
        (100, P, DeliveryError),  # a 1xx given as code: unexpected, permanent
    ],
)
def test_item_codes_classify_like_the_answers_they_stand_for(
    code: int | None, kind: OutcomeKind, error: type[DeliveryError]
) -> None:
    assert classify(None, code) == (kind, error)
    outcome = classify_item(code, "batch job 1 item 0 failed")
    assert outcome.kind is kind
    assert type(outcome.error) is error
    assert outcome.error.code == code


# --- answers ----------------------------------------------------------------------------
@pytest.mark.parametrize("status", [400, 409, 422, 499])
def test_code_2001_with_any_4xx_is_a_retryable_conflict(status: int) -> None:
    assert classify(status, 2001) == (R, ConflictError)


@pytest.mark.parametrize(("status", "code"), [(400, 1000), (422, 1001), (404, 1500), (400, 1999)])
def test_any_4xx_with_an_authentication_code_is_an_authentication_error(
    status: int, code: int
) -> None:
    assert classify(status, code) == (P, AuthenticationError)


@pytest.mark.parametrize(("status", "code"), [(401, None), (403, None), (401, 3003)])
def test_401_and_403_are_authentication_errors_with_or_without_a_code(
    status: int, code: int | None
) -> None:
    assert classify(status, code) == (P, AuthenticationError)


@pytest.mark.parametrize(("status", "code"), [(400, 999), (400, 2000), (499, None)])
def test_other_4xx_are_payload_errors(status: int, code: int | None) -> None:
    assert classify(status, code) == (P, PayloadError)


# --- minimum API version ----------------------------------------------------------------
@pytest.mark.parametrize("key", ["message", "type", "detail", "title", "error"])
def test_a_minimum_version_refusal_is_read_from_every_text_field(key: str) -> None:
    fields = {key: "The account requires a minimum API version of v4.1"}
    assert refuses_version(400, None, fields)
    assert not refuses_version(400, None, {"other": fields[key]})


@pytest.mark.parametrize(
    ("status", "code"),
    [(429, None), (400, 2001), (500, 1003), (503, 1003), (399, 1003), (429, 1003)],
)
def test_rate_limits_conflicts_and_non_4xx_never_refuse_the_version(
    status: int, code: int | None
) -> None:
    fields = {"message": "minimum version not met"}
    assert not refuses_version(status, code, fields)


def test_the_version_code_alone_is_a_refusal_on_any_other_4xx() -> None:
    assert refuses_version(400, 1003, {})
    assert refuses_version(499, 1003, {})
    assert not refuses_version(400, 1004, {})


# --- clients that misbehave -------------------------------------------------------------
def test_a_client_returning_a_non_outcome_is_named_in_the_failure() -> None:
    outcome = call_client(lambda: {"status": 200})
    assert outcome.permanent
    assert isinstance(outcome.error, ClientFailure)
    assert str(outcome.error) == "the Gameball client returned dict, not an outcome"
    raised = call_client(lambda: 1 / 0)
    assert str(raised.error) == "the Gameball client raised ZeroDivisionError"


# --- describing and scrubbing -----------------------------------------------------------
def test_describe_takes_the_status_from_the_outcome_then_from_the_error() -> None:
    error = ServerError("secret text", status=503, code=5003)
    assert describe_outcome(Outcome(R, status=429, error=RateLimitError("x"))) == (
        "HTTP 429, RateLimitError (retryable)"
    )
    assert describe_outcome(Outcome(R, error=error)) == (
        "HTTP 503, code 5003, ServerError (retryable)"
    )
    assert describe_outcome(Outcome(R, status=502, error=error)).startswith("HTTP 502,")
    assert describe_outcome(Outcome(A, error=ServerError("read timeout"))) == (
        "no HTTP answer, ServerError (ambiguous)"
    )
    # An outcome with neither status nor error is described, never a raise.
    assert describe_outcome(Outcome(A)) == "no HTTP answer (ambiguous)"


def test_safe_error_keeps_every_field_but_gameballs_free_text() -> None:
    error = PayloadError(
        "Invalid value john@example.com",
        status=422,
        code=3003,
        type="VALIDATION_ERROR",
        request_id="req-1",
    )
    outcome = Outcome(P, status=422, error=error)
    safe = safe_error(outcome)
    assert type(safe) is PayloadError
    assert safe is not error
    assert (safe.status, safe.code, safe.type, safe.request_id) == (
        422,
        3003,
        "VALIDATION_ERROR",
        "req-1",
    )
    assert str(safe) == describe_outcome(outcome)
    assert "john" not in str(safe)
    assert "john" not in repr(safe)
    assert safe_error(Outcome(OutcomeKind.DELIVERED, status=200)) is None


def test_repr_shows_what_is_set_and_nothing_else() -> None:
    assert repr(Outcome(OutcomeKind.DELIVERED)) == "Outcome(kind='delivered')"
    shown = repr(Outcome(R, status=429, error=RateLimitError("x", status=429), retry_after=2.0))
    assert shown == (
        "Outcome(kind='retryable', status=429, error=RateLimitError('x', status=429), "
        "retry_after=2.0)"
    )


def _job_id(body: Any) -> str | None:
    return Outcome(OutcomeKind.DELIVERED, status=200, body=body).job_id


def test_job_id_of_a_create_answer() -> None:
    assert _job_id({"jobId": 7}) == "7"
    assert _job_id({"JOBID": "7.0"}) == "7.0"
    assert _job_id({"jobId": " "}) is None
    assert Outcome(R, body={"jobId": 7}).job_id is None  # only a delivered answer has one
