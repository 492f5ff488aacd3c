"""The one wire-body builder and the one masking rule.

Every body gbtrack sends or stores is :func:`wire_body` (the outbox: plus id and time,
:func:`stored_body`); every log line and repr masks email and mobile with :func:`mask`.
"""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import SecretStr

from gbtrack import Event, EventDraft
from gbtrack._event import Identity, mask, masked
from gbtrack._protocol import EventBatch, coalesce, stored_body, wire_body
from gbtrack.outbox import OutboxStore
from gbtrack.outbox._store import decode_event, encode_event
from gbtrack.senders import LoggingSender

EMAIL, MOBILE = "john@example.com", "+1234567890"


def ev(name: str = "purchase", **kw: object) -> Event:
    kw.setdefault("customer_id", "c-1")
    return Event(name=name, **kw)  # type: ignore[arg-type]


def test_wire_body_of_one_customers_events() -> None:
    events = [
        ev("purchase", email=EMAIL, mobile=MOBILE, metadata={"amount": 9.5}),
        ev("review", email=EMAIL, mobile=MOBILE),
    ]
    assert wire_body(events) == {
        "customerId": "c-1",
        "email": EMAIL,
        "mobile": MOBILE,
        "events": {"purchase": {"amount": 9.5}, "review": {}},
    }
    assert wire_body([ev()]) == {"customerId": "c-1", "events": {"purchase": {}}}


def test_every_body_is_the_one_builders() -> None:
    event = ev(email=EMAIL, metadata={"k": 1}, session_token=SecretStr("tok-1"))
    (batch,) = coalesce([event])
    assert event.to_payload() == batch.body() == wire_body([event])
    assert "tok-1" not in json.dumps(wire_body([event]))
    assert stored_body(event) == {
        **wire_body([event]),
        "eventId": event.event_id,
        "timestamp": event.timestamp.isoformat(),
    }
    assert json.loads(encode_event(event)) == stored_body(event)


def test_copy_protects_the_event_and_no_copy_shares() -> None:
    event = ev(metadata={"k": 1})
    wire_body([event])["events"]["purchase"]["k"] = 2
    assert event.metadata == {"k": 1}
    assert wire_body([event], copy=False)["events"]["purchase"] is event.metadata


def test_stored_rows_round_trip_in_both_forms() -> None:
    event = ev(email=EMAIL, mobile=MOBILE, metadata={"amount": 1.5, "vip": True})
    assert decode_event(encode_event(event)) == event
    # Rows written before the stored body was the wire body are still read.
    legacy = {
        "name": "purchase",
        "customerId": "c-1",
        "email": EMAIL,
        "mobile": MOBILE,
        "metadata": {"amount": 1.5, "vip": True},
        "eventId": event.event_id,
        "timestamp": event.timestamp.isoformat(),
    }
    assert decode_event(json.dumps(legacy)) == event


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("email", EMAIL, "j***@example.com"),
        ("email", "no-at-sign", "***"),
        ("mobile", MOBILE, "***7890"),
        ("mobile", "123", "***"),
        ("email", None, None),
        ("customerId", "c-1", "c-1"),
    ],
)
def test_mask(field: str, value: str | None, shown: str | None) -> None:
    assert mask(field, value) == shown


def test_masked_body_masks_only_pii_and_copies() -> None:
    body = {"customerId": "c-1", "email": EMAIL, "mobile": MOBILE, "events": {"e": {}}}
    assert masked(body) == {**body, "email": "j***@example.com", "mobile": "***7890"}
    assert body["email"] == EMAIL


def _reprs() -> dict[str, str]:
    event = ev(email=EMAIL, mobile=MOBILE)
    draft = EventDraft("purchase", "c-1", EMAIL, MOBILE, None, (), (), None, 0.0)
    return {
        "Event": repr(event),
        "Identity": repr(Identity(customer_id="c-1", email=EMAIL, mobile=MOBILE)),
        "EventDraft": repr(draft),
        "EventBatch": repr(EventBatch.from_event(event)),
    }


@pytest.mark.parametrize("site", sorted(_reprs()))
def test_every_repr_masks(site: str) -> None:
    text = _reprs()[site]
    assert EMAIL not in text
    assert MOBILE not in text
    assert "j***@example.com" in text
    assert "***7890" in text


def test_logging_sender_and_outbox_rows_mask(
    caplog: pytest.LogCaptureFixture, tmp_path: object
) -> None:
    event = ev(email=EMAIL, mobile=MOBILE)
    with caplog.at_level(logging.INFO, logger="gbtrack.events"):
        LoggingSender().send(event)
    assert EMAIL not in caplog.text
    assert "***7890" in caplog.text
    with OutboxStore(f"{tmp_path}/o.sqlite3") as store:
        store.append([event])
        (row,) = store.rows()
    shown = row.to_dict()["event"]
    assert (shown["email"], shown["mobile"]) == ("j***@example.com", "***7890")
    assert row.to_dict(mask=False)["event"] == stored_body(event)
