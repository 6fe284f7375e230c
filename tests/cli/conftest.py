"""CLI tests: the flow tests' Prefect harness and emulator; commands run as subprocesses against them."""

from tests.flows.conftest import (  # noqa: F401  (re-exported fixtures)
    emulator,
    prefect_harness,
    source_key,
    splendor_env,
    stripe_secret,
)
