"""Bad-input catalog: every case must fail with an error that names what is wrong, and change nothing
in Splendor (the emulator's state and its log of committed mutations are compared before and after).

Surfaces: source specs and flow parameters (through the real flows under the Prefect harness), the
connectors file, after-upload event payloads, upload inputs, and malformed API responses (client level,
httpx.MockTransport).
"""

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from splendor_emulator import Emulator
from splendor_flows.flows.after_upload import after_upload
from splendor_flows.flows.connect_source import connect_source
from splendor_flows.flows.sync_source import sync_source
from splendor_flows.flows.upload import upload_files
from splendor_flows.specs.connectors_file import ConnectorsFileError, load_connectors, parse_connectors
from tests.reliability.conftest import RemoteState

STRIPE_SECRET = "stripe-test-credentials"


def good_spec(key: str) -> dict[str, Any]:
    return {
        "provider_key": "stripe",
        "source_key": key,
        "dataset_id": "payments",
        "bucket": "acme-connectors",
        "iam_role_arn": "arn:aws:iam::123456789012:role/acme-splendor",
        "streams": ["charges"],
        "credentials_secret": STRIPE_SECRET,
    }


def _drop(field: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda spec: {k: v for k, v in spec.items() if k != field}


def _set(**values: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda spec: {**spec, **values}


# (case id, how the spec is broken, text the error must contain)
SPEC_CASES: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]], str]] = [
    ("key-traversal", _set(source_key="../../etc/passwd"), "spec.source_key"),
    ("key-slash", _set(source_key="team/stripe"), "spec.source_key"),
    ("key-unicode", _set(source_key="stripe-ключ"), "spec.source_key"),
    ("key-empty", _set(source_key=""), "spec.source_key"),
    ("key-too-long", _set(source_key="k" * 129), "spec.source_key"),
    ("bucket-uppercase", _set(bucket="Acme_Bucket"), "spec.bucket"),
    ("bucket-traversal", _set(bucket="../acme"), "spec.bucket"),
    ("iam-role-malformed", _set(iam_role_arn="arn:aws:iam::123:role/x"), "spec.iam_role_arn"),
    ("prefix-absolute", _set(prefix="/etc/"), "spec.prefix"),
    ("prefix-traversal", _set(prefix="a/../../b/"), "spec.prefix"),
    ("streams-duplicate", _set(streams=["charges", "charges"]), "spec.streams"),
    ("streams-empty-name", _set(streams=[""]), "spec.streams"),
    ("credentials-in-parameters", _set(api_key="sk_test_1"), "spec.api_key"),
    ("retention-zero", _set(retention_days=0), "spec.retention_days"),
    ("cron-three-fields", _set(schedule={"cron": "0 3 * *  "}), "spec.schedule.cron"),
    ("cron-out-of-range", _set(schedule={"cron": "61 3 * * *"}), "spec.schedule.cron"),
    ("secret-name-traversal", _set(credentials_secret="../other-tenant"), "spec.credentials_secret"),
    ("redirect-javascript", _set(oauth={"redirect_url": "javascript:alert(1)"}), "spec.oauth.redirect_url"),
    ("dataset-missing", _drop("dataset_id"), "spec.dataset_id"),
    ("provider-empty", _set(provider_key=""), "spec.provider_key"),
    ("boost-zero", _set(search_config={"text_fields": [{"field": "x", "boost": 0}]}), "boost"),
]


@pytest.mark.parametrize(("case", "breaks", "names"), SPEC_CASES, ids=[c[0] for c in SPEC_CASES])
async def test_bad_spec_fails_before_any_call(
    emulator: Emulator, case: str, breaks: Callable[[dict[str, Any]], dict[str, Any]], names: str
) -> None:
    remote = RemoteState(emulator)
    requests_before = sum(emulator.counts().values())
    state = await connect_source(spec=breaks(good_spec(f"bad-{case}")), return_state=True)
    assert state.is_failed()
    assert names in (state.message or ""), state.message
    assert sum(emulator.counts().values()) == requests_before, "a request was sent"
    remote.assert_unchanged()


# Flow parameters and runtime checks that need a look at Splendor (reads only) before refusing.
PARAM_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("attempts-zero", {"max_sync_attempts": 0}, "max_sync_attempts"),
    ("attempts-negative", {"max_sync_attempts": -1}, "max_sync_attempts"),
    ("attempts-huge", {"max_sync_attempts": 10_000}, "max_sync_attempts"),
    ("poll-initial-zero", {"poll": {"initial_seconds": 0}}, "poll.initial_seconds"),
    ("poll-deadline-huge", {"poll": {"deadline_seconds": 10**9}}, "poll.deadline_seconds"),
    ("spec-not-an-object", {"spec": "stripe"}, "spec"),
    (
        "unknown-credentials-block",
        {"credentials_block": "nope"},
        "no Splendor Credentials block named 'nope'",
    ),
    ("missing-secret-block", {"spec": {"credentials_secret": "no-such-secret"}}, "no Secret block named"),
    # Not here: an unknown stream name. Splendor lists a connector's streams only for a source whose
    # credentials are ready, so that check runs after create and provision, before the connection
    # (tests/flows/test_streams_and_catalog.py holds it to zero connection, sync and ingest calls).
    ("unknown-provider", {"spec": {"provider_key": "stripe-v0"}}, "unknown provider_key 'stripe-v0'"),
]


@pytest.mark.parametrize(("case", "params", "names"), PARAM_CASES, ids=[c[0] for c in PARAM_CASES])
async def test_bad_flow_parameters_change_nothing(
    emulator: Emulator, stripe_secret: str, case: str, params: dict[str, Any], names: str
) -> None:
    remote = RemoteState(emulator)
    spec = good_spec(f"param-{case}")
    if isinstance(params.get("spec"), dict):
        spec.update(params.pop("spec"))
    kwargs: dict[str, Any] = {"spec": spec, "sync_id": str(uuid.uuid4()), **params}
    state = await connect_source(**kwargs, return_state=True)
    assert state.is_failed()
    assert names in (state.message or ""), state.message
    remote.assert_unchanged()


async def test_secret_block_not_a_json_object(emulator: Emulator) -> None:
    from prefect.blocks.system import Secret

    await Secret(value="sk_test_plain-string").save("stripe-string-secret", overwrite=True)
    remote = RemoteState(emulator)
    spec = {**good_spec("param-secret-string"), "credentials_secret": "stripe-string-secret"}
    state = await connect_source(spec=spec, return_state=True)
    assert state.is_failed()
    assert "must hold a JSON object" in (state.message or "")
    remote.assert_unchanged()


async def test_credentials_failing_connector_schema_name_field_not_value(emulator: Emulator) -> None:
    from prefect.blocks.system import Secret

    canary = f"canary-cred-{uuid.uuid4().hex[:8]}"
    await Secret(value={"api_key": canary, "account_id": "acct_1"}).save("stripe-bad-key", overwrite=True)
    remote = RemoteState(emulator)
    spec = {**good_spec("param-bad-key"), "credentials_secret": "stripe-bad-key"}
    state = await connect_source(spec=spec, return_state=True)
    assert state.is_failed()
    assert "api_key" in (state.message or "") and canary not in (state.message or "")
    remote.assert_unchanged()


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"source_key": "never-connected"}, "no such source in the tenant"),
        ({"source_key": "../../etc"}, "source_key '../../etc' is not allowed"),
        ({"source_key": "x", "trigger": "sometimes"}, "trigger"),
        ({"source_key": "x", "max_sync_attempts": 0}, "max_sync_attempts"),
    ],
    ids=["sync-unknown-source", "sync-traversal-key", "sync-bad-trigger", "sync-attempts-zero"],
)
async def test_bad_sync_parameters(emulator: Emulator, params: dict[str, Any], names: str) -> None:
    remote = RemoteState(emulator)
    state = await sync_source(**params, return_state=True)
    assert state.is_failed()
    assert names in (state.message or ""), state.message
    remote.assert_unchanged()


# --- after-upload event payloads -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"source_key": "no-such-source", "upload_session_id": "ups_x"}, "no such source"),
        ({"source_key": "../../../tmp", "event_id": "evt-1"}, "source_key '../../../tmp' is not allowed"),
        ({"source_key": "x", "poll": {"cap_seconds": -1}}, "poll.cap_seconds"),
        ({"source_key": None}, "source_key"),
    ],
    ids=["event-unknown-source", "event-traversal-key", "event-bad-poll", "event-no-source-key"],
)
async def test_bad_after_upload_events(emulator: Emulator, params: dict[str, Any], names: str) -> None:
    remote = RemoteState(emulator)
    state = await after_upload(**params, return_state=True)
    assert state.is_failed()
    assert names in (state.message or ""), state.message
    remote.assert_unchanged()


# --- connectors file -------------------------------------------------------------------------------

ROLE = "arn:aws:iam::123456789012:role/acme-splendor"
ENTRY = {"provider_key": "stripe", "source_key": "s1", "dataset_id": "d", "credentials_secret": "x"}
DEFAULTS = {"bucket": "acme-connectors", "iam_role_arn": ROLE}

FILE_CASES: list[tuple[str, Any, str]] = [
    ("not-a-mapping", ["sources"], "expected a mapping"),
    (
        "unknown-top-level",
        {"sources": [ENTRY], "defaults": DEFAULTS, "source": []},
        "source: unknown top-level",
    ),
    ("version-2", {"version": 2, "sources": [ENTRY], "defaults": DEFAULTS}, "unsupported version 2"),
    (
        "default-source-key",
        {"defaults": {**DEFAULTS, "source_key": "x"}, "sources": [ENTRY]},
        "defaults.source_key",
    ),
    ("default-unknown-field", {"defaults": {**DEFAULTS, "token": "t"}, "sources": [ENTRY]}, "defaults.token"),
    ("no-sources", {"defaults": DEFAULTS, "sources": []}, "sources: expected a non-empty list"),
    ("duplicate-key", {"defaults": DEFAULTS, "sources": [ENTRY, ENTRY]}, "sources[1].source_key"),
    (
        "entry-bad-bucket",
        {"sources": [{**ENTRY, "bucket": "B!", "iam_role_arn": ROLE}]},
        "sources[0] (s1).bucket",
    ),
    ("entry-not-mapping", {"defaults": DEFAULTS, "sources": ["stripe"]}, "sources[0]: expected a mapping"),
    (
        "entry-traversal-key",
        {"defaults": DEFAULTS, "sources": [{**ENTRY, "source_key": "../x"}]},
        "source_key",
    ),
]


@pytest.mark.parametrize(("case", "data", "names"), FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_connectors_file(emulator: Emulator, tmp_path: Path, case: str, data: Any, names: str) -> None:
    remote = RemoteState(emulator)
    path = tmp_path / "connectors.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConnectorsFileError) as caught:
        load_connectors(path)
    assert names in str(caught.value)
    with pytest.raises(ConnectorsFileError):
        parse_connectors(data)
    remote.assert_unchanged()


@pytest.mark.parametrize(
    ("text", "names"),
    [("sources: [\n  - {provider_key: stripe\n", "not valid YAML"), (None, "cannot read it")],
    ids=["yaml-syntax", "file-missing"],
)
def test_unreadable_connectors_file(tmp_path: Path, text: str | None, names: str) -> None:
    path = tmp_path / "connectors.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConnectorsFileError) as caught:
        load_connectors(path)
    assert names in str(caught.value)


# --- uploads (the flow refuses before any call) ----------------------------------------------------


def _empty(tmp: Path) -> list[str]:
    (tmp / "empty.jsonl").write_bytes(b"")
    return [str(tmp / "empty.jsonl")]


def _directory(tmp: Path) -> list[str]:
    return [str(tmp)]


def _non_utf8_name(tmp: Path) -> list[str]:
    name = os.fsdecode(b"bad-\xff\xfe.jsonl")
    (tmp / name).write_bytes(b'{"a": 1}\n')
    return [str(tmp / name)]


def _twice(tmp: Path) -> list[str]:
    (tmp / "a.jsonl").write_bytes(b'{"a": 1}\n')
    return [str(tmp / "a.jsonl"), str(tmp / "." / "a.jsonl")]


UPLOAD_CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("empty-file", _empty, "empty"),
    ("directory", _directory, "not a regular file"),
    ("same-file-twice", _twice, "more than once"),
    ("no-files", lambda tmp: [], "no files given"),
]


@pytest.mark.parametrize(("case", "make", "names"), UPLOAD_CASES, ids=[c[0] for c in UPLOAD_CASES])
async def test_bad_upload_inputs(
    emulator: Emulator, tmp_path: Path, case: str, make: Callable[[Path], list[str]], names: str
) -> None:
    remote = RemoteState(emulator)
    requests_before = sum(emulator.counts().values())
    state = await upload_files(source_key="uploads-src", paths=make(tmp_path), return_state=True)
    assert state.is_failed()
    assert names in (state.message or ""), state.message
    assert sum(emulator.counts().values()) == requests_before
    remote.assert_unchanged()


def test_non_utf8_file_name_is_refused_before_upload(emulator: Emulator, tmp_path: Path) -> None:
    """Such a name cannot even travel as a flow parameter (Prefect sends parameters as UTF-8 JSON),
    so the CLI checks files with `inspect_files` before it starts the flow; that check names the file."""
    from splendor_flows.tasks.uploads import UploadInputError, inspect_files

    remote = RemoteState(emulator)
    with pytest.raises(UploadInputError) as caught:
        inspect_files(_non_utf8_name(tmp_path))
    assert "not valid UTF-8" in str(caught.value) and "rename the file" in str(caught.value)
    remote.assert_unchanged()
