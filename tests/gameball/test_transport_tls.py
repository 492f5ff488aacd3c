"""The thread-confined transport's TLS context: a CA bundle only where TLS is spoken."""

from __future__ import annotations

import ssl

import httpx

from gbtrack.gameball import GameballClient
from gbtrack.gameball._client import _ThreadConfinedTransport


def _context(base_url: str) -> ssl.SSLContext:
    client = GameballClient("test-api-key", base_url=base_url)
    try:
        transport = client._http._transport
        assert isinstance(transport, _ThreadConfinedTransport)
        assert isinstance(transport._pool(), httpx.HTTPTransport)
        context = transport._ssl_context
        assert context is not None
        return context
    finally:
        client.close()


def test_a_plain_http_address_loads_no_ca_bundle_and_verifies_nothing_through_it() -> None:
    context = _context("http://127.0.0.1:9")
    assert context.cert_store_stats()["x509_ca"] == 0
    # Certificates stay required: nothing could ever be trusted through this context.
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname


def test_an_https_address_verifies_with_the_ca_bundle() -> None:
    context = _context("https://api.gameball.co")
    assert context.cert_store_stats()["x509_ca"] > 0
    assert context.verify_mode is ssl.CERT_REQUIRED
