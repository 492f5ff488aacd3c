"""A batch job's status as Gameball answers it, parsed defensively.

:class:`BatchStatus` is the parsed answer of ``GET /batches/{batchId}/status``. The
OpenAPI file leaves ``errors`` untyped; gbtrack expects items like
``{"index": 3, "customerId": "c-1", "code": 3003, "message": "..."}`` and parses
whatever comes defensively (:class:`BatchItemError`).

The bottom of the protocol: it imports nothing of gbtrack, so that outcomes
(:mod:`._outcome`) can parse a status and the job's state machine (:mod:`._jobs`) can
read outcomes, without a loop between them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

__all__ = ["BatchItemError", "BatchStatus", "as_int"]


class _Item(Protocol):
    """What :meth:`BatchStatus.item_errors` reads of a submitted item (an EventBatch)."""

    @property
    def customer_id(self) -> str: ...


@dataclass(frozen=True)
class BatchItemError:
    """One failed item of a batch job, as far as the answer identifies it.

    Attributes:
        index: The item's position in the submitted ``body`` list, when given.
        customer_id: The item's ``customerId``, when given.
        code: Gameball's error code, when given.
        message: Gameball's message, when given.
    """

    index: int | None = None
    customer_id: str | None = None
    code: int | None = None
    message: str | None = None

    @classmethod
    def parse(cls, raw: object) -> BatchItemError:
        """Parse one entry of a status answer's ``errors``; never raises.

        A mapping is read by key (case-insensitively); a bare string becomes the
        message; anything else becomes its ``repr`` (shortened) as the message.
        """
        if isinstance(raw, Mapping):
            fields = {str(key).lower(): value for key, value in raw.items()}
            return cls(
                index=as_int(fields.get("index")),
                customer_id=_as_text(fields.get("customerid")),
                code=as_int(fields.get("code")),
                message=_as_text(fields.get("message")),
            )
        if isinstance(raw, str):
            return cls(message=raw[:500])
        return cls(message=repr(raw)[:500])


def as_int(value: object) -> int | None:
    """Return ``value`` as an ``int`` when it is one (or an integral float or digit string)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        # isdecimal, not isdigit: int() refuses "²" and "--3", and parsing never raises.
        if text.removeprefix("-").isdecimal():
            return int(text)
    return None


def _as_float(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _as_text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = as_int(value)
        return str(value if number is None else number)
    return None


class BatchStatus(BaseModel):
    """The status of a batch job, parsed defensively from Gameball's answer.

    Attributes:
        batch_id: The job id (``batchId``), as a string.
        status: ``pending``, ``processing``, ``completed`` or ``failed`` (any other
            string is kept as given).
        progress: The progress Gameball reports, when it does.
        total_items: How many items the job holds.
        processed_items: How many items were processed.
        failed_items: How many items failed.
        results: The ``results`` list, as given.
        errors: The ``errors`` list, each entry parsed as a :class:`BatchItemError`.
    """

    model_config = ConfigDict(frozen=True)

    batch_id: str
    status: Literal["pending", "processing", "completed", "failed"] | str
    progress: float | None = None
    total_items: int | None = None
    processed_items: int | None = None
    failed_items: int | None = None
    results: list[Any] = []
    errors: list[BatchItemError] = []

    @property
    def done(self) -> bool:
        """Whether the job has finished (``completed`` or ``failed``)."""
        return self.status in ("completed", "failed")

    @classmethod
    def parse(cls, body: object) -> BatchStatus | None:
        """Parse a status answer's body; ``None`` when it is not a status at all.

        Keys are matched case-insensitively; numbers given as strings or integral
        floats are accepted; a missing ``batchId`` or ``status`` means "not a status".
        """
        if not isinstance(body, Mapping):
            return None
        fields = {str(key).lower(): value for key, value in body.items()}
        batch_id = _as_text(fields.get("batchid"))
        status = fields.get("status")
        if batch_id is None or not isinstance(status, str):
            return None
        results = fields.get("results")
        errors = fields.get("errors")
        return cls(
            batch_id=batch_id,
            status=status.strip().lower(),
            progress=_as_float(fields.get("progress")),
            total_items=as_int(fields.get("totalitems")),
            processed_items=as_int(fields.get("processeditems")),
            failed_items=as_int(fields.get("faileditems")),
            results=list(results) if isinstance(results, list) else [],
            errors=[BatchItemError.parse(e) for e in errors] if isinstance(errors, list) else [],
        )

    def item_errors(self, items: Sequence[_Item]) -> dict[int, BatchItemError] | None:
        """Attribute this job's errors to the submitted items.

        Each error is matched by ``index`` first (a position in ``items``), then by
        ``customerId`` when exactly one item has it.

        Args:
            items: The batches submitted with :meth:`GameballClient.create_batch`, in order.

        Returns:
            Item position -> error for the failed items (empty when none failed), or
            ``None`` when the failures cannot be attributed: an error that identifies no
            single item, more failures counted than identified, or a ``failed`` job
            without any identified item. ``None`` means the whole job is ambiguous.
        """
        found: dict[int, BatchItemError] = {}
        for error in self.errors:
            index = error.index
            if index is not None and 0 <= index < len(items):
                found[index] = error
                continue
            if error.customer_id is not None:
                matches = [
                    i for i, item in enumerate(items) if item.customer_id == error.customer_id
                ]
                if len(matches) == 1:
                    found[matches[0]] = error
                    continue
            return None
        if self.failed_items is not None and self.failed_items > len(found):
            return None
        if self.status == "failed" and not found:
            return None
        return found
