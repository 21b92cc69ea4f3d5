"""The sign-in lockout's arithmetic, on a clock the test turns."""

from __future__ import annotations

from calltracker.accounts.throttle import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_account_opens_again_when_its_oldest_failure_leaves_the_window() -> None:
    clock = Clock()
    throttle = LoginThrottle(max_failures=3, window_seconds=600, clock=clock)
    for step in range(3):
        assert throttle.retry_after("anna", "10.0.0.1") == 0
        throttle.failed("anna", "10.0.0.1")
        clock.now += 60 * (step + 1)  # failures at 1000, 1060, 1180; now 1360

    assert throttle.retry_after("anna", "10.0.0.1") == 240  # 1000 + 600 - 1360
    clock.now = 1601
    assert throttle.retry_after("anna", "10.0.0.1") == 0
    throttle.failed("anna", "10.0.0.1")  # three within 600 s again: 1060, 1180, 1601
    assert throttle.retry_after("anna", "10.0.0.1") == 59


def test_the_lock_follows_the_account_to_any_address_and_any_case() -> None:
    throttle = LoginThrottle(max_failures=2, clock=Clock())
    throttle.failed("Anna", "10.0.0.1")
    throttle.failed("anna ", "10.0.0.2")
    assert throttle.retry_after("ANNA", "10.0.0.3") > 0
    assert throttle.retry_after("boris", "10.0.0.3") == 0


def test_one_address_spraying_many_accounts_is_stopped() -> None:
    throttle = LoginThrottle(max_failures=2, clock=Clock())
    for i in range(8):  # four times the per-account allowance, one guess per account
        assert throttle.retry_after(f"user{i}", "10.6.6.6") == 0
        throttle.failed(f"user{i}", "10.6.6.6")
    assert throttle.retry_after("someone-new", "10.6.6.6") > 0
    assert throttle.retry_after("someone-new", "10.0.0.1") == 0


def test_a_success_clears_the_accounts_failures() -> None:
    throttle = LoginThrottle(max_failures=2, clock=Clock())
    throttle.failed("anna", "10.0.0.1")
    throttle.succeeded("Anna")
    throttle.failed("anna", "10.0.0.1")
    assert throttle.retry_after("anna", "10.0.0.1") == 0
