"""Answers and transport failures mapped to outcomes; batch status parsing."""

from __future__ import annotations

import email.utils
import json
from typing import Any

import httpx
import pytest

from gbtrack import (
    AuthenticationError,
    Event,
    PayloadError,
    TransportError,
)
from gbtrack._protocol import classify
from gbtrack.gameball import (
    BatchItemError,
    BatchStatus,
    EventBatch,
    Outcome,
    OutcomeKind,
    parse_retry_after,
)
from gbtrack.gameball._outcome import outcome_from_exception, outcome_from_response

WHAT = "POST /api/v4.0/integrations/events"


def answer(
    status: int,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Outcome:
    content = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    return outcome_from_response(WHAT, status, httpx.Headers(headers or {}), content)


def envelope(code: int, type_: str = "ERROR", message: str = "msg") -> dict[str, Any]:
    return {
        "code": code,
        "type": type_,
        "message": message,
        "documentationUrl": "https://docs.gameball.co",
        "requestId": "req-1",
    }


# --- HTTP answers ---------------------------------------------------------------------------
@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
@pytest.mark.parametrize(
    "raw", [b"", b"not json", b'{"success":true,"message":"Events processed"}']
)
def test_any_2xx_is_delivered(status: int, raw: bytes) -> None:
    outcome = answer(status, raw=raw)
    assert outcome.kind is OutcomeKind.DELIVERED
    assert outcome.delivered
    assert not outcome.retryable
    assert not outcome.ambiguous
    assert not outcome.permanent
    assert outcome.error is None
    assert outcome.status == status
    assert outcome.body == (json.loads(raw) if raw.startswith(b"{") else None)


# Which kind each status and code is, is tested once, at gbtrack._protocol.classify
# (tests/protocol/test_classify.py); here: the answer's status and code reach it.
@pytest.mark.parametrize(
    ("status", "code"),
    [
        *[(429, None), (503, 5003), (500, 5003), (422, 2001), (500, 5000), (401, None)],
        *[(401, 1000), (403, 1002), (422, 1500), (422, 3003), (422, 6000), (302, None)],
    ],
)
def test_error_answers_are_classified_by_status_and_code(status: int, code: int | None) -> None:
    body = envelope(code) if code is not None else None
    outcome = answer(status, body)
    assert (outcome.kind, type(outcome.error)) == classify(status, code)
    assert outcome.status == status
    assert outcome.error is not None
    assert outcome.error.status == status
    assert outcome.error.code == code


def test_v4_envelope_fields_are_carried() -> None:
    outcome = answer(
        401, envelope(1000, "AUTHENTICATION_ERROR", "Unauthorized access. Check your key.")
    )
    error = outcome.error
    assert isinstance(error, AuthenticationError)
    assert (error.status, error.code, error.type, error.request_id) == (
        401,
        1000,
        "AUTHENTICATION_ERROR",
        "req-1",
    )
    assert "Unauthorized access" in str(error)
    assert "1000" in str(error)
    assert WHAT in str(error)
    assert "request_id='req-1'" in repr(error)
    assert outcome.body["code"] == 1000


@pytest.mark.parametrize(
    ("raw", "code", "message"),
    [
        (b'{"code": 3003, "message": "Invalid value"}', 3003, "Invalid value"),  # old API
        (b'{"Code": "3003", "Message": "Pascal"}', 3003, "Pascal"),  # PascalCase, code as text
        (b'{"error": {"code": 3003, "message": "nested"}}', 3003, "nested"),
        (b'{"title": "One or more validation errors occurred."}', None, "validation errors"),
        (b"<html>Bad request</html>", None, None),
        (b'["a", "list"]', None, None),
        (b'{"code": true, "message": 5}', None, None),
        (b"\xff\xfe", None, None),
        (b"[" * 100_000 + b"]" * 100_000, None, None),  # nesting deeper than json allows
    ],
)
def test_error_bodies_are_parsed_defensively(
    raw: bytes, code: int | None, message: str | None
) -> None:
    outcome = answer(422, raw=raw)
    assert isinstance(outcome.error, PayloadError)
    assert outcome.error.code == code
    if message is not None:
        assert message in str(outcome.error)
    assert "422" in str(outcome.error)


def test_request_id_falls_back_to_header() -> None:
    outcome = answer(500, raw=b"", headers={"x-request-id": "hdr-7"})
    assert outcome.error is not None
    assert outcome.error.request_id == "hdr-7"


def test_long_messages_are_shortened() -> None:
    outcome = answer(400, {"code": 3000, "message": "x" * 5000})
    assert len(str(outcome.error)) < 500


def test_secrets_in_answers_are_redacted() -> None:
    raw = json.dumps(
        {"code": 1000, "type": "KEY-abc", "message": "bad key KEY-abc", "requestId": "KEY-abc"}
    ).encode()
    outcome = outcome_from_response(WHAT, 401, httpx.Headers(), raw, secrets=("KEY-abc",))
    assert outcome.error is not None
    assert "KEY-abc" not in str(outcome.error)
    assert "KEY-abc" not in repr(outcome.error)
    assert "KEY-abc" not in repr(outcome)


def test_redaction_happens_before_shortening() -> None:
    secret = "SECRETVALUE123"
    raw = json.dumps({"code": 1000, "message": "x" * 295 + secret}).encode()
    outcome = outcome_from_response(WHAT, 401, httpx.Headers(), raw, secrets=(secret,))
    assert "SECRET" not in str(outcome.error)
    assert str(outcome.error).endswith("x***")


# --- Retry-After ------------------------------------------------------------------------------
def test_retry_after_seconds_on_any_answer() -> None:
    assert answer(429, headers={"Retry-After": "7"}).retry_after == 7.0
    assert answer(503, headers={"Retry-After": "1.5"}).retry_after == 1.5
    assert answer(429).retry_after is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("  12 ", 12.0),
        ("0", 0.0),
        ("-5", 0.0),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("Wed, 21 Oct 99999 07:28:00 GMT", None),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past
        ("Wed, 21 Oct 2015 07:29:00 -0000", 60.0),  # parsed as naive: taken as GMT
        ("Wed, 21 Oct 2015 09:29:00 +0200", 60.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = email.utils.parsedate_to_datetime("Wed, 21 Oct 2015 07:28:00 GMT").timestamp()
    assert parse_retry_after(value, now=lambda: now) == expected


# --- transport failures -------------------------------------------------------------------------
_REQ = httpx.Request("POST", "https://api.gameball.co/api/v4.0/integrations/events")


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused", request=_REQ), OutcomeKind.RETRYABLE),
        (httpx.ConnectError("Name or service not known", request=_REQ), OutcomeKind.RETRYABLE),
        (httpx.ConnectTimeout("timed out", request=_REQ), OutcomeKind.RETRYABLE),
        (httpx.PoolTimeout("pool", request=_REQ), OutcomeKind.RETRYABLE),
        (httpx.ReadTimeout("timed out", request=_REQ), OutcomeKind.AMBIGUOUS),
        (httpx.WriteTimeout("timed out", request=_REQ), OutcomeKind.AMBIGUOUS),
        (httpx.ReadError("reset", request=_REQ), OutcomeKind.AMBIGUOUS),
        (httpx.WriteError("broken pipe", request=_REQ), OutcomeKind.AMBIGUOUS),
        (
            httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=_REQ
            ),
            OutcomeKind.AMBIGUOUS,
        ),
        (httpx.DecodingError("bad gzip", request=_REQ), OutcomeKind.AMBIGUOUS),
        (ConnectionResetError(104, "Connection reset by peer"), OutcomeKind.AMBIGUOUS),
        (httpx.LocalProtocolError("Illegal header value", request=_REQ), OutcomeKind.PERMANENT),
        (httpx.UnsupportedProtocol("ftp", request=_REQ), OutcomeKind.PERMANENT),
    ],
)
def test_transport_failures(exc: Exception, kind: OutcomeKind) -> None:
    outcome = outcome_from_exception(WHAT, exc)
    assert outcome.kind is kind
    assert outcome.status is None
    assert isinstance(outcome.error, TransportError)
    assert outcome.error.status is None
    assert type(exc).__name__ in str(outcome.error)
    # Not chained: the httpx exception's request holds the key headers.
    assert outcome.error.__cause__ is None


def test_transport_failure_messages_are_redacted() -> None:
    exc = httpx.ConnectError("cannot reach host with secret SEC-1")
    outcome = outcome_from_exception(WHAT, exc, secrets=("SEC-1",))
    assert "SEC-1" not in str(outcome.error)


# --- outcome helpers --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "job_id"),
    [
        ({"jobId": 12345}, "12345"),
        ({"jobId": 12345.0}, "12345"),
        ({"jobId": "abc-1"}, "abc-1"),
        ({"JobID": 9}, "9"),
        ({"jobId": None}, None),
        ({"jobId": ""}, None),
        ({"jobId": True}, None),
        ({}, None),
        (None, None),
        (["jobId"], None),
    ],
)
def test_job_id(body: Any, job_id: str | None) -> None:
    assert Outcome(OutcomeKind.DELIVERED, status=200, body=body).job_id == job_id


def test_job_id_only_when_delivered() -> None:
    assert Outcome(OutcomeKind.PERMANENT, status=400, body={"jobId": 1}).job_id is None


def test_outcome_kind_is_a_str_enum() -> None:
    assert OutcomeKind("ambiguous") is OutcomeKind.AMBIGUOUS
    assert isinstance(OutcomeKind.RETRYABLE, str)
    assert OutcomeKind.RETRYABLE.value == "retryable"
    assert json.dumps(OutcomeKind.RETRYABLE) == '"retryable"'


def test_outcome_repr() -> None:
    outcome = answer(429, headers={"Retry-After": "3"})
    text = repr(outcome)
    assert "retryable" in text
    assert "429" in text
    assert "RateLimitError" in text
    assert "retry_after=3.0" in text


# --- batch status -----------------------------------------------------------------------------
STATUS = {
    "batchId": "77",
    "status": "completed",
    "progress": 100,
    "totalItems": 3,
    "processedItems": 3,
    "failedItems": 1,
    "results": [{"index": 0}],
    "errors": [{"index": 1, "customerId": "c2", "code": 3003, "message": "Invalid value"}],
}


def test_batch_status_parsed() -> None:
    outcome = Outcome(OutcomeKind.DELIVERED, status=200, body=STATUS)
    status = outcome.batch_status
    assert status is not None
    assert status.batch_id == "77"
    assert status.status == "completed"
    assert status.done
    assert status.progress == 100.0
    assert (status.total_items, status.processed_items, status.failed_items) == (3, 3, 1)
    assert status.results == [{"index": 0}]
    assert status.errors == [BatchItemError(1, "c2", 3003, "Invalid value")]


def test_batch_status_parsed_defensively() -> None:
    status = BatchStatus.parse(
        {
            "BatchId": 77,
            "Status": "Processing",
            "progress": "55.5",
            "totalItems": "3",
            "processedItems": 1.0,
            "failedItems": "many",
            "results": "nope",
            "errors": ["boom", 42, {"Index": "2", "CustomerId": 5, "Code": "3003"}],
        }
    )
    assert status is not None
    assert status.batch_id == "77"
    assert status.status == "processing"
    assert not status.done
    assert status.progress == 55.5
    assert (status.total_items, status.processed_items, status.failed_items) == (3, 1, None)
    assert status.results == []
    assert status.errors == [
        BatchItemError(message="boom"),
        BatchItemError(message="42"),
        BatchItemError(index=2, customer_id="5", code=3003),
    ]


@pytest.mark.parametrize(
    "body",
    [None, [], "text", {"status": "completed"}, {"batchId": "1"}, {"batchId": [], "status": "x"}],
)
def test_not_a_batch_status(body: Any) -> None:
    assert BatchStatus.parse(body) is None
    assert Outcome(OutcomeKind.DELIVERED, status=200, body=body).batch_status is None


def test_batch_status_only_when_delivered() -> None:
    assert Outcome(OutcomeKind.AMBIGUOUS, status=500, body=STATUS).batch_status is None


@pytest.mark.parametrize("state", ["completed", "failed"])
def test_done(state: str) -> None:
    status = BatchStatus.parse({"batchId": "1", "status": state})
    assert status is not None
    assert status.done


# --- attributing item errors ---------------------------------------------------------------
def _items(*customers: str) -> list[EventBatch]:
    return [EventBatch.from_event(Event(name="e", customer_id=c)) for c in customers]


def _status(errors: list[Any], failed: int | None, state: str = "completed") -> BatchStatus:
    status = BatchStatus.parse(
        {"batchId": "1", "status": state, "failedItems": failed, "errors": errors}
    )
    assert status is not None
    return status


def test_item_errors_none_failed() -> None:
    assert _status([], 0).item_errors(_items("a", "b")) == {}
    assert _status([], None).item_errors(_items("a", "b")) == {}


def test_item_errors_by_index_first() -> None:
    error = {"index": 1, "customerId": "a", "code": 3003}
    found = _status([error], 1).item_errors(_items("a", "b"))
    assert found is not None
    assert list(found) == [1]
    assert found[1].code == 3003


def test_item_errors_by_customer_when_index_missing_or_out_of_range() -> None:
    found = _status([{"customerId": "b"}, {"index": 99, "customerId": "c"}], 2).item_errors(
        _items("a", "b", "c")
    )
    assert found is not None
    assert sorted(found) == [1, 2]


@pytest.mark.parametrize(
    ("errors", "failed", "state"),
    [
        ([], 1, "completed"),  # counted but not identified
        (["something failed"], 1, "completed"),  # identifies nothing
        ([{"customerId": "a"}], 1, "completed"),  # two items share the customer
        ([{"customerId": "zzz"}], 1, "completed"),  # matches nothing
        ([{"index": 0}], 2, "completed"),  # fewer identified than counted
        ([], None, "failed"),  # the job failed as a whole
    ],
)
def test_item_errors_unattributable_is_none(
    errors: list[Any], failed: int | None, state: str
) -> None:
    assert _status(errors, failed, state).item_errors(_items("a", "a", "b")) is None


# --- the account's minimum API version ----------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "body"),
    [
        # The emulator's choice (Gameball documents no code for it: UNCONFIRMED).
        (403, envelope(1003, "API_VERSION_ERROR", "API version 4.0 is below the minimum.")),
        # Any wording that names a minimum version is read the same way.
        (400, envelope(3003, "VALIDATION_ERROR", "Minimum API version for this account: 4.1")),
        (403, {"code": 1002, "message": "This API version is not allowed; minimum version 4.1"}),
    ],
)
def test_minimum_version_refusal_is_a_loud_configuration_error(
    status: int, body: dict[str, Any]
) -> None:
    outcome = answer(status, body)
    assert outcome.kind is OutcomeKind.PERMANENT
    assert isinstance(outcome.error, AuthenticationError)
    text = str(outcome.error)
    assert "minimum API version" in text
    assert "secret key" in text  # what to do about it
    assert WHAT in text


def test_other_refusals_do_not_mention_the_version() -> None:
    outcome = answer(401, envelope(1000, "AUTHENTICATION_ERROR", "Unauthorized access."))
    assert isinstance(outcome.error, AuthenticationError)
    assert "minimum API version" not in str(outcome.error)
    payload = answer(422, envelope(3003, "VALIDATION_ERROR", "version must be a string"))
    assert isinstance(payload.error, PayloadError)
