"""Failed sign-ins slow an attacker to a crawl: a lockout per account and per client address.

Passwords are checked with scrypt, which is slow on purpose, but not slow enough on its own
to stop someone guessing from a list. After `max_failures` wrong passwords for one account
within the window, that account's form answers 429 without checking the password; a client
address gets four times as many across all accounts, so spraying one password over many
usernames stops too. A success clears the account's failures. Kept in process: with several
workers an attacker gets each worker's allowance, still far too few guesses to matter.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

WINDOW_SECONDS = 15 * 60
PER_ADDRESS_FACTOR = 4
MAX_KEYS = 50_000


class LoginThrottle:
    def __init__(
        self,
        max_failures: int = 5,
        window_seconds: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = {"user": max_failures, "ip": max_failures * PER_ADDRESS_FACTOR}
        self._window = window_seconds
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def retry_after(self, username: str, address: str) -> int:
        """Seconds until this account may try again from this address; 0 when it may now."""
        now = self._clock()
        wait = 0.0
        for key in self._keys(username, address):
            times = self._recent(key, now)
            if times is not None and len(times) >= self._limits[key[0]]:
                wait = max(wait, times[0] + self._window - now)
        return math.ceil(wait)

    def failed(self, username: str, address: str) -> None:
        now = self._clock()
        if len(self._failures) >= MAX_KEYS:
            self._forget_old(now)
        for key in self._keys(username, address):
            times = self._failures.setdefault(key, deque())
            times.append(now)
            while len(times) > self._limits[key[0]]:
                times.popleft()  # only the latest `limit` failures decide when it opens

    def succeeded(self, username: str) -> None:
        self._failures.pop(("user", _account(username)), None)

    def _keys(self, username: str, address: str) -> tuple[tuple[str, str], ...]:
        return (("user", _account(username)), ("ip", address))

    def _recent(self, key: tuple[str, str], now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def _forget_old(self, now: float) -> None:
        for key in list(self._failures):
            self._recent(key, now)
        if len(self._failures) >= MAX_KEYS:  # a flood of fresh keys: start over, not grow
            self._failures.clear()


def _account(username: str) -> str:
    return username.strip().lower()  # sign-in ignores case, so must the count
