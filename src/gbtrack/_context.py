"""identify(): the ambient identity, kept in ``contextvars``, and how an event completes it.

Isolated between threads and asyncio tasks (each task copies the context it was
created in); nested ``identify`` blocks override and restore.

The context variable holds a plain tuple ``(customer_id, email, mobile, session_token)``
of values already checked: entering a block costs one tuple and one ``ContextVar.set``;
the pydantic :class:`~gbtrack.Identity` is built only when someone asks for it
(:func:`current_identity`, ``Call.identity``, the ``identity`` root).
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from types import TracebackType

from pydantic import SecretStr

from gbtrack._errors import GbtrackError
from gbtrack._event import Identity, mask_email, mask_mobile
from gbtrack._expr import MISSING
from gbtrack._plain import plain_customer_id, plain_text, plain_token
from gbtrack._types import UNSET, Unset

__all__ = ["Ambient", "ambient", "complete_identity", "current_identity", "identify"]

Ambient = tuple[str | None, str | None, str | None, SecretStr | None]
"""The ambient identity as stored: ``(customer_id, email, mobile, session_token)``."""

Resolved = tuple[str, str | None, str | None, SecretStr | None]
"""An event's identity, completed: ``(customer_id, email, mobile, session_token)``."""

_Entry = tuple[Token[Ambient], Ambient, "_Entry | Token[Ambient] | None"]
"""An open ``identify`` block that merged: its reset token, the identity set, what was below."""

_NOBODY: Ambient = (None, None, None, None)
_ambient: ContextVar[Ambient] = ContextVar("gbtrack_identity", default=_NOBODY)

ambient = _ambient.get
"""Return the ambient identity tuple (the hot path's accessor)."""
_set = _ambient.set
_reset = _ambient.reset


_last: tuple[Ambient, Identity] = (_NOBODY, Identity())


def current_identity() -> Identity:
    """Return the ambient identity (an empty :class:`Identity` outside ``identify``)."""
    global _last
    fields = _ambient.get()
    last = _last
    if last[0] is fields:
        return last[1]
    customer_id, email, mobile, token = fields
    identity = Identity(customer_id=customer_id, email=email, mobile=mobile, session_token=token)
    _last = (fields, identity)
    return identity


def complete_identity(
    customer_id: object, email: object, mobile: object, session_token: object
) -> Resolved | None:
    """Resolve an event's identity: plain values, completed from the ambient one.

    Missing fields (``None`` or :data:`~gbtrack._expr.MISSING`) come from
    :func:`identify` when the event is about the ambient customer (or names none); a
    blank customer id counts as missing. ``session_token`` follows the UNSET rule (left
    out: the ambient token for the ambient customer; ``None``: no token).

    Returns:
        ``(customer_id, email, mobile, session_token)``, or ``None`` when there is no
        customer id at all.

    Raises:
        InvalidEventError: For a value of the wrong type.
    """
    outer = _ambient.get()
    if type(customer_id) is str and customer_id.strip():
        cid: str | None = customer_id
    elif customer_id is None or customer_id is MISSING:
        cid = None
    else:
        cid = plain_customer_id(customer_id)
    if cid is None:
        cid = outer[0]
        if cid is None:
            return None
    same = cid == outer[0]
    if email is None or email is MISSING:
        email = outer[1] if same else None
    elif type(email) is not str or not email.strip():
        email = plain_text(email, "email")
    if mobile is None or mobile is MISSING:
        mobile = outer[2] if same else None
    elif type(mobile) is not str or not mobile.strip():
        mobile = plain_text(mobile, "mobile")
    if session_token is UNSET:
        token = outer[3] if same else None
    else:
        token = None if session_token is MISSING else plain_token(session_token)
    return (cid, email, mobile, token)


class identify:
    """Set the ambient customer identity for a block (``with`` or ``async with``).

    Decorators, spans and ``emit`` calls without an explicit ``customer_id`` use it.

    Nesting: a block with a *different* ``customer_id`` starts a fresh identity; a block
    without ``customer_id`` (or with the same one) keeps the outer identity and
    overrides only the fields it is given. ``session_token`` follows the UNSET rule:
    omitted keeps the current token, ``None`` clears it.

    ``with identify(...) as block`` gives the block itself: ``block.customer_id``,
    ``block.email``, ``block.mobile`` and ``block.identity`` (the :class:`Identity`
    model) describe what it set. Entering costs one tuple and one ``ContextVar.set``;
    the model is built only when asked for.

    Args:
        customer_id: The customer's Gameball id (ints and UUIDs are stringified).
        email: Optional email for channel merging.
        mobile: Optional mobile for channel merging.
        session_token: Optional Gameball session token, forwarded as ``X-GB-TOKEN``.

    Raises:
        InvalidEventError: For a customer id, email, mobile or token of the wrong type
            (a ``ValueError``), when the block is created.

    Examples:
        >>> from gbtrack import identify, current_identity
        >>> with identify("cust-1", email="a@example.com") as block:
        ...     block.customer_id, current_identity().email
        ('cust-1', 'a@example.com')
    """

    __slots__ = ("_given", "_open", "_token")

    def __init__(
        self,
        customer_id: str | int | None = None,
        *,
        email: str | None = None,
        mobile: str | None = None,
        session_token: str | SecretStr | Unset | None = UNSET,
    ) -> None:
        # A non-blank str id and nothing else is the common case: no conversion needed.
        if type(customer_id) is not str or not customer_id.strip():
            customer_id = plain_customer_id(customer_id)
        if email is not None:
            email = plain_text(email, "email")
        if mobile is not None:
            mobile = plain_text(mobile, "mobile")
        token = None
        if session_token is not UNSET:  # kept (unset slot: UNSET) for merging
            token = self._token = plain_token(session_token)
        # What the block sets when it starts a fresh identity (another customer).
        self._given: Ambient = (customer_id, email, mobile, token)
        # While the block is open: the ContextVar token when it set `_given` (the common
        # case), else (token, identity set, what was open before) for a merged identity
        # or a block entered again while open.
        self._open: Token[Ambient] | _Entry | None = None

    def _merged(self) -> Ambient:
        """The identity this block sets, merged with the current one."""
        customer_id, email, mobile, token = self._given
        outer = _ambient.get()
        if customer_id is None:
            customer_id = outer[0]
        elif customer_id != outer[0]:
            return self._given
        given: SecretStr | Unset | None = getattr(self, "_token", UNSET)
        return (
            customer_id,
            outer[1] if email is None else email,
            outer[2] if mobile is None else mobile,
            outer[3] if given is UNSET else token,
        )

    def _current(self) -> Ambient:
        entered = self._open
        if entered is None:
            return self._merged()
        return entered[1] if type(entered) is tuple else self._given

    @property
    def customer_id(self) -> str | None:
        """The customer id this block sets (or keeps from the outer block)."""
        return self._current()[0]

    @property
    def email(self) -> str | None:
        """The email this block sets (or keeps)."""
        return self._current()[1]

    @property
    def mobile(self) -> str | None:
        """The mobile this block sets (or keeps)."""
        return self._current()[2]

    @property
    def identity(self) -> Identity:
        """The identity this block sets, as an :class:`Identity` model."""
        customer_id, email, mobile, token = self._current()
        return Identity(customer_id=customer_id, email=email, mobile=mobile, session_token=token)

    def __enter__(self) -> identify:
        # Entering is the hot path: another customer than the ambient one (or none)
        # sets the precomputed tuple; C calls only.
        fields = self._given
        customer_id = fields[0]
        if customer_id is None or customer_id == ambient()[0] or self._open is not None:
            fields = self._merged()
            self._open = (_set(fields), fields, self._open)
        else:
            self._open = _set(fields)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entry = self._open
        if type(entry) is Token:
            _reset(entry)
            self._open = None
        elif entry is None:
            raise GbtrackError("identify block exited without being entered")
        else:
            _reset(entry[0])
            self._open = entry[2]

    async def __aenter__(self) -> identify:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        customer_id, email, mobile, token = self._current()
        return (
            f"identify(customer_id={customer_id!r}, email={mask_email(email)!r}, "
            f"mobile={mask_mobile(mobile)!r}, session_token={'None' if token is None else '***'})"
        )
