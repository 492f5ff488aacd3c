"""``gbtrack emulator`` and ``python -m gbtrack.emulator``: help, options, start and stop."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from gbtrack.cli import main as gbtrack_main
from gbtrack.emulator import parse_rate_limits

from .conftest import KEYS, V40

EVENT = {"customerId": "c", "events": {"e": {}}}
URL = re.compile(r"listening on (http://\S+)")


def test_gbtrack_emulator_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        gbtrack_main(["emulator", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in (
        "--port",
        "--host",
        "--api-key",
        "--secret-key",
        "--no-rate-limit",
        "--min-version",
    ):
        assert option in out
    assert "--rate-limit N/S[,N/S...]" in out
    assert "live page" in " ".join(out.split())  # where to watch the events arrive
    assert "100/1,1200/30" in out


def test_the_subcommand_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        gbtrack_main(["--help"])
    assert "emulator" in capsys.readouterr().out


def test_a_bad_rate_limit_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        gbtrack_main(["emulator", "--rate-limit", "lots"])
    assert exit_info.value.code == 2
    assert "COUNT/SECONDS" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gbtrack_main(["emulator", "--rate-limit", "5/1", "--no-rate-limit"])


def test_parse_rate_limits() -> None:
    assert parse_rate_limits("100/1,1200/30") == ((100, 1.0), (1200, 30.0))
    assert parse_rate_limits(" 5/0.5 ") == ((5, 0.5),)
    for bad in ("", "5", "a/1", "0/1", "5/0"):
        with pytest.raises(ValueError):
            parse_rate_limits(bad)


def test_a_busy_port_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert gbtrack_main(["emulator", "--port", str(port)]) == 1
    assert "cannot listen" in capsys.readouterr().err


@contextmanager
def running(*args: str) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        try:
            assert proc.stdout is not None
            lines = [proc.stdout.readline()]
            while lines[-1] and "Ctrl-C" not in lines[-1]:
                lines.append(proc.stdout.readline())
            match = URL.search(lines[0])
            assert match, lines
            yield proc, match.group(1), "".join(lines)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_python_m_runs_until_signalled(sig: signal.Signals) -> None:
    args = ("-m", "gbtrack.emulator", "--port", "0", "--api-key", "k1", "--rate-limit", "2/60")
    with running(*args) as (proc, url, banner):
        assert url.startswith("http://127.0.0.1:")
        assert "k1" in banner
        assert "test-secret-key" in banner
        assert f"live page:  {url}/" in banner
        with httpx.Client(base_url=url, headers={"APIKey": "k1"}) as http:
            statuses = [http.post(V40, json=EVENT).status_code for _ in range(3)]
            assert statuses == [200, 200, 429]
            assert len(http.get("/_emulator/events").json()) == 2
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "stopped" in out
        assert err == ""


@pytest.mark.slow
def test_gbtrack_emulator_subprocess_without_rate_limit() -> None:
    args = ("-m", "gbtrack.cli", "emulator", "--port", "0", "--no-rate-limit", "--high-security")
    with running(*args) as (proc, url, banner):
        assert "rate limit: off" in banner
        assert "high security: on" in banner
        with httpx.Client(base_url=url) as http:
            assert http.post(V40, json=EVENT, headers={"APIKey": KEYS["APIKey"]}).status_code == 401
            assert all(
                http.post(V40, json=EVENT, headers=KEYS).status_code == 200 for _ in range(5)
            )
        proc.terminate()
        proc.communicate(timeout=30)
        assert proc.returncode == 0


@pytest.mark.slow
def test_gbtrack_emulator_subprocess_with_a_minimum_version() -> None:
    args = ("-m", "gbtrack.cli", "emulator", "--port", "0", "--min-version", "4.1")
    with running(*args) as (proc, url, banner):
        assert "minimum API version: 4.1" in banner
        with httpx.Client(base_url=url, headers=KEYS) as http:
            refused = http.post(V40, json=EVENT)
            assert (refused.status_code, refused.json()["code"]) == (403, 1003)
            assert http.post("/api/v4.1/integrations/events", json=EVENT).status_code == 200
        proc.terminate()
        proc.communicate(timeout=30)
        assert proc.returncode == 0


@pytest.mark.slow
def test_python_m_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gbtrack.emulator", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m gbtrack.emulator")
    assert "--batch-delay" in result.stdout


@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_a_port_out_of_range_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], port: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        gbtrack_main(["emulator", "--port", port])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--port" in err
    assert "0-65535" in err


def test_order_options_are_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        gbtrack_main(["emulator", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for option in (
        "--order-rate-limit N/S[,N/S...]",
        "--no-order-rate-limit",
        "--points-per-unit RATE",
        "--duplicate-orders {reject,accept}",
        "--duplicate-order-status STATUS",
        "--duplicate-order-code CODE",
        "--no-place-order",
    ):
        assert option in out
    assert "30/1,360/30" in out
    assert "UNCONFIRMED" in out


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (["--points-per-unit", "-1"], "points rate"),
        (["--points-per-unit", "many"], "points rate"),
        (["--duplicate-orders", "ignore"], "invalid choice"),
        (["--duplicate-order-status", "200"], "400-599"),
        (["--order-rate-limit", "0/1"], "COUNT/SECONDS"),
        (["--order-rate-limit", "5/1", "--no-order-rate-limit"], "not allowed"),
    ],
)
def test_bad_order_options_are_usage_errors(
    capsys: pytest.CaptureFixture[str], args: list[str], word: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        gbtrack_main(["emulator", *args])
    assert exit_info.value.code == 2
    assert word in capsys.readouterr().err


@pytest.mark.slow
def test_gbtrack_emulator_subprocess_with_order_options() -> None:
    args = (
        "-m",
        "gbtrack.cli",
        "emulator",
        "--port",
        "0",
        "--order-rate-limit",
        "2/60",
        "--rate-limit",
        "1/60",
        "--points-per-unit",
        "2.5",
        "--duplicate-orders",
        "accept",
        "--no-place-order",
    )
    orders = "/api/v4.0/integrations/orders"
    body = {"customerId": "c", "orderId": "o", "orderDate": "2024-10-16T08:13:29Z", "totalPaid": 3}
    with running(*args) as (proc, url, banner):
        assert "orders:     rate limit 2/60s; 2.5 point(s) per unit paid" in banner
        assert "duplicates: accept" in banner
        assert f"{url}/_emulator/orders" in banner
        with httpx.Client(base_url=url, headers=KEYS) as http:
            answers = [http.post(orders, json=body) for _ in range(3)]
            assert [a.status_code for a in answers] == [200, 200, 429]  # accepted twice
            assert answers[0].json()["rewardedPoints"] == 7  # floor(3 * 2.5)
            assert http.post(V40, json=EVENT).status_code == 200  # the events bucket: its own
            assert len(http.get("/_emulator/orders").json()) == 2
            assert http.get("/_emulator/system-events").json() == []
            assert http.get("/_emulator/points").json() == {"c": 14}
        proc.terminate()
        proc.communicate(timeout=30)
        assert proc.returncode == 0


@pytest.mark.slow
def test_the_default_banner_names_the_order_settings() -> None:
    with running("-m", "gbtrack.emulator", "--port", "0") as (proc, url, banner):
        assert "orders:     rate limit 30/1s, 360/30s; 1 point(s) per unit paid" in banner
        assert "duplicates: reject (422/9004)" in banner
        with httpx.Client(base_url=url, headers=KEYS) as http:
            stats = http.get("/_emulator/stats").json()
        assert (stats["duplicateOrders"], stats["autoPlaceOrder"]) == ("reject", True)
        proc.terminate()
        proc.communicate(timeout=30)
