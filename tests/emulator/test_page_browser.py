"""The live page in a real browser: the OS's headless Chromium, driven over CDP.

The page is opened once; events are then sent through gbtrack (a ``DirectSender`` for
v4.0, a ``BackgroundSender`` in bulk mode for a batch job) while it stays open, and the
test reads the page's DOM through ``Runtime.evaluate`` until the new rows appear. A
marker set on ``window`` after the first load, and the navigation count, prove the rows
came from polling, not a reload. Screenshots are kept in ``build/test-artifacts/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests._chromium import Browser, Page, find_chromium

from gbtrack import Tracker
from gbtrack.emulator import GameballEmulator
from gbtrack.senders import BackgroundSender, DirectSender, RetryPolicy

CHROMIUM = find_chromium()
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
HOSTILE = '<script>document.title="pwned"</script><img src=x onerror="document.title=1">'
FAST = RetryPolicy(base_delay=0.0, max_delay=0.0)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="headless Chromium is not installed (apt-get install chromium; .ci/run does)",
    ),
]

ROWS = "document.querySelectorAll('#events-body tr.event').length"
CELLS = """JSON.stringify([...document.querySelectorAll('#events-body tr.event')].map(
  tr => [...tr.children].map(td => td.textContent)))"""


@pytest.fixture
def page(browser: Browser, gameball_emulator: GameballEmulator) -> Page:
    return browser.open(f"{gameball_emulator.url}/")


def rows(page: Page) -> list[list[str]]:
    cells: list[list[str]] = json.loads(page.evaluate(CELLS))
    return cells


def test_page_shows_events_as_they_arrive(gameball_emulator: GameballEmulator, page: Page) -> None:
    emulator = gameball_emulator
    direct = Tracker(DirectSender(api_key=emulator.api_key, base_url=emulator.url, retry=FAST))
    direct.emit("signed_up", customer_id="first", metadata={"plan": "free"})

    # The first poll shows the event already there; mark this document.
    page.wait_for(f"{ROWS} === 1")
    page.evaluate("window.__gbtrackMarker = 'loaded once'; true")
    navigations = page.evaluate("performance.getEntriesByType('navigation').length")
    page.screenshot(ARTIFACTS / "emulator-live-page-1-first-event.png")

    # While the page stays open: hostile values over v4.0, a fault the retry absorbs,
    # and a batch job from a BackgroundSender in bulk mode.
    direct.emit(
        "purchase_completed",
        customer_id=HOSTILE,
        metadata={"note": HOSTILE, "amount": 49.9, "gift": True},
    )
    emulator.faults.fail_next(status=503)
    direct.emit("review_submitted", customer_id="retried", metadata={"stars": 5})
    bulk = Tracker(
        BackgroundSender(
            api_key=emulator.api_key,
            secret_key=emulator.secret_key,
            base_url=emulator.url,
            bulk_threshold=2,
            flush_interval=60.0,
            retry=FAST,
        )
    )
    for n in range(3):
        bulk.emit("points_redeemed", customer_id=f"bulk-{n}", metadata={"points": 100 * n})
    assert bulk.close(10.0)
    assert direct.close(10.0)
    assert emulator.wait_for_events(6)

    page.wait_for(f"{ROWS} === 6")
    assert page.evaluate("window.__gbtrackMarker") == "loaded once"  # no reload happened
    assert page.evaluate("performance.getEntriesByType('navigation').length") == navigations
    assert page.evaluate("Number(document.body.dataset.polls)") >= 2
    table = rows(page)
    by_customer = {cells[1]: cells for cells in table}
    # Newest first: the batch job's three rows, then the retried event, ... the first.
    assert [cells[1] for cells in table[3:]] == ["retried", HOSTILE, "first"]
    assert sorted(cells[1] for cells in table[:3]) == ["bulk-0", "bulk-1", "bulk-2"]
    # Received, customer, event, metadata, API, batched, token, status.
    assert by_customer["first"][2:] == [
        "signed_up",
        'plan: "free"',
        "v4.0",
        "no",
        "no",
        "200 answered",
    ]
    assert by_customer["bulk-2"][2:5] == ["points_redeemed", "points: 200", "batch"]
    assert by_customer["bulk-2"][5].startswith("yes: job ")
    assert by_customer["bulk-2"][7] == "batch job completed"
    # Untrusted values are shown as text: no element, no script ran.
    hostile = by_customer[HOSTILE]
    assert hostile[3] == f"note: {json.dumps(HOSTILE)}amount: 49.9gift: true"
    assert page.evaluate("document.scripts.length") == 1
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.evaluate("document.title") == "Gameball emulator: live"
    # Faults and counters.
    page.wait_for("document.querySelectorAll('#injected-body tr.injected').length === 1")
    assert page.evaluate("document.querySelector('#injected-body tr').textContent").endswith(
        "v4.0/eventsfail 503/5003503"
    )
    emulator.faults.fail_next(2, status=500)
    emulator.faults.fail_batch_items(customer_ids=["vip"])
    page.wait_for("document.getElementById('armed').textContent.includes('fail 500/5000')")
    armed = page.evaluate("[...document.querySelectorAll('#armed li')].map(li => li.textContent)")
    assert armed == ["fail 500/5000 \u00d72", "batch items of: vip"]
    counters = page.evaluate("document.getElementById('counters').textContent")
    assert "6events" in counters
    assert "200\u00d73  503\u00d71v4.0/events requests" in counters
    page.screenshot(ARTIFACTS / "emulator-live-page-2-events-arrived.png")

    # The customer filter asks the emulator for matching events only.
    page.evaluate(
        "const f = document.getElementById('customer'); f.value = 'BULK';"
        " f.dispatchEvent(new Event('input')); true"
    )
    page.wait_for(f"{ROWS} === 3")
    assert sorted(cells[1] for cells in rows(page)) == ["bulk-0", "bulk-1", "bulk-2"]
    assert page.evaluate("location.search") == "?customer=BULK"
    assert page.evaluate("document.getElementById('events-count').textContent") == (
        "3 shown of 3 matching \u201cBULK\u201d"
    )
    page.screenshot(ARTIFACTS / "emulator-live-page-3-filtered.png")
    assert page.evaluate("window.__gbtrackMarker") == "loaded once"
    assert page.errors() == []  # no console error, exception, CSP violation or 404


def test_page_says_when_the_emulator_is_gone(
    gameball_emulator: GameballEmulator, page: Page
) -> None:
    page.wait_for("Number(document.body.dataset.polls) >= 1")
    gameball_emulator.stop()
    page.wait_for("document.getElementById('state').className === 'error'")
    assert page.evaluate("document.getElementById('state').textContent").startswith(
        "emulator unreachable"
    )
    # The error collector the other test relies on does see the failed polls.
    assert any("ERR_CONNECTION_REFUSED" in error for error in page.errors()), page.errors()


ORDER_ROWS = "document.querySelectorAll('#orders-body tr.order').length"
ORDER_CELLS = """JSON.stringify([...document.querySelectorAll('#orders-body tr.order')].map(
  tr => [...tr.children].map(td => td.textContent)))"""


def test_page_shows_orders_beside_events_as_they_arrive(
    gameball_emulator: GameballEmulator, page: Page
) -> None:
    import httpx

    emulator = gameball_emulator
    emulator.duplicate_orders = "accept"
    keys = {"APIKey": "test-api-key", "SecretKey": "test-secret-key"}
    base = {"orderDate": "2024-10-16T08:13:29.290Z"}
    page.wait_for("Number(document.body.dataset.polls) >= 1")
    page.evaluate("window.__gbtrackMarker = 'loaded once'; true")
    assert page.evaluate(ORDER_ROWS) == 0
    assert page.evaluate("document.getElementById('orders-empty').hidden") is False
    with httpx.Client(base_url=emulator.url, headers=keys) as http:
        first = {**base, "customerId": "buyer", "orderId": "A-1", "totalPaid": 49.9}
        assert http.post("/api/v4.0/integrations/orders", json=first).status_code == 200
        hostile = {
            **base,
            "customerId": HOSTILE,
            "orderId": HOSTILE,
            "totalPaid": 5,
            "lineItems": [{"productId": "p", "price": 5}, {"title": HOSTILE}],
        }
        assert http.post("/api/v4.1/integrations/orders", json=hostile).status_code == 200
        assert http.post("/api/v4.0/integrations/orders", json=first).status_code == 200
        batch = {"body": [{**base, "customerId": "bulk", "orderId": "B-1", "totalPaid": 7}]}
        assert http.post("/api/v4.0/integrations/batch/orders", json=batch).status_code == 200
        event = {"customerId": "buyer", "events": {"viewed": {}}}
        assert http.post("/api/v4.0/integrations/events", json=event).status_code == 200

    page.wait_for(f"{ORDER_ROWS} === 4 && {ROWS} === 1")
    assert page.evaluate("window.__gbtrackMarker") == "loaded once"  # updated live
    table: list[list[str]] = json.loads(page.evaluate(ORDER_CELLS))
    # Received, customer, order, total paid, points, lines, API, batched, token, status.
    assert [cells[1:] for cells in table] == [
        ["bulk", "B-1", "7", "7", "0", "batch", table[0][7], "no", "batch job completed"],
        ["buyer", "A-1 duplicate", "49.9", "49", "0", "v4.0", "no", "no", "200 answered"],
        [HOSTILE, HOSTILE, "5", "5", "2", "v4.1", "no", "no", "200 answered"],
        ["buyer", "A-1", "49.9", "49", "0", "v4.0", "no", "no", "200 answered"],
    ]
    assert table[0][7].startswith("yes: job ")
    assert page.evaluate("document.getElementById('orders-empty').hidden") is True
    assert page.evaluate("document.getElementById('orders-count').textContent") == (
        "4 shown of 4, 110 points"
    )
    counters = page.evaluate("document.getElementById('counters').textContent")
    assert "4orders" in counters
    assert "110points" in counters
    assert "200\u00d72v4.0/orders requests" in counters
    # Untrusted values stay text.
    assert page.evaluate("document.scripts.length") == 1
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    page.screenshot(ARTIFACTS / "emulator-live-page-4-orders.png")

    # The customer filter applies to orders too.
    page.evaluate(
        "const f = document.getElementById('customer'); f.value = 'BUY';"
        " f.dispatchEvent(new Event('input')); true"
    )
    page.wait_for(f"{ORDER_ROWS} === 2")
    assert page.evaluate("document.getElementById('orders-count').textContent") == (
        "2 shown of 2 matching \u201cBUY\u201d, 98 points"
    )
    assert page.errors() == []
