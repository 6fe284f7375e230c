"""upload_files and after_upload under the session harness: modes, resume after a failed part, validation."""

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from splendor_api import SplendorClient, SplendorConfig, models
from splendor_emulator import Emulator, EmulatorConfig, running_emulator
from splendor_flows.engine.errors import SpecError
from splendor_flows.flows.after_upload import after_upload
from splendor_flows.flows.upload import upload_files
from splendor_flows.orchestration.runtime import use_runtime
from splendor_flows.tasks.uploads import UploadInputError, inspect_files

PART = 64 * 1024
INITIATE = "POST /v1/ingest/sources/{source_key}/uploads"
SIGN = "POST /v1/ingest/sources/{source_key}/uploads/parts"
PUT = "PUT /_objects/{bucket}/{key:path}"
COMPLETE = "POST /v1/ingest/sources/{source_key}/uploads/complete"
UPLOAD_ROUTES = (INITIATE, SIGN, PUT, COMPLETE)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """This module's own emulator: uploads above 64 KiB go multipart, in 64 KiB parts."""
    config = EmulatorConfig(
        sync_seconds=0.3,
        ingest_seconds=0.02,
        bucket_root=tmp_path_factory.mktemp("upload-buckets"),
        upload_single_max_bytes=PART,
        upload_part_size_bytes=PART,
    )
    with running_emulator(config) as emu:
        yield emu


@pytest.fixture
async def hosted(emulator: Emulator, source_key: str) -> str:
    config = SplendorConfig(api_base=emulator.base_url, tenant_id="acme", token="acme-admin-token")
    async with SplendorClient(config) as client:
        await client.create_hosted_source(
            models.CreateHostedSource(source_key=source_key, name=source_key, dataset_id="uploads")
        )
    return source_key


def write_jsonl(path: Path, records: int) -> Path:
    path.write_text("".join(json.dumps({"n": i, "text": "lorem ipsum " * 6}) + "\n" for i in range(records)))
    return path


def upload_counts(emu: Emulator) -> dict[str, int]:
    counts = emu.counts()
    return {route.split(" ")[-1].rsplit("/", 1)[-1]: counts.get(route, 0) for route in UPLOAD_ROUTES}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after}


def landed(emu: Emulator, bucket: str, key: str) -> bytes:
    return (emu.bucket_root / bucket / key).read_bytes()


class FailingPart(httpx.AsyncBaseTransport):
    """Real HTTP, except that PUTs of one part number are refused like an object store would (403)."""

    def __init__(self, part_number: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.part = str(part_number)
        self.refused = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and request.url.params.get("part") == self.part:
            self.refused += 1
            return httpx.Response(403, content=b"<Error><Code>AccessDenied</Code></Error>")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:  # shared by every client of the run: closed by the test
        pass


async def test_single_and_multipart_files_land_complete(
    emulator: Emulator, hosted: str, tmp_path: Path
) -> None:
    small = write_jsonl(tmp_path / "small.jsonl", 3)
    big = write_jsonl(tmp_path / "big.jsonl", 4000)
    parts = -(-big.stat().st_size // PART)
    assert parts >= 4
    before = upload_counts(emulator)

    done = await upload_files(hosted, [str(small), str(big)], max_parallel_parts=3)

    assert [u.mode for u in done] == ["single", "multipart"]
    assert done[1].parts == parts
    assert delta(upload_counts(emulator), before) == {
        "uploads": 2,
        "parts": 1,
        "{key:path}": 1 + parts,
        "complete": 2,
    }
    for item, source in zip(done, (small, big), strict=True):
        assert landed(emulator, item.bucket, item.key) == source.read_bytes()
        assert item.ingest_run_id is not None

    summary = await after_upload(
        hosted, upload_session_id=done[1].upload_session_id, event_id="evt-" + hosted
    )
    assert summary.upload_ingest_status == "ready"
    assert summary.notes == ["not an Airbyte source with a connection: no hand-off"]


async def test_failed_part_resumes_without_resending_finished_parts(
    emulator: Emulator, hosted: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = write_jsonl(tmp_path / "resume.jsonl", 5000)
    parts = -(-big.stat().st_size // PART)
    upload_id = f"resume-{hosted}"
    failing = FailingPart(3)
    before = upload_counts(emulator)

    with use_runtime(transport=failing):
        state = await upload_files(
            hosted, [str(big)], upload_id=upload_id, max_parallel_parts=2, return_state=True
        )

    assert state.is_failed()
    assert failing.refused == 2  # the first PUT and the one after re-signing
    first = delta(upload_counts(emulator), before)
    assert first["uploads"] == 1 and first["complete"] == 0
    assert first["{key:path}"] == parts - 1  # every other part finished despite part 3

    await failing.inner.aclose()
    middle = upload_counts(emulator)
    [done] = await upload_files(hosted, [str(big)], upload_id=upload_id)

    second = delta(upload_counts(emulator), middle)
    assert second == {"uploads": 0, "parts": 1, "{key:path}": 1, "complete": 1}
    assert landed(emulator, done.bucket, done.key) == big.read_bytes()
    [session] = [u for u in emulator.uploads("acme") if u["upload_session_id"] == done.upload_session_id]
    assert session["mode"] == "multipart"

    # The same upload id once more: everything comes from checkpoints, nothing is sent again.
    again = upload_counts(emulator)
    [same] = await upload_files(hosted, [str(big)], upload_id=upload_id)
    assert same.upload_session_id == done.upload_session_id
    assert delta(upload_counts(emulator), again) == dict.fromkeys(again, 0)


async def test_bad_files_are_refused_before_any_call(emulator: Emulator, hosted: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    before = emulator.counts()

    with pytest.raises(SpecError) as caught:
        await upload_files(hosted, [str(tmp_path / "missing.jsonl"), str(empty), str(tmp_path)])

    message = str(caught.value)
    assert "missing.jsonl: no such file" in message
    assert "empty.jsonl: the file is empty" in message
    assert "not a regular file" in message
    assert emulator.counts() == before


def test_non_utf8_file_name_is_refused(tmp_path: Path) -> None:
    # Such a name cannot even travel as a flow parameter (Prefect's API is JSON), so the CLI checks
    # files with inspect_files before it starts the flow.
    bad_name = os.fsdecode(bytes(tmp_path) + b"/caf\xe9.jsonl")
    Path(bad_name).write_text('{"a": 1}\n')
    with pytest.raises(UploadInputError, match="not valid UTF-8; rename the file"):
        inspect_files([bad_name])


async def test_after_upload_hands_airbyte_source_off_once_per_event(
    emulator: Emulator, source_key: str, stripe_secret: str
) -> None:
    from splendor_flows.flows.connect_source import connect_source

    from .conftest import stripe_spec

    await connect_source(spec=stripe_spec(source_key), wait_for_ingest=False)
    route = "POST /v1/admin/airbyte-sources/{source_id}/enqueue-ingest"
    before = emulator.count(route)
    first = await after_upload(source_key, key="drops/x.jsonl", event_id=f"evt-{source_key}")
    assert first.handed_off_run_id is not None
    assert set(first.ingest_statuses.values()) == {"ready"}
    second = await after_upload(source_key, key="drops/x.jsonl", event_id=f"evt-{source_key}")
    assert second.ingest_run_ids == first.ingest_run_ids
    assert emulator.count(route) - before == 1


def test_event_id_is_stable_per_upload_session() -> None:
    from splendor_flows.orchestration.checkpoint import Scope
    from splendor_flows.tasks.uploads import upload_event_id

    scope = Scope(tenant="acme", source_key="catalog", sync_id="a")
    other_run = scope.model_copy(update={"sync_id": "b"})
    assert upload_event_id(scope, "ups_1") == upload_event_id(other_run, "ups_1")
    assert upload_event_id(scope, "ups_1") != upload_event_id(scope, "ups_2")
