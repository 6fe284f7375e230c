"""The Splendor-run OAuth wait: its pace, its timeout and what ends it, on a clock that only moves when
slept on and a source whose credential status follows a script."""

from types import SimpleNamespace
from typing import Any, cast

import pytest

from splendor_api import SplendorClient
from splendor_api.models import CredentialStatus
from splendor_flows.engine.errors import PermanentStepError
from splendor_flows.human_waits.oauth import _wait_ready
from splendor_flows.orchestration.scope import Scope
from tests.engine.fakes import FakeClock, api_error, shed

SCOPE = Scope(api_base="http://splendor.test", tenant="acme", source_key="drive", sync_id="sync-1")


class ScriptedSource:
    """`get_airbyte_source` answers from `script` in order (an exception is raised), the last repeating."""

    def __init__(self, *script: str | BaseException) -> None:
        self.script = list(script)
        self.looks = 0

    async def get_airbyte_source(self, source_id: int) -> Any:
        step = self.script[min(self.looks, len(self.script) - 1)]
        self.looks += 1
        if isinstance(step, BaseException):
            raise step
        return SimpleNamespace(airbyte=SimpleNamespace(credential_status=step))


async def _wait(source: ScriptedSource, clock: FakeClock, timeout_seconds: int = 30) -> None:
    await _wait_ready(cast(SplendorClient, source), SCOPE, 7, timeout_seconds, clock)


async def test_nobody_approving_ends_the_wait_at_its_timeout_with_the_consent_message() -> None:
    clock = FakeClock()
    with pytest.raises(PermanentStepError, match="nobody approved the OAuth consent within 60 s"):
        await _wait(ScriptedSource(CredentialStatus.PENDING_OAUTH), clock, timeout_seconds=60)
    assert clock.t == pytest.approx(60)
    # Looks at once, then backs off by 1.5 from a second up to 10 s, and stops at the timeout.
    assert clock.sleeps[:6] == pytest.approx([1.0, 1.5, 2.25, 3.375, 5.0625, 7.59375])
    assert max(clock.sleeps) == pytest.approx(10.0)


async def test_ready_ends_the_wait_at_the_look_that_sees_it() -> None:
    clock = FakeClock()
    source = ScriptedSource(
        CredentialStatus.PENDING_OAUTH, CredentialStatus.PENDING_OAUTH, CredentialStatus.READY
    )
    await _wait(source, clock)
    assert source.looks == 3
    assert clock.sleeps == pytest.approx([1.0, 1.5])


async def test_a_failed_authorisation_ends_the_wait_at_once() -> None:
    with pytest.raises(PermanentStepError, match=r"OAuth authorisation failed \(credential_status=failed\)"):
        await _wait(ScriptedSource(CredentialStatus.FAILED), FakeClock())


async def test_an_outage_only_slows_the_wait() -> None:
    clock = FakeClock()
    source = ScriptedSource(shed(retry_after=4.0), shed(), CredentialStatus.READY)
    await _wait(source, clock)
    assert source.looks == 3
    # The server's Retry-After is honoured, then the pause grows with the failures in a row.
    assert clock.sleeps == pytest.approx([4.0, 1.5])


async def test_an_answer_asking_again_cannot_change_ends_the_wait() -> None:
    clock = FakeClock()
    with pytest.raises(PermanentStepError, match="the credentials of source 7 no longer exists"):
        await _wait(ScriptedSource(api_error(404)), clock)
    assert clock.sleeps == []
