"""The recorder's observer: which calls and stages get an outbox row, written once."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from calltracker.db.models import Call
from calltracker.integrations.outbox.enqueue import enqueue_for_call, stages_for, wanted
from calltracker.telephony.calls import CallAnswered
from calltracker.telephony.recorder import CallChange

from .fakes.bitrix24 import FakeBitrix24
from .outbox_support import (  # noqa: F401  (fixtures)
    World,
    bitrix_config,
    db_url_fixture,
    outbox_pg_database,
    pg_db_url_fixture,
    world_fixture,
)


async def keys(world: World) -> list[str]:
    return [row.idempotency_key for row in await world.rows()]


async def test_a_finished_call_gets_one_hangup_row_per_integration(
    world: World, bitrix: FakeBitrix24
) -> None:
    first = await world.integration("bitrix24", bitrix_config(bitrix))
    second = await world.integration("bitrix24", bitrix_config(bitrix))

    call_id = await world.call()

    assert sorted(await keys(world)) == [f"{first}:{call_id}:hangup", f"{second}:{call_id}:hangup"]
    assert await world.states() == ["pending", "pending"]


async def test_a_fact_emitted_twice_adds_no_second_row(world: World, bitrix: FakeBitrix24) -> None:
    await world.integration("bitrix24", bitrix_config(bitrix))
    call_id = await world.call()

    # The same CallEnded again, as after an AMI reconnect replays it.
    await world.end_call(call_id, talk=125, status="answered", target=True)

    assert len(await world.rows()) == 1


async def test_unique_skips_a_repeat_callers_call(world: World, bitrix: FakeBitrix24) -> None:
    await world.integration("bitrix24", bitrix_config(bitrix), trigger="unique")

    first = await world.call(caller="+79990000001", unique=True)
    await world.call(caller="+79990000001", unique=False)

    assert [row.call_id for row in await world.rows()] == [first]


async def test_target_skips_a_short_call(world: World, bitrix: FakeBitrix24) -> None:
    await world.integration("bitrix24", bitrix_config(bitrix), trigger="target")

    await world.call(talk=5, target=False)
    long_call = await world.call(talk=125, target=True)

    assert [row.call_id for row in await world.rows()] == [long_call]


async def test_ring_stage_enqueues_at_call_started_and_the_hangup_follows(
    world: World, bitrix: FakeBitrix24
) -> None:
    ring = await world.integration(
        "bitrix24", bitrix_config(bitrix, stages=["ring", "hangup"]), stage="ring"
    )
    hangup_only = await world.integration("bitrix24", bitrix_config(bitrix))

    call_id = await world.call(ring_only=True)
    assert await keys(world) == [f"{ring}:{call_id}:ring"]

    await world.end_call(call_id, talk=125, status="answered", target=True)
    assert sorted(await keys(world)) == sorted(
        [f"{ring}:{call_id}:ring", f"{ring}:{call_id}:hangup", f"{hangup_only}:{call_id}:hangup"]
    )


async def test_disabled_integrations_and_other_facts_add_nothing(
    world: World, bitrix: FakeBitrix24
) -> None:
    from calltracker.integrations import config as integration_config

    integration_id = await world.integration("bitrix24", bitrix_config(bitrix))
    async with world.sessionmaker.begin() as session:
        integration = await integration_config.get_integration(session, integration_id)
        await integration_config.update_integration(session, integration, enabled=False)
    await world.call()
    assert await world.rows() == []

    async with world.sessionmaker.begin() as session:
        integration = await integration_config.get_integration(session, integration_id)
        await integration_config.update_integration(session, integration, enabled=True)
        call = (await session.scalars(select(Call))).one()
        fact = CallAnswered(call.linkedid, "101", call.started_at, "74951230001", call.caller)
        await enqueue_for_call(CallChange(call, fact, session))
    assert await world.rows() == []


@pytest.mark.parametrize(
    ("integration_stage", "adapter_stages", "expected"),
    [
        ("hangup", {"hangup"}, {"hangup"}),
        ("hangup", {"ring", "hangup"}, {"hangup"}),
        ("ring", {"ring", "hangup"}, {"ring", "hangup"}),
        ("ring", {"ring"}, {"ring"}),
    ],
)
def test_stages_for(integration_stage: str, adapter_stages: set[str], expected: set[str]) -> None:
    assert stages_for(integration_stage, frozenset(adapter_stages)) == expected


@pytest.mark.parametrize(
    ("trigger", "stage", "unique", "target", "expected"),
    [
        ("every", "ring", False, False, True),
        ("every", "hangup", False, False, True),
        ("unique", "ring", True, False, True),
        ("unique", "hangup", False, True, False),
        ("target", "hangup", False, True, True),
        ("target", "hangup", True, False, False),
        ("target", "ring", True, True, False),
    ],
)
def test_wanted(trigger: str, stage: str, unique: bool, target: bool, expected: bool) -> None:
    call = Call(unique=unique, target=target)
    assert wanted(trigger, stage, call) is expected
