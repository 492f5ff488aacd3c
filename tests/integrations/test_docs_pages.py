"""What the integration pages must keep saying (issue 20 items 6 and 7).

The blocks of these pages run in tests/test_docs.py; this checks what running them
cannot: one documented identity contract that every integration page links, no example
that takes the customer from a header the client sets, the Django page's requirements
for ``atomic()``, and the ``celery`` extra's Redis client.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests.test_docs import blocks_of

ROOT = Path(__file__).resolve().parent.parent.parent
DOCS = ROOT / "docs"
IDENTITY_LINK = "../spans.md#who-the-customer-is"
INTEGRATION_PAGES = ["asgi.md", "flask.md", "django.md", "celery.md", "serverless.md"]


def test_the_identity_contract_is_documented_once_and_linked_from_each_integration() -> None:
    spans = (DOCS / "spans.md").read_text()
    assert "### Who the customer is, in every integration {#who-the-customer-is}" in spans
    for page in INTEGRATION_PAGES:
        assert IDENTITY_LINK in (DOCS / "integrations" / page).read_text(), page


@pytest.mark.parametrize("page", [*INTEGRATION_PAGES, "../spans.md"])
def test_no_example_takes_the_customer_from_a_client_header(page: str) -> None:
    # Any client can set a header: an identity read from one lets it choose the customer.
    for block in blocks_of((DOCS / "integrations" / page).read_text()):
        if block.lang == "python":
            assert not re.search(r"customer-id", block.code, re.I), f"{page}:{block.line}"


@pytest.mark.parametrize("example", ["fastapi_app.py", "flask_app.py"])
def test_no_example_script_takes_the_customer_from_a_client_header(example: str) -> None:
    assert not re.search(r"customer-id", (ROOT / "examples" / example).read_text(), re.I)


def test_the_django_page_says_what_atomic_needs() -> None:
    text = (DOCS / "integrations" / "django.md").read_text()
    section = text[text.index("## Events that commit with your data: `atomic()`") :]
    section = section[: section.index("\n## ", 1)]
    assert "gbtrack outbox init" in section
    assert "gbtrack relay" in section


def test_the_celery_extra_brings_a_redis_client() -> None:
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11+")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    celery = " ".join(extras["celery"])
    assert "celery[redis]" in celery or re.search(r"(^|\s)redis\b", celery), celery
