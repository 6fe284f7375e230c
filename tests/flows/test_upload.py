"""upload_files and after_upload under the session harness: modes, resume after a failed part, validation."""

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from splendor_api import SplendorClient, SplendorConfig, models
from splendor_emulator import Emulator, EmulatorConfig, running_emulator
from splendor_flows.engine.errors import PermanentStepError, SpecError
from splendor_flows.flows.after_upload import after_upload
from splendor_flows.flows.upload import upload_files
from splendor_flows.orchestration.runtime import use_runtime
from splendor_flows.specs.source import validate_source_key

from .conftest import stripe_spec

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
        hosted, upload_session_id=done[1].upload_session_id, event_id="evt-" + hosted, tenant="acme"
    )
    assert summary.upload_ingest_status == "ready"
    assert summary.notes == ["not an Airbyte source with a connection: no hand-off"]


async def test_failed_part_resumes_without_resending_finished_parts(
    emulator: Emulator, hosted: str, tmp_path: Path, prefect_harness: Path
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

    # The part checkpoints live in Prefect's result storage (what every worker shares), without a URL.
    stored = [p for p in prefect_harness.rglob("*") if p.is_file() and f"/uploads/acme/{hosted}/" in str(p)]
    assert len([p for p in stored if "/parts-" in str(p)]) == parts
    assert not [p for p in stored if b"sig=" in p.read_bytes() or b"/_objects/" in p.read_bytes()]


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


async def test_after_upload_hands_airbyte_source_off_once_per_event(
    emulator: Emulator, source_key: str, stripe_secret: str
) -> None:
    from splendor_flows.flows.connect_source import connect_source

    await connect_source(spec=stripe_spec(source_key), wait_for_ingest=False)
    route = "POST /v1/admin/airbyte-sources/{source_id}/enqueue-ingest"
    before = emulator.count(route)
    event = {"key": "drops/x.jsonl", "event_id": f"evt-{source_key}", "tenant": "acme"}
    first = await after_upload(source_key, **event)
    assert first.handed_off_run_id is not None
    assert set(first.ingest_statuses.values()) == {"ready"}
    second = await after_upload(source_key, **event)
    assert second.ingest_run_ids == first.ingest_run_ids
    assert emulator.count(route) - before == 1


def test_event_id_is_stable_per_upload_session() -> None:
    from splendor_flows.orchestration.scope import Scope
    from splendor_flows.tasks.uploads import upload_event_id

    scope = Scope(api_base="http://splendor.test", tenant="acme", source_key="catalog", sync_id="a")
    other_run = scope.model_copy(update={"sync_id": "b"})
    assert upload_event_id(scope, "ups_1") == upload_event_id(other_run, "ups_1")
    assert upload_event_id(scope, "ups_1") != upload_event_id(scope, "ups_2")


# --- regression tests: refusals before any call, and errors that name the source ----------------------


class CountingTransport(httpx.AsyncBaseTransport):
    """Real HTTP that records every request a Splendor client sends, to prove a refusal sent none."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(f"{request.method} {request.url.path}")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:  # shared by every client of the run: closed by the test
        pass


BAD_SOURCE_KEYS = ["..", "../catalog", "a/../../b", ".hidden", "-x", "a b", "a\nb", "ключ", "", "x" * 129]


@pytest.mark.parametrize("bad_key", BAD_SOURCE_KEYS)
def test_source_key_rule_is_the_spec_models(bad_key: str) -> None:
    with pytest.raises(SpecError) as caught:
        validate_source_key(bad_key, field="event.source_key")
    message = str(caught.value)
    assert "event.source_key" in message and "letters, digits, '_', '.', '-'; max 128" in message
    assert "\n" not in message  # a hostile value cannot forge log lines
    with pytest.raises(ValidationError, match="source_key"):
        stripe_spec(bad_key)


@pytest.mark.parametrize("good_key", ["stripe-demo", "a", "A.b_c-1", "9lives", "x" * 128])
def test_valid_source_keys_pass(good_key: str) -> None:
    assert validate_source_key(good_key) == good_key == stripe_spec(good_key).source_key


async def test_upload_refuses_a_bad_source_key_before_any_call(tmp_path: Path) -> None:
    small = write_jsonl(tmp_path / "small.jsonl", 2)
    counting = CountingTransport()
    with use_runtime(transport=counting), pytest.raises(SpecError) as caught:
        await upload_files("../catalog", [str(small)])
    await counting.inner.aclose()
    assert "source_key '../catalog' is not allowed" in str(caught.value)
    assert counting.sent == []


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"source_key": "..", "upload_session_id": "ups_1"}, "source_key '..' is not allowed"),
        ({"source_key": "catalog", "upload_session_id": ".."}, "upload_session_id '..' is not allowed"),
    ],
    ids=["source-key", "upload-session-id"],
)
async def test_after_upload_refuses_bad_path_segments_before_any_call(
    params: dict[str, str], names: str
) -> None:
    counting = CountingTransport()
    with use_runtime(transport=counting), pytest.raises(SpecError) as caught:
        await after_upload(**params, event_id="evt-bad-key")
    await counting.inner.aclose()
    assert names in str(caught.value)
    assert counting.sent == []


async def test_after_upload_refuses_an_event_of_another_tenant(hosted: str) -> None:
    counting = CountingTransport()
    with use_runtime(transport=counting), pytest.raises(PermanentStepError) as caught:
        await after_upload(hosted, upload_session_id="ups_1", event_id="evt-globex", tenant="globex")
    await counting.inner.aclose()
    message = str(caught.value)
    assert "'globex'" in message and "'acme'" in message and hosted in message
    assert counting.sent == []


@pytest.mark.parametrize("tenant", [None, ""], ids=["absent", "empty"])
async def test_after_upload_refuses_an_event_without_its_tenant(hosted: str, tenant: str | None) -> None:
    # An event without the tenant label cannot be checked against the credentials: the same source_key
    # in this tenant could be another tenant's source.
    counting = CountingTransport()
    with use_runtime(transport=counting), pytest.raises(PermanentStepError) as caught:
        await after_upload(hosted, upload_session_id="ups_1", event_id="evt-no-tenant", tenant=tenant)
    await counting.inner.aclose()
    message = str(caught.value)
    assert f"source '{hosted}'" in message and "evt-no-tenant" in message
    assert "tenant: the event names no tenant" in message and "splendor.tenant" in message
    assert counting.sent == []


async def test_a_file_changed_while_uploading_fails_naming_file_and_source(
    hosted: str, tmp_path: Path
) -> None:
    big = write_jsonl(tmp_path / "shrinks.jsonl", 3000)
    assert big.stat().st_size > 2 * PART

    def truncate_after_first_part(filename: str, sent: int) -> None:
        # Another program rewrites the file while its parts are on their way.
        with big.open("r+b") as handle:
            handle.truncate(PART + 10)

    with use_runtime(upload_progress=truncate_after_first_part):
        state = await upload_files(hosted, [str(big)], max_parallel_parts=1, return_state=True)

    assert state.is_failed()
    message = state.message or ""
    assert f"source '{hosted}'" in message, message
    assert "shrinks.jsonl" in message and "changed while uploading" in message, message


async def test_after_upload_names_the_source_when_its_credentials_are_missing(hosted: str) -> None:
    # The tenant check reads the configuration first; its failure reads like the preflight's did.
    state = await after_upload(
        hosted, event_id="evt-no-block", credentials_block="no-such-block", return_state=True
    )
    assert state.is_failed()
    assert f"[preflight] source '{hosted}': credentials_block: no Splendor Credentials block" in (
        state.message or ""
    )
