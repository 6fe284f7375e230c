"""Checking that a route exists without acting on anything: the ids a probe uses and how its answer reads.

A probe fills every path parameter with a value that names nothing (ABSENT_PATH_VALUES) and sends the route
table's `probe_body`, a body the API must refuse. The answer then tells a missing route (the router's bare
404, or 405) from a route that is there (a handler's own 404 detail, "Source not found", or a 422).
"""

from dataclasses import dataclass
from typing import Any

from .routes import UNKNOWN_ROUTE_DETAIL

# Path values that cannot name an object of the tenant: the largest 32-bit id (a serial id column would
# take billions of rows to reach it) and keys no spec of this project can produce (`absent` plus a suffix
# the API's own id formats never have). The caller still checks them against what the tenant lists.
ABSENT_INT_ID = 2_147_483_647
ABSENT_PATH_VALUES: dict[str, str | int] = {
    "source_id": ABSENT_INT_ID,
    "run_id": ABSENT_INT_ID,
    "source_key": "splendor-flows-doctor-absent",
    "upload_session_id": "ups_doctor_absent",
    "ingest_run_id": "ing_doctor_absent",
    "provider_key": "splendor-flows-doctor-absent",
    "source_definition_id": "00000000-0000-0000-0000-000000000000",
}


@dataclass(frozen=True)
class ProbeAnswer:
    """What the API answered a probe: the status and, when the body was the API's JSON, its `detail`."""

    status: int
    # False when the body was not a JSON object with `detail` (an empty body, a proxy's HTML page).
    api_json: bool
    detail: Any = None

    @property
    def route_missing(self) -> bool:
        """The API has no such route: 405, or a 404 that is the router's own (bare or not the API's JSON)."""
        if self.status == 405:
            return True
        if self.status != 404:
            return False
        return not self.api_json or self.detail == UNKNOWN_ROUTE_DETAIL

    @property
    def refused_safely(self) -> bool:
        """The route is there and turned the probe down before acting: a handler's 404, or a 422."""
        return not self.route_missing and self.status in (404, 422)
