"""Run connect_source in its own process (the crash test kills it mid-poll)."""

import asyncio
import sys

from splendor_flows.flows.connect_source import connect_source
from tests.flows.conftest import stripe_spec

if __name__ == "__main__":
    source_key, sync_id = sys.argv[1], sys.argv[2]
    asyncio.run(connect_source(spec=stripe_spec(source_key), sync_id=sync_id))
