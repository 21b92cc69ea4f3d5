"""Fixtures: one shared client session and the fake remote servers, each on its own port."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from .calls import NOW
from .fakes.amocrm import FakeAmoCrm
from .fakes.bitrix24 import FakeBitrix24
from .fakes.ga4 import FakeGa4
from .fakes.metrica import FakeMetrica
from .fakes.webhook_receiver import FakeWebhookReceiver


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def bitrix() -> AsyncIterator[FakeBitrix24]:
    fake = FakeBitrix24()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def amo() -> AsyncIterator[FakeAmoCrm]:
    fake = FakeAmoCrm()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def receiver() -> AsyncIterator[FakeWebhookReceiver]:
    fake = FakeWebhookReceiver()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def ga4() -> AsyncIterator[FakeGa4]:
    fake = FakeGa4(clock=lambda: NOW)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def metrica() -> AsyncIterator[FakeMetrica]:
    fake = FakeMetrica(clock=lambda: NOW)
    await fake.start()
    yield fake
    await fake.close()
