"""The asyncio Gameball client: the same requests and outcomes as the sync one."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx
from pydantic import SecretStr

from gbtrack._protocol import EventBatch, Outcome
from gbtrack.gameball._client import (
    _TRANSPORT_ERRORS,
    DEFAULT_BASE_URL,
    DEFAULT_MAX_CONNECTIONS,
    _ClientCore,
    _Request,
)

__all__ = ["AsyncGameballClient"]


class AsyncGameballClient(_ClientCore):
    """An asyncio Gameball client over ``httpx.AsyncClient``.

    The same configuration, endpoints and outcomes as
    :class:`~gbtrack.gameball.GameballClient`; the request methods are coroutines.

    Args:
        api_key: The account's API key (sent as ``APIKey``).
        secret_key: The secret key (sent as ``SecretKey`` whenever configured); needed
            for secure mode and the batch endpoints.
        base_url: The API address (default ``https://api.gameball.co``).
        lang: A language code sent as the ``lang`` header.
        secure: The events endpoint: ``None`` (default) sends to v4.1 "Secure
            Integration Mode" when a ``secret_key`` is configured, else to v4.0;
            ``True`` requires v4.1 (and a ``secret_key``); ``False`` keeps v4.0.
        timeout: Seconds (or an ``httpx.Timeout``) for connect, read, write and pool.
        transport: An async httpx transport to use instead of the network.
        max_connections: Size of the keep-alive connection pool (in-flight requests).

    Raises:
        ConfigurationError: For a missing or malformed key, base URL, language, timeout
            or pool size, or ``secure=True`` without a secret key.
    """

    def __init__(
        self,
        api_key: str | SecretStr,
        *,
        secret_key: str | SecretStr | None = None,
        base_url: str = DEFAULT_BASE_URL,
        lang: str | None = None,
        secure: bool | None = None,
        timeout: float | httpx.Timeout = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        super().__init__(
            api_key,
            secret_key=secret_key,
            base_url=base_url,
            lang=lang,
            secure=secure,
            timeout=timeout,
            max_connections=max_connections,
        )
        if transport is None:
            transport = httpx.AsyncHTTPTransport(limits=self._limits(), http1=True, http2=False)
        self._http = httpx.AsyncClient(transport=transport, **self._client_options())

    async def _request(self, request: _Request) -> Outcome:
        if self._closed:
            return self._closed_outcome(request)
        began = time.perf_counter()
        try:
            response = await self._http.request(
                request.method, request.path, content=request.content, headers=request.headers
            )
        except _TRANSPORT_ERRORS as exc:
            return self._from_exception(request, exc, began)
        return self._from_response(request, response, began)

    async def send(self, batch: EventBatch) -> Outcome:
        """Send one customer's events; see :meth:`GameballClient.send`."""
        return await self._request(self._send_request(batch))

    async def create_batch(self, batches: Sequence[EventBatch]) -> Outcome:
        """Create a batch job; see :meth:`GameballClient.create_batch`.

        Raises:
            ValueError: If ``batches`` is empty or holds more than 1,000 items.
            ConfigurationError: If no secret key is configured.
        """
        return await self._request(self._create_batch_request(batches))

    async def send_order(
        self, body: Mapping[str, Any], *, session_token: str | SecretStr | None = None
    ) -> Outcome:
        """Send one order; see :meth:`GameballClient.send_order`.

        Raises:
            ConfigurationError: If no secret key is configured.
        """
        request = self._order_request(body, session_token)
        return self._with_result(await self._request(request))

    async def create_order_batch(self, bodies: Sequence[Mapping[str, Any]]) -> Outcome:
        """Create a batch job of orders; see :meth:`GameballClient.create_order_batch`.

        Raises:
            ValueError: If ``bodies`` is empty or holds more than 1,000 orders.
            ConfigurationError: If no secret key is configured.
        """
        return await self._request(self._order_batch_request(bodies))

    async def batch_status(self, job_id: str) -> Outcome:
        """Fetch a batch job's status; see :meth:`GameballClient.batch_status`.

        Raises:
            ValueError: If ``job_id`` is empty.
            ConfigurationError: If no secret key is configured.
        """
        return await self._request(self._status_request(job_id))

    async def stop_batch(self, job_id: str) -> Outcome:
        """Stop a batch job; see :meth:`GameballClient.stop_batch`.

        Raises:
            ValueError: If ``job_id`` is empty.
            ConfigurationError: If no secret key is configured.
        """
        return await self._request(self._stop_request(job_id))

    async def close(self) -> None:
        """Close the connection pool; idempotent. Later requests end as permanent failures."""
        self._closed = True
        await self._http.aclose()

    async def aclose(self) -> None:
        """Alias of :meth:`close`, for ``contextlib.aclosing`` and httpx habits."""
        await self.close()

    async def __aenter__(self) -> AsyncGameballClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
