"""Fixtures: the fake ad platforms, each on its own port, and one client session."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from .fakes.direct import FakeDirect
from .fakes.google import FakeGoogleAds
from .fakes.vk import FakeVk


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def direct() -> AsyncIterator[FakeDirect]:
    fake = FakeDirect()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def vk() -> AsyncIterator[FakeVk]:
    fake = FakeVk()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def google() -> AsyncIterator[FakeGoogleAds]:
    fake = FakeGoogleAds()
    await fake.start()
    yield fake
    await fake.close()
