"""prefect_compat.read_variables_tagged: the raw POST /variables/filter call behind the credential
fingerprints of connectors-as-code. Fails when Prefect changes the route, its filter body or paging."""

import uuid

from prefect.variables import Variable

from splendor_flows.orchestration.prefect_compat import read_variables_tagged


async def test_reads_only_tagged_variables_across_pages() -> None:
    tag = f"compat-{uuid.uuid4().hex[:8]}"
    tagged = {f"compat_{tag}_{i}".replace("-", "_"): {"i": str(i)} for i in range(5)}
    for name, value in tagged.items():
        await Variable.aset(name, value, tags=[tag, "other"], overwrite=True)
    await Variable.aset(
        f"compat_{tag}_untagged".replace("-", "_"), {"i": "x"}, tags=["other"], overwrite=True
    )

    # A page size below the count makes the call page (5 = 2 + 2 + 1).
    found = await read_variables_tagged(tag, page_size=2)

    assert sorted(v.name for v in found) == sorted(tagged)
    assert {v.name: v.value for v in found} == tagged


async def test_no_tagged_variable_reads_empty() -> None:
    assert await read_variables_tagged(f"compat-none-{uuid.uuid4().hex[:8]}") == []
