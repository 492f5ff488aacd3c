"""The ``gameball_emulator`` pytest fixture, exercised in a separate pytest run."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from gbtrack.emulator import GameballEmulator


def _plugin_args() -> list[str]:
    # Installed, the plugin loads through its pytest11 entry point; in a tree whose
    # metadata predates the entry point, load it by module name instead.
    names = {ep.name for ep in entry_points(group="pytest11")}
    return [] if "gbtrack_emulator" in names else ["-p", "gbtrack.emulator.pytest_plugin"]


def test_fixture_yields_a_running_emulator_and_stops_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import httpx

        seen = []

        def test_one(gameball_emulator):
            seen.append(gameball_emulator)
            assert gameball_emulator.running
            assert gameball_emulator.host == "127.0.0.1" and gameball_emulator.port > 0
            key = gameball_emulator.api_key.get_secret_value()
            response = httpx.post(
                gameball_emulator.url + "/api/v4.0/integrations/events",
                json={"customerId": "c", "events": {"e": {}}},
                headers={"APIKey": key},
            )
            assert response.status_code == 200
            assert gameball_emulator.wait_for_events(1, timeout=5)

        def test_two(gameball_emulator, gameball_emulator_factory):
            assert not seen[0].running  # function scope: the first one was stopped
            assert gameball_emulator is not seen[0] and gameball_emulator.event_count == 0
            other = gameball_emulator_factory(rate_limits=None)
            assert other.running and other.rate_limits is None
            assert other.port != gameball_emulator.port
            seen.append(other)

        def test_three():
            assert not seen[1].running
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio", *_plugin_args())
    result.assert_outcomes(passed=3)


def test_fixture_here_is_the_plugins(gameball_emulator: GameballEmulator) -> None:
    assert isinstance(gameball_emulator, GameballEmulator)
    assert gameball_emulator.running


def test_exported_names() -> None:
    import gbtrack.emulator as module

    assert module.__all__ == sorted(module.__all__)
    assert set(module.__all__) == {
        "AsyncEmulatorTransport",
        "DEFAULT_DUPLICATE_ORDER_CODE",
        "DEFAULT_DUPLICATE_ORDER_STATUS",
        "DEFAULT_ORDER_RATE_LIMITS",
        "DEFAULT_POINTS_PER_UNIT",
        "DEFAULT_RATE_LIMITS",
        "DuplicateOrders",
        "ReceivedOrder",
        "DropFault",
        "DropWhen",
        "EmulatorTransport",
        "FailFault",
        "Fault",
        "FaultPlan",
        "GameballEmulator",
        "MAX_BATCH_ITEMS",
        "RateLimits",
        "ReceivedEvent",
        "RequestRecord",
        "parse_rate_limits",
    }
    for name in module.__all__:
        assert getattr(module, name) is not None


def test_internal_errors_fail_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_bug(gameball_emulator):
            gameball_emulator._state.note_internal_error("RuntimeError: boom")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio", *_plugin_args())
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*the Gameball emulator hit internal errors*boom*"])


def test_an_unexpected_handler_error_is_an_internal_error_and_a_500(
    gameball_emulator: GameballEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    from gbtrack.emulator import _state

    def broken(item: object) -> None:
        raise RuntimeError("validation exploded")

    monkeypatch.setattr(_state, "_check_item", broken)
    with httpx.Client(base_url=gameball_emulator.url) as http:
        response = http.post(
            "/api/v4.0/integrations/events",
            json={"customerId": "c", "events": {"e": {}}},
            headers={"APIKey": "test-api-key"},
        )
    assert response.status_code == 500
    assert response.json()["code"] == 5000
    assert gameball_emulator.internal_errors == ["RuntimeError: validation exploded"]
    gameball_emulator._state.reset()  # so that this test's own fixture does not fail it
