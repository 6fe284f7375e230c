"""Compat tests run against a real Prefect API: the flow tests' session harness."""

from tests.flows.conftest import prefect_harness  # noqa: F401  (re-exported session fixture)
