"""Every use of Prefect beyond its public API, in one place.

Each section names what it relies on and has a test in tests/compat/ that fails when a Prefect
upgrade changes it, so an upgrade breaks a named test instead of a production run. Sections are
independent (own names; the imports they need are listed at the top); add new ones at the end.
"""

import pydantic
from prefect import get_client
from prefect.client.schemas.objects import Variable

# ==================================================================================================
# Section: variables filtered by tag, paged (connectors-as-code credential fingerprints)
# Relies on: the server route POST /variables/filter and its body {"variables": {"tags": {"all_"}},
# "limit", "offset"}, sent through PrefectClient.request. Test: tests/compat/test_variables.py
# ==================================================================================================

_VARIABLE_LIST = pydantic.TypeAdapter(list[Variable])


async def read_variables_tagged(tag: str, *, page_size: int = 200) -> list[Variable]:
    """Every variable carrying ``tag``, read a page at a time.

    `PrefectClient.read_variables` takes only a limit (no tag filter, no offset), and the server caps
    any page, so one call cannot return them all; this posts the server's own filter body instead.
    """
    found: dict[str, Variable] = {}
    async with get_client() as client:
        offset = 0
        while True:
            response = await client.request(
                "POST",
                "/variables/filter",
                json={"variables": {"tags": {"all_": [tag]}}, "limit": page_size, "offset": offset},
            )
            page = _VARIABLE_LIST.validate_python(response.json())
            if page and all(v.name in found for v in page):
                # A server that ignores `offset` would otherwise make this loop forever.
                raise RuntimeError("POST /variables/filter returned the same page twice: offset ignored?")
            found.update((v.name, v) for v in page)
            if len(page) < page_size:
                return list(found.values())
            offset += page_size
