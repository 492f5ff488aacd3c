"""Issue 10 §4: `gbtrack events` on example packages (tests/catalog_examples)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests._forkserver import ForkServer

EXAMPLES = Path(__file__).resolve().parent / "catalog_examples"
SRC = Path(__file__).resolve().parent.parent / "src"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GAMEBALL_", "GBTRACK_"))}
    env["PYTHONPATH"] = str(SRC)
    return env


# `python -m gbtrack` and the `gbtrack` command's entry point, as programs.
_AS_MODULE = "import runpy\nrunpy.run_module('gbtrack', run_name='__main__', alter_sys=True)\n"
_AS_COMMAND = "import sys; from gbtrack.cli import main; sys.exit(main(sys.argv[1:]))"
_SERVER: list[ForkServer] = []
# What `gbtrack events` imports before it imports the user's modules (the command line's
# parser imports every command's module).
_PRELOADED = ["gbtrack", "gbtrack.cli", "gbtrack._catalog", "gbtrack.outbox._cli",
              "gbtrack.emulator._cli"]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _fresh_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Each command in a new process forked with gbtrack imported (``_forkserver.py``)."""
    _SERVER.append(ForkServer(_PRELOADED, _env(), tmp_path_factory.mktemp("io")))
    yield
    _SERVER.pop().close()


def events(
    *args: str, module: bool = True, cwd: Path = EXAMPLES, real: bool = False
) -> subprocess.CompletedProcess[str]:
    """``gbtrack events ARGS`` in a process of its own: ``python -m gbtrack`` (``module``)
    or the command's entry point; a new interpreter when ``real``, else a process forked
    from one that has imported gbtrack (the same program, without its start-up)."""
    if real:
        command = (
            [sys.executable, "-m", "gbtrack", "events", *args]
            if module
            else [sys.executable, "-c", _AS_COMMAND, "events", *args]
        )
        return subprocess.run(
            command, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=60, check=False
        )
    code = _AS_MODULE if module else _AS_COMMAND
    done = _SERVER[-1].run(code, ["-m" if module else "-c", "events", *args], cwd, timeout=60)
    return subprocess.CompletedProcess(args, done.returncode, done.stdout, done.stderr)


def test_consistent_package_exits_0() -> None:
    result = events("shop_ok", real=True)  # `python -m gbtrack` itself
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "purchase_completed  (2 sites)" in out
    assert "checkout  shop_ok/orders.py:7  on=success" in out
    assert "checkout_async  shop_ok/orders.py:17  on=success" in out
    assert "identity: customer_id=customer.id, email=customer.email" in out
    assert "amount: float  (result.total)" in out
    assert out.rstrip().endswith("no inconsistencies")


def test_inconsistent_package_exits_1_and_says_why() -> None:
    result = events("shop_bad", module=False, real=True)  # the command's entry point
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
    assert result.stderr == (
        "gbtrack events: importing no_such_module_here failed: ModuleNotFoundError: "
        "No module named 'no_such_module_here'\n"
    )


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        ("import sys\nsys.exit(0)\n", "SystemExit: it called sys.exit(0)"),
        ("import sys\nsys.exit(3)\n", "SystemExit: it called sys.exit(3)"),
        ("raise KeyboardInterrupt\n", "KeyboardInterrupt: "),
        ("raise GeneratorExit('odd')\n", "GeneratorExit: odd"),
    ],
)
def test_any_base_exception_while_importing_exits_2_naming_the_module(
    tmp_path: Path, body: str, shown: str
) -> None:
    package = tmp_path / "exits"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "good.py").write_text(GOOD, encoding="utf-8")
    (package / "quits.py").write_text(body, encoding="utf-8")
    for target, module in (("exits.quits", "exits.quits"), ("exits", "exits.quits")):
        result = events(target, cwd=tmp_path)
        assert result.returncode == 2, result
        assert result.stdout == ""
        assert result.stderr == f"gbtrack events: importing {module} failed: {shown}\n"


GOOD = """
from gbtrack import track


@track("signed_up", customer_id="user_id")
def sign_up(user_id: str) -> None: ...
"""


def test_a_file_name_gets_a_hint_with_the_module_name(tmp_path: Path) -> None:
    (tmp_path / "shop.py").write_text(GOOD, encoding="utf-8")
    result = events("shop.py", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("gbtrack events: importing shop.py failed: ")
    assert result.stderr.endswith("; give a module name, not a file: gbtrack events shop\n")
    assert events("shop", cwd=tmp_path).returncode == 0


HOSTILE = """
from typing import Any

from gbtrack import track


@track("paid", customer_id="user_id", metadata={"note": 'extra["a\\x1b[31mb\\nc"]'})
def pay(user_id: str, extra: Any) -> None: ...
"""


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_names_keys_and_paths_are_printed_escaped(tmp_path: Path, fmt: str) -> None:
    (tmp_path / "hostile.py").write_text(HOSTILE, encoding="utf-8")
    result = events("hostile", "--format", fmt, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    if fmt == "json":  # JSON escapes them its own way
        assert "a\x1b[31mb\nc" in json.loads(result.stdout)["unchecked"][0]["expression"]
    else:
        assert "a\\x1b[31mb\\nc" in result.stdout


def test_refused_names_and_keys_never_reach_the_catalog(tmp_path: Path) -> None:
    (tmp_path / "badname.py").write_text(
        GOOD.replace('"signed_up"', '"signed\\x1b[2Jup"'), encoding="utf-8"
    )
    result = events("badname", cwd=tmp_path)
    assert result.returncode == 2
    assert "\x1b" not in result.stderr
    assert "holds the control character U+001B" in result.stderr


def test_escape() -> None:
    from gbtrack._catalog import escape

    assert escape("purchase_completed") == "purchase_completed"
    assert escape("caf\u00e9 \u0645") == "caf\u00e9 \u0645"  # printable text as is
    assert escape("a\x00b\nc\x1b[31m\x7f") == "a\\x00b\\nc\\x1b[31m\\x7f"


def test_unchecked_expressions_are_counted_and_listed(tmp_path: Path) -> None:
    (tmp_path / "loose.py").write_text(HOSTILE + "\n" + GOOD, encoding="utf-8")
    result = events("loose", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2 expressions checked, 1 unchecked" in result.stdout
    assert (
        "[unchecked] @track('paid') on pay (loose.py:7): metadata['note']='extra[\"a\\x1b[31mb"
        "\\nc\"]': the root: its type is Any"
    ) in result.stdout
    data = json.loads(events("loose", "--format", "json", cwd=tmp_path).stdout)
    assert data["checked"] == 2
    assert [u["reason"] for u in data["unchecked"]] == ["the root: its type is Any"]
