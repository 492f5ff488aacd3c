"""identify(): the ambient identity, kept in ``contextvars``.

Isolated between threads and asyncio tasks (each task copies the context it was
created in); nested ``identify`` blocks override and restore.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from types import TracebackType

from pydantic import SecretStr

from gbtrack._event import Identity, _new_identity, normalize_customer_id
from gbtrack._types import UNSET, Unset

__all__ = ["current_identity", "identify"]

_EMPTY = Identity()
_identity: ContextVar[Identity] = ContextVar("gbtrack_identity", default=_EMPTY)


def current_identity() -> Identity:
    """Return the ambient identity (an empty :class:`Identity` outside ``identify``)."""
    return _identity.get()


def _secret(token: str | SecretStr | None) -> SecretStr | None:
    if token is None or isinstance(token, SecretStr):
        return token
    return SecretStr(token)


class identify:
    """Set the ambient customer identity for a block (``with`` or ``async with``).

    Decorators, spans and ``emit`` calls without an explicit ``customer_id`` use it.

    Nesting: a block with a *different* ``customer_id`` starts a fresh identity; a block
    without ``customer_id`` (or with the same one) keeps the outer identity and
    overrides only the fields it is given. ``session_token`` follows the UNSET rule:
    omitted keeps the current token, ``None`` clears it.

    Args:
        customer_id: The customer's Gameball id (ints are stringified).
        email: Optional email for channel merging.
        mobile: Optional mobile for channel merging.
        session_token: Optional Gameball session token, forwarded as ``X-GB-TOKEN``.

    Example:
        >>> from gbtrack import identify, current_identity
        >>> with identify("cust-1", email="a@example.com"):
        ...     current_identity().customer_id
        'cust-1'
    """

    __slots__ = ("_identity", "_tokens")

    def __init__(
        self,
        customer_id: str | int | None = None,
        *,
        email: str | None = None,
        mobile: str | None = None,
        session_token: str | SecretStr | Unset | None = UNSET,
    ) -> None:
        # Plain str/int/None ids take the validator's own function without the model; anything
        # else goes through the model so that errors stay pydantic ValidationErrors.
        if customer_id is None or type(customer_id) is str or type(customer_id) is int:
            cid = normalize_customer_id(customer_id)
        else:
            cid = Identity(customer_id=customer_id).customer_id  # type: ignore[arg-type]
        self._identity: tuple[str | None, str | None, str | None, SecretStr | Unset | None] = (
            cid,
            email,
            mobile,
            session_token if isinstance(session_token, Unset) else _secret(session_token),
        )
        self._tokens: list[Token[Identity]] = []

    @property
    def identity(self) -> Identity:
        """The identity this block sets, computed against the current one."""
        customer_id, email, mobile, token = self._identity
        outer = _identity.get()
        if customer_id is not None and customer_id != outer.customer_id:
            outer = _EMPTY
        email = email if email is not None else outer.email
        mobile = mobile if mobile is not None else outer.mobile
        fields = (
            customer_id if customer_id is not None else outer.customer_id,
            email,
            mobile,
            outer.session_token if isinstance(token, Unset) else token,
        )
        if (email is None or (type(email) is str and email.strip())) and (
            mobile is None or (type(mobile) is str and mobile.strip())
        ):
            # Every field is already what the model's validators would return.
            return _new_identity(*fields)
        return Identity(
            customer_id=fields[0], email=fields[1], mobile=fields[2], session_token=fields[3]
        )

    def __enter__(self) -> Identity:
        identity = self.identity
        self._tokens.append(_identity.set(identity))
        return identity

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _identity.reset(self._tokens.pop())

    async def __aenter__(self) -> Identity:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)
