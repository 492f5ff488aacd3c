"""Issue 10 §4: `gbtrack events` on example packages (tests/catalog_examples)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent / "catalog_examples"
SRC = Path(__file__).resolve().parent.parent / "src"


def events(*args: str, module: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GAMEBALL_", "GBTRACK_"))}
    env["PYTHONPATH"] = str(SRC)
    command = (
        [sys.executable, "-m", "gbtrack", "events", *args]
        if module
        else [
            sys.executable,
            "-c",
            "import sys; from gbtrack.cli import main; sys.exit(main(sys.argv[1:]))",
            "events",
            *args,
        ]
    )
    return subprocess.run(
        command, cwd=EXAMPLES, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_consistent_package_exits_0() -> None:
    result = events("shop_ok")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "purchase_completed  (2 sites)" in out
    assert "checkout  shop_ok/orders.py:7  on=success" in out
    assert "checkout_async  shop_ok/orders.py:17  on=success" in out
    assert "identity: customer_id=customer.id, email=customer.email" in out
    assert "amount: float  (result.total)" in out
    assert out.rstrip().endswith("no inconsistencies")


def test_inconsistent_package_exits_1_and_says_why() -> None:
    result = events("shop_bad", module=False)  # the `gbtrack` command's entry point
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "[keys] event 'purchase_completed' has different metadata keys at" in out
    assert (
        "[types] event 'purchase_completed': metadata['order_id'] is int at "
        "shop_bad/mobile.py:12 but str at shop_bad/web.py:8"
    ) in out
    assert "[spelling] metadata keys 'amount' (shop_bad/web.py:8) and 'amout'" in out
    assert "[synonym] metadata keys 'amount' (shop_bad/web.py:8) and 'price'" in out
    # the forward references of web.py (classes below the function) were resolved
    assert "amount: float  (result.total)" in out


def test_json_format() -> None:
    result = events("shop_bad", "--format", "json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    names = [e["name"] for e in data["events"]]
    assert names == ["purchase_completed", "refund_issued"]
    site = data["events"][1]["sites"][0]
    assert site == {
        "function": "refund",
        "module": "shop_bad.mobile",
        "where": "shop_bad/mobile.py:21",
        "on": "success",
        "identity": {"customer_id": "customer_id"},
        "metadata": {"price": {"type": "float", "source": "price"}},
    }
    kinds = sorted(i["kind"] for i in data["inconsistencies"])
    assert kinds == ["keys", "spelling", "synonym", "types"]


def test_markdown_format() -> None:
    result = events("shop_ok", "--format", "markdown")
    assert result.returncode == 0
    out = result.stdout
    assert out.startswith("# Tracked events\n")
    assert "## `purchase_completed`" in out
    assert "| `amount` | float | `result.total` | shop_ok/orders.py:7 |" in out
    assert "## Inconsistencies\n\nNone." in out


@pytest.mark.parametrize("module", ["shop_ok.orders", "shop_ok"])
def test_a_module_or_a_package(module: str) -> None:
    assert events(module).returncode == 0


def test_an_import_error_exits_2() -> None:
    result = events("no_such_module_here")
    assert result.returncode == 2
    assert "importing failed: ModuleNotFoundError" in result.stderr
