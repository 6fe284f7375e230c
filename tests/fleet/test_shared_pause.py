"""The fleet-wide 503 pause: the longest pause any shard saw is the one every shard keeps, also when a
shard that read the shared variable before a longer pause landed writes its shorter one over it."""

import asyncio
import time
import uuid

from prefect import get_client
from prefect.client.schemas.actions import VariableUpdate

from splendor_flows.orchestration.shared_pause import TAG, WATCH_SECONDS, PauseRecord, SharedPause

API = "http://splendor.test"


async def stored(name: str) -> PauseRecord:
    async with get_client() as client:
        variable = await client.read_variable_by_name(name)
    assert variable is not None
    return PauseRecord.model_validate(variable.value)


async def overwrite(name: str, record: PauseRecord) -> None:
    """What a shard's write does once it has read the variable: replace it (there is no compare-and-set)."""
    async with get_client() as client:
        await client.update_variable(
            VariableUpdate(name=name, value=record.model_dump(mode="json"), tags=[TAG])
        )


async def test_a_shorter_pause_written_over_a_longer_one_does_not_win() -> None:
    tenant = f"pause-{uuid.uuid4().hex[:8]}"
    longer = SharedPause(API, tenant, "shard 0", 4)
    async with longer.running():
        longer.gate.close_for(60.0)
        deadline = time.monotonic() + 15
        while longer.published < 1:
            assert time.monotonic() < deadline, "the longer pause was never published"
            await asyncio.sleep(0.05)
        until = (await stored(longer.name)).until
        # Shard 1 saw a 5 s pause and read the variable before shard 0's write landed: its write replaces
        # the longer pause with its shorter one.
        await overwrite(longer.name, PauseRecord(until=time.time() + 5, by="shard 1"))
        deadline = time.monotonic() + 3 * WATCH_SECONDS + 10
        while (await stored(longer.name)).until < until:
            assert time.monotonic() < deadline, "the shorter pause stayed in place of the longer one"
            await asyncio.sleep(0.1)
        assert (await stored(longer.name)) == PauseRecord(until=until, by="shard 0")
        assert longer.restored == 1
        # A shard that joins now keeps the longer pause, not the shorter one.
        joining = SharedPause(API, tenant, "shard 2", 4)
        await joining.watch_once()
        assert joining.gate.closed_for() > 40
        # A shorter pause published the ordinary way leaves the longer one alone.
        joining.gate.close_for(5.0)
        await asyncio.sleep(0.5)
        assert (await stored(longer.name)).until == until and joining.published == 0
