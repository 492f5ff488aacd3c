"""gbtrack: declarative customer-event tracking for Gameball.

Decorate a business function with :func:`track`, and every successful call sends a
validated event to Gameball, with the customer's identity and metadata resolved from
the call's arguments and result::

    from gbtrack import track

    @track("purchase_completed", customer_id="customer.id",
           metadata={"order_id": "result.id", "amount": "result.total"})
    def checkout(customer, cart): ...

This module is the whole public API; everything in ``gbtrack._*`` is private.
"""

from importlib.metadata import PackageNotFoundError, version

from gbtrack._call import Call
from gbtrack._checks import CheckReport, Unchecked, check
from gbtrack._context import current_identity, identify
from gbtrack._decorator import track
from gbtrack._delivery import sender_from_config
from gbtrack._errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    DeliveryError,
    ExpressionError,
    GbtrackError,
    InvalidEventError,
    PayloadError,
    RateLimitError,
    ServerError,
    TrackingError,
    TransportError,
)
from gbtrack._event import DEFAULT_LIMITS, Event, EventDraft, Identity, Limits
from gbtrack._expr import literal
from gbtrack._order import OrderDraft, each
from gbtrack._order_decorator import track_order
from gbtrack._outcomes import DeliveryOutcome
from gbtrack._report import Stats
from gbtrack._resolvers import register_resolver, unregister_resolver
from gbtrack._schema import event_schema, remove_event_schema
from gbtrack._settings import TrackerSettings
from gbtrack._span import Span, SpanContext, span
from gbtrack._tracker import (
    Tracker,
    close,
    configure,
    flush,
    get_tracker,
    send_order,
    set_tracker,
)
from gbtrack._transaction import transaction
from gbtrack._types import UNSET
from gbtrack.senders import InMemorySender, LoggingSender, Sender

try:
    __version__ = version("gbtrack")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "DEFAULT_LIMITS",
    "UNSET",
    "AuthenticationError",
    "Call",
    "CheckReport",
    "ConfigurationError",
    "ConflictError",
    "DeliveryError",
    "DeliveryOutcome",
    "Event",
    "EventDraft",
    "ExpressionError",
    "GbtrackError",
    "Identity",
    "InMemorySender",
    "InvalidEventError",
    "Limits",
    "LoggingSender",
    "OrderDraft",
    "PayloadError",
    "RateLimitError",
    "Sender",
    "ServerError",
    "Span",
    "SpanContext",
    "Stats",
    "Tracker",
    "TrackerSettings",
    "TrackingError",
    "TransportError",
    "Unchecked",
    "__version__",
    "check",
    "close",
    "configure",
    "current_identity",
    "each",
    "event_schema",
    "flush",
    "get_tracker",
    "identify",
    "literal",
    "register_resolver",
    "remove_event_schema",
    "send_order",
    "sender_from_config",
    "set_tracker",
    "span",
    "track",
    "track_order",
    "transaction",
    "unregister_resolver",
]
